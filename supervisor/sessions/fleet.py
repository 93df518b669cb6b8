"""Which sessions a fleet command is about: `ao status` filters and the `--since`/`--older-than` clock.

Pure functions over records and rows (the clock is an argument), so the CLI, `ao prune` and tests share them.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from supervisor.errors import FatalError
from supervisor.records import SessionRecord, Status

# A live session in one of these is doing (or about to do) work; an interactive live one counts whatever it shows.
ACTIVE_STATUSES = frozenset({Status.QUEUED, Status.SPAWNING, Status.WORKING, Status.STALLED})
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def cutoff(text: str, now: float, option: str = "--since") -> float:
    """The epoch second `text` names: a span back from `now` (`30m`, `2h`, `1d`) or an ISO date/time.

    A date or time without a zone is local time, as the user typed it.
    """
    span = _SPAN.match(text)
    if span:
        return now - float(span.group(1)) * _UNIT_S[span.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FatalError(f"{option} {text!r} is neither a span like 30m, 2h, 1d nor an ISO date like "
                         "2025-01-31 or 2025-01-31T09:00") from None
    return when.timestamp()  # naive means local time, which is what timestamp() assumes


def age_text(seconds: float | None) -> str:
    """`45s`, `5m`, `3h`, `2d`: the largest whole unit, for a column a few characters wide."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def project_of(record: Mapping[str, Any]) -> str:
    """The config's project name, else the repository's folder name, else the workspace's."""
    repo, workspace = record.get("repo"), record.get("workspace")
    return str(record.get("project") or (Path(repo).name if repo else Path(workspace).name if workspace else ""))


def matches_project(record: Mapping[str, Any], wanted: str) -> bool:
    """`--project P`: P is the project name, the repository's name, or the repository's or workspace's path."""
    if wanted == project_of(record):
        return True
    target = Path(wanted).expanduser()
    if not (target.is_absolute() or wanted.startswith(".") or "/" in wanted):
        return False
    target = target.resolve()
    return any(place and Path(place).resolve() == target for place in (record.get("repo"), record.get("workspace")))


def is_active(record: SessionRecord, interactive: bool) -> bool:
    """Live and working (or about to), or a live interactive session, which may sit idle waiting for its user."""
    if record.get("ended_at") is not None:
        return False
    return interactive or record["status"] in ACTIVE_STATUSES


class StatusFilter(NamedTuple):
    """`ao status` filters; they combine with AND. `since` is an epoch second, already resolved.

    A NamedTuple, not a dataclass: `dataclasses` imports `inspect`, a cost every `ao status` paid."""

    active: bool = False
    project: str | None = None
    since: float | None = None
    attention: bool = False


def select_records(records: Iterable[SessionRecord], wanted: StatusFilter) -> list[SessionRecord]:
    """The records passing the filters that need no status row (all but `attention`)."""
    from supervisor.launch import runtimes

    def interactive(record: SessionRecord) -> bool:
        try:
            return bool(runtimes.of(record).interactive)
        except FatalError:  # a runtime this ao no longer knows is not one a person can attach to
            return False

    out = []
    for record in records:
        if wanted.active and not is_active(record, interactive(record)):
            continue
        if wanted.project and not matches_project(record, wanted.project):
            continue
        if wanted.since is not None and float(record.get("started_at") or 0) < wanted.since:
            continue
        out.append(record)
    return out


def select_rows(rows: Iterable[dict[str, Any]], wanted: StatusFilter) -> list[dict[str, Any]]:
    return [row for row in rows if not wanted.attention or row.get("attention") is not None]
