"""The session's guard: decides every hook request in the runner process, outside the agent's reach.

codex runs `hook_client` for each hook event; the client sends the payload over a unix socket in
`<session_dir>/guard/` and relays the answer. Everything a decision depends on lives in this
process's memory: the compiled policy (read once at start), the spend and budget state, the
prompt and plan hashes. `guard-state.json` is only a copy for `ao status` and restarts, and the
ledger is written by a background thread, so no file, lock or state the agent can reach is on
the decision path; a held ledger lock delays receipts, it never changes or blocks an answer.

Only hook payloads come in over the socket, and the agent can connect to it too: nothing sent
there can approve, change the policy, or lower the spend. Operator answers arrive as files in
`$AO_HOME/approvals/` (`ao approve` / `ao deny`), which this server polls for its own requests.
Nor can a request sent there pass for one codex made: each PreToolUse decision and PostToolUse
receipt carries its `provenance` (provenance.py), "rollout" only when the session's own rollout
lists the call, and an unconfirmed PostToolUse is recorded as a claim.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import stat
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from supervisor.errors import FatalError
from supervisor.govern import guard, plans, provenance

SOCKET_DIR = "guard"
SOCKET_NAME = "guard.sock"
MAX_PAYLOAD = 1 << 20          # the hook client refuses bigger payloads too
MAX_HEADER = 128
READ_TIMEOUT_S = 5.0           # a client that trickles its request in is cut off
MAX_CONNECTIONS = 32           # more at once is an attack; refusing makes the hook client deny
MAX_PENDING_APPROVALS = 8
MAX_TRANSCRIPTS = 64
MAX_READ_PER_CALL = 256 << 20  # rollout bytes priced per call; the rest on the next one
ANSWER_MARGIN_S = 0.5          # answer this long before the client's deadline, or deny
# codex kills a hook at its timeout and then RUNS the call, so the client gives up GUARD_MARGIN_S
# before that and denies (hooks.py sets both).
POLL_S = 0.2
# PreToolUse waits this long at most for the usage of the response that asked for the call (codex
# writes its token_usage_record a few ms after the function_call): the ceiling needs that response's
# cost before the call may run, and before codex may send the call's output back to the model.
USAGE_WAIT_S = 2.0
# ...and this long for a call codex's rollout lists (origin confirmed) once the rollout has shown it
# carries per-call usage: then the record is sure to come, and a loaded machine (seen in a full test
# run beside a Ray cluster) can delay it past 2 s; letting the call run then would let one more
# response past the ceiling. A request the rollout does not list (a forgery) gets the short wait.
USAGE_WAIT_KNOWN_S = 10.0
DAILY_CHECK_S = 2.0            # the daily ceilings sum every session's saved spend: look this often
WARN_AT = Decimal("0.8")       # a budget_warning receipt once spend reaches this share of the budget
STRING_FIELDS = ("session_id", "turn_id", "transcript_path", "cwd", "hook_event_name", "model",
                 "permission_mode", "tool_name", "tool_use_id", "prompt", "last_assistant_message", "source")

PLAN_FIRST_CONTEXT = ("ao enforces an intent plan in this session: before any tool call, register your plan with "
                      "the register_intent_plan tool ({goal, steps: [{action, description, metadata: {inputs}}]}; "
                      "action is shell or apply_patch, inputs {command} or {paths}). Tool calls that match no "
                      "step are denied; register a revised plan to change it.")

class BadRequest(Exception):
    """A request that is not a well-formed hook request; PreToolUse answers deny."""


def socket_dir(session_dir: Path) -> Path:
    return Path(session_dir) / SOCKET_DIR


def parse_request(data: bytes) -> tuple[str, float, dict[str, Any]]:
    """(event, client deadline in seconds, payload) from `AOG1 <event> <deadline_ms>\\n<payload>`."""
    header, newline, body = data.partition(b"\n")
    parts = header[:MAX_HEADER].split(b" ")
    if not newline or len(header) > MAX_HEADER or len(parts) != 3 or parts[0] != b"AOG1" \
            or not parts[2].isdigit():
        raise BadRequest("not a hook request (ao's guard socket only takes hook payloads)")
    event = parts[1].decode("ascii", "replace")
    if event not in guard.EVENTS:
        raise BadRequest(f"unknown hook event {event!r}")
    if len(body) > MAX_PAYLOAD:
        raise BadRequest(f"the hook payload is larger than {MAX_PAYLOAD} bytes")
    if not body.strip():
        raise BadRequest("the hook payload is empty")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the hook payload is not JSON: {type(exc).__name__}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the hook payload is not a JSON object")
    for name in STRING_FIELDS:
        if payload.get(name) is not None and not isinstance(payload[name], str):
            raise BadRequest(f"the hook payload's {name} is a {type(payload[name]).__name__}, not a string")
    if len(payload.get("tool_name") or "") > 512:
        raise BadRequest("the hook payload's tool_name is longer than 512 characters")
    return event, int(parts[2]) / 1000, payload


class GuardServer:
    """One session's guard. `start()` binds `<session_dir>/guard/guard.sock`; `stop()` drains the ledger."""

    def __init__(self, session: str, ao_home: Path, session_dir: Path, codex_home: Path | None = None,
                 poll_s: float = POLL_S) -> None:
        if not session or "/" in session or session.startswith("."):
            raise guard.GuardError(f"bad session id {session!r}")
        from supervisor import paths

        self.session = session
        self.ao_home = Path(ao_home)
        self.session_dir = Path(session_dir)
        self.socket_dir = socket_dir(self.session_dir)
        # the only rollouts whose usage counts: regular files under the session's CODEX_HOME/sessions
        self.rollouts_root = os.path.realpath(Path(codex_home or paths.codex_home()) / "sessions")
        self.poll_s = poll_s
        self.session_started = threading.Event()
        self.policy: dict[str, Any] = {}
        self.requests = 0
        self.ledger_error: str | None = None
        self._lock = threading.Lock()  # in memory only: the agent cannot hold it
        self._stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._queue: queue.Queue[Any] = queue.Queue()  # receipts, "state", "flush", None to end
        self._spent = Decimal(0)
        self._offsets: dict[str, int] = {}
        self._budget_stopped = False
        self._budget_warned = False
        self._exhausted_once = False
        # the runner's hard stop of codex; called before the answer to the crossing call leaves
        self.on_exhausted: Callable[[str], None] | None = None
        # the operator's live controls (operator.json, hidden from the agent), re-read when it changes
        self._controls: Any = None
        self._controls_key: tuple[int, int, int] | None = None
        self._controls_error: str | None = None
        self._pausable: frozenset[str] = frozenset()
        self._daily_at = float("-inf")
        self._daily_others: dict[str, Decimal] = {}
        self._daily_error: str | None = None
        self._started_at: float | None = None
        self._counted_calls: OrderedDict[str, None] = OrderedDict()  # calls whose response is priced
        self._uncounted_calls: list[str] = []  # calls seen in the rollout, their usage not yet
        self._prompt_hash: str | None = None
        self._prompt_hashes: list[str] = []
        self._plan_hash: str | None = None
        self._plan_hashes: list[str] = []
        self._plans = plans.PlanState()  # the plan in force; policy `plan: enforce` turns checking on
        self._plan_offset: tuple[int, int, int] | None = None  # (dev, ino, offset) of the rollout read for plans
        self._plan_lock = threading.Lock()  # in memory only, like _lock
        self._pending: set[str] = set()
        self._prices: dict[str | None, Any] = {}
        self._listener: socket.socket | None = None
        self._dirfd: int | None = None
        self._threads: list[threading.Thread] = []
        self._ledger: Any = None  # ledger.LedgerWriter, made in start(): the key stays in memory
        self._drain_until = float("inf")
        # provenance: the thread codex named at SessionStart, its tool calls, the calls confirmed once
        self._pin: provenance.Pin | None = None
        self._expected_thread: str | None = None
        self._candidates: dict[str, str] = {}  # thread id -> transcript of a SessionStart not pinned
        self._calls: provenance.RolloutCalls | None = None
        self._rollout_lock = threading.Lock()  # in memory only, like _lock
        self._confirmed: dict[str, OrderedDict[str, None]] = {guard.PRE: OrderedDict(), guard.POST: OrderedDict()}

    # --- life -------------------------------------------------------------------------------------

    def start(self) -> Path:
        """Load the policy and state, bind the socket, start serving; returns the socket's path."""
        from supervisor.govern import ledger

        self.policy = guard.load_policy(str(self.session_dir), self.session)
        self._plans.enforce = self._plans.plan_first = self.policy.get("plan") == "enforce"
        from supervisor.govern import operator

        self._pausable = frozenset(operator.pausable_rules(self.policy))
        try:
            from supervisor import store

            self._started_at = float(store.get(self.session)["started_at"])
        except (FatalError, KeyError, TypeError, ValueError):
            self._started_at = None  # a guard run outside ao's store: today
        self._restore()
        self._ledger = ledger.LedgerWriter(self.session_dir, self.ao_home)
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        dirfd = os.open(self.socket_dir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        info = os.fstat(dirfd)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            os.close(dirfd)
            raise guard.GuardError(f"{self.socket_dir} is not a directory this user owns")
        os.chmod(f"/proc/self/fd/{dirfd}", 0o700)
        try:
            os.unlink(SOCKET_NAME, dir_fd=dirfd)  # a socket left by a runner that was killed
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # not inherited by codex
        # sun_path holds 107 bytes; the magic link to the open folder keeps any session dir in reach
        listener.bind(f"/proc/self/fd/{dirfd}/{SOCKET_NAME}")
        listener.listen(64)
        listener.settimeout(self.poll_s)
        self._listener, self._dirfd = listener, dirfd
        writer = threading.Thread(target=self._write_loop, name=f"guard-ledger-{self.session}", daemon=True)
        accept = threading.Thread(target=self._accept_loop, name=f"guard-accept-{self.session}", daemon=True)
        self._threads = [writer, accept]
        writer.start()
        accept.start()
        return self.socket_dir / SOCKET_NAME

    def stop(self, drain_s: float = 10.0) -> None:
        """Stop answering (waiting approvals deny), persist the state, and flush the ledger."""
        self._stopping.set()
        if len(self._threads) == 2:
            self._threads[1].join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._dirfd is not None:
            try:
                os.unlink(SOCKET_NAME, dir_fd=self._dirfd)
            except OSError:
                pass
            os.close(self._dirfd)
            self._dirfd = None
        self._drain_until = time.monotonic() + drain_s
        self._queue.put(("state", None, None))
        self._queue.put(None)
        if self._threads:
            self._threads[0].join(drain_s)
            if self._threads[0].is_alive():
                print(f"ao guard {self.session}: {self._queue.qsize()} receipts not written within {drain_s:g}s "
                      f"(last error: {self.ledger_error})", file=sys.stderr)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every receipt queued so far is in the ledger; False if that took too long."""
        done = threading.Event()
        self._queue.put(("flush", done, None))
        return done.wait(timeout_s)

    @property
    def spent_usd(self) -> float:
        return float(self._spent)

    def budget_usd(self) -> Decimal | None:
        return self._limits()[0]

    def _limits(self, read: tuple[Any, str | None] | None = None) -> tuple[Decimal | None, str | None]:
        """(the ceiling in force, why no ceiling can be trusted) from one read of the operator's controls
        (`read`, when the caller already has it): `ao budget` over the compiled policy's; none while the
        operator paused `budget_usd`, or while the controls cannot be read (`_hard_stop` stops the agent)."""
        controls, error = read or self._operator()
        if error:
            return None, error
        if "budget_usd" in self._paused(controls):
            return None, None
        budget = controls.budget_usd if controls.budget_usd is not None else self.policy.get("budget_usd")
        return (None if budget is None else Decimal(str(budget))), None

    def _watching(self, limits: tuple[Decimal | None, str | None]) -> bool:
        """Whether spend must be followed at all: a ceiling, a daily ceiling, or controls to fail closed on."""
        return limits[0] is not None or limits[1] is not None or self._has_daily()

    def _operator(self) -> tuple[Any, str | None]:
        """(Controls, error): the operator's controls, read again only when the file changed."""
        from supervisor.govern import operator

        path = operator.control_path(self.session_dir)
        try:
            info = os.stat(path)
            key: tuple[int, int, int] | None = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            key = None
        except OSError as exc:
            return operator.Controls(), f"cannot read the operator's controls {path}: {exc.strerror}"
        with self._lock:
            if self._controls is not None and key == self._controls_key:
                return self._controls, self._controls_error
        try:
            controls, error = operator.read(self.session_dir), None
        except operator.OperatorError as exc:
            controls, error = operator.Controls(), str(exc)
        with self._lock:
            self._controls, self._controls_key, self._controls_error = controls, key, error
        return controls, error

    def _paused(self, controls: Any) -> frozenset[str]:
        """Rules paused now; never one that protects ao itself, whatever the file says."""
        from supervisor.govern import operator

        return frozenset(operator.paused_now(controls)) & self._pausable

    def budget_exhausted(self) -> bool:
        budget, error = self._limits()
        return (budget is not None and self._spent >= budget) or self._hard_stop(error) is not None

    def _hard_stop(self, control_error: str | None) -> str | None:
        """Why spending must stop whatever this session's own ceiling says: the operator's controls
        cannot be read, so no ceiling can be trusted (fail closed), or a daily ceiling is spent."""
        if control_error:
            return f"the operator's controls cannot be read, so no ceiling can be trusted: {control_error}"
        return self._daily_problem()

    def _has_daily(self) -> bool:
        return any(v is not None for v in (self.policy.get("budget_usd_per_day") or {}).values())

    def _daily_problem(self) -> str | None:
        """Why today's ceilings (`budget_usd_per_day`, global and project) allow no more spend, or None.

        The other sessions' saved spend is summed at most every DAILY_CHECK_S; this session's own is
        the live figure, so a runaway session is stopped within one response here too."""
        from datetime import date, datetime

        from supervisor.govern import operator

        if not self._has_daily():
            return None
        ceilings, project = self.policy["budget_usd_per_day"], self.policy.get("project")
        today = date.today()
        mine_today = datetime.fromtimestamp(self._started_at or time.time()).date() == today
        now = time.monotonic()
        if now - self._daily_at >= DAILY_CHECK_S:
            self._daily_at = now
            try:
                saved = Decimal(str(guard.read_state(str(self.session_dir)).get("spent_usd_exact") or 0))
                own = saved if mine_today else Decimal(0)
                self._daily_others = {level: operator.daily_spend(self.ao_home, today, scope) - own
                                      for level, scope in (("global", None), ("project", project))
                                      if ceilings.get(level) is not None}
                self._daily_error = None
            except (operator.OperatorError, guard.GuardError, ArithmeticError) as exc:
                self._daily_error = f"the daily ceiling cannot be checked: {exc}"
        if self._daily_error:
            return self._daily_error
        for level, others in self._daily_others.items():
            spent = others + (self._spent if mine_today else Decimal(0))
            ceiling = Decimal(str(ceilings[level]))
            if spent >= ceiling:
                where = "all sessions" if level == "global" else f"project {project}"
                return (f"daily budget reached: {where} spent ${spent:.4f} of ${ceiling:.4f} on {today.isoformat()} "
                        f"(policy budget_usd_per_day, {level})")
        return None

    def follow(self, rollout_path: str | None) -> bool:
        """Price what codex added to the session's rollout; True once the ceiling is reached (and codex
        has been stopped). The runner calls this many times a second while codex runs."""
        limits = self._limits()
        if not rollout_path or not self._watching(limits):
            return False
        self._update_spend({"transcript_path": rollout_path}, limits[0])
        reason = self._check_budget({"hook_event_name": "follow"}, limits)
        if reason:
            self._exhaust(reason, "the rollout", limits[0])
        return reason is not None

    # --- serving ----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set() and self._listener is not None:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(self.poll_s)
                continue
            if not self._slots.acquire(blocking=False):
                conn.close()  # the hook client denies a refused call
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        accepted = time.monotonic()
        try:
            conn.settimeout(READ_TIMEOUT_S)
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            peer_pid = int.from_bytes(cred[:4], sys.byteorder)
            chunks, size = [], 0
            while size <= MAX_PAYLOAD + MAX_HEADER:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            verdict, reason = self.handle(b"".join(chunks), peer_pid, accepted)
            conn.settimeout(READ_TIMEOUT_S)
            conn.sendall(f"{verdict}\n{reason}".encode("utf-8", "replace"))
        except Exception as exc:
            try:
                conn.sendall(f"error\nao guard failed: {type(exc).__name__}: {exc}".encode())
            except OSError:
                pass
        finally:
            conn.close()
            self._slots.release()

    def handle(self, data: bytes, peer_pid: int = 0, accepted: float | None = None) -> tuple[str, str]:
        """One request's (verdict, reason): allow/deny for PreToolUse, ok/error for the others."""
        accepted = time.monotonic() if accepted is None else accepted
        self.requests += 1
        try:
            event, deadline_s, payload = parse_request(data)
        except BadRequest as exc:
            pre = data.startswith(b"AOG1 PreToolUse ")
            if pre:
                self._record("guard_decision", {"event": guard.PRE, "decision": "deny", "rule": "bad_request",
                                                "reason": str(exc), "peer_pid": peer_pid,
                                                **provenance.fields("not a well-formed hook request")},
                             self._prompt_hash)
            return ("deny" if pre else "error"), f"ao guard refused the request: {exc}"
        end = accepted + min(deadline_s, self._max_deadline()) - ANSWER_MARGIN_S
        try:
            if event == guard.PRE:
                allowed, reason = self._pre_tool_use(payload, end, peer_pid)
                return ("allow" if allowed else "deny"), reason
            if event == guard.POST:
                self._post_tool_use(payload, peer_pid)
            elif event == guard.PROMPT:
                self._user_prompt(payload, peer_pid)
                if self._plans.enforce:  # codex adds a UserPromptSubmit hook's additionalContext to the turn
                    return "ok", guard.compact_json({"hookSpecificOutput": {
                        "hookEventName": guard.PROMPT, "additionalContext": PLAN_FIRST_CONTEXT}})
            else:
                self._lifecycle(event, payload, peer_pid)
            return "ok", ""
        except Exception as exc:
            reason = f"ao guard failed closed: {type(exc).__name__}: {exc}"
            if event == guard.PRE:
                self._record("guard_decision", {"event": guard.PRE, "decision": "deny", "rule": "fail_closed",
                                                "reason": reason, "peer_pid": peer_pid,
                                                **provenance.fields("the guard failed before checking it")},
                             self._prompt_hash)
                return "deny", reason
            return "error", reason

    def _max_deadline(self) -> float:
        from supervisor.govern import hooks

        return float(self.policy.get("approval_timeout_s") or 300) + hooks.HOOK_MARGIN_S - hooks.GUARD_MARGIN_S

    # --- events -----------------------------------------------------------------------------------

    def _pre_tool_use(self, payload: dict[str, Any], end: float, peer_pid: int) -> tuple[bool, str]:
        text = guard.command_text(payload)
        origin = self._origin(guard.PRE, payload, text, end - provenance.CONFIRM_WAIT_S / 3)
        allowed, reason, rule = True, "", None
        controls, control_error = self._operator()
        paused = self._paused(controls)
        if control_error:
            allowed, reason, rule = False, control_error, "operator_controls"
        elif controls.revoked:
            allowed, reason, rule = False, ("the operator revoked this session (`ao revoke`); no further tool "
                                            "calls run"), "revoked"
        if allowed and self.ledger_error:  # no receipt, no run
            allowed, reason, rule = False, (f"ao cannot write the session's receipt ledger ({self.ledger_error}); "
                                            "tool calls are denied until it can"), "ledger_unwritable"
        unknown = guard.unknown_payload(payload) if allowed else None
        if unknown:  # the rules could not see the command: fail closed, not open
            allowed, reason, rule = False, unknown, "unknown_payload"
        denial = guard.rule_denial(self.policy, payload, text, paused) if allowed else None
        if denial:
            allowed, (reason, rule) = False, denial
        verdict = self._plan_check(payload, origin) if allowed else None
        if verdict is not None and not verdict.allowed:
            allowed, reason, rule = False, verdict.reason, "plan"
        limits = self._limits((controls, control_error))
        if self._watching(limits):  # whatever else decided
            with self._lock:
                wait = USAGE_WAIT_KNOWN_S if origin is None and self._counted_calls else USAGE_WAIT_S
            self._await_usage(payload, min(end, time.monotonic() + wait), limits[0])
            budget_reason = self._check_budget(payload, limits)
            if budget_reason:
                if allowed:
                    allowed, reason, rule = False, budget_reason, "budget_usd"
                # the response that asked for this call crossed the ceiling: codex must be gone before
                # it hears any answer, or it would carry the answer back to the model in a new request
                self._exhaust(budget_reason, "PreToolUse", limits[0])
        if allowed:
            gate = guard.approval_gate(self.policy, text, paused)
            if gate:
                allowed, reason = self._wait_for_approval(payload, gate[1], text, end, peer_pid)
                rule = f"approval_required[{gate[0]}]"
        if allowed and time.monotonic() > end:
            allowed, reason, rule = False, "ao guard could not decide before the hook deadline", "deadline"
        body = guard.call_body(guard.PRE, payload, text)
        body.update(decision="allow" if allowed else "deny", reason=reason, rule=rule, peer_pid=peer_pid,
                    plan_step=verdict.step if verdict is not None else None,
                    plan_match=verdict.reason if verdict is not None else None, **provenance.fields(origin))
        if paused:
            body["paused_rules"] = sorted(paused)
        self._record("guard_decision", body, self._prompt_hash)  # the guard decided, whoever asked
        return allowed, reason

    def _post_tool_use(self, payload: dict[str, Any], peer_pid: int) -> None:

        text = guard.command_text(payload)
        origin = self._origin(guard.POST, payload, text, time.monotonic() + provenance.CONFIRM_WAIT_S)
        body = guard.call_body(guard.POST, payload, text)
        response = payload.get("tool_response")
        response_text = response if isinstance(response, str) else guard.compact_json(response)
        body["response"] = response_text[:guard.MAX_TEXT]  # the output, not the command: a head is enough
        body["response_len"] = len(response_text)
        body["peer_pid"] = peer_pid
        body.update(provenance.fields(origin))
        if origin is not None:  # not a call codex reported: the requester's word, never a tool_call receipt
            from supervisor.govern import ledger

            body["plan_hash"] = self._plan_hash
            self._record("tool_call", ledger.as_claim(body, "guard_socket"), self._prompt_hash)
            return
        limits = self._limits()
        self._update_spend(payload, limits[0])
        body["plan_hash"] = self._plan_hash
        self._record("tool_call", body, self._prompt_hash)
        reason = self._check_budget(payload, limits)
        if reason:
            self._exhaust(reason, "PostToolUse", limits[0])

    def _user_prompt(self, payload: dict[str, Any], peer_pid: int) -> None:
        prompt = payload.get("prompt") or ""
        digest = guard.digest(prompt)
        origin = self._thread_origin(payload)
        body = {"event": guard.PROMPT, "prompt_sha256": digest, "chars": len(prompt),
                "thread_id": payload.get("session_id"), "turn_id": payload.get("turn_id"), "peer_pid": peer_pid,
                **provenance.fields(origin)}
        if origin is not None:  # not the session's thread: recorded, but it attests nothing that follows
            self._record("lifecycle", body, self._prompt_hash)
            return
        with self._lock:
            self._prompt_hash = digest
            self._prompt_hashes.append(digest)
        self._record("lifecycle", body, digest)
        self._persist()

    def _lifecycle(self, event: str, payload: dict[str, Any], peer_pid: int) -> None:
        message = payload.get("last_assistant_message")
        origin = self._thread_origin(payload) if event == guard.STOP else None
        if event == guard.STOP and origin is None:  # only the session's own thread attests plans
            self._scan_plans()
            for plan in plans.fenced_plans(message or ""):  # already read from the rollout, unless it lags
                self._register_plan(payload, plan, "fenced_json")
        limits = self._limits() if event == guard.STOP else (None, None)
        if event == guard.STOP:
            self._update_spend(payload, limits[0])
        body = {"event": event, "thread_id": payload.get("session_id"), "model": payload.get("model"),
                "cwd": payload.get("cwd"), "source": payload.get("source"), "spent_usd": self.spent_usd,
                "peer_pid": peer_pid}
        if event == guard.START:
            body.update(provenance.fields(self._pin_from_start(payload)))
        elif event == guard.STOP:
            body.update(provenance.fields(origin))
        self._record("lifecycle", body, self._prompt_hash)
        if event == guard.START:
            self.session_started.set()
        if event == guard.STOP:
            reason = self._check_budget(payload, limits)
            if reason:
                self._exhaust(reason, "Stop", limits[0])
            self._persist()

    # --- plans (plans.py): registered, attested, enforced ---------------------------------------

    def _plan_check(self, payload: dict[str, Any], origin: str | None) -> plans.Check:
        """Take any plan codex's rollout shows before this call, then check the call against the plan."""
        self._scan_plans()
        tool_name, tool_input = payload.get("tool_name") or "", payload.get("tool_input")
        if tool_name == plans.REGISTER_TOOL:  # the plan comes from codex's own request to ao's MCP server
            plan = plans.normalize(tool_input)
            if isinstance(plan, str):
                return plans.Check(False, f"plan rejected: {plan}; call register_intent_plan again with "
                                          "{goal, steps: [{action, description, metadata: {inputs}}]}", None)
            if origin is not None:  # not a call codex's rollout lists: it registers nothing
                return plans.Check(False, f"plan not registered: {origin}", None)
            self._register_plan(payload, plan, "mcp")
            return plans.Check(True, "plan registered", None)
        return self._plans.check(tool_name, tool_input, payload.get("cwd") or "/")

    def _register_plan(self, payload: dict[str, Any], plan: plans.Plan, source: str) -> None:
        revision = self._plans.register(plan, source)
        if revision is not None:
            self._record_revision(payload, revision)

    def _record_revision(self, payload: dict[str, Any], revision: plans.Revision) -> None:
        """Plan attestation: the plan, its hash and its revision number go into the signed ledger."""
        with self._lock:
            if revision.enforced:
                self._plan_hash = revision.plan_hash
            self._plan_hashes.append(revision.plan_hash)
        self._record("lifecycle", {"event": "plan", "source": revision.source, "plan_sha256": revision.plan_hash,
                                   "revision": revision.number, "enforced": revision.enforced,
                                   "plan": revision.plan, "thread_id": payload.get("session_id"),
                                   "turn_id": payload.get("turn_id")}, self._prompt_hash)
        self._persist()

    def _scan_plans(self) -> None:
        """Fenced JSON plans in any agent message and `update_plan` calls, from the pinned rollout."""
        pin = self._pin
        fd = self._open_rollout(pin.path) if pin is not None else None
        if fd is None or pin is None:
            return
        try:
            with self._plan_lock:
                info = os.fstat(fd)
                if (info.st_dev, info.st_ino) != (pin.dev, pin.ino):
                    return
                dev, ino, offset = self._plan_offset or (info.st_dev, info.st_ino, 0)
                if (dev, ino) != (info.st_dev, info.st_ino) or info.st_size < offset:
                    offset = 0
                chunk = os.pread(fd, min(info.st_size - offset, MAX_READ_PER_CALL), offset) \
                    if info.st_size > offset else b""
                whole = chunk[:chunk.rfind(b"\n") + 1]
                self._plan_offset = (info.st_dev, info.st_ino, offset + len(whole))
                for kind, value in plans.rollout_items(whole) if whole else []:
                    if kind == "update_plan":
                        self._record_revision({"session_id": pin.thread_id}, self._plans.note_update_plan(value))
                    else:
                        for plan in plans.fenced_plans(value):
                            self._register_plan({"session_id": pin.thread_id}, plan, "fenced_json")
        except OSError:
            return
        finally:
            os.close(fd)

    # --- provenance: did codex make this call? ---------------------------------------------------

    def expect_thread(self, thread_id: str, rollout_path: str | None = None) -> None:
        """The runner's word on the session's thread (from codex's own output, or a resumed record).

        It outranks SessionStart payloads, which anyone who reaches the socket can send: a pin on
        another thread is dropped, and the thread is pinned from its SessionStart or `rollout_path`.
        """
        with self._rollout_lock:
            self._expected_thread = thread_id
            pin = self._pin
            if pin is not None and pin.thread_id != thread_id:
                self._pin, self._calls = None, None
        if pin is not None and pin.thread_id != thread_id:
            self._record("lifecycle", {"event": "thread_unpinned", "thread_id": pin.thread_id,
                                       "expected_thread_id": thread_id, "pinned_by": pin.source},
                         self._prompt_hash)
        path = rollout_path or self._candidates.get(thread_id)
        if path is not None and self._pin is None:
            self._try_pin(thread_id, path, "runner")

    @property
    def pinned_thread(self) -> str | None:
        pin = self._pin
        return pin.thread_id if pin is not None else None

    def _try_pin(self, thread_id: str, path: Any, source: str) -> str | None:
        """Pin `thread_id` to the rollout at `path` if that file's session_meta names it; a problem, or None."""
        fd = self._open_rollout(path)
        if fd is None:
            return "its transcript_path is not a regular file under the session's CODEX_HOME/sessions"
        try:
            info = os.fstat(fd)
            named = provenance.meta_thread(fd)
        except OSError as exc:
            return f"its transcript cannot be read ({exc.strerror})"
        finally:
            os.close(fd)
        if named != thread_id:
            return f"its transcript's session_meta names thread {named!r}, not {thread_id!r}"
        with self._rollout_lock:
            if self._pin is None and self._expected_thread in (None, thread_id):
                self._pin = provenance.Pin(thread_id, str(path), info.st_dev, info.st_ino, source)
                self._calls = provenance.RolloutCalls(self._pin)
            pin = self._pin
        if pin is None or pin.thread_id != thread_id or pin.path != path:
            if len(self._candidates) < 8:  # a real rollout of its own thread: expect_thread may pin it later
                self._candidates.setdefault(thread_id, str(path))
            return self._not_the_thread(thread_id)
        return None

    def _not_the_thread(self, thread_id: Any) -> str:
        pin = self._pin
        if pin is None:
            expected = f" (the runner expects {self._expected_thread})" if self._expected_thread else ""
            return f"no SessionStart from codex has named the session's thread yet{expected}"
        return f"thread {thread_id!r} is not the session's thread {pin.thread_id} (pinned by {pin.source})"

    def _pin_from_start(self, payload: dict[str, Any]) -> str | None:
        """The first SessionStart whose transcript is a rollout of its own thread pins the session."""
        thread, path = payload.get("session_id"), payload.get("transcript_path")
        if not thread or not path:
            return "the SessionStart names no thread or transcript"
        pin = self._pin
        if pin is not None and (pin.thread_id, pin.path) == (thread, path):
            return None  # a resume: codex appends to the same rollout
        return self._try_pin(thread, path, "SessionStart")

    def _thread_origin(self, payload: dict[str, Any]) -> str | None:
        """None when a prompt or Stop names the session's pinned thread and rollout; else why not."""
        pin = self._pin
        if pin is None or payload.get("session_id") != pin.thread_id:
            return self._not_the_thread(payload.get("session_id"))
        if payload.get("transcript_path") != pin.path:
            return "its transcript_path is not the session's rollout"
        return None

    def _origin(self, event: str, payload: dict[str, Any], text: str, until: float) -> str | None:
        """None when the session's rollout lists this call with this command; else why it is unconfirmed."""
        pin = self._pin
        problem = self._thread_origin(payload)
        if problem is not None or pin is None:
            return problem or self._not_the_thread(payload.get("session_id"))
        call_id = payload.get("tool_use_id")
        if not call_id:
            return "it has no tool_use_id"
        if call_id in self._confirmed[event]:
            return f"call {call_id} already had a confirmed {event}; this one repeats it"
        wanted = provenance.payload_forms(payload, text)
        limit = min(until, time.monotonic() + provenance.CONFIRM_WAIT_S)
        while True:
            found, more, problem = self._look(pin, call_id)
            if problem:
                return problem
            if found is not None:
                if not found & wanted:
                    return f"codex's rollout shows call {call_id} with a different command"
                with self._rollout_lock:
                    if not provenance.remember(self._confirmed[event], call_id):
                        return f"call {call_id} already had a confirmed {event}; this one repeats it"
                return None
            if time.monotonic() >= limit:
                return f"call {call_id} is not in the session's rollout"
            if not more:
                time.sleep(0.01)

    def _look(self, pin: provenance.Pin, call_id: str) -> tuple[frozenset[str] | None, bool, str | None]:
        """(the call's command forms if the rollout lists it, more left to read, a problem)."""
        fd = self._open_rollout(pin.path)
        if fd is None:
            return None, False, "the session's rollout cannot be opened as a regular file"
        try:
            with self._rollout_lock:
                calls = self._calls
                if calls is None or calls.pin != pin:
                    return None, False, self._not_the_thread(pin.thread_id)
                if call_id not in calls.calls:
                    problem = calls.absorb(fd)
                    if problem:
                        return None, False, problem
                return calls.calls.get(call_id), calls.more(fd), None
        except OSError as exc:
            return None, False, f"the session's rollout cannot be read ({exc.strerror})"
        finally:
            os.close(fd)

    # --- spend ------------------------------------------------------------------------------------

    def _open_rollout(self, path: Any) -> int | None:
        """An fd on the rollout, only if it really is a regular file under CODEX_HOME/sessions."""
        if not isinstance(path, str) or not path or len(path) > 4096 or "\0" in path:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block us
        except OSError:
            return None
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")  # what was opened, after every symlink
            if stat.S_ISREG(os.fstat(fd).st_mode) and real.startswith(self.rollouts_root + os.sep):
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def _price(self, model: Any) -> Any:
        key = model if isinstance(model, str) else None
        if key not in self._prices:
            self._prices[key] = guard.price_for(self.policy, key)
        return self._prices[key]

    def _update_spend(self, payload: dict[str, Any], budget: Decimal | None) -> None:
        """Price the token_usage_record lines added to the rollout since the last look; `budget` is the
        ceiling in force, for the 80% warning."""
        fd = self._open_rollout(payload.get("transcript_path"))
        if fd is None:
            return
        try:
            info = os.fstat(fd)
            key = f"{info.st_dev}:{info.st_ino}"
            price = self._price(payload.get("model"))
            with self._lock:
                if key not in self._offsets and len(self._offsets) >= MAX_TRANSCRIPTS:
                    return
                offset = self._offsets.get(key, 0)
                if info.st_size < offset:  # replaced or truncated: count it again (never less)
                    offset = 0
                chunk = os.pread(fd, min(info.st_size - offset, MAX_READ_PER_CALL), offset) \
                    if info.st_size > offset else b""
                whole = chunk[:chunk.rfind(b"\n") + 1]
                if not whole:
                    return
                cost, marks = guard.rollout_usage(whole, price)
                self._spent += cost
                self._offsets[key] = offset + len(whole)
                self._note_usage_marks(marks)
                warn = self._warning_due(budget)
        finally:
            os.close(fd)
        if warn:
            self._record("budget_warning", warn, self._prompt_hash)
        self._persist()

    def _note_usage_marks(self, marks: list[str | None]) -> None:
        """Which tool calls' responses are priced: a response's usage record follows its calls."""
        for call_id in marks:
            if call_id is None:
                for done in self._uncounted_calls:
                    provenance.remember(self._counted_calls, done)
                self._uncounted_calls.clear()
            elif len(self._uncounted_calls) < 4096:
                self._uncounted_calls.append(call_id)

    def _warning_due(self, budget: Decimal | None) -> dict[str, Any] | None:
        """The budget_warning body the first time spend reaches WARN_AT of the ceiling (under _lock)."""
        if budget is None or self._budget_warned or self._spent < budget * WARN_AT:
            return None
        self._budget_warned = True
        return {"spent_usd": float(self._spent), "budget_usd": float(budget),
                "percent": int(self._spent * 100 / budget) if budget else 100}

    def _await_usage(self, payload: dict[str, Any], until: float, budget: Decimal | None) -> None:
        """Price the rollout until the usage of the response asking for this call is in (or `until`)."""
        call_id = payload.get("tool_use_id")
        while True:
            self._update_spend(payload, budget)
            with self._lock:
                counted = not call_id or call_id in self._counted_calls
            if counted or time.monotonic() >= until:
                return
            time.sleep(0.005)

    def _exhaust(self, reason: str, where: str, budget: Decimal | None) -> None:
        """Once: the budget_exhausted receipt, then the runner's hard stop of codex."""
        with self._lock:
            first, self._exhausted_once = not self._exhausted_once, True
        if not first:
            return
        self._record("budget_exhausted", {"spent_usd": float(self._spent), "budget_usd": float(budget or 0),
                                          "reason": reason, "seen_at": where}, self._prompt_hash)
        self._persist()
        if self.on_exhausted is not None:
            try:
                self.on_exhausted(reason)
            except Exception as exc:  # the deny still goes out; the runner's own follower retries
                print(f"ao guard {self.session}: cannot stop codex at the budget: {exc}", file=sys.stderr)

    def _check_budget(self, payload: dict[str, Any], limits: tuple[Decimal | None, str | None]) -> str | None:
        """The deny reason once spend reached the budget (`limits` from `_limits`); records one
        budget_stop the first time."""
        budget, control_error = limits
        other = self._hard_stop(control_error)
        if other:
            with self._lock:
                first, self._budget_stopped = not self._budget_stopped, True
            if first:
                self._record("budget_stop", {"spent_usd": float(self._spent), "reason": other,
                                             "event": payload.get("hook_event_name"),
                                             "tool_name": payload.get("tool_name")}, self._prompt_hash)
                self._persist()
            return f"ao: {other}; no further tool calls"
        with self._lock:
            if budget is None or self._spent < budget:
                if budget is not None:  # a raised ceiling re-arms the stop and the warning
                    self._budget_stopped = self._exhausted_once = False
                    self._budget_warned = self._budget_warned and self._spent >= budget * WARN_AT
                return None
            first, self._budget_stopped = not self._budget_stopped, True
            spent = self._spent
        if first:
            self._record("budget_stop", {"spent_usd": float(spent), "budget_usd": float(budget),
                                         "event": payload.get("hook_event_name"),
                                         "tool_name": payload.get("tool_name")}, self._prompt_hash)
            self._persist()
        return f"ao budget reached: spent ${spent:.4f} of ${float(budget):.4f}; no further tool calls"

    # --- approvals --------------------------------------------------------------------------------

    def _wait_for_approval(self, payload: dict[str, Any], rule: dict[str, str], text: str, end: float,
                           peer_pid: int) -> tuple[bool, str]:
        home = str(self.ao_home)
        timeout = min(float(self.policy.get("approval_timeout_s") or 300), end - time.monotonic())
        if timeout <= 0:
            return False, f"no time left before the hook deadline to ask for approval ({rule['reason']})"
        record = guard.approval_record(self.session, payload, rule, text, timeout)
        approval_id = record["id"]
        with self._lock:
            if len(self._pending) >= MAX_PENDING_APPROVALS:
                return False, f"{len(self._pending)} approvals are already waiting; ask again later ({rule['reason']})"
            self._pending.add(approval_id)
        try:
            guard.write_approval(home, record)
            self._record("approval", {"id": approval_id, "status": "pending", "reason": rule["reason"],
                                      "tool_name": payload.get("tool_name"), "command": text,
                                      "approval_command_sha256": record["command_sha256"],
                                      "peer_pid": peer_pid}, self._prompt_hash)
            limit = time.monotonic() + timeout
            while True:
                current = self._read_own_approval(approval_id, record)
                if current is not None and current.get("status") in ("approved", "denied", "expired"):
                    break
                if current is None:  # altered or replaced: no approval can be trusted from it
                    current = {**record, "status": "denied", "decided_by": "guard",
                               "decision_reason": "the approval record was altered or removed"}
                    break
                if self._stopping.is_set() or time.monotonic() >= limit:
                    current = self._expire(record, "the session stopped" if self._stopping.is_set()
                                           else f"no answer within {timeout:g}s")
                    break
                self._stopping.wait(self.poll_s)
        finally:
            with self._lock:
                self._pending.discard(approval_id)
        self._record("approval", {"id": approval_id, "status": current.get("status"),
                                  "decided_by": current.get("decided_by"),
                                  "decision_reason": current.get("decision_reason")}, self._prompt_hash)
        return guard.approval_outcome(current, rule)

    def _read_own_approval(self, approval_id: str, mine: dict[str, Any]) -> dict[str, Any] | None:
        try:
            current = guard.read_approval(str(self.ao_home), approval_id)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, guard.GuardError):
            return mine  # mid-replace or garbled for a moment: still pending, look again
        same = all(current.get(k) == mine[k] for k in ("id", "session", "command_sha256", "created"))
        return current if same else None

    def _expire(self, record: dict[str, Any], why: str) -> dict[str, Any]:
        """Mark our approval expired; the approvals lock is tried briefly, never waited on."""
        import fcntl

        home = str(self.ao_home)
        expired = {**record, "status": "expired", "decided_at": time.time(), "decided_by": "guard",
                   "decision_reason": why}
        try:
            with open(os.path.join(guard.approvals_dir(home), ".lock"), "a") as lock:
                for _ in range(5):
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        time.sleep(0.05)
                current = self._read_own_approval(record["id"], record)
                if current is not None and current.get("status") in ("approved", "denied"):
                    return {**current, "status": "expired", "decision_reason": why}  # too late to count
                guard.write_json_atomic(guard._approval_path(home, record["id"]), expired)
        except OSError as exc:
            print(f"ao guard {self.session}: cannot mark approval {record['id']} expired: {exc}", file=sys.stderr)
        return expired

    # --- receipts and state (off the decision path) -----------------------------------------------

    def _record(self, kind: str, body: dict[str, Any], prompt_hash: str | None) -> None:
        if isinstance(body, dict) and not (kind == "lifecycle" and body.get("event") == "plan"):
            body.setdefault("plan_hash", self._plan_hash)  # every receipt names the plan in force
        self._queue.put((kind, body, prompt_hash))

    def _persist(self) -> None:
        self._queue.put(("state", None, None))

    def _state(self) -> dict[str, Any]:
        with self._lock:
            return {"spent_usd": round(float(self._spent), 9), "spent_usd_exact": str(self._spent),
                    "budget_stopped": self._budget_stopped, "budget_warned": self._budget_warned,
                    "offsets": dict(self._offsets),
                    "prompt_hash": self._prompt_hash, "prompt_hashes": list(self._prompt_hashes),
                    "plan_hash": self._plan_hash, "plan_hashes": list(self._plan_hashes),
                    "plan": self._plans.current.canonical() if self._plans.current is not None else None,
                    "updated": time.time(), "writer": "guard_server"}

    def _restore(self) -> None:
        """Carry spend and hashes over from the last run of this session (written by this class)."""
        try:
            state = guard.read_state(str(self.session_dir))
        except guard.GuardError as exc:
            print(f"ao guard {self.session}: ignoring the saved state: {exc}", file=sys.stderr)
            return
        try:
            self._spent = max(Decimal(str(state.get("spent_usd_exact") or state.get("spent_usd") or 0)), Decimal(0))
        except ArithmeticError:
            self._spent = Decimal(0)
        offsets = state.get("offsets")
        if isinstance(offsets, dict):
            self._offsets = {k: v for k, v in offsets.items() if isinstance(v, int) and v >= 0}
        self._budget_stopped = state.get("budget_stopped") is True
        self._budget_warned = state.get("budget_warned") is True
        for name in ("prompt_hash", "plan_hash"):
            if isinstance(state.get(name), str):
                setattr(self, f"_{name}", state[name])
        if state.get("plan") is not None:  # the plan in force before a restart stays in force
            self._plans.restore(state["plan"])

    def _write_loop(self) -> None:
        """Write receipts in order, batched; on failure keep them and retry (PreToolUse denies meanwhile)."""
        batch: list[tuple[str, Any, str | None]] = []
        flushes: list[threading.Event] = []
        done = False
        while not done or batch or flushes:
            if not done:
                item = self._queue.get() if not batch else self._next_nowait()
                while item is not False:
                    if item is None:
                        done = True
                        break
                    if item[0] == "state":
                        self._save_state()
                    elif item[0] == "flush":
                        flushes.append(item[1])
                    else:
                        batch.append(item)
                    item = self._next_nowait()
            if not batch:
                for waiter in flushes:
                    waiter.set()
                flushes = []
                continue
            try:
                if self._ledger is None:
                    from supervisor.govern import ledger

                    self._ledger = ledger.LedgerWriter(self.session_dir, self.ao_home)
                self._ledger.append_many(batch)
                batch = []
                self.ledger_error = None
                for waiter in flushes:  # everything queued before the flush request is now written
                    waiter.set()
                flushes = []
            except Exception as exc:
                self.ledger_error = f"{type(exc).__name__}: {exc}"
                if done and self._stopping.is_set() and time.monotonic() > self._drain_until:
                    print(f"ao guard {self.session}: {len(batch)} receipts lost: {self.ledger_error}", file=sys.stderr)
                    return
                time.sleep(0.5)

    def _next_nowait(self) -> Any:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return False

    def _save_state(self) -> None:
        try:
            guard.write_json_atomic(str(self.session_dir / guard.STATE), self._state())
        except OSError as exc:  # the copy is a convenience; memory stays authoritative
            print(f"ao guard {self.session}: cannot save {guard.STATE}: {exc}", file=sys.stderr)
