"""What codex writes, in one place: rollout lines, `codex exec --json` events, hook payloads.

Measured on codex 0.169.0 (see README and tests/test_codex_format.py, which checks these names
against rollouts the real binary writes). Every other module asks here instead of spelling
codex's keys. Pure functions take a parsed line (a dict) or raw bytes and return a typed value;
anything that does not have the expected shape gives None, never an exception.

Import-light on purpose: the guard's PreToolUse hook runs under `python -I -S` and counts
milliseconds, so this module loads only `os` and `stat` (already loaded by the interpreter) and
uses plain `__slots__` records instead of dataclasses, typing or enum.
"""
from __future__ import annotations

import os
import stat as _stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: never evaluated at run time
    from typing import Any, BinaryIO, Literal

    Totals = tuple[int, int, int, int]
    ExecKind = Literal["thread.started", "turn.started", "turn.completed", "turn.failed", "item.started",
                       "item.updated", "item.completed", "error"]


class _Record:
    """Equality, repr and a dict view from `__slots__`, so records stay one-liners to declare."""
    __slots__: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__name__}({inner})"


# --- files on disk ---------------------------------------------------------------------------------
# $CODEX_HOME/sessions/YYYY/MM/DD/rollout-<local time>-<thread uuid>.jsonl; `codex archive` moves
# them, unchanged, into a flat archived_sessions/. Newer builds may compress old ones to .jsonl.zst.
SESSIONS_DIR = "sessions"
ARCHIVED_DIR = "archived_sessions"
ROLLOUT_PREFIX = "rollout-"
ROLLOUT_SUFFIXES = (".jsonl", ".jsonl.zst")
COMPRESSED_SUFFIX = ".zst"
_HEX = frozenset("0123456789abcdef")


def is_rollout_name(name: str) -> bool:
    return name.startswith(ROLLOUT_PREFIX) and name.endswith(ROLLOUT_SUFFIXES)


def rollout_glob(thread_id: str = "", compressed: bool = True) -> str:
    """The glob of a thread's rollout (every rollout when no thread is given) inside one folder."""
    return f"{ROLLOUT_PREFIX}*{thread_id}.jsonl" + ("*" if compressed else "")


def thread_of_name(path: str) -> str | None:
    """The thread uuid a rollout's name ends with (lower-case hex, 8-4-4-4-12), or None."""
    for suffix in ROLLOUT_SUFFIXES[::-1]:
        if path.endswith(suffix):
            candidate = path[-len(suffix) - 36:-len(suffix)]
            break
    else:
        return None
    if len(candidate) != 36 or any(candidate[i] != "-" for i in (8, 13, 18, 23)):
        return None
    return candidate if set(candidate.replace("-", "")) <= _HEX else None


class NotRegularFile(OSError):
    """A rollout path that is a FIFO, device, socket or directory: reading it could hang or never end."""

    def __init__(self, path: str, mode: int) -> None:
        super().__init__(f"{path}: skipped, not a regular file but {describe_mode(mode)}; "
                         "remove it or point it at a real rollout")
        self.path, self.mode = path, mode
        self.strerror = f"not a regular file ({describe_mode(mode)})"


def describe_mode(mode: int) -> str:
    for test, name in ((_stat.S_ISFIFO, "a FIFO"), (_stat.S_ISCHR, "a character device"),
                       (_stat.S_ISBLK, "a block device"), (_stat.S_ISSOCK, "a socket"),
                       (_stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file" if not _stat.S_ISREG(mode) else "a regular file"


def is_regular(st: os.stat_result) -> bool:
    return _stat.S_ISREG(st.st_mode)


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a rollout (or events file) for reading, refusing anything but a regular file.

    The agent runs as the same uid and may leave a FIFO (open blocks forever) or a link to
    /dev/zero (reads never end) where a rollout should be. A link to a regular file is followed,
    as symlinked CODEX_HOME trees are legitimate. The stat before opening keeps devices unopened;
    O_NONBLOCK and the fstat after it close the race where the path is swapped in between.
    Raises NotRegularFile (an OSError) naming the path.
    """
    name = os.fspath(path)
    before = os.stat(name)
    if not _stat.S_ISREG(before.st_mode):
        raise NotRegularFile(name, before.st_mode)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not _stat.S_ISREG(mode):
            raise NotRegularFile(name, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --- rollout lines: {"timestamp", "ordinal", "type", "payload"} -----------------------------------
TIMESTAMP, ORDINAL, TYPE, PAYLOAD = "timestamp", "ordinal", "type", "payload"


class Line:
    """The top-level `type` of a rollout line."""
    SESSION_META = "session_meta"
    EVENT_MSG = "event_msg"
    RESPONSE_ITEM = "response_item"
    TURN_CONTEXT = "turn_context"
    TOKEN_USAGE_RECORD = "token_usage_record"
    WORLD_STATE = "world_state"


class Event:
    """`payload.type` of an `event_msg` line."""
    TASK_STARTED = "task_started"
    TASK_COMPLETE = "task_complete"
    TURN_COMPLETE = "turn_complete"
    TOKEN_COUNT = "token_count"
    ITEM_COMPLETED = "item_completed"
    USER_MESSAGE = "user_message"
    AGENT_MESSAGE = "agent_message"
    THREAD_SETTINGS_APPLIED = "thread_settings_applied"
    EXEC_COMMAND_END = "exec_command_end"
    EXEC_APPROVAL_REQUEST = "exec_approval_request"
    APPLY_PATCH_APPROVAL_REQUEST = "apply_patch_approval_request"
    REQUEST_USER_INPUT = "request_user_input"
    ELICITATION_REQUEST = "elicitation_request"
    ERROR = "error"
    STREAM_ERROR = "stream_error"
    TURN_ABORTED = "turn_aborted"
    SHUTDOWN_COMPLETE = "shutdown_complete"


class Item:
    """`payload.type` of a `response_item` line."""
    MESSAGE = "message"
    REASONING = "reasoning"
    FUNCTION_CALL = "function_call"
    FUNCTION_CALL_OUTPUT = "function_call_output"
    CUSTOM_TOOL_CALL = "custom_tool_call"
    CUSTOM_TOOL_CALL_OUTPUT = "custom_tool_call_output"
    LOCAL_SHELL_CALL = "local_shell_call"
    LOCAL_SHELL_CALL_OUTPUT = "local_shell_call_output"


TOOL_CALLS = (Item.FUNCTION_CALL, Item.CUSTOM_TOOL_CALL, Item.LOCAL_SHELL_CALL)
TOOL_OUTPUTS = (Item.FUNCTION_CALL_OUTPUT, Item.CUSTOM_TOOL_CALL_OUTPUT, Item.LOCAL_SHELL_CALL_OUTPUT)

# What an event kind (see `line_kind`) says about a live session, newest first wins.
WAITING_KINDS = frozenset((Event.EXEC_APPROVAL_REQUEST, Event.APPLY_PATCH_APPROVAL_REQUEST,
                           Event.REQUEST_USER_INPUT, Event.ELICITATION_REQUEST))
BLOCKED_KINDS = frozenset((Event.ERROR, Event.TURN_ABORTED, Event.STREAM_ERROR))
IDLE_KINDS = frozenset((Event.TASK_COMPLETE, Event.TURN_COMPLETE, Event.SHUTDOWN_COMPLETE))
WORKING_KINDS = frozenset((Event.TASK_STARTED, Item.FUNCTION_CALL, Item.FUNCTION_CALL_OUTPUT, Item.CUSTOM_TOOL_CALL,
                           Item.REASONING, Event.AGENT_MESSAGE, Event.TOKEN_COUNT, Item.MESSAGE,
                           Event.ITEM_COMPLETED, Line.TOKEN_USAGE_RECORD))
# Bookkeeping that can still arrive after a turn's end (a late item_completed, a usage count): it
# says nothing about whether a new turn began, so the event before it decides.
TRAILING_KINDS = frozenset((Event.ITEM_COMPLETED, Event.TOKEN_COUNT, Line.TOKEN_USAGE_RECORD))

# Usage objects (token_count's info.*_token_usage, token_usage_record's usage, exec's turn.completed)
INPUT_TOKENS, CACHED_INPUT_TOKENS = "input_tokens", "cached_input_tokens"
OUTPUT_TOKENS, REASONING_OUTPUT_TOKENS = "output_tokens", "reasoning_output_tokens"
USAGE_KEYS = (INPUT_TOKENS, CACHED_INPUT_TOKENS, OUTPUT_TOKENS, REASONING_OUTPUT_TOKENS)

# Byte-level pre-filters. codex writes compact JSON (no space after ':'), so these exact byte strings
# find the few lines worth parsing without parsing the rest.
RECORD_MARKER = b'"type":"token_usage_record"'
TOKEN_COUNT_MARKER = b'"type":"token_count"'
TURN_CONTEXT_MARKER = b'"type":"turn_context"'
SESSION_META_MARKER = b'"type":"session_meta"'
SETTINGS_MARKER = b'"type":"thread_settings_applied"'
USAGE_MARKERS = (RECORD_MARKER, TOKEN_COUNT_MARKER, TURN_CONTEXT_MARKER, SESSION_META_MARKER, SETTINGS_MARKER)
TOKEN_COUNT_NEEDLE = b'"token_count"'
USER_NEEDLE = b'"user"'
_T = b'"type":"t'
_WANTED_T = (RECORD_MARKER, TOKEN_COUNT_MARKER, TURN_CONTEXT_MARKER, SETTINGS_MARKER)


def usage_spans(chunk: bytes, last_nl: int, has_records: bool) -> list[tuple[int, int]]:
    """(start, end) of the lines usage needs, in order: two passes over the chunk instead of one a type.

    Once a file has a valid token_usage_record its token_count lines are not needed, so later chunks
    leave them out (the caller skips them within the chunk where the first record is parsed).
    """
    spans: dict[int, int] = {}
    # Only a record already parsed proves the file has them: a line merely naming the type may be
    # truncated, and skipping token_count lines on its word would silently drop usage.
    first_record = 0 if has_records else last_nl
    find, rfind = chunk.find, chunk.rfind
    pos = find(_T, 0, last_nl)
    while pos >= 0:
        end = find(b"\n", pos)
        if chunk.startswith(_WANTED_T, pos) and (pos < first_record or not chunk.startswith(TOKEN_COUNT_MARKER, pos)):
            spans[rfind(b"\n", 0, pos) + 1] = end
            pos = find(_T, end, last_nl)   # the rest of this line cannot add anything
        else:
            pos = find(_T, pos + 9, last_nl)
    pos = find(SESSION_META_MARKER, 0, last_nl)
    while pos >= 0:
        end = find(b"\n", pos)
        spans[rfind(b"\n", 0, pos) + 1] = end
        pos = find(SESSION_META_MARKER, end, last_nl)
    return sorted(spans.items())


def _payload(line: Any, kind: str) -> dict[str, Any] | None:
    if type(line) is not dict or line.get(TYPE) != kind:
        return None
    payload = line.get(PAYLOAD)
    return payload if type(payload) is dict else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def line_kind(line: dict[str, Any]) -> str:
    """The most specific kind of a line: `payload.type` when there is one, else the line's `type`."""
    payload = line.get(PAYLOAD)
    if isinstance(payload, dict) and isinstance(payload.get(TYPE), str):
        return payload[TYPE]
    return str(line.get(TYPE) or "")


def event_payload(line: Any, event: str) -> dict[str, Any] | None:
    """The payload of an `event_msg` line of this `payload.type`."""
    payload = _payload(line, Line.EVENT_MSG)
    return payload if payload is not None and payload.get(TYPE) == event else None


def item_payload(line: Any) -> dict[str, Any] | None:
    """The payload of a `response_item` line, whatever the item's type."""
    return _payload(line, Line.RESPONSE_ITEM)


def usage_totals(raw: Any) -> Totals | None:
    """(input, cached_input, output, reasoning) of a usage object; anything not a positive int is 0."""
    if type(raw) is not dict:
        return None
    i, c, o, r = (raw.get(INPUT_TOKENS), raw.get(CACHED_INPUT_TOKENS), raw.get(OUTPUT_TOKENS),
                  raw.get(REASONING_OUTPUT_TOKENS))
    return (i if type(i) is int and i > 0 else 0, c if type(c) is int and c > 0 else 0,
            o if type(o) is int and o > 0 else 0, r if type(r) is int and r > 0 else 0)


class SessionMeta(_Record):
    """The first line of a rollout: the thread, where it ran, and what it forks."""
    __slots__ = ("thread_id", "cwd", "timestamp", "forked_from", "fork_offset", "history_start_ordinal")

    def __init__(self, thread_id: str | None, cwd: str | None, timestamp: str | None, forked_from: str | None,
                 fork_offset: int | None, history_start_ordinal: int | None) -> None:
        self.thread_id, self.cwd, self.timestamp = thread_id, cwd, timestamp
        # forked_from_id; else parent_thread_id or source.subagent.thread_spawn.parent_thread_id (subagents)
        self.forked_from = forked_from
        self.fork_offset = fork_offset              # history_base.end_byte_offset (0.169.0 forks)
        self.history_start_ordinal = history_start_ordinal  # subagent_history_start_ordinal (older forks)


# session_meta keys naming the thread a rollout branched from, most specific first
FORKED_FROM_ID, PARENT_THREAD_ID = "forked_from_id", "parent_thread_id"
HISTORY_BASE, END_BYTE_OFFSET = "history_base", "end_byte_offset"
HISTORY_START_ORDINAL = "subagent_history_start_ordinal"
SOURCE, SUBAGENT, THREAD_SPAWN = "source", "subagent", "thread_spawn"


def _spawn_parent(payload: dict[str, Any]) -> str | None:
    source = payload.get(SOURCE)
    sub = source.get(SUBAGENT) if isinstance(source, dict) else None
    spawn = sub.get(THREAD_SPAWN) if isinstance(sub, dict) else None
    return _text(spawn.get(PARENT_THREAD_ID)) if isinstance(spawn, dict) else None


def session_meta(line: Any) -> SessionMeta | None:
    payload = _payload(line, Line.SESSION_META)
    if payload is None:
        return None
    base = payload.get(HISTORY_BASE)
    offset = base.get(END_BYTE_OFFSET) if isinstance(base, dict) else None
    ordinal = payload.get(HISTORY_START_ORDINAL)
    stamp = payload.get(TIMESTAMP)
    if not isinstance(stamp, str):
        stamp = line.get(TIMESTAMP)
    parent = _text(payload.get(FORKED_FROM_ID)) or _text(payload.get(PARENT_THREAD_ID)) or _spawn_parent(payload)
    return SessionMeta(payload.get("id") if isinstance(payload.get("id"), str) else None,
                       payload.get("cwd") if isinstance(payload.get("cwd"), str) else None,
                       stamp if isinstance(stamp, str) else None, parent,
                       offset if type(offset) is int else None, ordinal if type(ordinal) is int else None)


class TokenCount(_Record):
    """An `event_msg/token_count` with usage: the thread's running total, the last response's usage, and
    `info.model` (the model that served that response) where the event names one."""
    __slots__ = ("total", "last", "model")

    def __init__(self, total: Totals, last: Totals | None, model: str | None = None) -> None:
        self.total, self.last, self.model = total, last, model


def token_count(line: Any) -> TokenCount | None:
    """None for other lines and for rate-limit-only events (`info` null)."""
    payload = event_payload(line, Event.TOKEN_COUNT)
    info = payload.get("info") if payload is not None else None
    if type(info) is not dict:
        return None
    total = usage_totals(info.get("total_token_usage"))
    if total is None:
        return None
    return TokenCount(total, usage_totals(info.get("last_token_usage")), _text(info.get("model")))


def ordinal_of(line: Any) -> int | None:
    """A rollout line's `ordinal` (older subagent rollouts number their lines), or None."""
    value = line.get(ORDINAL) if type(line) is dict else None
    return value if type(value) is int else None


class UsageRecord(_Record):
    """A `token_usage_record`: one model response's own usage, keyed by its response id."""
    __slots__ = ("response_id", "usage", "turn_id")

    def __init__(self, response_id: str | None, usage: Totals, turn_id: str | None) -> None:
        self.response_id, self.usage, self.turn_id = response_id, usage, turn_id


def usage_record(line: Any) -> UsageRecord | None:
    payload = _payload(line, Line.TOKEN_USAGE_RECORD)
    used = usage_totals(payload.get("usage")) if payload is not None else None
    if used is None:
        return None
    return UsageRecord(_text(payload.get("response_id")), used, _text(payload.get("turn_id")))  # type: ignore[union-attr]


def model_of(line: Any) -> str | None:
    """The model a `turn_context` or `thread_settings_applied` line switches to."""
    payload = _payload(line, Line.TURN_CONTEXT)
    if payload is not None:
        return _text(payload.get("model"))
    payload = event_payload(line, Event.THREAD_SETTINGS_APPLIED)
    settings = payload.get("thread_settings") if payload is not None else None
    return _text(settings.get("model")) if isinstance(settings, dict) else None


def turn_started(line: Any) -> str | None:
    """The turn id a `turn_context` or `task_started` line opens."""
    payload = _payload(line, Line.TURN_CONTEXT) or event_payload(line, Event.TASK_STARTED)
    return payload.get("turn_id") if payload is not None else None


def user_message_text(line: Any) -> str | None:
    """The text of a user `message` response item (what was typed or sent to the agent)."""
    payload = item_payload(line)
    if payload is None or payload.get(TYPE) != Item.MESSAGE or payload.get("role") != "user":
        return None
    content = payload.get("content") or []
    return "".join(c.get("text", "") for c in content if isinstance(c, dict))


class ToolCall(_Record):
    """A tool call the model made (`function_call`, `custom_tool_call`, `local_shell_call`)."""
    __slots__ = ("call_id", "tool", "arguments", "turn_id")

    def __init__(self, call_id: str | None, tool: str, arguments: Any, turn_id: str | None) -> None:
        self.call_id, self.tool, self.turn_id = call_id, tool, turn_id
        self.arguments = arguments  # as written: a JSON string (function_call), text or an object


def tool_call(line: Any) -> ToolCall | None:
    payload = item_payload(line)
    if payload is None or payload.get(TYPE) not in TOOL_CALLS:
        return None
    call_id = payload.get("call_id") or payload.get("id")
    meta = payload.get("internal_chat_message_metadata_passthrough")
    return ToolCall(str(call_id) if call_id else None, str(payload.get("name") or payload[TYPE]),
                    payload.get("arguments", payload.get("input", payload.get("action"))),
                    meta.get("turn_id") if isinstance(meta, dict) else None)


class ToolOutput(_Record):
    __slots__ = ("call_id", "output")

    def __init__(self, call_id: str, output: Any) -> None:
        self.call_id, self.output = call_id, output


def tool_output(line: Any) -> ToolOutput | None:
    payload = item_payload(line)
    if payload is None or payload.get(TYPE) not in TOOL_OUTPUTS:
        return None
    return ToolOutput(str(payload.get("call_id")), payload.get("output"))


class ToolExit(_Record):
    """The exit code codex reports for a finished command (`item_completed` or `exec_command_end`)."""
    __slots__ = ("call_id", "exit_code", "started_at_ms")

    def __init__(self, call_id: str, exit_code: int | None, started_at_ms: Any) -> None:
        self.call_id, self.exit_code, self.started_at_ms = call_id, exit_code, started_at_ms


def tool_exit(line: Any) -> ToolExit | None:
    payload = _payload(line, Line.EVENT_MSG)
    if payload is None:
        return None
    kind = payload.get(TYPE)
    if kind == Event.ITEM_COMPLETED:
        item, key = payload.get("item"), "id"
    elif kind == Event.EXEC_COMMAND_END:
        item, key = payload, "call_id"
    else:
        return None
    if not isinstance(item, dict):
        return None
    code = item.get("exit_code")
    return ToolExit(str(item.get(key)), code if isinstance(code, int) else None, payload.get("started_at_ms"))


# --- `codex exec --json` events (stdout, one object a line) ---------------------------------------
class Exec:
    THREAD_STARTED = "thread.started"
    TURN_STARTED = "turn.started"
    TURN_COMPLETED = "turn.completed"
    TURN_FAILED = "turn.failed"
    ITEM_STARTED = "item.started"
    ITEM_UPDATED = "item.updated"
    ITEM_COMPLETED = "item.completed"
    ERROR = "error"


# `codex exec --json` item types that are tool calls: each one passed (or should have passed) a hook
EXEC_TOOL_ITEMS = frozenset({"command_execution", "file_change", "mcp_tool_call"})


class ExecEvent(_Record):
    """One `codex exec --json` line. `usage` of turn.completed is the thread's running total."""
    __slots__ = ("kind", "thread_id", "usage", "error", "item")

    def __init__(self, kind: str, thread_id: str | None = None, usage: Totals | None = None,
                 error: str | None = None, item: dict[str, Any] | None = None) -> None:
        self.kind, self.thread_id, self.usage, self.error, self.item = kind, thread_id, usage, error, item


def exec_event(event: Any) -> ExecEvent | None:
    """None for anything that is not an object with a string `type`."""
    if type(event) is not dict or not isinstance(event.get(TYPE), str):
        return None
    kind = event[TYPE]
    if kind == Exec.THREAD_STARTED:
        thread = event.get("thread_id")
        return ExecEvent(kind, thread_id=str(thread) if thread else None)
    if kind == Exec.TURN_COMPLETED:
        return ExecEvent(kind, usage=_exec_usage(event.get("usage")))
    if kind == Exec.TURN_FAILED:
        err = event.get("error") or {}
        return ExecEvent(kind, error=str(err.get("message") if isinstance(err, dict) else err))
    if kind == Exec.ERROR:
        return ExecEvent(kind, error=str(event.get("message")))
    item = event.get("item")
    return ExecEvent(kind, item=item if isinstance(item, dict) else None)


def _exec_usage(raw: Any) -> Totals | None:
    if not isinstance(raw, dict):
        return None
    return (_count(raw.get(INPUT_TOKENS)), _count(raw.get(CACHED_INPUT_TOKENS)),
            _count(raw.get(OUTPUT_TOKENS)), _count(raw.get(REASONING_OUTPUT_TOKENS)))


def _count(value: Any) -> int:
    # int() keeps the old leniency for "12" and 12.0; anything else counts 0 instead of raising
    try:
        return int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


# --- hooks: the JSON codex writes to a hook command's stdin ---------------------------------------
class Hook:
    """Event names (`hook_event_name`) and the payload's field names."""
    SESSION_START, USER_PROMPT_SUBMIT, STOP = "SessionStart", "UserPromptSubmit", "Stop"
    PRE_TOOL_USE, POST_TOOL_USE, PERMISSION_REQUEST = "PreToolUse", "PostToolUse", "PermissionRequest"
    PRE_COMPACT, POST_COMPACT = "PreCompact", "PostCompact"
    SUBAGENT_START, SUBAGENT_STOP = "SubagentStart", "SubagentStop"
    # every event
    SESSION_ID = "session_id"            # the thread id
    TRANSCRIPT_PATH = "transcript_path"  # the rollout: agent-writable, open it with open_regular
    CWD, MODEL, TURN_ID = "cwd", "model", "turn_id"
    EVENT_NAME, PERMISSION_MODE = "hook_event_name", "permission_mode"
    # PreToolUse / PostToolUse
    TOOL_NAME, TOOL_INPUT, TOOL_USE_ID = "tool_name", "tool_input", "tool_use_id"
    TOOL_RESPONSE = "tool_response"      # PostToolUse only
    PROMPT = "prompt"                    # UserPromptSubmit
    LAST_ASSISTANT_MESSAGE = "last_assistant_message"  # Stop
    SHELL_TOOL = "Bash"                  # tool_name of shell commands; tool_input is {"command": ...}
    # a PreToolUse deny on stdout (exit 2 with the reason on stderr works too)
    SPECIFIC_OUTPUT, DECISION, DECISION_REASON = "hookSpecificOutput", "permissionDecision", "permissionDecisionReason"



# --- signs that codex is alive but cannot reach its model (measured on 0.169.0) --------------------
# `codex exec --json` says `{"type":"error","message":"Reconnecting... waiting for network (Connection
# failed: ...)"}` with a growing back-off and never gives up on a dead endpoint; an HTTP error from the
# provider repeats as "Reconnecting... N/5 (...)" and then ends the turn with `turn.failed`.
RECONNECTING = "Reconnecting..."
# What the TUI shows in `tmux capture-pane`: the live status line while it retries, and the first-run
# screen when there is neither a provider nor a login.
TUI_RECONNECTING = "Reconnecting..."
TUI_LOGIN_SCREEN = ("Sign in with ChatGPT", "Sign in with Device Code")
MAX_REASON = 300


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """A reason for a status column: one line of words, never a backtrace."""
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[:limit - 1] + "…"


def exec_trouble(event: ExecEvent) -> str | None:
    """Why codex cannot get on, from one exec event, or None when the event says nothing of it."""
    if event.kind == Exec.ERROR and (event.error or "").startswith(RECONNECTING):
        return one_line(f"the model does not answer, codex keeps retrying: {event.error}")
    return None


def exec_progress(event: ExecEvent) -> bool:
    """True for events that show the run moving (a warning item or an error line does not)."""
    if event.kind in (Exec.THREAD_STARTED, Exec.TURN_STARTED, Exec.TURN_COMPLETED):
        return True
    if event.kind in (Exec.ITEM_STARTED, Exec.ITEM_UPDATED, Exec.ITEM_COMPLETED):
        return not (event.item and event.item.get("type") == "error")
    return False


def tui_trouble(screen: str) -> str | None:
    """Why the TUI is stuck, from the text of its pane, or None."""
    if any(mark in screen for mark in TUI_LOGIN_SCREEN):
        return ("codex is not logged in: the TUI shows its sign-in screen; run `codex login` "
                "or configure a `provider`")
    lines = [line.strip(" \t•◦⠀") for line in screen.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith(TUI_RECONNECTING):
            detail = next((rest.lstrip("└ ").strip() for rest in lines[index + 1:index + 2]
                           if rest.startswith("└")), "")
            return one_line("the model does not answer, codex keeps retrying: "
                            + (detail or line.split("(")[0].strip()))
    return None


def turn_error(event: dict[str, Any]) -> str | None:
    """The error a rollout's `task_complete` carries when the turn ended on a model error (TUI runs)."""
    payload = event.get(PAYLOAD)
    if event.get(TYPE) != Line.EVENT_MSG or not isinstance(payload, dict) \
            or payload.get(TYPE) != Event.TASK_COMPLETE:
        return None
    error = payload.get("error")
    message = error.get("message") if isinstance(error, dict) else error
    return one_line(f"the model answered with an error: {message}") if message else None
