"""Session records in SQLite under $AO_HOME. Many supervisors write at once, so WAL + busy timeout."""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, cast

from supervisor import paths, sqlite_file
from supervisor.errors import FatalError
from supervisor.records import SessionRecord, Status

SCHEMA_VERSION = 3
COLUMNS = {
    "session": "TEXT PRIMARY KEY",
    "name": "TEXT",
    "project": "TEXT",
    "issue": "TEXT",
    "repo": "TEXT",
    "workspace": "TEXT NOT NULL",
    "runtime": "TEXT NOT NULL",
    "status": "TEXT NOT NULL",
    "activity": "TEXT",
    "branch": "TEXT",
    "pr_url": "TEXT",
    "pr_number": "INTEGER",
    "thread_id": "TEXT",
    "model": "TEXT",
    "input": "INTEGER NOT NULL DEFAULT 0",
    "cached_input": "INTEGER NOT NULL DEFAULT 0",
    "output": "INTEGER NOT NULL DEFAULT 0",
    "reasoning": "INTEGER NOT NULL DEFAULT 0",
    "pid": "INTEGER",
    "codex_pid": "INTEGER",
    "exit_code": "INTEGER",
    "error": "TEXT",
    "rollout_path": "TEXT",
    "prompt": "TEXT",
    "launch": "TEXT",
    "started_at": "REAL NOT NULL",
    "updated_at": "REAL NOT NULL",
    "ended_at": "REAL",
    # the status `ao kill` keeps because the work had finished (done, pr_open, merged); NULL otherwise.
    # It belongs to one run: a write that (re)starts a run (ended_at = NULL) clears it.
    "kept_status": "TEXT",
    "node": "TEXT",  # the Ray node a remote runtime placed the agent on; NULL for local runtimes
}
# Columns added after version 1, by the version that added them: an older ao.db gains them on open.
ADDED_COLUMNS = {2: ["kept_status"], 3: ["node"]}


def schema() -> str:
    """The session store's SQL: created whole in a temp file, so ^C never leaves half a database."""
    cols = ", ".join(f"{name} {decl}" for name, decl in COLUMNS.items())
    return (f"CREATE TABLE sessions ({cols});"
            "CREATE INDEX sessions_thread ON sessions(thread_id);"
            f"PRAGMA user_version = {SCHEMA_VERSION};")


@contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    path = paths.db_path()
    try:
        if not path.exists():
            sqlite_file.create(path, schema())
        con = sqlite_file.open_wal(path, timeout=30)
        _upgrade(con)
    except (OSError, sqlite3.Error) as exc:
        raise FatalError(f"cannot open the session store {path}: {exc}") from None
    con.row_factory = sqlite3.Row
    try:
        yield con
    except sqlite3.DatabaseError as exc:
        raise FatalError(f"session store {path} is unusable: {exc}") from None
    finally:
        con.close()


def _upgrade(con: sqlite3.Connection) -> None:
    """Add the columns a newer ao needs to an older store, once, under a write lock (many ao's open it)."""
    if con.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in con.execute("PRAGMA table_info(sessions)")}
        for version in sorted(ADDED_COLUMNS):
            for name in ADDED_COLUMNS[version]:
                if name not in have:
                    con.execute(f"ALTER TABLE sessions ADD COLUMN {name} {COLUMNS[name]}")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def new_session_id() -> str:
    import secrets  # lazy: read-only commands (`ao status`) never make an id

    return "ao-" + time.strftime("%m%d") + "-" + secrets.token_hex(3)


def _column_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def insert(fields: dict[str, Any]) -> None:
    now = time.time()
    record = {k: _column_value(v) for k, v in {"started_at": now, "updated_at": now, **fields}.items()}
    keys = ", ".join(record)
    marks = ", ".join("?" for _ in record)
    with connect() as con:
        con.execute(f"INSERT INTO sessions ({keys}) VALUES ({marks})", list(record.values()))


def update(session: str, **fields: Any) -> None:
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown session fields {sorted(unknown)}")
    fields["updated_at"] = time.time()
    if "ended_at" in fields and fields["ended_at"] is None:  # a run (re)starts: an earlier kill's outcome is not its
        fields.setdefault("kept_status", None)
    fields = {k: _column_value(v) for k, v in fields.items()}
    sets = ", ".join(f"{k} = ?" for k in fields)
    with connect() as con:
        con.execute(f"UPDATE sessions SET {sets} WHERE session = ?", [*fields.values(), session])


def delete(session: str) -> None:
    """Forget a session that never started (a spawn taken back); started ones are kept for good."""
    with connect() as con:
        con.execute("DELETE FROM sessions WHERE session = ? AND pid IS NULL", (session,))


def _row(row: sqlite3.Row) -> SessionRecord:
    out = dict(row)
    out["launch"] = json.loads(out["launch"]) if out.get("launch") else {}
    return cast(SessionRecord, out)


def get(session: str) -> SessionRecord:
    """The session with this id, else the one with this thread id or name."""
    with connect() as con:
        row = con.execute("SELECT * FROM sessions WHERE session = ?", (session,)).fetchone()
        if row is None:
            row = con.execute("SELECT * FROM sessions WHERE thread_id = ? OR name = ?",
                              (session, session)).fetchone()
    if row is None:
        raise FatalError(f"unknown session {session!r}; `ao status` lists the known ones")
    return _row(row)


def find(session_or_thread: str) -> SessionRecord | None:
    try:
        return get(session_or_thread)
    except FatalError:
        return None


def all_sessions() -> list[SessionRecord]:
    if not paths.db_path().exists():
        return []
    with connect() as con:
        return [_row(r) for r in con.execute("SELECT * FROM sessions ORDER BY started_at")]


# `launch.argv` is the whole bubblewrap command line (~30 KB a session): reading it for every row made
# `ao status` parse megabytes of JSON it never shows, so SQLite drops it before Python sees it
_STATUS_COLUMNS = ", ".join(
    "CASE WHEN launch IS NULL OR launch = '' THEN launch ELSE json_remove(launch, '$.argv') END AS launch"
    if name == "launch" else name for name in COLUMNS)


def status_sessions() -> list[SessionRecord]:
    """Every session, oldest first, as `all_sessions` gives them but without `launch.argv`: for readers
    (`ao status`) that never look at the command line. Do not write such a record's launch back."""
    if not paths.db_path().exists():
        return []
    with connect() as con:
        try:
            rows = con.execute(f"SELECT {_STATUS_COLUMNS} FROM sessions ORDER BY started_at").fetchall()
        except sqlite3.OperationalError:  # a launch that is not JSON: read as all_sessions does, which says so
            rows = con.execute("SELECT * FROM sessions ORDER BY started_at").fetchall()
        return [_row(r) for r in rows]


def is_live(record: SessionRecord) -> bool:
    """Started or waiting to start, and not yet ended (a session can end as pr_open)."""
    return record.get("ended_at") is None


SLOTS = ("active", "alive")  # config `slots`: who holds a concurrency slot


def count_running(slots: str = "alive", holds_slot: Callable[[SessionRecord], bool] | None = None) -> int:
    """Sessions holding a concurrency slot: every started, unended one (`alive`), or, with `active`, only
    those `holds_slot` says still work (an interactive agent waiting for its user gives its slot back)."""
    if slots not in SLOTS:
        raise FatalError(f"unknown slots mode {slots!r} (known: {', '.join(SLOTS)})")
    if slots == "active" and holds_slot is not None:
        return sum(1 for r in live_sessions() if r["status"] != Status.QUEUED and holds_slot(r))
    with connect() as con:
        row = con.execute(
            "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL AND status != ?", (Status.QUEUED.value,)).fetchone()
    return int(row[0])


def live_sessions() -> list[SessionRecord]:
    """Every session not yet ended, queued ones included, oldest first."""
    if not paths.db_path().exists():
        return []
    with connect() as con:
        return [_row(r) for r in con.execute("SELECT * FROM sessions WHERE ended_at IS NULL ORDER BY started_at")]
