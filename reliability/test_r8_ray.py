"""R8: Ray worker nodes die at random moments under running agents (the real codex on the scripted model).

A local Ray cluster (head without CPUs, workers bound to 127.0.0.1 with a shared `w` resource) runs a batch of
agents; one worker's raylet gets SIGKILL 0-4 s into the batch, and a fresh worker joins. On every trial:
each session ends (`done`, or `lost` naming its node within 30 s of the kill; never stuck `working`),
no process of a lost session is left on the machine 10 s later, `ao status --json` and `ao cost --json`
work, and every lost session resumed with `ao resume` ends `done` on another node with the same thread id.
Unaffected sessions end `done` with exactly the tokens the model served them.

    R8_ROUNDS=3 (rounds of a batch and a kill), R8_AGENTS=4 (agents per round)
"""
from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from _harness import (
    Fault,
    describe,
    kill_pids,
    make_home,
    progress,
    run_ao,
    session_processes,
    start_model,
    write_config,
)

ray = pytest.importorskip("ray", reason="R8 needs the Ray extra: pip install 'ao-supervisor[ray]'")

ROUNDS = int(os.environ.get("R8_ROUNDS", "3"))
AGENTS = int(os.environ.get("R8_AGENTS", "4"))
LOST_WITHIN_S = 30.0
GRACE_S = 10.0
STORE = 600 << 20
SCRIPT = """
tasks:
  work:
    steps:
      - run: sleep 3 && echo one > one.txt
        usage: {input: 1000, cached_input: 100, output: 40, reasoning: 3}
      - say: worked
        usage: {input: 1200, cached_input: 300, output: 20, reasoning: 0}
  finish:
    steps:
      - say: finished after a node died
        usage: {input: 900, cached_input: 0, output: 10, reasoning: 0}
"""


def _rows(home: Any) -> dict[str, dict[str, Any]]:
    out = run_ao(home, "status", "--json")
    assert out.returncode == 0, out.stderr
    return {r["session"]: r for r in json.loads(out.stdout)}


def _node_of(home: Any, session: str) -> str | None:
    import sqlite3

    con = sqlite3.connect(f"file:{home.ao_home / 'ao.db'}?mode=ro", uri=True)
    try:
        launch = json.loads(con.execute("SELECT launch FROM sessions WHERE session = ?", (session,)).fetchone()[0])
    finally:
        con.close()
    return launch.get("node")


def test_r8_random_node_kills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    import tempfile

    from ray.cluster_utils import Cluster

    from supervisor.model.server import read_ledger

    fault = Fault.get("R8", "Ray worker node SIGKILL under running agents")
    rng = random.Random(f"{seed}:r8")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    cache = Path(__file__).resolve().parents[1] / ".cache"  # codex refuses a CODEX_HOME under /tmp
    cache.mkdir(exist_ok=True)
    node_root = Path(tempfile.mkdtemp(prefix="r8-ray-nodes-", dir=cache))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False, "object_store_memory": STORE,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}})
    workers = [cluster.add_node(num_cpus=AGENTS, resources={"w": 100}, node_ip_address="127.0.0.1",
                                object_store_memory=STORE) for _ in range(2)]
    cluster.wait_for_nodes()
    home = make_home(tmp_path, monkeypatch, with_codex=True)
    server = start_model(SCRIPT, tmp_path / "ledger.jsonl")
    write_config(home, server.base_url, f"ray:\n  address: {cluster.address}\n  node_root: {node_root}\n"
                 "  resources: {CPU: 1, w: 1}\nmax_concurrent: 64\n")
    from supervisor.sessions.demo import make_sample_repo

    repo = make_sample_repo(tmp_path / "repos")
    try:
        for number in range(ROUNDS):
            problems: list[str] = []
            spawned = [run_ao(home, "spawn", "--runtime", "ray", "--repo", str(repo), "--json",
                              f"[ao-task:work] agent {n}") for n in range(AGENTS)]
            sessions = [json.loads(s.stdout)["session"] for s in spawned if s.returncode == 0]
            problems += [f"spawn exited {s.returncode}: {s.stderr[-200:]}" for s in spawned if s.returncode != 0]
            time.sleep(rng.uniform(0, 4))
            victim = rng.choice(workers)
            victim.all_processes["raylet"][0].process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            progress(f"R8 round {number + 1}/{ROUNDS}: killed node {victim.node_id[:12]} under {len(sessions)} agents")
            ended: dict[str, dict[str, Any]] = {}
            while time.monotonic() - killed_at < 90 and len(ended) < len(sessions):
                rows = _rows(home)
                for s in sessions:
                    if s not in ended and rows[s]["status"] in ("done", "lost", "failed", "killed"):
                        ended[s] = {**rows[s], "after_kill_s": time.monotonic() - killed_at}
                time.sleep(0.5)
            for s in sessions:
                row = ended.get(s)
                if row is None:
                    problems.append(f"{s} never ended (still {_rows(home)[s]['status']})")
                elif row["status"] == "lost":
                    if row["after_kill_s"] > LOST_WITHIN_S:
                        problems.append(f"{s} lost only {row['after_kill_s']:.0f} s after the kill")
                    if victim.node_id not in (row["error"] or ""):
                        problems.append(f"{s} lost without naming its node: {row['error']}")
                elif row["status"] != "done":
                    problems.append(f"{s} ended {row['status']}: {row['error']}")
            cluster.remove_node(victim, allow_graceful=False)
            workers.remove(victim)
            workers.append(cluster.add_node(num_cpus=AGENTS, resources={"w": 100}, node_ip_address="127.0.0.1",
                                            object_store_memory=STORE))
            cluster.wait_for_nodes()
            lost = [s for s in sessions if ended.get(s, {}).get("status") == "lost"]
            time.sleep(GRACE_S)
            for s in lost:
                left = session_processes(s)
                if left:
                    problems.append(f"{s} left {describe(left)}")
                    kill_pids(left)
            cost = run_ao(home, "cost", "--json")
            if cost.returncode != 0:
                problems.append(f"ao cost exited {cost.returncode}: {cost.stderr[-200:]}")
            for s in lost:
                out = run_ao(home, "resume", s, "[ao-task:finish] carry on")
                if out.returncode != 0:
                    problems.append(f"resume {s} exited {out.returncode}: {out.stderr[-200:]}")
            if lost:
                run_ao(home, "wait", *lost, "--timeout", "120", timeout=150)
                rows = _rows(home)
                for s in lost:
                    if rows[s]["status"] != "done" or rows[s]["thread_id"] != ended[s]["thread_id"]:
                        problems.append(f"resumed {s}: {rows[s]['status']} thread {rows[s]['thread_id']} "
                                        f"(was {ended[s]['thread_id']}): {rows[s]['error']}")
                    if _node_of(home, s) == victim.node_id:
                        problems.append(f"resumed {s} on the dead node")
            served = read_ledger(tmp_path / "ledger.jsonl")
            rows = _rows(home)
            for s in sessions:
                if s in lost or rows[s]["status"] != "done":
                    continue
                mine = [e for e in served if e["thread_id"] == rows[s]["thread_id"]]
                expected = {k: sum(e["usage"][k] for e in mine) for k in ("input", "cached_input", "output",
                                                                          "reasoning")}
                if {k: rows[s]["tokens"][k] for k in expected} != expected:
                    problems.append(f"{s} tokens {rows[s]['tokens']} != served {expected}")
            fault.note(f"round {number + 1}: {len(lost)} lost, " +
                       ", ".join(f"{ended[s]['after_kill_s']:.1f}s" for s in lost))
            fault.trial(problems, f"round {number + 1}")
    finally:
        for s in _rows(home):
            kill_pids(session_processes(s))
        cluster.shutdown()
        server.shutdown()
        import shutil

        shutil.rmtree(node_root, ignore_errors=True)
    fault.assert_passed()
