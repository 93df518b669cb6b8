"""Find a thread's rollout file without rescanning the whole sessions tree on every call."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Iterator

import orjson


def _day_dirs(sessions: Path, around: float) -> Iterator[Path]:
    day = dt.datetime.fromtimestamp(around)
    for delta in (0, -1, 1):
        d = day + dt.timedelta(days=delta)
        yield sessions / f"{d:%Y}" / f"{d:%m}" / f"{d:%d}"


def find_rollout(thread_id: str, codex_home: Path, around: float | None = None) -> Path | None:
    """The date folders around the session's time first, then the whole tree (and archive) once."""
    sessions = codex_home / "sessions"
    for folder in _day_dirs(sessions, around or dt.datetime.now().timestamp()):
        hits = sorted(folder.glob(f"rollout-*{thread_id}.jsonl*"))
        if hits:
            return hits[0]
    hits = sorted(sessions.glob(f"*/*/*/rollout-*{thread_id}.jsonl*"))
    hits += sorted((codex_home / "archived_sessions").glob(f"rollout-*{thread_id}.jsonl*"))
    return hits[0] if hits else None


def first_line(path: Path, limit: int = 1 << 20) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as fh:
            line = fh.readline(limit)
        value = orjson.loads(line)
    except (OSError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def session_meta(path: Path) -> dict[str, Any] | None:
    line = first_line(path)
    if not line:
        return None
    payload = line.get("payload") if line.get("type") == "session_meta" else None
    return payload if isinstance(payload, dict) else None


def find_by_workspace(workspace: str, since: float, codex_home: Path) -> tuple[str, Path] | None:
    """The first rollout started after `since` whose session_meta cwd is the workspace (tmux runs)."""
    found: list[tuple[float, str, Path]] = []
    for folder in _day_dirs(codex_home / "sessions", since):
        for path in folder.glob("rollout-*.jsonl"):
            try:
                if path.stat().st_mtime < since - 2:
                    continue
            except OSError:
                continue
            meta = session_meta(path)
            if meta and meta.get("cwd") == workspace and meta.get("id") and not meta.get("forked_from_id"):
                stamp = str(meta.get("timestamp") or "")
                try:
                    started = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    started = path.stat().st_mtime
                if started >= since - 2:
                    found.append((started, str(meta["id"]), path))
    if not found:
        return None
    _, thread, path = min(found)
    return thread, path


def user_messages(path: Path, offset: int) -> tuple[list[str], int]:
    """User message texts appended to a rollout after byte `offset`; returns them and the new offset."""
    texts: list[str] = []
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return texts, offset
    end = data.rfind(b"\n") + 1
    for raw in data[:end].splitlines():
        if b'"user"' not in raw:
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        payload = line.get("payload") if isinstance(line, dict) else None
        if isinstance(payload, dict) and payload.get("type") == "message" and payload.get("role") == "user":
            content = payload.get("content") or []
            texts.append("".join(c.get("text", "") for c in content if isinstance(c, dict)))
    return texts, offset + end
