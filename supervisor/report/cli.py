"""The `ao` command line. Each command is thin: parse, call the room that does the work, print."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from supervisor import __version__, config as config_mod, paths, store
from supervisor.errors import FatalError
from supervisor.govern import guard
from supervisor.observe import activity, events, pricing
from supervisor.report import views


class AoGroup(click.Group):
    """Turns FatalError into one clear line on stderr and its exit code; never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            return LAZY_COMMANDS[name]()
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FatalError as exc:
            click.echo(f"ao: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def _cfg(ctx: click.Context) -> config_mod.Config:
    obj = ctx.find_root().obj
    if "config" not in obj:
        obj["config"] = config_mod.load(obj.get("config_path"))
    return obj["config"]


def json_text(value: Any) -> str:
    """Indented JSON for every read command; orjson is ~30x faster than json on big reports."""
    import orjson
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _print_json(value: Any) -> None:
    click.echo(json_text(value))


@click.group(cls=AoGroup)
@click.option("--config", "config_path", metavar="FILE", help="agent-orchestrator.yaml to use.")
@click.version_option(__version__, prog_name="ao")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """ao: a supervisor for fleets of Codex CLI agents."""
    ctx.obj = {"config_path": config_path}


def main() -> None:
    cli(prog_name="ao")


class ReceiptsGroup(click.Group):
    """`ao receipts SESSION` lists; `ao receipts export|verify ...` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


def _receipts() -> click.Command:
    from supervisor.report.cmd_cost import receipts as receipts_list
    from supervisor.report.cmd_govern import receipts_tools
    group = ReceiptsGroup("receipts", help="Receipts: `ao receipts SESSION [--json]`, `export`, `verify`.")
    group.add_command(receipts_list, "list")
    for name, command in receipts_tools.commands.items():
        group.add_command(command, name)
    return group


def _lazy(module: str, attr: str) -> Any:
    def load() -> click.Command:
        import importlib
        return getattr(importlib.import_module(module), attr)
    return load


# Commands in other modules load only when used, so `ao status` does not import the cost index,
# the guard's signing code or the wrapper installer (start-up time is felt on every call).
LAZY_COMMANDS: dict[str, Any] = {
    "cost": _lazy("supervisor.report.cmd_cost", "cost"),
    "receipts": _receipts,
    "wrappers": _lazy("supervisor.report.cmd_wrappers", "wrappers"),
    "approve": _lazy("supervisor.report.cmd_govern", "approve_cmd"),
    "deny": _lazy("supervisor.report.cmd_govern", "deny_cmd"),
}


# --- sessions -----------------------------------------------------------------------------------

def fold_events(record: dict[str, Any]) -> dict[str, Any]:
    """Fold the wrappers' branch and PR events into the record; a failed or killed run keeps that status."""
    found = events.read_events(record["session"])
    if found and store.is_live(record):  # the runner takes the rest into the ledger when the run ends
        from supervisor.govern import ledger
        ledger.ingest_wrapper_events(paths.session_dir(record["session"]))
    fields = events.fold(found)
    if record["status"] in ("failed", "killed", "queued", "spawning"):
        fields.pop("status", None)
    changed = {k: v for k, v in fields.items() if record.get(k) != v}
    if changed:
        store.update(record["session"], **changed)
        record = {**record, **changed}
    return record


def refresh(record: dict[str, Any]) -> dict[str, Any]:
    """Fold wrapper events; a session whose supervisor died without recording an end is marked failed."""
    record = fold_events(record)
    if not store.is_live(record) or not record.get("pid"):
        return record
    if not _alive(record["pid"]):
        fresh = store.get(record["session"])  # the runner may have finished between the two reads
        if not store.is_live(fresh):
            return fresh
        from supervisor.launch import lifecycle
        lifecycle.end_orphan(fresh.get("codex_pid"))  # codex must not run on unsupervised
        store.update(record["session"], status="failed", activity="exited", ended_at=time.time(),
                     error="the session's supervisor process died before codex finished")
        return store.get(record["session"])
    return record


def _alive(pid: int) -> bool:
    import psutil  # imported here: most commands never need it, and start-up time is user-visible
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_sessions(sessions: list[str], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    pending = list(dict.fromkeys(store.get(s)["session"] for s in sessions))
    done: dict[str, dict[str, Any]] = {}
    while pending:
        for session in list(pending):
            record = refresh(store.get(session))
            if not store.is_live(record):
                done[session] = record
                pending.remove(session)
        if pending:
            if time.monotonic() >= deadline:
                raise FatalError(f"timed out after {timeout:g}s waiting for {', '.join(pending)}", exit_code=2)
            time.sleep(0.2)
    return [done[s] for s in done]


@cli.command()
@click.option("--repo", type=str, help="Git repository to branch a worktree from.")
@click.option("--workspace", type=str, help="Run in this directory as it is.")
@click.option("--project", type=str, help="Project name from the config.")
@click.option("--issue", type=str, help="Issue id, passed to the agent as AO_ISSUE_ID.")
@click.option("--headless", "runtime", flag_value="headless", help="Run `codex exec --json` (no tmux).")
@click.option("--tmux", "runtime", flag_value="tmux", help="Run the codex TUI in tmux.")
@click.option("--approval", type=click.Choice(config_mod.APPROVALS), help="Approval policy.")
@click.option("--model", type=str, help="Model name.")
@click.option("-c", "overrides", multiple=True, metavar="KEY=VALUE", help="Extra codex -c override.")
@click.option("--name", type=str, help="A name to find the session by.")
@click.option("--policy", "policy_file", type=str, help="A policy YAML file, on top of the config's policy.")
@click.option("--json", "as_json", is_flag=True)
@click.argument("prompt")
@click.pass_context
def spawn(ctx: click.Context, repo: str | None, workspace: str | None, project: str | None, issue: str | None,
          runtime: str | None, approval: str | None, model: str | None, overrides: tuple[str, ...], name: str | None,
          policy_file: str | None, as_json: bool, prompt: str) -> None:
    """Start a codex agent on PROMPT in its own workspace."""
    from supervisor.launch.spawn import SpawnRequest, spawn as do_spawn
    if repo and workspace:
        raise FatalError("pass either --repo or --workspace, not both")
    cfg = _cfg(ctx)
    req = SpawnRequest(prompt=prompt, repo=repo, workspace=workspace, project=project, issue=issue,
                       runtime=runtime or cfg.data["runtime"], approval=approval, model=model,
                       overrides=list(overrides), name=name, policy_file=policy_file)
    record = do_spawn(cfg, req)
    if as_json:
        _print_json({"session": record["session"], "workspace": record["workspace"],
                     "thread_id": record["thread_id"], "status": record["status"], "branch": record["branch"]})
    else:
        click.echo(f"{record['session']} {record['status']} in {record['workspace']}")


@cli.command()
@click.argument("sessions", nargs=-1, required=True)
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
def wait(sessions: tuple[str, ...], timeout: float) -> None:
    """Block until each SESSION's run has ended; non-zero on timeout or failure."""
    records = wait_sessions(list(sessions), timeout)
    failed = [r for r in records if r["status"] in ("failed", "killed", "blocked")]
    for r in records:
        click.echo(f"{r['session']} {r['status']}" + (f": {r['error']}" if r.get("error") and r in failed else ""))
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("session", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("--watch", is_flag=True, help="Redraw in place every second until ^C.")
@click.pass_context
def status(ctx: click.Context, session: str | None, as_json: bool, watch: bool) -> None:
    """Show sessions: status, activity, branch, PR, tokens and cost."""
    def render() -> str:
        rows = status_rows(ctx, [store.get(session)] if session else store.all_sessions())
        if as_json:
            return json_text(rows[0] if session else rows)
        return views.status_table(rows) if rows else "no sessions yet; start one with `ao spawn`"

    if not watch:
        click.echo(render())
        return
    from supervisor.report.watch import changes
    try:
        with changes([paths.codex_home() / "sessions", paths.sessions_dir()]) as changed:
            while True:
                frame = render()
                click.echo("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + "ao status (^C to stop)\n" + frame)
                changed.wait(2.0)  # redraw as soon as a rollout or event file grows
                changed.clear()
    except KeyboardInterrupt:
        pass


def status_rows(ctx: click.Context, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contract rows with exact tokens and cost from each session's rollout (stored columns until one exists)."""
    from supervisor.report.cmd_cost import sessions_usage
    table = pricing.load_table(_cfg(ctx).data.get("pricing"))
    records = [refresh(r) for r in records]
    usage = sessions_usage(records, table)
    home = str(paths.ao_home())
    rows = []
    for record in records:
        tokens, cost, _models = usage[record["session"]]  # every record: stored columns until a rollout exists
        row = views.status_row(record, tokens, cost)
        row["approval_id"] = None
        if store.is_live(record):  # approvals and budget stops only matter while the agent runs
            gov = guard.session_governance(home, record["session"])
            row["approval_id"] = gov["waiting_input"]
            row["activity"] = activity.activity(record.get("rollout_path"), True, pending_approval=bool(gov["waiting_input"]),
                                                guard_blocked=gov["budget_blocked"]) or row["activity"]
        rows.append(row)
    return rows


@cli.command()
@click.argument("session")
def kill(session: str) -> None:
    """End SESSION's process tree and tmux session; keeps the worktree and all records."""
    from supervisor.launch import lifecycle
    record = lifecycle.kill(session)
    click.echo(f"{record['session']} killed")


@cli.command()
@click.argument("session")
@click.option("--force", is_flag=True, help="Remove even with uncommitted changes.")
def rm(session: str, force: bool) -> None:
    """Remove SESSION's worktree (records stay)."""
    from supervisor.launch import lifecycle
    click.echo(f"removed {lifecycle.remove(session, force)}")


@cli.command()
@click.argument("session")
@click.argument("message")
@click.pass_context
def send(ctx: click.Context, session: str, message: str) -> None:
    """Send MESSAGE to SESSION: typed into its TUI, or a `codex exec resume` turn when headless."""
    from supervisor.launch import lifecycle
    from supervisor.launch.spawn import resume as do_resume
    record = refresh(store.get(session))
    if record["runtime"] == "tmux" and store.is_live(record):
        lifecycle.send_tmux(record, message)
        click.echo(f"delivered to {record['session']}")
    elif store.is_live(record):
        raise FatalError(f"headless session {record['session']} is still working; `ao wait` for it, then send")
    else:
        record = do_resume(_cfg(ctx), record["session"], message, "headless" if record["runtime"] == "headless" else None)
        click.echo(f"{record['session']} resumed with the message")


@cli.command()
@click.argument("session")
def attach(session: str) -> None:
    """Attach your terminal to SESSION's tmux session."""
    from supervisor.launch import tmux
    tmux.attach(store.get(session)["session"])


@cli.command()
@click.argument("target")
@click.argument("prompt", required=False)
@click.option("--headless", "runtime", flag_value="headless", help="Resume with `codex exec resume`.")
@click.option("--tmux", "runtime", flag_value="tmux", help="Resume the TUI in tmux.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def resume(ctx: click.Context, target: str, prompt: str | None, runtime: str | None, as_json: bool) -> None:
    """Continue the codex thread of TARGET (a session or thread id) in its workspace."""
    from supervisor.launch.spawn import resume as do_resume
    record = do_resume(_cfg(ctx), target, prompt, runtime)
    if as_json:
        _print_json({"session": record["session"], "thread_id": record["thread_id"], "runtime": record["runtime"]})
    else:
        click.echo(f"{record['session']} resuming thread {record['thread_id']} ({record['runtime']})")


# --- doctor, config -------------------------------------------------------------------------------

@cli.command()
@click.option("--provision/--no-provision", default=False, help="Install the pinned codex with npm if missing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor(ctx: click.Context, provision: bool, as_json: bool) -> None:
    """Show how codex is found and whether git, tmux, npm and gh are usable."""
    from supervisor.report import doctor as doctor_mod
    result = doctor_mod.diagnose(_cfg(ctx), provision)
    if as_json:
        _print_json(result)
    else:
        click.echo(doctor_mod.render(result))
    if not result["codex"]["path"]:
        sys.exit(1)


@cli.group(name="config")
def config_group() -> None:
    """Read or edit agent-orchestrator.yaml in place."""


def _config_file(ctx: click.Context) -> Path:
    found = config_mod.find_config_file(ctx.find_root().obj.get("config_path"))
    return found or Path.cwd() / config_mod.CONFIG_NAME


@config_group.command(name="get")
@click.argument("key")
@click.pass_context
def config_get(ctx: click.Context, key: str) -> None:
    """Print the value of KEY (dotted, e.g. agent.model)."""
    value = _cfg(ctx).get(key)
    click.echo(json.dumps(value) if isinstance(value, (dict, list)) or value is None else str(value))


@config_group.command(name="set")
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY to VALUE, keeping the file's comments and order."""
    path = _config_file(ctx)
    new = config_mod.set_value(path, key, value)
    click.echo(f"{path}: {key} = {json.dumps(new)}")


@config_group.command(name="path")
@click.pass_context
def config_path(ctx: click.Context) -> None:
    """Print which config file is in use."""
    found = config_mod.find_config_file(ctx.find_root().obj.get("config_path"))
    click.echo(str(found) if found else "none (built-in defaults)")


# --- model, demo -----------------------------------------------------------------------------------

@cli.group()
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
    click.echo(f"scripted model listening on {server.base_url} ({len(script.tasks)} tasks)", err=False)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Where to build the sample repo.")
@click.pass_context
def demo(ctx: click.Context, directory: str | None) -> None:
    """Three agents on the built-in scripted model, in parallel worktrees; then status and cost."""
    from supervisor.demo import run_demo
    from supervisor.model.server import read_ledger
    from supervisor.report.cmd_cost import build_report, session_entries
    cfg = _cfg(ctx)
    records, ledger = run_demo(cfg, Path(directory) if directory else None, wait_sessions, click.echo)
    table = pricing.load_table(cfg.data.get("pricing"))
    click.echo("")
    click.echo(views.status_table(status_rows(ctx, records)))
    click.echo("")
    entries, warnings = session_entries(records)
    report = build_report(entries, "session", None, None, None, table, warnings)
    click.echo(views.cost_table(report["rows"], report["totals"]))
    served = sum(entry["usage"]["total"] for entry in read_ledger(ledger))
    click.echo(f"\nthe scripted model served {served:,} tokens; ao counted {report['totals']['tokens']['total']:,}")
    if any(r["status"] != "done" for r in records):
        sys.exit(1)

