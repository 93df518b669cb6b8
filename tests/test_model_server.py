"""The scripted model: script parsing, task/step choice, ledger, and 4xx on malformed requests."""
from __future__ import annotations

import http.client
import json
import threading

import pytest

from supervisor.errors import FatalError
from supervisor.model import script as script_mod
from supervisor.model.server import plan_reply, read_ledger

SCRIPT = """
default_usage: {input: 100, cached_input: 10, output: 5, reasoning: 1}
default_task: b
tasks:
  a:
    steps:
      - run: echo one
        usage: {input: 1000, cached_input: 200, output: 30, reasoning: 7}
      - edit: {path: "dir with space/it's.txt", content: "x'y\\n$(no)"}
      - say: finished a
    followup:
      - say: second turn of a
  b:
    steps:
      - say: hello from b
"""


def prompt(text):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


ENV = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>x</environment_context>"}]}


def output(n):
    return {"type": "function_call_output", "call_id": f"c{n}", "output": "ok"}


def test_parse_and_usage_defaults():
    s = script_mod.load_text(SCRIPT, "s.yaml")
    assert list(s.tasks) == ["a", "b"]
    assert s.tasks["a"].steps[0].usage == script_mod.Usage(1000, 200, 30, 7)
    assert s.tasks["a"].steps[2].usage == script_mod.Usage(100, 10, 5, 1)
    edit = s.tasks["a"].steps[1]
    assert edit.kind == "run" and edit.text.startswith("mkdir -p 'dir with space' && printf")


@pytest.mark.parametrize("text, message", [
    ("tasks: {}\n", "needs a `tasks:` mapping"),
    ("tasks:\n  a:\n    steps: []\n", "steps must be a non-empty list"),
    ("tasks:\n  a:\n    steps:\n      - dance: now\n", "exactly one of run, edit, say, refuse"),
    ("tasks:\n  a:\n    steps:\n      - say: hi\n        usage: {input: -1}\n", "usage.input must be a non-negative integer"),
    ("tasks:\n  a:\n    steps:\n      - say: hi\n        usage: {input: 5, cached_input: 9}\n", "cannot exceed usage.input"),
    ("tasks:\n  a:\n    steps:\n      - edit: {content: x}\n", "edit needs `path`"),
    ("default_task: zz\ntasks:\n  a:\n    steps:\n      - say: hi\n", "default_task 'zz' is not one of the tasks"),
])
def test_bad_scripts_are_clear_errors(text, message):
    with pytest.raises(FatalError, match=message):
        script_mod.load_text(text, "s.yaml")


TOOLS = [{"type": "function", "name": "exec_command"}]


def test_a_request_that_offers_no_tools_gets_words_not_a_call():
    """Like the TUI's thread-title request: a model cannot call a tool it was not offered."""
    s = script_mod.load_text(SCRIPT, "s.yaml")
    step = plan_reply(s, {"input": [ENV, prompt("[ao-task:a] go")]}, None)[2]
    assert step.kind == "say" and step.usage == s.tasks["a"].steps[0].usage


def test_step_follows_conversation_state():
    s = script_mod.load_text(SCRIPT, "s.yaml")
    body = {"input": [ENV, prompt("[ao-task:a] go")], "tools": TOOLS}
    assert plan_reply(s, body, None)[1:] == (0, s.tasks["a"].steps[0])
    body["input"] += [output(1)]
    assert plan_reply(s, body, None)[1] == 1
    body["input"] += [output(2)]
    assert plan_reply(s, body, None)[2].text == "finished a"
    body["input"] += [{"type": "message", "role": "assistant", "content": []}, prompt("and then?")]
    assert plan_reply(s, body, None)[2].text == "second turn of a"
    assert plan_reply(s, {"input": [prompt("no marker")]}, None)[0].name == "b"
    assert plan_reply(s, {"input": [prompt("[ao-task:a] x")]}, "b")[0].name == "b"


def _post(server, path, body, headers=None):
    host, port = server.server_address[:2]
    con = http.client.HTTPConnection(host, port, timeout=10)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    con.request("POST", path, raw, {"content-type": "application/json", **(headers or {})})
    resp = con.getresponse()
    return resp.status, resp.read().decode()


def test_malformed_requests_get_4xx_and_server_survives(scripted_model):
    server = scripted_model(SCRIPT)
    assert _post(server, "/v1/responses", b"{not json")[0] == 400
    assert _post(server, "/v1/responses", {"input": "text"})[0] == 400
    assert _post(server, "/v1/responses", {"input": []})[0] == 400
    status, body = _post(server, "/v1/responses", {"input": [prompt("[ao-task:nope] x")]})
    assert status == 400 and "unknown task 'nope'" in body
    assert _post(server, "/v1/other", {"input": []})[0] == 404
    status, body = _post(server, "/v1/responses", {"model": "m", "input": [prompt("[ao-task:b] hi")]})
    assert status == 200 and "hello from b" in body and "response.completed" in body


def test_parallel_agents_each_follow_their_task_and_ledger_is_exact(scripted_model, tmp_path):
    server = scripted_model(SCRIPT)
    results = []

    def agent(n):
        task = "a" if n % 2 else "b"
        results.append(_post(server, "/v1/responses", {"model": "gpt-5", "input": [prompt(f"[ao-task:{task}] go")]},
                             {"thread-id": f"t{n}"}))

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status == 200 for status, _ in results)
    ledger = read_ledger(tmp_path / "ledger-0.jsonl")
    assert len(ledger) == 40 and len({e["response_id"] for e in ledger}) == 40
    by_thread = {e["thread_id"]: e for e in ledger}
    assert by_thread["t1"]["task"] == "a" and by_thread["t1"]["usage"]["input"] == 1000
    assert by_thread["t2"]["task"] == "b" and by_thread["t2"]["usage"]["total"] == 105


def test_route_picks_the_task(scripted_model):
    server = scripted_model(SCRIPT)
    status, body = _post(server, "/task/a/v1/responses", {"input": [prompt("no marker here")], "tools": TOOLS})
    assert status == 200 and "echo one" in body
