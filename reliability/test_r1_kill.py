"""R1: kill -9 the per-session supervisor (`python -m supervisor.sessions.runner`) or the codex child at a
random moment, with the real codex on the scripted model, many sessions at once.

After each kill: `ao status --json` is valid and lists the session in an ended state (never stuck
`working`), the store passes `PRAGMA integrity_check`, the rollout parses and its tokens are what
`ao status` shows, the signed ledger still verifies, nothing of the session keeps running, and
`ao cost --json` works. A killed codex child must be recorded as failed by its own supervisor.
Sessions of the same batch that nobody killed end `done` with exactly the tokens the model served.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from _harness import (
    Fault,
    describe,
    four,
    kill_pids,
    ledger_tokens,
    make_home,
    parse_rollout,
    progress,
    rollouts_for_workspace,
    run_ao,
    session_processes,
    start_model,
    write_config,
)

KILL_TRIALS = int(os.environ.get("R1_TRIALS", "200"))
KILLS_PER_BATCH = 8
CONTROLS_PER_BATCH = 2
MAX_DELAY_S = 2.0
GRACE_S = 10.0   # how long a killed session's processes may take to go away
ORPHAN_TOLERANCE_S = 3.0  # R1b: once ao status says a session ended, its processes must be gone this soon
ENDED = {"failed", "killed", "done", "blocked", "pr_open", "merged", "closed"}


def make_script(rng: Any) -> str:
    def usage() -> str:
        i = rng.randint(500, 5000)
        return (f"{{input: {i}, cached_input: {rng.randint(0, i)}, output: {rng.randint(5, 400)}, "
                f"reasoning: {rng.randint(0, 5)}}}")
    return f"""
default_usage: {usage()}
tasks:
  one:
    steps:
      - say: nothing to do
        usage: {usage()}
  nap:
    steps:
      - run: sleep 0.3
        usage: {usage()}
      - say: rested
        usage: {usage()}
  work:
    steps:
      - run: echo one > one.txt
        usage: {usage()}
      - run: sleep 0.3
        usage: {usage()}
      - say: worked
        usage: {usage()}
  naps:
    steps:
      - run: sleep 0.3
        usage: {usage()}
      - run: sleep 0.3 && echo two > two.txt
        usage: {usage()}
      - say: done napping
        usage: {usage()}
  long:
    steps:
      - run: sleep 30
        usage: {usage()}
      - say: woke up
        usage: {usage()}
"""


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # exited, or a zombie, between listing and reading
        return ""


def guarded(target: Any, trial: dict[str, Any], *args: Any) -> None:
    """Run one trial in a thread; an exception in the harness is a failed trial, never a silent pass."""
    try:
        target(*args, trial)
    except Exception as exc:
        trial["problems"].append(f"trial raised {type(exc).__name__}: {exc}")


def _tree(pid: int | None) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)  # type: ignore[arg-type]
        return [root, *root.children(recursive=True)]
    except (psutil.Error, ValueError, TypeError):
        return []


class Fleet:
    """One ao installation, one scripted model and one repository shared by every trial."""

    def __init__(self, tmp: Path, monkeypatch: Any, rng: Any) -> None:
        from supervisor.sessions.demo import make_sample_repo

        self.home = make_home(tmp, monkeypatch, with_codex=True)
        self.ledger_path = tmp / "model-ledger.jsonl"
        self.server = start_model(make_script(rng), self.ledger_path)
        write_config(self.home, self.server.base_url, "max_concurrent: 64\n")
        self.repo = make_sample_repo(tmp / "repos")

    def spawn(self, task: str, label: str) -> tuple[dict[str, Any] | None, str]:
        """`ao spawn`, many at once into one repository; each attempt is a trial of R1s. A failed spawn
        is retried (twice) so the kill trial still happens."""
        spawns = Fault.get("R1s", "concurrent ao spawn into one repo")
        error = ""
        for attempt in range(3):
            out = run_ao(self.home, "spawn", "--headless", "--repo", str(self.repo), "--json",
                         f"[ao-task:{task}] {label}")
            if out.returncode == 0:
                spawns.trial([], label)
                return json.loads(out.stdout), ""
            error = f"ao spawn exited {out.returncode}: {' '.join(out.stderr.split())[-300:]}"
            spawns.trial([error], f"{label}, attempt {attempt + 1}")
        return None, error

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_trial(fleet: Fleet, trial: dict[str, Any]) -> None:
    """Spawn, wait the drawn delay, kill the drawn process, wait for the session's processes to end."""
    from supervisor import store

    spawned, error = fleet.spawn(trial["task"], trial["label"])
    if spawned is None:
        trial["problems"].append(error)
        return
    session, workspace = spawned["session"], spawned["workspace"]
    trial.update(session=session, workspace=workspace)
    if trial["kind"] == "none":
        return
    time.sleep(trial["delay"])
    record = store.get(session)
    runner_pid = record["pid"]
    if trial["kind"] == "runner":
        tree = _tree(runner_pid)
        if _alive(runner_pid):
            trial["phase"] = f"{record['status']}/{'codex running' if _alive(record.get('codex_pid')) else 'no codex'}"
            os.kill(runner_pid, signal.SIGKILL)
        else:
            trial["phase"] = "after the end"
    else:
        deadline = time.monotonic() + 20
        while not record.get("codex_pid") and record.get("ended_at") is None and time.monotonic() < deadline:
            time.sleep(0.05)
            record = store.get(session)
        codex_pid = record.get("codex_pid")
        tree = _tree(runner_pid)
        if _alive(codex_pid):
            trial["phase"] = "codex running"
            os.kill(codex_pid, signal.SIGKILL)
        else:
            trial["phase"] = "after the end"
    _, alive = psutil.wait_procs(tree, timeout=GRACE_S)
    leftover = session_processes(session, workspace)
    if leftover:
        trial["problems"].append(f"still running {GRACE_S:g}s after the kill: {describe(leftover)}")
        kill_pids(leftover)
    if trial["kind"] == "codex" and trial["phase"] == "codex running":
        record = store.get(session)
        if record["status"] == "done" and record["exit_code"] == 0:
            trial["phase"] = "after the end"  # codex had already exited; the kill hit a zombie
        elif record.get("ended_at") is None or record["status"] != "failed":
            trial["problems"].append(f"the runner did not record the killed codex: status {record['status']}, "
                                     f"ended_at {record.get('ended_at')}, exit_code {record.get('exit_code')}")
        elif record.get("exit_code") != -signal.SIGKILL:
            trial["problems"].append(f"recorded exit_code {record.get('exit_code')}, expected -9")


def check_batch(fleet: Fleet, trials: list[dict[str, Any]]) -> list[str]:
    """Checks on the whole fleet after a batch; returns problems that concern every trial of it."""
    from supervisor import paths
    from supervisor.govern import ledger
    from supervisor.model.server import read_ledger

    batch_problems: list[str] = []
    controls = [t["session"] for t in trials if t["kind"] == "none" and t.get("session")]
    if controls:
        waited = run_ao(fleet.home, "wait", *controls, "--timeout", "180", timeout=240)
        if waited.returncode != 0:
            batch_problems.append(f"ao wait on the unkilled sessions exited {waited.returncode}: "
                                  f"{waited.stderr.strip()[-200:]}")
    status = run_ao(fleet.home, "status", "--json")
    try:
        rows = {r["session"]: r for r in json.loads(status.stdout)}
    except ValueError:
        rows = {}
        batch_problems.append(f"ao status --json is not JSON (exit {status.returncode}): {status.stderr[-300:]}")
    cost = run_ao(fleet.home, "cost", "--json")
    try:
        report = json.loads(cost.stdout)
        want = {k: sum(four(r["tokens"])[k] for r in rows.values()) for k in four({})}
        if rows and four(report["totals"]["tokens"]) != want:
            batch_problems.append(f"ao cost totals {four(report['totals']['tokens'])} != sum of ao status {want}")
    except (ValueError, KeyError):
        batch_problems.append(f"ao cost --json failed (exit {cost.returncode}): {cost.stderr[-300:]}")
    con = sqlite3.connect(f"file:{paths.db_path()}?mode=ro", uri=True, timeout=30)
    try:
        verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    if verdict != "ok":
        batch_problems.append(f"ao.db integrity_check: {verdict}")
    served = read_ledger(fleet.ledger_path)
    public_key = ledger.public_key_raw()
    for t in trials:
        session = t.get("session")
        if not session:
            continue
        row = rows.get(session)
        if row is None:
            t["problems"].append("session missing from ao status --json")
            continue
        if row["status"] not in ENDED:
            t["problems"].append(f"status {row['status']} after its processes are gone")
        if row["activity"] != "exited":
            t["problems"].append(f"activity {row['activity']}, expected exited")
        rollout_tokens = {k: 0 for k in four({})}
        for rollout in rollouts_for_workspace(fleet.home.codex_home, t["workspace"]):
            tokens, problems = parse_rollout(rollout)
            t["problems"].extend(problems)
            for k in rollout_tokens:
                rollout_tokens[k] += tokens[k]
        if four(row["tokens"]) != rollout_tokens:
            t["problems"].append(f"ao status tokens {four(row['tokens'])} but the rollout holds {rollout_tokens} "
                                 f"(thread_id {row['thread_id']}, rollout_path {row['rollout_path']})")
        ok, bad, reason = ledger.check_lines(ledger.raw_lines(paths.session_dir(session)), public_key)
        if not ok:
            t["problems"].append(f"ledger line {bad}: {reason}")
        if t["kind"] == "none":
            if row["status"] != "done":
                t["problems"].append(f"unkilled session ended {row['status']}: {row.get('error') or ''}")
            mine = [e for e in served if e.get("thread_id") and e["thread_id"] == row["thread_id"]]
            if not mine or four(row["tokens"]) != ledger_tokens(mine):
                t["problems"].append(f"tokens {four(row['tokens'])} but the model served {ledger_tokens(mine)} "
                                     f"in {len(mine)} responses")
    return batch_problems


def test_r1_kill_runner_or_codex_at_random_moments(tmp_path: Path, monkeypatch: Any, rng: Any) -> None:
    fault = Fault.get("R1", "kill -9 runner / codex child, random moment")
    fleet = Fleet(tmp_path, monkeypatch, rng)
    kinds = ["runner", "codex"] * (KILL_TRIALS // 2) + ["runner"] * (KILL_TRIALS % 2)
    rng.shuffle(kinds)
    phases: dict[str, int] = {}
    started = time.monotonic()
    try:
        number = 0
        while kinds:
            batch_kinds, kinds = kinds[:KILLS_PER_BATCH], kinds[KILLS_PER_BATCH:]
            trials = []
            for kind in batch_kinds + ["none"] * CONTROLS_PER_BATCH:
                number += 1
                trials.append({"n": number, "kind": kind, "task": rng.choice(["one", "nap", "work", "naps"]),
                               "delay": round(rng.uniform(0, MAX_DELAY_S), 3), "problems": [],
                               "label": f"r1 trial {number}", "phase": "not killed"})
            threads = [threading.Thread(target=guarded, args=(run_trial, t, fleet)) for t in trials]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            batch_problems = check_batch(fleet, trials)
            progress(f"R1 batch {number // (KILLS_PER_BATCH + CONTROLS_PER_BATCH)}: {fault.trials + len(trials)} "
                     f"trials, {time.monotonic() - started:.0f}s")
            for t in trials:
                phases[f"{t['kind']}: {t['phase']}"] = phases.get(f"{t['kind']}: {t['phase']}", 0) + 1
                label = (f"trial {t['n']} kill {t['kind']} at +{t['delay']}s ({t['phase']}) task {t['task']} "
                         f"session {t.get('session')}")
                if t["kind"] == "none":
                    # controls are part of the property ("the others finish done, tokens exact")
                    fault.trial(t["problems"] + batch_problems, label.replace("kill none", "control (not killed)"))
                else:
                    fault.trial(t["problems"] + batch_problems, label)
    finally:
        fleet.close()
        from supervisor import store
        leftovers = [p for r in store.all_sessions() for p in session_processes(r["session"], r["workspace"])]
        kill_pids(leftovers)
    fault.note(f"R1 kill moments: {dict(sorted(phases.items()))}; {time.monotonic() - started:.0f}s")
    fault.assert_passed()


def test_r1b_runner_killed_during_a_long_command(tmp_path: Path, monkeypatch: Any, rng: Any) -> None:
    """The same kills while the agent runs a 30 s command: when `ao status` says the session ended,
    its codex and the command must be gone too (or go within the grace period)."""
    from supervisor import store

    fault = Fault.get("R1b", "kill -9 runner / codex during a 30 s command")
    fleet = Fleet(tmp_path, monkeypatch, rng)
    trials = [{"n": n, "kind": kind, "problems": []} for n, kind in enumerate(["runner", "codex"] * 2, 1)]

    def one(trial: dict[str, Any]) -> None:
        spawned, error = fleet.spawn("long", f"r1b trial {trial['n']}")
        if spawned is None:
            trial["problems"].append(error)
            return
        session, workspace = spawned["session"], spawned["workspace"]
        trial["session"] = session
        deadline = time.monotonic() + 60
        sleeper = None
        while sleeper is None and time.monotonic() < deadline:
            codex_pid = store.get(session).get("codex_pid")
            sleeper = next((p for p in _tree(codex_pid)[1:] if "sleep 30" in _cmdline(p)), None) \
                if codex_pid else None
            time.sleep(0.1)
        if sleeper is None:
            trial["problems"].append("the agent's `sleep 30` never started")
            return
        time.sleep(1.0)  # let codex report the command as started: it has nothing more to print for 30 s
        record = store.get(session)
        victim = record["pid"] if trial["kind"] == "runner" else record["codex_pid"]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(victim) and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a killed codex: the runner records the end on its own
            row = json.loads(run_ao(fleet.home, "status", session, "--json").stdout)[0]
            if row["status"] in ENDED:
                break
            time.sleep(0.5)
        if row["status"] not in ENDED:
            trial["problems"].append(f"ao status still says {row['status']} 10 s after the kill")
            return
        ended_at = time.monotonic()
        leftover = session_processes(session, workspace)
        while leftover and time.monotonic() - ended_at < ORPHAN_TOLERANCE_S:
            time.sleep(0.1)
            leftover = session_processes(session, workspace)
        if leftover:
            # the user's remedy while they still run: does `ao kill` end them?
            again = run_ao(fleet.home, "kill", session)
            first_seen = describe(leftover)
            while leftover and time.monotonic() - ended_at < 40:
                time.sleep(0.25)
                leftover = session_processes(session, workspace)
            trial["problems"].append(
                f"ao status said {row['status']}/{row.get('activity')} while {first_seen} kept running "
                f"unsupervised ({time.monotonic() - ended_at:.1f}s in all); `ao kill` meanwhile -> exit "
                f"{again.returncode}: {(again.stderr or again.stdout).strip()}")
        kill_pids(session_processes(session, workspace))

    try:
        threads = [threading.Thread(target=guarded, args=(one, t)) for t in trials]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        fleet.close()
        leftovers = [p for r in store.all_sessions() for p in session_processes(r["session"], r["workspace"])]
        kill_pids(leftovers)
    for t in trials:
        fault.trial(t["problems"], f"trial {t['n']} kill {t['kind']} during `sleep 30`, session {t.get('session')}")
    fault.assert_passed()
