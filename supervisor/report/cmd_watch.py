"""`ao watch`: the resident process (see `resident`), and `--status` / `--stop` for the running one."""
from __future__ import annotations

import time

import click

from supervisor.errors import FatalError
from supervisor.report.common import config_of, print_json

STOP_WAIT_S = 10.0


def _ask(kind: str) -> dict | None:
    from supervisor.report import watch_client

    reply = watch_client.request({"proto": watch_client.PROTO, "kind": kind}, accept_timeout=2.0, answer_timeout=5.0)
    if reply is None:
        return None
    import json

    header, body = reply
    return json.loads(bytes(body)) if body else header


@click.command(name="watch")
@click.option("--status", "show_status", is_flag=True, help="Say whether a watcher runs, and what it watches.")
@click.option("--stop", "stop_it", is_flag=True, help="Stop the running watcher.")
@click.option("--dashboard", is_flag=True, help="Also serve the dashboard.")
@click.option("--no-notify", is_flag=True, help="Do not send notifications.")
@click.option("--no-reactions", is_flag=True, help="Do not react to CI failures and reviews.")
@click.option("--json", "as_json", is_flag=True, help="With --status: the state as JSON.")
@click.pass_context
def watch(ctx: click.Context, show_status: bool, stop_it: bool, dashboard: bool, no_notify: bool,
          no_reactions: bool, as_json: bool) -> int:
    """Stay resident: keep `ao status` and `ao cost` answers hot, and run notifications, PR reactions
    and (with --dashboard) the dashboard. One per AO_HOME; ^C stops it."""
    if show_status and stop_it:
        raise FatalError("--status and --stop do not go together; pick one")
    if show_status:
        state = _ask("ping")
        if state is None:
            if as_json:
                print_json({"running": False})
            else:
                click.echo("ao watch is not running")
            return 1
        state["running"] = True
        if as_json:
            print_json(state)
        else:
            click.echo(f"ao watch is running (pid {state['pid']}), generation {state['generation']}, "
                       f"{state['answers']} answers kept, {state['served']} served")
            if state.get("stale"):
                click.echo(f"not answering now: {state['stale']}")
            for why in state.get("untrusted", {}).values():
                click.echo(f"not trusted: {why}")
            for name, how in state.get("services", {}).items():
                click.echo(f"service {name}: {how}")
        return 0
    if stop_it:
        return _stop()
    from supervisor.report import resident

    names = [n for n in resident.SERVICES if n not in resident.OPTIONAL_SERVICES]
    names = [n for n in names if not (n == "notify" and no_notify) and not (n == "reactions" and no_reactions)]
    if dashboard:
        names.append("dashboard")
    return resident.serve(config_of(ctx), names)


def _stop() -> int:
    """Ask the watcher to stop over its socket (never a signal to a pid that may have been reused)."""
    from supervisor.report import resident

    pid = resident.running_pid()
    if _ask("stop") is None:
        click.echo("ao watch is not running")
        return 1
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        if _ask("ping") is None:
            click.echo(f"ao watch stopped (pid {pid})" if pid else "ao watch stopped")
            return 0
        time.sleep(0.05)
    raise FatalError(f"ao watch (pid {pid}) did not stop within {STOP_WAIT_S:g} s; end it with `kill {pid}`")
