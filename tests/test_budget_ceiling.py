"""The budget is a ceiling: the response that crosses it is the last one the model serves, in both runtimes."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from supervisor.model.server import read_ledger
from supervisor.observe import pricing

# every response asks for another command and never ends the turn: only ao can stop the spend
RUNAWAY = """
tasks:
  runaway:
    loop: true
    steps:
      - run: echo tick >> ticks.txt
        usage: {input: 100000, cached_input: 0, output: 1000, reasoning: 0}
  forbidden:
    loop: true
    steps:
      - run: rm -rf ./nothing
        usage: {input: 100000, cached_input: 0, output: 1000, reasoning: 0}
  say:
    steps:
      - say: nothing to do
        usage: {input: 100000, cached_input: 0, output: 1000, reasoning: 0}
"""
FORBID_RM = """
policy:
  forbidden_commands:
    - pattern: 'rm\\s+-rf'
      reason: recursive deletes are not allowed here
"""


def response_cost(entry: dict) -> Decimal:
    price = pricing.lookup(pricing.load_table(None), "gpt-5.1-codex")
    usage = entry["usage"]
    return pricing.cost(price, usage["input"], usage.get("cached_input", 0), usage["output"])


def crossing_index(entries: list[dict], budget: Decimal) -> int | None:
    """The 1-based count of responses served when spend first reached the budget."""
    total = Decimal(0)
    for n, entry in enumerate(entries, 1):
        total += response_cost(entry)
        if total >= budget:
            return n
    return None


def spawn(ao, repo, runtime, task, *extra):
    out = ao("spawn", f"--{runtime}", "--repo", str(repo), "--json", *extra, f"[ao-task:{task}] go")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("runtime", ["headless", "tmux"])
def test_a_runaway_turn_stops_within_one_response(runtime, ao, codex, scripted_model, config_for, sample_repo,
                                                   tmp_path):
    budget = Decimal("0.30")
    config_for(scripted_model(RUNAWAY), f"budget_usd: {budget}\n")
    spawned = spawn(ao, sample_repo, runtime, "runaway")
    waited = ao("wait", spawned["session"], "--timeout", "90")
    row = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert row["status"] == "blocked", (row, waited.stdout, waited.stderr)
    assert "budget ceiling" in (row["error"] or ""), row
    assert row["attention"] == "budget"
    # the session's own thread; the TUI also asks the model for a thread title on a side thread that no
    # rollout records (a limit the README states), which the scripted model answers with more "commands"
    served = [e for e in read_ledger(tmp_path / "ledger-0.jsonl") if e["thread_id"] == row["thread_id"]]
    crossed = crossing_index(served, budget)
    assert crossed == 3  # 3 x $0.135 crosses $0.30
    # the response that crossed the ceiling was the last one served: its call never ran, and no request
    # carried the denial back to the model
    assert len(served) == crossed, [e["step"] for e in served]
    ticks = (Path(spawned["workspace"]) / "ticks.txt").read_text().splitlines()
    assert len(ticks) == crossed - 1
    kinds = [r["kind"] for r in json.loads(ao("receipts", spawned["session"], "--json").stdout)["receipts"]]
    assert "budget_exhausted" in kinds and "budget_warning" in kinds


def test_the_daily_ceiling_stops_a_running_agent_and_refuses_new_ones(ao, codex, scripted_model, config_for,
                                                                      sample_repo, tmp_path):
    budget = Decimal("0.30")
    config_for(scripted_model(RUNAWAY), f"policy:\n  budget_usd_per_day: {budget}\n")
    spawned = spawn(ao, sample_repo, "headless", "runaway")
    ao("wait", spawned["session"], "--timeout", "90")
    row = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert row["status"] == "blocked" and "daily budget reached" in row["error"], row
    served = [e for e in read_ledger(tmp_path / "ledger-0.jsonl") if e["thread_id"] == row["thread_id"]]
    assert len(served) == crossing_index(served, budget) == 3
    refused = ao("spawn", "--headless", "--repo", str(sample_repo), "[ao-task:say] go")
    assert refused.returncode == 1 and "daily budget reached" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_raised_ceiling_lets_a_blocked_session_resume(ao, codex, scripted_model, config_for, sample_repo,
                                                         tmp_path):
    config_for(scripted_model(RUNAWAY), "budget_usd: 0.30\n")
    spawned = spawn(ao, sample_repo, "headless", "runaway")
    ao("wait", spawned["session"], "--timeout", "90")
    assert ao("budget", spawned["session"], "0.60").returncode == 0
    resumed = ao("resume", spawned["session"], "[ao-task:runaway] carry on")
    assert resumed.returncode == 0, resumed.stderr
    ao("wait", spawned["session"], "--timeout", "90")
    row = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert row["status"] == "blocked" and "$0.6000" in row["error"], row
    served = [e for e in read_ledger(tmp_path / "ledger-0.jsonl") if e["thread_id"] == row["thread_id"]]
    # the raised ceiling was spent as exactly: 0.60 / 0.135 is crossed by the 5th response
    assert len(served) == crossing_index(served, Decimal("0.60")) == 5


def test_a_crossing_response_whose_call_is_denied_anyway_is_still_the_last(ao, codex, scripted_model, config_for,
                                                                          sample_repo, tmp_path):
    """A denial goes back to the model in a new request too: at the ceiling, codex must not hear it."""
    config_for(scripted_model(RUNAWAY), "budget_usd: 0.30\n" + FORBID_RM)
    spawned = spawn(ao, sample_repo, "headless", "forbidden")
    ao("wait", spawned["session"], "--timeout", "90")
    row = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert row["status"] == "blocked", row
    served = [e for e in read_ledger(tmp_path / "ledger-0.jsonl") if e["thread_id"] == row["thread_id"]]
    assert len(served) == crossing_index(served, Decimal("0.30")) == 3


def test_a_turn_that_ends_on_the_crossing_response_ends_blocked(ao, codex, scripted_model, config_for, sample_repo,
                                                                tmp_path):
    config_for(scripted_model(RUNAWAY), "budget_usd: 0.10\n")
    spawned = spawn(ao, sample_repo, "headless", "say")
    ao("wait", spawned["session"], "--timeout", "90")
    row = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert row["status"] == "blocked" and row["attention"] == "budget", row
    assert len([e for e in read_ledger(tmp_path / "ledger-0.jsonl") if e["thread_id"] == row["thread_id"]]) == 1


def test_a_tmux_session_stopped_on_its_first_response_keeps_its_thread(ao, codex, scripted_model, config_for,
                                                                       sample_repo, tmp_path):
    """Stopped before a poll saw its rollout, the session must still know its thread, or it could
    never be resumed after `ao budget` raised the ceiling."""
    config_for(scripted_model(RUNAWAY), "budget_usd: 0.10\n")
    spawned = spawn(ao, sample_repo, "tmux", "runaway")
    ao("wait", spawned["session"], "--timeout", "90")
    row = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert row["status"] == "blocked" and row["thread_id"], row
    served = [e for e in read_ledger(tmp_path / "ledger-0.jsonl") if e["thread_id"] == row["thread_id"]]
    assert len(served) == 1
