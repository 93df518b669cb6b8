"""The `ao` command line: the root group and a table of commands, each loaded from its subject's module.

Commands are thin: parse, call the sessions or observe room, print. A command returns an exit code
(or None) or raises FatalError; `errors.error_handler` turns everything else into one line.
"""
from __future__ import annotations

import importlib
from typing import Any

import click

from supervisor import __version__
from supervisor.errors import error_handler

# click signals --help, usage errors and aborts with exceptions that it prints itself
CLICK_FLOW = (click.exceptions.Exit, click.ClickException, click.exceptions.Abort)

# name -> (module, attribute). Modules load only when their command runs, so `ao status` does not
# import the cost index, the signing code or the wrapper installer (start-up time is felt on every call).
COMMANDS: dict[str, tuple[str, str]] = {
    "spawn": ("supervisor.report.cmd_sessions", "spawn"),
    "status": ("supervisor.report.cmd_sessions", "status"),
    "wait": ("supervisor.report.cmd_sessions", "wait"),
    "send": ("supervisor.report.cmd_sessions", "send"),
    "resume": ("supervisor.report.cmd_sessions", "resume"),
    "kill": ("supervisor.report.cmd_sessions", "kill"),
    "rm": ("supervisor.report.cmd_sessions", "rm"),
    "attach": ("supervisor.report.cmd_sessions", "attach"),
    "prune": ("supervisor.report.cmd_sessions", "prune"),
    "cost": ("supervisor.report.cmd_cost", "cost"),
    "receipts": ("supervisor.report.cmd_receipts", "receipts"),
    "plan": ("supervisor.report.cmd_plan", "plan"),
    "approve": ("supervisor.report.cmd_govern", "approve_cmd"),
    "deny": ("supervisor.report.cmd_govern", "deny_cmd"),
    "config": ("supervisor.report.cmd_config", "config_group"),
    "doctor": ("supervisor.report.cmd_config", "doctor"),
    "trust": ("supervisor.report.cmd_trust", "trust_cmd"),
    "wrappers": ("supervisor.report.cmd_wrappers", "wrappers"),
    "model": ("supervisor.report.cmd_model", "model"),
    "demo": ("supervisor.report.cmd_model", "demo"),
    "policy": ("supervisor.report.cmd_operator", "policy_cmd"),
    "guard": ("supervisor.report.cmd_operator", "guard_group"),
    "revoke": ("supervisor.report.cmd_operator", "revoke_cmd"),
    "budget": ("supervisor.report.cmd_operator", "budget_cmd"),
    "approvals": ("supervisor.report.cmd_operator", "approvals_cmd"),
    "notify": ("supervisor.report.cmd_notify", "notify_cmd"),
    "reactions": ("supervisor.report.cmd_notify", "reactions_cmd"),
    "dashboard": ("supervisor.dashboard.cmd", "dashboard"),
    "watch": ("supervisor.report.cmd_watch", "watch"),
}


class AoGroup(click.Group):
    """Dispatches to lazily loaded commands; a command's int return value becomes the exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        found = COMMANDS.get(name)
        if found is None:
            return None
        module, attr = found
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        with error_handler(passthrough=CLICK_FLOW):
            result = super().invoke(ctx)
        if isinstance(result, int) and not isinstance(result, bool) and result:
            ctx.exit(result)
        return result


@click.group(cls=AoGroup)
@click.option("--config", "config_path", metavar="FILE", help="agent-orchestrator.yaml to use.")
@click.version_option(__version__, prog_name="ao")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """ao: a supervisor for fleets of Codex CLI agents."""
    ctx.obj = {"config_path": config_path}


def _terminated(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like ^C: a half-done spawn takes back what it made


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    with error_handler(passthrough=CLICK_FLOW):  # ^C while click parses or loads a command
        cli(prog_name="ao")
