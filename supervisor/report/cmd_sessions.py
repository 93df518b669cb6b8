"""Session commands: spawn, status, wait, send, resume, kill, rm, attach."""
from __future__ import annotations

import time
from typing import Any

import click

from supervisor import config as config_mod
from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.launch import runtimes
from supervisor.records import FAILED_STATUSES
from supervisor.report import views
from supervisor.report.common import config_of, print_json


def runtime_options(verb: str) -> click.Command:
    """`--runtime NAME` plus one `--NAME` flag per registered runtime."""
    def decorate(command: click.Command) -> click.Command:
        for name in reversed(runtimes.names()):
            command = click.option(f"--{name}", "runtime", flag_value=name,
                                   help=f"Same as --runtime {name}.")(command)
        return click.option("--runtime", "runtime", type=click.Choice(runtimes.names()),
                            help=f"Where to {verb} codex (default: the config's `runtime`).")(command)
    return decorate  # type: ignore[return-value]


@click.command()
@click.option("--repo", type=str, help="Git repository to branch a worktree from.")
@click.option("--workspace", type=str, help="Run in this directory as it is.")
@click.option("--project", type=str, help="Project name from the config.")
@click.option("--issue", type=str, help="Issue id, passed to the agent as AO_ISSUE_ID.")
@runtime_options("run")
@click.option("--approval", type=click.Choice(config_mod.APPROVALS), help="Approval policy.")
@click.option("--model", type=str, help="Model name.")
@click.option("-c", "overrides", multiple=True, metavar="KEY=VALUE", help="Extra codex -c override.")
@click.option("--name", type=str, help="A name to find the session by.")
@click.option("--policy", "policy_file", type=str, help="A policy YAML file, on top of the config's policy.")
@click.option("--unjailed", is_flag=True,
              help="Run without ao's bubblewrap jail (governance is then best effort; shown in `ao status`).")
@click.option("--plan-first", "plan_first", is_flag=True,
              help="Deny every tool call until the agent registers a plan, and every call outside it.")
@click.option("--no-check", "no_check", is_flag=True,
              help="Spawn without first checking that the provider answers (or that codex is logged in).")
@click.option("--resources", "resources_json", metavar="JSON",
              help='Ray resources for this agent on top of the config\'s ray.resources, e.g. \'{"big_box": 1}\'.')
@click.option("--json", "as_json", is_flag=True)
@click.argument("prompt")
@click.pass_context
def spawn(ctx: click.Context, repo: str | None, workspace: str | None, project: str | None, issue: str | None,
          runtime: str | None, approval: str | None, model: str | None, overrides: tuple[str, ...], name: str | None,
          policy_file: str | None, unjailed: bool, plan_first: bool, no_check: bool, resources_json: str | None,
          as_json: bool, prompt: str) -> None:
    """Start a codex agent on PROMPT in its own workspace."""
    from supervisor.sessions.spawn import SpawnRequest, parse_resources
    from supervisor.sessions.spawn import spawn as do_spawn

    if repo and workspace:
        raise FatalError("pass either --repo or --workspace, not both")
    resources = parse_resources(resources_json)
    cfg = config_of(ctx)
    runtime = _remote_wins(runtime or cfg.data["runtime"])
    if resources and not runtimes.get(runtime).remote:
        raise FatalError(f"--resources places an agent on a Ray cluster; the {runtime} runtime runs it here "
                         "(add --runtime ray)")
    req = SpawnRequest(prompt=prompt, repo=repo, workspace=workspace, project=project, issue=issue,
                       runtime=runtime, approval=approval, model=model,
                       overrides=list(overrides), name=name, policy_file=policy_file, unjailed=unjailed,
                       check=not no_check, plan_first=plan_first, resources=resources)
    record = do_spawn(cfg, req)
    for warning in record["launch"].get("warnings") or []:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json({"session": record["session"], "workspace": record["workspace"],
                    "thread_id": record["thread_id"], "status": record["status"], "branch": record["branch"]})
    else:
        click.echo(f"{record['session']} {record['status']} in {record['workspace']}")


def _remote_wins(runtime: str) -> str:
    """`--runtime ray --headless`: a remote runtime is headless already, so the flag does not undo the choice."""
    import sys

    args = sys.argv[1:]  # click keeps only the last of two options that share the name `runtime`
    named = [a.split("=", 1)[1] if a.startswith("--runtime=") else a[2:] for a in args
             if a.startswith("--runtime=") or (a.startswith("--") and a[2:] in runtimes.names())]
    named += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--runtime"]
    remote = [n for n in named if n in runtimes.names() and runtimes.get(n).remote]
    return remote[-1] if remote and not runtimes.get(runtime).interactive else runtime


@click.command()
@click.argument("sessions", nargs=-1, required=True)
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@click.option("--exit", "until_exit", is_flag=True,
              help="Wait for each session's process to end, not just for its work to end.")
def wait(sessions: tuple[str, ...], timeout: float, until_exit: bool) -> int:
    """Block until each SESSION's run has ended; non-zero on timeout or failure."""
    from supervisor.sessions.wait import wait_sessions

    # passed only when asked, so this works with a wait_sessions that predates the keyword
    extra: dict[str, Any] = {"until_exit": True} if until_exit else {}
    records = wait_sessions(list(sessions), timeout, **extra)
    failed = [r for r in records if r["status"] in FAILED_STATUSES]
    for r in records:
        error = f": {views.printable(r['error'])}" if r.get("error") and r in failed else ""
        click.echo(f"{r['session']} {r['status']}{error}")
    return 1 if failed else 0


@click.command()
@click.argument("session", required=False)
@click.option("--active", is_flag=True, help="Only live sessions: queued, spawning, working, stalled, or interactive.")
@click.option("--project", metavar="P", help="Only this project (its name, or the repository's name or path).")
@click.option("--since", metavar="D", help="Only sessions started within D (30m, 2h, 1d) or since an ISO date.")
@click.option("--attention", is_flag=True, help="Only sessions that need a human now.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--watch", is_flag=True, help="Redraw in place every second until ^C.")
@click.pass_context
def status(ctx: click.Context, session: str | None, active: bool, project: str | None, since: str | None,
           attention: bool, as_json: bool, watch: bool) -> None:
    """Show sessions: status, attention, age, PR, tokens, cost and budget; filters combine."""
    # the rows and text come from status_view, which `ao status` without --watch uses without click
    from supervisor.observe import pricing
    from supervisor.report import status_view as sv

    table = pricing.load_table(config_of(ctx).data.get("pricing"))
    filtered = bool(active or project or since or attention)

    if not watch:
        width, _ = sv.terminal_size()
        click.echo(sv.status_text(sv.status_rows(session, sv.status_filter(active, project, since, attention), table),
                                  as_json, filtered, width))
        return
    from supervisor.report.watch import changes, frame

    try:
        with changes([paths.codex_home() / "sessions", paths.sessions_dir()]) as changed:
            while True:
                width, lines = sv.terminal_size()
                title = time.strftime("%H:%M:%S ") + "ao status (^C to stop)"
                # a span like 30m counts back from each frame's now
                rows = sv.status_rows(session, sv.status_filter(active, project, since, attention), table)
                body = sv.status_text(rows, as_json, filtered, width, None if lines is None else lines - 2)
                click.echo(frame(title, body, width, lines), nl=False)
                changed.wait(2.0)  # redraw as soon as a rollout or event file grows
                changed.clear()
    except KeyboardInterrupt:
        pass


@click.command()
@click.argument("session")
def kill(session: str) -> None:
    """End SESSION's process tree and its runtime's session; keeps the worktree and all records."""
    from supervisor.sessions import control

    record = control.kill(session)
    click.echo(f"{record['session']} killed")


@click.command()
@click.argument("session")
@click.option("--force", is_flag=True, help="Remove even with uncommitted changes.")
def rm(session: str, force: bool) -> None:
    """Remove SESSION's worktree (records stay)."""
    from supervisor.sessions import control

    click.echo(f"removed {control.remove(session, force)}")


@click.command()
@click.option("--merged", "merged_only", is_flag=True, help="Only sessions whose PR was merged.")
@click.option("--older-than", metavar="D", help="Only sessions that ended more than D ago (30m, 2h, 1d) or before "
              "an ISO date.")
@click.option("--records", "records_too", is_flag=True, help="Also forget their records (store row, ledger, events).")
@click.option("--force", is_flag=True, help="Remove dirty worktrees and delete branches with unmerged commits too.")
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def prune(merged_only: bool, older_than: str | None, records_too: bool, force: bool, dry_run: bool,
          as_json: bool) -> int:
    """Remove the worktrees and ao/ branches of finished, merged or removed sessions; never a live one."""
    from supervisor.sessions import fleet
    from supervisor.sessions import prune as prune_mod

    cutoff = fleet.cutoff(older_than, time.time(), "--older-than") if older_than else None
    actions = prune_mod.prune(merged_only, cutoff, records_too, dry_run, force)
    if as_json:
        print_json([a.as_dict() for a in actions])
        return 0
    if not actions:
        click.echo("nothing to prune")
    verb = "would remove" if dry_run else "removed"
    for a in actions:
        who = views.printable(a.session)
        if a.skipped:
            click.echo(f"skipped {who}: {views.printable(a.skipped)}")
            continue
        parts = [f"worktree {a.worktree}" if a.worktree else "", f"branch {a.branch}" if a.branch else "",
                 "records" if a.records else ""]
        what = ", ".join(views.printable(p) for p in parts if p) or "nothing"
        click.echo(f"{verb} {who}: {what}")
        for note in a.notes:
            click.echo(f"  {views.printable(note)}")
    return 0


@click.command()
@click.argument("session")
@click.argument("message")
@click.pass_context
def send(ctx: click.Context, session: str, message: str) -> None:
    """Send MESSAGE to SESSION: typed into its live terminal, or a resumed turn once it has ended."""
    from supervisor.sessions import control

    record, live = control.send(config_of(ctx), session, message)
    click.echo(f"delivered to {record['session']}" if live else f"{record['session']} resumed with the message")


@click.command()
@click.argument("session")
def attach(session: str) -> None:
    """Attach your terminal to SESSION's live terminal."""
    record = store.get(session)
    runtimes.of(record).attach(record)


@click.command()
@click.argument("target")
@click.argument("prompt", required=False)
@runtime_options("resume")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def resume(ctx: click.Context, target: str, prompt: str | None, runtime: str | None, as_json: bool) -> None:
    """Continue the codex thread of TARGET (a session or thread id) in its workspace."""
    from supervisor.sessions.spawn import resume as do_resume

    record = do_resume(config_of(ctx), target, prompt, runtime)
    if as_json:
        print_json({"session": record["session"], "thread_id": record["thread_id"], "runtime": record["runtime"]})
    else:
        click.echo(f"{record['session']} resuming thread {record['thread_id']} ({record['runtime']})")
