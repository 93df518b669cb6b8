"""Warm `ao cost --all --json` at 10k and 50k rollouts, without (P2) and with `ao watch` running (P2b).

Builds a CODEX_HOME of small rollouts in codex 0.169.0's format (meta, model, token counts), runs the
cold answer once, then times warm answers (nothing changed) through the one-shot path
(`AO_NO_WATCH=1`: stat digest + stored answer) and through a running `ao watch`, interleaved with
`python -S -c pass` and `python -c pass` of the same run. Every warm answer must equal the cold one.

    .venv/bin/python bench/warm_bench.py [--files 10000,50000] [--runs 7]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import ao_argv, scratch, timed  # noqa: E402

P2_LIMITS_MS = {10000: 100.0, 50000: 150.0}
P2B_LIMIT_MS = 30.0
WATCH = ("import sys; from supervisor.report import cli; "
         "cli.COMMANDS.setdefault('watch', ('supervisor.report.cmd_watch', 'watch')); sys.argv[0] = 'ao'; cli.main()")


def _line(ts: str, kind: str, payload: Any) -> str:
    return json.dumps({"timestamp": ts, "type": kind, "payload": payload}, separators=(",", ":")) + "\n"


def write_corpus(codex_home: Path, files: int) -> None:
    for i in range(files):
        day = f"2026/{i % 12 + 1:02d}/{i % 28 + 1:02d}"
        folder = codex_home / "sessions" / day
        folder.mkdir(parents=True, exist_ok=True)
        thread = f"{i:08x}-0000-7000-8000-000000000000"
        ts = f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}T10:00:00.000Z"
        text = _line(ts, "session_meta", {"id": thread, "cwd": f"/work/p{i % 50}", "cli_version": "0.169.0"})
        text += _line(ts, "turn_context", {"turn_id": "t1", "model": "gpt-5.1-codex", "cwd": "/work"})
        for n in range(1, 4):
            # totals unique to each file: equal first totals are how a fork's copied prefix is recognised
            usage = {"input_tokens": 1000 * n + i, "cached_input_tokens": 500 * n, "output_tokens": 50 * n,
                     "reasoning_output_tokens": 5 * n, "total_tokens": 1050 * n + i}
            text += _line(ts, "event_msg", {"type": "token_count", "rate_limits": None,
                                            "info": {"total_token_usage": usage, "last_token_usage": usage,
                                                     "model_context_window": 100000}})
        (folder / f"rollout-{ts[:10]}T10-00-00-{thread}.jsonl").write_text(text)


def _wait_for_watcher(env: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = subprocess.run([sys.executable, "-c", WATCH, "watch", "--status", "--json"], env=env,
                              capture_output=True, text=True)
        if done.returncode == 0 and json.loads(done.stdout).get("stale") is None:
            return
        time.sleep(0.1)
    raise SystemExit("ao watch did not start answering within 60 s")


def measure_one(work: Path, files: int, runs: int, log: Any = print) -> dict[str, Any]:
    env = dict(os.environ, HOME=str(work), AO_HOME=str(work / "ao-home"), CODEX_HOME=str(work / "codex"))
    env.pop("AO_CONFIG", None)
    write_corpus(work / "codex", files)
    argv = ao_argv("cost", "--all", "--json")
    one_shot = dict(env, AO_NO_WATCH="1")
    os.sync()  # the corpus just written: its writeback (due 30 s later) would run during the timed answers
    cold = timed(argv, one_shot, work)
    log(f"P2 {files:,} files: cold {cold.seconds:.2f} s")
    timed(argv, one_shot, work)  # the first warm run may still settle the index's stats
    os.sync()  # and the index and stored answer the cold run wrote
    warm, warm_same, bare, site = [], True, [], []
    for _ in range(runs):
        t = timed(argv, one_shot, work)
        warm.append(t.seconds)
        warm_same = warm_same and t.stdout == cold.stdout
        bare.append(timed([sys.executable, "-S", "-c", "pass"], env, work).seconds)
        site.append(timed([sys.executable, "-c", "pass"], env, work).seconds)
    proc = subprocess.Popen([sys.executable, "-c", WATCH, "watch", "--no-notify", "--no-reactions"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        _wait_for_watcher(env)
        timed(argv, env, work)  # the watcher computes it once
        hot, hot_same = [], True
        for _ in range(runs):
            t = timed(argv, env, work)
            hot.append(t.seconds)
            hot_same = hot_same and t.stdout == cold.stdout
            bare.append(timed([sys.executable, "-S", "-c", "pass"], env, work).seconds)
            site.append(timed([sys.executable, "-c", "pass"], env, work).seconds)
        done = subprocess.run([sys.executable, "-c", WATCH, "watch", "--status", "--json"], env=env,
                              capture_output=True, text=True)
        served = json.loads(done.stdout).get("served", 0) if done.returncode == 0 else 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return {"files": files, "cold_s": cold.seconds, "warm_ms": statistics.median(warm) * 1000,
            "warm_min_ms": min(warm) * 1000, "hot_ms": statistics.median(hot) * 1000, "hot_min_ms": min(hot) * 1000,
            "python_S_ms": statistics.median(bare) * 1000, "python_ms": statistics.median(site) * 1000,
            "same": warm_same and hot_same, "warm_same": warm_same, "hot_same": hot_same, "served": served,
            "runs": runs}


def measure(files: list[int], runs: int, log: Any = print) -> list[dict[str, Any]]:
    out = []
    for n in files:
        with scratch(f"ao-bench-warm-{n}-") as work:
            out.append(measure_one(work, n, runs, log))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="10000,50000")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ok = True
    for r in measure([int(x) for x in args.files.split(",")], args.runs):
        p2 = r["warm_ms"] <= P2_LIMITS_MS.get(r["files"], 150.0)
        p2b = r["hot_ms"] <= P2B_LIMIT_MS
        ok = ok and p2 and p2b and r["same"]
        print(f"{r['files']:>6,} files: cold {r['cold_s']:.2f} s; P2 warm {r['warm_ms']:.0f} ms "
              f"({'PASS' if p2 else 'FAIL'}); P2b with ao watch {r['hot_ms']:.0f} ms ({'PASS' if p2b else 'FAIL'}, "
              f"{r['served']} served); python -S {r['python_S_ms']:.0f} ms, python {r['python_ms']:.0f} ms; "
              f"answers equal the cold one: one-shot {r['warm_same']}, watched {r['hot_same']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
