"""`ao rm` removes only what ao made, and only when it can tell the work is safe to lose."""
from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from supervisor import paths, store
from supervisor.records import Status


def _ended_session(workspace: Path, repo: Path, session: str = "ao-test-rm0001") -> str:
    store.insert({"session": session, "workspace": str(workspace), "repo": str(repo), "runtime": "headless",
                  "status": Status.DONE, "ended_at": 1.0, "launch": {"argv": ["codex"]}})
    return session


def _worktree(repo: Path, session: str) -> Path:
    target = paths.worktrees_dir() / session
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "worktree", "add", "-q", "-b", f"ao/{session}", str(target)], cwd=repo, check=True)
    return target


def test_rm_removes_a_clean_worktree_ao_made(ao, sample_repo: Path) -> None:
    workspace = _worktree(sample_repo, "ao-test-rm0001")
    session = _ended_session(workspace, sample_repo)
    out = ao("rm", session)
    assert out.returncode == 0, out.stderr
    assert not workspace.exists()
    assert (sample_repo / "README.md").exists()


def test_rm_refuses_a_workspace_pointed_elsewhere(ao, sample_repo: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    workspace = _worktree(sample_repo, "ao-test-rm0001")
    session = _ended_session(workspace, sample_repo)
    with sqlite3.connect(paths.db_path()) as con:  # what an agent with the store in reach once did
        con.execute("UPDATE sessions SET workspace = ? WHERE session = ?", (str(precious), session))
    out = ao("rm", session, "--force")
    assert out.returncode == 1
    assert "not under" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert (precious / "thesis.tex").read_text() == "years of work\n"


def test_rm_refuses_a_dir_under_worktrees_that_git_does_not_list(ao, sample_repo: Path) -> None:
    fake = paths.worktrees_dir() / "ao-test-rm0001"
    fake.mkdir(parents=True)
    (fake / "notes.txt").write_text("not a worktree\n")
    session = _ended_session(fake, sample_repo)
    out = ao("rm", session, "--force")
    assert out.returncode == 1 and "git worktree list" in out.stderr
    assert (fake / "notes.txt").exists()


def test_a_failing_git_status_counts_as_dirty(ao, sample_repo: Path) -> None:
    workspace = _worktree(sample_repo, "ao-test-rm0001")
    session = _ended_session(workspace, sample_repo)
    (workspace / "work.txt").write_text("uncommitted\n")
    (workspace / ".git").write_text("gitdir: /nonexistent\n")  # git can no longer say whether it is clean
    out = ao("rm", session)
    assert out.returncode == 1 and "cannot tell whether" in out.stderr, out.stderr
    assert (workspace / "work.txt").exists()


def test_send_to_a_session_that_has_not_started_says_so(ao, sample_repo: Path) -> None:
    store.insert({"session": "ao-test-queued", "workspace": str(sample_repo), "runtime": "headless",
                  "status": Status.QUEUED, "launch": {"argv": []}})
    out = ao("send", "ao-test-queued", "hello")
    assert out.returncode == 1
    assert out.stderr.strip() == ("ao: error: session ao-test-queued is queued and has not started yet; "
                                  "send once it runs (`ao wait` does not help here: it waits for the end)")
