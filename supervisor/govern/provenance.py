"""Which hook requests codex's own rollout confirms: the guard's check that a request came from codex.

The guard socket cannot tell codex's hook client from the agent (same uid, same pid namespace, and
codex's argv and env are readable), so no secret separates them. What does: codex writes each tool
call to its rollout as a `response_item` before it runs the PreToolUse hook (measured on 0.169.0:
the `function_call` with `call_id` == the hook's `tool_use_id` is there on the first read; its
`function_call_output` is written only after PostToolUse returns). A request is confirmed when the
session's pinned rollout lists its call id with the same command; anything else is recorded as
unconfirmed, never as what codex reported.

Limits, on purpose: the rollout is the user's file, so an agent that appends a well-formed line to
it can still make a request look confirmed; the ledger then at least holds both. Reading is bounded:
each look reads at most MAX_SCAN new bytes and parses only the lines that hold a tool call.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Any, NamedTuple

from supervisor.digest import sha256

CONFIRMED, UNCONFIRMED = "rollout", "unconfirmed"
CONFIRM_WAIT_S = 0.3      # codex wrote the call before the hook ran; this is slack, not the rule
MAX_SCAN = 8 << 20        # rollout bytes read per look; the rest on the next look
MAX_META = 1 << 20        # the session_meta line (about 22 KB on 0.169.0: it carries the instructions)
MAX_CALLS = 8192          # call ids remembered per rollout and per event, oldest dropped first
CALL_MARKERS = (b'"type":"function_call"', b'"type":"custom_tool_call"', b'"type":"local_shell_call"')
COMMAND_KEYS = ("cmd", "command", "input", "patch")


class Pin(NamedTuple):
    """The session's thread and its rollout, as codex's first genuine SessionStart named them."""

    thread_id: str
    path: str
    dev: int
    ino: int
    source: str  # "SessionStart" or "runner"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(text: str) -> str:
    return sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _forms(value: Any, out: set[str]) -> None:
    """The ways a command can be written: the text, a dict's cmd/command/input, a shell argv."""
    if isinstance(value, str):
        out.add(value)
        return
    if not isinstance(value, dict):
        return
    out.add(_canonical(value))
    for key in COMMAND_KEYS:
        item = value.get(key)
        if isinstance(item, str):
            out.add(item)
        elif isinstance(item, list) and item and all(isinstance(part, str) for part in item):
            out.add(" ".join(item))
            if len(item) == 3 and item[1] in ("-c", "-lc"):  # ["bash", "-lc", "<script>"]
                out.add(item[2])


def call_forms(arguments: Any) -> frozenset[str]:
    """Digests of a rollout tool call's command forms (`arguments` as written: JSON text or an object)."""
    out: set[str] = set()
    _forms(arguments, out)
    if isinstance(arguments, str):
        try:
            _forms(json.loads(arguments), out)
        except ValueError:
            pass
    return frozenset(_digest(text) for text in out)


def payload_forms(payload: dict[str, Any], text: str) -> frozenset[str]:
    """Digests of a hook request's command forms; `text` is guard.command_text(payload)."""
    out = {text}
    _forms(payload.get("tool_input"), out)
    return frozenset(_digest(form) for form in out)


def meta_thread(fd: int) -> str | None:
    """The thread id in the rollout's first line (session_meta), or None."""
    from supervisor.observe import codex_format

    head = os.pread(fd, MAX_META, 0)
    line, newline, _ = head.partition(b"\n")
    if not newline:
        return None
    try:
        meta = codex_format.session_meta(json.loads(line))
    except ValueError:
        return None
    return meta.thread_id if meta is not None else None


def _line_spans(chunk: bytes) -> list[tuple[int, int]]:
    """(start, end) of the lines holding a tool call marker; the marker's quotes cannot occur unescaped
    inside a JSON string, so tool output that mentions it is never parsed."""
    spans = set()
    for marker in CALL_MARKERS:
        pos = chunk.find(marker)
        while pos >= 0:
            start = chunk.rfind(b"\n", 0, pos) + 1
            end = chunk.find(b"\n", pos)
            end = len(chunk) if end < 0 else end
            spans.add((start, end))
            pos = chunk.find(marker, end)
    return sorted(spans)


class RolloutCalls:
    """The tool calls in the session's rollout, read on from where the last look ended."""

    def __init__(self, pin: Pin) -> None:
        self.pin = pin
        self.offset = 0
        self.calls: OrderedDict[str, frozenset[str]] = OrderedDict()

    def absorb(self, fd: int) -> str | None:
        """Read what was appended since the last look (at most MAX_SCAN bytes); a problem, or None."""
        from supervisor.observe import codex_format

        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (self.pin.dev, self.pin.ino):
            return "the session's rollout was replaced by another file"
        if info.st_size < self.offset:  # codex only appends; read a truncated file again from the start
            self.offset = 0
            self.calls.clear()
        want = min(info.st_size - self.offset, MAX_SCAN)
        if want <= 0:
            return None
        chunk = os.pread(fd, want, self.offset)
        whole = chunk.rfind(b"\n") + 1
        if not whole:
            if len(chunk) >= MAX_SCAN:  # one line longer than a look (a huge output): step over it
                self.offset += len(chunk)
            return None
        for start, end in _line_spans(chunk[:whole]):
            try:
                call = codex_format.tool_call(json.loads(chunk[start:end]))
            except ValueError:
                continue
            if call is not None and call.call_id:
                self.calls[call.call_id] = call_forms(call.arguments)
                self.calls.move_to_end(call.call_id)
                if len(self.calls) > MAX_CALLS:
                    self.calls.popitem(last=False)
        self.offset += whole
        return None

    def more(self, fd: int) -> bool:
        """Whether bytes are left to read (the last look stopped at MAX_SCAN)."""
        return os.fstat(fd).st_size - self.offset > 0


def remember(seen: OrderedDict[str, None], call_id: str) -> bool:
    """Mark a call id as confirmed once; False if it already was (a replay of a genuine request)."""
    if call_id in seen:
        return False
    seen[call_id] = None
    if len(seen) > MAX_CALLS:
        seen.popitem(last=False)
    return True


def fields(reason: str | None) -> dict[str, Any]:
    """What a receipt body carries: `provenance`, and why when it is unconfirmed."""
    if reason is None:
        return {"provenance": CONFIRMED}
    return {"provenance": UNCONFIRMED, "provenance_reason": reason}


def is_unconfirmed(body: Any) -> bool:
    return isinstance(body, dict) and body.get("provenance") == UNCONFIRMED
