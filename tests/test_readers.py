"""Rollout readers only read regular files: a FIFO or /dev/zero where a rollout should be never hangs ao."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_codex_format import codex_argv  # tests/ is on sys.path (pytest's rootdir-less test modules)

from supervisor.model.server import read_ledger
from supervisor.observe import activity, events, index, locate, receipts, rollout
from supervisor.observe import codex_format as cf

KEYS = ("input", "cached_input", "output", "reasoning")
THREAD = "019a0000-0000-7000-8000-0000000000{:02d}"
DAY = "sessions/2026/01/01"


def finishes(call: Callable[..., Any], *args: Any, seconds: float = 5.0) -> Any:
    """Run `call(*args)` in a thread; fail (instead of hanging the suite) if it does not return in time."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call(*args)
        except BaseException as exc:  # handed back to the test
            box["error"] = exc
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{call} still running after {seconds}s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def hostile_entries(folder: Path) -> dict[str, Path]:
    """A FIFO, a link to /dev/zero, a directory and a socket, all named like rollouts."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {name: folder / f"rollout-2026-01-01T00-00-0{n}-{THREAD.format(90 + n)}.jsonl"
            for n, name in enumerate(("fifo", "zero", "dir", "socket"))}
    os.mkfifo(made["fifo"])
    made["zero"].symlink_to("/dev/zero")
    made["dir"].mkdir()
    sock, here = socket.socket(socket.AF_UNIX), os.getcwd()
    try:
        os.chdir(folder)  # a socket's path is limited to 108 bytes; bind it by its short name
        sock.bind(made["socket"].name)
    finally:
        os.chdir(here)
        sock.close()
    return made


def usage_line(response_id: str, used: tuple[int, int, int, int]) -> bytes:
    return orjson.dumps({"timestamp": "2026-01-01T10:00:00.000Z", "type": "token_usage_record",
                         "payload": {"response_id": response_id, "usage": dict(zip(cf.USAGE_KEYS, used, strict=True))}}
                         ) + b"\n"


def test_open_regular_refuses_everything_but_a_regular_file(tmp_path: Path) -> None:
    bad = hostile_entries(tmp_path)
    for name, path in bad.items():
        with pytest.raises(cf.NotRegularFile) as caught:
            finishes(cf.open_regular, path)
        assert str(path) in str(caught.value), name
    real = tmp_path / "real.jsonl"
    real.write_bytes(b"{}\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    with cf.open_regular(link) as fh:  # a link to a regular file is followed
        assert fh.read() == b"{}\n"
    with pytest.raises(FileNotFoundError):
        cf.open_regular(tmp_path / "missing.jsonl")


def test_every_reader_skips_a_fifo_and_dev_zero(tmp_path: Path) -> None:
    bad = hostile_entries(tmp_path / DAY)
    for path in (bad["fifo"], bad["zero"]):
        warnings: list[str] = []
        assert finishes(lambda p, w: list(rollout.read_lines(p, w)), path, warnings) == []
        assert len(warnings) == 1 and str(path) in warnings[0] and "not a regular file" in warnings[0]
        assert finishes(receipts.read_receipts, path, []) == []
        assert finishes(activity.last_events, path) == []
        assert finishes(activity.activity, str(path), True) is None
        assert finishes(locate.session_meta, path) is None
        assert finishes(locate.user_messages, path, 0) == ([], 0)
        with pytest.raises(cf.NotRegularFile):
            finishes(rollout.RolloutTail(path).read_new)
    # locate by workspace walks the day folder the hostile entries sit in
    noon = time.mktime((2026, 1, 1, 12, 0, 0, 0, 0, -1))
    assert finishes(locate.find_by_workspace, "/nowhere", noon, tmp_path) is None


def test_events_file_replaced_by_a_fifo_warns(isolated_home: Path) -> None:
    path = events.events_path("s1")
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    warnings: list[str] = []
    assert finishes(events.read_events, "s1", warnings) == []
    assert len(warnings) == 1 and str(path) in warnings[0]


def test_index_counts_real_rollouts_next_to_hostile_ones(isolated_home: Path) -> None:
    home = Path(os.environ["CODEX_HOME"])
    bad = hostile_entries(home / DAY)
    real = home / DAY / f"rollout-2026-01-01T00-00-00-{THREAD.format(1)}.jsonl"
    real.write_bytes(usage_line("r1", (100, 10, 5, 1)) + usage_line("r2", (200, 20, 6, 2)))
    found = finishes(index.discover, home)
    assert str(real) in found and str(bad["fifo"]) in found  # discovery lists them; refresh refuses them
    result = finishes(index.refresh, found, [home / "sessions"])
    assert list(result.files) == [str(real)]
    sums = [sum(t[k] for f in result.files.values() for _, _, t in f.sums) for k in KEYS]
    assert sums == [300, 30, 11, 3]
    for name in ("fifo", "zero", "socket"):
        assert any(str(bad[name]) in w and "not a regular file" in w for w in result.warnings), name


def test_a_rollout_swapped_for_a_fifo_after_indexing_is_dropped(isolated_home: Path) -> None:
    home = Path(os.environ["CODEX_HOME"])
    real = home / DAY / f"rollout-2026-01-01T00-00-00-{THREAD.format(1)}.jsonl"
    real.parent.mkdir(parents=True)
    real.write_bytes(usage_line("r1", (100, 10, 5, 1)))
    assert index.refresh(index.discover(home), prune_roots=[home / "sessions"]).files
    real.unlink()
    os.mkfifo(real)
    again = finishes(index.refresh, index.discover(home), [home / "sessions"])
    assert again.files == {} and any(str(real) in w for w in again.warnings)


# --- the whole CLI against real codex rollouts ---------------------------------------------------

SCRIPT = """
tasks:
  work:
    steps:
      - run: echo real-work
        usage: {input: 1500, cached_input: 300, output: 40, reasoning: 8}
      - say: Finished.
        usage: {input: 1700, cached_input: 1400, output: 25, reasoning: 0}
"""


@pytest.mark.codex
def test_cost_all_finishes_and_counts_exactly_beside_a_fifo_and_dev_zero(
        codex: Path, scripted_model: Any, ao: Any, tmp_path: Path) -> None:
    server = scripted_model(SCRIPT)
    # CODEX_HOME reached through a symlinked directory is legitimate and must keep working
    real_home = tmp_path / "real-codex-home"
    real_home.mkdir()
    linked_home = tmp_path / "linked-codex-home"
    linked_home.symlink_to(real_home, target_is_directory=True)
    env = dict(os.environ, CODEX_HOME=str(linked_home))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    done = subprocess.run(codex_argv(codex, server.base_url, workspace, "[ao-task:work] go"), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    served = read_ledger(server.ledger.path)
    assert len(served) == 2

    # the agent plants a FIFO and a /dev/zero link where ao looks for rollouts, plus a link to a real
    # rollout in the archive (followed: it is a regular file, and its responses are not counted twice)
    bad = hostile_entries(real_home / DAY)
    thread = json.loads(done.stdout.splitlines()[0])["thread_id"]
    (rollout_path,) = (real_home / "sessions").rglob(f"rollout-*{thread}.jsonl")
    (real_home / "archived_sessions").mkdir()
    (real_home / "archived_sessions" / f"rollout-2026-01-01T00-00-00-{THREAD.format(2)}.jsonl").symlink_to(rollout_path)

    started = time.monotonic()
    out = ao("cost", "--all", "--json", env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 20
    report = json.loads(out.stdout)
    assert {k: report["totals"]["tokens"][k] for k in KEYS} == {k: sum(e["usage"][k] for e in served) for k in KEYS}
    for name in ("fifo", "zero", "socket"):  # named as ao found them: through the linked CODEX_HOME
        seen_as = str(linked_home / bad[name].relative_to(real_home))
        assert any(seen_as in w and "not a regular file" in w for w in report["warnings"]), (name, report)
    assert "Traceback" not in out.stderr and bad["fifo"].is_fifo()
