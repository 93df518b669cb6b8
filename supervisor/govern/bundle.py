"""Evidence bundles: one session's signed ledger in a self-contained file that verifies offline.

The bundle is JSON lines, so a bad line can be named by its number in the file:
  line 1       header: format, session, the ed25519 public key, its fingerprint; signed
  lines 2..N+1 the ledger lines, byte for byte as ao wrote them
  line N+2     trailer: line count, hash of the last ledger line, hash of the header, the session
               summary and prompt hashes; signed
Every line must be in canonical JSON form, so even a change that keeps the JSON meaning (a space,
an escape) is caught. The key inside the bundle proves integrity, not authorship: to pin the
signer, compare `key_fingerprint` with `ao receipts verify --key FINGERPRINT`.
"""
from __future__ import annotations

import base64
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.govern import ledger

FORMAT = "ao-evidence-bundle/1"


def summarize(entries: list[dict[str, Any]], session: str) -> dict[str, Any]:
    kinds = Counter(e.get("kind") for e in entries)
    decisions = [e["body"] for e in entries if e.get("kind") == "guard_decision" and isinstance(e.get("body"), dict)]
    spent = [e["body"].get("spent_usd") for e in entries
             if isinstance(e.get("body"), dict) and isinstance(e["body"].get("spent_usd"), (int, float))]
    threads = sorted({e["body"]["thread_id"] for e in entries
                      if isinstance(e.get("body"), dict) and isinstance(e["body"].get("thread_id"), str)})
    return {
        "session": session,
        "entries": len(entries),
        "kinds": dict(sorted(kinds.items())),
        "tool_calls_allowed": sum(1 for d in decisions if d.get("decision") == "allow"),
        "tool_calls_denied": sum(1 for d in decisions if d.get("decision") == "deny"),
        "budget_stops": kinds.get("budget_stop", 0),
        "spent_usd": spent[-1] if spent else None,
        "thread_ids": threads,
        "first_ts": entries[0]["ts"] if entries else None,
        "last_ts": entries[-1]["ts"] if entries else None,
    }


def _signed(key: Any, entry: dict[str, Any]) -> bytes:
    return ledger.sign_entry(key, entry)


def export(session: str, out_path: Path, ao_home: Path | None = None) -> dict[str, Any]:
    """Seal the session's spool, then write its bundle to out_path; returns the summary."""
    home = Path(ao_home or paths.ao_home())
    session_dir = home / "sessions" / session
    if not session_dir.is_dir():
        raise FatalError(f"no session {session!r} under {home / 'sessions'}")
    ledger.seal(session_dir, home)
    lines = ledger.raw_lines(session_dir)
    entries = [json.loads(line) for line in lines]
    key = ledger.load_or_create_key(home)
    public_raw = ledger.public_key_raw(home)
    header = _signed(key, {"format": FORMAT, "session": session, "created": round(time.time(), 3),
                           "public_key": base64.b64encode(public_raw).decode(),
                           "key_fingerprint": ledger.fingerprint(public_raw)})
    prompt_hashes = list(dict.fromkeys(e["prompt_hash"] for e in entries if e.get("prompt_hash")))
    summary = summarize(entries, session)
    trailer = _signed(key, {"kind": "bundle_trailer", "lines": len(lines),
                            "head": ledger.line_hash(lines[-1]) if lines else ledger.GENESIS,
                            "header_sha256": ledger.line_hash(header), "summary": summary,
                            "prompt_hashes": prompt_hashes})
    paths.atomic_write(Path(out_path), b"".join(line + b"\n" for line in [header, *lines, trailer]))
    return summary


def _signed_line(line: bytes, public_key: Any) -> tuple[dict[str, Any] | None, str | None]:
    from cryptography.exceptions import InvalidSignature

    try:
        entry = json.loads(line)
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
        return None, "not a signed object"
    if ledger.canonical(entry) != line:
        return None, "bytes differ from the signed canonical form"
    try:
        public_key.verify(base64.b64decode(entry["sig"], validate=True),
                          ledger.canonical({k: v for k, v in entry.items() if k != "sig"}))
    except (InvalidSignature, ValueError):
        return None, "bad signature"
    return entry, None


def verify(path: Path, trusted_fingerprint: str | None = None) -> tuple[bool, int | None, str]:
    """(ok, first bad line number in the bundle file, reason). Needs no ao state, only the file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return False, None, f"cannot read {path}: {exc.strerror}"
    lines = data.split(b"\n")
    if lines[-1] != b"":
        return False, len(lines), "the file does not end with a newline (truncated or changed)"
    lines = lines[:-1]
    if len(lines) < 2:
        return False, 1, "not an evidence bundle (needs a header and a trailer line)"
    try:
        header = json.loads(lines[0])
        public_raw = base64.b64decode(header["public_key"], validate=True)
        public_key = Ed25519PublicKey.from_public_bytes(public_raw)
    except (ValueError, KeyError, TypeError):
        return False, 1, "line 1 is not a valid bundle header (public key unreadable)"
    checked, problem = _signed_line(lines[0], public_key)
    if problem or checked is None or checked.get("format") != FORMAT:
        return False, 1, f"line 1 (header): {problem or 'unknown format'}"
    if checked.get("key_fingerprint") != ledger.fingerprint(public_raw):
        return False, 1, "line 1 (header): key_fingerprint does not match the public key"
    if trusted_fingerprint and checked["key_fingerprint"] != trusted_fingerprint:
        return False, 1, f"line 1 (header): signed by {checked['key_fingerprint']}, not the trusted key"
    body, prev = lines[1:-1], ledger.GENESIS
    for number, line in enumerate(body, 1):
        problem = ledger.check_line(line, number, prev, public_key)
        if problem:
            return False, number + 1, f"line {number + 1} (ledger line {number}): {problem}"
        prev = ledger.line_hash(line)
    last = len(lines)
    trailer, problem = _signed_line(lines[-1], public_key)
    if problem or trailer is None or trailer.get("kind") != "bundle_trailer":
        return False, last, f"line {last} (trailer): {problem or 'the last line is not the bundle trailer'}"
    if trailer.get("lines") != len(body):
        return False, last, (f"line {last} (trailer): it lists {trailer.get('lines')} ledger lines, the file "
                             f"has {len(body)} (a line was removed or added)")
    if trailer.get("head") != prev:
        return False, last, f"line {last} (trailer): head hash does not match the last ledger line"
    if trailer.get("header_sha256") != ledger.line_hash(lines[0]):
        return False, last, f"line {last} (trailer): header hash does not match line 1"
    return True, None, (f"{len(body)} ledger lines verified for session {checked.get('session')}, "
                        f"signed by {checked['key_fingerprint']}")
