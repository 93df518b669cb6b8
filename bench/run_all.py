"""Every ao benchmark side by side in one run (P1-P6), one final table, also written to bench/latest.md.

    make bench                                   # the full run (1 GB corpus, 200 runs, 50 agents)
    .venv/bin/python bench/run_all.py --quick    # a smoke run of a minute or two
    .venv/bin/python bench/run_all.py --only P3,P5

Each benchmark script also runs alone; see its docstring. Exit status 1 when any target is missed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import benchlib  # noqa: E402

IDS = ("P1", "P2", "P2b", "P3", "P4", "P5", "P6", "P6r")


@dataclass
class Row:
    id: str
    what: str
    figure: str
    baseline: str
    ratio: str
    target: str
    ok: bool | None  # None: no verdict (skipped or informational)
    verdict: str = ""

    @property
    def result(self) -> str:
        return self.verdict or ("PASS" if self.ok else "FAIL" if self.ok is False else "SKIP")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def fmt_tokens(tokens: dict[str, int] | None) -> str:
    if not tokens:
        return "n/a"
    return ", ".join(f"{k} {v:,}" for k, v in tokens.items())


# --- each benchmark: run it, turn its figures into table rows -----------------------------------------

def bench_cost(args: Any, notes: list[str]) -> list[Row]:
    import cost_bench
    with benchlib.scratch("ao-bench-cost-") as work:
        r = cost_bench.measure(work, args.gb, str(benchlib.provisioned_codex()), not args.no_ccusage, log=log)
    cc_s = r["ccusage_s"]
    corpus = f"{r['bytes'] / 1e9:.2f} GB, {r['files']:,} rollouts"
    peak = max(r["cold_rss"], r["warm_rss"])
    cc_total = sum(r["ccusage_tokens"].values()) if r["ccusage_tokens"] else None
    notes += [f"P1 corpus totals (known): {fmt_tokens(r['known'])}",
              f"P1 ao cost totals:        {fmt_tokens(r['ours'])}",
              f"P1 ccusage totals:        {fmt_tokens(r['ccusage_tokens'])}",
              f"P1 `ao cost --help` (interpreter + CLI imports): {r['startup_s'] * 1000:.0f} ms; "
              f"ccusage peak RSS {mb(r['ccusage_rss']) if r['ccusage_rss'] else 'n/a'}"]
    if r["note"]:
        notes.append(f"P1 {r['note']}")
    notes.append(f"P1 cold runs ({r['repeat']} of each, grep and ao alternated):\n\n"
                 + "\n".join(cost_bench.scaling_table(r)))
    return [
        Row("P1", f"`ao cost --all --json` cold ({corpus})", f"{r['cold_s']:.2f} s",
            f"ccusage {cc_s:.2f} s" if cc_s is not None else "ccusage n/a",
            f"{cc_s / r['cold_s']:.1f}x faster" if cc_s is not None else "-", ">=5x faster than ccusage",
            None if cc_s is None else r["cold_s"] * 5 <= cc_s),
        Row("P1", "same, against grep", f"{r['cold_s']:.2f} s", f"grep -rc > file {r['grep_s']:.2f} s",
            f"{r['cold_s'] / r['grep_s']:.1f}x grep", "<=2.5x grep", r["cold_s"] <= 2.5 * r["grep_s"]),
        Row("P1", "peak RSS (cold and warm runs)", mb(peak), "-", "-", "<=150 MB", peak <= 150 * 2**20),
        Row("P1", "cold scales linearly (s/GB at 1/4, 1/2, all of the corpus)",
            ", ".join(f"{cost_bench.per_gb(x, 'cold_min'):.2f}" for x in r["scaling"]), "-", "-",
            "s/GB <= 1.25x the smallest corpus's", cost_bench.linear(r)),
        Row("P1", "total tokens equal the corpus's known totals", f"{r['ours']['input'] + r['ours']['output']:,}",
            f"known {r['known']['input'] + r['known']['output']:,}; ccusage "
            + (f"{r['ccusage_tokens']['input'] + r['ccusage_tokens']['output']:,}" if cc_total is not None else "n/a"),
            "-", "exact (all 4 counts)", r["ours"] == r["known"] and r["warm_same"]),
        Row("P2", "same, warm, nothing changed (best of 3)", f"{r['warm_s'] * 1000:.0f} ms",
            f"cold {r['cold_s']:.2f} s", f"{r['cold_s'] / r['warm_s']:.0f}x faster", "<=100 ms", r["warm_s"] <= 0.1),
    ]


def bench_wrapper(args: Any, notes: list[str]) -> list[Row]:
    import wrapper_overhead
    r = wrapper_overhead.measure(args.runs)
    return [Row("P3", f"`git rev-parse HEAD` through the wrapper, median of {r['runs']}",
                f"+{r['added_ms']:.2f} ms ({r['wrapped_ms']:.2f} ms)", f"direct {r['direct_ms']:.2f} ms",
                f"{r['wrapped_ms'] / r['direct_ms']:.2f}x", "<=1.5 ms added", r["added_ms"] <= 1.5)]


def bench_status(args: Any, notes: list[str]) -> list[Row]:
    import status_bench
    with benchlib.scratch("ao-bench-status-") as work:
        r = status_bench.measure(work, 100, args.rollouts, args.status_runs, log=log, with_profile=not args.no_profile)
    notes += [f"P4 problem: {p}" for p in r["problems"]]
    notes.append(f"P4 `ao status --json` runs: min {r['min_ms']:.0f} ms, max {r['max_ms']:.0f} ms; "
                 f"peak RSS {mb(r['max_rss'])}; `ao --version` {r['floor_ms']:.0f} ms (info)")
    if r.get("profile"):
        notes.append("P4 profile of one warm run (cumulative):\n\n```\n" + r["profile"].strip() + "\n```")
    what = f"`ao status --json`, {r['rows']} sessions, {r['rollouts']:,} rollouts, median of {r['runs']}"
    return [
        Row("P4", what, f"{r['median_ms']:.0f} ms", f"`python -S -c pass` {r['python_ms']:.0f} ms",
            f"{status_bench.ratio(r):.2f}x python", f"<={status_bench.LIMIT_RATIO:g}x python -S",
            status_bench.passes(r)),
        Row("P4", "same, first run (cold: builds the index, marks dead sessions failed)", f"{r['cold_ms']:.0f} ms",
            "-", "-", "(reported)", None, "info"),
    ]


def bench_guard(args: Any, notes: list[str]) -> list[Row]:
    import guard_bench
    r = guard_bench.measure(args.runs)
    notes.append(f"P5 decision: {r['decision']}; bare `python -I -S -c 'import json, re'` {r['stdlib_ms']:.1f} ms")
    return [Row("P5", f"guard PreToolUse decision, process start included, median of {r['runs']}",
                f"{r['guard_ms']:.1f} ms", f"python -c pass {r['floor_ms']:.1f} ms",
                f"{r['guard_ms'] / r['floor_ms']:.2f}x", "<=30 ms median", r["guard_ms"] <= 30)]


def bench_fleet(args: Any, notes: list[str]) -> list[Row]:
    import fleet_bench
    with benchlib.scratch("ao-bench-fleet-") as work:
        r = fleet_bench.measure(work, args.agents, args.spawn_workers, log=log)
    notes.append(f"P6 spawning took {r['spawn_s']:.1f} s ({args.spawn_workers} at a time), the rest "
                 f"{r['wall_s'] - r['spawn_s']:.1f} s; runners alive at once: {r['most_alive']} "
                 f"({r['alive_at_release']} when the model started answering); `ao wait` CPU {r['wait_cpu_s']:.1f} s; "
                 f"statuses {r['statuses']}")
    if r["rss_running_median"]:
        notes.append(f"P6 runner RSS while its agent runs (sampled while all waited on the model): median "
                     f"{mb(r['rss_running_median'])}; the peak comes later")
    if r["not_done"]:
        notes.append(f"P6 not done: {r['not_done']}; ao wait: {r['wait_tail']}")
    notes.append(f"P6 model ledger: {fmt_tokens(r['model_tokens'])} ({r['responses']} responses)")
    notes.append(f"P6 ao status:    {fmt_tokens(r['ao_tokens'])}")
    done = r["statuses"].get("done", 0)
    return [
        Row("P6", f"{r['agents']} agents at once, real codex, scripted model", f"{done}/{r['agents']} done",
            f"wall {r['wall_s']:.1f} s", "-", "all finish", r["all_done"]),
        Row("P6", f"supervisor (runner) peak RSS, max (median) of {r['rss_sampled']}",
            f"{mb(r['rss_max'])} ({mb(r['rss_median'])})", "-", "-", "<=25 MB each",
            r["rss_sampled"] == r["agents"] and r["rss_max"] <= fleet_bench.RSS_LIMIT),
        Row("P6", "tokens in `ao status --json` equal the model's ledger",
            f"{r['ao_tokens']['input'] + r['ao_tokens']['output']:,}",
            f"ledger {r['model_tokens']['input'] + r['model_tokens']['output']:,}", "-", "exact (all 4 counts)",
            r["tokens_equal"]),
    ]


def bench_fleet_ray(args: Any, notes: list[str]) -> list[Row]:
    """P6 on Ray: the same fleet on a local Cluster (a head with no CPUs and two workers)."""
    import fleet_bench
    try:
        import ray  # noqa: F401
    except ImportError:
        notes.append("P6r skipped: ray is not installed (pip install 'ao-supervisor[ray]')")
        return [Row("P6r", "the fleet on Ray", "-", "-", "-", "-", None)]
    with benchlib.scratch("ao-bench-fleet-ray-") as work:
        r = fleet_bench.measure(work, args.agents, args.spawn_workers, log=log, on_ray=True)
    notes.append(f"P6r (Ray) spawning took {r['spawn_s']:.1f} s, the rest {r['wall_s'] - r['spawn_s']:.1f} s; "
                 f"statuses {r['statuses']}; each Ray runner is a Ray driver, so the local 25 MB target does not apply")
    done = r["statuses"].get("done", 0)
    return [
        Row("P6r", f"{r['agents']} agents on Ray (2 worker nodes), real codex", f"{done}/{r['agents']} done",
            f"wall {r['wall_s']:.1f} s", "-", "all finish", r["all_done"]),
        Row("P6r", "head side: runners' RSS summed while all agents ran; one runner max (median)",
            f"{mb(r['head_rss_sum_at_release'])}; {mb(r['rss_max'])} ({mb(r['rss_median'])})", "-", "-",
            "(reported)", None, "info"),
        Row("P6r", "tokens in `ao status --json` equal the model's ledger",
            f"{r['ao_tokens']['input'] + r['ao_tokens']['output']:,}",
            f"ledger {r['model_tokens']['input'] + r['model_tokens']['output']:,}", "-", "exact (all 4 counts)",
            r["tokens_equal"]),
    ]


def bench_warm(args: Any, notes: list[str]) -> list[Row]:
    import warm_bench
    results = warm_bench.measure(args.warm_files, args.warm_runs, log=log)
    rows = []
    for r in results:
        n = r["files"]
        limit = warm_bench.P2_LIMITS_MS.get(n, 150.0)
        rows.append(Row("P2", f"warm `ao cost --all --json`, {n:,} rollouts, no watcher, median of {r['runs']}",
                        f"{r['warm_ms']:.0f} ms", f"python -S {r['python_S_ms']:.0f} ms; python {r['python_ms']:.0f} ms",
                        f"{r['warm_ms'] / r['python_ms']:.1f}x python", f"<={limit:g} ms",
                        r["warm_ms"] <= limit and r["same"]))
        rows.append(Row("P2b", f"same with `ao watch` running ({r['served']} served)", f"{r['hot_ms']:.0f} ms",
                        f"python {r['python_ms']:.0f} ms", f"{r['hot_ms'] / r['python_ms']:.2f}x python",
                        f"<={warm_bench.P2B_LIMIT_MS:g} ms", r["hot_ms"] <= warm_bench.P2B_LIMIT_MS and r["same"]))
        notes.append(f"P2/P2b {n:,} files: cold {r['cold_s']:.2f} s; warm min {r['warm_min_ms']:.0f} ms; "
                     f"watched min {r['hot_min_ms']:.0f} ms; answers equal the cold one: {r['same']}")
    if len(results) >= 2:
        a, b = results[0], results[-1]
        growth = (b["warm_ms"] - b["python_ms"]) / max(1e-9, a["warm_ms"] - a["python_ms"])
        notes.append(f"P2 scaling: {a['files']:,} -> {b['files']:,} files ({b['files'] / a['files']:.0f}x) costs "
                     f"{growth:.1f}x the time above interpreter start (linear or better when <= "
                     f"{b['files'] / a['files']:.0f}x); with ao watch {a['hot_ms']:.0f} -> {b['hot_ms']:.0f} ms")
    return rows


# Quiet, short benchmarks first; the 50-agent fleet, which loads both cores, last.
STEPS: list[tuple[tuple[str, ...], str, Callable[[Any, list[str]], list[Row]]]] = [
    (("P3",), "P3 wrapper overhead", bench_wrapper),
    (("P5",), "P5 guard decision", bench_guard),
    (("P4",), "P4 ao status", bench_status),
    (("P1", "P2"), "P1/P2 ao cost", bench_cost),
    (("P2", "P2b"), "P2/P2b warm ao cost at 10k and 50k files", bench_warm),
    (("P6",), "P6 fleet", bench_fleet),
    (("P6r",), "P6 fleet on Ray", bench_fleet_ray),
]


def table(rows: list[Row]) -> str:
    head = ["id", "what", "figure", "baseline (same run)", "ratio", "target", "result"]
    body = [[r.id, r.what, r.figure, r.baseline, r.ratio, r.target, r.result] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def git_head() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return head.strip() + (" (uncommitted changes)" if dirty.strip() else "")
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 0.05 GB, 100 runs, 1,000 rollouts, 10 agents")
    parser.add_argument("--only", help="comma-separated ids, e.g. P3,P5 (P1 and P2 run together)")
    parser.add_argument("--no-ccusage", action="store_true", help="skip the ccusage comparison in P1")
    parser.add_argument("--no-profile", action="store_true", help="leave the cProfile of `ao status --json` out")
    parser.add_argument("--out", help="markdown report (default bench/latest.md; bench/latest-quick.md with --quick)")
    args = parser.parse_args()
    args.gb = 0.05 if args.quick else 1.0
    args.runs = 100 if args.quick else 200
    args.rollouts = 1000 if args.quick else 10000
    args.status_runs = 5 if args.quick else 10
    args.warm_files = [1000, 5000] if args.quick else [10000, 50000]
    args.warm_runs = 5 if args.quick else 9
    args.agents = 10 if args.quick else 50
    args.spawn_workers = 2  # `ao spawn` is CPU-bound; two at a time keeps both cores busy
    only = {i.strip().upper() for i in args.only.split(",")} if args.only else set(IDS)
    out = Path(args.out) if args.out else ROOT / "bench" / ("latest-quick.md" if args.quick else "latest.md")

    started, started_at = time.perf_counter(), dt.datetime.now().astimezone()
    machine = benchlib.machine()
    log(f"ao benchmarks{' (quick)' if args.quick else ''}: {machine['nproc']} cpus, {machine['ram_gb']} GB RAM, "
        f"{machine['cpu']}, python {machine['python']}, load {machine['load'][0]:.2f}")
    benchlib.provisioned_codex()
    rows: list[Row] = []
    notes: list[str] = []
    timings: list[str] = []
    for ids, name, step in STEPS:
        if not only.intersection(ids):
            continue
        log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            found = step(args, notes)
        except (Exception, SystemExit) as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            found = [Row(i, name, "-", "-", "-", "-", False, "ERROR") for i in ids]
            notes.append(f"{'/'.join(ids)} ERROR: {type(exc).__name__}: {str(exc)[-800:]}")
        rows += found
        timings.append(f"{name} {time.perf_counter() - t0:.0f} s")
        log(f"{name}: " + "; ".join(f"{r.id} {r.figure} {r.result}" for r in found))
    elapsed = time.perf_counter() - started
    end_load = benchlib.machine()["load"]
    text = table(rows)
    print("\n" + text + "\n")
    for note in notes:
        print(note)
    print(f"\ntotal wall time {elapsed / 60:.1f} min ({', '.join(timings)}); "
          f"load average {machine['load'][0]:.2f} at start, {end_load[0]:.2f} at end")

    command = "make bench" if not (args.quick or args.only) else "bench/run_all.py " + " ".join(sys.argv[1:])
    report = [
        f"# ao benchmarks{' (quick smoke run)' if args.quick else ''}", "",
        f"- date: {started_at:%Y-%m-%d %H:%M %Z}",
        f"- command: `{command}`; wall time {elapsed / 60:.1f} min ({', '.join(timings)})",
        f"- machine: nproc {machine['nproc']}, RAM {machine['ram_gb']} GB, CPU {machine['cpu']}",
        f"- python {machine['python']}; codex {benchlib.CODEX_VERSION}; ao at {git_head()}",
        f"- load average (1 min) {machine['load'][0]:.2f} at start, {end_load[0]:.2f} at end "
        "(other work on the machine slows every figure)",
        f"- bytecode cache for `ao` children: PYTHONPYCACHEPREFIX={os.environ['PYTHONPYCACHEPREFIX']}"
        + (f" ({benchlib.BYTECODE_NOTE})" if benchlib.BYTECODE_NOTE else ""),
        "", text, "", "## Notes", "",
        *[f"- {n}" if "\n" not in n else n for n in notes], "",
    ]
    out.write_text("\n".join(report))
    print(f"written to {out}")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
