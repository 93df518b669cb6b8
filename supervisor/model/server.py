"""The scripted Responses API server: each agent follows its own task; every reply goes to a ledger."""
from __future__ import annotations

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from supervisor.model.script import MARKER, Script, Step, Task

MAX_BODY = 64 * 1024 * 1024


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _texts(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(c.get("text", "") for c in content if isinstance(c, dict) and isinstance(c.get("text"), str))
    return ""


def _is_prompt(item: dict[str, Any]) -> bool:
    """A user turn typed by a person, not the environment context codex injects."""
    if item.get("type", "message") != "message" or item.get("role") != "user":
        return False
    text = _texts(item).lstrip()
    return not (text.startswith("<environment_context>") or text.startswith("<user_instructions>")
                or text.startswith("# AGENTS.md"))


def plan_reply(script: Script, body: Any, route: str | None) -> tuple[Task, int, Step]:
    """Pick the task (route, else the newest marker in a prompt, else the default) and the step."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), list):
        raise BadRequest(400, "request body must be a JSON object with an `input` list")
    items = [i for i in body["input"] if isinstance(i, dict)]
    prompts = [n for n, item in enumerate(items) if _is_prompt(item)]
    if not prompts:
        raise BadRequest(400, "request has no user message")
    task_name, marker_at = route, None
    if task_name is None:
        for n in reversed(prompts):
            found = MARKER.findall(_texts(items[n]))
            if found:
                task_name, marker_at = found[-1], n
                break
    if task_name is None:
        task_name, marker_at = script.default_task, prompts[0]
    if task_name is None:
        raise BadRequest(400, "no task matched: put [ao-task:NAME] in the prompt or use a /task/NAME/v1 route")
    task = script.tasks.get(task_name)
    if task is None:
        raise BadRequest(400, f"unknown task {task_name!r}; the script has {', '.join(sorted(script.tasks))}")
    first = marker_at if marker_at is not None else prompts[0]
    turn = sum(1 for n in prompts if n > first) if route is None else len(prompts) - 1
    steps = task.steps if turn == 0 or not task.followup else task.followup
    last_prompt = prompts[-1]
    outputs = ("function_call_output", "custom_tool_call_output")
    done = sum(1 for item in items[last_prompt:] if item.get("type") in outputs)
    step = steps[done] if done < len(steps) else steps[done % len(steps)] if task.loop \
        else Step("say", "Done.", steps[-1].usage)
    if step.kind in ("run", "call") and not body.get("tools"):
        # a side request that offers no tools (the TUI's thread title): a model can only answer in words
        step = Step("say", step.message or "Done.", step.usage)
    return task, done, step


class Ledger:
    """Append-only JSONL of every response served; one write per line so readers never see a torn line."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, entry: dict[str, Any]) -> None:
        if self.path is None:
            return
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self.lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Responses served, without those retracted as undelivered."""
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    undelivered = {e["response_id"] for e in entries if e.get("undelivered")}
    return [e for e in entries if not e.get("undelivered") and e["response_id"] not in undelivered]



class ScriptedModel(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # many agents connect at once; the default backlog of 5 resets them

    def __init__(self, script: Script, host: str = "127.0.0.1", port: int = 0,
                 ledger: Path | None = None, model: str | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.script = script
        self.ledger = Ledger(ledger)
        self.model_name = model

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}/v1"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="scripted-model", daemon=True)
        thread.start()
        return thread


def _route(path: str) -> tuple[str | None, str]:
    """`/task/NAME/v1/responses` routes to task NAME; `/v1/responses` chooses by marker."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if len(parts) >= 2 and parts[0] == "task":
        return parts[1], "/" + "/".join(parts[2:])
    return None, "/" + "/".join(parts)


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedModel
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

    def do_GET(self) -> None:
        _, rest = _route(self.path)
        if rest.endswith("/models"):
            self._json(200, {"object": "list", "data": [], "models": []})
        else:
            self._error(404, f"no such endpoint: GET {self.path}")

    def do_POST(self) -> None:
        route, rest = _route(self.path)
        try:
            length = int(self.headers.get("content-length") or -1)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._error(411 if length < 0 else 413, "request needs a content-length up to 64 MiB")
            return
        raw = self.rfile.read(length)
        if not rest.endswith("/responses"):
            self._error(404, f"no such endpoint: POST {self.path}; use /v1/responses")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "request body is not valid JSON")
            return
        try:
            task, index, step = plan_reply(self.server.script, body, route)
        except BadRequest as exc:
            self._error(exc.status, str(exc))
            return
        if step.kind == "refuse":
            self._error(400, step.text)
            return
        self._stream(body, task, index, step)

    def _stream(self, body: dict[str, Any], task: Task, index: int, step: Step) -> None:
        response_id = "resp_" + uuid.uuid4().hex
        model = self.server.model_name or str(body.get("model") or "unknown")
        items: list[dict[str, object]] = []
        if step.message is not None:  # said before the call, in the same response
            items.append({"type": "message", "role": "assistant", "id": "msg_" + uuid.uuid4().hex,
                          "content": [{"type": "output_text", "text": step.message}]})
        if step.kind in ("run", "call"):
            items.append({"type": "function_call", "id": "fc_" + uuid.uuid4().hex,
                          "name": step.tool if step.kind == "call" else "exec_command",
                          "arguments": step.text if step.kind == "call" else json.dumps({"cmd": step.text}),
                          "call_id": "call_" + uuid.uuid4().hex,
                          **({"namespace": step.namespace} if step.namespace else {})})
        else:
            items.append({"type": "message", "role": "assistant", "id": "msg_" + uuid.uuid4().hex,
                          "content": [{"type": "output_text", "text": step.text}]})
        events: list[tuple[str, dict[str, object]]] = [
            ("response.created", {"response": {"id": response_id, "model": model}}),
            *[("response.output_item.done", {"output_index": n, "item": item}) for n, item in enumerate(items)],
            ("response.completed", {"response": {"id": response_id, "model": model,
                                                 "usage": step.usage.as_api()}}),
        ]
        chunks = b"".join(
            f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode() for name, data in events)
        u = step.usage
        # Recorded before the bytes go out, so a reader that saw the reply also sees its ledger line;
        # a reply that could not be delivered is then retracted.
        self.server.ledger.record({
            "response_id": response_id, "model": model, "task": task.name, "step": index,
            "kind": step.kind, "thread_id": self.headers.get("thread-id") or self.headers.get("session-id"),
            "usage": {"input": u.input, "cached_input": u.cached_input, "output": u.output,
                      "reasoning": u.reasoning, "total": u.total},
        })
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(chunks)))
            self.end_headers()
            self.wfile.write(chunks)
            self.wfile.flush()
        except OSError:
            self.server.ledger.record({"response_id": response_id, "undelivered": True})


class RecordingHandler(_Handler):
    """The handler that also keeps every request body: all that reached the model (tests grep it for
    secrets an agent may have tried to send)."""
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        import io

        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        type(self).bodies.append(raw)
        self.rfile = io.BytesIO(raw)
        super().do_POST()
