"""paths.temp_file: mkstemp's guarantees (private, exclusive, no link followed) without tempfile."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import paths, sqlite_file


def test_a_new_private_file_each_time(tmp_path: Path) -> None:
    made = [paths.temp_file(tmp_path, ".x.") for _ in range(50)]
    for fd, name in made:
        os.write(fd, b"ok")
        os.close(fd)
        assert Path(name).parent == tmp_path and Path(name).name.startswith(".x.")
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
    assert len({name for _, name in made}) == 50


def test_a_taken_name_or_a_planted_link_is_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "victim"
    target.write_text("keep")
    draws = iter([b"\x00" * 6, b"\x00" * 6, b"\x01" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    (tmp_path / ".x.000000000000").symlink_to(target)  # a link where the first name would go
    fd, name = paths.temp_file(tmp_path, ".x.")
    os.close(fd)
    assert name.endswith(".x.010101010101") and target.read_text() == "keep"
    monkeypatch.setattr(os, "urandom", lambda n: b"\x00" * 6)
    with pytest.raises(FileExistsError):
        paths.temp_file(tmp_path, ".x.")


def test_writes_and_new_databases_do_not_import_tempfile(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from supervisor import paths, sqlite_file\n"
            f"paths.atomic_write(Path({str(tmp_path)!r}) / 'a.json', b'{{}}')\n"
            f"sqlite_file.create(Path({str(tmp_path)!r}) / 'a.db', 'CREATE TABLE t (x);')\n"
            "print('tempfile' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"
    assert (tmp_path / "a.json").read_bytes() == b"{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db", "a.json"]  # no temp file left behind
    assert sqlite_file.open_wal(tmp_path / "a.db", 1).execute("SELECT COUNT(*) FROM t").fetchone() == (0,)


def test_a_new_database_is_whole_or_absent(tmp_path: Path) -> None:
    # built in one transaction without a journal: a schema that fails halfway leaves no file at all
    import sqlite3

    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(sqlite3.Error):
        sqlite_file.create(tmp_path / "bad.db", "CREATE TABLE t (x); INSERT INTO t VALUES (1); CREATE TABLE t (y);")
    assert list(tmp_path.iterdir()) == []
    sqlite_file.create(tmp_path / "good.db", "CREATE TABLE t (x); INSERT INTO t VALUES (1); PRAGMA user_version = 7;")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.db"]  # no journal or temp file left
    con = sqlite_file.open_wal(tmp_path / "good.db", 1)
    assert con.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert con.execute("PRAGMA user_version").fetchone() == (7,)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
