"""The index keeps response ids as one blob per read, not a row per id: dedup must stay global and exact
across cold runs, appends, new files, resets and an index left by an older version."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from supervisor.observe import index
from tests.test_usage_hostile import meta, model_line, record, rollout_file, scan_all, tid, totals


@pytest.fixture
def home(isolated_home: Path) -> Path:
    return Path(os.environ["CODEX_HOME"])


def id_rows() -> list[tuple[str, bytes]]:
    con = sqlite3.connect(index.index_path())
    try:
        return con.execute("SELECT f.path, i.ids FROM ids i JOIN files f USING (fid) ORDER BY i.rowid").fetchall()
    finally:
        con.close()


def test_one_blob_per_file_and_no_row_per_id(home: Path) -> None:
    body = meta(tid(1)) + model_line() + b"".join(record(f"resp_{n}", (10, 1, 2, 0)) for n in range(50))
    rollout_file(home, 1, body)
    assert totals(scan_all(home)) == (500, 50, 100, 0)
    rows = id_rows()
    assert len(rows) == 1
    con = sqlite3.connect(index.index_path())
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert "seen" not in tables


def test_warm_append_and_new_file_dedupe_against_stored_ids(home: Path) -> None:
    first = rollout_file(home, 1, meta(tid(1)) + model_line() + record("resp_a", (100, 0, 10, 0)))
    assert totals(scan_all(home)) == (100, 0, 10, 0)
    # a second process: the ids come from the index, not from memory
    with first.open("ab") as fh:
        fh.write(record("resp_a", (100, 0, 10, 0)) + record("resp_b", (200, 0, 20, 0)))
    assert totals(scan_all(home)) == (300, 0, 30, 0)
    rollout_file(home, 2, meta(tid(2)) + model_line() + record("resp_b", (200, 0, 20, 0))
                 + record("resp_a", (100, 0, 10, 0)) + record("resp_c", (1, 0, 1, 0)))
    result = scan_all(home)
    assert totals(result) == (301, 0, 31, 0)
    assert totals(result, first) == (300, 0, 30, 0)   # credited to the older file
    # and a cold rebuild agrees
    index.index_path().unlink()
    assert totals(scan_all(home)) == (301, 0, 31, 0)


def test_reset_file_is_credited_again_with_its_own_ids(home: Path) -> None:
    other = rollout_file(home, 1, meta(tid(1)) + model_line() + record("resp_z", (7, 0, 7, 0)))
    path = rollout_file(home, 2, meta(tid(2)) + model_line() + record("resp_a", (100, 0, 10, 0))
                        + record("resp_b", (5, 0, 5, 0)))
    assert totals(scan_all(home)) == (112, 0, 22, 0)
    with other.open("ab") as fh:  # a changed file read before it loads the stored ids
        fh.write(record("resp_y", (1, 0, 1, 0)))
    # rewritten in place, shorter: its old ids must not count as already seen
    path.write_bytes(meta(tid(2)) + model_line() + record("resp_a", (100, 0, 10, 0)))
    result = scan_all(home)
    assert result.resets == 1
    assert totals(result) == (108, 0, 18, 0)


def test_ids_with_separators_stay_distinct(home: Path) -> None:
    # ids are JSON strings: any character may appear, so the blob must not split on one
    rollout_file(home, 1, meta(tid(1)) + model_line() + record("a\nb", (1, 0, 1, 0)) + record("a,b", (2, 0, 2, 0)))
    assert totals(scan_all(home)) == (3, 0, 3, 0)
    rollout_file(home, 2, meta(tid(2)) + model_line() + record("a", (4, 0, 4, 0)) + record("b", (8, 0, 8, 0))
                 + record("a\nb", (1, 0, 1, 0)))
    assert totals(scan_all(home)) == (15, 0, 15, 0)


def test_an_old_index_is_rebuilt(home: Path) -> None:
    rollout_file(home, 1, meta(tid(1)) + model_line() + record("resp_a", (100, 0, 10, 0)))
    path = index.index_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE files (path TEXT PRIMARY KEY);"
                      "CREATE TABLE seen (response_id TEXT PRIMARY KEY, path TEXT NOT NULL) WITHOUT ROWID;"
                      "PRAGMA user_version = 2;")
    con.close()
    assert totals(scan_all(home)) == (100, 0, 10, 0)
    assert len(id_rows()) == 1


# --- the commit left running while a cold `ao cost --all` builds its report ----------------------------
def five_files(home: Path) -> None:
    for n in range(1, 6):
        rollout_file(home, n, meta(tid(n)) + model_line() + record(f"resp_{n}", (10 * n, n, 2, 0)))


def file_rows() -> int:
    con = sqlite3.connect(index.index_path())
    try:
        return int(con.execute("SELECT COUNT(*) FROM files").fetchone()[0])
    finally:
        con.close()


def behind(home: Path) -> index.Refresh:
    return index.refresh(index.discover(home), prune_roots=[home / "sessions"], commit_behind=True)


def test_a_commit_behind_gives_the_same_usage_and_is_whole_once_settled(home: Path) -> None:
    five_files(home)
    result = behind(home)
    result.settle()
    result.settle()  # once is enough; again is harmless
    assert totals(result) == (150, 15, 10, 0) and file_rows() == 5
    again = scan_all(home)
    assert again.read_files == 0 and totals(again) == (150, 15, 10, 0)  # warm: the commit landed


def test_a_commit_that_fails_is_an_error_and_leaves_nothing_half_written(home: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    five_files(home)
    scan_all(home)  # the index exists, with these five
    rollout_file(home, 6, meta(tid(6)) + model_line() + record("resp_6", (60, 6, 2, 0)))
    connect = index.connect

    def refusing(threads: bool = False) -> sqlite3.Connection:
        con = connect(threads)

        def authorize(action: int, arg1: str | None, *_: object) -> int:
            # SQLite asks before each transaction statement; COMMIT is refused, as a full disk would fail it
            return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT" \
                else sqlite3.SQLITE_OK
        con.set_authorizer(authorize)
        return con

    monkeypatch.setattr(index, "connect", refusing)
    result = behind(home)
    assert totals(result) == (210, 21, 12, 0)  # what the transaction read
    with pytest.raises(index.FatalError, match="usage index .* is unusable"):
        result.settle()
    monkeypatch.setattr(index, "connect", connect)
    assert file_rows() == 5  # the sixth file's rows were rolled back, not left half-written
    assert totals(scan_all(home)) == (210, 21, 12, 0) and file_rows() == 6


def test_an_interrupted_caller_still_waits_for_the_commit(home: Path, tmp_path: Path) -> None:
    """^C after the refresh but before settle(): the process's exit waits for the commit thread."""
    import subprocess
    import sys

    five_files(home)
    script = ("import os, sys\n"
              "from pathlib import Path\n"
              "from supervisor.observe import index\n"
              "home = Path(os.environ['CODEX_HOME'])\n"
              "run = index._CommitBehind._run\n"
              "def slow(self, con):\n"  # a commit still running when the ^C unwinds the main thread
              "    import time; time.sleep(0.5); run(self, con)\n"
              "index._CommitBehind._run = slow\n"
              "index.refresh(index.discover(home), prune_roots=[home / 'sessions'], commit_behind=True)\n"
              "raise KeyboardInterrupt\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr
    assert file_rows() == 5
    assert scan_all(home).read_files == 0


def test_a_commit_killed_mid_way_leaves_the_index_whole_or_empty(home: Path) -> None:
    """kill -9 while the commit thread runs: SQLite's journal keeps the index as it was, and the next
    refresh counts exactly."""
    import signal
    import subprocess
    import sys
    import time

    five_files(home)
    script = ("import os, sys, time\n"
              "from pathlib import Path\n"
              "from supervisor.observe import index\n"
              "home = Path(os.environ['CODEX_HOME'])\n"
              "run = index._CommitBehind._run\n"
              "def slow(self, con):\n"
              "    print('committing', flush=True); time.sleep(30); run(self, con)\n"
              "index._CommitBehind._run = slow\n"
              "index.refresh(index.discover(home), prune_roots=[home / 'sessions'], commit_behind=True).settle()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "committing\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert file_rows() == 0  # the uncommitted rows are gone, the file opens
    result = scan_all(home)
    assert totals(result) == (150, 15, 10, 0) and file_rows() == 5
