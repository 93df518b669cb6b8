"""`ao prune` takes back only what is over and ao made: never a live session, a dirty worktree or a foreign dir."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from supervisor import paths, store
from supervisor.records import Status
from supervisor.report import cli as cli_mod


@pytest.fixture
def prune() -> Any:
    """`ao prune ...` through the real root group."""
    def run(*args: str) -> Any:
        return CliRunner().invoke(cli_mod.cli, ["prune", *args], catch_exceptions=False)
    return run


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def _session(repo: Path, session: str, status: Status, live: bool = False, ended_ago: float = 60.0,
             worktree: bool = True, **fields: Any) -> Path:
    target = paths.worktrees_dir() / session
    if worktree:
        target.parent.mkdir(parents=True, exist_ok=True)
        _git(repo, "worktree", "add", "-q", "-b", f"ao/{session}", str(target))
    store.insert({"session": session, "workspace": str(target), "repo": str(repo), "runtime": "headless",
                  "status": status, "branch": f"ao/{session}", "started_at": time.time() - 3600,
                  "ended_at": None if live else time.time() - ended_ago, "launch": {"argv": ["codex"]}, **fields})
    paths.session_dir(session).mkdir(parents=True, exist_ok=True)
    (paths.session_dir(session) / "events.jsonl").write_text("")
    return target


def _branches(repo: Path) -> set[str]:
    return set(_git(repo, "branch", "--format=%(refname:short)").split())


def _fleet(repo: Path) -> dict[str, Path]:
    return {"merged": _session(repo, "ao-test-merged", Status.MERGED),
            "done": _session(repo, "ao-test-done01", Status.DONE),
            "live": _session(repo, "ao-test-live01", Status.WORKING, live=True),
            "pr_open": _session(repo, "ao-test-propen", Status.PR_OPEN)}


def test_merged_removes_exactly_the_merged_worktree_and_branch(prune: Any, sample_repo: Path) -> None:
    trees = _fleet(sample_repo)
    before = _branches(sample_repo)
    dry = prune("--merged", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert [(a["session"], a["branch"], a["done"]) for a in planned] == [("ao-test-merged", "ao/ao-test-merged", False)]
    assert all(t.exists() for t in trees.values()) and _branches(sample_repo) == before  # dry run: nothing changed

    out = prune("--merged")
    assert out.exit_code == 0, out.output
    assert "removed ao-test-merged" in out.output
    assert not trees["merged"].exists() and "ao/ao-test-merged" not in _branches(sample_repo)
    assert all(trees[k].exists() for k in ("done", "live", "pr_open"))
    assert _branches(sample_repo) == before - {"ao/ao-test-merged"}
    assert store.find("ao-test-merged") is not None  # records stay without --records
    assert paths.session_dir("ao-test-merged").is_dir()


def test_prune_takes_finished_keeps_live_and_dirty(prune: Any, sample_repo: Path) -> None:
    trees = _fleet(sample_repo)
    dirty = _session(sample_repo, "ao-test-dirty1", Status.FAILED)
    (dirty / "work.txt").write_text("uncommitted\n")
    out = prune()
    assert out.exit_code == 0, out.output
    assert not trees["merged"].exists() and not trees["done"].exists()
    assert trees["live"].exists() and "ao/ao-test-live01" in _branches(sample_repo)  # never a live session
    assert trees["pr_open"].exists()  # an open PR is not finished
    assert (dirty / "work.txt").exists() and "skipped ao-test-dirty1" in out.output
    assert "uncommitted changes" in out.output
    again = json.loads(prune("--force", "--json").output)
    assert [a["session"] for a in again if a["done"]] == ["ao-test-dirty1"] and not dirty.exists()
    assert trees["live"].exists()


def test_an_unmerged_branch_is_kept_unless_forced(prune: Any, sample_repo: Path) -> None:
    tree = _session(sample_repo, "ao-test-commit", Status.DONE)
    (tree / "feature.txt").write_text("agent work\n")
    _git(tree, "add", "feature.txt")
    _git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "work")
    out = json.loads(prune("--json").output)
    assert out[0]["done"] and out[0]["branch"] is None and "kept" in out[0]["notes"][0]
    assert not tree.exists() and "ao/ao-test-commit" in _branches(sample_repo)  # the commits survive
    out = json.loads(prune("--force", "--json").output)  # a removed session's branch goes when forced
    assert out[0]["branch"] == "ao/ao-test-commit" and "ao/ao-test-commit" not in _branches(sample_repo)


def test_records_go_only_with_records(prune: Any, sample_repo: Path) -> None:
    _session(sample_repo, "ao-test-recs01", Status.DONE)
    assert json.loads(prune("--records", "--dry-run", "--json").output)[0]["records"] is True
    assert store.find("ao-test-recs01") is not None
    prune("--records")
    assert store.find("ao-test-recs01") is None and not paths.session_dir("ao-test-recs01").exists()


def test_older_than(prune: Any, sample_repo: Path) -> None:
    old = _session(sample_repo, "ao-test-old001", Status.DONE, ended_ago=3 * 86400)
    new = _session(sample_repo, "ao-test-new001", Status.DONE, ended_ago=60)
    out = json.loads(prune("--older-than", "1d", "--json").output)
    assert [a["session"] for a in out] == ["ao-test-old001"] and not old.exists() and new.exists()
    bad = prune("--older-than", "soon")
    assert bad.exit_code == 1 and "--older-than 'soon'" in bad.output


def test_hostile_records_cannot_aim_prune_elsewhere(prune: Any, sample_repo: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work\n")
    _session(sample_repo, "ao-test-aimed1", Status.DONE, worktree=False)
    store.update("ao-test-aimed1", workspace=str(precious), branch="master")  # what an unjailed agent could write
    fake = paths.worktrees_dir() / "ao-test-fake01"
    fake.mkdir(parents=True)
    (fake / "notes.txt").write_text("not a worktree\n")
    _session(sample_repo, "ao-test-fake01", Status.DONE, worktree=False)
    before = _branches(sample_repo)
    out = prune("--force", "--records")
    assert out.exit_code == 0, out.output
    assert (precious / "thesis.tex").exists() and (fake / "notes.txt").exists()
    assert "skipped ao-test-aimed1" in out.output and "skipped ao-test-fake01" in out.output
    assert _branches(sample_repo) == before  # never the branch a record names, only ao/<session>
    assert store.find("ao-test-aimed1") is not None and store.find("ao-test-fake01") is not None


NAP = """
tasks:
  nap:
    steps:
      - run: sleep 6
      - say: done after a nap
"""


@pytest.mark.codex
def test_a_running_codex_session_is_never_pruned(codex: Path, scripted_model: Any, config_for: Any, ao: Any,
                                                 prune: Any, sample_repo: Path) -> None:
    config_for(scripted_model(NAP))
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:nap] take a nap")
    assert out.returncode == 0, out.stderr
    spawned = json.loads(out.stdout)
    workspace = Path(spawned["workspace"])
    (workspace / "scratch.txt").write_text("the agent's work in progress\n")
    try:
        result = prune("--force", "--records", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == [] and workspace.is_dir()
        assert store.find(spawned["session"]) is not None
        assert ao("wait", spawned["session"], "--timeout", "90").returncode == 0
    finally:
        ao("kill", spawned["session"])
    # now it is over and clean apart from scratch.txt: kept as dirty, then taken with --force
    assert "skipped" in prune().output and workspace.is_dir()
    done = json.loads(prune("--force", "--json").output)
    assert [a["session"] for a in done if a["done"]] == [spawned["session"]] and not workspace.exists()
