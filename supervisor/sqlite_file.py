"""Create and open ao's SQLite files: schema built in a temp file and renamed, WAL for many writers."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def create(path: Path, script: str) -> None:
    """Build the schema in a temp file and move it into place, so ^C never leaves half a database."""
    from supervisor import paths

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = paths.temp_file(path.parent, f".{path.name}.")
    os.close(fd)
    try:
        # One transaction and no journal: the file is private until the rename, and a build cut short
        # is deleted. Statement by statement with a journal cost four fsyncs per statement (the index's
        # schema: 32, 10-40 ms of a cold `ao cost`); now it is one fsync, before the file is shown.
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            con.executescript(f"BEGIN;\n{script}\nCOMMIT;")
        finally:
            con.close()
        fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not path.exists():  # another process may have won the race; its file is as good
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def open_wal(path: Path, timeout: float, threads: bool = False) -> sqlite3.Connection:
    """`threads`: the connection may be handed to another thread (one at a time, never shared)."""
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=not threads)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con
