"""Parse and validate a model script: tasks made of steps (run, edit, say, refuse, call) with usage."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from supervisor.errors import FatalError

MARKER = re.compile(r"\[ao-task:([A-Za-z0-9_.\-]+)\]")
USAGE_KEYS = ("input", "cached_input", "output", "reasoning")
STEP_KINDS = ("run", "edit", "say", "refuse", "call")
# `message` on a run or call step: an assistant message sent in the same response, before the call


@dataclass(frozen=True)
class Usage:
    input: int
    cached_input: int
    output: int
    reasoning: int

    @property
    def total(self) -> int:
        return self.input + self.output

    def as_api(self) -> dict[str, Any]:
        return {"input_tokens": self.input,
                "input_tokens_details": {"cached_tokens": self.cached_input},
                "output_tokens": self.output,
                "output_tokens_details": {"reasoning_tokens": self.reasoning},
                "total_tokens": self.total}


@dataclass(frozen=True)
class Step:
    kind: str          # run | edit | say | refuse | call
    text: str          # the command, the message, the refusal, or a call's arguments (JSON)
    usage: Usage
    tool: str | None = None     # call: the function name the model calls (e.g. mcp__ao__register_intent_plan)
    message: str | None = None  # run/call: an assistant message before the call, in the same response
    namespace: str | None = None  # call: the tool's namespace (codex 0.169.0 offers MCP tools as `mcp__<server>`)


@dataclass
class Task:
    name: str
    steps: list[Step]
    followup: list[Step] = field(default_factory=list)
    loop: bool = False  # start the steps again instead of ending the turn: a turn that never ends


@dataclass
class Script:
    tasks: dict[str, Task]
    default_task: str | None
    source: str


DEFAULT_USAGE = Usage(1000, 0, 50, 0)


def _usage(raw: Any, where: str, default: Usage) -> Usage:
    if raw is None:
        return default
    if not isinstance(raw, dict):
        raise FatalError(f"{where}: usage must be a mapping with {', '.join(USAGE_KEYS)}")
    extra = set(raw) - set(USAGE_KEYS)
    if extra:
        raise FatalError(f"{where}: unknown usage key {sorted(extra)[0]}; allowed: {', '.join(USAGE_KEYS)}")
    values = {}
    for key in USAGE_KEYS:
        value = raw.get(key, getattr(default, key))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise FatalError(f"{where}: usage.{key} must be a non-negative integer, got {value!r}")
        values[key] = value
    if values["cached_input"] > values["input"]:
        raise FatalError(f"{where}: usage.cached_input cannot exceed usage.input")
    if values["reasoning"] > values["output"]:
        raise FatalError(f"{where}: usage.reasoning cannot exceed usage.output")
    return Usage(**values)


def _edit_command(raw: Any, where: str) -> str:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) \
            or not isinstance(raw.get("content", ""), str):
        raise FatalError(f"{where}: edit needs `path` (string) and `content` (string)")
    op = ">>" if raw.get("append") else ">"
    path = raw["path"]
    parent = str(Path(path).parent)
    mkdir = f"mkdir -p {shlex.quote(parent)} && " if parent not in (".", "") else ""
    return f"{mkdir}printf '%s' {shlex.quote(raw.get('content', ''))} {op} {shlex.quote(path)}"


def _step(raw: Any, where: str, default: Usage) -> Step:
    if not isinstance(raw, dict):
        raise FatalError(f"{where}: a step is a mapping with one of {', '.join(STEP_KINDS)}")
    kinds = [k for k in STEP_KINDS if k in raw]
    extra = set(raw) - set(STEP_KINDS) - {"usage", "message"}
    if len(kinds) != 1 or extra:
        raise FatalError(f"{where}: a step needs exactly one of {', '.join(STEP_KINDS)} (and optional usage)")
    kind = kinds[0]
    usage = _usage(raw.get("usage"), where, default)
    message = raw.get("message")
    if message is not None and (kind not in ("run", "edit", "call") or not isinstance(message, str)):
        raise FatalError(f"{where}: `message` is a string, and only on a run, edit or call step")
    if kind == "edit":
        return Step("run", _edit_command(raw["edit"], where), usage, message=message)
    if kind == "call":
        call = raw["call"]
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"] \
                or not isinstance(call.get("arguments", {}), dict) or set(call) - {"name", "arguments", "namespace"} \
                or not isinstance(call.get("namespace", ""), str):
            raise FatalError(f"{where}: call needs `name` (the tool's function name), `arguments` (a mapping) "
                             "and, for a tool in a namespace such as mcp__ao, `namespace`")
        import json

        return Step("call", json.dumps(call.get("arguments", {})), usage, tool=call["name"], message=message,
                    namespace=call.get("namespace"))
    if not isinstance(raw[kind], str):
        raise FatalError(f"{where}: `{kind}` must be a string")
    return Step(kind, raw[kind], usage, message=message)


def _steps(raw: Any, where: str, default: Usage) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise FatalError(f"{where}: steps must be a non-empty list")
    return [_step(item, f"{where}[{i}]", default) for i, item in enumerate(raw)]


def parse(doc: Any, source: str = "<script>") -> Script:
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), dict) or not doc["tasks"]:
        raise FatalError(f"{source}: a model script needs a `tasks:` mapping of task name to steps")
    extra = set(doc) - {"tasks", "default_task", "default_usage"}
    if extra:
        raise FatalError(f"{source}: unknown key {sorted(extra)[0]}; allowed: tasks, default_task, default_usage")
    default = _usage(doc.get("default_usage"), f"{source}: default_usage", DEFAULT_USAGE)
    tasks: dict[str, Task] = {}
    for name, body in doc["tasks"].items():
        where = f"{source}: tasks.{name}"
        if not isinstance(body, dict) or "steps" not in body or set(body) - {"steps", "followup", "loop"}:
            raise FatalError(f"{where}: a task is a mapping with `steps` (and optional `followup`, `loop`)")
        if not isinstance(body.get("loop", False), bool):
            raise FatalError(f"{where}: `loop` must be true or false")
        followup = _steps(body["followup"], f"{where}.followup", default) if "followup" in body else []
        tasks[str(name)] = Task(str(name), _steps(body["steps"], f"{where}.steps", default), followup,
                                bool(body.get("loop", False)))
    default_task = doc.get("default_task")
    if default_task is not None and default_task not in tasks:
        raise FatalError(f"{source}: default_task {default_task!r} is not one of the tasks")
    return Script(tasks, default_task, source)


def load(path: Path) -> Script:
    try:
        doc = YAML(typ="safe").load(path.read_text())
    except OSError as exc:
        raise FatalError(f"cannot read model script {path}: {exc.strerror}") from None
    except YAMLError as exc:
        raise FatalError(f"{path}: invalid YAML: {exc}") from None
    return parse(doc, str(path))


def load_text(text: str, source: str) -> Script:
    return parse(YAML(typ="safe").load(text), source)
