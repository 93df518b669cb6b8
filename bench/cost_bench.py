"""Benchmark `ao cost --all --json` on a large corpus of real codex rollouts.

Runs the real codex against the scripted model once to get seed rollouts (several turns, resumes,
a fork), replicates them with fresh thread and response ids into a temp CODEX_HOME until it holds
`--gb` gigabytes, then times ao cold (no index) and warm against the honest grep floor
(`LC_ALL=C grep -rc --include='*.jsonl' token_count DIR > counts.txt`) and ccusage.

Cold runs are repeated (`--repeat`, min and median reported, with the load average around them) at a
quarter, half and the whole corpus (hard links, so the page cache is shared), to show the cold scan
scales linearly: seconds per GB for ao and for grep at each size.

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


def replicate(seed_home: Path, target: Path, gigabytes: float) -> tuple[int, int, int, list[list[Path]]]:
    """Copies of the seed rollouts with fresh ids (same lengths, so fork byte offsets stay right).

    Returns (copies, files, bytes, the files of each copy)."""
    seeds = [(p.name, p.read_bytes()) for p in sorted((seed_home / "sessions").rglob("rollout-*.jsonl"))]
    seed_bytes = sum(len(b) for _, b in seeds)
    copies = max(1, int(gigabytes * 1e9 // seed_bytes))
    templates = [RolloutTemplate(name, body) for name, body in seeds]
    files = 0
    per_copy: list[list[Path]] = []
    for copy in range(copies):
        fresh: dict[bytes, bytes] = {}
        day = target / "sessions" / "2026" / f"{copy % 12 + 1:02d}" / f"{copy % 28 + 1:02d}"
        day.mkdir(parents=True, exist_ok=True)
        per_copy.append([])
        for template in templates:
            name, body = template.render(fresh)
            (day / name).write_bytes(body)
            per_copy[-1].append(day / name)
            files += 1
    return copies, files, copies * seed_bytes, per_copy


def subset(corpus: Path, per_copy: list[list[Path]], copies: int, target: Path) -> tuple[int, int]:
    """A CODEX_HOME of the first `copies` copies, as hard links (no new bytes in the page cache)."""
    files = size = 0
    for group in per_copy[:copies]:
        for path in group:
            link = target / path.relative_to(corpus)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, link)
            files += 1
            size += path.stat().st_size
    return files, size


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def cold_runs(home: Path, work: Path, files: int, repeat: int, env: dict[str, str]) -> dict[str, Any]:
    """grep and cold `ao cost --all --json`, alternated `repeat` times over one CODEX_HOME."""
    counts = work / "grep-counts.txt"
    # the counts go to a file: GNU grep treats `> /dev/null` like -q and stops at each file's first match,
    # which does about half the work and would make the floor look twice as fast as reading everything
    grep_argv = ["sh", "-c", f"LC_ALL=C grep -rc --include='*.jsonl' token_count {home}/sessions > {counts}"]
    ao = ao_argv("cost", "--all", "--json")
    run_env = dict(env, CODEX_HOME=str(home))
    greps: list[float] = []
    colds: list[Any] = []
    load_before = os.getloadavg()[0]
    for _ in range(repeat):
        grep = timed(grep_argv, run_env)
        if grep.returncode or len(counts.read_text().splitlines()) != files:
            raise SystemExit(f"the grep floor did not count every rollout (exit {grep.returncode}; see {counts})")
        greps.append(grep.seconds)
        shutil.rmtree(env["AO_HOME"], ignore_errors=True)  # cold: no index
        cold = timed(ao, run_env)
        if cold.returncode:
            raise SystemExit("ao cost --all --json failed")
        colds.append(cold)
    return {"grep_min": min(greps), "grep_median": median(greps), "cold_min": min(c.seconds for c in colds),
            "cold_median": median([c.seconds for c in colds]), "cold_rss": max(c.max_rss for c in colds),
            "stdout": colds[-1].stdout, "same": all(c.stdout == colds[0].stdout for c in colds),
            "load": (load_before, os.getloadavg()[0])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="corpus size in gigabytes (default 1)")
    parser.add_argument("--repeat", type=int, default=REPEAT, help=f"cold runs per size (default {REPEAT})")
    parser.add_argument("--codex", help="codex binary (default: the one `make codex` provisioned)")
    parser.add_argument("--keep", action="store_true", help="keep the temp corpus")
    parser.add_argument("--no-ccusage", action="store_true", help="skip the ccusage comparison")
    args = parser.parse_args()
    with scratch("ao-cost-bench-", args.keep) as work:
        result = measure(work, args.gb, args.codex or str(provisioned_codex()), not args.no_ccusage,
                         repeat=args.repeat)
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


REPEAT = 5
FRACTIONS = (0.25, 0.5, 1.0)


def measure(work: Path, gb: float, codex: str, with_ccusage: bool = True, log: Any = print,
            repeat: int = REPEAT) -> dict[str, Any]:
    """Build the corpus in `work`, then time grep, ccusage and ao cold and warm; returns the figures.

    `cold_s` and `grep_s` are the best of `repeat` runs each, alternated in the same minutes; the
    medians, the load average and the runs at a quarter and half of the corpus are in `scaling`.
    """
    log(f"P1: seeding from the real codex {CODEX_VERSION} against the scripted model ...")
    seed_home, seed_totals = make_seed(work, codex)
    corpus = work / "codex"
    copies, files, size, per_copy = replicate(seed_home, corpus, gb)
    known = {k: v * copies for k, v in seed_totals.items()}
    log(f"P1: corpus of {files} rollouts, {size / 1e9:.3f} GB ({copies} copies of the seed)")
    env = dict(os.environ, CODEX_HOME=str(corpus), AO_HOME=str(work / "ao-home"), HOME=str(work))
    env.pop("AO_CONFIG", None)
    ao = ao_argv("cost", "--all", "--json")
    # the gigabyte just written is flushed before anything is timed: its writeback would otherwise run
    # under the first cold runs (grep's and ao's alike); then the page cache is warmed with it
    os.sync()
    subprocess.run(["cat", *map(str, corpus.rglob("*.jsonl"))], stdout=subprocess.DEVNULL)
    scaling = []
    for fraction in FRACTIONS:
        part = max(1, round(copies * fraction))
        home = corpus if part == copies else work / f"codex-{fraction:g}"
        part_files, part_size = (files, size) if part == copies else subset(corpus, per_copy, part, home)
        runs = cold_runs(home, work, part_files, repeat, env)
        ours = {k: json.loads(runs["stdout"])["totals"]["tokens"][k] for k in KEYS}
        row = {"fraction": fraction, "files": part_files, "bytes": part_size, **runs,
               "exact": ours == {k: v * part for k, v in seed_totals.items()} and runs["same"]}
        del row["stdout"]
        scaling.append(row)
        log(f"P1: {part_size / 1e9:.3f} GB: ao cold min {runs['cold_min']:.2f} s / median {runs['cold_median']:.2f} s,"
            f" grep min {runs['grep_min']:.2f} s / median {runs['grep_median']:.2f} s"
            f" ({runs['cold_min'] / runs['grep_min']:.2f}x), exact {row['exact']},"
            f" load {runs['load'][0]:.2f}->{runs['load'][1]:.2f}")
    full = scaling[-1]
    shutil.rmtree(env["AO_HOME"], ignore_errors=True)
    cold = timed(ao, env)
    if cold.returncode:
        raise SystemExit("ao cost --all --json failed")
    warm = [timed(ao, env) for _ in range(3)]
    # what any `ao` command pays before it does anything: the interpreter and the CLI's imports
    startup_s = min(timed(ao_argv("cost", "--help"), env).seconds for _ in range(3))
    if any(w.returncode for w in warm):
        raise SystemExit("ao cost --all --json failed")
    ours = {k: json.loads(cold.stdout)["totals"]["tokens"][k] for k in KEYS}
    # ccusage keeps the real HOME, so npx finds its cache instead of downloading into the temp one
    cc_env = dict(env, HOME=os.environ.get("HOME", str(work)))
    cc = run_ccusage(cc_env) if with_ccusage else {"note": "ccusage skipped: --no-ccusage"}
    return {"files": files, "bytes": size, "copies": copies, "known": known, "ours": ours,
            "grep_s": full["grep_min"], "cold_s": full["cold_min"], "cold_rss": max(full["cold_rss"], cold.max_rss),
            "warm_s": min(w.seconds for w in warm), "warm_rss": max(w.max_rss for w in warm),
            "warm_same": all(w.stdout == cold.stdout for w in warm), "startup_s": startup_s,
            "ccusage_s": cc.get("seconds"), "ccusage_rss": cc.get("max_rss"), "ccusage_tokens": cc.get("tokens"),
            "note": cc["note"], "scaling": scaling, "repeat": repeat}


def per_gb(row: dict[str, Any], key: str) -> float:
    return float(row[key]) / (row["bytes"] / 1e9)


def linear(r: dict[str, Any]) -> bool:
    """Cold seconds per GB at the smallest size within 25% of the largest's (or faster): no worse than linear."""
    rows = r.get("scaling") or []
    return len(rows) < 2 or per_gb(rows[-1], "cold_min") <= 1.25 * per_gb(rows[0], "cold_min")


def checks(r: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    cc_s, peak = r["ccusage_s"], max(r["cold_rss"], r["warm_rss"])
    rows = r.get("scaling") or []
    return [
        ("cold >= 5x faster than ccusage", None if cc_s is None else r["cold_s"] * 5 <= cc_s,
         "n/a" if cc_s is None else f"{cc_s / r['cold_s']:.1f}x"),
        ("cold <= 2.5x grep", r["cold_s"] <= 2.5 * r["grep_s"], f"{r['cold_s'] / r['grep_s']:.2f}x"),
        ("cold scales linearly", linear(r),
         ", ".join(f"{per_gb(row, 'cold_min'):.2f} s/GB at {row['bytes'] / 1e9:.2f} GB" for row in rows)),
        ("warm <= 100 ms", r["warm_s"] <= 0.1, f"{r['warm_s'] * 1000:.0f} ms"),
        ("peak RSS <= 150 MB", peak <= 150 * 2**20, f"{peak / 2**20:.0f} MB"),
        ("totals equal the corpus", r["ours"] == r["known"] and all(row["exact"] for row in rows),
         json.dumps(r["ours"]) if r["ours"] != r["known"] else "exact at every size"),
        ("warm output equals cold", r["warm_same"], ""),
    ]


def scaling_table(r: dict[str, Any]) -> list[str]:
    """The cold runs at each size, as markdown rows."""
    out = ["| corpus | rollouts | ao cold min / median | grep min / median | ratio (min) | ao s/GB | grep s/GB "
           "| load before -> after | peak RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r.get("scaling") or []:
        out.append(f"| {row['bytes'] / 1e9:.2f} GB | {row['files']:,} | {row['cold_min']:.2f} / {row['cold_median']:.2f} s"
                   f" | {row['grep_min']:.2f} / {row['grep_median']:.2f} s | {row['cold_min'] / row['grep_min']:.2f}x"
                   f" | {per_gb(row, 'cold_min'):.2f} | {per_gb(row, 'grep_min'):.2f}"
                   f" | {row['load'][0]:.2f} -> {row['load'][1]:.2f} | {row['cold_rss'] / 2**20:.0f} MB |")
    return out


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
    print(f"cold runs, {r.get('repeat')} of each, grep and ao alternated:")
    for line in scaling_table(r):
        print(line)
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
