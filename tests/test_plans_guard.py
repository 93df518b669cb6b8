"""The guard server's plan checks, driven over its socket API: forged registrations, restarts, garbage.

Needs the guard_server.py integration (plans in `_pre_tool_use`); see tests/test_plans_e2e.py for
the same behaviour through the real codex.
"""
from __future__ import annotations

import json
from typing import Any

import test_guard_server as tgs
from test_guard_server import THREAD, _codex_call, _hook, _rollout_file, _send, _start, bash, receipts

from supervisor.govern import plans

guard_server, workspace = tgs.guard_server, tgs.workspace  # the fixtures, shared

ENFORCE = "plan: enforce\n"
PLAN = {"goal": "list", "steps": [{"action": "shell", "description": "ls", "metadata": {"inputs": {"command": "ls"}}}]}
WIDE = {"goal": "anything", "steps": [{"action": "shell", "description": "any", "metadata": {}}]}


def _codex_mcp_call(rollout, call_id: str, arguments: dict[str, Any]) -> None:
    """An MCP call as codex 0.169.0 writes it to the rollout before its PreToolUse hook."""
    with open(rollout, "a") as fh:
        fh.write(json.dumps({"timestamp": "2026-01-01T00:00:01.000Z", "ordinal": 9, "type": "response_item",
                             "payload": {"type": "function_call", "name": "register_intent_plan",
                                         "namespace": "mcp__ao", "arguments": json.dumps(arguments),
                                         "call_id": call_id}}, separators=(",", ":")) + "\n")


def _register(workspace, rollout, call_id: str, plan: Any, thread: str = THREAD) -> dict[str, Any]:
    return {"hook_event_name": "PreToolUse", "cwd": str(workspace), "tool_name": plans.REGISTER_TOOL,
            "tool_input": plan, "session_id": thread, "transcript_path": str(rollout), "tool_use_id": call_id,
            "turn_id": "t1"}


def test_a_forged_registration_registers_nothing(guard_server, workspace):
    server = guard_server("ao-plan-forge", ENFORCE)
    rollout = _rollout_file()
    _start(server, rollout)
    _codex_mcp_call(rollout, "call_plan", PLAN)
    assert _send(server, "PreToolUse", _register(workspace, rollout, "call_plan", PLAN))[0] == "allow"
    # the agent, on the socket, "registers" a plan that allows everything: codex's rollout lists no such call
    verdict, reason = _send(server, "PreToolUse", _register(workspace, rollout, "call_forged", WIDE))
    assert verdict == "deny" and "plan not registered" in reason
    _codex_call(rollout, "call_rm", "rm -rf .")
    verdict, reason = _send(server, "PreToolUse", _hook(workspace, rollout, "call_rm", "rm -rf ."))
    assert verdict == "deny" and plans.NOT_IN_PLAN in reason
    _codex_call(rollout, "call_ls", "ls")
    assert _send(server, "PreToolUse", _hook(workspace, rollout, "call_ls", "ls"))[0] == "allow"
    plan_entries = [e for e in receipts(server, "lifecycle") if e.get("event") == "plan"]
    assert [(e["source"], e["revision"]) for e in plan_entries] == [("mcp", 1)]
    assert plan_entries[0]["plan_sha256"] == plans.normalize(PLAN).hash  # type: ignore[union-attr]


def test_a_bad_plan_is_denied_with_what_to_fix(guard_server, workspace):
    server = guard_server("ao-plan-bad", ENFORCE)
    rollout = _rollout_file()
    _start(server, rollout)
    for n, raw in enumerate([{"goal": "g"}, "not an object", {"goal": "g", "steps": [{"action": 3}]}]):
        verdict, reason = _send(server, "PreToolUse", _register(workspace, rollout, f"call_{n}", raw))
        assert verdict == "deny" and reason.startswith("plan rejected: ") and "register_intent_plan" in reason
    verdict, reason = _send(server, "PreToolUse", bash(workspace, "ls", session_id=THREAD,
                                                       transcript_path=str(rollout), tool_use_id="call_x"))
    assert verdict == "deny" and "no plan is registered yet" in reason


def test_the_plan_survives_a_runner_restart(guard_server, workspace):
    server = guard_server("ao-plan-restart", ENFORCE)
    rollout = _rollout_file()
    _start(server, rollout)
    _codex_mcp_call(rollout, "call_plan", PLAN)
    assert _send(server, "PreToolUse", _register(workspace, rollout, "call_plan", PLAN))[0] == "allow"
    server.stop(drain_s=5)  # kill -9 would lose nothing more: the state file is rewritten on each revision
    again = guard_server("ao-plan-restart", ENFORCE)
    _start(again, rollout)
    _codex_call(rollout, "call_ls", "ls")
    _codex_call(rollout, "call_pwd", "pwd")
    assert _send(again, "PreToolUse", _hook(workspace, rollout, "call_ls", "ls"))[0] == "allow"
    assert _send(again, "PreToolUse", _hook(workspace, rollout, "call_pwd", "pwd"))[0] == "deny"
    hashes = {d.get("plan_hash") for d in receipts(again)}
    assert hashes == {plans.normalize(PLAN).hash}  # type: ignore[union-attr]


def test_fenced_plans_in_a_garbled_rollout_do_not_break_the_guard(guard_server, workspace):
    server = guard_server("ao-plan-garbled", ENFORCE)
    rollout = _rollout_file()
    _start(server, rollout)
    with open(rollout, "a") as fh:
        fh.write("{not json\n" + json.dumps({"type": "response_item", "payload": {
            "type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "```json\n" + json.dumps(PLAN) + "\n```"}]}}) + "\n"
                 + '{"type": "response_item", "payload": {"type": "message", "role": "assistant", "content": 7}}\n')
    _codex_call(rollout, "call_ls", "ls")
    assert _send(server, "PreToolUse", _hook(workspace, rollout, "call_ls", "ls"))[0] == "allow"
    [entry] = [e for e in receipts(server, "lifecycle") if e.get("event") == "plan"]
    assert entry["source"] == "fenced_json"
