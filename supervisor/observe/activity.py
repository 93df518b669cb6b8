"""Activity of a live session from the tail of its event stream: active, idle, waiting_input, blocked, exited."""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import orjson

from supervisor.observe import codex_format as cf

TAIL_BYTES = 64 * 1024
STALE_AFTER = 300.0  # a turn with no event for this long is reported idle, not active



def last_events(path: Path, limit: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The complete lines in the last `limit` bytes of a rollout, parsed; never the whole file."""
    try:
        with cf.open_regular(path) as fh:  # a FIFO or /dev/zero here would hang the status board
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
        if kind in cf.TRAILING_KINDS:  # may follow a turn's end: the event before it decides
            continue
        if kind in cf.WAITING_KINDS:
            return "waiting_input"
        if kind in cf.BLOCKED_KINDS:
            return "blocked"
        if kind in cf.IDLE_KINDS:
            return "idle"
        if kind in cf.WORKING_KINDS:
            return "idle" if age > STALE_AFTER else "active"
    return "active" if age <= STALE_AFTER else "idle"


def event_time(event: dict[str, Any]) -> float | None:
    """An event's own timestamp (epoch seconds), or None when it has none that parses."""
    stamp = event.get(cf.TIMESTAMP)
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
    stamp = event_time(events[-1]) if events else None
    if stamp is None:
        try:
            st = path.stat()
        except OSError:
            return None
        if not cf.is_regular(st):  # a FIFO's or a device's mtime says nothing about codex
            return None
        stamp = st.st_mtime
    return classify([cf.line_kind(e) for e in events], (now or time.time()) - stamp, alive, **flags)
