"""Fold `codex exec --json` events into session fields: thread id, running usage, failure."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
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


def find_rollout(thread_id: str, codex_home: Path) -> Path | None:
    """Look in the date folders around now first, then the whole tree once."""
    sessions = codex_home / "sessions"
    today = dt.datetime.now()
    for day in (today, today - dt.timedelta(days=1), today + dt.timedelta(days=1)):
        folder = sessions / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        hits = sorted(folder.glob(f"rollout-*{thread_id}.jsonl*"))
        if hits:
            return hits[0]
    hits = sorted(sessions.glob(f"*/*/*/rollout-*{thread_id}.jsonl*"))
    return hits[0] if hits else None
