"""Plans through `ao spawn --plan-first` with the real codex: registered, attested, enforced."""
from __future__ import annotations

import json
from pathlib import Path

from supervisor.model.server import RecordingHandler

PLAN_A = {"goal": "make the marker files",
          "steps": [{"action": "shell", "description": "the planned file",
                     "metadata": {"inputs": {"command": "touch planned.txt"}}}]}
PLAN_B = {"goal": "make the marker files, and one more",
          "steps": [*PLAN_A["steps"], {"action": "shell", "description": "the extra file",
                                       "metadata": {"inputs": {"command": "touch extra.txt"}}}]}
LOOSE = {"goal": "anything in the shell",
         "steps": [{"action": "shell", "description": "run the build", "metadata": {"inputs": {"script": "make"}}}]}


def fenced(plan):
    return "Here is my plan:\n```json\n" + json.dumps(plan) + "\n```\n"


def register(plan):
    return {"call": {"namespace": "mcp__ao", "name": "register_intent_plan", "arguments": plan}}


SCRIPT = f"""
tasks:
  mcp:
    steps:
      - {json.dumps(register(PLAN_A))}
      - run: touch planned.txt
      - run: touch extra.txt
      - {json.dumps(register(PLAN_B))}
      - run: touch extra.txt
      - say: done
  fenced:
    steps:
      - run: touch planned.txt
        message: {json.dumps(fenced(PLAN_A))}
      - run: touch extra.txt
      - say: done
  loose:
    steps:
      - run: touch anything.txt
        message: {json.dumps(fenced(LOOSE))}
      - say: done
  noplan:
    steps:
      - run: touch early.txt
      - say: done
  plain:
    steps:
      - run: touch plain.txt
        message: {json.dumps(fenced(PLAN_A))}
      - say: done
"""


def run_task(ao, sample_repo, task, *flags):
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", *flags, f"[ao-task:{task}] go")
    assert out.returncode == 0, out.stderr
    spawned = json.loads(out.stdout)
    waited = ao("wait", spawned["session"], "--timeout", "120")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    plan = ao("plan", spawned["session"], "--json")
    assert plan.returncode == 0, plan.stderr
    receipts = ao("receipts", spawned["session"], "--json")
    assert receipts.returncode == 0, receipts.stderr
    return Path(spawned["workspace"]), json.loads(plan.stdout), json.loads(receipts.stdout)["receipts"]


def decisions(receipts):
    return [r for r in receipts if r["kind"] == "guard_decision" and r["event"] == "PreToolUse"]


def test_plan_registered_through_mcp_denies_off_plan_and_a_revision_allows_it(ao, codex, scripted_model,
                                                                              config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    workspace, plan, receipts = run_task(ao, sample_repo, "mcp", "--plan-first")
    assert (workspace / "planned.txt").exists() and (workspace / "extra.txt").exists()
    assert [r["source"] for r in plan["revisions"]] == ["mcp", "mcp"]
    assert plan["revision"] == 2 and plan["goal"] == PLAN_B["goal"]
    hash_a, hash_b = (r["plan_hash"] for r in plan["revisions"])
    assert [[c["command"] for c in s["calls"]] for s in plan["steps"]] == [[], ["touch extra.txt"]]
    assert [(c["command"], c["decision"], c["step"], c["step_description"], c["plan_hash"])
            for c in plan["calls"] if c["tool_name"] == "Bash"] == [
        ("touch planned.txt", "allow", 0, "the planned file", hash_a),
        ("touch extra.txt", "deny", None, None, hash_a),
        ("touch extra.txt", "allow", 1, "the extra file", hash_b)]
    assert [(c["command"], c["plan_hash"]) for c in plan["off_plan"]] == [("touch extra.txt", hash_a)]
    text = ao("plan", plan["session"]).stdout
    assert "revision 2, from mcp" in text and "touch extra.txt" in text and "denied, not in the plan" in text
    rows = [(d["detail"]["tool_name"], d["decision"], d["detail"].get("plan_step"), d["detail"]["plan_hash"])
            for d in decisions(receipts)]
    assert rows == [("mcp__ao__register_intent_plan", "allow", None, hash_a),  # the plan it registered
                    ("Bash", "allow", 0, hash_a),
                    ("Bash", "deny", None, hash_a),
                    ("mcp__ao__register_intent_plan", "allow", None, hash_b),
                    ("Bash", "allow", 1, hash_b)]
    # every receipt of a call carries the plan in force when the guard decided it
    assert [r["plan_hash"] for r in receipts if r["kind"] == "tool_call"] == [hash_a, hash_a, hash_a, hash_b, hash_b]
    listing = ao("receipts", plan["session"]).stdout
    assert "PLAN" in listing and hash_b.removeprefix("sha256:")[:12] in listing
    denied = [d for d in decisions(receipts) if d["decision"] == "deny"][0]
    assert "not in the registered plan; revise the plan with register_intent_plan" in denied["detail"]["reason"]
    assert denied["detail"]["provenance"] == "rollout"


def test_fenced_plan_before_the_first_call(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    workspace, plan, receipts = run_task(ao, sample_repo, "fenced", "--plan-first")
    assert (workspace / "planned.txt").exists() and not (workspace / "extra.txt").exists()
    assert [r["source"] for r in plan["revisions"]] == ["fenced_json"]
    assert plan["steps"][0]["calls"][0]["command"] == "touch planned.txt"
    assert [d["decision"] for d in decisions(receipts)] == ["allow", "deny"]


def test_key_mismatch_falls_back_to_the_tool_name(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    workspace, plan, receipts = run_task(ao, sample_repo, "loose", "--plan-first")
    assert (workspace / "anything.txt").exists()
    [decision] = decisions(receipts)
    assert decision["detail"]["plan_step"] == 0 and "tool name only" in decision["detail"]["plan_match"]


def test_plan_first_denies_a_call_before_any_plan(ao, codex, scripted_model, config_for, sample_repo):
    server = scripted_model(SCRIPT)
    RecordingHandler.bodies = []
    server.RequestHandlerClass = RecordingHandler  # keeps every request body the model got
    config_for(server)
    workspace, plan, receipts = run_task(ao, sample_repo, "noplan", "--plan-first")
    # the UserPromptSubmit hook's additionalContext reached the model as a developer message
    first = json.loads(RecordingHandler.bodies[0])
    told = [i for i in first["input"] if i.get("role") == "developer" and "register your plan" in json.dumps(i)]
    assert told and "register_intent_plan" in json.dumps(told)
    # ao's MCP server was offered to the model, from inside ao's jail
    assert any(t.get("name") == "mcp__ao" for t in first["tools"])
    rows = json.loads(ao("status", "--json").stdout)
    assert rows and all(row["jailed"] for row in rows)
    assert not (workspace / "early.txt").exists()
    assert plan["plan_hash"] is None
    [decision] = decisions(receipts)
    assert decision["decision"] == "deny" and "register_intent_plan" in decision["detail"]["reason"]


def test_without_enforcement_a_plan_is_attested_but_not_enforced(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    workspace, plan, receipts = run_task(ao, sample_repo, "plain")
    assert (workspace / "plain.txt").exists()  # off the written plan, but plans are not enforced here
    assert [r["source"] for r in plan["revisions"]] == ["fenced_json"]
    [decision] = decisions(receipts)
    assert decision["decision"] == "allow" and decision["detail"]["plan_hash"] == plan["plan_hash"]
