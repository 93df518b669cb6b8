"""A session's life after its work: an interactive turn that ended counts as finished for `ao wait` and gives
its slot back, `ao kill` keeps the outcome, a supervisor killed -9 leaves nothing running once ao looks, and
`ao rm` clears dirs no record owns. Real codex 0.169.0 on the scripted model; tmux included."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from polling import wait_for

from supervisor import paths, store
from supervisor.launch import processes
from supervisor.records import Status
from tests.test_fleet_wrappers import FAKE_GH


def _cmdline(proc: psutil.Process) -> str:
    """A process's command line; "" for one that ended (or turned unreadable) since it was listed."""
    try:
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


SCRIPT = """
tasks:
  pr:
    steps:
      - run: git checkout -b feature/agent-7
      - run: gh pr create --title 'Agent work' --body 'Done by an agent'
      - say: opened a PR
  quick:
    steps:
      - say: done
  linger:
    steps:
      - run: "(setsid sleep 301 </dev/null >/dev/null 2>&1 &) ; sleep 302"
      - say: never gets here
"""


def _fake_gh(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "fake-gh"
    fake.mkdir()
    (fake / "gh").write_text(FAKE_GH)
    (fake / "gh").chmod(0o755)
    return dict(os.environ, PATH=f"{os.environ['PATH']}:{fake}")  # after the wrappers, which come first


def _spawn(ao, repo: Path, prompt: str, *flags: str, env: dict[str, str] | None = None) -> dict[str, str]:
    out = ao("spawn", *flags, "--repo", str(repo), "--json", prompt, env=env)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    return dict(found[0] if isinstance(found, list) else found)


def _row(ao, session: str) -> dict[str, object]:
    out = ao("status", session, "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    return dict(found[0] if isinstance(found, list) else found)


def _left(session: str) -> list[int]:
    return [p.pid for p in processes.session_processes(session, [], 0.0)]


@pytest.mark.codex
def test_a_tmux_turn_that_ended_is_finished_frees_its_slot_and_kill_keeps_pr_open(
        ao, codex, scripted_model, config_for, sample_repo, tmp_path) -> None:
    config_for(scripted_model(SCRIPT), "max_concurrent: 1\n")
    env = _fake_gh(tmp_path)
    first = _spawn(ao, sample_repo, "[ao-task:pr] open a PR", "--tmux", env=env)["session"]
    try:
        waited = ao("wait", first, "--timeout", "90", timeout=120)
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert f"{first} pr_open" in waited.stdout
        row = _row(ao, first)
        assert (row["status"], row["activity"], row["attention"]) == ("pr_open", "idle", "input"), row
        assert row["pr_number"] == 7
        # the TUI is still there for its user: `--exit` semantics wait for the process
        from supervisor.errors import FatalError
        from supervisor.sessions import reconcile
        from supervisor.sessions.wait import wait_sessions

        with pytest.raises(FatalError, match="to exit"):
            wait_sessions([first], 1.0, until_exit=True)
        assert reconcile.count_running("alive") == 1 and reconcile.count_running("active") == 0
        assert store.get(first)["launch"]["slots"] == "active"  # the default, carried to the runner
        second = _spawn(ao, sample_repo, "[ao-task:quick] go", "--headless")
        assert second["status"] == "spawning", second  # the idle agent gave its slot back
        assert ao("wait", second["session"], "--timeout", "60").returncode == 0
        assert _left(first), "the tmux agent should still be alive before the kill"
        killed = ao("kill", first)
        assert killed.returncode == 0, killed.stderr
    finally:
        ao("kill", first)
    record = store.get(first)
    assert record["status"] == Status.PR_OPEN and record["ended_at"] is not None, record
    assert _left(first) == []
    from supervisor.launch.runtimes import tmux

    assert not tmux.alive(first)
    names = subprocess.run(["tmux", "-L", tmux.socket_name(), "list-sessions", "-F", "#{session_name}"],
                           capture_output=True, text=True).stdout
    assert f"ao-{first}" not in names


@pytest.mark.codex
def test_kill_9_of_a_tmux_runner_then_ao_kill_leaves_no_process(ao, codex, scripted_model, config_for,
                                                                 sample_repo) -> None:
    config_for(scripted_model(SCRIPT))
    session = _spawn(ao, sample_repo, "[ao-task:linger] sleep", "--tmux")["session"]
    from supervisor.launch.runtimes import tmux

    def names() -> list[str]:
        return subprocess.run(["tmux", "-L", tmux.socket_name(), "list-sessions", "-F", "#{session_name}"],
                              capture_output=True, text=True).stdout.split()

    # the tmux session is named by the id alone (ids already start with `ao-`)
    assert session in wait_for(names, 30, what="the tmux session") and f"ao-{session}" not in names()
    # the agent's command, setsid'd out of codex's process tree, is running
    wait_for(lambda: any("sleep 301" in _cmdline(p) for p in processes.session_processes(session, [], 0)),
             60, what="the agent's escaped sleep")
    os.kill(store.get(session)["pid"] or 0, signal.SIGKILL)
    killed = ao("kill", session)
    assert killed.returncode == 0, killed.stderr
    assert _left(session) == []
    assert not tmux.alive(session)
    record = store.get(session)
    assert record["status"] == Status.KILLED and record["ended_at"] is not None
    again = ao("kill", session)
    assert again.returncode == 1 and "not running" in again.stderr


@pytest.mark.codex
def test_a_dead_runner_found_by_status_ends_its_leftovers_and_fails_with_the_reason(
        ao, codex, scripted_model, config_for, sample_repo) -> None:
    config_for(scripted_model(SCRIPT))
    session = _spawn(ao, sample_repo, "[ao-task:linger] sleep", "--headless", "--unjailed")["session"]
    wait_for(lambda: any("sleep 301" in _cmdline(p) for p in processes.session_processes(session, [], 0)),
             60, what="the agent's escaped sleep")
    os.kill(store.get(session)["pid"] or 0, signal.SIGKILL)
    row = _row(ao, session)
    assert row["status"] == "failed" and "supervisor process died" in str(row["error"]), row
    assert _left(session) == []


def test_kill_of_an_ended_session_with_no_process_says_not_running(ao, sample_repo) -> None:
    store.insert({"session": "ao-test-ended1", "workspace": str(sample_repo), "runtime": "headless",
                  "status": Status.DONE, "ended_at": 1.0, "launch": {"argv": []}})
    out = ao("kill", "ao-test-ended1")
    assert out.returncode == 1 and "not running" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_an_escaped_process_of_an_ended_session_is_found_and_killed(ao, sample_repo) -> None:
    store.insert({"session": "ao-test-leak01", "workspace": str(sample_repo), "runtime": "headless",
                  "status": Status.FAILED, "ended_at": time.time(), "launch": {"argv": []},
                  "started_at": time.time() - 5})
    leak = subprocess.Popen(["sleep", "300"], env=dict(os.environ, AO_SESSION="ao-test-leak01"),
                            start_new_session=True)
    bystander = subprocess.Popen(["sleep", "300"], env=dict(os.environ, AO_SESSION="ao-test-other1"))
    try:
        out = ao("kill", "ao-test-leak01")
        assert out.returncode == 0, out.stderr
        assert leak.wait(timeout=10) is not None
        assert bystander.poll() is None  # another session's process is not this one's
        assert store.get("ao-test-leak01")["status"] == Status.FAILED  # the outcome stays
    finally:
        for proc in (leak, bystander):
            proc.kill()
            proc.wait()


def test_a_reused_pid_in_the_record_is_left_alone(ao, sample_repo) -> None:
    """A record's codex_pid now names an unrelated process (pid reuse, or an agent editing the store)."""
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        store.insert({"session": "ao-test-reuse1", "workspace": str(sample_repo), "runtime": "headless",
                      "status": Status.WORKING, "launch": {"argv": []}, "pid": bystander.pid,
                      "codex_pid": bystander.pid, "started_at": time.time() + 60})
        out = ao("kill", "ao-test-reuse1")
        assert out.returncode == 0, out.stderr
        assert bystander.poll() is None
        assert store.get("ao-test-reuse1")["status"] == Status.KILLED
    finally:
        bystander.kill()
        bystander.wait()


def _old(*dirs: Path) -> None:
    for d in dirs:
        os.utime(d, (time.time() - 3600, time.time() - 3600))


def test_rm_removes_a_worktree_and_session_dir_no_record_owns(ao, sample_repo) -> None:
    session = "ao-0101-abc123"
    tree = paths.worktrees_dir() / session
    tree.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "worktree", "add", "-q", "-b", f"ao/{session}", str(tree)], cwd=sample_repo, check=True)
    sdir = paths.session_dir(session)
    sdir.mkdir(parents=True)
    (sdir / "ledger.jsonl").write_text("{}\n")
    _old(tree, sdir)
    (tree / "work.txt").write_text("uncommitted\n")
    _old(tree)
    refused = ao("rm", session)
    assert refused.returncode == 1 and "uncommitted" in refused.stderr
    assert tree.exists() and sdir.exists()
    out = ao("rm", session, "--force")
    assert out.returncode == 0, out.stderr
    assert not tree.exists() and not sdir.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=sample_repo, capture_output=True, text=True).stdout
    assert session not in listed


def test_rm_of_a_recordless_dir_keeps_the_safety_checks(ao, sample_repo, tmp_path) -> None:
    fake = paths.worktrees_dir() / "ao-0101-def456"
    fake.mkdir(parents=True)
    (fake / "notes.txt").write_text("not a worktree\n")
    _old(fake)
    out = ao("rm", "ao-0101-def456", "--force")
    assert out.returncode == 1 and "left alone" in out.stderr
    assert (fake / "notes.txt").exists()
    young = paths.session_dir("ao-0101-fff000")  # a spawn under way makes its dir before its record
    young.mkdir(parents=True)
    out = ao("rm", "ao-0101-fff000")
    assert out.returncode == 1 and "spawn" in out.stderr and young.exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (paths.worktrees_dir() / "ao-0101-aaa111").symlink_to(precious)
    out = ao("rm", "ao-0101-aaa111", "--force")
    assert out.returncode == 1 and precious.exists()
    for bad in ("..", "../..", "a/b"):
        out = ao("rm", bad, "--force")
        assert out.returncode == 1 and "Traceback" not in out.stderr
    assert ao("rm", "ao-0101-nothing").returncode == 1


def test_send_to_an_ended_session_whose_workspace_is_gone_names_the_cause(ao, tmp_path) -> None:
    store.insert({"session": "ao-test-gone01", "workspace": str(tmp_path / "removed"), "runtime": "headless",
                  "status": Status.DONE, "ended_at": 1.0, "thread_id": "t-1", "launch": {"argv": []}})
    out = ao("send", "ao-test-gone01", "more")
    assert out.returncode == 1 and "no longer exists" in out.stderr and "git is not installed" not in out.stderr


def test_an_older_store_gains_the_new_column(tmp_path) -> None:
    path = paths.db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ", ".join(f"{n} {d}" for n, d in store.COLUMNS.items() if n != "kept_status")
    with sqlite3.connect(path) as con:
        con.executescript(f"CREATE TABLE sessions ({cols}); PRAGMA user_version = 1;")
    store.insert({"session": "ao-test-old001", "workspace": "/w", "runtime": "headless", "status": Status.DONE,
                  "launch": {}})
    store.update("ao-test-old001", kept_status=Status.DONE)
    assert dict(store.get("ao-test-old001")).get("kept_status") == "done"
    store.update("ao-test-old001", ended_at=None)  # a run that starts again forgets the kill
    assert dict(store.get("ao-test-old001")).get("kept_status") is None
