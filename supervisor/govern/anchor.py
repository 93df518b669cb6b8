"""Each session ledger's last signed head (seq, line hash), kept in `$AO_HOME/ao.db`.

The ledger file lives in the session directory; a copy of it from earlier, or the file cut short,
is still a valid signed chain. The anchor, written under the ledger lock after every append and
never moved backwards, is what such a rollback is checked against.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from supervisor import sqlite_file

TABLE = ("CREATE TABLE IF NOT EXISTS ledger_heads (session TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
         "head TEXT NOT NULL, updated_at REAL NOT NULL)")


def db_path(ao_home: Path) -> Path:
    return Path(ao_home) / "ao.db"


class Anchors:
    """The ledger_heads table of one ao.db. Keeps one connection per thread, since opening one
    (WAL pragma, schema check, checkpoint on close) costs more than the append it guards."""

    def __init__(self, ao_home: Path) -> None:
        self.ao_home = Path(ao_home)
        self.path = db_path(self.ao_home)
        self._local = threading.local()

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        con = getattr(self._local, "con", None)
        if con is not None:
            return con
        if not self.path.exists():
            if not create:
                return None
            # The session store owns ao.db's schema; an ao.db holding only this table would hide it.
            from supervisor import store

            sqlite_file.create(self.path, store.schema())
        con = sqlite_file.open_wal(self.path, timeout=30)
        con.execute(TABLE)
        self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            self._local.con = None
            con.close()

    def _error(self, session: str, exc: Exception, outcome: str) -> Exception:
        from supervisor.govern.ledger import LedgerError

        self.close()  # a broken connection is not reused
        return LedgerError(f"cannot use the ledger anchor of session {session} in {self.path}: {exc}; "
                           f"{outcome} (free disk space, or check that ao.db is readable and writable)")

    def get(self, session: str) -> tuple[int, str] | None:
        """The anchored (seq, head) of a session, or None when nothing was anchored."""
        try:
            con = self._connection(create=False)
            if con is None:
                return None
            row = con.execute("SELECT seq, head FROM ledger_heads WHERE session = ?", (session,)).fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise self._error(session, exc, "nothing was written") from None
        return (int(row[0]), str(row[1])) if row else None

    def record(self, session: str, seq: int, head: str) -> None:
        """Move the anchor forward to (seq, head); a lower seq never replaces a higher one."""
        try:
            con = self._connection(create=True)
            assert con is not None
            con.execute("INSERT INTO ledger_heads (session, seq, head, updated_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(session) DO UPDATE SET seq = excluded.seq, head = excluded.head, "
                        "updated_at = excluded.updated_at WHERE excluded.seq > ledger_heads.seq",
                        (session, seq, head, time.time()))
        except (OSError, sqlite3.Error) as exc:
            raise self._error(session, exc, "the ledger lines were written, their anchor was not") from None

    def check_not_behind(self, session: str, seq: int, head: str) -> None:
        """Refuse to extend a ledger whose file is behind (or off) its anchor: it was rolled back."""
        from supervisor.govern.ledger import LEDGER, LedgerError

        anchored = self.get(session)
        if anchored is None:
            return
        anchored_seq, anchored_head = anchored
        if seq < anchored_seq or (seq == anchored_seq and head != anchored_head):
            raise LedgerError(
                f"the ledger of session {session} ({self.ao_home / 'sessions' / session / LEDGER}) ends at seq "
                f"{seq}, but its head was anchored at seq {anchored_seq} in {self.path}: it was truncated or "
                f"rolled back, so ao will not extend it; keep the file as evidence and check it with "
                f"`ao receipts verify --session {session}`")


def get(ao_home: Path, session: str) -> tuple[int, str] | None:
    anchors = Anchors(ao_home)
    try:
        return anchors.get(session)
    finally:
        anchors.close()


def record(ao_home: Path, session: str, seq: int, head: str) -> None:
    anchors = Anchors(ao_home)
    try:
        anchors.record(session, seq, head)
    finally:
        anchors.close()
