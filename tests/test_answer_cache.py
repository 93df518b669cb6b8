"""Cached `ao cost` answers (issue #13): byte-identical to a fresh answer, recomputed on any change.

Whether a call was served from the cache is read from the cache file: a hit leaves the entry as it was
(same inode), a miss rewrites it atomically (a new inode). The answers are compared with a fresh run
whose cache was deleted, through the real `ao` CLI in a child process.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from supervisor import paths, store
from supervisor.observe import answer_cache

T0 = "2026-11-20T10:00:00.000Z"
Run = Callable[..., Any]


def line(kind: str, payload: Any, ts: str = T0) -> bytes:
    return orjson.dumps({"timestamp": ts, "type": kind, "payload": payload}) + b"\n"


def tokens(i: int, c: int, o: int, r: int) -> dict[str, int]:
    return {"input_tokens": i, "cached_input_tokens": c, "output_tokens": o, "reasoning_output_tokens": r,
            "total_tokens": i + o}


def body(n: int, total: int, ts: str = T0) -> bytes:
    """A small rollout in codex 0.169.0's format: meta, model, one token_count total."""
    thread = f"0000000{n}-0000-7000-8000-000000000000"
    return (line("session_meta", {"id": thread, "cwd": f"/work/p{n}", "cli_version": "0.169.0"})
            + line("turn_context", {"turn_id": "turn-1", "model": "gpt-5.1-codex", "cwd": "/work"})
            + line("event_msg", {"type": "token_count", "rate_limits": None,
                                 "info": {"total_token_usage": tokens(total, total // 2, 50, 5),
                                          "last_token_usage": tokens(total, total // 2, 50, 5),
                                          "model_context_window": 1000}}, ts))


def rollout(n: int, total: int = 1000, ts: str = T0) -> Path:
    folder = paths.codex_home() / "sessions/2026/11/20"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rollout-2026-11-20T10-00-0{n}-0000000{n}-0000-7000-8000-000000000000.jsonl"
    path.write_bytes(body(n, total, ts))
    return path


def entries() -> dict[str, int]:
    """Cache file name -> inode: a hit keeps the inode, a store replaces the file."""
    return {name: ino for name, (ino, _) in headers().items()}


def cost(ao: Run, *args: str) -> str:
    done = ao("cost", *args, "--json")
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def fresh(ao: Run, *args: str) -> str:
    """The answer with no cache at all (the cache dir moved away and put back)."""
    folder = answer_cache.cache_dir()
    aside = folder.with_name("answers-aside")
    if folder.exists():
        folder.rename(aside)
    try:
        return cost(ao, *args)
    finally:
        if folder.exists():
            import shutil
            shutil.rmtree(folder)
        if aside.exists():
            aside.rename(folder)


def headers() -> dict[str, tuple[int, dict[str, Any]]]:
    """Cache file name -> (inode, header)."""
    folder = answer_cache.cache_dir()
    found = {}
    for p in folder.glob("cost-*.json") if folder.exists() else ():  # not the config's stored pricing
        with p.open("rb") as fh:
            found[p.name] = (os.fstat(fh.fileno()).st_ino, orjson.loads(fh.readline()))
    return found


def served(before: dict[str, tuple[int, dict[str, Any]]]) -> bool:
    """Whether the runs since `before` were hits: each entry is the same file, or it was rewritten only
    to forget files that were racy and have settled since (a slow machine crosses RACY_NS between two
    runs). A recomputed answer is stored under the digest of inputs that changed."""
    after = headers()
    if after.keys() != before.keys():
        return False
    for name, (ino, header) in after.items():
        old_ino, old = before[name]
        if ino == old_ino:
            continue
        kept = {k: v for k, v in header.items() if k not in ("racy", "content_digest")}
        if kept != {k: v for k, v in old.items() if k not in ("racy", "content_digest")} \
                or not set(header["racy"]) < set(old["racy"]):
            return False
    return True


def warm(ao: Run, *args: str) -> str:
    """Run until the answer is cached, then once more and assert that this run was a hit."""
    cost(ao, *args)
    cost(ao, *args)  # the first run may create the index and the store: its inputs settle after it
    before = headers()
    out = cost(ao, *args)
    assert served(before), "expected a cache hit"
    return out


def recomputes(ao: Run, *args: str) -> str:
    before = headers()
    out = cost(ao, *args)
    assert not served(before), "expected the answer to be recomputed"
    assert out == fresh(ao, *args)
    return out


def total_input(text: str) -> int:
    return int(orjson.loads(text)["totals"]["tokens"]["input"])


# --- the honest user -----------------------------------------------------------------------------------

def test_cached_answer_equals_fresh_byte_for_byte(ao: Run) -> None:
    for n in range(1, 4):
        rollout(n, 1000 * n)
    cached = warm(ao, "--all")
    assert cached == fresh(ao, "--all")
    assert total_input(cached) == 6000
    mode = os.stat(next(answer_cache.cache_dir().glob("*.json"))).st_mode & 0o777
    assert mode == 0o600 and answer_cache.cache_dir().stat().st_mode & 0o777 == 0o700
    # the table view reads the same cached document
    table = ao("cost", "--all")
    assert table.returncode == 0 and "TOTAL" in table.stdout.upper()


def test_a_stored_answer_prints_the_same_bytes_whatever_the_output_encoding(ao: Run) -> None:
    # a hit is written as the stored UTF-8 bytes when stdout is UTF-8, and as text otherwise
    for n in range(1, 4):
        rollout(n, 1000 * n)
    cached = warm(ao, "--all")
    before = headers()
    latin = ao("cost", "--all", "--json", env={**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert latin.returncode == 0 and latin.stdout == cached
    assert served(before)  # not recomputed
    assert answer_cache.answer("cost-all", {}, lambda _h: answer_cache.Depends([], []), lambda: "fresh") == "fresh"


def test_real_codex_rollout_is_cached_and_exact(ao: Run, codex: Path, scripted_model: Any, tmp_path: Path) -> None:
    import subprocess

    from supervisor.launch import command

    server = scripted_model("tasks:\n  t:\n    steps:\n      - say: hi\n"
                            "        usage: {input: 1234, cached_input: 1000, output: 56, reasoning: 7}\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    cfg = {"agent": {"reasoning_effort": None}, "codex": {"overrides": {}},
           "provider": {"id": "scripted", "base_url": server.base_url}}
    spec = command.LaunchSpec(str(ws), "gpt-5.1-codex", "skip", "workspace-write",
                              command.build_overrides(cfg, "gpt-5.1-codex", [], "", None))
    done = subprocess.run(command.exec_argv(str(codex), spec, "[ao-task:t] go"), cwd=ws, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = list((paths.codex_home() / "sessions").rglob("rollout-*.jsonl"))
    assert found, "codex wrote no rollout"
    cached = warm(ao, "--all")
    assert cached == fresh(ao, "--all")
    assert total_input(cached) == 1234


# --- each kind of change recomputes --------------------------------------------------------------------

@pytest.fixture
def corpus(ao: Run) -> list[Path]:
    files = [rollout(n, 1000 * n) for n in range(1, 4)]
    warm(ao, "--all")
    return files


def test_a_served_answer_loads_neither_hashlib_nor_openssl(ao: Run, corpus: list[Path]) -> None:
    """`import hashlib` loads OpenSSL (~4 ms); a hit on settled files hashes only short texts, with the
    built-in sha256. (A racy file's bytes are hashed with hashlib: they may be megabytes.)"""
    import subprocess
    import sys

    newest = max(os.stat(p).st_ctime_ns for p in corpus)
    time.sleep(max(0.0, (newest + answer_cache.RACY_NS - time.time_ns()) / 1e9) + 0.1)
    warm(ao, "--all")  # stored again, now with no racy file
    assert all(not header["racy"] for _, header in headers().values())
    before = headers()
    code = ("import os, sys; sys.argv = ['ao', 'cost', '--all', '--json']\n"
            "class Quick(SystemExit): pass\n"
            "def _exit(c): raise Quick(c)\n"
            "os._exit = _exit\n"
            "from supervisor.entry import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code, quick = e.code, isinstance(e, Quick)\n"
            "sys.stdout.flush()\n"
            "print(repr((code, quick, sorted(m for m in sys.modules if m in ('hashlib', '_hashlib')))), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "AO_NO_WATCH": "1"})
    assert done.stderr.strip().splitlines()[-1] == "(0, True, [])", done.stderr
    assert served(before)
    assert done.stdout == fresh(ao, "--all")


def test_appended_line_recomputes(ao: Run, corpus: list[Path]) -> None:
    with corpus[0].open("ab") as fh:
        fh.write(line("event_msg", {"type": "token_count", "rate_limits": None,
                                    "info": {"total_token_usage": tokens(1500, 500, 60, 5),
                                             "last_token_usage": tokens(500, 0, 10, 0),
                                             "model_context_window": 1000}}))
    assert total_input(recomputes(ao, "--all")) == 6500


def test_touched_mtime_recomputes(ao: Run, corpus: list[Path]) -> None:
    st = corpus[1].stat()
    os.utime(corpus[1], ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    recomputes(ao, "--all")


def test_same_size_replacement_recomputes(ao: Run, corpus: list[Path]) -> None:
    # same size, same mtime, same path: only the inode (a rename over it) or the content changed
    st = corpus[2].stat()
    other = body(3, 7000)
    assert len(other) == st.st_size
    tmp = corpus[2].with_name("swap.tmp")
    tmp.write_bytes(other)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, corpus[2])
    assert total_input(recomputes(ao, "--all")) == 10000


def rewrite_in_place(path: Path, data: bytes) -> None:
    """New bytes of the same length, with the file's mtime put back: only its ctime (and, while it is
    recent, its content hash) can tell."""
    st = path.stat()
    assert len(data) == st.st_size
    with path.open("r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def header_of_entry() -> dict[str, Any]:
    entry = next(answer_cache.cache_dir().glob("cost-all-*.json"))
    return dict(orjson.loads(entry.read_bytes().split(b"\n", 1)[0]))


def test_racy_files_that_settled_are_not_hashed_again(ao: Run, corpus: list[Path]) -> None:
    cost(ao, "--all")  # the corpus was just written: every file is racy, and hashed with the answer
    cost(ao, "--all")
    assert len(header_of_entry()["racy"]) == 3
    time.sleep(answer_cache.RACY_NS / 1e9 + 0.1)
    before = entries()
    settled = cost(ao, "--all")  # a hit: the same bytes, and the entry keeps only what is racy now
    assert entries() != before and header_of_entry()["racy"] == [] and settled == fresh(ao, "--all")
    before = entries()
    assert cost(ao, "--all") == settled and entries() == before  # a plain hit now
    rewrite_in_place(corpus[1], body(2, 9000))  # settled: its ctime tells
    recomputes(ao, "--all")


def test_same_size_rewrite_in_place_within_one_tick_recomputes(ao: Run, corpus: list[Path]) -> None:
    # the racy case: same inode, size and mtime (put back), so only the content hash can tell
    rewrite_in_place(corpus[2], body(3, 8000))
    # the cache sees it (ctime, and the content hash of a recent file) and recomputes; the total is what
    # the usage index says, which keys files by (size, mtime, inode, dev) only, so it is not checked here
    recomputes(ao, "--all")


def test_deleted_file_recomputes(ao: Run, corpus: list[Path]) -> None:
    corpus[0].unlink()
    assert total_input(recomputes(ao, "--all")) == 5000


def test_added_file_recomputes(ao: Run, corpus: list[Path]) -> None:
    rollout(4, 4000)
    assert total_input(recomputes(ao, "--all")) == 10000


def test_archived_file_recomputes(ao: Run, corpus: list[Path]) -> None:
    archived = paths.codex_home() / "archived_sessions"
    archived.mkdir()
    os.rename(corpus[0], archived / corpus[0].name)
    assert total_input(recomputes(ao, "--all")) == 6000


def test_pricing_override_recomputes(ao: Run, corpus: list[Path]) -> None:
    before = cost(ao, "--all")
    config = Path.cwd() / "agent-orchestrator.yaml"
    config.write_text("pricing:\n  gpt-5.1-codex: {input: 100, cached_input: 10, output: 1000}\n")
    from supervisor import config as config_mod
    config_mod.trust_config(config)
    after = recomputes(ao, "--all")
    assert orjson.loads(after)["totals"]["cost_usd"] != orjson.loads(before)["totals"]["cost_usd"]
    config.write_text("pricing:\n  gpt-5.1-codex: {input: 200, cached_input: 10, output: 1000}\n")
    config_mod.trust_config(config)
    recomputes(ao, "--all")


@pytest.mark.parametrize("args, baseline", [
    (("--by", "day", "--timezone", "+14:00"), ("--by", "day", "--timezone", "Z")),
    (("--by", "day"), ()), (("--since", "2026-11-21"), ()), (("--until", "2026-11-19"), ()),
    (("--by", "model"), ())])
def test_other_arguments_get_their_own_answer(ao: Run, corpus: list[Path], args: tuple[str, ...],
                                              baseline: tuple[str, ...]) -> None:
    warm(ao, "--all", *baseline)
    out = recomputes(ao, "--all", *args)
    assert out != cost(ao, "--all", *baseline)
    assert warm(ao, "--all", *args) == out


def test_local_timezone_change_recomputes(ao: Run, corpus: list[Path]) -> None:
    rollout(5, 500, ts="2026-11-20T23:30:00.000Z")
    env = dict(os.environ, TZ="UTC")
    day_utc = ao("cost", "--all", "--by", "day", "--json", env=env)
    env_tokyo = dict(os.environ, TZ="Asia/Tokyo")
    day_tokyo = ao("cost", "--all", "--by", "day", "--json", env=env_tokyo)
    assert day_utc.returncode == 0 and day_tokyo.returncode == 0
    keys = lambda text: [r["key"] for r in orjson.loads(text)["rows"]]
    assert keys(day_utc.stdout) == ["2026-11-20"]
    assert keys(day_tokyo.stdout) == ["2026-11-20", "2026-11-21"]


def test_new_codex_home_of_a_session_recomputes(ao: Run, corpus: list[Path], tmp_path: Path) -> None:
    other = tmp_path / "isolated-home"
    folder = other / "sessions/2026/11/20"
    folder.mkdir(parents=True)
    (folder / "rollout-2026-11-20T10-00-09-00000009-0000-7000-8000-000000000000.jsonl").write_bytes(body(9, 9000))
    store.insert({"session": "ao-cache-1", "workspace": str(tmp_path), "runtime": "headless", "status": "done",
                  "started_at": time.time(), "launch": {"env": {"CODEX_HOME": str(other)}}})
    assert total_input(recomputes(ao, "--all")) == 15000


# --- the per-session report ----------------------------------------------------------------------------

def test_session_report_cached_and_recomputed(ao: Run, tmp_path: Path) -> None:
    first = rollout(1, 1000)
    store.insert({"session": "ao-cache-a", "workspace": str(tmp_path), "runtime": "headless", "status": "done",
                  "started_at": time.time(), "thread_id": "00000001-0000-7000-8000-000000000000",
                  "rollout_path": str(first)})
    cached = warm(ao)
    assert cached == fresh(ao) and total_input(cached) == 1000
    with first.open("ab") as fh:
        fh.write(line("event_msg", {"type": "token_count", "rate_limits": None,
                                    "info": {"total_token_usage": tokens(1700, 500, 60, 5),
                                             "last_token_usage": tokens(700, 0, 10, 0),
                                             "model_context_window": 1000}}))
    assert total_input(recomputes(ao)) == 1700
    second = rollout(2, 2000)
    store.insert({"session": "ao-cache-b", "workspace": str(tmp_path), "runtime": "headless", "status": "done",
                  "started_at": time.time(), "thread_id": "00000002-0000-7000-8000-000000000000",
                  "rollout_path": str(second)})
    assert total_input(recomputes(ao)) == 3700
    store.delete("ao-cache-a")
    assert total_input(recomputes(ao)) == 2000


# --- the failing world ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign", "flip", "vector", "vector-digest",
                                    "lengths"])
def test_corrupt_cache_file_is_ignored_and_rebuilt(ao: Run, corpus: list[Path], damage: str) -> None:
    good = cost(ao, "--all")
    entry = next(answer_cache.cache_dir().glob("cost-*.json"))
    raw = entry.read_bytes()
    head, _, rest = raw.partition(b"\n")
    header = orjson.loads(head)
    assert header["tree_len"] > 0 and b"rollout-" in rest[:header["tree_len"]]  # the kept stat vector
    vector = bytearray(rest[:header["tree_len"]])
    vector[len(vector) // 2] ^= 0xFF
    damaged = {
        "truncate": raw[: len(raw) // 2],
        "garbage": os.urandom(200),
        "empty": b"",
        "foreign": orjson.dumps({**header, "format": "someone-else/9"}) + b"\n" + rest,
        # a plausible but wrong answer with a header that does not vouch for it
        "flip": head + b"\n" + rest.replace(b'"input"', b'"inpux"', 1),
        # the kept vector no longer equals the walk's: the walk's own is hashed, as if none were kept
        "vector": head + b"\n" + bytes(vector) + rest[header["tree_len"]:],
        # the vector is as walked, but its digest beside it is not the one the answer was stored under
        "vector-digest": orjson.dumps({**header, "tree_sha256": "0" * 64}) + b"\n" + rest,
        # the same bytes split differently between the vector and the answer
        "lengths": orjson.dumps({**header, "tree_len": header["tree_len"] - 1, "body_len": header["body_len"] + 1})
        + b"\n" + rest,
    }[damage]
    entry.write_bytes(damaged)
    assert cost(ao, "--all") == good
    assert entry.read_bytes() == raw or orjson.loads(entry.read_bytes().partition(b"\n")[0])["format"] == \
        answer_cache.FORMAT
    if damage == "vector":  # a hit (the walk's vector has the digest the answer was stored under), mended
        now_head, _, now_rest = entry.read_bytes().partition(b"\n")
        assert now_rest[:orjson.loads(now_head)["tree_len"]] == rest[:header["tree_len"]]
    assert warm(ao, "--all") == good


def test_unwritable_cache_still_answers(ao: Run, corpus: list[Path]) -> None:
    good = fresh(ao, "--all")
    folder = answer_cache.cache_dir()
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    folder.write_text("not a directory")  # a full disk or a broken home: the cache is only an optimisation
    assert cost(ao, "--all") == good


def test_cache_is_bounded(ao: Run, corpus: list[Path]) -> None:
    for n in range(answer_cache.MAX_ENTRIES + 4):
        cost(ao, "--all", "--since", f"2026-01-{n + 1:02d}")
    assert len(entries()) <= answer_cache.MAX_ENTRIES


def test_fifo_swapped_in_does_not_hang(ao: Run, corpus: list[Path]) -> None:
    # a recent (racy) file is hashed: a FIFO in its place must be skipped, not opened and waited on
    corpus[0].unlink()
    os.mkfifo(corpus[0])
    done = ao("cost", "--all", "--json", timeout=60)
    assert done.returncode == 0
    assert total_input(done.stdout) == 5000


# --- the rollouts' stat vector: compiled walk and its Python twin --------------------------------------
def tree_both(homes: list[str], horizon: int | None = None, previous: Any = None) -> tuple[Any, Any]:
    roots = [os.fsencode(os.path.join(h, sub)) for h in homes for sub in ("sessions", "archived_sessions")]
    horizon = time.time_ns() - answer_cache.RACY_NS if horizon is None else horizon
    args = (roots, b"rollout-", (b".jsonl", b".jsonl.zst"), horizon, previous)
    compiled = answer_cache._tree_stats(*args) if answer_cache._tree_stats is not None else None
    return compiled, answer_cache._tree_stats_here(*args)


def test_the_compiled_walk_gives_the_same_vector_as_python(tmp_path: Path) -> None:
    assert answer_cache._tree_stats is not None, "supervisor/observe/_fastscan.c was not built: rerun `make install`"
    home = tmp_path / "codex"
    day = home / "sessions/2026/11/20"
    day.mkdir(parents=True)
    for n in range(300):  # many folders, so more than one thread has work
        folder = home / f"sessions/2026/{n % 12 + 1:02d}/{n % 28 + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        f = folder / f"rollout-2026-11-20T10-00-00-{n:08x}-0000-7000-8000-000000000000.jsonl"
        f.write_bytes(b"x" * n)
    time.sleep(0.05)
    horizon = time.time_ns()  # what is written from here on is racy
    time.sleep(0.05)
    (day / "rollout-recent.jsonl").write_bytes(b"{}\n")
    (day / "rollout-z.jsonl.zst").write_bytes(b"z")
    (day / "notes.txt").write_bytes(b"not a rollout")
    (day / "rollout-no-suffix").write_bytes(b"")
    (day / b"rollout-\xff\xfe.jsonl".decode("utf-8", "surrogateescape")).write_bytes(b"odd name")
    (day / "rollout-dangling.jsonl").symlink_to(tmp_path / "missing")          # its stat fails: an errno
    (day / "rollout-link.jsonl").symlink_to(day / "rollout-z.jsonl.zst")     # followed, as os.stat does
    os.mkfifo(day / "rollout-fifo.jsonl")                                    # stat only, never opened
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "rollout-outside.jsonl").write_bytes(b"{}")
    (home / "sessions/linked").symlink_to(elsewhere)                         # a link to a folder: not entered
    (home / "archived_sessions").mkdir()
    (home / "archived_sessions/rollout-archived.jsonl").write_bytes(b"{}")
    compiled, here = tree_both([str(home), str(tmp_path / "no-such-home")], horizon)
    assert compiled == here
    count, blob, racy = compiled
    assert count == 300 + 7
    assert b"rollout-outside" not in blob and b"notes.txt" not in blob and b"\xff\xfe" in blob
    assert sorted(os.path.basename(p) for p in racy) == sorted(
        ["rollout-recent.jsonl", "rollout-z.jsonl.zst", "rollout-link.jsonl", "rollout-fifo.jsonl",
         "rollout-\udcff\udcfe.jsonl", "rollout-archived.jsonl"])


def test_a_vector_equal_to_the_previous_one_is_not_made_again(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    for n in range(40):
        folder = home / f"sessions/2026/{n % 3 + 1:02d}/{n % 5 + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rollout-{n}.jsonl").write_bytes(b"{}\n" * n)
    (home / "sessions/2026/01/01/rollout-gone.jsonl").symlink_to(tmp_path / "missing")
    compiled, here = tree_both([str(home)], horizon=0)
    assert compiled == here and compiled[1] is not None
    count, blob, racy = compiled
    assert count == 41 and len(racy) == 40  # horizon 0: every stat that worked is recent
    for previous in (blob, memoryview(blob), bytearray(blob)):
        compiled, here = tree_both([str(home)], horizon=0, previous=previous)
        assert compiled == here == (count, None, racy)
    # any other previous vector gives the walk's own: one byte changed, one short, one more, none at all
    flipped = bytearray(blob)
    flipped[len(flipped) // 3] ^= 1
    for previous in (bytes(flipped), blob[:-1], blob + b"\0", b""):
        compiled, here = tree_both([str(home)], horizon=0, previous=previous)
        assert compiled == here == (count, blob, racy), len(previous)
    # and a changed rollout against the old vector
    with (home / "sessions/2026/02/02/rollout-1.jsonl").open("ab") as fh:
        fh.write(b"\n")
    compiled, here = tree_both([str(home)], horizon=0, previous=blob)
    assert compiled == here and compiled[1] is not None and compiled[1] != blob


def test_the_vector_reads_back_as_os_stat_gives(tmp_path: Path) -> None:
    # what a cold answer's index refresh takes instead of statting every rollout again
    assert answer_cache._vector_stats is not None, "supervisor/observe/_fastscan.c was not built: rerun `make install`"
    home = tmp_path / "codex"
    day = home / "sessions/2026/11/20"
    day.mkdir(parents=True)
    for n in range(30):
        (day / f"rollout-{n}.jsonl").write_bytes(b"{}\n" * n)
    old = day / "rollout-1969.jsonl"
    old.write_bytes(b"{}\n")
    os.utime(old, ns=(-1_500_000_001, -1_500_000_001))  # before 1970: floor, not truncation
    (day / b"rollout-\xff.jsonl".decode("utf-8", "surrogateescape")).write_bytes(b"odd name")
    (day / "rollout-dangling.jsonl").symlink_to(tmp_path / "missing")
    (day / "rollout-link.jsonl").symlink_to(day / "rollout-3.jsonl")
    tree = answer_cache.Tree([str(home)], "rollout-", (".jsonl", ".jsonl.zst"))
    assert tree.stats() == {}  # not walked yet
    tree.vector = answer_cache.tree_stats(tree.homes, tree.prefix, tree.suffixes)[1]
    compiled, here = tree.stats(), answer_cache._vector_stats_here(tree.vector)
    assert compiled == here and len(compiled) == 34
    assert compiled[str(day / "rollout-dangling.jsonl")] is None
    for path, st in compiled.items():
        if st is None:
            continue
        real = os.stat(path)
        for field in ("st_mode", "st_ino", "st_dev", "st_size", "st_mtime_ns", "st_ctime_ns", "st_mtime", "st_ctime"):
            assert getattr(st, field) == getattr(real, field), (path, field)
        assert st[:3] == real[:3] and st[6] == real[6] and st[8:] == real[8:]
    assert compiled[str(old)].st_mtime == os.stat(old).st_mtime < -1.5
    # a vector cut short reads back up to its last whole record, both ways
    cut = bytes(tree.vector)[:-10]
    assert answer_cache._vector_stats(cut) == answer_cache._vector_stats_here(cut)
    assert len(answer_cache._vector_stats_here(cut)) == 33


def test_a_cold_answer_takes_the_walks_stats_and_a_change_after_it_is_seen(ao: Run, corpus: list[Path],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # the index refresh of a cold answer uses the stats of the walk that keyed the answer, not its own;
    # a rollout that grows after that walk is never served stale
    import shutil

    from supervisor.observe import index
    from supervisor.report import cost_view

    shutil.rmtree(answer_cache.cache_dir())
    index.index_path().unlink()  # cold: no stored answer, no index
    stats_given: list[Any] = []
    real_refresh = index.refresh

    def refresh(*args: Any, **kwargs: Any) -> Any:
        stats_given.append(kwargs.get("statted"))
        with corpus[0].open("ab") as fh:  # the world moves on between the walk and the read
            fh.write(line("event_msg", {"type": "token_count", "rate_limits": None,
                                        "info": {"total_token_usage": tokens(5000, 2500, 50, 5),
                                                 "last_token_usage": tokens(4000, 2000, 0, 0),
                                                 "model_context_window": 1000}}))
        return real_refresh(*args, **kwargs)

    monkeypatch.setattr(index, "refresh", refresh)
    first = cost_view.cached_report(True, "session", cost_view.parse_timezone("UTC"), "UTC", None, None, {})
    monkeypatch.setattr(index, "refresh", real_refresh)
    assert len(stats_given) == 1 and {str(p) for p in corpus} <= set(stats_given[0])
    assert all(stats_given[0][str(p)].st_size == len(body(n, 1000 * n)) for n, p in enumerate(corpus, 1))
    # the read came after the append, so the answer counts it; it was stored under the walk's stats,
    # from before the append, so the next call with the same arguments computes it again
    assert total_input(first) == 6000 + 4000
    after = recomputes(ao, "--all", "--timezone", "UTC")
    assert total_input(after) == 10000


def test_a_home_spelt_otherwise_is_walked_again(ao: Run, corpus: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # CODEX_HOME spelt with /./: the walk's paths are not the index's, so the index stats its own
    good = cost(ao, "--all")
    home = os.environ["CODEX_HOME"]
    odd = os.path.join(os.path.dirname(home), ".", os.path.basename(home))
    monkeypatch.setenv("CODEX_HOME", odd)
    assert total_input(fresh(ao, "--all")) == total_input(good)


def test_the_vector_orders_by_folder_then_name(tmp_path: Path) -> None:
    # "a-b" sorts before "a/" as a path, after "a" as a folder: the vector takes folders in order
    home = tmp_path / "codex"
    for folder in ("sessions/a", "sessions/a-b", "sessions/a/z"):
        (home / folder).mkdir(parents=True)
    for name in ("sessions/a/rollout-2.jsonl", "sessions/a/rollout-1.jsonl", "sessions/a-b/rollout-0.jsonl",
                 "sessions/a/z/rollout-3.jsonl"):
        (home / name).write_bytes(b"{}\n")
    compiled, here = tree_both([str(home)])
    assert compiled == here
    names = [part.rsplit(b"/", 2)[-2:] for part in compiled[1].split(b"\0") if b"rollout-" in part]
    assert [b"/".join(n)[-20:] for n in names] == [b"a/rollout-1.jsonl", b"a/rollout-2.jsonl",
                                                   b"a-b/rollout-0.jsonl", b"z/rollout-3.jsonl"]


def test_a_change_to_any_rollout_changes_the_vector(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    folder = home / "sessions/2026/11/20"
    folder.mkdir(parents=True)
    files = [folder / f"rollout-{n}.jsonl" for n in range(5)]
    for f in files:
        f.write_bytes(b"{}\n")
    before = tree_both([str(home)])[1][1]
    with files[3].open("ab") as fh:
        fh.write(b"\n")
    grown = tree_both([str(home)])
    assert grown[0] == grown[1] and grown[1][1] != before
    files[1].unlink()
    gone = tree_both([str(home)])
    assert gone[0] == gone[1] and gone[1][0] == 4
