"""50 real codex agents at once on the scripted model (P6): wall time, outcome, supervisor RSS, exact tokens.

Spawns the agents with `ao spawn --headless --repo R --json` (max_concurrent: 50, approval: skip), waits with
`ao wait`, and samples every 50 ms the memory of each session's supervisor process (`python -m
supervisor.sessions.runner SESSION`, the record's `pid`): current RSS and the kernel's peak (VmHWM). The model
holds its replies until the last spawn returns, so all agents really run at once. Then checks that every
session is `done` and that the tokens `ao status --json` reports equal what the model served (its ledger).

    .venv/bin/python bench/fleet_bench.py [--agents 50] [--spawn-workers 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import ao_argv, ao_env, provisioned_codex, run_ao, scratch, stop_model, write_config  # noqa: E402

RSS_LIMIT = 25 * 2**20
TOKEN_KEYS = ("input", "cached_input", "output", "reasoning")
SCRIPT = """tasks:
  fleet:
    steps:
      - run: git checkout -b feature/fleet-work
        usage: {input: 5200, cached_input: 1024, output: 180, reasoning: 64}
      - run: ls -la && git status --short && git log --oneline -1
        usage: {input: 6100, cached_input: 4096, output: 95, reasoning: 32}
      - say: Done; the branch is ready for review.
        usage: {input: 6900, cached_input: 6144, output: 240, reasoning: 0}
"""


def start_gated_model(script_text: str, ledger: Path) -> Any:
    """The scripted model, holding every reply until `server.gate` is set, so no agent finishes before the
    last one is spawned and all of them really run at once."""
    from supervisor.model import script as script_mod
    from supervisor.model.server import ScriptedModel, _Handler

    class GatedHandler(_Handler):
        def _stream(self, *args: Any) -> None:
            self.server.gate.wait(900)  # type: ignore[attr-defined]
            super()._stream(*args)

    server = ScriptedModel(script_mod.load_text(script_text, "fleet-script.yaml"), ledger=ledger)
    server.RequestHandlerClass = GatedHandler
    server.gate = threading.Event()  # type: ignore[attr-defined]
    server.start_in_thread()
    return server


class RunnerSampler(threading.Thread):
    """Samples every session's runner process until stopped. Reads the kernel's high-water mark (VmHWM) as
    well as the current RSS, so a peak between two samples is still seen if the runner lives to the next."""

    def __init__(self, db: Path, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.db, self.interval = db, interval
        self.peak: dict[str, int] = {}
        self.latest: dict[str, int] = {}
        self.samples = 0
        self.most_alive = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._checked: dict[int, bool] = {}

    def _is_runner(self, pid: int) -> bool:
        if pid not in self._checked:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return False
            self._checked[pid] = b"supervisor.sessions.runner" in cmdline
        return self._checked[pid]

    @staticmethod
    def _memory(pid: int) -> tuple[int, int] | None:
        """(current RSS, peak RSS) in bytes, or None once the process is gone or a zombie."""
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if "VmHWM" not in fields or "VmRSS" not in fields:
            return None
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    def sample(self) -> int:
        """One pass over every session's runner; returns how many are alive."""
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
            rows = con.execute("SELECT session, pid FROM sessions WHERE pid IS NOT NULL").fetchall()
            con.close()
        except sqlite3.Error:
            rows = []
        alive = 0
        for session, pid in rows:
            found = self._memory(pid) if self._is_runner(pid) else None
            if found is None:
                continue
            alive += 1
            self.latest[session] = found[0]
            self.peak[session] = max(self.peak.get(session, 0), *found)
        self.samples += 1
        self.most_alive = max(self.most_alive, alive)
        return alive

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.sample()
            self.stop.wait(self.interval)


class RayCluster:
    """A local Ray cluster for P6 on Ray: a head without CPUs and two workers on 127.0.0.1, each node's files
    under its own root outside /tmp (codex refuses a CODEX_HOME there)."""

    def __init__(self, agents: int) -> None:
        from ray.cluster_utils import Cluster

        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        cache = ROOT / ".cache"
        cache.mkdir(exist_ok=True)
        self.node_root = Path(tempfile.mkdtemp(prefix="bench-ray-nodes-", dir=cache))
        store = 600 << 20
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False, "object_store_memory": store})
        per_node = (agents + 1) // 2
        for _ in range(2):  # logical CPUs: one per agent; Ray does not enforce them
            self.cluster.add_node(num_cpus=per_node, node_ip_address="127.0.0.1", object_store_memory=store)
        self.cluster.wait_for_nodes()

    def config(self) -> str:
        return (f"ray:\n  address: {self.cluster.address}\n  node_root: {self.node_root}\n"
                "  resources: {CPU: 1}\n")

    def close(self) -> None:
        import shutil

        self.cluster.shutdown()
        shutil.rmtree(self.node_root, ignore_errors=True)


def measure(work: Path, agents: int = 50, spawn_workers: int = 1, timeout: float = 600, gate: bool = True,
            log: Any = print, on_ray: bool = False) -> dict[str, Any]:
    from supervisor.model.server import read_ledger
    from supervisor.sessions.demo import make_sample_repo
    provisioned_codex()
    ledger = work / "model-ledger.jsonl"
    server = start_gated_model(SCRIPT, ledger)
    if not gate:
        server.gate.set()
    cluster = RayCluster(agents) if on_ray else None
    runtime = ["--runtime", "ray"] if on_ray else ["--headless"]
    try:
        config = write_config(work / "agent-orchestrator.yaml", server.base_url,
                              f"max_concurrent: {agents}\n" + (cluster.config() if cluster else ""))
        env = ao_env(work, config)
        repo = make_sample_repo(work / "repos")
        run_ao(env, "status", cwd=work)  # creates the store, so the sampler can open it from the start
        sampler = RunnerSampler(Path(env["AO_HOME"]) / "ao.db")
        sampler.start()
        log(f"P6: spawning {agents} agents ...")
        start = time.perf_counter()

        def spawn(n: int) -> str:
            out = run_ao(env, "spawn", *runtime, "--repo", str(repo), "--json",
                         f"[ao-task:fleet] agent {n}: make the branch", cwd=work)
            return json.loads(out)["session"]

        with ThreadPoolExecutor(max_workers=max(1, spawn_workers)) as pool:
            sessions = list(pool.map(spawn, range(agents)))
        spawned = time.perf_counter()
        with sampler.lock:
            alive_at_release = sampler.sample()
        rss_at_release = [v for k, v in sampler.latest.items() if k in sessions]  # all waiting on the model
        server.gate.set()
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(ao_argv("wait", *sessions, "--timeout", str(timeout)), env=env, cwd=work,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            done = time.perf_counter()
            out.seek(0)
            wait_out = out.read().decode(errors="replace")
        sampler.stop.set()
        sampler.join()
        rows = {r["session"]: r for r in json.loads(run_ao(env, "status", "--json", cwd=work))}
    finally:
        stop_model(server)
        if cluster:
            cluster.close()
    served = read_ledger(ledger)
    model_tokens = {k: sum(e["usage"][k] for e in served) for k in TOKEN_KEYS}
    ours = {k: sum(rows[s]["tokens"][k] for s in sessions) for k in TOKEN_KEYS}
    peaks = [sampler.peak[s] for s in sessions if s in sampler.peak]
    statuses = Counter(rows[s]["status"] for s in sessions)
    errors = [f"{s}: {rows[s].get('status')}" for s in sessions if rows[s]["status"] != "done"]
    return {
        "runtime": "ray" if on_ray else "headless",
        "head_rss_sum_at_release": sum(rss_at_release) if rss_at_release else 0,
        "agents": agents, "spawn_workers": spawn_workers, "gate": gate, "alive_at_release": alive_at_release, "wall_s": done - start, "spawn_s": spawned - start,
        "wait_rc": os.waitstatus_to_exitcode(status), "wait_cpu_s": usage.ru_utime + usage.ru_stime,
        "wait_tail": wait_out[-600:] if os.waitstatus_to_exitcode(status) else "",
        "statuses": dict(statuses), "all_done": statuses.get("done", 0) == agents, "not_done": errors[:5],
        "rss_sampled": len(peaks), "rss_max": max(peaks, default=0),
        "rss_median": statistics.median(peaks) if peaks else 0,
        "rss_running_median": statistics.median(rss_at_release) if gate and rss_at_release else None, "samples": sampler.samples,
        "most_alive": sampler.most_alive, "model_tokens": model_tokens, "ao_tokens": ours,
        "tokens_equal": ours == model_tokens and len(served) > 0, "responses": len(served),
    }


def ok(r: dict[str, Any]) -> bool:
    # a Ray runner is a Ray driver (the ray package and its core worker): the local RSS target does not apply
    within = r["rss_max"] <= RSS_LIMIT or r.get("runtime") == "ray"
    return r["all_done"] and r["rss_sampled"] == r["agents"] and within and r["tokens_equal"]


def print_report(r: dict[str, Any]) -> None:
    print(f"\n{r['agents']} agents on the scripted model, real codex, runtime {r.get('runtime', 'headless')}, "
          f"spawn workers {r['spawn_workers']}"
          + ("; the model answers once all are spawned" if r["gate"] else ""))
    print(f"  wall time, first spawn to all done  {r['wall_s']:7.1f} s   (spawning took {r['spawn_s']:.1f} s, "
          f"the rest {r['wall_s'] - r['spawn_s']:.1f} s)")
    print(f"  statuses                            {r['statuses']}")
    print(f"  runners alive at once (max)         {r['most_alive']}"
          + (f" ({r['alive_at_release']} when the model started answering)" if r["gate"] else ""))
    print(f"  runner peak RSS max / median        {r['rss_max'] / 2**20:.1f} / {r['rss_median'] / 2**20:.1f} MB "
          f"({r['rss_sampled']} runners, {r['samples']} samples; target <= {RSS_LIMIT / 2**20:.0f} MB)")
    if r["rss_running_median"]:
        print(f"  runner RSS while its agent runs     {r['rss_running_median'] / 2**20:.1f} MB median "
              "(sampled while all agents waited on the model)")
    if r.get("head_rss_sum_at_release"):
        print(f"  head RSS, all runners together      {r['head_rss_sum_at_release'] / 2**20:.0f} MB "
              "(while all agents waited on the model)")
    print(f"  `ao wait` CPU time                  {r['wait_cpu_s']:7.1f} s")
    print(f"  tokens: model served {json.dumps(r['model_tokens'])} in {r['responses']} responses")
    print(f"          ao status    {json.dumps(r['ao_tokens'])}")
    if r["wait_tail"]:
        print(f"  ao wait exited {r['wait_rc']}: {r['wait_tail']}")
    rss = "runner RSS within target" if r.get("runtime") != "ray" else "runner RSS (no target on Ray)"
    print(("PASS" if ok(r) else "FAIL") + f": all done, {rss}, tokens exact")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--spawn-workers", type=int, default=1, help="`ao spawn` calls at once (default 1)")
    parser.add_argument("--no-gate", action="store_true",
                        help="let the model answer at once (early agents finish while later ones spawn)")
    parser.add_argument("--keep", action="store_true", help="keep the temp homes")
    parser.add_argument("--ray", action="store_true",
                        help="P6 on Ray: the agents run on a local 2-worker Ray cluster (`--runtime ray`)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    with scratch("ao-fleet-bench-", args.keep) as work:
        result = measure(work, args.agents, args.spawn_workers, gate=not args.no_gate, on_ray=args.ray)
    print_report(result)
    return 0 if ok(result) else 1


if __name__ == "__main__":
    sys.exit(main())
