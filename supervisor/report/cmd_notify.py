"""`ao notify --once | test` and `ao reactions --once`: one pass of the services `ao watch` runs."""
from __future__ import annotations

import logging
import sys

import click

from supervisor.report.common import config_of, print_json


def _log_to_stderr() -> None:
    """The services log one line per problem; a one-shot command shows them on stderr."""
    root = logging.getLogger("ao")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


@click.group("notify", invoke_without_command=True)
@click.option("--once", is_flag=True, help="Find new events and deliver them once, then exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the pass's counts as JSON.")
@click.pass_context
def notify_cmd(ctx: click.Context, once: bool, as_json: bool) -> int:
    """Push the fleet's events to the `notify:` targets (`ao watch` does this all the time)."""
    if ctx.invoked_subcommand is not None:
        return 0
    if not once:
        click.echo(ctx.get_help())
        return 2
    from supervisor.sessions import notify

    _log_to_stderr()
    counts = notify.run_once(config_of(ctx))
    if as_json:
        print_json(counts)
    else:
        click.echo(f"{counts['new']} new event(s), {counts['delivered']} delivered, {counts['failed']} failed, "
                   f"{counts['waiting']} waiting")
    return 1 if counts["failed"] else 0


@notify_cmd.command("test")
@click.pass_context
def notify_test(ctx: click.Context) -> int:
    """Send a sample event to every target now, to check the config."""
    from supervisor.sessions import notify

    _log_to_stderr()
    results = notify.send_test(config_of(ctx))
    if not results:
        click.echo("no notify targets are configured (see `notify:` in agent-orchestrator.yaml)")
        return 1
    for name, error in results:
        click.echo(f"{name}: " + ("sent" if error is None else f"failed: {error}"))
    return 1 if any(error for _, error in results) else 0


@click.command("reactions")
@click.option("--once", is_flag=True, help="Poll every open PR once and react, then exit.")
@click.pass_context
def reactions_cmd(ctx: click.Context, once: bool) -> int:
    """Send PRs' CI failures, change requests and conflicts to their agents (`ao watch` polls all the time)."""
    if not once:
        click.echo(ctx.get_help())
        return 2
    from supervisor.sessions import reactions

    _log_to_stderr()
    polled = reactions.poll_once(config_of(ctx))
    click.echo(f"{polled} pull request(s) polled")
    return 0
