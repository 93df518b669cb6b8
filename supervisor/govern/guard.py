"""The hook command codex runs on PreToolUse, PostToolUse, UserPromptSubmit, SessionStart and Stop.

PreToolUse is the hot path: codex waits for it before every tool call. It imports no `json`,
`re`, `typing` or crypto (lean.py stands in with the C accelerators; fcntl only when it must
lock), reads the compiled policy and a small state file, and appends its receipt to the unsigned
spool. Signing (the `cryptography` import alone costs ~15 ms) happens in `ledger.seal()` from
PostToolUse and Stop, and in every reader of the ledger.

Deny = exit 2 with the reason on stderr (codex 0.169.0 honours that and the hookSpecificOutput
JSON alike). Any error on PreToolUse denies too: codex treats other failures as "allow".
"""
from __future__ import annotations

import os
import sys
import time

from supervisor.govern import lean
from supervisor.redact import redact
from supervisor.govern.targets import command_targets, patch_files, path_rule_hit, resolve_path

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs several ms of start-up; annotations are never evaluated here
    from typing import Any

PRE, POST, PROMPT, START, STOP = "PreToolUse", "PostToolUse", "UserPromptSubmit", "SessionStart", "Stop"
DENY_EXIT = 2
STATE = "guard-state.json"
SPOOL = "ledger.spool.jsonl"
POLICY = "policy.json"
MAX_TEXT = 2000
POLL_S = 0.2

try:  # hashlib loads OpenSSL (~5 ms); the builtin sha256 is enough for prompt hashes
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.12 renamed it
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,no-redef]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment]


class GuardError(Exception):
    """The guard cannot decide safely (policy or state unreadable); PreToolUse then denies."""


def _flock(path: str) -> Any:
    """An exclusive lock on `path`, released when the returned file is closed."""
    import fcntl

    fh = open(path, "a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
    except BaseException:
        fh.close()
        raise
    return fh


class Session:
    def __init__(self, home: str, session: str) -> None:
        if not home or not session or "/" in session or session.startswith("."):
            raise GuardError(f"bad guard arguments: home={home!r} session={session!r}")
        self.home = home
        self.session = session
        self.dir = os.path.join(home, "sessions", session)
        self._policy: dict[str, Any] | None = None
        self.deadline: float | None = None  # answer before codex's hook timeout, which would allow

    @property
    def policy(self) -> dict[str, Any]:
        if self._policy is None:
            path = os.path.join(self.dir, POLICY)
            try:
                with open(path, "rb") as fh:
                    policy = lean.loads(fh.read())
            except (OSError, ValueError) as exc:
                raise GuardError(f"cannot read the session policy {path}: {exc}") from None
            if not isinstance(policy, dict) or policy.get("format") != 1 or policy.get("session") != self.session:
                raise GuardError(f"the session policy {path} is corrupt or belongs to another session")
            self._policy = policy
        return self._policy

    # --- state: spend, transcript offsets, prompt hash --------------------------------------------

    def read_state(self) -> dict[str, Any]:
        path = os.path.join(self.dir, STATE)
        try:
            with open(path, "rb") as fh:
                state = lean.loads(fh.read())
        except FileNotFoundError:
            return {"spent_usd": 0.0, "offsets": {}, "prompt_hash": None, "budget_stopped": False}
        except (OSError, ValueError) as exc:
            raise GuardError(f"cannot read the guard state {path}: {exc}") from None
        if not isinstance(state, dict) or not isinstance(state.get("offsets"), dict) \
                or not isinstance(state.get("spent_usd"), (int, float)):
            raise GuardError(f"the guard state {path} is corrupt")
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        path = os.path.join(self.dir, STATE)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(lean.dumps(state))
        os.replace(tmp, path)

    def lock(self) -> Any:
        return _flock(os.path.join(self.dir, "guard.lock"))

    def spool(self, kind: str, body: dict[str, Any], prompt_hash: str | None) -> None:
        line = lean.dumps({"ts": time.time(), "kind": kind, "body": redact(body), "prompt_hash": prompt_hash}) + "\n"
        fd = os.open(os.path.join(self.dir, SPOOL), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


# --- spend ------------------------------------------------------------------------------------------

def _price(policy: dict[str, Any], model: str | None) -> list[float] | None:
    prices = policy.get("prices") or {}
    model = model or policy.get("model")
    if model in prices:
        return prices[model]
    from supervisor.observe import pricing  # only for a model the policy did not price ahead

    price = pricing.lookup(pricing.load_table(), model)
    return [float(price.input), float(price.cached_input), float(price.output)] if price else None


def usage_cost(usage: dict[str, Any], price: list[float] | None) -> float:
    if not price:
        return 0.0
    total_in = int(usage.get("input_tokens") or 0)
    cached = int(usage.get("cached_input_tokens") or 0)
    out = int(usage.get("output_tokens") or 0)
    return (max(total_in - cached, 0) * price[0] + cached * price[1] + out * price[2]) / 1e6


def update_spend(s: Session, payload: dict[str, Any]) -> dict[str, Any]:
    """Price the token_usage_record lines added to the rollout since the last look; returns the state."""
    lock = s.lock()
    try:
        state = s.read_state()
        path = payload.get("transcript_path")
        if isinstance(path, str) and path:
            offset = int(state["offsets"].get(path, 0))
            try:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except FileNotFoundError:
                chunk = b""
            whole = chunk[:chunk.rfind(b"\n") + 1]
            if whole:
                price = _price(s.policy, payload.get("model"))
                added = 0.0
                for line in whole.splitlines():
                    if b'"token_usage_record"' not in line:
                        continue
                    record = lean.loads(line)
                    if record.get("type") == "token_usage_record":
                        added += usage_cost((record.get("payload") or {}).get("usage") or {}, price)
                state["spent_usd"] = round(float(state["spent_usd"]) + added, 9)
                state["offsets"][path] = offset + len(whole)
                s.write_state(state)
        return state
    finally:
        lock.close()


def check_budget(s: Session, state: dict[str, Any], payload: dict[str, Any]) -> str | None:
    """The deny reason once spend reached the budget; records one budget_stop the first time."""
    budget = s.policy.get("budget_usd")
    if budget is None or float(state["spent_usd"]) < float(budget):
        return None
    reason = f"ao budget reached: spent ${state['spent_usd']:.4f} of ${float(budget):.4f}; no further tool calls"
    if not state.get("budget_stopped"):
        lock = s.lock()
        try:
            fresh = s.read_state()
            if not fresh.get("budget_stopped"):
                fresh["budget_stopped"] = True
                s.write_state(fresh)
                s.spool("budget_stop", {"spent_usd": state["spent_usd"], "budget_usd": budget,
                                        "event": payload.get("hook_event_name"),
                                        "tool_name": payload.get("tool_name")}, state.get("prompt_hash"))
        finally:
            lock.close()
    return reason


# --- what a tool call touches -----------------------------------------------------------------------

def command_text(payload: dict[str, Any]) -> str:
    tool_input = payload.get("tool_input")
    if isinstance(tool_input, dict) and isinstance(tool_input.get("command"), str):
        return tool_input["command"]
    if isinstance(tool_input, dict) and isinstance(tool_input.get("cmd"), str):
        return tool_input["cmd"]
    if isinstance(tool_input, str):
        return tool_input
    return f"{payload.get('tool_name', '')} {lean.dumps(tool_input)}"


def mcp_hit(policy: dict[str, Any], tool_name: str) -> str | None:
    if not tool_name.startswith("mcp__"):
        return None
    server, _, tool = tool_name[5:].partition("__")
    subject = f"{server}/{tool}"
    mcp = policy.get("mcp") or {}
    programs = policy.get("programs") or {}
    for regex, name in zip(mcp.get("deny", []), mcp.get("deny_names", [])):
        if lean.compiled_regex(regex, programs.get(regex)).fullmatch(subject):
            return f"MCP tool {subject} is denied by policy (mcp.deny: {name})"
    allow = mcp.get("allow") or []
    if allow and not any(lean.compiled_regex(regex, programs.get(regex)).fullmatch(subject) for regex in allow):
        return f"MCP tool {subject} is not in the policy's mcp.allow list"
    return None


def first_match(rules: list[dict[str, str]], text: str,
                programs: dict[str, Any] | None = None) -> tuple[int, dict[str, str]] | None:
    for number, rule in enumerate(rules):
        if lean.compiled_regex(rule["pattern"], (programs or {}).get(rule["pattern"])).search(text):
            return number, rule
    return None


# --- approvals --------------------------------------------------------------------------------------

def approvals_dir(home: str) -> str:
    return os.path.join(home, "approvals")


def _approval_path(home: str, approval_id: str) -> str:
    if not approval_id or "/" in approval_id or approval_id.startswith("."):
        raise GuardError(f"bad approval id {approval_id!r}")
    return os.path.join(approvals_dir(home), approval_id + ".json")


def _write_json(path: str, value: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(lean.dumps(value))
    os.replace(tmp, path)


def read_approval(home: str, approval_id: str) -> dict[str, Any]:
    with open(_approval_path(home, approval_id), "rb") as fh:
        return lean.loads(fh.read())


def resolve_approval(home: str, approval_id: str, status: str, reason: str | None = None,
                     by: str = "ao") -> dict[str, Any]:
    """Move a pending approval to approved, denied or expired; returns the record as it ends up."""
    os.makedirs(approvals_dir(home), exist_ok=True)
    with _flock(os.path.join(approvals_dir(home), ".lock")):
        record = read_approval(home, approval_id)
        if record.get("status") == "pending":
            record.update(status=status, decided_at=time.time(), decided_by=by, decision_reason=reason)
            _write_json(_approval_path(home, approval_id), record)
        return record


def wait_for_approval(s: Session, payload: dict[str, Any], rule: dict[str, str], text: str,
                      prompt_hash: str | None) -> tuple[bool, str]:
    timeout = float(s.policy.get("approval_timeout_s") or 300)
    if s.deadline is not None:
        timeout = max(min(timeout, s.deadline - time.time()), 0.0)
    approval_id = "ap-" + os.urandom(4).hex()
    os.makedirs(approvals_dir(s.home), exist_ok=True)
    now = time.time()
    record = {"id": approval_id, "session": s.session, "status": "pending", "created": now,
              "timeout_at": now + timeout, "reason": rule["reason"], "pattern": rule["pattern"],
              "tool_name": payload.get("tool_name"), "tool_use_id": payload.get("tool_use_id"),
              "command": redact(text[:MAX_TEXT]), "thread_id": payload.get("session_id")}
    _write_json(_approval_path(s.home, approval_id), record)
    s.spool("approval", {"id": approval_id, "status": "pending", "reason": rule["reason"],
                         "tool_name": payload.get("tool_name"), "command": text[:MAX_TEXT]}, prompt_hash)
    while True:
        record = read_approval(s.home, approval_id)
        if record.get("status") != "pending":
            break
        if time.time() >= now + timeout:
            record = resolve_approval(s.home, approval_id, "expired", f"no answer within {timeout:g}s", by="guard")
            break
        time.sleep(POLL_S)
    status = record.get("status")
    s.spool("approval", {"id": approval_id, "status": status, "decided_by": record.get("decided_by"),
                         "decision_reason": record.get("decision_reason")}, prompt_hash)
    if status == "approved":
        return True, f"approved ({approval_id})"
    why = record.get("decision_reason") or ("denied" if status == "denied" else status)
    return False, f"ao approval {approval_id} {status}: {why} (needed because: {rule['reason']})"


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
        except (OSError, ValueError):
            continue
        if record.get("status") == "pending" and (session is None or record.get("session") == session):
            out.append(record)
    return sorted(out, key=lambda r: r.get("created") or 0)


def session_governance(home: str, session: str) -> dict[str, Any]:
    """What `ao status` needs: spend, whether the budget stopped the agent, a pending approval."""
    state: dict[str, Any] = {}
    try:
        state = Session(home, session).read_state()
    except GuardError as exc:
        state = {"error": str(exc)}
    waiting = pending_approvals(home, session)
    return {"spent_usd": state.get("spent_usd"), "budget_blocked": bool(state.get("budget_stopped")),
            "waiting_input": waiting[0]["id"] if waiting else None,
            "prompt_hash": state.get("prompt_hash"), "state_error": state.get("error")}


# --- events -----------------------------------------------------------------------------------------

def _call_body(payload: dict[str, Any], text: str) -> dict[str, Any]:
    return {"event": payload.get("hook_event_name"), "tool_name": payload.get("tool_name"),
            "tool_use_id": payload.get("tool_use_id"), "command": text[:MAX_TEXT],
            "thread_id": payload.get("session_id"), "turn_id": payload.get("turn_id")}


def pre_tool_use(s: Session, payload: dict[str, Any]) -> tuple[bool, str]:
    """(allowed, reason) for one tool call; records a guard_decision either way."""
    policy = s.policy
    state = s.read_state()
    text = command_text(payload)
    tool_name = str(payload.get("tool_name") or "")
    cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else policy["workspace"]
    allowed, reason, rule_name = True, "", None
    hit = first_match(policy.get("forbidden_commands") or [], text, policy.get("programs"))
    if hit:
        allowed, reason, rule_name = False, hit[1]["reason"], f"forbidden_commands[{hit[0]}]"
    if allowed and policy.get("forbidden_paths"):
        targets = [(resolve_path(p, cwd), False) for p in patch_files(text)] if tool_name == "apply_patch" \
            else command_targets(text, cwd)
        rule = path_rule_hit(policy, targets)
        if rule:
            allowed, reason, rule_name = False, rule["reason"], f"forbidden_paths {rule['glob']}"
    if allowed:
        mcp_reason = mcp_hit(policy, tool_name)
        if mcp_reason:
            allowed, reason, rule_name = False, mcp_reason, "mcp"
    if allowed and policy.get("budget_usd") is not None:
        state = update_spend(s, payload)
        budget_reason = check_budget(s, state, payload)
        if budget_reason:
            allowed, reason, rule_name = False, budget_reason, "budget_usd"
    if allowed:
        gate = first_match(policy.get("approval_required") or [], text, policy.get("programs"))
        if gate:
            allowed, reason = wait_for_approval(s, payload, gate[1], text, state.get("prompt_hash"))
            rule_name = f"approval_required[{gate[0]}]"
    body = _call_body(payload, text)
    body.update(decision="allow" if allowed else "deny", reason=reason, rule=rule_name)
    s.spool("guard_decision", body, state.get("prompt_hash"))
    return allowed, reason


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


def record_plans(s: Session, payload: dict[str, Any], plans: list[str], source: str) -> None:
    """Plan attestation: each plan's SHA-256 goes to the ledger and onto every later receipt."""
    if not plans:
        return
    lock = s.lock()
    try:
        state = s.read_state()
        digests = ["sha256:" + sha256(plan.encode()).hexdigest() for plan in plans]
        state["plan_hash"] = digests[-1]
        state.setdefault("plan_hashes", []).extend(digests)
        s.write_state(state)
    finally:
        lock.close()
    for digest in digests:
        s.spool("lifecycle", {"event": "plan", "source": source, "plan_sha256": digest,
                              "thread_id": payload.get("session_id"), "turn_id": payload.get("turn_id")},
                state.get("prompt_hash"))


def post_tool_use(s: Session, payload: dict[str, Any]) -> None:
    body = _call_body(payload, command_text(payload))
    response = payload.get("tool_response")
    body["response"] = (response if isinstance(response, str) else lean.dumps(response))[:MAX_TEXT]
    if payload.get("tool_name") == "update_plan":  # codex's own plan tool
        record_plans(s, payload, [lean.dumps(payload.get("tool_input"))], "update_plan")
    state = update_spend(s, payload)
    body["plan_hash"] = state.get("plan_hash")
    s.spool("tool_call", body, state.get("prompt_hash"))
    check_budget(s, state, payload)
    _seal(s)


def user_prompt(s: Session, payload: dict[str, Any]) -> None:
    prompt = payload.get("prompt") if isinstance(payload.get("prompt"), str) else ""
    digest = "sha256:" + sha256(prompt.encode()).hexdigest()
    lock = s.lock()
    try:
        state = s.read_state()
        state["prompt_hash"] = digest
        state.setdefault("prompt_hashes", []).append(digest)
        s.write_state(state)
    finally:
        lock.close()
    s.spool("lifecycle", {"event": PROMPT, "prompt_sha256": digest, "chars": len(prompt),
                          "thread_id": payload.get("session_id"), "turn_id": payload.get("turn_id")}, digest)


def lifecycle(s: Session, payload: dict[str, Any], event: str) -> None:
    message = payload.get("last_assistant_message")
    if event == STOP and isinstance(message, str):
        record_plans(s, payload, plan_blocks(message), "fenced_json")
    state = update_spend(s, payload) if event == STOP else s.read_state()
    body = {"event": event, "thread_id": payload.get("session_id"), "model": payload.get("model"),
            "cwd": payload.get("cwd"), "source": payload.get("source"), "spent_usd": state.get("spent_usd")}
    s.spool("lifecycle", body, state.get("prompt_hash"))
    if event == STOP:
        check_budget(s, state, payload)
        _seal(s)


def _seal(s: Session) -> None:
    """Sign what was spooled. Off the PreToolUse path, so the cryptography import is paid here."""
    if sys.flags.no_site:  # launched with -S: site-packages (cryptography) are not on sys.path yet
        import site

        site.main()
    from pathlib import Path

    from supervisor.govern import ledger

    ledger.seal(Path(s.dir), Path(s.home))


# --- entry point ------------------------------------------------------------------------------------

def _args(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        if arg.startswith("--"):
            out[arg[2:]] = next(it, "")
    return out


def main(argv: list[str] | None = None) -> int:
    args = _args(sys.argv[1:] if argv is None else argv)
    event = args.get("event") or ""
    home = args.get("home") or os.environ.get("AO_HOME", "")
    session = args.get("session") or os.environ.get("AO_SESSION", "")
    s: Session | None = None
    try:
        s = Session(home, session)
        if args.get("deadline"):
            s.deadline = time.time() + float(args["deadline"])
        payload = lean.loads(sys.stdin.buffer.read() or b"{}")
        if not isinstance(payload, dict):
            raise GuardError("the hook payload is not a JSON object")
        event = event or str(payload.get("hook_event_name") or "")
        if event == PRE:
            allowed, reason = pre_tool_use(s, payload)
            if not allowed:
                sys.stderr.write(reason + "\n")
                return DENY_EXIT
            return 0
        if event == POST:
            post_tool_use(s, payload)
        elif event == PROMPT:
            user_prompt(s, payload)
        elif event in (START, STOP):
            lifecycle(s, payload, event)
        return 0
    except BaseException as exc:  # noqa: BLE001 - failing closed is the point
        reason = f"ao guard failed closed: {type(exc).__name__}: {exc}"
        if event in (PRE, ""):
            try:
                if s is not None:
                    s.spool("guard_decision", {"event": PRE, "decision": "deny", "reason": reason,
                                               "rule": "fail_closed"}, None)
            except BaseException:  # noqa: BLE001
                pass
            sys.stderr.write(reason + "\n")
            return DENY_EXIT
        sys.stderr.write(reason + "\n")  # nothing to deny on other events; codex logs stderr
        return 0


if __name__ == "__main__":
    sys.exit(main())
