"""What the pages show, read through the same functions as the CLI: `ao status --json` rows, `ao cost`
reports, pending approvals, receipts, and a session's cost over time from its rollout.

Blocking calls (the store, the usage index, tmux); the app runs them in a worker thread.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from supervisor import paths, store
from supervisor.config import Config
from supervisor.records import SessionRecord

# the board recomputes at least this often even when no file changed: ages move, and a dead runner is
# only noticed by reconciling
FULL_REFRESH_S = 5.0
APPROVAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
TERMINAL_STATUSES = ("done", "failed", "killed", "blocked", "merged", "closed", "lost")


def pricing_table(cfg: Config) -> Any:
    from supervisor.observe import pricing

    return pricing.load_table(cfg.data.get("pricing"))


def board_rows(cfg: Config) -> list[dict[str, Any]]:
    """Every session's `ao status --json` row (reconciled, as `ao status` does), those needing a human first."""
    from supervisor.report import status_view

    rows = status_view.status_rows(None, status_view.status_filter(False, None, None, False), pricing_table(cfg))
    return sorted(rows, key=lambda r: r.get("attention") is None)  # stable: otherwise oldest first, as `ao status`


@dataclass(frozen=True)
class Filters:
    active: bool = False
    project: str | None = None
    attention: bool = False

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        return cls(active=query.get("active") in ("1", "on", "true"), project=query.get("project") or None,
                   attention=query.get("attention") in ("1", "on", "true"))

    def keep(self, row: Mapping[str, Any]) -> bool:
        from supervisor.sessions import fleet

        if self.attention and row.get("attention") is None:
            return False
        if self.project and row.get("project") != self.project:
            return False
        if self.active:
            # as `fleet.is_active`: live and working, or a live interactive agent (attention `input`)
            return row.get("status") in {s.value for s in fleet.ACTIVE_STATUSES} or row.get("attention") == "input"
        return True

    def query(self) -> str:
        parts = [("active", "1") if self.active else None, ("attention", "1") if self.attention else None,
                 ("project", self.project) if self.project else None]
        from urllib.parse import urlencode

        return urlencode([p for p in parts if p])


def pending_approvals() -> list[dict[str, Any]]:
    from supervisor.report import cmd_govern

    out = []
    for record in cmd_govern.pending():
        out.append({**record, "command_text": cmd_govern.describe_command(record)})
    return out


def fingerprint(rows: list[dict[str, Any]]) -> tuple[Any, ...]:
    """Cheap stats that change when a board row would: the store, approvals, and live sessions' rollouts."""
    db = str(paths.db_path())
    names = [db, db + "-wal"]
    names += [str(r["rollout_path"]) for r in rows
              if r.get("rollout_path") and r.get("status") not in TERMINAL_STATUSES]
    stats: list[Any] = []
    for name in names:
        try:
            st = os.stat(name)
            stats.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append((name, None))
    approvals = paths.ao_home() / "approvals"
    try:
        with os.scandir(approvals) as it:
            stats += sorted((e.name, e.stat().st_mtime_ns) for e in it if e.name.endswith(".json"))
    except OSError:
        pass
    return tuple(stats)


@dataclass
class Snapshot:
    version: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    at: float = 0.0
    seen: tuple[Any, ...] = ()


def refresh(cfg: Config, last: Snapshot, now: float | None = None) -> Snapshot:
    """A new snapshot when something changed (or FULL_REFRESH_S passed), else LAST itself."""
    from supervisor.errors import FatalError

    now = time.monotonic() if now is None else now
    seen = fingerprint(last.rows)
    if last.version and seen == last.seen and now - last.at < FULL_REFRESH_S:
        return last
    try:
        rows, approvals, error = board_rows(cfg), pending_approvals(), None
    except (FatalError, OSError) as exc:  # a locked or half-written store: keep showing the last rows
        rows, approvals, error = last.rows, last.approvals, str(exc)
    # `seen` stays the stats taken before the read: a write during it shows as a change next tick
    if last.version and (rows, approvals, error) == (last.rows, last.approvals, last.error):
        return Snapshot(last.version, rows, approvals, error, now, seen)
    return Snapshot(last.version + 1, rows, approvals, error, now, seen)


def find_session(name_or_id: str) -> SessionRecord | None:
    """Only sessions in the store; anything else (a path, `..`) is unknown."""
    if not name_or_id or len(name_or_id) > 200:
        return None
    return store.find(name_or_id)


def session_row(cfg: Config, record: SessionRecord) -> dict[str, Any]:
    from supervisor.report import status_view

    return status_view.status_rows(record["session"], status_view.status_filter(False, None, None, False),
                                   pricing_table(cfg))[0]


def receipts(record: SessionRecord) -> tuple[list[dict[str, Any]], list[str]]:
    from supervisor.errors import FatalError
    from supervisor.sessions import query

    try:
        stream = query.receipts(record)
    except FatalError as exc:
        return [], [str(exc)]
    return stream.receipts, stream.warnings


def cost_over_time(cfg: Config, record: SessionRecord) -> list[tuple[str, float]]:
    """(quarter-hour bucket, cumulative USD) after each response in the session's rollout.

    Folded from the rollout alone: a fork's copied history is not told apart here, so for a forked
    thread the last point can exceed the board's cost, which the usage index dedupes across files.
    """
    from supervisor.observe import pricing, rollout, usage
    from supervisor.sessions import query

    path = query.rollout_of(record)
    if not path or not os.path.isfile(path):
        return []
    table = pricing_table(cfg)
    responses, _ = usage.fold_lines(line for _, line in rollout.read_lines(path, []))
    total = Decimal(0)
    points = []
    for response in responses:
        price = pricing.lookup(table, response.model or None)
        total += pricing.cost(price, response.input, response.cached_input, response.output)
        points.append((response.bucket, float(round(total, 6))))
    return points


def cost_reports(cfg: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """`ao cost --by day --json` and `ao cost --by model --json`, from the same builder and cache."""
    import orjson

    from supervisor.report import cmd_cost

    overrides = cfg.data.get("pricing")
    by_day = orjson.loads(cmd_cost.cached_report(False, "day", None, None, None, None, overrides))
    by_model = orjson.loads(cmd_cost.cached_report(False, "model", None, None, None, None, overrides))
    return by_day, by_model


def terminal_screen(record: SessionRecord) -> str | None:
    """The tmux pane with its colours (`capture-pane -p -e`), or None for a runtime with no terminal."""
    from supervisor.launch import runtimes
    from supervisor.launch.runtimes import tmux

    runtime = runtimes.of(record)
    if not isinstance(runtime, tmux.TmuxRuntime):
        return None
    proc = tmux.tmux("capture-pane", "-p", "-e", "-t", tmux.target(record["session"]), check=False)
    return proc.stdout if proc.returncode == 0 else ""


def exec_lines(record: SessionRecord, offset: int, limit: int = 256 * 1024) -> tuple[list[str], int]:
    """New whole lines of a headless session's exec.jsonl (stored redacted) from OFFSET, and the next offset."""
    path = paths.session_dir(record["session"]) / "exec.jsonl"
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if offset > size:
                offset = 0  # replaced by a new run
            if size - offset > limit:  # a late viewer gets the tail, not megabytes of history
                fh.seek(size - limit)
                fh.readline()
                offset = fh.tell()
            else:
                fh.seek(offset)
            chunk = fh.read(limit)
    except OSError:
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    lines = chunk[:end].decode("utf-8", "replace").split("\n")
    return [line for line in lines if line.strip()], offset + end + 1
