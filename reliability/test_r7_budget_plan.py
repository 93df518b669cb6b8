"""R7: the budget is a ceiling and the plan is a fence, through `ao spawn` with the real codex.

- R7a budget ceiling: random per-response usage, a random ceiling, a random runtime, and a crossing
  response that asks for an allowed call, a forbidden call, or ends the turn; the model never ends its
  turn on its own. Property: the response that crossed the ceiling is the last one served on the
  session's thread, no command after it ran, and the session ends `blocked` with the reason. The
  overshoot (spend past the ceiling) is noted; it is at most the crossing response's own cost.
- R7b plan enforcement: a random plan of allowed commands registered as a fenced block (or through
  the MCP tool), then a random mix of planned and unplanned commands. Property: every unplanned
  command was denied and did not run, every planned one ran, and `ao plan` attributes each call.
"""
from __future__ import annotations

import json
import os
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from _harness import Fault, Home, make_home, progress, run_ao, start_model, write_config

N_BUDGET = int(os.environ.get("R7_BUDGET_TRIALS", "10"))
N_PLAN = int(os.environ.get("R7_PLAN_TRIALS", "8"))
MODEL = "gpt-5.1-codex"


def _price(usage: dict[str, int]) -> Decimal:
    from supervisor.observe import pricing

    price = pricing.lookup(pricing.load_table(None), MODEL)
    return pricing.cost(price, usage["input"], usage.get("cached_input", 0), usage["output"])


def _spawn(home: Home, repo: Path, runtime: str, task: str, *flags: str) -> dict[str, Any]:
    out = run_ao(home, "spawn", f"--{runtime}", "--repo", str(repo), "--json", *flags, f"[ao-task:{task}] go")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _row(home: Home, session: str) -> dict[str, Any]:
    return json.loads(run_ao(home, "status", session, "--json").stdout)[0]


def _served(ledger: Path, thread: str | None) -> list[dict[str, Any]]:
    from supervisor.model.server import read_ledger

    return [e for e in read_ledger(ledger) if e["thread_id"] == thread]


def test_r7a_budget_ceiling(tmp_path: Path, monkeypatch: Any, rng: random.Random) -> None:
    from supervisor.sessions.demo import make_sample_repo

    fault = Fault.get("R7a", "budget: the response that crosses the ceiling is the last one served")
    overshoots: list[tuple[Decimal, Decimal]] = []
    for trial in range(N_BUDGET):
        root = tmp_path / f"t{trial}"
        home = make_home(root, monkeypatch, with_codex=True)
        repo = make_sample_repo(root / "repos")
        inputs = [rng.randrange(20_000, 200_000, 1000) for _ in range(4)]
        crossing = rng.choice(["run", "forbidden", "say"])
        runtime = rng.choice(["headless", "headless", "tmux"])
        steps: list[dict[str, Any]] = [{"run": f"echo {n} >> ticks.txt",
                  "usage": {"input": i, "cached_input": 0, "output": 1000, "reasoning": 0}}
                 for n, i in enumerate(inputs)]
        costs = [_price(s["usage"]) for s in steps]
        # a ceiling inside one of the first three responses, so the crossing is response 1, 2 or 3
        k = rng.randrange(3)
        budget = (sum(costs[:k], Decimal(0)) + costs[k] * Decimal(rng.uniform(0.05, 1.0))).quantize(Decimal("0.0001"))
        last = dict(steps[k])
        if crossing == "forbidden":
            last = {"run": "rm -rf ./nothing", "usage": steps[k]["usage"]}
        elif crossing == "say":
            last = {"say": "stopping here", "usage": steps[k]["usage"]}
        script = {"tasks": {"spend": {"loop": True, "steps": [*steps[:k], last, *steps[k + 1:]]}}}
        ledger = root / "served.jsonl"
        model = start_model(json.dumps(script), ledger)
        spawned: dict[str, Any] | None = None
        problems_thread: list[str] = []
        try:
            write_config(home, model.base_url, f"budget_usd: {budget}\n"
                         "policy:\n  forbidden_commands:\n    - {pattern: 'rm\\s+-rf', reason: no recursive deletes}\n")
            spawned = _spawn(home, repo, runtime, "spend")
            run_ao(home, "wait", spawned["session"], "--timeout", "90", timeout=120)
            row = _row(home, spawned["session"])
            served = _served(ledger, row.get("thread_id"))
            if not row.get("thread_id"):
                problems_thread = ["the session recorded no thread id (it could not be resumed)"]
        finally:
            if spawned:
                run_ao(home, "kill", spawned["session"])
            model.shutdown()
        spent = sum((_price(e["usage"]) for e in served), Decimal(0))
        ticks_file = Path(spawned["workspace"]) / "ticks.txt"
        ticks = ticks_file.read_text().splitlines() if ticks_file.exists() else []
        problems = list(problems_thread)
        if row["status"] != "blocked" or "budget" not in (row.get("error") or ""):
            problems.append(f"status {row['status']!r} error {row.get('error')!r}")
        if len(served) != k + 1:
            problems.append(f"{len(served)} responses served, the ceiling was crossed by response {k + 1}")
        if len(ticks) > k:
            problems.append(f"{len(ticks)} commands ran, at most {k} before the crossing response")
        overshoots.append((spent - budget, costs[k]))
        fault.trial(problems, f"trial {trial} ({runtime}, crossing {crossing}, ${budget})")
        progress(f"R7a {trial + 1}/{N_BUDGET}: {runtime} {crossing} served {len(served)}/{k + 1}")
    worst = max(overshoots, key=lambda o: o[0])
    fault.note(f"overshoot: at most ${worst[0]:.4f} past the ceiling, within the crossing response's own "
               f"${worst[1]:.4f}; mean ${sum((o[0] for o in overshoots), Decimal(0)) / len(overshoots):.4f}")
    fault.assert_passed()


def test_r7b_plan_enforcement(tmp_path: Path, monkeypatch: Any, rng: random.Random) -> None:
    from supervisor.sessions.demo import make_sample_repo

    fault = Fault.get("R7b", "plans: unplanned calls are denied and never run, planned ones run")
    for trial in range(N_PLAN):
        root = tmp_path / f"p{trial}"
        home = make_home(root, monkeypatch, with_codex=True)
        repo = make_sample_repo(root / "repos")
        planned = [f"touch planned-{trial}-{n}.txt" for n in range(rng.randint(1, 3))]
        unplanned = [f"touch off-{trial}-{n}.txt" for n in range(rng.randint(1, 3))]
        plan = {"goal": "make the planned files",
                "steps": [{"action": "shell", "description": f"file {n}", "metadata": {"inputs": {"command": c}}}
                          for n, c in enumerate(planned)]}
        calls = planned + unplanned
        rng.shuffle(calls)
        how = rng.choice(["fenced", "mcp"])
        if how == "mcp":
            first: list[dict[str, Any]] = [{"call": {"namespace": "mcp__ao", "name": "register_intent_plan",
                                                     "arguments": plan}}]
            steps = first + [{"run": c} for c in calls]
        else:
            fence = "My plan:\n```json\n" + json.dumps(plan) + "\n```\n"
            steps = [{"run": calls[0], "message": fence}, *({"run": c} for c in calls[1:])]
        script = {"tasks": {"plan": {"steps": [*steps, {"say": "done"}]}}}
        model = start_model(json.dumps(script), root / "served.jsonl")
        try:
            write_config(home, model.base_url)
            spawned = _spawn(home, repo, "headless", "plan", "--plan-first")
            run_ao(home, "wait", spawned["session"], "--timeout", "90", timeout=120)
            view = json.loads(run_ao(home, "plan", spawned["session"], "--json").stdout)
        finally:
            model.shutdown()
        workspace = Path(spawned["workspace"])
        problems = []
        for command in planned:
            if not (workspace / command.split()[1]).exists():
                problems.append(f"planned {command!r} did not run")
        for command in unplanned:
            if (workspace / command.split()[1]).exists():
                problems.append(f"unplanned {command!r} ran")
        off = [str(c.get("command")) for c in view.get("off_plan") or []]
        for command in unplanned:
            if not any(command in o for o in off):
                problems.append(f"`ao plan` does not list {command!r} as off plan")
        fault.trial(problems, f"trial {trial} ({how}, {len(planned)} planned, {len(unplanned)} not)")
        progress(f"R7b {trial + 1}/{N_PLAN}: {how}")
    fault.assert_passed()
