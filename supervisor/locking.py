"""The one file-lock helper: an exclusive flock held for a `with` block.

Only ao's own processes take these locks. flock needs only a read-only open, so a lock file an
agent can merely read is one it can hold: every lock lives under `$AO_HOME` (mostly `locks/`),
which the jail hides from the agent.
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created 0600 if missing) until the block ends."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
