"""Where ao keeps its data. Everything lives under one env-overridable home.

The home holds exec logs, approvals, events and keys, so it is private (0700): other local users
cannot read anything under it, whatever mode a file inside was created with.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
# pathlib is imported where a Path is made, not here: it costs ~8 ms (re, fnmatch, urllib.parse), and
# the warm answers (`ao cost`, `ao status`) find their files with the *_text functions below instead.


def ao_home_text() -> str:
    """ao_home() as text, for read-only fast paths: no pathlib, and nothing is created or tightened."""
    env = os.environ.get("AO_HOME")
    return os.path.expanduser(env) if env else os.path.join(os.path.expanduser("~"), ".agent-orchestrator")


def codex_home_text() -> str:
    """codex_home() as text (no pathlib)."""
    env = os.environ.get("CODEX_HOME")
    return os.path.expanduser(env) if env else os.path.join(os.path.expanduser("~"), ".codex")


def ao_home() -> Path:
    return _home_for(os.environ.get("AO_HOME"), os.environ.get("HOME"))


_HOMES: dict[tuple[str | None, str | None], Path] = {}


def _home_for(env: str | None, home_env: str | None) -> Path:
    # cached per environment value: `ao status` asks hundreds of times per call, so the home is
    # created (or an existing one tightened) once per process, on first use. A dict, not
    # lru_cache: functools imports collections, ~2 ms of every warm answer.
    key = (env, home_env)
    home = _HOMES.get(key)
    if home is not None:
        return home
    from pathlib import Path

    home = Path(env).expanduser() if env else Path.home() / ".agent-orchestrator"
    try:
        ensure_private_dir(home)
    except OSError:
        pass  # unwritable or not ours: the first real write reports it with its own context
    if len(_HOMES) >= 8:
        _HOMES.clear()
    _HOMES[key] = home
    return home


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) if missing and make it 0700; returns it."""
    from pathlib import Path

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
    if st.st_mode & 0o777 != 0o700 and st.st_uid == os.getuid():
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; chmod is not
    return path


def codex_home() -> Path:
    from pathlib import Path

    env = os.environ.get("CODEX_HOME")
    return Path(env).expanduser() if env else Path.home() / ".codex"


def db_path() -> Path:
    return ao_home() / "ao.db"


def sessions_dir() -> Path:
    return ao_home() / "sessions"


def session_dir(session_id: str) -> Path:
    return sessions_dir() / session_id


def locks_dir() -> Path:
    """Where ao's lock files live: a private dir the jail hides (flock needs only a read-only open)."""
    return ensure_private_dir(ao_home() / "locks")


def worktrees_dir() -> Path:
    return ao_home() / "worktrees"


def bin_dir() -> Path:
    return ao_home() / "bin"


def codex_cache_dir() -> Path:
    return ao_home() / "cache" / "codex"


_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def temp_file(folder: str | Path, prefix: str) -> tuple[int, str]:
    """A new private (0600) file in `folder`, opened for writing: (fd, path). tempfile.mkstemp's
    guarantees (exclusive create, no link followed) without importing tempfile, whose random, shutil and
    friends cost ~19 ms of every command that writes a file."""
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}")
        try:
            return os.open(name, _TEMP_FLAGS, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def atomic_write(path: Path, data: bytes | str, mode: int = 0o600, durable: bool = True,
                 keep_existing: bool = False) -> None:
    """Write via a temp file in the same dir and rename, so readers never see half a file.

    Private (0600) unless `mode` says otherwise, e.g. 0o755 for an executable. `durable`: the bytes
    reach the disk before the rename; a cache whose readers check what they read can skip that wait.
    `keep_existing`: the file is linked into place only if none is there yet; a file another process
    put there first stays (a key two processes create at once must end up the same for both).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = temp_file(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if keep_existing:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
