"""A place outside /tmp for CODEX_HOMEs, as a user's ~/.codex is.

codex 0.169.0 refuses to make its sandbox helper (`$CODEX_HOME/tmp/arg0-linux`) under /tmp, and with
Debian's bwrap on PATH its own sandbox cannot run a command without it. The checkout itself may sit
under /tmp (CI clones anywhere), so the repository's .cache is used only when it is not; else the
real user's ~/.cache, read before any test moves HOME.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_HOME = Path(os.path.expanduser("~"))


def _under_tmp(path: Path) -> bool:
    real = os.path.realpath(path)
    return real == "/tmp" or real.startswith("/tmp/")


def base() -> Path:
    for candidate in (ROOT / ".cache", REAL_HOME / ".cache" / "ao-tests", Path("/var/lib/ao-tests")):
        if not _under_tmp(candidate):
            candidate.mkdir(parents=True, exist_ok=True)
            return candidate
    raise RuntimeError("no directory outside /tmp for codex homes (the checkout and HOME are both under /tmp)")


def new_dir(prefix: str) -> Path:
    """A fresh directory outside /tmp; the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base()))
