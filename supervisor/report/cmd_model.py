"""`ao model serve` (the built-in scripted model) and `ao demo`."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from supervisor.errors import FatalError
from supervisor.records import Status
from supervisor.report import views
from supervisor.report.common import config_of


@click.group()
def model() -> None:
    """The built-in scripted model server."""


@model.command()
@click.option("--script", "script_path", required=True, type=click.Path(dir_okay=False), help="Model script YAML.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, type=int, help="0 picks a free port.")
@click.option("--ledger", type=click.Path(dir_okay=False), help="JSONL file recording every response served.")
@click.option("--model", "model_name", help="Model name to report (default: the one requested).")
def serve(script_path: str, host: str, port: int, ledger: str | None, model_name: str | None) -> None:
    """Serve the OpenAI Responses API from a script, for codex to talk to."""
    from supervisor.model import script as script_mod
    from supervisor.model.server import ScriptedModel

    script = script_mod.load(Path(script_path))
    try:
        server = ScriptedModel(script, host, port, Path(ledger) if ledger else None, model_name)
    except OSError as exc:
        raise FatalError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"scripted model listening on {server.base_url} ({len(script.tasks)} tasks)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Where to build the sample repo.")
@click.pass_context
def demo(ctx: click.Context, directory: str | None) -> int:
    """Three agents on the built-in scripted model, in parallel worktrees; then status and cost."""
    from supervisor.model.server import read_ledger
    from supervisor.observe import pricing
    from supervisor.report.cost_report import build_report
    from supervisor.sessions import query, reconcile
    from supervisor.sessions.demo import run_demo
    from supervisor.sessions.wait import wait_sessions

    cfg = config_of(ctx)
    records, ledger = run_demo(cfg, Path(directory) if directory else None, wait_sessions, click.echo)
    table = pricing.load_table(cfg.data.get("pricing"))
    click.echo("")
    click.echo(views.status_table(query.status_rows(reconcile.reconcile_all(records), table)))
    click.echo("")
    entries, warnings = query.session_entries(records)
    report = build_report(entries, "session", None, None, None, table, warnings)
    click.echo(views.cost_table(report["rows"], report["totals"]))
    served = sum(entry["usage"]["total"] for entry in read_ledger(ledger))
    click.echo(f"\nthe scripted model served {served:,} tokens; ao counted {report['totals']['tokens']['total']:,}")
    return 0 if all(r["status"] == Status.DONE for r in records) else 1
