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
        con = sqlite3.connect(tmp)
        con.executescript(script)
        con.commit()
        con.close()
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
