"""The append-only, hash-chained, ed25519-signed receipt ledger of one session.

Two files under `$AO_HOME/sessions/<session>/`:
- `ledger.spool.jsonl`: unsigned events, one O_APPEND write each, for writers that must not load
  the crypto library (the runner's exit, the wrappers' events). Anyone with the user's uid can write
  it, the agent included, so its lines are sealed as what they are: `wrapper_event` lines become
  claims, and a spooled guard kind (`guard_decision`, `approval`, `budget_*`, `operator`) is sealed
  as a `forged_spool_line`. Those kinds reach the ledger only through `LedgerWriter`, which the
  guard side holds, with the key in memory.
- `ledger.jsonl`: the signed ledger. Each line carries a seq, the sha256 of the previous line
  (`prev`), how far into the spool it has read (`spool`, so a crash never seals a spool line twice)
  and a signature (`sig`).
After every write the new head (seq, hash) is anchored in `$AO_HOME/ao.db` (see `anchor.py`), so a
ledger truncated or rolled back in place no longer checks out.
"""
from __future__ import annotations

import base64
import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.digest import sha256
from supervisor.errors import FatalError
from supervisor.locking import file_lock
from supervisor.redact import redact

KINDS = ("tool_call", "wrapper_event", "guard_decision", "approval", "budget_stop", "budget_exhausted",
         "budget_warning", "operator", "lifecycle", "reaction")
# Decisions only the guard side (or the operator's own ao command) makes; a spool line claiming one of
# these kinds is a forgery.
GUARD_KINDS = frozenset(("guard_decision", "approval", "budget_stop", "budget_exhausted", "budget_warning",
                         "operator", "reaction"))
LEDGER = "ledger.jsonl"
SPOOL = "ledger.spool.jsonl"
KEY_NAME = "ledger_ed25519"
GENESIS = "0" * 64
# Longer commands are stored as sha256 + length (+ a labelled head), never as a silent prefix.
TEXT_LIMIT = 2000
SIG_BYTES, PUBLIC_KEY_BYTES = 64, 32


class LedgerError(FatalError):
    """The ledger cannot be written or trusted as it is on disk."""


# --- strict encodings -----------------------------------------------------------------------------

def canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def line_hash(line: bytes) -> str:
    return sha256(line.rstrip(b"\n")).hexdigest()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf, which canonical() cannot write back
        raise ValueError(f"{text} is out of range")
    return value


def strict_loads(raw: bytes | str) -> Any:
    """JSON as written by canonical(): UTF-8, no NaN/Infinity, no duplicate keys."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                      parse_float=_finite_float)


def strict_object(raw: bytes | str) -> dict[str, Any]:
    value = strict_loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def b64_strict(text: Any, size: int) -> bytes:
    """Decode base64 that must be exactly what b64encode writes for `size` bytes.

    Lenient decoding ignores the spare low bits of the last character before `=`, so a flipped bit
    there would still decode to the same signature; re-encoding and comparing catches it.
    """
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != size or base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


# --- keys -----------------------------------------------------------------------------------------

def key_path(ao_home: Path | None = None) -> Path:
    return Path(ao_home or paths.ao_home()) / "keys" / KEY_NAME


def public_key_path(ao_home: Path | None = None) -> Path:
    return key_path(ao_home).with_name(KEY_NAME + ".pub")


# An ed25519 private key in PKCS#8 (RFC 8410) is this 16-byte DER prefix and the 32-byte seed; the
# PEM file holds that in one base64 line. It is what `cryptography` wrote for keys made before this.
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_HEAD, _PEM_TAIL = b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----"


class SigningKey:
    """The installation's ed25519 key, signing through libsodium (PyNaCl).

    The runner holds one for its whole life, so what the signer costs is paid by every agent:
    libsodium adds ~3.5 MB resident where `cryptography` (Rust and a static OpenSSL) added ~9 MB.
    Signatures are plain RFC 8032 ed25519 either way; the checkers below verify with `cryptography`.
    """

    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        from nacl.signing import SigningKey as NaclKey

        self._key = NaclKey(seed)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte signature alone (PyNaCl's own `sign` returns signature + message)."""
        return bytes(self._key.sign(data).signature)

    def public_raw(self) -> bytes:
        return bytes(self._key.verify_key)


def _pem(seed: bytes) -> bytes:
    return b"%s\n%s\n%s\n" % (_PEM_HEAD, base64.b64encode(_PKCS8_PREFIX + seed), _PEM_TAIL)


def _seed_of(pem: bytes, path: Path) -> bytes:
    """The 32-byte seed of an ed25519 PEM key; any other kind of key is refused."""
    lines = pem.strip().split(b"\n")
    if len(lines) == 3 and lines[0] == _PEM_HEAD and lines[2] == _PEM_TAIL:
        try:
            der = base64.b64decode(lines[1].strip(), validate=True)
        except ValueError:
            der = b""
        if len(der) == len(_PKCS8_PREFIX) + 32 and der.startswith(_PKCS8_PREFIX):
            return der[len(_PKCS8_PREFIX):]
    # another encoding of a key (say one that also embeds its public half): let cryptography read it
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an ed25519 private key")
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def write_public_key(key: SigningKey, ao_home: Path | None = None) -> bytes:
    """Keep `ledger_ed25519.pub` equal to the private key's public half; a verifier needs only it."""
    raw = key.public_raw()
    text = base64.b64encode(raw).decode() + "\n"
    pub = public_key_path(ao_home)
    try:
        current = pub.read_text()
    except (OSError, UnicodeDecodeError):
        current = None
    if current != text:
        paths.atomic_write(pub, text, mode=0o600)
    return raw


def load_or_create_key(ao_home: Path | None = None) -> SigningKey:
    """The installation's signing key, created with mode 0600 on first use (race-safe via link)."""
    path = key_path(ao_home)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        # an ed25519 private key is 32 random bytes (RFC 8032 5.1.5); a process that lost the race to
        # create it uses the winner's key
        paths.atomic_write(path, _pem(os.urandom(32)), keep_existing=True)
    key = SigningKey(_seed_of(path.read_bytes(), path))
    write_public_key(key, ao_home)  # also derives the .pub of installs older than it
    return key


def public_key_raw(ao_home: Path | None = None) -> bytes:
    return load_or_create_key(ao_home).public_raw()


def fingerprint(public_raw: bytes) -> str:
    return "SHA256:" + sha256(public_raw).hexdigest()[:32]


def sign_entry(key: Any, entry: dict[str, Any]) -> bytes:
    """The line to write: the entry plus `sig`, ed25519 over the canonical entry without `sig`."""
    body = {k: v for k, v in entry.items() if k != "sig"}
    sig = base64.b64encode(key.sign(canonical(body))).decode()
    return canonical({**body, "sig": sig})


# --- bodies ---------------------------------------------------------------------------------------

def command_fields(command: str, limit: int = TEXT_LIMIT) -> dict[str, Any]:
    """The command itself, or (when longer than `limit`) its sha256, length and a labelled head."""
    if len(command) <= limit:
        return {"command": command}
    return {"command_sha256": sha256(command.encode("utf-8", "surrogatepass")).hexdigest(),
            "command_len": len(command), "command_head": command[:limit]}


def _finite(value: Any) -> Any:
    """JSON-safe copy: a non-finite float (from a spool line or a caller) becomes its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def as_claim(body: Any, source: str) -> dict[str, Any]:
    """A body read from inside the agent's reach: marked so no reader takes it for a guard decision."""
    if isinstance(body, dict):
        return {**body, "claim": True, "source": source}
    return {"claim": True, "source": source, "value": body}


def is_claim(body: Any) -> bool:
    return isinstance(body, dict) and body.get("claim") is True


def _is_sourced_claim(body: Any) -> bool:
    return isinstance(body, dict) and body.get("claim") is True and isinstance(body.get("source"), str)


def _fit_body(kind: str, body: Any) -> Any:
    body = _finite(redact(body))  # hash and head are taken over the redacted command
    if kind == "wrapper_event" and not _is_sourced_claim(body):
        body = as_claim(body, "unknown")
    if isinstance(body, dict) and isinstance(body.get("command"), str) and len(body["command"]) > TEXT_LIMIT:
        command = body.pop("command")
        body.update(command_fields(command))
    return body


def _entry(seq: int, ts: Any, kind: str, body: Any, prompt_hash: Any, prev: str,
           spool: int, from_spool: bool = False) -> dict[str, Any]:
    if kind not in KINDS:
        body, kind = {"unknown_kind": str(kind), "body": body}, "lifecycle"
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
        ts = time.time()
    entry = {"seq": seq, "ts": round(float(ts), 6), "kind": kind, "body": _fit_body(kind, body),
             "prompt_hash": prompt_hash if isinstance(prompt_hash, str) else None, "prev": prev, "spool": spool}
    if from_spool:
        entry["from_spool"] = True  # an unsigned line anyone with the user's uid could have written
    return entry


# --- files ----------------------------------------------------------------------------------------

@contextmanager
def _locked(session_dir: Path) -> Iterator[None]:
    session_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(session_dir / "ledger.lock"):
        yield


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
    try:
        entry = strict_object(last)
        seq, offset = entry["seq"], entry.get("spool", 0)
        if type(seq) is not int or type(offset) is not int:
            raise ValueError("seq or spool is not an integer")
    except (ValueError, KeyError) as exc:
        raise LedgerError(f"the last line of {session_dir / LEDGER} is not a ledger entry ({exc}); "
                          f"the file was changed outside ao: check it with `ao receipts verify --session "
                          f"{session_dir.name}`") from None
    return seq, line_hash(last), offset


def _write(session_dir: Path, lines: list[bytes]) -> None:
    """Append whole lines or nothing: a short write (full disk) is cut back so no torn line stays."""
    if not lines:
        return
    data = b"".join(line + b"\n" for line in lines)
    fd = os.open(session_dir / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, f"short write to {session_dir / LEDGER} ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def _spooled_entry(raw: bytes) -> tuple[Any, str, Any, Any]:
    """(ts, kind, body, prompt_hash) to seal for one spool line, which nobody signed."""
    try:
        event = strict_object(raw)
        ts, kind, body, prompt_hash = event["ts"], event["kind"], event.get("body"), event.get("prompt_hash")
        if not isinstance(kind, str):
            raise ValueError("kind is not a string")
    except (ValueError, KeyError):
        return time.time(), "lifecycle", {
            "event": "spool_line_unreadable", "raw": raw[:500].decode("utf-8", "replace"),
            "raw_len": len(raw), "raw_sha256": sha256(raw).hexdigest()}, None
    if kind in GUARD_KINDS:
        return ts, "lifecycle", {"event": "forged_spool_line", "claimed_kind": kind, "claimed_body": body,
                                 "raw_sha256": sha256(raw).hexdigest()}, prompt_hash
    if kind == "wrapper_event" and not _is_sourced_claim(body):
        body = as_claim(body, "spool")
    return ts, kind, body, prompt_hash


# --- the writer -----------------------------------------------------------------------------------

class LedgerWriter:
    """Signs one session's ledger with a key held in memory; the guard side's way in.

    Every write seals pending spool lines first (so the ledger keeps causal order), appends under
    the ledger lock and anchors the new head in ao.db before the lock is released.
    """

    def __init__(self, session_dir: Path, ao_home: Path | None = None, key: Any = None) -> None:
        self.session_dir = Path(session_dir)
        self.ao_home = Path(ao_home) if ao_home else self.session_dir.parents[1]
        self.session = self.session_dir.name
        self.key = key if key is not None else load_or_create_key(self.ao_home)
        from supervisor.govern.anchor import Anchors

        self.anchors = Anchors(self.ao_home)

    def close(self) -> None:
        """Close the ao.db connection (it reopens on the next write)."""
        self.anchors.close()

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seal(self) -> int:
        """Sign and move new spool lines into the ledger; returns how many were sealed."""
        with _locked(self.session_dir):
            return self._write_locked([])[1]

    def append(self, kind: str, body: Any, prompt_hash: str | None = None) -> dict[str, Any]:
        """Append one signed entry now; returns it as written."""
        return self.append_many([(kind, body, prompt_hash)])[0]

    def append_many(self, events: Iterable[tuple[str, Any, str | None]]) -> list[dict[str, Any]]:
        with _locked(self.session_dir):
            lines, _ = self._write_locked(list(events))
        return [strict_object(line) for line in lines]

    def append_claims(self, source_name: str, lines: Iterable[bytes | str | dict[str, Any]]) -> list[dict[str, Any]]:
        """Record what something inside the agent's reach says (e.g. the wrappers' events) as claims."""
        events: list[tuple[str, Any, str | None]] = []
        for line in lines:
            if isinstance(line, dict):
                events.append(("wrapper_event", as_claim(line, source_name), None))
                continue
            raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
            if not raw.strip():
                continue
            try:
                body: Any = strict_loads(raw)
            except ValueError:
                body = {"unreadable": raw[:500].decode("utf-8", "replace"), "raw_len": len(raw),
                        "raw_sha256": sha256(raw).hexdigest()}
            events.append(("wrapper_event", as_claim(body, source_name), None))
        return self.append_many(events) if events else []

    def _write_locked(self, direct: list[tuple[str, Any, str | None]]) -> tuple[list[bytes], int]:
        """Seal the spool, then `direct`, in one write; anchor the head. Returns (direct lines, sealed)."""
        seq, prev, offset = _head(self.session_dir)
        try:
            with open(self.session_dir / SPOOL, "rb") as fh:
                fh.seek(offset)
                pending = fh.read()
        except FileNotFoundError:
            pending = b""
        entries: list[dict[str, Any]] = []
        for raw in pending.split(b"\n")[:-1]:  # only whole lines; a half-written tail waits
            offset += len(raw) + 1
            if raw.strip():
                ts, kind, body, prompt_hash = _spooled_entry(raw)
                entries.append(_entry(0, ts, kind, body, prompt_hash, "", offset, from_spool=True))
        sealed = len(entries)
        last_prompt: str | None = None
        for kind, body, prompt_hash in direct:
            if prompt_hash is None:
                last_prompt = last_prompt or next((e["prompt_hash"] for e in reversed(entries)
                                                   if e["prompt_hash"]), None) or _last_prompt_hash(self.session_dir)
                prompt_hash = last_prompt
            entries.append(_entry(0, time.time(), kind, body, prompt_hash, "", offset))
        if not entries:
            return [], 0
        self.anchors.check_not_behind(self.session, seq, prev)
        lines = []
        for entry in entries:
            seq += 1
            line = sign_entry(self.key, {**entry, "seq": seq, "prev": prev})
            lines.append(line)
            prev = line_hash(line)
        _write(self.session_dir, lines)
        self.anchors.record(self.session, seq, prev)
        return lines[sealed:], sealed


# --- module-level calls (thin wrappers, kept for current callers) ---------------------------------

def _home_of(session_dir: Path, ao_home: Path | None) -> Path:
    return Path(ao_home) if ao_home else Path(session_dir).parents[1]


def spool(session_dir: Path, kind: str, body: Any, prompt_hash: str | None = None) -> None:
    """Queue one unsigned event for the next seal, in one O_APPEND write; never loads the signing key.

    For long-lived processes such as a session's runner, which would otherwise carry the crypto
    library in memory for the whole run just to sign its exit. Guard kinds are refused: a spooled
    decision is sealed as a forgery, so the guard side writes through `LedgerWriter`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    if kind in GUARD_KINDS:
        raise ValueError(f"{kind!r} entries are written only by the guard side, through LedgerWriter")
    line = json.dumps({"ts": time.time(), "kind": kind, "body": _finite(redact(body)), "prompt_hash": prompt_hash},
                      separators=(",", ":"), allow_nan=False) + "\n"
    fd = os.open(session_dir / SPOOL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def ingest_wrapper_events(session_dir: Path) -> int:
    """Queue the wrappers' new events.jsonl lines as wrapper_event claims, each exactly once.

    A cursor file keeps the byte offset already taken, under a lock, so concurrent callers (status
    calls, the runner's end) never queue a line twice; a torn last line waits for its newline.
    """
    from supervisor.observe import events as events_mod

    source = session_dir / "events.jsonl"
    if not source.exists():
        return 0
    cursor_path = session_dir / "events.ledgered"
    with file_lock(session_dir / ".events.lock"):
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
                spool(session_dir, "wrapper_event", as_claim(event, "wrappers"))
                taken += 1
        if end:
            paths.atomic_write(cursor_path, str(offset + end))
    return taken


def seal(session_dir: Path, ao_home: Path | None = None) -> int:
    """Sign and move new spool lines into the ledger; returns how many were sealed."""
    with LedgerWriter(session_dir, _home_of(session_dir, ao_home)) as writer:
        return writer.seal()


def append(session_dir: Path, kind: str, body: Any, prompt_hash: str | None = None,
           ao_home: Path | None = None) -> dict[str, Any]:
    """Append one signed line now (after sealing what was spooled); returns the entry."""
    with LedgerWriter(session_dir, _home_of(session_dir, ao_home)) as writer:
        return writer.append(kind, body, prompt_hash)


def _last_prompt_hash(session_dir: Path) -> str | None:
    last = _last_line(session_dir / LEDGER)
    return strict_object(last).get("prompt_hash") if last else None


def raw_lines(session_dir: Path) -> list[bytes]:
    try:
        data = (session_dir / LEDGER).read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.split(b"\n") if line]


def read(session_dir: Path, seal_first: bool = True) -> list[dict[str, Any]]:
    if seal_first and (session_dir / SPOOL).exists():
        seal(session_dir)
    entries = []
    for number, line in enumerate(raw_lines(session_dir), 1):
        try:
            entries.append(strict_object(line))
        except ValueError as exc:
            raise LedgerError(f"{session_dir / LEDGER} line {number} is not a ledger entry ({exc}); the file "
                              f"was changed outside ao: `ao receipts verify --session {session_dir.name}` "
                              f"checks it") from None
    return entries


def snapshot(session_dir: Path, ao_home: Path | None = None) -> tuple[list[bytes], tuple[int, str] | None]:
    """Seal, then read the ledger lines and the anchored head together, under the ledger lock."""
    with LedgerWriter(session_dir, _home_of(session_dir, ao_home)) as writer, _locked(writer.session_dir):
        writer._write_locked([])
        return raw_lines(writer.session_dir), writer.anchors.get(writer.session)


# --- checking -------------------------------------------------------------------------------------

def check_line(line: bytes, number: int, prev: str, public_key: Any) -> str | None:
    """Why ledger line `number` (1-based) is bad, or None. `prev` is the hash of the line before it."""
    from cryptography.exceptions import InvalidSignature

    try:
        entry = strict_loads(line)
    except ValueError as exc:
        return f"not strict JSON ({exc})"
    if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
        return "not a ledger entry (no sig)"
    if canonical(entry) != line:
        return "bytes differ from the signed canonical form"
    if type(entry.get("seq")) is not int or entry["seq"] != number:
        return f"seq is {entry.get('seq')!r}, expected {number} (a line was removed, added or moved)"
    if entry.get("prev") != prev:
        return "prev does not match the hash of the line before (chain broken)"
    try:
        public_key.verify(b64_strict(entry["sig"], SIG_BYTES),
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


def check_anchor(lines: list[bytes], anchored: tuple[int, str] | None, session: str) -> str | None:
    """Why the ledger does not reach its anchored head, or None. Lines past the anchor are fine."""
    if anchored is None:
        if lines:
            return (f"ao.db has no anchored head for session {session}, but its ledger has {len(lines)} lines "
                    f"(the anchor row was removed, or the ledger predates anchoring)")
        return None
    seq, head = anchored
    if len(lines) < seq:
        return (f"the ledger has {len(lines)} lines but its anchored head is seq {seq}: it was truncated "
                f"or rolled back")
    if seq and line_hash(lines[seq - 1]) != head:
        return f"line {seq} does not hash to the anchored head of seq {seq}: the ledger was rewritten"
    return None


def verify_session(session_dir: Path, ao_home: Path | None = None,
                   public_raw: bytes | None = None) -> tuple[bool, int | None, str]:
    """The local check of a session's ledger: every signature and link, and the ao.db anchor.

    Signatures are checked against this installation's public key file, so no private key is needed.
    """
    from supervisor.govern import anchor, trust

    home = _home_of(session_dir, ao_home)
    if public_raw is None:
        public_raw = trust.installation_public_key(home)
        if public_raw is None:
            return False, None, f"no public key at {public_key_path(home)} to check the ledger against"
    lines = raw_lines(session_dir)
    ok, bad, reason = check_lines(lines, public_raw)
    if not ok:
        return ok, bad, f"{session_dir / LEDGER} line {bad}: {reason}"
    problem = check_anchor(lines, anchor.get(home, session_dir.name), session_dir.name)
    if problem:
        return False, None, f"{session_dir / LEDGER}: {problem}"
    # parsed, not searched: the phrase could sit inside a command; check_lines proved each line strict JSON
    bodies = [strict_object(line).get("body") for line in lines]
    unconfirmed = sum(1 for b in bodies if isinstance(b, dict) and b.get("provenance") == "unconfirmed")
    note = (f"; {unconfirmed} hook request{'s' if unconfirmed != 1 else ''} not confirmed by codex's rollout"
            if unconfirmed else "")
    return True, None, f"{len(lines)} lines verified, anchored in {home / 'ao.db'}{note}"
