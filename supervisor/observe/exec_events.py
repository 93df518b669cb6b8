"""Fold `codex exec --json` events into session fields: thread id, running usage, failure."""
from __future__ import annotations

from typing import Any

import orjson


class ExecFold:
    """Feed it stdout lines; it returns the session fields that changed."""

    def __init__(self, thread_id: str | None = None) -> None:
        self.thread_id = thread_id
        self.failed = False
        self.error: str | None = None

    def feed(self, line: bytes) -> dict[str, Any]:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(event, dict):
            return {}
        kind = event.get("type")
        if kind == "thread.started" and event.get("thread_id"):
            self.thread_id = str(event["thread_id"])
            return {"thread_id": self.thread_id}
        if kind == "turn.completed" and isinstance(event.get("usage"), dict):
            u = event["usage"]
            # the usage of turn.completed is the thread's running total, so it replaces, never adds
            return {"input": int(u.get("input_tokens") or 0),
                    "cached_input": int(u.get("cached_input_tokens") or 0),
                    "output": int(u.get("output_tokens") or 0),
                    "reasoning": int(u.get("reasoning_output_tokens") or 0),
                    "activity": "idle"}
        if kind == "turn.started":
            return {"activity": "active"}
        if kind == "turn.failed":
            self.failed = True
            err = event.get("error") or {}
            self.error = str(err.get("message") if isinstance(err, dict) else err)[:2000]
            return {"error": self.error}
        if kind == "error":
            self.error = str(event.get("message"))[:2000]
        return {}
