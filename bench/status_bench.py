"""Time `ao status --json` with 100 sessions in the store and 10,000 rollouts under CODEX_HOME (P4).

One real session is run first (`ao spawn` of the real codex against the scripted model), so the seed
record, its session dir and its rollout are real. The seed is then copied: 10,000 rollouts with fresh
thread, call and response ids spread over 100 date folders, and 100 session records inserted through
`supervisor.store.insert` (ended ones with `rollout_path`, PR ones with wrapper events, a few live ones
whose supervisor pid is dead). The first `ao status --json` is reported as cold (it builds the usage
index and marks the dead sessions failed); the figure is the median of the runs after it. Target: at
most 3x the median `python -S -c pass` timed in the same run, interleaved (`ao --version` is info).

    .venv/bin/python bench/status_bench.py [--sessions 100] [--rollouts 10000] [--runs 10] [--profile]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pstats
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import (  # noqa: E402
    STAMP,
    RolloutTemplate,
    ao_argv,
    ao_env,
    new_id,
    provisioned_codex,
    run_ao,
    scratch,
    start_model,
    stop_model,
    timed,
    write_config,
)

# P4: the median `ao status --json` over the median `python -S -c pass` of the same run, so the target
# holds on a slow or busy machine as on a fast one
LIMIT_RATIO = 3.0


def ratio(r: dict[str, Any]) -> float:
    return float(r["median_ms"]) / float(r["python_ms"])


def passes(r: dict[str, Any]) -> bool:
    return ratio(r) <= LIMIT_RATIO and not r["problems"]
DAYS = 100
SEED_SCRIPT = """tasks:
  work:
    steps:
      - run: git checkout -b feature/seed
        usage: {input: 5200, cached_input: 1024, output: 180, reasoning: 64}
      - run: ls -la && git status --short
        usage: {input: 6100, cached_input: 4096, output: 95, reasoning: 32}
      - say: Done; the branch is ready.
        usage: {input: 6900, cached_input: 6144, output: 240, reasoning: 0}
"""
TOKEN_KEYS = ("input", "cached_input", "output", "reasoning")


def make_seed(work: Path) -> dict[str, Any]:
    """One real headless session: its store record, session dir and rollout."""
    from supervisor.model.server import read_ledger
    from supervisor.sessions.demo import make_sample_repo
    server = start_model(SEED_SCRIPT, work / "seed-ledger.jsonl")
    try:
        config = write_config(work / "seed-config.yaml", server.base_url)
        env = ao_env(work / "seed", config)
        repo = make_sample_repo(work / "seed-repos")
        session = json.loads(run_ao(env, "spawn", "--headless", "--repo", str(repo), "--json",
                                    "[ao-task:work] make the branch", cwd=work))["session"]
        run_ao(env, "wait", session, "--timeout", "300", cwd=work)
    finally:
        stop_model(server)
    con = sqlite3.connect(Path(env["AO_HOME"]) / "ao.db")
    con.row_factory = sqlite3.Row
    record = dict(con.execute("SELECT * FROM sessions WHERE session = ?", (session,)).fetchone())
    con.close()
    if record["status"] != "done" or not record["rollout_path"]:
        raise SystemExit(f"the seed session did not finish cleanly: {record['status']} {record.get('error')}")
    served = read_ledger(work / "seed-ledger.jsonl")
    return {"record": record, "session_dir": Path(env["AO_HOME"]) / "sessions" / session,
            "rollout": Path(record["rollout_path"]), "tokens": {k: sum(e["usage"][k] for e in served) for k in TOKEN_KEYS}}


def day_of(index: int, today: dt.date) -> dt.date:
    return today - dt.timedelta(days=index % DAYS)


def write_rollouts(seed: dict[str, Any], codex_home: Path, count: int) -> list[tuple[str, Path, float]]:
    """`count` copies of the seed rollout with fresh ids; copy i sits in the folder of the i-th day back."""
    template = RolloutTemplate(seed["rollout"].name, seed["rollout"].read_bytes())
    today = dt.date.today()
    made = []
    for i in range(count):
        day = day_of(i, today)
        started = dt.datetime.combine(day, dt.time(9 + i % 10, (i * 7) % 60, i % 60)).timestamp()
        folder = codex_home / "sessions" / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        folder.mkdir(parents=True, exist_ok=True)
        fresh: dict[bytes, bytes] = {}
        name, body = template.render(fresh)
        stamp = dt.datetime.fromtimestamp(started).strftime("rollout-%Y-%m-%dT%H-%M-%S").encode()
        name = STAMP.sub(stamp, name.encode(), count=1).decode()
        (folder / name).write_bytes(body)
        made.append((new_id(fresh, template.thread).decode(), folder / name, started))
    return made


def dead_pids(count: int) -> list[int]:
    """Pids of processes that have exited and been reaped, like a supervisor that died."""
    pids = []
    for _ in range(count):
        proc = subprocess.Popen(["true"])
        proc.wait()
        pids.append(proc.pid)
    return pids


def kind_of(i: int) -> str:
    """The mix: 4 working and 2 queued (dead supervisors), PR and merged ones, failures, kills, the rest done."""
    if i < 4:
        return "working"
    if i < 6:
        return "queued"
    return {0: "pr_open", 3: "merged", 5: "failed", 7: "pr_open"}.get(i % 10, "killed" if i % 23 == 0 else "done")


def insert_sessions(seed: dict[str, Any], ao_home: Path, rollouts: list[tuple[str, Path, float]], count: int) -> None:
    """`count` records through `supervisor.store.insert`, each with a session dir copied from the seed's."""
    saved = os.environ.get("AO_HOME")
    os.environ["AO_HOME"] = str(ao_home)
    try:
        from supervisor import store
        base = seed["record"]
        pids = iter(dead_pids(2 * count))
        old_session, old_thread, old_rollout = base["session"], base["thread_id"], base["rollout_path"]
        for i in range(count):
            thread, rollout, started = rollouts[i]
            kind = kind_of(i)
            session = f"ao-{dt.datetime.fromtimestamp(started):%m%d}-{i:06x}"
            ended = kind not in ("working", "queued")
            swap = {old_session: session, old_thread: thread, old_rollout: str(rollout)}

            def rewrite(text: str, swap: dict[str, str] = swap) -> str:
                for old, new in swap.items():
                    text = text.replace(old, new)
                return text

            record = {k: v for k, v in base.items() if k in store.COLUMNS}
            record.update({
                "session": session, "name": f"task-{i}" if i % 3 == 0 else None,
                "project": "bench" if i % 2 else None, "issue": str(100 + i) if i % 4 == 0 else None,
                "workspace": str(ao_home / "worktrees" / session), "status": kind,
                "activity": "exited" if ended else ("active" if kind == "working" else None),
                "branch": "feature/seed" if kind != "queued" else f"ao/{session}",
                "thread_id": thread if kind != "queued" else None, "pid": next(pids),
                "codex_pid": None if ended or kind == "queued" else next(pids),
                "exit_code": (1 if kind == "failed" else -15 if kind == "killed" else 0) if ended else None,
                "error": "codex exited 1" if kind == "failed" else None,
                "rollout_path": str(rollout) if ended else None,
                "input": 0 if kind == "queued" else seed["tokens"]["input"],
                "cached_input": 0 if kind == "queued" else seed["tokens"]["cached_input"],
                "output": 0 if kind == "queued" else seed["tokens"]["output"],
                "reasoning": 0 if kind == "queued" else seed["tokens"]["reasoning"],
                "prompt": f"[ao-task:work] task {i}", "launch": json.loads(rewrite(base["launch"])),
                "started_at": started, "updated_at": started + 40, "ended_at": started + 40 if ended else None,
            })
            if kind in ("pr_open", "merged"):
                record["pr_url"], record["pr_number"] = f"https://github.com/acme/repo/pull/{i}", i
            store.insert(record)
            sdir = ao_home / "sessions" / session
            sdir.mkdir(parents=True, exist_ok=True)
            if kind == "queued":
                continue
            for source in seed["session_dir"].iterdir():
                if source.is_file():
                    (sdir / source.name).write_text(rewrite(source.read_text(errors="replace")))
            if kind in ("pr_open", "merged"):
                url = f"https://github.com/acme/repo/pull/{i}"
                lines = [{"ts": int(started) + 30, "session": session, "cmd": "gh", "event": "pr",
                          "status": "pr_open", "url_hex": url.encode().hex(), "number": i}]
                if kind == "merged":
                    lines.append({"ts": int(started) + 35, "session": session, "cmd": "gh", "event": "pr",
                                  "status": "merged", "target_hex": str(i).encode().hex()})
                with open(sdir / "events.jsonl", "a") as fh:
                    fh.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    finally:
        if saved is None:
            os.environ.pop("AO_HOME", None)
        else:
            os.environ["AO_HOME"] = saved


def build(work: Path, sessions: int, rollouts: int, log: Any = print) -> tuple[dict[str, str], dict[str, Any]]:
    log("P4: one real session as the seed ...")
    seed = make_seed(work)
    env = ao_env(work / "bench")
    made = write_rollouts(seed, Path(env["CODEX_HOME"]), rollouts)
    insert_sessions(seed, Path(env["AO_HOME"]), made, sessions)
    size = sum(p.stat().st_size for _, p, _ in made)
    log(f"P4: {sessions} sessions, {rollouts} rollouts ({size / 1e6:.0f} MB) in {DAYS} date folders")
    return env, seed


def profile(env: dict[str, str], cwd: Path, top: int = 30) -> str:
    """cProfile of one `ao status --json`: ao's own functions by cumulative time, as text."""
    out = cwd / "status.prof"
    # a served answer ends with os._exit, before `-m cProfile` would write its file: run it as a SystemExit,
    # which cProfile.run catches and then writes the profile
    code = ("import cProfile, os, sys\n"
            "def _exit(code): raise SystemExit(code)\n"
            "os._exit = _exit\n"
            "sys.argv = ['ao', 'status', '--json']\n"
            "from supervisor.entry import main\n"
            f"cProfile.run('main()', {str(out)!r})\n")
    subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    import io
    buf = io.StringIO()
    pstats.Stats(str(out), stream=buf).sort_stats("cumulative").print_stats("supervisor/|sqlite3|posix|io.open", top)
    text = buf.getvalue()
    total = next((line.strip() for line in text.splitlines() if "function calls" in line), "")
    return total + "\n\n" + text[text.index("   ncalls"):] if "   ncalls" in text else text


def measure(work: Path, sessions: int = 100, rollouts: int = 10000, runs: int = 10, log: Any = print,
            with_profile: bool = False) -> dict[str, Any]:
    env, seed = build(work, sessions, rollouts, log)
    cwd = work  # no agent-orchestrator.yaml here: built-in defaults
    argv = ao_argv("status", "--json")
    cold = timed(argv, env, cwd)
    if cold.returncode:
        raise SystemExit(f"ao status --json exited {cold.returncode}")
    warm, floors, pythons = [], [], []
    for _ in range(runs):  # interleaved, so a busy machine slows the floors and the figure alike
        warm.append(timed(argv, env, cwd))
        pythons.append(timed([sys.executable, "-S", "-c", "pass"], env, cwd).seconds)
        floors.append(timed(ao_argv("--version"), env, cwd).seconds)
    floor = statistics.median(floors)
    python_floor = statistics.median(pythons)
    rows = json.loads(warm[-1].stdout)
    problems = []
    if len(rows) != sessions:
        problems.append(f"{len(rows)} rows, expected {sessions}")
    revived = [r["session"] for r in rows if kind_of(int(r["session"][-6:], 16)) == "working" and r["status"] != "failed"]
    if revived:
        problems.append(f"sessions with dead supervisors not marked failed: {revived}")
    wrong = [r["session"] for r in rows if r["thread_id"] and
             {k: r["tokens"][k] for k in TOKEN_KEYS} != seed["tokens"]]
    if wrong:
        problems.append(f"{len(wrong)} rows whose tokens differ from the rollout's: {wrong[:3]}")
    result = {"sessions": sessions, "rollouts": rollouts, "runs": runs, "rows": len(rows),
              "cold_ms": cold.seconds * 1000, "median_ms": statistics.median(w.seconds for w in warm) * 1000,
              "min_ms": min(w.seconds for w in warm) * 1000, "max_ms": max(w.seconds for w in warm) * 1000,
              "max_rss": max(w.max_rss for w in [cold, *warm]), "floor_ms": floor * 1000,
              "python_ms": python_floor * 1000, "problems": problems}
    if with_profile:
        result["profile"] = profile(env, cwd)
    return result


def print_report(r: dict[str, Any]) -> None:
    print(f"\nao status --json: {r['rows']} rows; {r['sessions']} sessions, {r['rollouts']} rollouts in CODEX_HOME")
    print(f"  cold (first run)      {r['cold_ms']:7.0f} ms")
    print(f"  median of {r['runs']:<3} runs    {r['median_ms']:7.0f} ms  (min {r['min_ms']:.0f}, max {r['max_ms']:.0f})")
    print(f"  `python -S -c pass`   {r['python_ms']:7.0f} ms  (median, same run: the P4 floor)")
    print(f"  `ao --version`        {r['floor_ms']:7.0f} ms  (info)")
    print(f"  peak RSS              {r['max_rss'] / 2**20:7.0f} MB")
    for problem in r["problems"]:
        print(f"  PROBLEM: {problem}")
    if r.get("profile"):
        print("\n" + r["profile"])
    ok = passes(r)
    print(f"{'PASS' if ok else 'FAIL'}: median {r['median_ms']:.0f} ms = {ratio(r):.2f}x `python -S -c pass` "
          f"(target <= {LIMIT_RATIO:g}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rollouts", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one warm run")
    parser.add_argument("--keep", action="store_true", help="keep the temp homes")
    args = parser.parse_args()
    if args.rollouts < args.sessions:
        raise SystemExit("--rollouts must be at least --sessions")
    provisioned_codex()
    with scratch("ao-status-bench-", args.keep) as work:
        result = measure(work, args.sessions, args.rollouts, args.runs, with_profile=args.profile)
    print_report(result)
    return 0 if passes(result) else 1


if __name__ == "__main__":
    sys.exit(main())
