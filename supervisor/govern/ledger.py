"""The append-only, hash-chained, ed25519-signed receipt ledger of one session.

Two files under `$AO_HOME/sessions/<session>/`:
- `ledger.spool.jsonl`: unsigned events. The hook guard appends here on its hot path (one O_APPEND
  write, stdlib only), because importing `cryptography` alone costs more than the guard's budget.
- `ledger.jsonl`: the signed ledger. `seal()` moves new spool lines into it under a file lock,
  giving each a seq, the sha256 of the previous line (`prev`) and a signature (`sig`). Every line
  records how far into the spool it has read (`spool`), so a crash between two steps never seals
  a spool line twice. Direct writers (`append`) seal first, so the ledger keeps causal order.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from supervisor import paths

KINDS = ("tool_call", "wrapper_event", "guard_decision", "approval", "budget_stop", "lifecycle")
LEDGER = "ledger.jsonl"
SPOOL = "ledger.spool.jsonl"
KEY_NAME = "ledger_ed25519"
GENESIS = "0" * 64

from supervisor.redact import redact


def canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


# --- keys -----------------------------------------------------------------------------------------

def key_path(ao_home: Path | None = None) -> Path:
    return Path(ao_home or paths.ao_home()) / "keys" / KEY_NAME


def load_or_create_key(ao_home: Path | None = None) -> Any:
    """The installation's signing key, created with mode 0600 on first use (race-safe via link)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = key_path(ao_home)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race; then use its key
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an ed25519 private key")
    return key


def public_key_raw(ao_home: Path | None = None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return load_or_create_key(ao_home).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_raw: bytes) -> str:
    return "SHA256:" + hashlib.sha256(public_raw).hexdigest()[:32]


def sign_entry(key: Any, entry: dict[str, Any]) -> bytes:
    """The line to write: the entry plus `sig`, ed25519 over the canonical entry without `sig`."""
    body = {k: v for k, v in entry.items() if k != "sig"}
    sig = base64.b64encode(key.sign(canonical(body))).decode()
    return canonical({**body, "sig": sig})


# --- writing --------------------------------------------------------------------------------------

@contextmanager
def _locked(session_dir: Path) -> Iterator[None]:
    session_dir.mkdir(parents=True, exist_ok=True)
    with open(session_dir / "ledger.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _last_line(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            chunk, pos = b"", end
            while pos > 0:
                step = min(8192, pos)
                pos -= step
                fh.seek(pos)
                chunk = fh.read(step) + chunk
                body = chunk.rstrip(b"\n")
                if b"\n" in body:
                    return body.rsplit(b"\n", 1)[1]
            body = chunk.rstrip(b"\n")
            return body or None
    except FileNotFoundError:
        return None


def _head(session_dir: Path) -> tuple[int, str, int]:
    """(last seq, hash of the last line, spool offset read so far)."""
    last = _last_line(session_dir / LEDGER)
    if last is None:
        return 0, GENESIS, 0
    entry = json.loads(last)
    return int(entry["seq"]), line_hash(last), int(entry.get("spool", 0))


def _write(session_dir: Path, lines: list[bytes]) -> None:
    if not lines:
        return
    fd = os.open(session_dir / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"".join(line + b"\n" for line in lines))
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry(seq: int, ts: float, kind: str, body: Any, prompt_hash: str | None, prev: str,
           spool: int) -> dict[str, Any]:
    if kind not in KINDS:
        body, kind = {"unknown_kind": kind, "body": body}, "lifecycle"
    return {"seq": seq, "ts": round(float(ts), 6), "kind": kind, "body": redact(body),
            "prompt_hash": prompt_hash, "prev": prev, "spool": spool}


def _seal_locked(session_dir: Path, key: Any) -> tuple[int, str, int, int]:
    seq, prev, offset = _head(session_dir)
    sealed = 0
    try:
        with open(session_dir / SPOOL, "rb") as fh:
            fh.seek(offset)
            pending = fh.read()
    except FileNotFoundError:
        pending = b""
    lines = []
    for raw in pending.split(b"\n")[:-1]:  # only whole lines; a half-written tail waits
        offset += len(raw) + 1
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
            ts, kind, body, prompt_hash = event["ts"], event["kind"], event.get("body"), event.get("prompt_hash")
        except (ValueError, KeyError, TypeError):
            ts, kind, body, prompt_hash = time.time(), "lifecycle", {
                "event": "spool_line_unreadable", "raw": raw[:500].decode("utf-8", "replace")}, None
        seq += 1
        line = sign_entry(key, _entry(seq, ts, kind, body, prompt_hash, prev, offset))
        lines.append(line)
        prev = line_hash(line)
        sealed += 1
    _write(session_dir, lines)
    return seq, prev, offset, sealed


def spool(session_dir: Path, kind: str, body: Any, prompt_hash: str | None = None) -> None:
    """Queue one unsigned event for the next seal, in one O_APPEND write; never loads the signing key.

    For long-lived processes such as a session's runner, which would otherwise carry the crypto
    library in memory for the whole run just to sign its exit.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    line = json.dumps({"ts": time.time(), "kind": kind, "body": redact(body), "prompt_hash": prompt_hash},
                      separators=(",", ":")) + "\n"
    fd = os.open(session_dir / SPOOL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def ingest_wrapper_events(session_dir: Path) -> int:
    """Queue the wrappers' new events.jsonl lines as wrapper_event receipts, each exactly once.

    A cursor file keeps the byte offset already taken, under a lock, so concurrent callers (status
    calls, the runner's end) never queue a line twice; a torn last line waits for its newline.
    """
    from supervisor.observe import events as events_mod

    source = session_dir / "events.jsonl"
    if not source.exists():
        return 0
    cursor_path = session_dir / "events.ledgered"
    with open(session_dir / ".events.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            offset = int(cursor_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            offset = 0
        with open(source, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        taken = 0
        for raw in data[:end].split(b"\n"):
            event = events_mod.parse_line(raw) if raw.strip() else None
            if event is not None:
                spool(session_dir, "wrapper_event", event)
                taken += 1
        if end:
            paths.atomic_write(cursor_path, str(offset + end))
    return taken


def seal(session_dir: Path, ao_home: Path | None = None) -> int:
    """Sign and move new spool lines into the ledger; returns how many were sealed."""
    key = load_or_create_key(ao_home or session_dir.parents[1])
    with _locked(session_dir):
        return _seal_locked(session_dir, key)[3]


def append(session_dir: Path, kind: str, body: Any, prompt_hash: str | None = None,
           ao_home: Path | None = None) -> dict[str, Any]:
    """Append one signed line now (after sealing what the guard spooled); returns the entry."""
    key = load_or_create_key(ao_home or session_dir.parents[1])
    with _locked(session_dir):
        seq, prev, offset, _ = _seal_locked(session_dir, key)
        if prompt_hash is None:
            prompt_hash = _last_prompt_hash(session_dir)
        line = sign_entry(key, _entry(seq + 1, time.time(), kind, body, prompt_hash, prev, offset))
        _write(session_dir, [line])
    return json.loads(line)


def _last_prompt_hash(session_dir: Path) -> str | None:
    last = _last_line(session_dir / LEDGER)
    return json.loads(last).get("prompt_hash") if last else None


def raw_lines(session_dir: Path) -> list[bytes]:
    try:
        data = (session_dir / LEDGER).read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.split(b"\n") if line]


def read(session_dir: Path, seal_first: bool = True) -> list[dict[str, Any]]:
    if seal_first and (session_dir / SPOOL).exists():
        seal(session_dir)
    return [json.loads(line) for line in raw_lines(session_dir)]


# --- checking -------------------------------------------------------------------------------------

def check_line(line: bytes, number: int, prev: str, public_key: Any) -> str | None:
    """Why ledger line `number` (1-based) is bad, or None. `prev` is the hash of the line before it."""
    from cryptography.exceptions import InvalidSignature

    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return "not valid JSON"
    if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
        return "not a ledger entry (no sig)"
    if canonical(entry) != line:
        return "bytes differ from the signed canonical form"
    if entry.get("seq") != number:
        return f"seq is {entry.get('seq')!r}, expected {number} (a line was removed, added or moved)"
    if entry.get("prev") != prev:
        return "prev does not match the hash of the line before (chain broken)"
    try:
        public_key.verify(base64.b64decode(entry["sig"], validate=True),
                          canonical({k: v for k, v in entry.items() if k != "sig"}))
    except (InvalidSignature, ValueError):
        return "bad signature"
    return None


def check_lines(lines: list[bytes], public_raw: bytes) -> tuple[bool, int | None, str]:
    """Check a whole ledger; returns (ok, first bad 1-based line, reason)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public_key = Ed25519PublicKey.from_public_bytes(public_raw)
    prev = GENESIS
    for number, line in enumerate(lines, 1):
        problem = check_line(line, number, prev, public_key)
        if problem:
            return False, number, problem
        prev = line_hash(line)
    return True, None, f"{len(lines)} lines verified"
