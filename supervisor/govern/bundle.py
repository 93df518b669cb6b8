"""Evidence bundles: one session's signed ledger in a self-contained file that verifies offline.

The bundle is JSON lines, so a bad line can be named by its number in the file:
  line 1       header: format, session, the ed25519 public key, its fingerprint; signed
  lines 2..N+1 the ledger lines, byte for byte as ao wrote them
  line N+2     trailer: line count, hash of the last ledger line, hash of the header, the head
               anchored in ao.db when it was exported (the length ao promised), the session
               summary and prompt hashes; signed
Every line must be in canonical JSON form and every base64 value canonical, so even a change that
keeps the meaning (a space, an escape, a spare bit before `=`) is caught. A valid signature proves
integrity, not authorship, so `verify` also requires a trusted key: this installation's public key,
one in `$AO_HOME/trusted-keys`, or the fingerprint the caller pins.

A time window (`since`) bundles the ledger from its first line at or after that time to its head:
one unbroken run of the chain (lines with an earlier time after that point are kept, a chain has no
holes). The signed header then carries `window: {since, first_seq, prev, ledger_lines}`: `prev` is
the hash of the line just before the window, which the first line in it must name as its `prev`, so
each line still checks against its seq and its predecessor, and the anchored head (which lies in the
window, or is `prev` itself) is still checked. Comparing `prev` with a full export of the same
session proves the window was cut from it.

`export_all` writes one bundle per session into a new directory, plus `MANIFEST.jsonl`: one signed
line naming every bundle file with its sha256, so a removed, added or swapped bundle fails `verify`.
"""
from __future__ import annotations

import base64
import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.govern import ledger

FORMAT = "ao-evidence-bundle/2"
OLD_FORMATS = ("ao-evidence-bundle/1",)  # before the anchor: verifiable, without a promised length
SET_FORMAT = "ao-evidence-set/1"
MANIFEST = "MANIFEST.jsonl"
BUNDLE_SUFFIX = ".bundle.jsonl"


def confirmed(body: dict[str, Any]) -> bool:
    """A receipt of a call codex made: not a claim, and not a hook request codex's rollout did not confirm.

    Receipts written before ao recorded provenance carry none and count as before.
    """
    from supervisor.govern import provenance

    return not ledger.is_claim(body) and not provenance.is_unconfirmed(body)


def unconfirmed_requests(entries: list[dict[str, Any]]) -> int:
    """Hook requests the guard answered that codex's rollout did not confirm (the agent may have sent them)."""
    from supervisor.govern import provenance

    return sum(1 for e in entries if provenance.is_unconfirmed(e.get("body")))


def summarize(entries: list[dict[str, Any]], session: str) -> dict[str, Any]:
    """Counts for the trailer. Claims (what the agent's side says) never count as guard decisions, and
    only the calls codex's rollout confirmed count as tool calls."""
    kinds = Counter(e.get("kind") for e in entries)
    own = [e for e in entries if isinstance(e.get("body"), dict) and confirmed(e["body"])]
    decisions = [e["body"] for e in own if e.get("kind") == "guard_decision"]
    spent = [e["body"].get("spent_usd") for e in own
             if isinstance(e["body"].get("spent_usd"), (int, float)) and not isinstance(e["body"]["spent_usd"], bool)]
    threads = sorted({e["body"]["thread_id"] for e in own if isinstance(e["body"].get("thread_id"), str)})
    return {
        "session": session,
        "entries": len(entries),
        "kinds": dict(sorted((str(k), v) for k, v in kinds.items())),
        "tool_calls_allowed": sum(1 for d in decisions if d.get("decision") == "allow"),
        "tool_calls_denied": sum(1 for d in decisions if d.get("decision") == "deny"),
        "tool_calls": sum(1 for e in own if e.get("kind") == "tool_call"),
        "unconfirmed_requests": unconfirmed_requests(entries),
        "budget_stops": kinds.get("budget_stop", 0),
        "spent_usd": spent[-1] if spent else None,
        "thread_ids": threads,
        "claims": sum(1 for e in entries if ledger.is_claim(e.get("body"))),
        "forged_spool_lines": sum(1 for e in entries if e.get("kind") == "lifecycle" and isinstance(e.get("body"), dict)
                                  and e["body"].get("event") == "forged_spool_line"),
        "first_ts": entries[0]["ts"] if entries else None,
        "last_ts": entries[-1]["ts"] if entries else None,
    }


def _bundle(session: str, home: Path, since: float | None) -> tuple[bytes, dict[str, Any]]:
    """The bundle file's bytes and its summary; the window from `since` when given."""
    session_dir = home / "sessions" / session
    if not session_dir.is_dir():
        raise FatalError(f"no session directory {session_dir}: session {session!r} has no ledger to export")
    key = ledger.load_or_create_key(home)
    public_raw = ledger.public_key_raw(home)
    lines, anchored = ledger.snapshot(session_dir, home)
    ok, bad, reason = ledger.check_lines(lines, public_raw)
    if not ok:
        raise FatalError(f"not exporting session {session}: {session_dir / ledger.LEDGER} line {bad}: {reason}")
    problem = ledger.check_anchor(lines, anchored, session)
    if problem:
        raise FatalError(f"not exporting session {session}: {problem}")
    entries = [ledger.strict_object(line) for line in lines]
    anchor_seq, anchor_head = anchored or (0, ledger.GENESIS)
    start = 0
    if since is not None:
        start = next((i for i, e in enumerate(entries) if e["ts"] >= since), len(entries))
    prev = ledger.line_hash(lines[start - 1]) if start else ledger.GENESIS
    window, entries = lines[start:], entries[start:]
    fields = {"format": FORMAT, "session": session, "created": round(time.time(), 3),
              "public_key": base64.b64encode(public_raw).decode(), "key_fingerprint": ledger.fingerprint(public_raw)}
    if since is not None:
        fields["window"] = {"since": since, "first_seq": start + 1, "prev": prev, "ledger_lines": len(lines)}
    header = ledger.sign_entry(key, fields)
    prompt_hashes = list(dict.fromkeys(e["prompt_hash"] for e in entries if e.get("prompt_hash")))
    summary = summarize(entries, session)
    trailer = ledger.sign_entry(key, {"kind": "bundle_trailer", "lines": len(window),
                                      "head": ledger.line_hash(window[-1]) if window else prev,
                                      "anchor": {"seq": anchor_seq, "head": anchor_head},
                                      "header_sha256": ledger.line_hash(header), "summary": summary,
                                      "prompt_hashes": prompt_hashes})
    return b"".join(line + b"\n" for line in [header, *window, trailer]), summary


def export(session: str, out_path: Path, ao_home: Path | None = None, since: float | None = None) -> dict[str, Any]:
    """Seal the session's spool, check the ledger and its anchor, then write the bundle; returns the summary.

    With `since` (epoch seconds) the bundle holds the ledger from its first line at or after then.
    """
    data, summary = _bundle(session, Path(ao_home or paths.ao_home()), since)
    paths.atomic_write(Path(out_path), data, mode=0o644)
    return summary


def export_all(out_dir: Path, since: float | None, ao_home: Path | None = None) -> list[dict[str, Any]]:
    """One bundle per session with ledger lines in the window, and a signed MANIFEST, in a new directory."""
    home = Path(ao_home or paths.ao_home())
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FatalError(f"{out_dir} already exists; give a new directory for the bundles (nothing was written)")
    sessions_root = home / "sessions"
    names = sorted(p.name for p in sessions_root.iterdir() if (p / ledger.LEDGER).is_file()) \
        if sessions_root.is_dir() else []
    work = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.partial")
    work.mkdir(parents=True, mode=0o755)
    try:
        listed, summaries = [], []
        for session in names:
            data, summary = _bundle(session, home, since)
            if not summary["entries"]:
                continue  # nothing in the window
            name = session + BUNDLE_SUFFIX
            (work / name).write_bytes(data)
            listed.append({"file": name, "session": session, "sha256": hashlib.sha256(data).hexdigest(),
                           "lines": summary["entries"]})
            summaries.append(summary)
        key = ledger.load_or_create_key(home)
        public_raw = ledger.public_key_raw(home)
        manifest = ledger.sign_entry(key, {"format": SET_FORMAT, "since": since, "created": round(time.time(), 3),
                                           "public_key": base64.b64encode(public_raw).decode(),
                                           "key_fingerprint": ledger.fingerprint(public_raw), "bundles": listed})
        (work / MANIFEST).write_bytes(manifest + b"\n")
        os.rename(work, out_dir)  # the directory appears whole or not at all
    except BaseException:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        raise
    return summaries


def _signed_line(line: bytes, public_key: Any) -> tuple[dict[str, Any] | None, str | None]:
    from cryptography.exceptions import InvalidSignature

    try:
        entry = ledger.strict_loads(line)
    except ValueError as exc:
        return None, f"not strict JSON ({exc})"
    if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
        return None, "not a signed object"
    if ledger.canonical(entry) != line:
        return None, "bytes differ from the signed canonical form"
    try:
        public_key.verify(ledger.b64_strict(entry["sig"], ledger.SIG_BYTES),
                          ledger.canonical({k: v for k, v in entry.items() if k != "sig"}))
    except (InvalidSignature, ValueError):
        return None, "bad signature"
    return entry, None


def _trusted_set(trusted: str | Iterable[str] | None, ao_home: Path | None) -> tuple[set[str], str]:
    """The accepted fingerprints and, for messages, where they come from."""
    if isinstance(trusted, str):
        return {trusted}, "the key you gave with --key"
    if trusted is not None:
        return set(trusted), "the keys you gave"
    from supervisor.govern import trust

    home = Path(ao_home or paths.ao_home())
    known = trust.trusted_fingerprints(home)
    return set(known), f"{ledger.public_key_path(home)} and {trust.trust_path(home)}"


def _anchor_problem(trailer: dict[str, Any], body: list[bytes], offset: int = 0,
                    prev: str = ledger.GENESIS) -> str | None:
    """`offset`: ledger lines before the bundle's first (a window); `prev`: the hash of the last of them."""
    anchor = trailer.get("anchor")
    if not isinstance(anchor, dict) or type(anchor.get("seq")) is not int or not isinstance(anchor.get("head"), str):
        return "no valid anchor (seq and head)"
    seq, head = anchor["seq"], anchor["head"]
    if seq > offset + len(body):
        return (f"the ledger was anchored at seq {seq} when exported, the bundle ends at seq {offset + len(body)} "
                f"(it was cut short)")
    if seq < offset:
        return f"the anchored head (seq {seq}) lies before the window's first line (seq {offset + 1})"
    if (ledger.line_hash(body[seq - offset - 1]) if seq > offset else prev) != head:
        return f"ledger line {seq} does not hash to the head anchored at seq {seq}"
    return None


def _window(header: dict[str, Any]) -> tuple[int, str] | str:
    """(lines before the window, hash of the last of them) from a header, or why it is unusable."""
    window = header.get("window")
    if window is None:
        return 0, ledger.GENESIS
    first, prev = (window.get("first_seq"), window.get("prev")) if isinstance(window, dict) else (None, None)
    if type(first) is not int or first < 1 or not isinstance(prev, str) or len(prev) != 64:
        return "the window (first_seq, prev) is malformed"
    if first == 1 and prev != ledger.GENESIS:
        return "a window starting at seq 1 must follow the genesis hash"
    return first - 1, prev


def verify(path: Path, trusted: str | Iterable[str] | None = None,
           ao_home: Path | None = None) -> tuple[bool, int | None, str]:
    """(ok, first bad line number in the bundle file, reason).

    `trusted`: a fingerprint (or several) the signer must have; by default this installation's
    public key and `$AO_HOME/trusted-keys`. Needs no private key.
    """
    if Path(path).is_dir():
        return verify_set(Path(path), trusted, ao_home)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return False, None, f"cannot read {path}: {exc.strerror}"
    return verify_bytes(data, trusted, ao_home)


def verify_bytes(data: bytes, trusted: str | Iterable[str] | None = None,
                 ao_home: Path | None = None) -> tuple[bool, int | None, str]:
    """`verify` of a bundle already in memory."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    lines = data.split(b"\n")
    if lines[-1] != b"":
        return False, len(lines), "the file does not end with a newline (truncated or changed)"
    lines = lines[:-1]
    if len(lines) < 2:
        return False, 1, "not an evidence bundle (needs a header and a trailer line)"
    try:
        header = ledger.strict_object(lines[0])
        public_raw = ledger.b64_strict(header["public_key"], ledger.PUBLIC_KEY_BYTES)
        public_key = Ed25519PublicKey.from_public_bytes(public_raw)
    except (ValueError, KeyError):
        return False, 1, "line 1 is not a valid bundle header (public key unreadable)"
    checked, problem = _signed_line(lines[0], public_key)
    if problem or checked is None or checked.get("format") not in (FORMAT, *OLD_FORMATS):
        return False, 1, f"line 1 (header): {problem or 'unknown format'}"
    signer = ledger.fingerprint(public_raw)
    if checked.get("key_fingerprint") != signer:
        return False, 1, "line 1 (header): key_fingerprint does not match the public key"
    accepted, source = _trusted_set(trusted, ao_home)
    if signer not in accepted:
        return False, 1, (f"line 1 (header): signed by {signer}, which is not trusted here (trusted: {source}); "
                          f"if you know this key is genuine, run `ao receipts trust {signer}` or pass "
                          f"`--key {signer}`")
    window = _window(checked)
    if isinstance(window, str):
        return False, 1, f"line 1 (header): {window}"
    offset, before = window
    body, prev = lines[1:-1], before
    for number, line in enumerate(body, 1):
        problem = ledger.check_line(line, offset + number, prev, public_key)
        if problem:
            return False, number + 1, f"line {number + 1} (ledger line {offset + number}): {problem}"
        prev = ledger.line_hash(line)
    last = len(lines)
    trailer, problem = _signed_line(lines[-1], public_key)
    if problem or trailer is None or trailer.get("kind") != "bundle_trailer":
        return False, last, f"line {last} (trailer): {problem or 'the last line is not the bundle trailer'}"
    if trailer.get("lines") != len(body) or type(trailer.get("lines")) is not int:
        return False, last, (f"line {last} (trailer): it lists {trailer.get('lines')} ledger lines, the file "
                             f"has {len(body)} (a line was removed or added)")
    if trailer.get("head") != prev:
        return False, last, f"line {last} (trailer): head hash does not match the last ledger line"
    if trailer.get("header_sha256") != ledger.line_hash(lines[0]):
        return False, last, f"line {last} (trailer): header hash does not match line 1"
    anchored = ""
    if checked["format"] == FORMAT:
        problem = _anchor_problem(trailer, body, offset, before)
        if problem:
            return False, last, f"line {last} (trailer): {problem}"
        anchored = f", anchored at seq {trailer['anchor']['seq']}"
        if "window" in checked:
            anchored += (f"; a window: seq {offset + 1}..{offset + len(body)} (lines since "
                         f"{checked['window'].get('since')}), following a line hashing to {before[:16]}…")
    else:
        anchored = f" ({checked['format']}: no anchored length)"
    entries = [ledger.strict_object(line) for line in body]
    return True, None, (f"{len(body)} ledger lines verified for session {checked.get('session')}{anchored}, "
                        f"signed by {signer}{_unconfirmed_note(entries)}")


def _unconfirmed_note(entries: list[dict[str, Any]]) -> str:
    """The signatures are genuine either way; say how many answered requests codex never confirmed."""
    count = unconfirmed_requests(entries)
    if not count:
        return ""
    return (f"; {count} hook request{'s' if count != 1 else ''} not confirmed by codex's rollout "
            "(recorded as unconfirmed: sent to the guard by something other than codex, or replayed)")


def verify_set(directory: Path, trusted: str | Iterable[str] | None = None,
               ao_home: Path | None = None) -> tuple[bool, int | None, str]:
    """Check an `export_all` directory: the signed manifest, that it lists exactly the files there, and each bundle."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    manifest_path = directory / MANIFEST
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        return False, None, f"{manifest_path}: cannot read it ({exc.strerror}); is {directory} an `ao receipts " \
                            f"export --all` directory?"
    if not raw.endswith(b"\n") or raw.count(b"\n") != 1:
        return False, 1, f"{manifest_path}: not one signed line (truncated or changed)"
    line = raw[:-1]
    try:
        head = ledger.strict_object(line)
        public_raw = ledger.b64_strict(head["public_key"], ledger.PUBLIC_KEY_BYTES)
        public_key = Ed25519PublicKey.from_public_bytes(public_raw)
    except (ValueError, KeyError):
        return False, 1, f"{manifest_path}: not a valid manifest (public key unreadable)"
    manifest, problem = _signed_line(line, public_key)
    if problem or manifest is None or manifest.get("format") != SET_FORMAT \
            or manifest.get("key_fingerprint") != ledger.fingerprint(public_raw):
        return False, 1, f"{manifest_path}: {problem or 'not an ao evidence set manifest'}"
    signer = ledger.fingerprint(public_raw)
    accepted, source = _trusted_set(trusted, ao_home)
    if signer not in accepted:
        return False, 1, (f"{manifest_path}: signed by {signer}, which is not trusted here (trusted: {source}); "
                          f"run `ao receipts trust {signer}` or pass `--key {signer}` if you know it is genuine")
    listed = manifest.get("bundles")
    if not isinstance(listed, list) or not all(isinstance(b, dict) and isinstance(b.get("file"), str)
                                               and isinstance(b.get("sha256"), str) for b in listed):
        return False, 1, f"{manifest_path}: the bundle list is malformed"
    names = [b["file"] for b in listed]
    present = sorted(p.name for p in directory.iterdir() if p.name != MANIFEST)
    extra = sorted(set(present) - set(names))
    if extra:
        return False, None, f"{directory / extra[0]}: not listed in the signed manifest (added afterwards)"
    total = 0
    for item in listed:
        name = item["file"]
        if "/" in name or name.startswith(".") or name not in present:
            return False, None, f"{directory / name}: listed in the manifest but missing (removed afterwards)"
        data = (directory / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != item["sha256"]:
            ok, bad, reason = verify_bytes(data, signer, ao_home)
            return False, bad, f"{directory / name}: " + (reason if not ok else
                                                          "does not match the sha256 in the signed manifest")
        ok, bad, reason = verify_bytes(data, signer, ao_home)
        if not ok:
            return False, bad, f"{directory / name}: {reason}"
        total += 1
    return True, None, (f"{total} session bundle{'s' if total != 1 else ''} verified in {directory} "
                        f"(since {manifest.get('since')}), signed by {signer}")
