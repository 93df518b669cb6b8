"""codex_format: the one module that knows codex's formats, checked by hand and against real codex 0.169.0."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from supervisor.model.server import read_ledger
from supervisor.observe import codex_format as cf
from supervisor.observe import exec_events, locate, receipts, rollout, usage

T0 = "2026-11-20T10:00:00.000Z"
THREAD = "019a0000-0000-7000-8000-00000000abcd"
SCRIPT = """
tasks:
  shape:
    steps:
      - run: echo hello-from-tool
        usage: {input: 1000, cached_input: 100, output: 50, reasoning: 10}
      - say: All done.
        usage: {input: 1200, cached_input: 1000, output: 30, reasoning: 0}
"""


def ev(kind: str, payload: dict[str, Any], ts: str = T0) -> dict[str, Any]:
    return {"timestamp": ts, "type": kind, "payload": payload}


# --- pure functions on hand-made lines ------------------------------------------------------------

def test_session_meta_reads_fork_markers_and_rejects_other_shapes() -> None:
    meta = cf.session_meta(ev("session_meta", {
        "id": THREAD, "cwd": "/w", "timestamp": T0, "forked_from_id": "parent",
        "history_base": {"thread_id": "parent", "end_byte_offset": 4096}, "subagent_history_start_ordinal": 7}))
    assert meta == cf.SessionMeta(THREAD, "/w", T0, "parent", 4096, 7)
    plain = cf.session_meta(ev("session_meta", {"id": THREAD, "forked_from_id": "", "history_base": "x"}))
    assert plain is not None and (plain.forked_from, plain.fork_offset, plain.cwd) == (None, None, None)
    for hostile in (None, [], "text", {"type": "session_meta"}, {"type": "session_meta", "payload": [1]},
                    ev("event_msg", {"id": THREAD}),
                    ev("session_meta", {"id": 5, "history_base": {"end_byte_offset": "9"}})):
        found = cf.session_meta(hostile)
        assert found is None or (found.thread_id is None and found.fork_offset is None)


def test_token_count_and_usage_record() -> None:
    usage_obj = {"input_tokens": 10, "cached_input_tokens": 2, "output_tokens": 3, "reasoning_output_tokens": 1}
    counted = cf.token_count(ev("event_msg", {"type": "token_count", "info": {
        "total_token_usage": usage_obj, "last_token_usage": {"input_tokens": -5, "output_tokens": "7"}}}))
    assert counted == cf.TokenCount((10, 2, 3, 1), (0, 0, 0, 0))
    assert cf.token_count(ev("event_msg", {"type": "token_count", "info": None, "rate_limits": {}})) is None
    misplaced = ev("response_item", {"type": "token_count", "info": {"total_token_usage": usage_obj}})
    assert cf.token_count(misplaced) is None
    record = cf.usage_record(ev("token_usage_record", {"response_id": "resp_1", "turn_id": "t", "usage": usage_obj}))
    assert record == cf.UsageRecord("resp_1", (10, 2, 3, 1), "t")
    empty = cf.usage_record(ev("token_usage_record", {"response_id": 3, "usage": {}}))
    assert empty == cf.UsageRecord(None, (0, 0, 0, 0), None)
    assert cf.usage_record(ev("token_usage_record", {"usage": "lots"})) is None


def test_model_turn_and_user_message() -> None:
    assert cf.model_of(ev("turn_context", {"model": "gpt-5.1-codex", "turn_id": "t1"})) == "gpt-5.1-codex"
    assert cf.model_of(ev("event_msg", {"type": "thread_settings_applied", "thread_settings": {"model": "m2"}})) == "m2"
    assert cf.model_of(ev("turn_context", {"model": ""})) is None
    assert cf.turn_started(ev("event_msg", {"type": "task_started", "turn_id": "t2"})) == "t2"
    assert cf.turn_started(ev("event_msg", {"type": "task_complete", "turn_id": "t2"})) is None
    user = ev("response_item", {"type": "message", "role": "user",
                                "content": [{"type": "input_text", "text": "hi"}, 3]})
    assert cf.user_message_text(user) == "hi"
    assert cf.user_message_text(ev("response_item", {"type": "message", "role": "assistant", "content": []})) is None
    assert cf.line_kind(user) == "message" and cf.line_kind({"type": "world_state", "payload": {}}) == "world_state"


def test_tool_call_output_and_exit() -> None:
    call = cf.tool_call(ev("response_item", {"type": "function_call", "name": "exec_command", "arguments": "{}",
                                             "call_id": "c1"}))
    assert call == cf.ToolCall("c1", "exec_command", "{}", None)
    shell = cf.tool_call(ev("response_item", {"type": "local_shell_call", "id": "c2", "action": {"cmd": "ls"}}))
    assert shell == cf.ToolCall("c2", "local_shell_call", {"cmd": "ls"}, None)
    assert cf.tool_output(ev("response_item", {"type": "function_call_output", "call_id": "c1", "output": "ok"})) \
        == cf.ToolOutput("c1", "ok")
    assert cf.tool_exit(ev("event_msg", {"type": "exec_command_end", "call_id": "c1", "exit_code": 3})) \
        == cf.ToolExit("c1", 3, None)
    assert cf.tool_exit(ev("event_msg", {"type": "item_completed", "item": "x"})) is None


def test_exec_events_never_raise() -> None:
    started = cf.exec_event({"type": "thread.started", "thread_id": THREAD})
    assert started == cf.ExecEvent("thread.started", thread_id=THREAD)
    done = cf.exec_event({"type": "turn.completed", "usage": {"input_tokens": "12", "output_tokens": "many"}})
    assert done is not None and done.usage == (12, 0, 0, 0)
    assert cf.exec_event({"type": "turn.failed", "error": {"message": "boom"}}).error == "boom"  # type: ignore[union-attr]
    assert cf.exec_event([1]) is None and cf.exec_event({"type": 3}) is None
    fold = exec_events.ExecFold()
    assert fold.feed(b"not json") == {} and fold.feed(b'{"type":"error","message":"x"}') == {} and fold.error == "x"


def test_rollout_names() -> None:
    assert cf.thread_of_name(f"/s/rollout-2026-11-20T10-00-00-{THREAD}.jsonl") == THREAD
    assert cf.thread_of_name(f"rollout-x-{THREAD}.jsonl.zst") == THREAD
    assert cf.thread_of_name(f"rollout-x-{THREAD.upper()}.jsonl") is None
    assert cf.thread_of_name(f"rollout-x-{THREAD}.json") is None
    assert cf.thread_of_name("rollout-x-019a0000-0000-7000-8000-00000000abcg.jsonl") is None
    assert cf.is_rollout_name("rollout-a.jsonl") and cf.is_rollout_name("rollout-a.jsonl.zst")
    assert not cf.is_rollout_name("rollout-a.json") and not cf.is_rollout_name("x-rollout-a.jsonl")


def test_usage_spans_pick_only_usage_lines() -> None:
    lines = [orjson.dumps(ev("session_meta", {"id": THREAD})), orjson.dumps(ev("response_item", {"type": "message"})),
             orjson.dumps(ev("event_msg", {"type": "token_count", "info": None})),
             orjson.dumps(ev("token_usage_record", {"usage": {}})), orjson.dumps(ev("turn_context", {"model": "m"}))]
    chunk = b"\n".join(lines) + b"\n"
    picked = [chunk[a:b] for a, b in cf.usage_spans(chunk, len(chunk) - 1, has_records=False)]
    assert picked == [lines[0], lines[2], lines[3], lines[4]]
    assert [chunk[a:b] for a, b in cf.usage_spans(chunk, len(chunk) - 1, has_records=True)] == \
        [lines[0], lines[3], lines[4]]


def test_module_is_import_light() -> None:
    """The guard hook may import it under `python -I -S`: nothing beyond `os`, which the guard loads anyway."""
    code = ("import os, sys, __future__; before = set(sys.modules); sys.path.insert(0, sys.argv[1]);"
            "import supervisor.observe.codex_format;"
            "print(sorted(m for m in set(sys.modules) - before if not m.startswith('supervisor')))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(Path(__file__).resolve().parents[1])],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- against the real binary ----------------------------------------------------------------------

def codex_argv(binary: Path, base_url: str, workspace: Path, prompt: str) -> list[str]:
    flags = ['model_provider="scripted"', 'model="gpt-5.1-codex"', 'model_providers.scripted.name="scripted"',
             f'model_providers.scripted.base_url="{base_url}"', 'model_providers.scripted.wire_api="responses"',
             "allow_login_shell=false", "check_for_update_on_startup=false"]
    argv = [str(binary), "exec", "--json", "--skip-git-repo-check", "-C", str(workspace),
            "--dangerously-bypass-approvals-and-sandbox", "--dangerously-bypass-hook-trust"]
    for flag in flags:
        argv += ["-c", flag]
    return argv + [prompt]


@pytest.mark.codex
def test_real_codex_speaks_the_formats_we_name(codex: Path, scripted_model: Any, tmp_path: Path) -> None:
    server = scripted_model(SCRIPT)
    home = Path(os.environ["CODEX_HOME"])
    workspace = tmp_path / "ws"
    workspace.mkdir()
    hook_dump = tmp_path / "hook-payloads.jsonl"
    dump = f"import sys; open({str(hook_dump)!r}, 'a').write(sys.stdin.read().strip() + chr(10))"
    hook = f'{sys.executable} -c "{dump}"'
    (home / "hooks.json").write_text(json.dumps({"hooks": {
        event: [{"matcher": ".*", "hooks": [{"type": "command", "command": hook, "timeout": 10}]}]
        for event in (cf.Hook.PRE_TOOL_USE, cf.Hook.POST_TOOL_USE, cf.Hook.STOP)}}))
    done = subprocess.run(codex_argv(codex, server.base_url, workspace, "[ao-task:shape] say hello"),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    # `codex exec --json`: the kinds we name, and a fold that ends with the ledger's running total
    events = [cf.exec_event(orjson.loads(line)) for line in done.stdout.splitlines() if line.strip()]
    assert all(e is not None for e in events)
    kinds = [e.kind for e in events]  # type: ignore[union-attr]
    assert kinds[0] == cf.Exec.THREAD_STARTED and set(kinds) <= set(vars(cf.Exec).values())
    assert {cf.Exec.TURN_STARTED, cf.Exec.ITEM_COMPLETED, cf.Exec.TURN_COMPLETED} <= set(kinds)
    thread = events[0].thread_id  # type: ignore[union-attr]
    served = read_ledger(server.ledger.path)
    want = tuple(sum(e["usage"][k] for e in served) for k in ("input", "cached_input", "output", "reasoning"))
    fold, changes = exec_events.ExecFold(), {}
    for line in done.stdout.splitlines():
        changes.update(fold.feed(line))
    assert fold.thread_id == thread and (changes["input"], changes["cached_input"], changes["output"],
                                         changes["reasoning"]) == want

    # the rollout: every line has the envelope and a type we name; each reader finds its part
    path = locate.find_rollout(thread, home)
    assert path is not None and cf.thread_of_name(str(path)) == thread and cf.is_rollout_name(path.name)
    warnings: list[str] = []
    lines = [line for _, line in rollout.read_lines(path, warnings)]
    assert warnings == []
    assert all(set(line) >= {cf.TIMESTAMP, cf.TYPE, cf.PAYLOAD} for line in lines)
    named = {v for k, v in vars(cf.Line).items() if not k.startswith("_")}
    assert {line[cf.TYPE] for line in lines} <= named
    meta = cf.session_meta(lines[0])
    assert meta is not None and meta.thread_id == thread and meta.cwd == str(workspace) and meta.forked_from is None
    records = [r for r in map(cf.usage_record, lines) if r is not None]
    assert [r.response_id for r in records] == [e["response_id"] for e in served]
    counts = [c for c in map(cf.token_count, lines) if c is not None]
    assert counts and counts[-1].total == want
    assert {cf.model_of(line) for line in lines} - {None} == {"gpt-5.1-codex"}
    assert any(cf.user_message_text(line) == "[ao-task:shape] say hello" for line in lines)
    assert locate.user_messages(path, 0)[0][-1] == "[ao-task:shape] say hello"
    calls = [c for c in map(cf.tool_call, lines) if c is not None]
    outputs = [o for o in map(cf.tool_output, lines) if o is not None]
    assert [c.tool for c in calls] == ["exec_command"] and [o.call_id for o in outputs] == [calls[0].call_id]
    assert [(r.tool, r.exit_code, r.status) for r in receipts.receipts_from_lines(lines)] == \
        [("exec_command", 0, "completed")]
    kinds_seen = {cf.line_kind(line) for line in lines}
    assert {cf.Event.TASK_STARTED, cf.Event.TASK_COMPLETE, cf.Event.TOKEN_COUNT, cf.Item.FUNCTION_CALL,
            cf.Item.FUNCTION_CALL_OUTPUT} <= kinds_seen
    got, file_fold = usage.fold_lines(lines)
    assert tuple(sum(getattr(u, k) for u in got) for k in usage.TOKEN_KEYS) == want
    assert file_fold.thread_id == thread

    # hook payloads: the field names the guard reads
    payloads = [json.loads(line) for line in hook_dump.read_text().splitlines() if line.strip()]
    by_event = {p[cf.Hook.EVENT_NAME]: p for p in payloads}
    assert {cf.Hook.PRE_TOOL_USE, cf.Hook.POST_TOOL_USE, cf.Hook.STOP} <= set(by_event)
    pre = by_event[cf.Hook.PRE_TOOL_USE]
    assert pre[cf.Hook.SESSION_ID] == thread and Path(pre[cf.Hook.TRANSCRIPT_PATH]) == path
    assert pre[cf.Hook.TOOL_NAME] == cf.Hook.SHELL_TOOL and "echo hello-from-tool" in pre[cf.Hook.TOOL_INPUT]["command"]
    assert {cf.Hook.CWD, cf.Hook.MODEL, cf.Hook.TURN_ID, cf.Hook.PERMISSION_MODE, cf.Hook.TOOL_USE_ID} <= set(pre)
    assert cf.Hook.TOOL_RESPONSE in by_event[cf.Hook.POST_TOOL_USE]
    assert cf.Hook.LAST_ASSISTANT_MESSAGE in by_event[cf.Hook.STOP]
