"""Activity of a live session from the tail of its event stream: active, idle, waiting_input, blocked, exited."""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import orjson

TAIL_BYTES = 64 * 1024
STALE_AFTER = 300.0  # a turn with no event for this long is reported idle, not active

_WAITING = {"exec_approval_request", "apply_patch_approval_request", "request_user_input", "elicitation_request"}
_BLOCKED = {"error", "turn_aborted", "stream_error"}
_IDLE = {"task_complete", "turn_complete", "shutdown_complete"}


def last_events(path: Path, limit: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The complete lines in the last `limit` bytes of a rollout, parsed; never the whole file."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - limit))
            data = fh.read(limit)
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > limit:
        lines = lines[1:]  # the first piece is a partial line
    out = []
    for raw in lines:
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def kind_of(event: dict[str, Any]) -> str:
    payload = event.get("payload")
    if isinstance(payload, dict) and isinstance(payload.get("type"), str):
        return payload["type"]
    return str(event.get("type") or "")


def classify(kinds: list[str], age: float, alive: bool, pending_approval: bool = False,
             guard_blocked: bool = False) -> str:
    """Pure: the newest meaningful event kind decides; a dead process is exited whatever came before."""
    if not alive:
        return "exited"
    if pending_approval:
        return "waiting_input"
    if guard_blocked:
        return "blocked"
    for kind in reversed(kinds):
        if kind in _WAITING:
            return "waiting_input"
        if kind in _BLOCKED:
            return "blocked"
        if kind in _IDLE:
            return "idle"
        if kind in ("task_started", "function_call", "function_call_output", "custom_tool_call", "reasoning",
                    "agent_message", "token_count", "message", "item_completed", "token_usage_record"):
            return "idle" if age > STALE_AFTER else "active"
    return "active" if age <= STALE_AFTER else "idle"


def _event_time(event: dict[str, Any]) -> float | None:
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def activity(rollout: str | None, alive: bool, now: float | None = None, **flags: bool) -> str | None:
    """The age comes from the newest event's own timestamp; the file's mtime is only a fallback."""
    if not alive:
        return "exited"
    if not rollout:
        return None
    path = Path(rollout)
    events = last_events(path)
    stamp = _event_time(events[-1]) if events else None
    if stamp is None:
        try:
            stamp = path.stat().st_mtime
        except OSError:
            return None
    return classify([kind_of(e) for e in events], (now or time.time()) - stamp, alive, **flags)
