"""Render ao's git and gh PATH wrappers into the bin dir, and report how the installed copies compare.

Each installed file carries an id line, `# ao-wrapper: <name> version=<N> sha256=<hash>`, where the
hash covers the template without that line. It tells ao's files from anyone else's, and an older
ao's files (outdated) from hand-edited ones (modified).
"""
from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from supervisor import paths, resources
from supervisor.errors import FatalError
from supervisor.locking import file_lock

NAMES = ("ao-metadata-helper.sh", "gh", "git")
LOCK_NAME = ".ao-wrappers.lock"
MODE = 0o755
ID_RE = re.compile(r"^# ao-wrapper: (\S+) version=(\d+) sha256=(\S+)$", re.MULTILINE)
STATES = ("ok", "outdated", "modified", "missing", "extra")


@dataclass(frozen=True)
class FileState:
    name: str
    path: Path
    state: str                       # one of STATES
    version: int | None = None       # the version the file on disk declares, if any
    action: str | None = None        # what install did: "written" or "removed"; None if left alone

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path), "state": self.state,
                "version": self.version, "action": self.action}


@dataclass(frozen=True)
class Identity:
    name: str
    version: int
    sha256: str


def identity(text: str) -> Identity | None:
    """The id line within the first few lines of a file, if it has one."""
    match = ID_RE.search("\n".join(text.split("\n", 4)[:4]))
    if not match:
        return None
    return Identity(match.group(1), int(match.group(2)), match.group(3))


def render(name: str) -> str:
    """The exact text this ao version installs as `name`."""
    template = resources.read_text("wrappers", name)
    if "sha256=@SHA256@" not in template:
        raise FatalError(f"wrapper template {name!r} has no `sha256=@SHA256@` id line; the package is damaged")
    body = "".join(line for line in template.splitlines(keepends=True) if "sha256=@SHA256@" not in line)
    return template.replace("@SHA256@", hashlib.sha256(body.encode()).hexdigest(), 1)


def _read_head(path: Path, limit: int = 1024) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _classify(name: str, path: Path, expected: str) -> FileState:
    if not path.exists() and not path.is_symlink():
        return FileState(name, path, "missing")
    try:
        actual = path.read_bytes().decode("utf-8", "replace")
        mode = path.stat().st_mode & 0o777
    except OSError:
        return FileState(name, path, "modified")
    found = identity(actual)
    version = found.version if found else None
    if actual == expected and mode == MODE and not path.is_symlink():
        return FileState(name, path, "ok", version)
    wanted = identity(expected)
    if found and wanted and found.name == name and (found.version, found.sha256) != (wanted.version, wanted.sha256):
        return FileState(name, path, "outdated", version)
    return FileState(name, path, "modified", version)


def _extras(bin_dir: Path) -> list[FileState]:
    """Files that an ao installed here earlier (recognised by the id line) but this version does not ship."""
    if not bin_dir.is_dir():
        return []
    out = []
    for path in sorted(bin_dir.iterdir()):
        if path.name in NAMES or path.name == LOCK_NAME or path.is_symlink() or not path.is_file():
            continue
        found = identity(_read_head(path))
        if found:
            out.append(FileState(path.name, path, "extra", found.version))
    return out


def _resolve(bin_dir: Path | None) -> Path:
    bin_dir = Path(bin_dir) if bin_dir is not None else paths.bin_dir()
    if bin_dir.exists() and not bin_dir.is_dir():
        raise FatalError(f"{bin_dir} is not a directory; ao keeps its git/gh wrappers there. Move it away and retry")
    return bin_dir


def status(bin_dir: Path | None = None) -> list[FileState]:
    """How each shipped wrapper on disk compares with what this version would write, plus extras."""
    bin_dir = _resolve(bin_dir)
    return [_classify(name, bin_dir / name, render(name)) for name in NAMES] + _extras(bin_dir)


@contextlib.contextmanager
def _locked(bin_dir: Path) -> Iterator[None]:
    """Installs into one bin dir run one at a time; the lock lives where no agent can see it."""
    locks = paths.locks_dir()
    with file_lock(locks / f"wrappers-{hashlib.sha256(str(bin_dir.resolve()).encode()).hexdigest()[:16]}.lock"):
        yield


def install(bin_dir: Path | None = None) -> list[FileState]:
    """Add what is missing, rewrite what differs, remove ao's extras; returns each file's state before."""
    bin_dir = _resolve(bin_dir)
    try:
        bin_dir.mkdir(parents=True, exist_ok=True)
        with _locked(bin_dir):
            done = []
            for name in NAMES:
                expected = render(name)
                found = _classify(name, bin_dir / name, expected)
                if found.state != "ok":
                    if (bin_dir / name).is_symlink():
                        (bin_dir / name).unlink()  # write our own file, not through someone's link
                    paths.atomic_write(bin_dir / name, expected, mode=MODE)
                    found = FileState(name, found.path, found.state, found.version, "written")
                done.append(found)
            for extra in _extras(bin_dir):
                extra.path.unlink(missing_ok=True)
                done.append(FileState(extra.name, extra.path, "extra", extra.version, "removed"))
            return done
    except OSError as exc:
        raise FatalError(f"cannot install the git/gh wrappers into {bin_dir}: {exc.strerror or exc}; "
                         "check that the directory is writable (or set AO_HOME)") from exc
