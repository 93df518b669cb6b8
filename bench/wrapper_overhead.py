"""Time added by ao's git wrapper on the fast path: `git rev-parse HEAD` direct vs through the wrapper.

Runs in a temp repo with a temp AO_HOME; direct and wrapped runs alternate so drift hits both alike.
Usage: python bench/wrapper_overhead.py [--runs 200] [--budget-ms 1.5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["git", "rev-parse", "HEAD"], env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - start) * 1000


def measure(runs: int = 200) -> dict[str, float]:
    """Median ms of `git rev-parse HEAD` direct and through the wrapper, alternating runs."""
    saved_home = os.environ.get("AO_HOME")
    with tempfile.TemporaryDirectory(prefix="ao-bench-") as tmp:
        home = Path(tmp) / "ao-home"
        os.environ["AO_HOME"] = str(home)
        try:
            from supervisor.launch import wrappers  # after AO_HOME is set, so nothing touches the real home

            wrappers.install()
        finally:
            if saved_home is None:
                os.environ.pop("AO_HOME", None)
            else:
                os.environ["AO_HOME"] = saved_home
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git_env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
                   "GIT_COMMITTER_EMAIL": "b@x"}
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "x"], cwd=repo, env=git_env, check=True)
        base = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p)
        direct_env = {**os.environ, "PATH": base, "AO_HOME": str(home)}
        wrapped_env = {**direct_env, "PATH": f"{home / 'bin'}{os.pathsep}{base}", "AO_SESSION": "ao-bench",
                       "AO_DATA_DIR": str(home)}
        check = subprocess.run(["git", "rev-parse", "HEAD"], env=wrapped_env, cwd=repo, capture_output=True)
        assert check.returncode == 0 and len(check.stdout.strip()) == 40, check
        for _ in range(10):  # warm the page cache for both paths
            timed(direct_env, repo), timed(wrapped_env, repo)
        direct, wrapped = [], []
        for _ in range(runs):
            direct.append(timed(direct_env, repo))
            wrapped.append(timed(wrapped_env, repo))
    d, w = statistics.median(direct), statistics.median(wrapped)
    return {"runs": runs, "direct_ms": d, "wrapped_ms": w, "added_ms": w - d}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--budget-ms", type=float, default=1.5)
    args = parser.parse_args()
    r = measure(args.runs)
    d, w, added = r["direct_ms"], r["wrapped_ms"], r["added_ms"]
    print(f"git rev-parse HEAD, {args.runs} runs each, /bin/sh -> {os.path.realpath('/bin/sh')}")
    print(f"direct  median {d:.3f} ms")
    print(f"wrapped median {w:.3f} ms")
    print(f"added   {added:.3f} ms  ratio {w / d:.2f}x  budget {args.budget_ms} ms")
    print("PASS" if added <= args.budget_ms else "FAIL")
    return 0 if added <= args.budget_ms else 1


if __name__ == "__main__":
    sys.exit(main())
