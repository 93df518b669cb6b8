"""Fold `codex exec --json` events into session fields: thread id, running usage, failure, trouble."""
from __future__ import annotations

from typing import Any

import orjson

from supervisor.observe import codex_format as cf

MAX_ERROR = 2000


class ExecFold:
    """Feed it stdout lines; it returns the session fields that changed."""

    def __init__(self, thread_id: str | None = None) -> None:
        self.thread_id = thread_id
        self.failed = False
        self.error: str | None = None
        self.tool_calls = 0  # tool items started: each should have passed the guard first
        self.trouble: str | None = None  # why codex cannot reach its model right now; progress clears it
        self.progressed = False  # the last line fed showed the run moving
        self.running_tools: set[str] = set()  # tool items started and not yet completed

    @property
    def tool_running(self) -> bool:
        """A command is running, so a quiet stdout is the command's time, not the model's."""
        return bool(self.running_tools)

    def feed(self, line: bytes) -> dict[str, Any]:
        try:
            event = cf.exec_event(orjson.loads(line))
        except orjson.JSONDecodeError:
            return {}
        if event is None:
            return {}
        self.progressed = cf.exec_progress(event)
        if self.progressed:
            self.trouble = None
        elif (trouble := cf.exec_trouble(event)) is not None:
            self.trouble = trouble
        self._track_tools(event)
        if event.kind == cf.Exec.THREAD_STARTED and event.thread_id:
            self.thread_id = event.thread_id
            return {"thread_id": self.thread_id}
        if event.kind == cf.Exec.TURN_COMPLETED and event.usage is not None:
            # the usage of turn.completed is the thread's running total, so it replaces, never adds
            i, c, o, r = event.usage
            return {"input": i, "cached_input": c, "output": o, "reasoning": r, "activity": "idle"}
        if event.kind == cf.Exec.TURN_STARTED:
            return {"activity": "active"}
        if event.kind == cf.Exec.TURN_FAILED:
            self.failed = True
            self.error = (event.error or "")[:MAX_ERROR]
            return {"error": self.error}
        if event.kind == cf.Exec.ERROR:
            self.error = (event.error or "")[:MAX_ERROR]
        if event.kind == cf.Exec.ITEM_STARTED and event.item and event.item.get("type") in cf.EXEC_TOOL_ITEMS:
            self.tool_calls += 1
        return {}

    def _track_tools(self, event: cf.ExecEvent) -> None:
        if event.kind in (cf.Exec.TURN_COMPLETED, cf.Exec.TURN_FAILED):
            self.running_tools.clear()  # a turn's end ends its calls, whatever their items said
            return
        item = event.item or {}
        if item.get("type") not in cf.EXEC_TOOL_ITEMS:
            return
        key = str(item.get("id"))
        if event.kind == cf.Exec.ITEM_STARTED:
            self.running_tools.add(key)
        elif event.kind == cf.Exec.ITEM_COMPLETED:
            self.running_tools.discard(key)
