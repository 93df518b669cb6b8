"""Find a thread's rollout file without rescanning the whole sessions tree on every call."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import orjson

from supervisor.observe import codex_format as cf


def _day_dirs(sessions: Path, around: float) -> Iterator[Path]:
    day = dt.datetime.fromtimestamp(around)
    for delta in (0, -1, 1):
        d = day + dt.timedelta(days=delta)
        yield sessions / f"{d:%Y}" / f"{d:%m}" / f"{d:%d}"


def find_rollout(thread_id: str, codex_home: Path, around: float | None = None) -> Path | None:
    """The date folders around the session's time first, then the whole tree (and archive) once."""
    sessions = codex_home / cf.SESSIONS_DIR
    pattern = cf.rollout_glob(thread_id)
    for folder in _day_dirs(sessions, around or dt.datetime.now().timestamp()):
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    hits = sorted(sessions.glob(f"*/*/*/{pattern}"))
    hits += sorted((codex_home / cf.ARCHIVED_DIR).glob(pattern))
    return hits[0] if hits else None


def session_meta(path: Path, limit: int = 1 << 20) -> cf.SessionMeta | None:
    """The rollout's first line, when it is a session_meta; None for anything unreadable."""
    try:
        with cf.open_regular(path) as fh:
            line = fh.readline(limit)
        return cf.session_meta(orjson.loads(line))
    except (OSError, orjson.JSONDecodeError):
        return None


def find_by_workspace(workspace: str, since: float, codex_home: Path) -> tuple[str, Path] | None:
    """The first rollout started after `since` whose session_meta cwd is the workspace (tmux runs)."""
    found: list[tuple[float, str, Path]] = []
    for folder in _day_dirs(codex_home / cf.SESSIONS_DIR, since):
        for path in folder.glob(cf.rollout_glob(compressed=False)):  # a running session's file is never compressed
            try:
                if path.stat().st_mtime < since - 2:
                    continue
            except OSError:
                continue
            meta = session_meta(path)
            if meta and meta.cwd == workspace and meta.thread_id and not meta.forked_from:
                try:
                    started = dt.datetime.fromisoformat((meta.timestamp or "").replace("Z", "+00:00")).timestamp()
                except ValueError:
                    started = path.stat().st_mtime
                if started >= since - 2:
                    found.append((started, meta.thread_id, path))
    if not found:
        return None
    _, thread, path = min(found)
    return thread, path


def user_messages(path: Path, offset: int) -> tuple[list[str], int]:
    """User message texts appended to a rollout after byte `offset`; returns them and the new offset."""
    texts: list[str] = []
    try:
        with cf.open_regular(path) as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return texts, offset
    end = data.rfind(b"\n") + 1
    for raw in data[:end].splitlines():
        if cf.USER_NEEDLE not in raw:
            continue
        try:
            text = cf.user_message_text(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
        if text is not None:
            texts.append(text)
    return texts, offset + end
