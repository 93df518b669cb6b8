"""The operator's verbs: `ao policy`, `ao guard pause|resume`, `ao revoke`, `ao budget`, `ao approvals`.

Changes travel through the session's private `operator.json` (govern/operator.py), never over the
guard's socket, which the agent can reach; each one is signed into the session's ledger.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.records import SessionRecord
from supervisor.report import views
from supervisor.report.common import print_json, print_result

REVOKED_ERROR = "revoked by the operator"


def _session(session: str) -> tuple[SessionRecord, Path]:
    record = store.get(session)
    return record, paths.session_dir(record["session"])


def _compiled(record: SessionRecord, session_dir: Path) -> dict[str, Any]:
    from supervisor.govern import guard

    try:
        return guard.load_policy(str(session_dir), record["session"])
    except guard.GuardError as exc:
        raise FatalError(str(exc)) from None


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def source_text(source: dict[str, Any] | None) -> str:
    """`global /home/u/.agent-orchestrator/agent-orchestrator.yaml:12`, `builtin`, or `default`."""
    if not source:
        return "default"
    if source.get("scope") == "builtin":
        return "builtin (ao protects its own state)"
    where = str(source.get("file") or "?") + (f":{source['line']}" if source.get("line") else "")
    more = "".join(f" + {source_text(s)}" for s in source.get("also") or [])
    return f"{source.get('scope')} {where}{more}"


def policy_view(session: str, now: float | None = None) -> dict[str, Any]:
    """The compiled policy in force, rule by rule with its source, and the operator's live controls."""
    from supervisor.govern import operator, policy

    now = time.time() if now is None else now
    record, session_dir = _session(session)
    compiled = _compiled(record, session_dir)
    controls = operator.read(session_dir)
    paused = operator.paused_now(controls, now)
    pausable = set(operator.pausable_rules(compiled))
    sources = compiled.get("sources")
    known_sources = isinstance(sources, dict)
    sources = sources if isinstance(sources, dict) else {}
    rules: list[dict[str, Any]] = []

    def add(name: str, kind: str, what: Any, reason: str | None) -> None:
        rules.append({"rule": name, "kind": kind, "what": what, "reason": reason, "source": sources.get(name),
                      "pausable": name in pausable,
                      "paused_until": controls.paused[name] if name in paused else None})

    for kind in ("forbidden_commands", "approval_required"):
        for i, rule in enumerate(compiled.get(kind) or []):
            add(policy.rule_name(kind, i), kind, rule.get("pattern"), rule.get("reason"))
    for rule in compiled.get("forbidden_paths") or []:
        add(policy.rule_name("forbidden_paths", rule["glob"]), "forbidden_paths", rule["glob"], rule.get("reason"))
    mcp = compiled.get("mcp") or {}
    if mcp.get("allow_names") or mcp.get("deny_names"):
        add("mcp", "mcp", {"allow": mcp.get("allow_names") or [], "deny": mcp.get("deny_names") or []}, None)
    if compiled.get("budget_usd") is not None:
        add("budget_usd", "budget_usd", compiled["budget_usd"], None)
    daily = compiled.get("budget_usd_per_day") or {}
    settings = {key: {"value": compiled.get(key), "source": sources.get(key)}
                for key in ("approval_timeout_s", "allow_repo_hooks", "plan")}
    for level in ("global", "project"):
        settings[f"budget_usd_per_day.{level}"] = {"value": daily.get(level),
                                                   "source": sources.get(f"budget_usd_per_day.{level}")}
    return {"session": record["session"], "name": record.get("name"), "status": record["status"],
            "policy_file": str(session_dir / policy.POLICY_FILE),
            "sources_recorded": known_sources, "rules": rules, "settings": settings,
            "operator": {**controls.as_json(), "paused_now": sorted(paused),
                         "budget_in_force": controls.budget_usd if controls.budget_usd is not None
                         else compiled.get("budget_usd")},
            "compiled": compiled}


def _policy_text(view: dict[str, Any]) -> str:
    from tabulate import tabulate

    body = [[r["rule"], _short(r["what"]), source_text(r["source"]) if view["sources_recorded"] else "unrecorded",
             f"paused until {_when(r['paused_until'])}" if r["paused_until"] else "active"] for r in view["rules"]]
    body = [[views.printable(cell) for cell in row] for row in body]
    named = f" ({view['name']})" if view["name"] else ""
    lines = [f"policy of {view['session']}{named}: {view['policy_file']}",
             tabulate(body, headers=["RULE", "WHAT", "SOURCE", "STATE"], tablefmt="simple", disable_numparse=True)
             if body else "no rules"]
    for key, setting in view["settings"].items():
        lines.append(f"{key}: {setting['value']} ({source_text(setting['source'])})")
    op = view["operator"]
    if op["budget_usd"] is not None:
        lines.append(f"operator budget override: ${op['budget_usd']} (policy: {view['compiled'].get('budget_usd')})")
    if op["revoked"]:
        lines.append(f"REVOKED by the operator at {_when(op['revoked_at'])}: every tool call is denied")
    if not view["sources_recorded"]:
        lines.append("note: this policy was compiled before ao recorded where rules come from")
    return "\n".join(lines)


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


@click.command("policy")
@click.argument("session")
@click.option("--json", "as_json", is_flag=True, help="Print the rules, their sources and the live controls as JSON.")
def policy_cmd(session: str, as_json: bool) -> None:
    """The policy in force for SESSION: each rule with where it came from, and what the operator paused."""
    from supervisor.govern import operator

    view = policy_view(session)
    operator.note(paths.session_dir(view["session"]), "view_policy", {})
    if as_json:
        print_json(view)
    else:
        click.echo(_policy_text(view))


@click.group("guard")
def guard_group() -> None:
    """Pause or resume one policy rule of a session."""


def pause_rule(session: str, rule: str, duration: str) -> dict[str, Any]:
    from supervisor.govern import operator

    record, session_dir = _session(session)
    operator.check_rule(_compiled(record, session_dir), rule)
    seconds = operator.parse_duration(duration, operator.MAX_PAUSE_S)
    until = time.time() + seconds
    controls = operator.pause(session_dir, rule, until)
    return {"session": record["session"], "rule": rule, "paused_until": until, "seconds": seconds,
            "operator": controls.as_json()}


def resume_rule(session: str, rule: str) -> dict[str, Any]:
    from supervisor.govern import operator

    record, session_dir = _session(session)
    controls = operator.resume(session_dir, rule)
    return {"session": record["session"], "rule": rule, "operator": controls.as_json()}


@guard_group.command("pause")
@click.argument("session")
@click.argument("rule")
@click.option("--for", "duration", required=True, metavar="DURATION",
              help="How long: 90s, 10m, 2h (at most 24h); the rule comes back by itself.")
@click.option("--json", "as_json", is_flag=True)
def pause_cmd(session: str, rule: str, duration: str, as_json: bool) -> None:
    """Suspend RULE (as `ao policy SESSION` names it) for a while."""
    result = pause_rule(session, rule, duration)
    print_result(result, as_json,
                 f"{result['session']}: {views.printable(rule)} paused until {_when(result['paused_until'])}")


@guard_group.command("resume")
@click.argument("session")
@click.argument("rule")
@click.option("--json", "as_json", is_flag=True)
def resume_cmd(session: str, rule: str, as_json: bool) -> None:
    """Restore a paused RULE now."""
    result = resume_rule(session, rule)
    print_result(result, as_json, f"{result['session']}: {views.printable(rule)} is enforced again")


def revoke_session(session: str) -> dict[str, Any]:
    """Deny every further call (the guard reads the control file), stop the agent, seal its ledger."""
    from supervisor.govern import ledger, operator
    from supervisor.sessions import control

    record, session_dir = _session(session)
    sid = record["session"]
    controls = operator.revoke(session_dir)  # first: the guard denies even while the kill is under way
    killed = store.is_live(record)
    try:
        control.kill(sid)  # also ends what a finished session may have left running
    except FatalError:  # it ended between our look and the kill: nothing left to stop
        killed = False
    store.update(sid, error=REVOKED_ERROR)
    ledger.seal(session_dir)
    return {"session": sid, "revoked_at": controls.revoked_at, "killed": killed,
            "status": store.get(sid)["status"], "error": REVOKED_ERROR, "ledger": str(session_dir / ledger.LEDGER)}


@click.command("revoke")
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def revoke_cmd(session: str, as_json: bool) -> None:
    """Deny every further tool call of SESSION, stop its agent now and seal its ledger."""
    result = revoke_session(session)
    stopped = "agent stopped" if result["killed"] else f"it was not running ({result['status']})"
    print_result(result, as_json, f"{result['session']} revoked: every tool call is denied, {stopped}, ledger sealed")


def set_budget(session: str, usd: str) -> dict[str, Any]:
    from supervisor.govern import operator

    try:
        value = float(usd)
    except ValueError:
        raise FatalError(f"budget {usd!r} is not a number of USD (e.g. 2.50)") from None
    record, session_dir = _session(session)
    compiled = _compiled(record, session_dir)
    controls = operator.set_budget(session_dir, value)
    return {"session": record["session"], "budget_usd": controls.budget_usd, "policy_budget_usd":
            compiled.get("budget_usd"), "status": record["status"], "operator": controls.as_json()}


@click.command("budget")
@click.argument("session")
@click.argument("usd")
@click.option("--json", "as_json", is_flag=True)
def budget_cmd(session: str, usd: str, as_json: bool) -> None:
    """Raise or lower SESSION's budget ceiling to USD while it runs."""
    result = set_budget(session, usd)
    if as_json:
        print_json(result)
        return
    click.echo(f"{result['session']}: budget ${result['budget_usd']:.4f} (policy: {result['policy_budget_usd']})")
    if result["status"] == "blocked":
        click.echo(f"the budget stopped it before; `ao resume {result['session']}` continues it", err=True)


def pending_rows(now: float | None = None) -> list[dict[str, Any]]:
    """Every approval waiting for a human, with its session's id and name, age and time left."""
    from supervisor.govern import guard

    now = time.time() if now is None else now
    names = {r["session"]: r.get("name") for r in store.all_sessions()}
    rows = []
    for record in guard.pending_approvals(str(paths.ao_home())):
        created, timeout_at = record.get("created"), record.get("timeout_at")
        rows.append({"id": record.get("id"), "session": record.get("session"),
                     "name": names.get(str(record.get("session"))),
                     "command": record.get("command"), "command_head": record.get("command_head"),
                     "command_len": record.get("command_len"), "command_sha256": record.get("command_sha256"),
                     "tool_name": record.get("tool_name"), "reason": record.get("reason"),
                     "created": created, "timeout_at": timeout_at,
                     "age_s": round(now - created, 1) if isinstance(created, (int, float)) else None,
                     "timeout_in_s": round(timeout_at - now, 1) if isinstance(timeout_at, (int, float)) else None})
    return rows


@click.command("approvals")
@click.option("--json", "as_json", is_flag=True)
def approvals_cmd(as_json: bool) -> None:
    """The tool calls waiting for `ao approve` / `ao deny`, across sessions, oldest first."""
    from supervisor.govern import operator
    from supervisor.report.cmd_govern import describe_command

    rows = pending_rows()
    for session in sorted({str(r["session"]) for r in rows if r["session"]}):
        operator.note(paths.session_dir(session), "list_approvals",
                      {"approvals": [r["id"] for r in rows if r["session"] == session]})
    if as_json:
        print_json({"approvals": rows})
        return
    if not rows:
        click.echo("no approvals waiting")
    for row in rows:
        who = str(row["session"]) + (f" ({row['name']})" if row["name"] else "")
        click.echo(views.printable(f"{row['id']}  session {who}  waiting {row['age_s']:.0f}s, "
                                   f"times out in {max(row['timeout_in_s'] or 0, 0):.0f}s  [{row['reason']}]"))
        for line in describe_command(row).splitlines():
            click.echo("    " + views.printable(line))
