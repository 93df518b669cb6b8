"""Where ao keeps its data. Everything lives under one env-overridable home."""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path


def ao_home() -> Path:
    return _home_for(os.environ.get("AO_HOME"), os.environ.get("HOME"))


@functools.lru_cache(maxsize=8)
def _home_for(env: str | None, _home: str | None) -> Path:
    # cached per environment value: `ao status` asks hundreds of times per call
    return Path(env).expanduser() if env else Path.home() / ".agent-orchestrator"


def codex_home() -> Path:
    env = os.environ.get("CODEX_HOME")
    return Path(env).expanduser() if env else Path.home() / ".codex"


def db_path() -> Path:
    return ao_home() / "ao.db"


def sessions_dir() -> Path:
    return ao_home() / "sessions"


def session_dir(session_id: str) -> Path:
    return sessions_dir() / session_id


def worktrees_dir() -> Path:
    return ao_home() / "worktrees"


def bin_dir() -> Path:
    return ao_home() / "bin"


def codex_cache_dir() -> Path:
    return ao_home() / "cache" / "codex"


def atomic_write(path: Path, data: bytes | str, mode: int | None = None) -> None:
    """Write via a temp file in the same dir and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
