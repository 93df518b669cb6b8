"""`ao cost --all` reads every CODEX_HOME ao has used: the default one and each isolated session home.

Real codex against the scripted model: one session in an isolated home, one in the shared home; the
report must equal what the model served, each thread exactly once, even when a home is reachable
through a symlink or a session's recorded home is gone.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from supervisor.model.server import read_ledger

pytestmark = pytest.mark.codex

SCRIPT = """
tasks:
  iso:
    steps:
      - run: echo isolated
        usage: {input: 1000, cached_input: 100, output: 50, reasoning: 10}
      - say: Isolated done.
        usage: {input: 1100, cached_input: 900, output: 60, reasoning: 0}
  shared:
    steps:
      - say: Shared done.
        usage: {input: 3000, cached_input: 0, output: 90, reasoning: 30}
"""
KEYS = ("input", "cached_input", "output", "reasoning")


def sums(entries: list[dict[str, Any]]) -> dict[str, int]:
    return {k: sum(e["usage"][k] for e in entries) for k in KEYS}


def spawn(ao: Any, repo: Path, prompt: str) -> dict[str, Any]:
    out = ao("spawn", "--headless", "--repo", str(repo), "--json", prompt)
    assert out.returncode == 0, out.stderr
    spawned: dict[str, Any] = json.loads(out.stdout)
    assert ao("wait", spawned["session"], "--timeout", "120").returncode == 0
    return spawned


def cost_all(ao: Any) -> dict[str, Any]:
    out = ao("cost", "--all", "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_cost_all_counts_isolated_and_shared_homes_once(codex: Path, scripted_model: Any, config_for: Any,
                                                        sample_repo: Path, ao: Any, isolated_home: Path,
                                                        tmp_path: Path) -> None:
    server = scripted_model(SCRIPT)
    config_for(server, "codex:\n  home: isolated\n")
    iso = spawn(ao, sample_repo, "[ao-task:iso] in my own home")
    config_for(server)  # back to the shared ~/.codex
    shared = spawn(ao, sample_repo, "[ao-task:shared] in the shared home")

    ao_home = isolated_home / ".agent-orchestrator"
    iso_home = ao_home / "sessions" / iso["session"] / "codex-home"
    assert list((iso_home / "sessions").rglob("rollout-*.jsonl"))  # the isolated session's rollout is there
    assert len(list((isolated_home / ".codex" / "sessions").rglob("rollout-*.jsonl"))) == 1

    served = read_ledger(tmp_path / "ledger-0.jsonl")
    by_thread: dict[str, list[dict[str, Any]]] = {}
    for e in served:
        by_thread.setdefault(e["thread_id"], []).append(e)
    status = {r["session"]: r for r in json.loads(ao("status", "--json").stdout)}
    iso_thread, shared_thread = status[iso["session"]]["thread_id"], status[shared["session"]]["thread_id"]
    assert set(by_thread) == {iso_thread, shared_thread}

    def check(report: dict[str, Any]) -> None:
        assert {k: report["totals"]["tokens"][k] for k in KEYS} == sums(served)
        keys = [r["key"] for r in report["rows"]]
        assert sorted(keys) == sorted([iso_thread, shared_thread])  # each thread once
        rows = {r["key"]: {k: r["tokens"][k] for k in KEYS} for r in report["rows"]}
        assert rows[iso_thread] == sums(by_thread[iso_thread])
        assert report["warnings"] == [] and report["unpriced_models"] == []

    first = cost_all(ao)
    check(first)

    # the same home reached again through a symlink in another session dir, and a record whose
    # recorded CODEX_HOME is gone: still each thread once, no crash
    ghost = ao_home / "sessions" / "ghost"
    ghost.mkdir()
    (ghost / "codex-home").symlink_to(iso_home, target_is_directory=True)
    check(cost_all(ao))

    # an unchanged history reads the same from the index; a deleted index is rebuilt identically
    assert cost_all(ao) == first
    (ao_home / "index.db").unlink()
    assert cost_all(ao) == first

    # the isolated home deleted outright (a pruned session): only the shared thread remains
    (ghost / "codex-home").unlink()
    shutil.rmtree(iso_home)
    after = cost_all(ao)
    assert [r["key"] for r in after["rows"]] == [shared_thread]
    assert {k: after["totals"]["tokens"][k] for k in KEYS} == sums(by_thread[shared_thread])


def test_codex_homes_dedupes_and_skips(isolated_home: Path, tmp_path: Path) -> None:
    """Unit view of the home list: default first, records' homes, session dirs, by real path, existing only."""
    from supervisor import paths
    from supervisor.sessions import query

    ao_home = paths.ao_home()
    one = ao_home / "sessions" / "s1" / "codex-home"
    one.mkdir(parents=True)
    (ao_home / "sessions" / "s2").mkdir()  # a session dir with no codex-home: not a home
    elsewhere = tmp_path / "elsewhere-home"
    elsewhere.mkdir()
    link = tmp_path / "link-to-default"
    link.symlink_to(paths.codex_home(), target_is_directory=True)
    records: list[Any] = [
        {"session": "a", "runtime": "headless", "launch": {"env": {"CODEX_HOME": str(elsewhere)}}},
        {"session": "b", "runtime": "headless", "launch": {"env": {"CODEX_HOME": str(link)}}},  # = default
        {"session": "c", "runtime": "headless", "launch": {"env": {"CODEX_HOME": str(tmp_path / "gone")}}},
        {"session": "d", "runtime": "headless", "launch": {"env": {"CODEX_HOME": "relative/home"}}},
        {"session": "e", "runtime": "headless", "launch": None},
        {"session": "f", "runtime": "headless", "launch": {"env": {"CODEX_HOME": str(one)}}},  # = s1's dir
    ]
    homes = query.codex_homes(records)
    assert homes == [paths.codex_home(), elsewhere, one]
    assert len({os.path.realpath(h) for h in homes}) == len(homes)
