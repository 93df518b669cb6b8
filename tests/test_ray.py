"""The Ray runtime on a real local cluster (a head with no CPUs, two workers with their own resources),
with the real codex and the scripted model: status, cost, the guard, kill and node loss work as locally.

Each worker keeps its files under its own node root, which this side never reads: files are compared only
through ao's mirrored copies (the rollout, exec.jsonl, the ledger).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from polling import wait_for

ray = pytest.importorskip("ray", reason="the Ray runtime's tests need the extra: pip install 'ao-supervisor[ray]'")

from supervisor.model.server import read_ledger  # noqa: E402

# One pytest worker runs all of these (`make test` passes --dist loadgroup), and the cluster goes when
# the last of them is done: kept for the whole session, its processes were children of that worker
# and loaded the machine under every later test there.
pytestmark = pytest.mark.xdist_group("ray")

KEYS = ("input", "cached_input", "output", "reasoning")
USAGE = "usage: {input: 1000, cached_input: 200, output: 50, reasoning: 10}"
SCRIPT = f"""
tasks:
  work:
    steps:
      - run: echo hello > hello.txt
        {USAGE}
      - say: done
        {USAGE}
  governed:
    steps:
      - run: rm -rf ./nothing
        {USAGE}
      - run: "echo deployed > deployed.txt  # deploy"
        {USAGE}
      - say: finished
        {USAGE}
  hang:
    steps:
      - run: "(setsid sleep 301 </dev/null >/dev/null 2>&1 &) ; sleep 302"
        {USAGE}
      - say: never gets here
  finish:
    steps:
      - run: echo resumed > resumed.txt
        {USAGE}
      - say: finished after the node died
        {USAGE}
"""
POLICY = """
policy:
  forbidden_commands:
    - pattern: 'rm\\s+-rf'
      reason: recursive deletes are not allowed here
  approval_required:
    - {pattern: "# deploy", reason: "deploys need a human"}
  approval_timeout_s: 60
"""


class RayCluster:
    def __init__(self, cluster: Any, node_root: Path, nodes: dict[str, str]) -> None:
        self.cluster = cluster
        self.nodes = nodes  # resource name -> node id
        self.node_root = node_root
        self.address = cluster.address

    def config(self) -> str:
        return (f"ray:\n  address: {self.address}\n  node_root: {self.node_root}\n"
                "  resources: {CPU: 1}\n")


def _ray_descendants() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if _is_ray(p)]


def _is_ray(proc: psutil.Process) -> bool:
    try:
        line = " ".join(proc.cmdline())
        return "ray" in line or proc.name().startswith("ray::") or proc.name() in ("raylet", "gcs_server")
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """Head (no CPUs) and two workers, `node_a` and `node_b`, all on 127.0.0.1; torn down with nothing left."""
    from off_tmp import new_dir
    from ray.cluster_utils import Cluster

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep the loopback address (see the issue)
    node_root = new_dir("ray-nodes-")  # codex refuses a CODEX_HOME under /tmp
    store_bytes = 600 << 20  # codex's files (~400 MB) pass through the object store once per node
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "object_store_memory": store_bytes,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}})
    # no `ray.init` in this process: a driver inside pytest hung connecting here; ao's processes connect
    nodes = {name: cluster.add_node(num_cpus=4, resources={name: 100}, node_ip_address="127.0.0.1",
                                    object_store_memory=store_bytes).node_id for name in ("node_a", "node_b")}
    cluster.wait_for_nodes()
    try:
        yield RayCluster(cluster, node_root, nodes)
    finally:
        started = _ray_descendants()
        cluster.shutdown()
        gone, alive = psutil.wait_procs(started, timeout=15)
        shutil.rmtree(node_root, ignore_errors=True)
        assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], \
            f"Ray processes outlived the cluster: {alive}"


@pytest.fixture
def ray_config(ray_cluster: RayCluster, scripted_model: Callable[..., Any], config_for: Callable[..., Path],
               codex: Path) -> Any:
    server = scripted_model(SCRIPT)
    config_for(server, ray_cluster.config() + POLICY + "max_concurrent: 8\n")
    return server


def _spawn(ao: Callable[..., Any], repo: Path, task: str, *extra: str) -> str:
    out = ao("spawn", "--runtime", "ray", "--repo", str(repo), "--json", *extra, f"[ao-task:{task}] go")
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["session"])


def _row(ao: Callable[..., Any], session: str) -> dict[str, Any]:
    out = ao("status", session, "--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)[0])


def _node(session: str) -> str | None:
    from supervisor import store
    from supervisor.launch.runtimes import ray as ray_runtime

    return ray_runtime.node_of(store.get(session))


def _session_procs(session: str) -> list[psutil.Process]:
    """Every process on this machine (every node of the test cluster) that carries AO_SESSION=SESSION."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("AO_SESSION") == session and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _runs(session: str, text: str) -> bool:
    for proc in _session_procs(session):
        try:
            if text in " ".join(proc.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def _end(sessions: list[str]) -> None:
    from supervisor.launch import processes

    for session in sessions:
        processes.end_all(lambda s=session: _session_procs(s), grace=0)


def test_three_agents_finish_on_both_nodes_with_exact_tokens(ray_cluster, ray_config, ao, sample_repo, tmp_path):
    sessions = [_spawn(ao, sample_repo, "work", "--resources", '{"node_a": 1}'),
                _spawn(ao, sample_repo, "work", "--resources", '{"node_b": 1}'),
                _spawn(ao, sample_repo, "work")]
    try:
        waited = ao("wait", *sessions, "--timeout", "150", timeout=200)
        rows = [_row(ao, s) for s in sessions]
        assert [r["status"] for r in rows] == ["done"] * 3, (rows, waited.stdout, waited.stderr)
        nodes = {s: _node(s) for s in sessions}
        assert nodes[sessions[0]] == ray_cluster.nodes["node_a"] and nodes[sessions[1]] == ray_cluster.nodes["node_b"]
        served = read_ledger(tmp_path / "ledger-0.jsonl")
        total = dict.fromkeys(KEYS, 0)
        for row in rows:
            assert row["node"] in (None, _node(row["session"]))  # the column comes with the store's `node`
            mine = [e for e in served if e["thread_id"] == row["thread_id"]]
            assert len(mine) == 2, row
            expected = {k: sum(e["usage"][k] for e in mine) for k in KEYS}
            assert {k: row["tokens"][k] for k in KEYS} == expected
            for k in KEYS:
                total[k] += expected[k]
            # the rollout ao reads is the head's mirror, and it holds the node's command output
            assert row["thread_id"] and Path(_rollout(row["session"])).is_file()
            assert "hello.txt" in Path(_rollout(row["session"])).read_text()
        cost = json.loads(ao("cost", "--json").stdout)
        assert {k: cost["totals"]["tokens"][k] for k in KEYS} == total
        receipts = json.loads(ao("receipts", sessions[0], "--json").stdout)["receipts"]
        assert [r["decision"] for r in receipts if r["kind"] == "guard_decision"] == ["allow"]
    finally:
        _end(sessions)


def _rollout(session: str) -> str:
    from supervisor import store

    return str(store.get(session)["rollout_path"])


def test_a_deny_and_an_approval_round_trip_through_the_head(ray_cluster, ray_config, ao, sample_repo):
    from supervisor.report import cmd_govern

    session = _spawn(ao, sample_repo, "governed")
    try:
        pending = wait_for(lambda: cmd_govern.pending(session), timeout=90, what="the approval request")
        assert pending[0]["reason"] == "deploys need a human"
        assert _row(ao, session)["attention"] == "approval"
        approved = ao("approve", pending[0]["id"])
        assert approved.returncode == 0, approved.stderr
        ao("wait", session, "--timeout", "90", timeout=120)
        row = _row(ao, session)
        assert row["status"] == "done", row
        receipts = json.loads(ao("receipts", session, "--json").stdout)["receipts"]
        decisions = [r["decision"] for r in receipts if r["kind"] == "guard_decision"]
        assert decisions[:2] == ["deny", "allow"], receipts
        rollout = Path(_rollout(session)).read_text()
        assert "recursive deletes are not allowed here" in rollout  # the denial reached codex on its node
    finally:
        _end([session])


# the runtime's own stop, from another process as `ao kill` calls it, without ao kill's machine-wide sweep by
# AO_SESSION (which on this one-machine cluster would hide a node that left processes behind)
STOP_ONLY = ("import sys; from supervisor import store; from supervisor.launch import runtimes; "
             "record = store.get(sys.argv[1]); runtimes.of(record).stop(record)")


@pytest.mark.parametrize("how", ["ao kill", "runtime stop alone"])
def test_kill_leaves_no_process_on_the_node(how, ray_cluster, ray_config, ao, sample_repo):
    import subprocess
    import sys

    session = _spawn(ao, sample_repo, "hang")
    try:
        wait_for(lambda: _runs(session, "sleep 301"), timeout=90, what="the agent's setsid sleep")
        assert _runs(session, "--unshare-pid")  # the node jailed codex as ao does locally
        if how == "ao kill":
            killed = ao("kill", session)
        else:
            killed = subprocess.run([sys.executable, "-c", STOP_ONLY, session], capture_output=True, text=True,
                                    timeout=60)
        assert killed.returncode == 0, killed.stderr
        wait_for(lambda: not _session_procs(session), timeout=15, what="every process of the session to end")
        ao("wait", session, "--timeout", "30", timeout=60)
        row = _row(ao, session)
        if how == "ao kill":
            assert row["status"] == "killed", row
        else:  # the runner saw codex die without being asked to stop it
            assert row["status"] == "failed" and "killed by signal" in row["error"], row
        time.sleep(1)
        assert not _session_procs(session)
    finally:
        _end([session])


def test_a_dead_node_makes_its_session_lost_and_resume_finishes_it_elsewhere(ray_cluster, ray_config, ao,
                                                                             sample_repo):
    cluster = ray_cluster.cluster
    doomed = cluster.add_node(num_cpus=2, resources={"spot": 1}, node_ip_address="127.0.0.1",
                              object_store_memory=600 << 20)
    cluster.wait_for_nodes()
    session = _spawn(ao, sample_repo, "hang", "--resources", '{"spot": 1}')
    try:
        wait_for(lambda: _runs(session, "sleep 301"), timeout=120, what="the agent to run on the doomed node")
        node = _node(session)
        assert node == doomed.node_id
        thread = _row(ao, session)["thread_id"]
        raylet = doomed.all_processes["raylet"][0].process
        raylet.send_signal(signal.SIGKILL)
        lost_at = time.monotonic()
        row = wait_for(lambda: (r := _row(ao, session))["status"] == "lost" and r, timeout=30,
                       what="the session to be lost")
        assert time.monotonic() - lost_at < 30
        assert node in row["error"], row
        assert row["attention"] in ("failed", "lost", None)
        cluster.remove_node(doomed, allow_graceful=False)
        _end([session])  # what the dead node's processes left on this shared machine
        spare = cluster.add_node(num_cpus=2, resources={"spot": 1}, node_ip_address="127.0.0.1",
                                 object_store_memory=600 << 20)
        cluster.wait_for_nodes()
        resumed = ao("resume", session, "[ao-task:finish] carry on")
        assert resumed.returncode == 0, resumed.stderr
        ao("wait", session, "--timeout", "120", timeout=150)
        row = _row(ao, session)
        assert row["status"] == "done", row
        assert row["thread_id"] == thread
        assert _node(session) == spare.node_id != node
        assert "resumed.txt" in Path(_rollout(session)).read_text()
    finally:
        _end([session])


def test_an_agent_that_cannot_start_on_its_node_fails_with_its_reason_and_is_not_placed_again(
        ray_cluster, ray_config, ao, sample_repo, tmp_path):
    """The world: a node root codex cannot use (under /tmp) makes the node agent's constructor raise. That is
    the agent's own error, not a lost node: one placement, `failed`, and the reason in words."""
    from supervisor import paths

    edited = ao("config", "set", "ray.node_root", "/tmp/ao-ray-nodes")  # the user's own edit stays trusted
    assert edited.returncode == 0, edited.stderr
    session = _spawn(ao, sample_repo, "work")
    ao("wait", session, "--timeout", "60", timeout=90)
    row = _row(ao, session)
    assert row["status"] == "failed" and row["attention"] == "failed", row
    assert "under /tmp" in row["error"] and "lost" not in row["error"], row
    log = (paths.session_dir(session) / "runner.log").read_text()
    assert "placing the agent again" not in log, log
