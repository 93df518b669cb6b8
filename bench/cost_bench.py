"""Benchmark `ao cost --all --json` on a large corpus of real codex rollouts.

Runs the real codex against the scripted model once to get seed rollouts (several turns, resumes,
a fork), replicates them with fresh thread and response ids into a temp CODEX_HOME until it holds
`--gb` gigabytes, then times ao cold (no index) and warm against `grep -c` and ccusage.

    .venv/bin/python bench/cost_bench.py --gb 0.1
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supervisor.launch import codex_bin, command  # noqa: E402
from supervisor.model import script as script_mod  # noqa: E402
from supervisor.model.server import ScriptedModel, read_ledger  # noqa: E402

CODEX_VERSION = "0.169.0"
CCUSAGE = "@ccusage/codex@18.0.11"
KEYS = ("input", "cached_input", "output", "reasoning")
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RESP = re.compile(rb"resp_[0-9a-f]{32}")
SHIM = ("from supervisor.report.cli import cli\nfrom supervisor.report import cmd_cost\n"
        "cli.add_command(cmd_cost.cost)\ncli(prog_name='ao')\n")


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
    cfg = {"agent": {"reasoning_effort": None}, "codex": {"overrides": {}},
           "provider": {"id": "bench", "base_url": server.base_url}}
    spec = command.LaunchSpec(str(ws), "gpt-5.1-codex", "skip", "workspace-write",
                              command.build_overrides(cfg, "gpt-5.1-codex", [], "", None))
    env = dict(os.environ, CODEX_HOME=str(home), HOME=str(work))

    def run(argv: list[str]) -> str:
        done = subprocess.run(argv, cwd=ws, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"seed codex run failed: {done.stderr[-1000:]}")
        return next(json.loads(l)["thread_id"] for l in done.stdout.splitlines() if '"thread.started"' in l)

    thread = run(command.exec_argv(codex, spec, "[ao-task:long] do all the steps"))
    for n in range(2):
        run(command.exec_argv(codex, spec, f"more, round {n}", resume_thread=thread))
    fork = command.exec_argv(codex, spec, "and on a fork", resume_thread=thread)
    fork[fork.index("resume")] = "fork"
    run(fork)
    server.shutdown()
    server.server_close()
    served = read_ledger(work / "seed-ledger.jsonl")
    return home, {k: sum(e["usage"][k] for e in served) for k in KEYS}


def replicate(seed_home: Path, target: Path, gigabytes: float) -> tuple[int, int, int]:
    """Copies of the seed rollouts with fresh ids (same lengths, so fork byte offsets stay right)."""
    seeds = [(p, p.read_bytes()) for p in sorted((seed_home / "sessions").rglob("rollout-*.jsonl"))]
    seed_bytes = sum(len(b) for _, b in seeds)
    copies = max(1, int(gigabytes * 1e9 // seed_bytes))
    templates = []
    for path, body in seeds:
        spots = sorted([(m.start(), m.end(), m.group()) for m in UUID.finditer(body)]
                       + [(m.start(), m.end(), m.group()) for m in RESP.finditer(body)])
        pieces, ids, at = [], [], 0
        for start, end, found in spots:
            pieces.append(body[at:start])
            ids.append(found)
            at = end
        pieces.append(body[at:])
        templates.append((path.name, pieces, ids))
    files = 0
    for copy in range(copies):
        fresh: dict[bytes, bytes] = {}

        def new_id(old: bytes) -> bytes:
            if old not in fresh:
                fresh[old] = (b"resp_" + uuid.uuid4().hex.encode()) if old.startswith(b"resp_") \
                    else str(uuid.uuid4()).encode()
            return fresh[old]

        day = target / "sessions" / "2026" / f"{copy % 12 + 1:02d}" / f"{copy % 28 + 1:02d}"
        day.mkdir(parents=True, exist_ok=True)
        for name, pieces, ids in templates:
            out = [pieces[0]]
            for found, piece in zip(ids, pieces[1:]):
                out += [new_id(found), piece]
            thread = UUID.search(name.encode()).group()  # type: ignore[union-attr]
            (day / name.replace(thread.decode(), new_id(thread).decode())).write_bytes(b"".join(out))
            files += 1
    return copies, files, copies * seed_bytes


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, str, int]:
    """Wall seconds, peak RSS (bytes) of the child, its stdout, its exit status."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return elapsed, usage.ru_maxrss * 1024, out.read().decode(errors="replace"), proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="corpus size in gigabytes (default 1)")
    parser.add_argument("--codex", help="codex binary (default: resolved like ao does)")
    parser.add_argument("--keep", action="store_true", help="keep the temp corpus")
    parser.add_argument("--no-ccusage", action="store_true", help="skip the ccusage comparison")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ao-cost-bench-"))
    try:
        return run_bench(work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"corpus kept in {work}")


def run_bench(work: Path, args: Any) -> int:
    print(f"seeding from the real codex {CODEX_VERSION} against the scripted model ...", flush=True)
    seed_home, seed_totals = make_seed(work, args.codex or str(codex_bin.resolve("auto", CODEX_VERSION)))
    corpus = work / "codex"
    copies, files, size = replicate(seed_home, corpus, args.gb)
    known = {k: v * copies for k, v in seed_totals.items()}
    print(f"corpus: {files} rollouts, {size / 1e9:.3f} GB ({copies} copies of the seed)", flush=True)
    env = dict(os.environ, CODEX_HOME=str(corpus), AO_HOME=str(work / "ao-home"), HOME=str(work))
    env.pop("AO_CONFIG", None)
    ao = [sys.executable, "-c", SHIM, "cost", "--all", "--json"]
    subprocess.run(["cat", *map(str, corpus.rglob("*.jsonl"))], stdout=subprocess.DEVNULL)  # page cache warm
    grep_s, _, grep_out, _ = timed(["sh", "-c", f"LC_ALL=C grep -rc --include='*.jsonl' token_count {corpus}/sessions"
                                    " >/dev/null"], env)
    cold_s, cold_rss, cold_out, cold_rc = timed(ao, env)
    warm_s, warm_rss, warm_out, warm_rc = timed(ao, env)
    warm_s = min(warm_s, timed(ao, env)[0])
    # what any `ao` command pays before it does anything: the interpreter and the CLI's imports
    startup_s = min(timed([sys.executable, "-c", SHIM, "cost", "--help"], env)[0] for _ in range(3))
    if cold_rc or warm_rc:
        print("ao cost failed", file=sys.stderr)
        return 1
    report = json.loads(cold_out)
    ours = {k: report["totals"]["tokens"][k] for k in KEYS}
    cc_s: float | None = None
    note = ""
    if args.no_ccusage or shutil.which("npx") is None:
        note = "ccusage skipped: " + ("--no-ccusage" if args.no_ccusage else "npx not found")
    else:
        # fetch once outside the timing, so the timed run measures ccusage and not the download
        fetch = subprocess.run(["npx", "--yes", CCUSAGE, "--help"], env=env, capture_output=True, timeout=300)
        if fetch.returncode != 0:
            note = f"ccusage skipped: `npx {CCUSAGE}` is unavailable ({fetch.stderr.decode()[-200:].strip()})"
        else:
            cc_s, _, _, cc_rc = timed(["npx", "--yes", CCUSAGE, "session", "--offline", "--json"], env)
            if cc_rc:
                note, cc_s = f"ccusage exited {cc_rc}; no comparison", None
    rows = [
        ("grep -c token_count", f"{grep_s:.3f}s", "", ""),
        ("ccusage session --offline", f"{cc_s:.3f}s" if cc_s is not None else "n/a", "", ""),
        ("ao cost cold", f"{cold_s:.3f}s", f"{cold_rss / 2**20:.0f} MB", ""),
        ("ao cost warm", f"{warm_s * 1000:.0f} ms", f"{warm_rss / 2**20:.0f} MB", ""),
        ("  of which startup+imports", f"{startup_s * 1000:.0f} ms", "", ""),
    ]
    checks = [
        ("cold >= 5x faster than ccusage", None if cc_s is None else cold_s * 5 <= cc_s,
         "n/a" if cc_s is None else f"{cc_s / cold_s:.1f}x"),
        ("cold <= 2x grep", cold_s <= 2 * grep_s, f"{cold_s / grep_s:.2f}x"),
        ("warm <= 100 ms", warm_s <= 0.1, f"{warm_s * 1000:.0f} ms"),
        ("peak RSS <= 150 MB", max(cold_rss, warm_rss) <= 150 * 2**20, f"{max(cold_rss, warm_rss) / 2**20:.0f} MB"),
        ("totals equal the corpus", ours == known, json.dumps(ours) if ours != known else "exact"),
        ("warm output equals cold", warm_out == cold_out, ""),
    ]
    print()
    print(f"{'run':<28}{'time':>12}{'peak RSS':>12}")
    for name, t, rss, _ in rows:
        print(f"{name:<28}{t:>12}{rss:>12}")
    print()
    for name, ok, detail in checks:
        verdict = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        print(f"{verdict:<6}{name:<34}{detail}")
    if note:
        print(f"\nnote: {note}")
    print(f"known totals: {json.dumps(known)}")
    return 0 if all(ok is not False for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
