"""Median PreToolUse decision time of the hook guard, process start included, against `python -c pass`.

Starts the session's GuardServer (as the runner does) and runs the exact command codex runs
(`/bin/bash -c <hook client command>`, payload on stdin) with a policy that has command, path and
budget rules, so every check on the decision path is exercised. As codex does, each run's call is
written to the session's rollout (pinned by a SessionStart) before its PreToolUse, so the
provenance check confirms it; the decision recorded last must say `provenance: rollout`.
Usage: python bench/guard_bench.py [RUNS]   (default 200; PASS when the median is at most 30 ms)
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LIMIT_MS = 30.0
FLOOR = "floor: python -c pass"
BASE = "floor: python -S -c pass"
STDLIB = "floor: python -I -S -c 'import json, re'"
GUARD = "guard: hook client via bash (as codex runs it) + server"
POLICY = """
forbidden_commands:
  - {pattern: "git\\\\s+push\\\\s+.*--force", reason: no force pushes}
  - {pattern: "curl .*\\\\| *sh", reason: no piping downloads into a shell}
forbidden_paths:
  - {glob: "backup/**", reason: backups are kept}
  - {glob: ".env*", reason: secrets}
mcp: {allow: [docs]}
budget_usd: 5
"""


def timed(argv: list[str], payload: bytes | Callable[[], bytes], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        data = payload() if callable(payload) else payload  # outside the clock: codex's own write
        start = time.perf_counter()
        proc = subprocess.run(argv, input=data, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append((time.perf_counter() - start) * 1000)
        if proc.returncode not in (0, 2):
            raise SystemExit(f"{argv[:3]} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return times


def measure(runs: int = 200) -> dict:
    """Per case: the list of run times (ms); plus the guard's decision and the cases' names in order."""
    from ruamel.yaml import YAML

    from supervisor.govern import hooks, ledger
    from supervisor.govern import policy as policy_mod
    from supervisor.govern.guard_server import GuardServer

    with tempfile.TemporaryDirectory(prefix="ao-guard-bench-") as tmp:
        home, workspace, codex_home = Path(tmp) / "ao-home", Path(tmp) / "ws", Path(tmp) / "codex-home"
        workspace.mkdir()
        session = "ao-bench"
        sdir = home / "sessions" / session
        sdir.mkdir(parents=True)
        compiled = policy_mod.compile_policy(policy_mod.parse(YAML().load(POLICY), "bench-policy.yaml"),
                                             session, workspace, "gpt-5.1-codex", ao_home=home)
        policy_mod.write_compiled(compiled, sdir)
        thread, command = "01a23c59-0000-7000-8000-00000000be0c", "cd src && rm -f build.log > out.txt 2>&1"
        rollout = codex_home / "sessions" / f"rollout-{thread}.jsonl"  # read incrementally, as codex writes it
        rollout.parent.mkdir(parents=True)
        rollout.write_text(json.dumps({"type": "session_meta", "payload": {"id": thread, "base_instructions":
                                                                           "x" * 20000}}) + "\n"
                           + json.dumps({"type": "token_usage_record", "payload": {"usage": {
                               "input_tokens": 1000, "cached_input_tokens": 0, "output_tokens": 50}}}) + "\n")
        calls = iter(range(1, 1 << 30))

        def payload() -> bytes:
            """The next call and its response's usage: written to the rollout (as codex does before the
            hook), then its hook payload."""
            call_id = f"call_{next(calls)}"
            with open(rollout, "a") as fh:  # codex 0.169.0 logs the response's usage right after its calls
                fh.write(json.dumps({"type": "response_item", "payload": {
                    "type": "function_call", "name": "exec_command", "arguments": json.dumps({"cmd": command}),
                    "call_id": call_id}}, separators=(",", ":")) + "\n"
                    + json.dumps({"type": "token_usage_record", "payload": {"usage": {
                        "input_tokens": 1000, "cached_input_tokens": 0, "output_tokens": 50}}}) + "\n")
            return json.dumps({
                "session_id": thread, "turn_id": "u", "transcript_path": str(rollout), "cwd": str(workspace),
                "hook_event_name": "PreToolUse", "model": "gpt-5.1-codex", "permission_mode": "bypassPermissions",
                "tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": call_id}).encode()

        server = GuardServer(session, home, sdir, codex_home=codex_home)
        sock = server.start()
        server.handle(b"AOG1 SessionStart 5000\n" + json.dumps({"session_id": thread, "source": "startup",
                                                                "transcript_path": str(rollout)}).encode())
        try:
            hook = hooks.client_command("PreToolUse", sock.parent, 20, server_pid=os.getpid())
            env_py = sys.executable
            cases: list[tuple[str, list[str], bytes | Callable[[], bytes]]] = [
                (FLOOR, [env_py, "-c", "pass"], b"{}"),
                (BASE, [env_py, "-S", "-c", "pass"], b"{}"),
                ("floor: python -I -S -c pass", [env_py, "-I", "-S", "-c", "pass"], b"{}"),
                (STDLIB, [env_py, "-I", "-S", "-c", "import json, re"], b"{}"),
                (GUARD, ["/bin/bash", "-c", hook], payload),
            ]
            for _, argv, data in cases:  # warm the page cache and the .pyc files
                timed(argv, data, 3)
            # round robin, so a busy machine slows every case alike instead of whichever ran last
            results: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            for _ in range(runs):
                for name, argv, data in cases:
                    results[name] += timed(argv, data, 1)
        finally:
            server.stop()
        decisions = [e["body"] for e in ledger.read(sdir) if e["kind"] == "guard_decision"]
        decision = (f"{decisions[-1]['decision']}, provenance {decisions[-1].get('provenance')}, "
                    f"{sum(d.get('provenance') == 'rollout' for d in decisions)}/{len(decisions)} confirmed"
                    if decisions else "none recorded")
    return {"runs": runs, "times": results, "decision": decision,
            "guard_ms": statistics.median(results[GUARD]), "floor_ms": statistics.median(results[FLOOR]),
            "stdlib_ms": statistics.median(results[STDLIB]), "base_ms": statistics.median(results[BASE])}


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    if runs < 100:
        raise SystemExit("use at least 100 runs")
    r = measure(runs)
    print(f"runs per case: {runs}; cpus: {os.cpu_count()}; python {sys.version.split()[0]}")
    for name, times in r["times"].items():
        qs = statistics.quantiles(times, n=20)
        print(f"  {name:58s} median {statistics.median(times):6.1f} ms  p5 {qs[0]:6.1f}  p95 {qs[-1]:6.1f}")
    guard_ms, stdlib_ms, floor_ms = r["guard_ms"], r["stdlib_ms"], r["floor_ms"]
    print(f"guard decision ({r['decision']}) median {guard_ms:.1f} ms; "
          f"{guard_ms - floor_ms:+.1f} ms vs `python -c pass`, "
          f"{guard_ms - r['base_ms']:+.1f} ms vs `python -S -c pass`, "
          f"{guard_ms - stdlib_ms:+.1f} ms vs a bare `python -I -S` that imports json and re")
    verdict = "PASS" if guard_ms <= LIMIT_MS else "FAIL"
    print(f"{verdict}: median {guard_ms:.1f} ms {'<=' if verdict == 'PASS' else '>'} {LIMIT_MS:.0f} ms")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
