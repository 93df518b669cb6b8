"""`ao status --json` served from `status_cache` (P4): the bytes the one-shot path prints, and a miss
whenever anything the answer was computed from changes.

Each test computes an answer (which stores it), checks that it is served, changes one input, and checks
that the stored answer is no longer served and that the fresh one equals click's (`AO_STATUS_CLICK=1`,
the reference) byte for byte. Whether an answer would be served is asked of `status_cache.serve`
directly. A file stamped in the same tick as the computation's clock probe is racy (hashed): tests wait
a few ticks after writing their fleet (`_settle`), and RACY_NS (for files on another filesystem than
the probe's) is shortened to match; the tests about racy files make them racy on purpose.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_answer_cache import body, line, tokens
from test_status_fast import _fleet, _record

from supervisor import paths, store
from supervisor.observe import codex_format as cf
from supervisor.records import Status
from supervisor.report import status_cache, status_view

CLICK = {status_view.CLICK_ONLY_ENV: "1"}
QUICK_NS = 50_000_000


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file on another filesystem than the probe's counts as settled 50 ms after it was written, not 2 s."""
    monkeypatch.setattr(status_cache, "RACY_NS", QUICK_NS)


@pytest.fixture(autouse=True)
def _signals() -> Iterator[None]:
    """The one-shot path sets SIGINT and SIGTERM for its process: this one is pytest's."""
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, saved[0])
    signal.signal(signal.SIGTERM, saved[1])


def _settle() -> None:
    time.sleep(QUICK_NS / 1e9 + 0.02)


def _fast(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`ao status ARGS` by the fast path, in this process: served, or computed and stored."""
    capsys.readouterr()
    assert status_view.fast_status(list(args)) == 0
    out = capsys.readouterr()
    assert out.err == ""
    return out.out


def _key(*args: str) -> str:
    parsed = status_view.parse(list(args))
    assert parsed is not None
    cache = status_view._cache_key(parsed)
    assert cache is not None
    return cache[0]


def _served(*args: str) -> str | None:
    return status_cache.serve(_key(*args))


def _click(ao: Any, *args: str) -> str:
    env = {**os.environ, **CLICK}
    done = ao("status", *args, env=env)
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def _same_as_click(ao: Any, answer: Any, *args: str) -> str:
    """`answer()` equals click's answer to ARGS byte for byte (ages tick each second: a pair across the
    edge of one is taken again)."""
    for _ in range(3):
        started = time.time()
        ours, reference = answer(), _click(ao, *args)
        if ours == reference:
            return str(ours)
    # a loaded machine can straddle a second every time: then everything but the ages is equal, and
    # each age differs by no more than the seconds the pair took
    ages = re.compile(r'"age_s": (\d+)')
    assert ages.sub('"age_s": N', ours) == ages.sub('"age_s": N', reference)
    took = time.time() - started
    assert all(0 <= int(b) - int(a) <= took + 1 for a, b in zip(ages.findall(ours), ages.findall(reference)))
    return str(ours)


def _compute(*args: str) -> str:
    """ARGS' answer computed (never served) and stored if it may be."""
    parsed = status_view.parse(list(args))
    cache = status_view._cache_key(parsed) if parsed else None
    assert parsed is not None and cache is not None
    return status_view.cached_answer(parsed, *cache)


def _stored(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Compute and store ARGS' answer; it is then served."""
    _settle()
    text = _fast(capsys, *args)
    assert _served(*args) is not None, f"not stored: {status_cache.last_refusal}"
    return text


def _rows(text: str) -> dict[str, dict[str, Any]]:
    return {row["session"]: row for row in json.loads(text)}


def _entry_file(*args: str) -> Path:
    return paths.ao_home() / "answers" / status_cache.entry_name(_key(*args))


@pytest.mark.parametrize("args", [
    ("--json",), ("--json", "--active"), ("fix-login", "--json"), ("--attention", "--json", "--project", "api"),
    ("--json", "--project", "webapp"),
])
def test_a_served_answer_is_the_one_shot_answer(ao: Any, quick: None, capsys: pytest.CaptureFixture[str],
                                               args: tuple[str, ...]) -> None:
    _fleet()
    _stored(capsys, *args)
    served = _same_as_click(ao, lambda: _served(*args), *args)
    assert _fast(capsys, *args) in (served, _served(*args))


def test_a_served_answer_counts_ages_from_now(quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fleet()
    text = _stored(capsys, "--json")
    time.sleep(1.05)
    later = _served("--json")
    assert later is not None
    for sid, row in _rows(later).items():
        assert row["age_s"] >= _rows(text)[sid]["age_s"] + 1
        assert {**row, "age_s": 0} == {**_rows(text)[sid], "age_s": 0}


def test_the_real_cli_serves_the_stored_bytes_and_imports_nothing_heavy(ao: Any) -> None:
    _fleet()
    _settle()  # nothing is racy: the first run stores an entry served as it is
    assert ao("status", "--json").returncode == 0
    entry = _entry_file("--json")
    before = entry.stat()
    # a served answer ends the process without the interpreter's teardown (os._exit): caught here
    code = ("import os, sys; sys.argv = ['ao', 'status', '--json']\n"
            "class Quick(SystemExit): pass\n"
            "def _exit(c): raise Quick(c)\n"
            "os._exit = _exit\n"
            "from supervisor.entry import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code, quick = e.code, isinstance(e, Quick)\n"
            "heavy = sorted(m for m in sys.modules if m in ('sqlite3', 'orjson', 'json', 'typing', 'pathlib',\n"
            "               'supervisor.store', 'supervisor.sessions.query', 'supervisor.errors'))\n"
            "print(repr((code, quick, heavy)), file=sys.stderr)\n")
    served = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert served.stderr.strip().splitlines()[-1] == "(0, True, [])", served.stderr
    after = entry.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # served, not rewritten
    _same_as_click(ao, lambda: ao("status", "--json").stdout, "--json")


def test_an_appended_event_is_a_miss(ao: Any, quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fleet()
    _stored(capsys, "--json")
    event = {"ts": int(time.time()), "session": "ao-0101-bbbbbb", "event": "branch", "name_hex": b"fix/other".hex()}
    paths.session_dir("ao-0101-bbbbbb").mkdir(parents=True, exist_ok=True)
    with open(paths.session_dir("ao-0101-bbbbbb") / "events.jsonl", "a") as fh:
        fh.write(json.dumps(event) + "\n")
    assert _served("--json") is None
    text = _same_as_click(ao, lambda: _fast(capsys, "--json"), "--json")
    assert _rows(text)["ao-0101-bbbbbb"]["branch"] == "fix/other"


def test_a_store_write_is_a_miss(ao: Any, quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fleet()
    _stored(capsys, "--json")
    store.update("ao-0101-bbbbbb", error="a reason written just now")
    assert _served("--json") is None
    text = _same_as_click(ao, lambda: _fast(capsys, "--json"), "--json")
    assert _rows(text)["ao-0101-bbbbbb"]["error"] == "a reason written just now"


def test_a_new_session_is_a_miss(ao: Any, quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fleet()
    _stored(capsys, "--json")
    _record("ao-0101-ffffff", Status.DONE, 60)
    assert _served("--json") is None
    assert "ao-0101-ffffff" in _rows(_same_as_click(ao, lambda: _fast(capsys, "--json"), "--json"))


def _rollout_session(total: int) -> Path:
    folder = paths.codex_home() / "sessions/2026/11/20"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rollout-2026-11-20T10-00-01-00000001-0000-7000-8000-000000000000.jsonl"
    path.write_bytes(body(1, total))
    _record("ao-0101-111111", Status.DONE, 3600, rollout_path=str(path), model="gpt-5.1-codex",
            thread_id="00000001-0000-7000-8000-000000000000")
    return path


def test_a_growing_rollout_is_a_miss(ao: Any, quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    path = _rollout_session(1000)
    first = _rows(_stored(capsys, "--json"))["ao-0101-111111"]["tokens"]["input"]
    with open(path, "ab") as fh:
        fh.write(line("event_msg", {"type": "token_count", "rate_limits": None,
                                    "info": {"total_token_usage": tokens(3000, 1500, 50, 5),
                                             "last_token_usage": tokens(2000, 1000, 0, 0),
                                             "model_context_window": 1000}}))
    assert _served("--json") is None
    text = _same_as_click(ao, lambda: _fast(capsys, "--json"), "--json")
    assert _rows(text)["ao-0101-111111"]["tokens"]["input"] > first


def test_a_rollout_found_by_its_thread_is_a_miss_when_another_appears(ao: Any, quick: None,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A record without rollout_path: `locate.find_rollout` lists the date folders around its start."""
    day = time.localtime(time.time() - 3600)
    folder = paths.codex_home() / "sessions" / time.strftime("%Y/%m/%d", day)
    folder.mkdir(parents=True, exist_ok=True)
    thread = "00000002-0000-7000-8000-000000000000"
    (folder / f"rollout-2026-01-01T00-00-09-{thread}.jsonl").write_bytes(body(2, 1000))
    _record("ao-0101-222222", Status.FAILED, 3600, thread_id=thread, model="gpt-5.1-codex")
    first = _rows(_stored(capsys, "--json"))["ao-0101-222222"]["tokens"]
    (folder / f"rollout-2026-01-01T00-00-00-{thread}.jsonl").write_bytes(body(2, 5000))  # sorts first
    assert _served("--json") is None
    text = _same_as_click(ao, lambda: _fast(capsys, "--json"), "--json")
    assert _rows(text)["ao-0101-222222"]["tokens"] != first


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process to stand in for a session's supervisor."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()
    if paths.db_path().exists():  # the teardown kills record pids: this one may be reused by now
        with sqlite3.connect(paths.db_path()) as con:
            con.execute("UPDATE sessions SET pid = NULL WHERE pid = ?", (proc.pid,))


def test_a_supervisor_that_dies_is_a_miss(ao: Any, quick: None, capsys: pytest.CaptureFixture[str],
                                          sleeper: subprocess.Popen[bytes]) -> None:
    _fleet()
    _record("ao-0101-333333", Status.WORKING, 120, ended=False, pid=sleeper.pid)
    text = _stored(capsys, "--json")
    assert _rows(text)["ao-0101-333333"]["status"] == "working"
    sleeper.kill()  # not yet reaped: a zombie, which is dead too
    deadline = time.time() + 10
    while status_cache.process_start(sleeper.pid) is not None and time.time() < deadline:
        time.sleep(0.01)
    assert _served("--json") is None
    sleeper.wait()
    text = _same_as_click(ao, lambda: _fast(capsys, "--json"), "--json")
    assert _rows(text)["ao-0101-333333"]["status"] == "failed"


def test_a_pid_started_again_is_a_miss(quick: None, capsys: pytest.CaptureFixture[str],
                                       sleeper: subprocess.Popen[bytes]) -> None:
    """The same pid with another start time is another process (the supervisor's pid reused)."""
    _record("ao-0101-333333", Status.WORKING, 120, ended=False, pid=sleeper.pid)
    _stored(capsys, "--json")
    entry = status_cache.read_entry(_key("--json"))
    assert entry is not None and entry[4] == [(sleeper.pid, status_cache.process_start(sleeper.pid))]
    status_cache.write_entry(entry[0], (*entry[:4], [(sleeper.pid, b"1")], *entry[5:]))
    assert _served("--json") is None


def test_a_spawn_left_without_a_supervisor_fails_when_its_time_comes(ao: Any, quick: None,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from supervisor.sessions import reconcile

    _record("ao-0101-444444", Status.QUEUED, reconcile.STALE_SPAWN_S - 4.0, ended=False)  # 4 s to store it in
    text = _stored(capsys, "--json")
    assert _rows(text)["ao-0101-444444"]["status"] == "queued"
    started = store.get("ao-0101-444444")["started_at"]
    time.sleep(max(0.0, started + reconcile.STALE_SPAWN_S + 0.05 - time.time()))
    assert _served("--json") is None
    text = _same_as_click(ao, lambda: _fast(capsys, "--json"), "--json")
    assert _rows(text)["ao-0101-444444"]["status"] == "failed"


def test_a_live_session_turns_idle_when_its_time_comes(ao: Any, quick: None, capsys: pytest.CaptureFixture[str],
                                                      sleeper: subprocess.Popen[bytes]) -> None:
    from supervisor.observe import activity

    rollout = paths.codex_home() / "live-rollout.jsonl"
    stamp = time.time() - activity.STALE_AFTER + 4.0  # seconds to store the answer in, on a loaded machine
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"
    rollout.write_bytes(line("event_msg", {"type": cf.Event.TASK_STARTED}, when))
    _record("ao-0101-555555", Status.WORKING, 400, ended=False, pid=sleeper.pid, rollout_path=str(rollout))
    text = _stored(capsys, "--json")
    assert _rows(text)["ao-0101-555555"]["activity"] == "active"
    time.sleep(max(0.0, stamp + activity.STALE_AFTER + 0.05 - time.time()))
    assert _served("--json") is None
    text = _same_as_click(ao, lambda: _fast(capsys, "--json"), "--json")
    assert _rows(text)["ao-0101-555555"]["activity"] == "idle"


def test_a_config_change_is_a_miss(ao: Any, quick: None, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _fleet()
    config = tmp_path / "prices.yaml"
    config.write_text("pricing:\n  gpt-5.1-codex: {input: 1000, output: 1000}\n")
    monkeypatch.setenv("AO_CONFIG", str(config))
    first = _rows(_stored(capsys, "fix-login", "--json"))["ao-0101-aaaaaa"]["cost_usd"]
    config.write_text("pricing:\n  gpt-5.1-codex: {input: 2000, output: 2000}\n")  # the same size
    assert _served("fix-login", "--json") is None
    text = _same_as_click(ao, lambda: _fast(capsys, "fix-login", "--json"), "fix-login", "--json")
    assert _rows(text)["ao-0101-aaaaaa"]["cost_usd"] > first


def test_a_user_config_that_appears_is_a_miss(quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fleet()
    plain = _rows(_stored(capsys, "fix-login", "--json"))["ao-0101-aaaaaa"]["cost_usd"]
    (paths.ao_home() / "agent-orchestrator.yaml").write_text("pricing:\n  gpt-5.1-codex: {input: 1000, output: 1000}\n")
    assert _served("fix-login", "--json") is None
    assert _rows(_fast(capsys, "fix-login", "--json"))["ao-0101-aaaaaa"]["cost_usd"] > plain


@pytest.mark.parametrize("change", ["approval", "guard-state", "operator", "reactions"])
def test_governance_files_are_inputs(ao: Any, quick: None, capsys: pytest.CaptureFixture[str], change: str) -> None:
    _fleet()
    _stored(capsys, "--json")
    sdir = paths.session_dir("ao-0101-cccccc")
    sdir.mkdir(parents=True, exist_ok=True)
    if change == "approval":
        (paths.ao_home() / "approvals").mkdir(mode=0o700, exist_ok=True)
        (paths.ao_home() / "approvals" / "ap-000000000001.json").write_text(json.dumps(
            {"id": "ap-000000000001", "session": "ao-0101-cccccc", "status": "pending", "created": time.time()}))
    elif change == "guard-state":
        (sdir / "guard-state.json").write_text(json.dumps({"spent_usd": 1.25, "budget_stopped": True}))
    elif change == "operator":
        (sdir / "operator.json").write_text(json.dumps({"budget_usd": 0.5}))
    else:
        (paths.ao_home() / "reactions").mkdir(exist_ok=True)
        (paths.ao_home() / "reactions" / "state.json").write_text(json.dumps({"ao-0101-cccccc": {"gave_up": True}}))
    assert _served("--json") is None
    _same_as_click(ao, lambda: _fast(capsys, "--json"), "--json")


@pytest.mark.parametrize("damage", ["flipped", "truncated", "empty", "other-key"])
def test_a_damaged_entry_is_a_miss_and_is_rewritten(quick: None, capsys: pytest.CaptureFixture[str],
                                                    damage: str) -> None:
    _fleet()
    text = _stored(capsys, "--json")
    entry = _entry_file("--json")
    raw = entry.read_bytes()
    if damage == "flipped":
        raw = raw[:-10] + bytes([raw[-10] ^ 1]) + raw[-9:]
    elif damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "empty":
        raw = b""
    else:  # a whole entry stored under another key's name
        status_cache.write_entry("another key", ("another key", [], [], [], [], [], ["[]\n"], []))
        raw = (entry.parent / status_cache.entry_name("another key")).read_bytes()
    entry.write_bytes(raw)
    assert _served("--json") is None
    _fast(capsys, "--json")
    assert _served("--json") is not None and len(_served("--json") or "") == len(text)


@pytest.mark.parametrize("foreign", ["mode", "link", "folder-mode", "home-mode", "owner"])
def test_an_entry_not_private_to_this_user_is_not_served(ao: Any, quick: None, capsys: pytest.CaptureFixture[str],
                                                         foreign: str, tmp_path: Path) -> None:
    _fleet()
    _stored(capsys, "--json")
    entry = _entry_file("--json")
    if foreign == "mode":
        entry.chmod(0o644)
    elif foreign == "link":
        elsewhere = tmp_path / "elsewhere.bin"
        elsewhere.write_bytes(entry.read_bytes())
        elsewhere.chmod(0o600)
        entry.unlink()
        entry.symlink_to(elsewhere)
    elif foreign == "folder-mode":
        entry.parent.chmod(0o755)
    elif foreign == "home-mode":
        paths.ao_home().chmod(0o755)
    else:
        if os.geteuid() != 0:
            pytest.skip("only root can give a file to another user")
        os.chown(entry, 65534, 65534)
    assert _served("--json") is None
    if foreign == "home-mode":
        assert ao("status", "--json").returncode == 0  # the one-shot path makes the home private again
        assert paths.ao_home().stat().st_mode & 0o777 == 0o700


def test_the_entry_is_private_and_written_whole(quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    _fleet()
    _stored(capsys, "--json")
    entry = _entry_file("--json")
    assert entry.stat().st_mode & 0o777 == 0o600 and entry.stat().st_uid == os.geteuid()
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_a_warning_on_stderr_is_not_stored(ao: Any, quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    """An events file replaced by a FIFO: the one-shot path warns each time, so it is never served."""
    _fleet()
    events = paths.session_dir("ao-0101-bbbbbb") / "events.jsonl"
    events.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(events)
    _settle()
    capsys.readouterr()
    assert status_view.fast_status(["--json"]) == 0
    out = capsys.readouterr()
    assert "not a regular file" in out.err
    assert _served("--json") is None
    slow = ao("status", "--json", env={**os.environ, **CLICK})
    assert slow.stderr == out.err


def test_a_store_written_while_computing_is_not_stored(quick: None, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor.sessions import query

    _fleet()
    real = query.status_rows

    def writing(*args: Any, **kwargs: Any) -> Any:
        store.update("ao-0101-bbbbbb", error="written by another ao meanwhile")
        return real(*args, **kwargs)

    monkeypatch.setattr(query, "status_rows", writing)
    _settle()
    _fast(capsys, "--json")
    assert _served("--json") is None
    monkeypatch.setattr(query, "status_rows", real)
    _stored(capsys, "--json")


def _racy(monkeypatch: pytest.MonkeyPatch, *files: Path) -> Any:
    """Count these files as written in the probe's tick; returns the real judge."""
    inodes = {f.stat().st_ino for f in files}
    real = status_cache.is_racy
    monkeypatch.setattr(status_cache, "is_racy", lambda sig, probe, horizon: (
        isinstance(sig, tuple) and sig[1] in inodes) or real(sig, probe, horizon))
    return real


def test_racy_files_are_hashed_until_they_settle(ao: Any, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A file stamped no older than the probe may be rewritten within the same tick, unseen by stat."""
    _fleet()
    _stored(capsys, "--json")  # folds nothing, writes nothing: the store is settled for the next one
    real = _racy(monkeypatch, paths.db_path())
    text = _compute("--json")
    entry = status_cache.read_entry(_key("--json"))
    assert entry is not None and str(paths.db_path()) in dict(entry[3]), status_cache.last_refusal
    assert _served("--json") is not None  # hashes checked, not settled: the entry keeps them
    assert (status_cache.read_entry(_key("--json")) or ())[3] == entry[3]
    damaged = [(p, b"not its hash") for p, _ in entry[3]]
    status_cache.write_entry(entry[0], (*entry[:3], damaged, *entry[4:]))
    assert _served("--json") is None  # a racy file's bytes are checked, not only its stat
    status_cache.write_entry(entry[0], entry)
    monkeypatch.setattr(status_cache, "is_racy", real)
    assert _served("--json") is not None
    settled = status_cache.read_entry(_key("--json"))
    assert settled is not None and settled[3] == []  # unchanged and older than the probe: hashes dropped
    assert len(_same_as_click(ao, lambda: _served("--json"), "--json")) == len(text)


def test_without_a_probe_files_of_the_last_seconds_are_racy(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status_cache, "clock_probe", lambda: None)  # a home the probe cannot be written in
    monkeypatch.setattr(status_cache, "RACY_NS", 500_000_000)
    _fleet()
    _fast(capsys, "--json")  # the store and session files were written just now
    entry = status_cache.read_entry(_key("--json"))
    assert entry is not None and str(paths.db_path()) in dict(entry[3])
    time.sleep(0.55)
    assert _served("--json") is not None
    assert (status_cache.read_entry(_key("--json")) or ())[3] == []


def test_a_rewrite_in_the_same_tick_is_seen_by_its_hash(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Same size, and the stat put back as it was (as a same-tick write leaves it): the hash tells."""
    _fleet()
    guard_state = paths.session_dir("ao-0101-bbbbbb") / "guard-state.json"
    guard_state.parent.mkdir(parents=True, exist_ok=True)
    guard_state.write_text(json.dumps({"spent_usd": 0.25}))
    _racy(monkeypatch, guard_state)
    _fast(capsys, "--json")  # folds events into the store: not stored
    _compute("--json")
    assert _served("--json") is not None
    assert str(guard_state) in dict((status_cache.read_entry(_key("--json")) or ())[3])
    real, sig = status_cache.signature, status_cache.signature(str(guard_state))
    guard_state.write_text(json.dumps({"spent_usd": 0.75}))
    monkeypatch.setattr(status_cache, "signature", lambda p: sig if p == str(guard_state) else real(p))
    assert _served("--json") is None


def test_the_entry_names_the_code_that_computed_it(quick: None, capsys: pytest.CaptureFixture[str]) -> None:
    import orjson

    from supervisor.observe import pricing
    from supervisor.sessions import query

    _fleet()
    _stored(capsys, "--json")
    entry = status_cache.read_entry(_key("--json"))
    assert entry is not None
    files = dict(entry[1])
    for module in (status_view, status_cache, query, pricing, orjson):
        assert module.__file__ in files
    assert os.path.join(os.path.dirname(pricing.__file__), "pricing.json") in files


@pytest.mark.parametrize("args", [("--json", "--since", "1h"), ("--json", "--project", "./webapp"),
                                  ("--json", "--project", "/src/api"), (), ("--active",)])
def test_answers_that_depend_on_more_are_never_stored(quick: None, capsys: pytest.CaptureFixture[str],
                                                      args: tuple[str, ...]) -> None:
    _fleet()
    _settle()
    parsed = status_view.parse(list(args))
    assert parsed is not None and status_view._cache_key(parsed) is None
    _fast(capsys, *args)
    folder = paths.ao_home() / "answers"
    assert not folder.exists() or not [p for p in folder.iterdir() if p.name.startswith(status_cache.PREFIX)
                                       and p.name.endswith(status_cache.SUFFIX)]


def test_a_repository_config_in_the_working_directory_is_never_stored(quick: None,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _fleet()
    Path(status_view.CONFIG_NAME).write_text("pricing: {}\n")
    parsed = status_view.parse(["--json"])
    assert parsed is not None and status_view._cache_key(parsed) is None


def test_every_file_the_answer_reads_is_an_input(quick: None, capsys: pytest.CaptureFixture[str],
                                                 sleeper: subprocess.Popen[bytes]) -> None:
    """An audit hook lists what computing the answer opens and lists; each is in the entry, or is a
    cache or a log the answer does not depend on."""
    from test_fleet_view import _record as plain_record

    _fleet()
    _rollout_session(1000)
    _record("ao-0101-333333", Status.WORKING, 120, ended=False, pid=sleeper.pid)
    plain_record("ao-0101-666666", Status.DONE, 60, launch={})  # no budget in its launch: policy.json is read
    policy = paths.session_dir("ao-0101-666666") / "policy.json"
    policy.parent.mkdir(parents=True)
    policy.write_text(json.dumps({"budget_usd": 3.0}))
    (paths.ao_home() / "approvals").mkdir(mode=0o700)
    (paths.ao_home() / "approvals" / "ap-000000000001.json").write_text(json.dumps(
        {"id": "ap-000000000001", "session": "ao-0101-dddddd", "status": "denied"}))
    for sid in ("ao-0101-bbbbbb", "ao-0101-cccccc"):
        sdir = paths.session_dir(sid)
        sdir.mkdir(parents=True, exist_ok=True)
        (sdir / "events.jsonl").write_text(json.dumps({"ts": 1, "session": sid, "event": "branch",
                                                       "name_hex": b"b".hex()}) + "\n")
    seen: list[str] = []
    watching = [False]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if watching[0] and event in ("open", "os.listdir", "os.scandir", "sqlite3.connect") and args:
            target = args[0]
            if isinstance(target, (str, bytes, os.PathLike)):
                seen.append(os.path.abspath(os.fsdecode(target)))

    sys.addaudithook(hook)
    _fast(capsys, "--json")  # folds the events into the store: this answer is not stored
    _settle()
    parsed = status_view.parse(["--json"])
    assert parsed is not None
    key, config = status_view._cache_key(parsed) or ("", None)
    watching[0] = True
    try:
        status_view.cached_answer(parsed, key, config)
    finally:
        watching[0] = False
    entry = status_cache.read_entry(_key("--json"))
    assert entry is not None, f"not stored: {status_cache.last_refusal}"
    assert str(paths.db_path()) in seen and str(paths.session_dir("ao-0101-bbbbbb") / "events.jsonl") in seen
    inputs = {os.path.abspath(p) for p, _ in entry[1]} | {os.path.abspath(p) for p, _ in entry[2]}
    home = str(paths.ao_home())
    # caches of what the answer is computed from, ao's logs and locks, and the import machinery
    ignored = (os.path.join(home, "answers") + os.sep, os.path.join(home, "index.db"), "/proc/", "/dev/",
               *(os.path.abspath(p) + os.sep for p in sys.path if p))
    side_effects = ("events.ledgered", ".events.lock", "ledger.jsonl", "ledger.spool.jsonl", "ledger.lock")
    missing = sorted({p for p in seen if p not in inputs and not (p + os.sep).startswith(ignored)
                      and os.path.basename(p) not in side_effects and not p.endswith((".py", ".pyc", ".so"))})
    assert missing == []


def test_a_status_run_that_reads_a_launch_that_is_not_json_stores_nothing(quick: None) -> None:
    _fleet()
    with sqlite3.connect(paths.db_path()) as con:
        con.execute("UPDATE sessions SET launch = '{not json' WHERE session = 'ao-0101-bbbbbb'")
    try:
        _settle()
        with pytest.raises(SystemExit):
            status_view.fast_status(["--json"])
        assert _served("--json") is None
    finally:
        with sqlite3.connect(paths.db_path()) as con:
            con.execute("UPDATE sessions SET launch = '{}' WHERE session = 'ao-0101-bbbbbb'")
