"""The guard obeys the operator's live controls (operator.json), read outside the agent's reach."""
from __future__ import annotations

import json
import time

import test_guard_server as tgs
from test_guard_server import RULES, ask, bash, receipts

from supervisor import paths
from supervisor.govern import operator

guard_server, workspace = tgs.guard_server, tgs.workspace  # the fixtures, shared

PUSH = "git push origin main --force"


def test_a_paused_rule_lets_the_call_through_until_the_pause_runs_out(guard_server, workspace):
    server = guard_server("ao-pause")
    assert ask(server, bash(workspace, PUSH)).returncode == 2
    operator.pause(server.session_dir, "forbidden_commands[0]", time.time() + 1.5)
    assert ask(server, bash(workspace, PUSH)).returncode == 0
    assert ask(server, bash(workspace, "rm backup/db.dump")).returncode == 2  # the other rule still holds
    time.sleep(1.6)
    assert ask(server, bash(workspace, PUSH)).returncode == 2  # restored by itself
    decided = receipts(server)
    assert [d["decision"] for d in decided] == ["deny", "allow", "deny", "deny"]
    assert decided[1]["paused_rules"] == ["forbidden_commands[0]"]


def test_a_hand_written_pause_of_ao_own_protection_is_ignored(guard_server, workspace):
    server = guard_server("ao-selfpause")
    sdir = server.session_dir
    assert ask(server, bash(workspace, f"rm {sdir}/policy.json")).returncode == 2
    own = f"forbidden_paths {paths.ao_home().resolve()}/sessions/**"
    (sdir / operator.CONTROL_FILE).write_text(json.dumps(
        {"format": 1, "budget_usd": None, "paused": {own: time.time() + 600}, "revoked": False}))
    out = ask(server, bash(workspace, f"rm {sdir}/policy.json"))
    assert out.returncode == 2 and "off limits" in out.stderr
    assert [d["rule"] for d in receipts(server)] == [own, own]  # the very rule the file tried to pause


def test_revoked_denies_everything_and_a_broken_control_file_fails_closed(guard_server, workspace):
    server = guard_server("ao-revoke")
    assert ask(server, bash(workspace, "ls")).returncode == 0
    operator.revoke(server.session_dir)
    out = ask(server, bash(workspace, "ls"))
    assert out.returncode == 2 and "revoked" in out.stderr
    other = guard_server("ao-broken")
    (other.session_dir / operator.CONTROL_FILE).write_text("{not json")
    out = ask(other, bash(workspace, "ls"))
    assert out.returncode == 2 and "operator.json" in out.stderr
    assert other.budget_exhausted()  # no ceiling can be trusted: the runner stops the agent
    assert [d["rule"] for d in receipts(other)] == ["operator_controls"]


def test_the_operator_budget_overrides_the_policy_both_ways(guard_server, workspace):
    rollout = paths.codex_home() / "sessions" / "2026" / "01" / "02" / "rollout-b.jsonl"
    rollout.parent.mkdir(parents=True)
    rollout.write_text(json.dumps({"type": "token_usage_record", "payload": {"usage": {
        "input_tokens": 10000, "cached_input_tokens": 0, "output_tokens": 1000}}}) + "\n")  # $0.0225
    server = guard_server("ao-budget", RULES + "budget_usd: 1.0\n")
    assert ask(server, bash(workspace, "ls", transcript_path=str(rollout))).returncode == 0
    operator.set_budget(server.session_dir, 0.02)  # lowered below the spend: the next call is denied
    out = ask(server, bash(workspace, "ls", transcript_path=str(rollout)))
    assert out.returncode == 2 and "budget reached" in out.stderr and server.budget_exhausted()
    operator.set_budget(server.session_dir, 0.05)  # raised again: calls run
    assert ask(server, bash(workspace, "ls", transcript_path=str(rollout))).returncode == 0
    assert not server.budget_exhausted()


def test_a_usage_record_that_never_comes_delays_the_call_but_never_blocks_the_guard(guard_server, workspace,
                                                                                      monkeypatch):
    """If codex stopped writing token_usage_record (a format change), PreToolUse waits at most
    USAGE_WAIT_S for it, then decides on what it has; the runner's follower prices it when it comes."""
    from supervisor.govern import guard_server as gs

    monkeypatch.setattr(gs, "USAGE_WAIT_S", 0.3)
    rollout = paths.codex_home() / "sessions" / "2026" / "01" / "03" / "rollout-n.jsonl"
    rollout.parent.mkdir(parents=True)
    rollout.write_text(json.dumps({"type": "response_item", "payload": {
        "type": "function_call", "call_id": "call_late", "name": "exec_command", "arguments": "{}"}}) + "\n")
    server = guard_server("ao-late", RULES + "budget_usd: 0.02\n")
    out = ask(server, bash(workspace, "ls", transcript_path=str(rollout), tool_use_id="call_late"))
    assert out.returncode == 0 and not server.budget_exhausted()  # decided without the missing record
    with open(rollout, "a") as fh:  # the record arrives late: over the ceiling ($0.0225)
        fh.write(json.dumps({"type": "token_usage_record", "payload": {"usage": {
            "input_tokens": 10000, "cached_input_tokens": 0, "output_tokens": 1000}}}) + "\n")
    assert server.follow(str(rollout)) is True and server.budget_exhausted()
