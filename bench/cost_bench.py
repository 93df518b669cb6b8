"""Benchmark `ao cost --all --json` on a large corpus of real codex rollouts.

Runs the real codex against the scripted model once to get seed rollouts (several turns, resumes,
a fork), replicates them with fresh thread and response ids into a temp CODEX_HOME until it holds
`--gb` gigabytes, then times ao cold (no index) and warm against the honest grep floor
(`LC_ALL=C grep -rc --include='*.jsonl' token_count DIR > counts.txt`) and ccusage.

    .venv/bin/python bench/cost_bench.py --gb 0.1
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import CODEX_VERSION, RolloutTemplate, ao_argv, provisioned_codex, run_codex_exec, scratch, timed  # noqa: E402

from supervisor.model import script as script_mod  # noqa: E402
from supervisor.model.server import ScriptedModel, read_ledger  # noqa: E402

CCUSAGE = "@ccusage/codex@18.0.11"
KEYS = ("input", "cached_input", "output", "reasoning")
CCUSAGE_KEYS = {"input": "inputTokens", "cached_input": "cachedInputTokens", "output": "outputTokens",
                "reasoning": "reasoningOutputTokens"}


def seed_script(steps: int) -> str:
    lines = ["tasks:", "  long:", "    steps:"]
    for n in range(steps):
        lines += [f"      - run: echo step {n} && seq 1 40",
                  f"        usage: {{input: {4000 + 300 * n}, cached_input: {3000 + 250 * n}, output: {120 + n}, reasoning: {40 + n}}}"]
    lines += ["      - say: All steps done.", "        usage: {input: 9000, cached_input: 8000, output: 77, reasoning: 0}",
              "    followup:"]
    for n in range(steps // 2):
        lines += [f"      - run: echo again {n}",
                  f"        usage: {{input: {9000 + 100 * n}, cached_input: {8500 + 90 * n}, output: {60 + n}, reasoning: {9}}}"]
    lines += ["      - say: Again done.", "        usage: {input: 12000, cached_input: 11000, output: 33, reasoning: 0}"]
    return "\n".join(lines) + "\n"


def make_seed(work: Path, codex: str) -> tuple[Path, dict[str, int]]:
    """Real codex rollouts: a long session resumed twice, and a fork of it."""
    home, ws = work / "seed-codex", work / "seed-ws"
    home.mkdir(parents=True)
    ws.mkdir()
    server = ScriptedModel(script_mod.load_text(seed_script(16), "bench"), ledger=work / "seed-ledger.jsonl")
    server.start_in_thread()
    try:
        thread = run_codex_exec(codex, server.base_url, ws, home, work, "[ao-task:long] do all the steps")
        for n in range(2):
            run_codex_exec(codex, server.base_url, ws, home, work, f"more, round {n}", resume_thread=thread)
        run_codex_exec(codex, server.base_url, ws, home, work, "and on a fork", resume_thread=thread, fork=True)
    finally:
        server.shutdown()
        server.server_close()
    served = read_ledger(work / "seed-ledger.jsonl")
    return home, {k: sum(e["usage"][k] for e in served) for k in KEYS}


def replicate(seed_home: Path, target: Path, gigabytes: float) -> tuple[int, int, int]:
    """Copies of the seed rollouts with fresh ids (same lengths, so fork byte offsets stay right)."""
    seeds = [(p.name, p.read_bytes()) for p in sorted((seed_home / "sessions").rglob("rollout-*.jsonl"))]
    seed_bytes = sum(len(b) for _, b in seeds)
    copies = max(1, int(gigabytes * 1e9 // seed_bytes))
    templates = [RolloutTemplate(name, body) for name, body in seeds]
    files = 0
    for copy in range(copies):
        fresh: dict[bytes, bytes] = {}
        day = target / "sessions" / "2026" / f"{copy % 12 + 1:02d}" / f"{copy % 28 + 1:02d}"
        day.mkdir(parents=True, exist_ok=True)
        for template in templates:
            name, body = template.render(fresh)
            (day / name).write_bytes(body)
            files += 1
    return copies, files, copies * seed_bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="corpus size in gigabytes (default 1)")
    parser.add_argument("--codex", help="codex binary (default: the one `make codex` provisioned)")
    parser.add_argument("--keep", action="store_true", help="keep the temp corpus")
    parser.add_argument("--no-ccusage", action="store_true", help="skip the ccusage comparison")
    args = parser.parse_args()
    with scratch("ao-cost-bench-", args.keep) as work:
        result = measure(work, args.gb, args.codex or str(provisioned_codex()), not args.no_ccusage)
    print_report(result)
    return 0 if all(ok is not False for _, ok, _ in checks(result)) else 1


def run_ccusage(env: dict[str, str]) -> dict[str, Any]:
    """ccusage's time, peak RSS and totals, or why there are none."""
    if shutil.which("npx") is None:
        return {"note": "ccusage skipped: npx not found"}
    # fetch once outside the timing, so the timed run measures ccusage and not the download
    fetch = subprocess.run(["npx", "--yes", CCUSAGE, "--help"], env=env, capture_output=True, timeout=300)
    if fetch.returncode != 0:
        return {"note": f"ccusage skipped: `npx {CCUSAGE}` is unavailable ({fetch.stderr.decode()[-200:].strip()})"}
    run = timed(["npx", "--yes", CCUSAGE, "session", "--offline", "--json"], env)
    if run.returncode:
        return {"note": f"ccusage exited {run.returncode}; no comparison"}
    try:
        totals = json.loads(run.stdout)["totals"]
        tokens = {k: int(totals[v]) for k, v in CCUSAGE_KEYS.items()}
    except (ValueError, KeyError, TypeError):
        tokens = None
    return {"seconds": run.seconds, "max_rss": run.max_rss, "tokens": tokens, "note": ""}


def measure(work: Path, gb: float, codex: str, with_ccusage: bool = True, log: Any = print) -> dict[str, Any]:
    """Build the corpus in `work`, then time grep, ccusage and ao cold and warm; returns the figures."""
    log(f"P1: seeding from the real codex {CODEX_VERSION} against the scripted model ...")
    seed_home, seed_totals = make_seed(work, codex)
    corpus = work / "codex"
    copies, files, size = replicate(seed_home, corpus, gb)
    known = {k: v * copies for k, v in seed_totals.items()}
    log(f"P1: corpus of {files} rollouts, {size / 1e9:.3f} GB ({copies} copies of the seed)")
    env = dict(os.environ, CODEX_HOME=str(corpus), AO_HOME=str(work / "ao-home"), HOME=str(work))
    env.pop("AO_CONFIG", None)
    ao = ao_argv("cost", "--all", "--json")
    subprocess.run(["cat", *map(str, corpus.rglob("*.jsonl"))], stdout=subprocess.DEVNULL)  # page cache warm
    # the counts go to a file: GNU grep treats `> /dev/null` like -q and stops at each file's first match,
    # which does about half the work and would make the floor look twice as fast as reading everything
    counts = work / "grep-counts.txt"
    grep = timed(["sh", "-c", f"LC_ALL=C grep -rc --include='*.jsonl' token_count {corpus}/sessions > {counts}"], env)
    if grep.returncode or len(counts.read_text().splitlines()) != files:
        raise SystemExit(f"the grep floor did not count every rollout (exit {grep.returncode}; see {counts})")
    cold = timed(ao, env)
    warm = [timed(ao, env) for _ in range(3)]
    # what any `ao` command pays before it does anything: the interpreter and the CLI's imports
    startup_s = min(timed(ao_argv("cost", "--help"), env).seconds for _ in range(3))
    if cold.returncode or any(w.returncode for w in warm):
        raise SystemExit("ao cost --all --json failed")
    ours = {k: json.loads(cold.stdout)["totals"]["tokens"][k] for k in KEYS}
    # ccusage keeps the real HOME, so npx finds its cache instead of downloading into the temp one
    cc_env = dict(env, HOME=os.environ.get("HOME", str(work)))
    cc = run_ccusage(cc_env) if with_ccusage else {"note": "ccusage skipped: --no-ccusage"}
    return {"files": files, "bytes": size, "copies": copies, "known": known, "ours": ours,
            "grep_s": grep.seconds, "cold_s": cold.seconds, "cold_rss": cold.max_rss,
            "warm_s": min(w.seconds for w in warm), "warm_rss": max(w.max_rss for w in warm),
            "warm_same": all(w.stdout == cold.stdout for w in warm), "startup_s": startup_s,
            "ccusage_s": cc.get("seconds"), "ccusage_rss": cc.get("max_rss"), "ccusage_tokens": cc.get("tokens"),
            "note": cc["note"]}


def checks(r: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    cc_s, peak = r["ccusage_s"], max(r["cold_rss"], r["warm_rss"])
    return [
        ("cold >= 5x faster than ccusage", None if cc_s is None else r["cold_s"] * 5 <= cc_s,
         "n/a" if cc_s is None else f"{cc_s / r['cold_s']:.1f}x"),
        ("cold <= 2.5x grep", r["cold_s"] <= 2.5 * r["grep_s"], f"{r['cold_s'] / r['grep_s']:.2f}x"),
        ("warm <= 100 ms", r["warm_s"] <= 0.1, f"{r['warm_s'] * 1000:.0f} ms"),
        ("peak RSS <= 150 MB", peak <= 150 * 2**20, f"{peak / 2**20:.0f} MB"),
        ("totals equal the corpus", r["ours"] == r["known"], json.dumps(r["ours"]) if r["ours"] != r["known"] else "exact"),
        ("warm output equals cold", r["warm_same"], ""),
    ]


def print_report(r: dict[str, Any]) -> None:
    cc_s = r["ccusage_s"]
    rows = [
        ("grep -rc token_count > file", f"{r['grep_s']:.3f}s", ""),
        ("ccusage session --offline", f"{cc_s:.3f}s" if cc_s is not None else "n/a",
         f"{r['ccusage_rss'] / 2**20:.0f} MB" if r["ccusage_rss"] else ""),
        ("ao cost cold", f"{r['cold_s']:.3f}s", f"{r['cold_rss'] / 2**20:.0f} MB"),
        ("ao cost warm", f"{r['warm_s'] * 1000:.0f} ms", f"{r['warm_rss'] / 2**20:.0f} MB"),
        ("  of which startup+imports", f"{r['startup_s'] * 1000:.0f} ms", ""),
    ]
    print()
    print(f"corpus: {r['files']} rollouts, {r['bytes'] / 1e9:.3f} GB")
    print(f"{'run':<28}{'time':>12}{'peak RSS':>12}")
    for name, t, rss in rows:
        print(f"{name:<28}{t:>12}{rss:>12}")
    print()
    for name, ok, detail in checks(r):
        verdict = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        print(f"{verdict:<6}{name:<34}{detail}")
    if r["note"]:
        print(f"\nnote: {r['note']}")
    print(f"known totals:   {json.dumps(r['known'])}")
    print(f"ao totals:      {json.dumps(r['ours'])}")
    print(f"ccusage totals: {json.dumps(r['ccusage_tokens'])}")


if __name__ == "__main__":
    sys.exit(main())
