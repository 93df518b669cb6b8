"""`$AO_HOME/trusted-configs.json`: repository configs the user accepted, by resolved path and sha256.

A path with a different hash, or a hash at a different path, is not trusted: a relative
`codex.binary` means something else in another repository. An unreadable or corrupt store trusts
nothing, which only ever makes ao refuse more.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from supervisor import paths
from supervisor.errors import FatalError

FILE_NAME = "trusted-configs.json"
FORMAT = 1


def store_path() -> Path:
    return paths.ao_home() / FILE_NAME


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key(path: Path) -> str:
    return str(Path(path).expanduser().resolve())


def _read() -> dict[str, str]:
    try:
        doc = json.loads(store_path().read_bytes())
    except (OSError, ValueError):
        return {}
    configs = doc.get("configs") if isinstance(doc, dict) else None
    if not isinstance(configs, dict):
        return {}
    return {str(k): v for k, v in configs.items() if isinstance(v, str)}


def is_trusted(path: Path, sha256: str) -> bool:
    return _read().get(_key(path)) == sha256


def record(path: Path, sha256: str) -> str:
    """Trust `path` with exactly this content; returns the hash. Serialised by a lock file."""
    from supervisor.locking import file_lock

    home = paths.ensure_private_dir(paths.ao_home())
    try:
        with file_lock(home / f".{FILE_NAME}.lock"):
            _record_locked(path, sha256)
    except OSError as exc:
        raise FatalError(f"cannot write {store_path()}: {exc.strerror}; check that {home} is writable") from None
    return sha256


def _record_locked(path: Path, sha256: str) -> None:
    configs = _read()
    configs[_key(path)] = sha256
    text = json.dumps({"format": FORMAT, "configs": configs}, indent=2, sort_keys=True) + "\n"
    try:
        paths.atomic_write(store_path(), text, mode=0o600)
    except OSError as exc:
        raise FatalError(f"cannot write {store_path()}: {exc.strerror}; free space or fix permissions "
                         "and run `ao trust` again") from None
