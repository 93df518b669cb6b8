"""Activity from the event stream's tail, not from file times alone."""
from __future__ import annotations

import json

from supervisor.observe import activity
from supervisor.observe import codex_format as cf


def line(kind, ts="2026-11-21T10:00:00.000Z", top="event_msg"):
    return json.dumps({"timestamp": ts, "type": top, "payload": {"type": kind}}) + "\n"


def test_classify_rules():
    assert activity.classify(["task_started", "function_call"], 5, True) == "active"
    assert activity.classify(["task_started", "task_complete"], 5, True) == "idle"
    assert activity.classify(["task_started", "exec_approval_request"], 5, True) == "waiting_input"
    assert activity.classify(["task_started", "error"], 5, True) == "blocked"
    assert activity.classify(["task_started", "function_call"], 3600, True) == "idle"
    assert activity.classify(["task_started"], 1, False) == "exited"
    assert activity.classify(["task_started"], 1, True, pending_approval=True) == "waiting_input"
    assert activity.classify(["task_started"], 1, True, guard_blocked=True) == "blocked"



def test_a_late_item_completed_after_the_turn_end_is_idle_at_once():
    """The TUI can log item_completed (and a usage count) after task_complete; it used to read as
    `active` for up to STALE_AFTER (300 s)."""
    assert activity.classify(["task_started", "task_complete", "item_completed"], 1, True) == "idle"
    assert activity.classify(["task_complete", "item_completed", "token_count"], 1, True) == "idle"
    # mid-turn, the same bookkeeping follows a call: still active
    assert activity.classify(["task_started", "function_call", "item_completed"], 1, True) == "active"
    assert activity.classify(["function_call_output", "token_usage_record"], 1, True) == "active"


def test_age_comes_from_the_event_timestamp(tmp_path):
    path = tmp_path / "rollout.jsonl"
    path.write_text(line("task_started") + line("function_call", top="response_item"))
    at = 1795255200.0  # 2026-11-21T10:00:00Z
    assert activity.activity(str(path), True, now=at + 10) == "active"
    assert activity.activity(str(path), True, now=at + 3600) == "idle"  # mtime is fresh, the event is not
    assert activity.activity(str(path), False) == "exited"


def test_tail_skips_partial_and_garbage_lines(tmp_path):
    path = tmp_path / "rollout.jsonl"
    path.write_bytes(b"x" * 70000 + b"\n" + b"\xff\xfe garbage\n" + line("task_complete").encode() + b'{"partial')
    events = activity.last_events(path)
    assert [cf.line_kind(e) for e in events] == ["task_complete"]


def test_watch_wakes_on_a_growing_rollout(tmp_path):
    from supervisor.report.watch import changes
    folder = tmp_path / "sessions" / "2026" / "11" / "21"
    folder.mkdir(parents=True)
    rollout = folder / "rollout-x.jsonl"
    rollout.write_text(line("task_started"))
    with changes([tmp_path / "sessions", tmp_path / "missing"]) as changed:
        assert not changed.wait(0.3)
        with open(rollout, "a") as fh:
            fh.write(line("task_complete"))
        assert changed.wait(5.0)
