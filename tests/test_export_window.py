"""Time-window and all-session evidence bundles: a window is an unaltered part of the chain, and says so."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from supervisor import paths, store
from supervisor.govern import bundle, ledger
from supervisor.records import Status


def _session(name: str, before: int, after: int) -> tuple[Path, float]:
    """A session ledger with `before` lines, then a moment, then `after` lines; returns (dir, that moment)."""
    session_dir = paths.session_dir(name)
    session_dir.mkdir(parents=True)
    for i in range(before):
        ledger.append(session_dir, "lifecycle", {"event": "old", "i": i})
    time.sleep(0.05)
    moment = time.time()
    time.sleep(0.05)
    for i in range(after):
        ledger.append(session_dir, "lifecycle", {"event": "new", "i": i})
    return session_dir, moment


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_a_window_holds_the_lines_since_and_verifies(tmp_path: Path) -> None:
    session_dir, moment = _session("ao-win-1", 3, 2)
    out = tmp_path / "window.jsonl"
    summary = bundle.export("ao-win-1", out, since=moment)
    assert summary["entries"] == 2
    ok, bad, reason = bundle.verify(out)
    assert ok, reason
    assert "seq 4..5" in reason and "window" in reason
    header = json.loads(_lines(out)[0])
    full = ledger.raw_lines(session_dir)
    # the window's signed `prev` is the hash of the line before it in the full ledger
    assert header["window"]["first_seq"] == 4 and header["window"]["prev"] == ledger.line_hash(full[2])
    assert _lines(out)[1:-1] == full[3:]


def test_an_empty_window_still_verifies_against_the_anchor(tmp_path: Path) -> None:
    _session("ao-win-2", 2, 0)
    out = tmp_path / "empty.jsonl"
    assert bundle.export("ao-win-2", out, since=time.time() + 1)["entries"] == 0
    ok, _bad, reason = bundle.verify(out)
    assert ok, reason


def test_a_full_export_is_unchanged_by_the_window_code(tmp_path: Path) -> None:
    _session("ao-win-3", 2, 2)
    out = tmp_path / "full.jsonl"
    bundle.export("ao-win-3", out)
    assert "window" not in json.loads(_lines(out)[0])
    assert bundle.verify(out)[0]


@pytest.mark.parametrize("tamper", ["edit_line", "drop_first", "drop_last", "swap_prev", "reorder"])
def test_a_tampered_window_fails(tmp_path: Path, tamper: str) -> None:
    _session("ao-win-4", 3, 3)
    out2 = tmp_path / "window2.jsonl"
    session_dir = paths.session_dir("ao-win-4")
    moment = json.loads(ledger.raw_lines(session_dir)[3])["ts"]
    bundle.export("ao-win-4", out2, since=moment)
    lines = _lines(out2)
    assert len(lines) == 5 and bundle.verify(out2)[0]
    if tamper == "edit_line":
        lines[1] = lines[1].replace(b'"new"', b'"NEW"')
    elif tamper == "drop_first":
        del lines[1]
    elif tamper == "drop_last":
        del lines[-2]
    elif tamper == "swap_prev":  # claim the window follows another line: the header's signature breaks
        header = json.loads(lines[0])
        header["window"]["prev"] = "f" * 64
        lines[0] = ledger.canonical(header)
    elif tamper == "reorder":
        lines[1], lines[2] = lines[2], lines[1]
    out2.write_bytes(b"".join(line + b"\n" for line in lines))
    ok, bad, reason = bundle.verify(out2)
    assert not ok and bad is not None, reason


def test_a_window_cut_before_the_anchor_fails(tmp_path: Path) -> None:
    """Dropping the last lines and the trailer's promise is caught: the trailer is signed."""
    _session("ao-win-5", 1, 3)
    out = tmp_path / "w.jsonl"
    bundle.export("ao-win-5", out, since=time.time() - 3600)
    lines = _lines(out)
    out.write_bytes(b"".join(line + b"\n" for line in [*lines[:-2], lines[-1]]))
    ok, _bad, reason = bundle.verify(out)
    assert not ok and "trailer" in reason


def test_export_all_bundles_the_sessions_in_the_window(tmp_path: Path) -> None:
    _session("ao-all-old", 2, 0)
    time.sleep(0.05)
    since = time.time()
    _session("ao-all-a", 0, 2)
    _session("ao-all-b", 1, 1)
    out = tmp_path / "evidence"
    summaries = bundle.export_all(out, since)
    assert sorted(s["session"] for s in summaries) == ["ao-all-a", "ao-all-b"]
    assert sorted(p.name for p in out.iterdir()) == [bundle.MANIFEST, "ao-all-a.bundle.jsonl", "ao-all-b.bundle.jsonl"]
    ok, _bad, reason = bundle.verify(out)
    assert ok, reason
    assert "2 session bundles verified" in reason
    with pytest.raises(Exception, match="already exists"):
        bundle.export_all(out, since)


@pytest.mark.parametrize("tamper", ["remove", "add", "edit", "manifest"])
def test_a_tampered_set_fails(tmp_path: Path, tamper: str) -> None:
    since = time.time() - 1
    _session("ao-set-a", 0, 2)
    _session("ao-set-b", 0, 2)
    out = tmp_path / "evidence"
    bundle.export_all(out, since)
    target = out / "ao-set-a.bundle.jsonl"
    if tamper == "remove":
        target.unlink()
    elif tamper == "add":
        (out / "ao-set-c.bundle.jsonl").write_bytes(target.read_bytes())
    elif tamper == "edit":
        target.write_bytes(target.read_bytes().replace(b'"new"', b'"NEW"', 1))
    else:
        manifest = out / bundle.MANIFEST
        manifest.write_bytes(manifest.read_bytes().replace(b"ao-set-b", b"ao-set-x"))
    ok, _bad, reason = bundle.verify(out)
    assert not ok, reason


def test_the_cli_exports_a_window_and_a_set(ao, tmp_path: Path) -> None:
    _session("ao-cli-w", 2, 2)
    store.insert({"session": "ao-cli-w", "name": "windowed", "workspace": str(tmp_path), "runtime": "headless",
                  "status": Status.DONE, "ended_at": time.time(), "launch": {"argv": ["codex"]}})
    one = tmp_path / "one.jsonl"
    out = ao("receipts", "export", "windowed", "--since", "1h", "--out", str(one), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["summary"]["entries"] == 4
    assert ao("receipts", "verify", str(one)).returncode == 0
    every = tmp_path / "all"
    out = ao("receipts", "export", "--all", "--since", "24h", "--out", str(every))
    assert out.returncode == 0, out.stderr
    verified = ao("receipts", "verify", str(every), "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True, verified.stdout
    refused = ao("receipts", "export", "--all", "--out", str(tmp_path / "x"))
    assert refused.returncode == 1 and "--since" in refused.stderr
    bad = ao("receipts", "export", "windowed", "--since", "yesterday", "--out", str(tmp_path / "y"))
    assert bad.returncode == 1 and "bad duration" in bad.stderr
