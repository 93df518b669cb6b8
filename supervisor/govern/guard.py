"""The guard's decisions as plain functions: rules, paths, MCP, spend, approvals and plans.

`GuardServer` (guard_server.py) calls them in the session's runner, outside the agent's reach;
codex only runs the thin `hook_client`. Nothing here takes a lock the agent could hold on the
decision path. The approval files under `$AO_HOME/approvals/` are how `ao approve` / `ao deny`
answer a waiting server, and `session_governance` is what `ao status` reads.
"""
from __future__ import annotations

import json
import os
import stat
import time
from typing import TYPE_CHECKING, Any

from supervisor.govern.targets import command_targets, patch_files, path_rule_hit, resolve_path, rule_regex
from supervisor.observe import codex_format as cf
from supervisor.redact import redact

if TYPE_CHECKING:
    from decimal import Decimal

    from supervisor.observe.pricing import Price

# the hook events the guard answers, named where codex's formats are
PRE, POST, PROMPT, START, STOP = (cf.Hook.PRE_TOOL_USE, cf.Hook.POST_TOOL_USE, cf.Hook.USER_PROMPT_SUBMIT,
                                  cf.Hook.SESSION_START, cf.Hook.STOP)
EVENTS = (START, PROMPT, PRE, POST, STOP)
STATE = "guard-state.json"
POLICY = "policy.json"
MAX_TEXT = 2000               # receipts: the command as the ledger shows it
MAX_APPROVAL_COMMAND = 16000  # approval records: longer commands are named by sha256 and length
MAX_FILE = 16 * 1024 * 1024   # policy, state and approval files are small; a huge one is an attack


class GuardError(Exception):
    """The guard cannot decide safely (policy unreadable, bad argument); callers deny."""


def read_regular(path: str, limit: int = MAX_FILE) -> bytes:
    """A regular file's bytes; never blocks on a FIFO or follows a last-component symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise GuardError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise GuardError(f"{path} is larger than {limit} bytes")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def write_json_atomic(path: str, value: Any) -> None:
    from pathlib import Path

    from supervisor import paths

    paths.atomic_write(Path(path), compact_json(value), mode=0o600)


def load_policy(session_dir: str, session: str) -> dict[str, Any]:
    """The compiled policy (policy.compile_policy), checked to be this session's."""
    path = os.path.join(session_dir, POLICY)
    try:
        policy = json.loads(read_regular(path))
    except (OSError, ValueError, GuardError) as exc:
        raise GuardError(f"cannot read the session policy {path}: {exc}") from None
    if not isinstance(policy, dict) or policy.get("format") != 1 or policy.get("session") != session \
            or not isinstance(policy.get("workspace"), str):
        raise GuardError(f"the session policy {path} is corrupt or belongs to another session; "
                         "spawn the session again to recompile it")
    return policy


# --- state (a copy for `ao status` and restarts; the server's memory is authoritative) ------------

def read_state(session_dir: str) -> dict[str, Any]:
    path = os.path.join(session_dir, STATE)
    try:
        state = json.loads(read_regular(path))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, GuardError) as exc:
        raise GuardError(f"cannot read the guard state {path}: {exc}") from None
    if not isinstance(state, dict):
        raise GuardError(f"the guard state {path} is not a JSON object")
    return state


# --- what a tool call touches -----------------------------------------------------------------------

# codex 0.169.0 names shell calls "Bash"; the others are names codex has used for its shell tools
SHELL_TOOLS = frozenset({"Bash", "shell", "local_shell", "exec_command", "container.exec"})


def unknown_payload(payload: dict[str, Any]) -> str | None:
    """Why a PreToolUse payload is not one the rules can read (codex's hook format changed?), or None."""
    tool_name = payload.get("tool_name")
    if not isinstance(tool_name, str) or not tool_name:
        why = "it names no tool"
    elif "tool_input" not in payload:
        why = "it carries no tool_input"
    elif tool_name in SHELL_TOOLS and not _shell_text(payload.get("tool_input")):
        why = f"its {tool_name} input holds no command text"
    else:
        return None
    return (f"ao's guard does not recognise this PreToolUse payload ({why}; did codex's hook format "
            "change?); failing closed")


def _shell_text(tool_input: Any) -> bool:
    if isinstance(tool_input, str):
        return bool(tool_input)
    return isinstance(tool_input, dict) and any(isinstance(tool_input.get(k), str) for k in ("command", "cmd"))


def command_text(payload: dict[str, Any]) -> str:
    tool_input = payload.get("tool_input")
    if isinstance(tool_input, dict) and isinstance(tool_input.get("command"), str):
        return tool_input["command"]
    if isinstance(tool_input, dict) and isinstance(tool_input.get("cmd"), str):
        return tool_input["cmd"]
    if isinstance(tool_input, str):
        return tool_input
    return f"{payload.get('tool_name', '')} {compact_json(tool_input)}"


def mcp_hit(policy: dict[str, Any], tool_name: str) -> str | None:
    if not tool_name.startswith("mcp__"):
        return None
    server, _, tool = tool_name[5:].partition("__")
    subject = f"{server}/{tool}"
    mcp = policy.get("mcp") or {}
    for regex, name in zip(mcp.get("deny", []), mcp.get("deny_names", []), strict=False):
        if rule_regex(regex).fullmatch(subject):
            return f"MCP tool {subject} is denied by policy (mcp.deny: {name})"
    allow = mcp.get("allow") or []
    if allow and not any(rule_regex(regex).fullmatch(subject) for regex in allow):
        return f"MCP tool {subject} is not in the policy's mcp.allow list"
    return None


def first_match(rules: list[dict[str, str]], text: str, name: str = "",
                skip: frozenset[str] | set[str] = frozenset()) -> tuple[int, dict[str, str]] | None:
    """The first rule whose pattern matches; rules named `name[N]` in `skip` (paused) are passed over."""
    for number, rule in enumerate(rules):
        if f"{name}[{number}]" not in skip and rule_regex(rule["pattern"]).search(text):
            return number, rule
    return None


def rule_denial(policy: dict[str, Any], payload: dict[str, Any], text: str,
                skip: frozenset[str] | set[str] = frozenset()) -> tuple[str, str] | None:
    """(reason, rule name) when forbidden_commands, forbidden_paths or the MCP lists deny the call.

    `skip` holds the rule names the operator paused (`ao guard pause`)."""
    hit = first_match(policy.get("forbidden_commands") or [], text, "forbidden_commands", skip)
    if hit:
        return hit[1]["reason"], f"forbidden_commands[{hit[0]}]"
    tool_name = str(payload.get("tool_name") or "")
    live_paths = [r for r in policy.get("forbidden_paths") or [] if f"forbidden_paths {r['glob']}" not in skip]
    if live_paths:
        cwd = str(payload["cwd"]) if isinstance(payload.get("cwd"), str) else str(policy["workspace"])
        targets = [(resolve_path(p, cwd), False) for p in patch_files(text)] if tool_name == "apply_patch" \
            else command_targets(text, cwd)
        rule = path_rule_hit({**policy, "forbidden_paths": live_paths}, targets)
        if rule:
            return rule["reason"], f"forbidden_paths {rule['glob']}"
    mcp_reason = mcp_hit(policy, tool_name) if "mcp" not in skip else None
    if mcp_reason:
        return mcp_reason, "mcp"
    return None


def approval_gate(policy: dict[str, Any], text: str,
                  skip: frozenset[str] | set[str] = frozenset()) -> tuple[int, dict[str, str]] | None:
    return first_match(policy.get("approval_required") or [], text, "approval_required", skip)


def call_body(event: str, payload: dict[str, Any], text: str) -> dict[str, Any]:
    """A receipt's body; the ledger turns a long command into its sha256, length and a labelled head."""
    return {"event": event, "tool_name": payload.get("tool_name"), "tool_use_id": payload.get("tool_use_id"),
            "command": text, "thread_id": payload.get("session_id"), "turn_id": payload.get("turn_id")}


# --- spend ------------------------------------------------------------------------------------------

def price_for(policy: dict[str, Any], model: str | None) -> Price | None:
    """The session model's price, or the payload model's where that costs more (never less)."""
    from decimal import Decimal

    from supervisor.observe import pricing

    def one(name: Any) -> Price | None:
        if not isinstance(name, str) or not name:
            return None
        listed = (policy.get("prices") or {}).get(name)
        if isinstance(listed, list) and len(listed) == 3:
            return pricing.Price(*(Decimal(str(v)) for v in listed))
        return pricing.lookup(pricing.load_table(), name)

    base, other = one(policy.get("model")), one(model) if model != policy.get("model") else None
    if base is None or other is None:
        return base or other
    return pricing.Price(max(base.input, other.input), max(base.cached_input, other.cached_input),
                         max(base.output, other.output))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def rollout_usage(lines: bytes, price: Price | None) -> tuple[Decimal, list[str | None]]:
    """One pass over new rollout lines: what their token_usage_records cost (the one formula in
    pricing.cost), and in file order a tool call's call_id, or None for a response's usage record.

    codex 0.169.0 writes a response's function calls, then its usage record (measured: 3 ms later,
    before the call runs), so the calls before a record are the ones that response asked for.
    """
    import json
    from decimal import Decimal

    from supervisor.observe import pricing

    total = Decimal(0)
    marks: list[str | None] = []
    for line in lines.splitlines():
        if b'"token_usage_record"' not in line and (b'_call"' not in line or b'"call_id"' not in line):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        payload = record.get("payload") if isinstance(record, dict) else None
        if not isinstance(payload, dict):
            continue
        if record.get("type") == "token_usage_record":
            marks.append(None)
            usage = payload.get("usage")
            if isinstance(usage, dict):
                total += pricing.cost(price, _count(usage.get("input_tokens")),
                                      _count(usage.get("cached_input_tokens")), _count(usage.get("output_tokens")))
        elif record.get("type") == "response_item" and isinstance(payload.get("call_id"), str) \
                and payload.get("type") in ("function_call", "custom_tool_call", "local_shell_call"):
            marks.append(payload["call_id"])
    return total, marks


# --- plans and prompts ------------------------------------------------------------------------------

def plan_blocks(text: str) -> list[str]:
    """The fenced JSON blocks in an agent message (its written plan), in order."""
    out, rest = [], text
    while "```json" in rest:
        rest = rest.split("```json", 1)[1]
        if "```" not in rest:
            break
        block, rest = rest.split("```", 1)
        out.append(block.strip())
    return out


def digest(text: str) -> str:
    from supervisor.digest import sha256

    return "sha256:" + sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- approvals --------------------------------------------------------------------------------------

def approvals_dir(home: str) -> str:
    return os.path.join(home, "approvals")


def _approval_path(home: str, approval_id: str) -> str:
    if not approval_id or "/" in approval_id or approval_id.startswith(".") or "\0" in approval_id:
        raise GuardError(f"bad approval id {approval_id!r}")
    return os.path.join(approvals_dir(home), approval_id + ".json")


def approval_record(session: str, payload: dict[str, Any], rule: dict[str, str], text: str,
                    timeout: float, now: float | None = None) -> dict[str, Any]:
    """A new pending approval: the full command, or its sha256 and length when it is too long to show."""
    now = time.time() if now is None else now
    record = {"id": "ap-" + os.urandom(6).hex(), "session": session, "status": "pending", "created": now,
              "timeout_at": now + timeout, "reason": rule["reason"], "pattern": rule["pattern"],
              "tool_name": payload.get("tool_name"), "tool_use_id": payload.get("tool_use_id"),
              "thread_id": payload.get("session_id"), "command_len": len(text),
              "command_sha256": digest(text)[7:]}
    if len(text) <= MAX_APPROVAL_COMMAND:
        record["command"] = redact(text)
    else:  # never a silent prefix: the operator sees that the command is longer than shown
        record["command"] = None
        record["command_truncated"] = True
        record["command_head"] = redact(text[:MAX_TEXT])
    return record


def write_approval(home: str, record: dict[str, Any]) -> None:
    os.makedirs(approvals_dir(home), mode=0o700, exist_ok=True)
    write_json_atomic(_approval_path(home, record["id"]), record)


def read_approval(home: str, approval_id: str) -> dict[str, Any]:
    record = json.loads(read_regular(_approval_path(home, approval_id)))
    if not isinstance(record, dict):
        raise GuardError(f"approval {approval_id} is not a JSON object")
    return record


def resolve_approval(home: str, approval_id: str, status: str, reason: str | None = None,
                     by: str = "ao") -> dict[str, Any]:
    """Move a pending approval to approved, denied or expired; returns the record as it ends up.

    The lock only orders `ao approve` against `ao deny`; the guard server never waits for it.
    """
    from supervisor.locking import file_lock

    os.makedirs(approvals_dir(home), mode=0o700, exist_ok=True)
    with file_lock(os.path.join(approvals_dir(home), ".lock")):
        record = read_approval(home, approval_id)
        if record.get("status") == "pending":
            record.update(status=status, decided_at=time.time(), decided_by=by, decision_reason=reason)
            write_json_atomic(_approval_path(home, approval_id), record)
        return record


def approval_outcome(record: dict[str, Any], rule: dict[str, str]) -> tuple[bool, str]:
    status = record.get("status")
    if status == "approved":
        return True, f"approved ({record['id']})"
    why = record.get("decision_reason") or ("denied" if status == "denied" else status)
    return False, f"ao approval {record['id']} {status}: {why} (needed because: {rule['reason']})"


def pending_approvals(home: str, session: str | None = None) -> list[dict[str, Any]]:
    """Approvals still waiting for `ao approve` / `ao deny`, oldest first."""
    try:
        names = sorted(n for n in os.listdir(approvals_dir(home)) if n.endswith(".json"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            record = read_approval(home, name[:-5])
        except (OSError, ValueError, GuardError):
            continue
        if record.get("status") == "pending" and (session is None or record.get("session") == session):
            out.append(record)
    return sorted(out, key=lambda r: r.get("created") or 0)


def session_governance(home: str, session: str) -> dict[str, Any]:
    """What `ao status` needs: spend, whether the budget stopped the agent, a pending approval."""
    try:
        if not session or "/" in session or session.startswith("."):
            raise GuardError(f"bad session id {session!r}")
        state = read_state(os.path.join(home, "sessions", session))
    except GuardError as exc:
        state = {"error": str(exc)}
    waiting = pending_approvals(home, session)
    return {"spent_usd": state.get("spent_usd"), "budget_blocked": bool(state.get("budget_stopped")),
            "waiting_input": waiting[0]["id"] if waiting else None,
            "prompt_hash": state.get("prompt_hash"), "state_error": state.get("error")}
