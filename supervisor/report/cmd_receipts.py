"""`ao receipts SESSION` lists one session's receipts; `export`, `verify` and `trust` handle signed bundles."""
from __future__ import annotations

import json
from typing import Any

import click

from supervisor import store
from supervisor.report import views
from supervisor.report.common import print_json


class ReceiptsGroup(click.Group):
    """`ao receipts SESSION` lists; `ao receipts export|verify|trust ...` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.command(name="list")
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def receipts_list(session: str, as_json: bool) -> None:
    """One receipt per tool call of SESSION: tool, arguments (secrets redacted), exit code, times."""
    from supervisor.sessions import query

    found = query.receipts(store.get(session))
    rows = [{**r, "provenance": _source(r)} if r["kind"] == "tool_call" else r for r in found.receipts]
    if as_json:
        print_json({"session": found.session, "rollout_path": found.rollout_path, "receipts": rows,
                    "warnings": found.warnings})
        return
    from tabulate import tabulate

    body = [[r["at"] or "-", r["kind"], r.get("tool") or r.get("event") or "-",
             "-" if r.get("exit_code") is None else str(r["exit_code"]), r.get("status") or r.get("decision") or "-",
             _source(r), _plan(r.get("plan_hash")),
             _short(r.get("arguments") if r["kind"] == "tool_call" else r.get("detail"))]
            for r in rows]
    body = [[views.printable(str(cell)) for cell in row] for row in body]
    click.echo(tabulate(body, headers=["AT", "KIND", "WHAT", "EXIT", "STATUS", "SOURCE", "PLAN", "DETAIL"],
                        tablefmt="simple",
                        disable_numparse=True) if body else f"no tool calls in {found.rollout_path}")
    unconfirmed = sum(1 for r in rows if r.get("provenance") == "unconfirmed")
    if unconfirmed:
        click.echo(f"note: {unconfirmed} hook request{'s' if unconfirmed != 1 else ''} (SOURCE unconfirmed) "
                   "not listed in codex's rollout: sent to ao's guard by something other than codex, or replayed",
                   err=True)
    for warning in found.warnings:
        click.echo(f"warning: {views.printable(warning)}", err=True)


def _source(receipt: dict[str, Any]) -> str:
    """Whose word the row is: codex's rollout, an unconfirmed hook request, or a claim."""
    if receipt["kind"] == "tool_call":
        return "rollout"  # read from the rollout itself
    return str(receipt.get("provenance") or "-")


def _plan(plan_hash: Any) -> str:
    """The plan in force, as the first 12 hex digits of its sha256 (`ao plan SESSION` shows it whole)."""
    return plan_hash.removeprefix("sha256:")[:12] if isinstance(plan_hash, str) else "-"


def _short(arguments: Any, width: int = 70) -> str:
    text = arguments.get("cmd") if isinstance(arguments, dict) and isinstance(arguments.get("cmd"), str) else None
    text = text if text is not None else json.dumps(arguments) if not isinstance(arguments, str) else arguments
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _build() -> click.Group:
    from supervisor.report.cmd_govern import receipts_tools

    group = ReceiptsGroup("receipts", help="Receipts: `ao receipts SESSION [--json]`, `export`, `verify`, `trust`.")
    group.add_command(receipts_list, "list")
    for name, command in receipts_tools.commands.items():
        group.add_command(command, name)
    return group


receipts = _build()
