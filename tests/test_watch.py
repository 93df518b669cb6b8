"""`ao watch` (issue #13, P2b): the resident watcher answers `ao status` and `ao cost` over its socket with
the one-shot path's bytes, never a stale answer, and every failure sends clients back to the one-shot path.

Each test runs the real `ao watch` in a child process and the real `ao` CLI as the client. Whether an
answer came from the watcher is read from the watcher itself (`ao watch --status --json`: served and
declined counts), never assumed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_answer_cache import body, rollout, total_input

from supervisor import paths
from supervisor.report import resident, watch_client

Run = Callable[..., Any]
# `ao watch` through the command table, with the `watch` line added if the table lacks it yet
WATCH = ("import sys; from supervisor.report import cli; "
         "cli.COMMANDS.setdefault('watch', ('supervisor.report.cmd_watch', 'watch')); sys.argv[0] = 'ao'; cli.main()")
ONE_SHOT = {watch_client.DISABLE_ENV: "1"}


def ao_watch(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WATCH, "watch", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def state() -> dict[str, Any]:
    done = ao_watch("--status", "--json")
    assert done.returncode in (0, 1), done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def socket_path() -> Path:
    return Path(watch_client.watch_dir()) / watch_client.SOCKET_NAME


class Watcher:
    """A running `ao watch` child; its stderr is kept for the assertions."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WATCH, "watch", "--no-notify", "--no-reactions", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ao watch exited {self.proc.returncode}: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            if socket_path().exists() and state().get("stale") is None and state().get("running"):
                return
            time.sleep(0.05)
        raise AssertionError("ao watch did not start answering within 30 s")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=15)
        return str(err)


@pytest.fixture
def watcher() -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(*args: str) -> Watcher:
        w = Watcher(*args)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(timeout=10)


def both(ao: Run, *args: str) -> tuple[Any, Any]:
    """(`ao ARGS` answered by the watcher, the same by the one-shot path); asserts the watcher served it."""
    served = state()["served"]
    hot = ao(*args)
    assert state()["served"] == served + 1, f"the watcher did not serve `ao {' '.join(args)}`: {state()}"
    cold = ao(*args, env={**os.environ, **ONE_SHOT})
    return hot, cold


def corpus() -> list[Path]:
    return [rollout(n, 1000 * n) for n in range(1, 4)]


# --- the honest user -----------------------------------------------------------------------------------

def test_answers_over_the_socket_equal_the_one_shot_answers(ao: Run, watcher: Any) -> None:
    corpus()
    watcher()
    for args in (("cost", "--all", "--json"), ("cost", "--all", "--by", "day"), ("cost", "--all", "--by=model"),
                 ("cost", "--json"), ("cost", "--all", "--json", "--timezone", "+02:00", "--since", "2026-11-20"),
                 ("status", "--json"), ("status",)):
        hot, cold = both(ao, *args)
        assert hot.returncode == cold.returncode == 0, (args, hot.stderr, cold.stderr)
        assert (hot.stdout, hot.stderr) == (cold.stdout, cold.stderr), args
    assert total_input(ao("cost", "--all", "--json").stdout) == 6000


def test_an_answer_written_into_a_file_equals_the_one_shot_file(ao: Run, watcher: Any, tmp_path: Path) -> None:
    """Output to a file: the watcher writes the answer into the client's own stdout (passed over the socket)."""
    corpus()
    watcher()

    def to_files(name: str, env: dict[str, str]) -> tuple[bytes, bytes, int]:
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            code = subprocess.run([sys.executable, "-m", "supervisor", "cost", "--all", "--by", "model"],
                                  stdout=o, stderr=e, env=env, timeout=60).returncode
        return out.read_bytes(), err.read_bytes(), code

    rollout(7, 10, ts="2026-11-20T11:00:00.000Z")
    (paths.codex_home() / "sessions/2026/11/20/rollout-2026-11-20T10-00-07-00000007-0000-7000-8000-000000000000.jsonl"
     ).write_bytes(body(7, 10).replace(b"gpt-5.1-codex", b"no-such-model"))  # an unpriced model: a warning
    before = state()
    hot = to_files("hot", dict(os.environ))
    after = state()
    assert (after["served"], after["direct"]) == (before["served"] + 1, before["direct"] + 1)
    cold = to_files("cold", {**os.environ, **ONE_SHOT})
    assert hot == cold and hot[2] == 0
    assert b"no price known for model 'no-such-model'" in hot[1]


def test_a_change_then_an_immediate_query_never_gets_the_old_answer(ao: Run, watcher: Any) -> None:
    paths_ = corpus()
    watcher()
    before = ao("cost", "--all", "--json").stdout
    assert total_input(before) == 6000
    for n, total in ((4, 500), (5, 700)):
        rollout(n, total)  # a new file, then at once the query
        assert total_input(ao("cost", "--all", "--json").stdout) == 6000 + (500 if n == 4 else 1200)
    # an append to an existing rollout: a later, larger running total
    with open(paths_[0], "ab") as fh:
        fh.write(body(1, 4000).splitlines(keepends=True)[-1].replace(b"1000", b"4000"))
    hot = ao("cost", "--all", "--json").stdout
    assert hot == ao("cost", "--all", "--json", env={**os.environ, **ONE_SHOT}).stdout
    assert total_input(hot) == 6000 + 1200 + 3000
    assert state()["declined"] == {}


def test_a_config_with_prices_is_read_by_the_watcher_as_by_the_client(ao: Run, watcher: Any) -> None:
    corpus()
    user = paths.ao_home() / "agent-orchestrator.yaml"
    user.write_text("pricing:\n  gpt-5.1-codex: {input: 1.0, cached_input: 0.5, output: 2.0}\n")
    watcher()
    hot, cold = both(ao, "cost", "--all", "--json")
    assert hot.stdout == cold.stdout
    first = hot.stdout
    user.write_text("pricing:\n  gpt-5.1-codex: {input: 9.0, cached_input: 0.5, output: 2.0}\n")
    hot, cold = both(ao, "cost", "--all", "--json")
    assert hot.stdout == cold.stdout != first  # the new price, at once
    assert json.loads(hot.stdout)["totals"]["cost_usd"] == 0.0288  # 3000 x 9 + 3000 x 0.5 + 150 x 2, per 1M


def test_clients_at_once_each_get_the_whole_answer_once(ao: Run, watcher: Any, tmp_path: Path) -> None:
    """Requests at the same moment are each answered (a request thread kept waiting, or a new one), and
    every file holds the one-shot answer exactly once."""
    corpus()
    watcher()
    expected = ao("cost", "--all", "--json", env={**os.environ, **ONE_SHOT}).stdout.encode()
    served = state()["served"]

    def client(n: int) -> tuple[int, bytes]:
        with open(tmp_path / f"out{n}", "wb") as out:
            code = subprocess.run([sys.executable, "-m", "supervisor", "cost", "--all", "--json"], stdout=out,
                                  stderr=subprocess.DEVNULL, timeout=60).returncode
        return code, (tmp_path / f"out{n}").read_bytes()

    results: list[tuple[int, bytes]] = []
    threads = [threading.Thread(target=lambda n=n: results.append(client(n))) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert sorted(code for code, _ in results) == [0] * 8
    assert all(out == expected for _, out in results)
    assert state()["served"] == served + 8


def test_a_long_request_holds_up_no_other_and_idle_threads_are_few() -> None:
    release = threading.Event()
    handled: list[str] = []

    def handle(conn: str) -> None:
        handled.append(conn)
        if conn == "slow":
            release.wait(10)  # a recompute after a change, say

    workers = resident.Workers(handle)
    try:
        workers.submit("slow")
        workers.submit("quick")
        deadline = time.monotonic() + 5
        while "quick" not in handled and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "quick" in handled and not release.is_set()
        release.set()
        for n in range(3 * resident.IDLE_WORKERS):  # several at once, then each waits for the next
            workers.submit(f"r{n}")
        deadline = time.monotonic() + 5
        while len(handled) < 2 + 3 * resident.IDLE_WORKERS and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(handled[2:]) == sorted(f"r{n}" for n in range(3 * resident.IDLE_WORKERS))
        time.sleep(0.2)
        assert workers.idle <= resident.IDLE_WORKERS
        assert sum(t.name == "ao-watch-request" for t in threading.enumerate()) <= resident.IDLE_WORKERS
    finally:
        workers.close()
    deadline = time.monotonic() + 5
    while any(t.name == "ao-watch-request" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "ao-watch-request" for t in threading.enumerate())


def test_a_watched_answer_costs_the_client_no_json_import(watcher: Any, tmp_path: Path) -> None:
    """The client's side of a watched answer imports `_socket` and `_json` and nothing else: `json`
    (re, enum) and the answer cache (hashlib, pathlib, typing) would be a third of its time."""
    corpus()
    watcher()
    script = ("import sys\n"
              "from supervisor.report import cost_view, watch_client\n"
              "args = cost_view.parse(['--all', '--json']).as_dict()\n"
              "before = set(sys.modules)\n"
              "code = watch_client.ask('cost', args)\n"
              "sys.stderr.write(repr((code, sorted(set(sys.modules) - before))))\n")
    with open(tmp_path / "out", "wb") as out:
        done = subprocess.run([sys.executable, "-c", script], stdout=out, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    assert done.returncode == 0, done.stderr
    code, imported = eval(done.stderr)
    assert code == 0 and set(imported) <= {"_socket", "_json"}, imported
    assert total_input((tmp_path / "out").read_text()) == 6000


def test_stop_and_sigterm_remove_the_socket(watcher: Any) -> None:
    w = watcher()
    done = ao_watch("--stop")
    assert done.returncode == 0 and "stopped" in done.stdout, done.stderr
    assert w.proc.wait(timeout=10) == 0
    assert not socket_path().exists()
    w = watcher()
    err = w.stop()
    assert w.proc.returncode == 0 and "stopped" in err
    assert not socket_path().exists()
    assert ao_watch("--status").returncode == 1
    assert ao_watch("--stop").stdout.strip() == "ao watch is not running"


def test_a_second_watcher_refuses(watcher: Any) -> None:
    w = watcher()
    second = ao_watch()
    assert second.returncode == 1
    assert second.stderr.strip() == (f"ao: error: ao watch is already running for {paths.ao_home()} "
                                     f"(pid {w.proc.pid}); `ao watch --stop` ends it")
    assert state()["pid"] == w.proc.pid  # the first still answers


def test_the_socket_is_private(watcher: Any) -> None:
    watcher()
    assert os.stat(watch_client.watch_dir()).st_mode & 0o777 == 0o700
    assert os.stat(socket_path()).st_mode & 0o777 == 0o600


# --- the failing world ---------------------------------------------------------------------------------

def test_a_watcher_killed_9_sends_clients_back_and_the_next_one_starts(ao: Run, watcher: Any) -> None:
    corpus()
    w = watcher()
    expected = ao("cost", "--all", "--json", env={**os.environ, **ONE_SHOT}).stdout
    w.proc.kill()
    w.proc.wait(timeout=10)
    assert socket_path().exists()  # left behind: nobody listens on it
    started = time.monotonic()
    done = ao("cost", "--all", "--json")
    assert done.returncode == 0 and done.stdout == expected
    assert time.monotonic() - started < 10
    assert not socket_path().exists()  # the client saw no watcher holds the lock, and removed it
    watcher()
    hot, cold = both(ao, "cost", "--all", "--json")
    assert hot.stdout == cold.stdout == expected


def test_a_stale_socket_is_replaced_by_the_next_watcher(ao: Run, watcher: Any) -> None:
    w = watcher()
    w.proc.kill()
    w.proc.wait(timeout=10)
    assert socket_path().exists()
    watcher()
    assert state()["running"] is True


def test_a_watcher_starting_while_a_client_clears_a_stale_socket_still_starts(ao: Run, watcher: Any) -> None:
    # a client that finds a dead watcher's socket takes the lock for a moment to remove it; a watcher
    # starting in that moment waits it out instead of saying one is already running
    import fcntl

    folder = Path(watch_client.watch_dir())
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / watch_client.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    unlock = threading.Timer(0.3, fcntl.flock, (fd, fcntl.LOCK_UN))
    unlock.start()
    try:
        watcher()
    finally:
        unlock.join()
        os.close(fd)
    assert state()["running"] is True


class FakeWatcher:
    """A socket where the watcher's is, speaking its protocol up to a chosen point of a direct answer."""

    def __init__(self, until: str, partial: bytes = b"") -> None:
        import socket as socket_mod

        folder = Path(watch_client.watch_dir())
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.listener = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
        dirfd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
        try:  # through /proc, as the watcher binds: a test's folder may be longer than sun_path's 107 bytes
            self.listener.bind(f"/proc/self/fd/{dirfd}/{watch_client.SOCKET_NAME}")
        finally:
            os.close(dirfd)
        self.listener.listen(1)
        self.until, self.partial = until, partial
        self.release = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        import socket as socket_mod

        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            conn.settimeout(10)
            while not conn.recv(65536).endswith(b"\n"):
                pass
            conn.sendall(b"+" + watch_client.OFFER)
            if self.until == "offer":
                return
            _, ancdata, _, _ = conn.recvmsg(1, socket_mod.CMSG_SPACE(8))
            fds = resident._rights(ancdata)
            if self.until == "commit":
                return
            if self.until == "hold":  # stopped (SIGSTOP) with the client's files: it may write later
                self.release.wait(10)
                return
            conn.sendall(watch_client.WRITING)
            os.write(fds[0], self.partial)  # then killed -9, say: no final header
        finally:
            conn.close()
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        self.release.set()
        self.thread.join(10)
        self.listener.close()


def test_a_watcher_lost_mid_answer_never_makes_the_client_print_it_twice(ao: Run, tmp_path: Path) -> None:
    """Once the client has handed its stdout to the watcher, part of the answer may be there: a watcher
    that ends then makes the client fail with one line, never compute the answer again after it. A
    watcher that ends before it has the client's files leaves the answer to the client."""
    corpus()
    expected = ao("cost", "--all", "--json", env={**os.environ, **ONE_SHOT}).stdout.encode()
    for until, code, out, err in (
            ("write", 1, b'{\n  "rows"', b"ao: error: cannot write the answer: ao watch ended before it had "
                                          b"written all of it\n"),
            ("commit", 0, expected, b""),
            ("offer", 0, expected, b"")):
        fake = FakeWatcher(until, partial=b'{\n  "rows"')
        try:
            with open(tmp_path / "out", "wb") as o, open(tmp_path / "err", "wb") as e:
                done = subprocess.run([sys.executable, "-m", "supervisor", "cost", "--all", "--json"], stdout=o,
                                      stderr=e, timeout=60)
        finally:
            fake.close()
        assert (done.returncode, (tmp_path / "out").read_bytes(), (tmp_path / "err").read_bytes()) == (code, out, err)
        socket_path().unlink()


def test_a_client_that_handed_over_its_files_never_stops_waiting_to_compute(tmp_path: Path) -> None:
    """After the handover, a watcher that says nothing may still write into the client's stdout: the
    client gives up with an error then, never with None (which would make it print the answer too)."""
    fake = FakeWatcher("hold")
    fds = [os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT), os.open(tmp_path / "err", os.O_WRONLY | os.O_CREAT)]
    try:
        reply = watch_client.request({"kind": "cost", "direct": True}, answer_timeout=0.5, fds=fds)
    finally:
        fake.close()
        for fd in fds:
            os.close(fd)
    assert reply == ({"direct": True, "code": 1, "error": "ao watch did not answer in time"}, b"")


def test_fences_leave_no_file_and_no_memory_behind(tmp_path: Path) -> None:
    """Every request makes a fence; its deletion's event, read later, must not be kept (a watcher that
    serves for months would grow), and fences a killed watcher left are removed when the next starts."""
    fence_dir = tmp_path / "fence"
    fence_dir.mkdir()
    (fence_dir / "f123-0").symlink_to("f123-0")  # left by a watcher killed -9 mid-request
    st = resident.State()
    w = resident.Watcher(st, fence_dir, str(tmp_path / "package"))
    try:
        assert list(fence_dir.iterdir()) == []
        assert w.watch(str(fence_dir), False) == ""
        for n in range(50):
            assert w.fence(f"t{n}")
            w.sweep()
        assert w.fence("last")  # read after every deletion above
        with st.cond:
            assert st.fences == {}
        w.sweep()
        assert list(fence_dir.iterdir()) == []
    finally:
        w.close()


def test_code_changes_send_clients_back(ao: Run, watcher: Any, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # a private copy of ao's code for this watcher and its clients: rewriting the shared tree would tell
    # every watcher other tests run at the same time that their code changed
    import shutil

    import supervisor
    copy = tmp_path / "code"
    shutil.copytree(Path(supervisor.__file__).parent, copy / "supervisor",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("PYTHONPATH", str(copy))
    corpus()
    watcher()
    ao("cost", "--all", "--json")
    assert state()["served"] == 1  # by the watcher running the copy
    # the watcher's own code: touching a loaded module is a change to the code that answers
    source = copy / "supervisor/report/resident.py"
    source.write_bytes(source.read_bytes())  # the same bytes, rewritten: as an editor or pip would
    declined_before = sum(state()["declined"].values())
    done = ao("cost", "--all", "--json")
    assert done.returncode == 0 and total_input(done.stdout) == 6000
    doc = state()
    assert "code changed" in (doc["stale"] or "")
    assert sum(doc["declined"].values()) == declined_before + 1


def test_an_overflowing_inotify_queue_makes_the_watcher_catch_up(ao: Run, watcher: Any, tmp_path: Path) -> None:
    corpus()
    watcher()
    ao("cost", "--all", "--json")
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    folder = paths.codex_home() / "sessions" / "2026" / "11" / "20"
    noise = folder / "noise.txt"
    # stop the watcher's reader, flood the queue past its limit, and let it read again
    pid = state()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        fd = os.open(noise, os.O_WRONLY | os.O_CREAT, 0o600)
        for _ in range(limit + 10):
            os.write(fd, b"x")
        os.close(fd)
        rollout(6, 100)
    finally:
        os.kill(pid, signal.SIGCONT)
    # whatever the moment, the answer includes the new rollout (served or computed here)
    assert total_input(ao("cost", "--all", "--json").stdout) == 6100
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and state()["stale"]:
        time.sleep(0.1)
    assert state()["stale"] is None
    hot, cold = both(ao, "cost", "--all", "--json")
    assert hot.stdout == cold.stdout and total_input(hot.stdout) == 6100


def test_a_filesystem_without_inotify_is_never_trusted() -> None:
    for kind in ("nfs", "nfs4", "cifs", "fuse.sshfs", "9p", None):
        assert not resident.inotify_reliable(kind), kind
    for kind in ("ext4", "xfs", "btrfs", "tmpfs", "overlay"):
        assert resident.inotify_reliable(kind), kind
    assert resident.fs_type("/proc/self") == "proc"


# --- the hub -------------------------------------------------------------------------------------------

def test_services_run_and_a_broken_one_does_not_stop_the_others(capsys: pytest.CaptureFixture[str]) -> None:
    stop = threading.Event()
    table = {"good": ("test_watch", "_good_service"), "broken": ("test_watch", "_broken_service"),
             "missing": ("supervisor.no_such_module", "run")}
    _SEEN[:] = []
    states: dict[str, str] = {}
    threads = resident.start_services({"cfg": True}, stop, ["broken", "missing", "good"], states, table)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and states.get("good") != "running":
        time.sleep(0.01)
    assert states["good"] == "running"
    stop.set()
    for t in threads:
        t.join(5)
    seen = list(_SEEN)
    assert seen == ["started with True", "stopped"]
    assert states["broken"] == "failed: RuntimeError: no network"
    assert states["missing"].startswith("not started: ModuleNotFoundError")
    err = capsys.readouterr().err.splitlines()
    assert "ao watch: service broken: failed: RuntimeError: no network" in err
    assert any(line.startswith("ao watch: service missing: not started: ModuleNotFoundError") for line in err)


_SEEN: list[str] = []


def _good_service(cfg: Any, stop: threading.Event) -> None:
    _SEEN.append(f"started with {cfg['cfg']}")
    stop.wait(10)
    _SEEN.append("stopped")


def _broken_service(cfg: Any, stop: threading.Event) -> None:
    raise RuntimeError("no network")


def test_the_services_table_names_the_hubs_services() -> None:
    assert resident.SERVICES == {"notify": ("supervisor.sessions.notify", "run"),
                                 "reactions": ("supervisor.sessions.reactions", "run"),
                                 "dashboard": ("supervisor.dashboard.server", "run")}
    assert resident.OPTIONAL_SERVICES == ("dashboard",)


# --- the adversary -------------------------------------------------------------------------------------

def test_the_socket_is_hidden_from_the_jailed_agent(tmp_path: Path) -> None:
    """The jail lays a tmpfs over $AO_HOME and re-binds only bin/, cache/ and worktrees/ (and the
    session's guard dir and events file): the watch dir is not among them."""
    from supervisor.launch import jail

    home = paths.ao_home()
    for sub in ("bin", "cache", "worktrees", "watch", "sessions/s1/guard"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    ws = tmp_path / "ws"
    ws.mkdir()
    spec = jail.JailSpec(ao_home=home, session_dir=home / "sessions/s1", workspace=ws, codex_home=paths.codex_home(),
                         codex_binary=Path(sys.executable), guard_dir=home / "sessions/s1/guard",
                         events_file=home / "sessions/s1/events.jsonl")
    mounts = jail.mounts(spec)
    real_home = os.path.realpath(home)
    assert any(m.op == "tmpfs" and m.dest == real_home for m in mounts)
    watch = os.path.realpath(watch_client.watch_dir())
    for m in mounts:
        if m.op in ("bind", "ro-bind", "dev-bind") and m.dest != "/":
            assert not (watch == m.dest or watch.startswith(m.dest.rstrip("/") + "/")), m


def test_other_uids_and_garbage_are_refused(watcher: Any) -> None:
    watcher()
    import socket as socket_mod

    dirfd = os.open(watch_client.watch_dir(), os.O_PATH | os.O_DIRECTORY)
    try:
        for payload in (b"not json\n", b"[1,2]\n", json.dumps({"proto": 1, "kind": "cost"}).encode() + b"\n"):
            s = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
            s.settimeout(5)
            s.connect(f"/proc/self/fd/{dirfd}/{watch_client.SOCKET_NAME}")
            s.sendall(payload)
            reply = s.recv(65536)
            s.close()
            assert b"body_len" not in reply, payload  # declined: no answer body
    finally:
        os.close(dirfd)
    assert state()["running"] is True


def test_files_sent_with_a_request_are_never_written_into(ao: Run, watcher: Any, tmp_path: Path) -> None:
    """A client that hands over its stdout with the request and goes away (it timed out, and prints the
    answer itself) must not have the watcher's copy written there too: only files handed over once the
    answer is ready are written into."""
    import socket as socket_mod

    corpus()
    watcher()
    ao("cost", "--all", "--json")  # the answer is hot
    target = tmp_path / "stdout"
    target.touch()
    args = {"by": "session", "since": None, "until": None, "timezone": None, "all_rollouts": True, "as_json": True}
    message = {"proto": watch_client.PROTO, "version": resident.__version__, "package": watch_client.package_dir(),
               "kind": "cost", "args": args, "env": {k: os.environ.get(k) for k in watch_client.ENV_KEYS},
               "config": [None, True], "direct": True}
    dirfd = os.open(watch_client.watch_dir(), os.O_PATH | os.O_DIRECTORY)
    fd = os.open(target, os.O_WRONLY)
    try:
        s = socket_mod.socket(socket_mod.AF_UNIX, socket_mod.SOCK_STREAM)
        s.settimeout(10)
        s.connect(f"/proc/self/fd/{dirfd}/{watch_client.SOCKET_NAME}")
        rights = fd.to_bytes(4, sys.byteorder) * 2
        s.sendmsg([json.dumps(message).encode() + b"\n"], [(socket_mod.SOL_SOCKET, socket_mod.SCM_RIGHTS, rights)])
        assert s.recv(1) == b"+"
        reply = s.recv(65536)
        s.close()  # gone without handing its files over now
    finally:
        os.close(fd)
        os.close(dirfd)
    assert state()["running"] is True  # the watcher is done with that request
    assert target.read_bytes() == b""
    assert reply == watch_client.OFFER  # the answer was ready; the files given with the request were not used


def test_text_only_the_one_shot_path_prints_the_same_is_left_to_it() -> None:
    """Terminal escapes (click strips them on a pipe) and text that is not UTF-8 are declined; the rest is
    the answer's bytes, encoded once when it is computed (at 50,000 rollouts that is 15 MB)."""
    assert resident.encoded(0, "a \x1b[31m b\n", "") == "terminal escapes: the one-shot path strips them on a pipe"
    assert resident.encoded(0, "ok\n", "warning: \x1b]0;x\x07\n") == \
        "terminal escapes: the one-shot path strips them on a pipe"
    assert resident.encoded(0, "/work/\udcff\n", "") == "text that is not UTF-8"
    assert resident.encoded(0, "caf\u00e9 \u2603\n", "w\n") == resident.Reply(0, "caf\u00e9 \u2603\n".encode(), b"w\n")


def test_the_fast_paths_agree_with_the_modules_they_mirror() -> None:
    from supervisor import config
    from supervisor.report import cmd_cost, cost_view

    assert watch_client.CONFIG_NAME == config.CONFIG_NAME
    assert cost_view.GROUPS == cmd_cost.GROUPS
    assert config.DEFAULTS["pricing"] == {}
    assert cost_view.parse(["--all", "--json", "--by", "day"]) is not None
    for argv in (["--by", "week"], ["--all", "--all"], ["--help"], ["x"], ["--since"]):
        assert cost_view.parse(argv) is None, argv
