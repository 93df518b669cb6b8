"""`ao plan SESSION [--json]`: the plan in force, from the signed ledger, with the calls each step allowed.

The plan and its revisions are the ledger's `plan` lifecycle entries (the guard writes them); the
calls are its PreToolUse `guard_decision` receipts, whose `plan_step` names the step a call matched.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import click

from supervisor.report.common import print_json


@dataclass
class PlanCall:
    at: str
    tool_name: str | None
    command: str | None
    decision: str | None
    plan_hash: str | None       # the plan in force when the guard decided
    step: int | None            # the step of that plan the call matched (0-based)
    step_description: str | None
    reason: str | None


@dataclass
class PlanView:
    session: str
    plan_hash: str | None = None
    revision: int | None = None
    source: str | None = None
    goal: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)       # each with `calls`: those it allowed
    revisions: list[dict[str, Any]] = field(default_factory=list)   # every plan and update_plan, in order
    calls: list[PlanCall] = field(default_factory=list)             # every checked call, any revision
    off_plan: list[PlanCall] = field(default_factory=list)          # calls the plan denied


def _at(entry: dict[str, Any]) -> str:
    try:
        stamp = dt.datetime.fromtimestamp(float(entry.get("ts") or 0), dt.timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return "-"
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fold(session: str, entries: list[dict[str, Any]]) -> PlanView:
    """The view from ledger entries in order (pure: tests feed it entries)."""
    view = PlanView(session)
    steps_of: dict[str, list[Any]] = {}  # plan hash -> its steps, to name the step a call matched
    for entry in entries:
        body = entry.get("body") if isinstance(entry.get("body"), dict) else {}
        assert isinstance(body, dict)
        if entry.get("kind") == "lifecycle" and body.get("event") == "plan":
            plan = body.get("plan") if isinstance(body.get("plan"), dict) else {}
            assert isinstance(plan, dict)
            view.revisions.append({"revision": body.get("revision"), "at": _at(entry), "source": body.get("source"),
                                   "plan_hash": body.get("plan_sha256"), "enforced": body.get("enforced", True)})
            if body.get("enforced", True) is not False and isinstance(plan.get("steps"), list):
                steps_of[str(body.get("plan_sha256"))] = plan["steps"]
                view.plan_hash, view.revision, view.source = body.get("plan_sha256"), body.get("revision"), \
                    body.get("source")
                view.goal = plan.get("goal") if isinstance(plan.get("goal"), str) else None
                view.steps = [{"index": n, **step, "calls": []} for n, step in enumerate(plan["steps"])
                              if isinstance(step, dict)]
        elif entry.get("kind") == "guard_decision" and body.get("event") == "PreToolUse":
            step = body.get("plan_step") if isinstance(body.get("plan_step"), int) else None
            known = steps_of.get(str(body.get("plan_hash")), [])
            named = known[step] if step is not None and 0 <= step < len(known) else None
            description = named.get("description") if isinstance(named, dict) else None
            call = PlanCall(_at(entry), body.get("tool_name"), _text(body.get("command")), body.get("decision"),
                            body.get("plan_hash"), step, description, body.get("reason"))
            view.calls.append(call)
            if step is not None and call.plan_hash == view.plan_hash and 0 <= step < len(view.steps) \
                    and call.decision == "allow":
                view.steps[step]["calls"].append(asdict(call))
            elif body.get("rule") == "plan":
                view.off_plan.append(call)
    return view


def _text(command: Any) -> str | None:
    if isinstance(command, str) or command is None:
        return command
    if isinstance(command, dict):  # the ledger stores a long command as its head, sha256 and length
        return str(command.get("head") or command.get("sha256") or command)
    return str(command)


@click.command()
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def plan(session: str, as_json: bool) -> None:
    """The plan SESSION's agent registered, its revisions, and the step each tool call matched."""
    from supervisor import paths, store
    from supervisor.govern import ledger
    from supervisor.report import views

    record = store.get(session)
    sdir = paths.session_dir(record["session"])
    entries = ledger.read(sdir) if (sdir / ledger.LEDGER).exists() or (sdir / ledger.SPOOL).exists() else []
    view = fold(record["session"], entries)
    if as_json:
        print_json({**asdict(view)})
        return
    if view.plan_hash is None:
        click.echo(f"session {view.session} has registered no plan")
        return
    p = views.printable
    click.echo(f"plan {p(view.plan_hash)} (revision {view.revision}, from {p(view.source)})")
    click.echo(f"goal: {p(view.goal or '-')}")
    for step in view.steps:
        inputs = (step.get("metadata") or {}).get("inputs") if isinstance(step.get("metadata"), dict) else None
        click.echo(f"  {step['index'] + 1}. [{p(step.get('action'))}] {p(step.get('description') or '')}"
                   + (f"  inputs: {p(inputs)}" if inputs else ""))
        for call in step["calls"]:
            click.echo(f"       {p(call['at'])}  {p(call['tool_name'])}: {p(call['command'] or '')}")
    earlier = [c for c in view.calls if c.step is not None and c.plan_hash != view.plan_hash]
    if earlier:
        click.echo("under earlier revisions:")
        for call in earlier:
            click.echo(f"  {p(call.at)}  step {(call.step or 0) + 1} ({p(call.step_description or '-')}) of "
                       f"{p(str(call.plan_hash)[:19])}  {p(call.tool_name)}: {p(call.command or '')}")
    if view.off_plan:
        click.echo("denied, not in the plan:")
        for denied in view.off_plan:
            click.echo(f"  {p(denied.at)}  {p(denied.tool_name)}: {p(denied.command or '')}")
    if len(view.revisions) > 1:
        click.echo("revisions: " + ", ".join(f"{r['revision']} {p(r['source'])} {p(str(r['plan_hash'])[:19])}"
                                             for r in view.revisions))
