"""Intent plans: normalize, hash, find in agent messages, and check each tool call against them.

A plan is `{goal, steps: [{action, description, metadata: {inputs}}]}`, registered through ao's
`register_intent_plan` MCP tool (plan_mcp.py) or written as a fenced JSON block in any agent
message. Each step's `action` maps to a tool family:

| action words                                                  | tool          | inputs matched              |
|---------------------------------------------------------------|---------------|-----------------------------|
| shell, bash, sh, run, exec, exec_command, command, terminal…  | `shell`       | `command`, `cmd`, `commands` |
| apply_patch, patch, edit, write, create, modify, update, …    | `apply_patch` | `paths`, `path`, `files`, `file` |
| `mcp__<server>__<tool>` or anything else                      | that name     | the call's own input keys   |
(SHELL_ACTIONS and PATCH_ACTIONS below are the full lists.)

A shell pattern matches the command exactly, or as a prefix by whole words; `*` and `?` are
wildcards. Neither a prefix's rest nor a wildcard may hold a shell control character (`;&|<>$` and
backquote, newline), so `git status` never lets `git status; curl …` through. Patch paths are
resolved against the call's cwd and compared with fnmatch. A step whose input keys are not the
tool's real input shape matches on the tool name alone (`how` says so).
Everything here is pure; `PlanState` is what the guard server holds, behind its own lock.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from supervisor.digest import sha256

SERVER_NAME = "ao"
REGISTER_TOOL = f"mcp__{SERVER_NAME}__register_intent_plan"
UPDATE_PLAN = "update_plan"
MAX_STEPS = 200
MAX_TEXT = 4000
SHELL, PATCH = "shell", "apply_patch"
SHELL_ACTIONS = frozenset({"shell", "bash", "sh", "run", "exec", "exec_command", "command", "terminal", "execute",
                           "local_shell", "cmd", "container.exec"})
PATCH_ACTIONS = frozenset({"apply_patch", "patch", "edit", "write", "write_file", "create", "create_file", "modify",
                           "update", "update_file", "delete", "delete_file"})
# the names codex has used for its shell tool (guard.SHELL_TOOLS) and for file edits
SHELL_TOOLS = frozenset({"bash", "shell", "local_shell", "exec_command", "container.exec"})
PATCH_TOOLS = frozenset({"apply_patch", "edit", "write", "multiedit"})
COMMAND_KEYS = ("command", "cmd", "commands")
PATH_KEYS = ("paths", "path", "files", "file")
CONTROL = ";&|<>$`\n\r"
NOT_IN_PLAN = "not in the registered plan; revise the plan with register_intent_plan"


@dataclass(frozen=True)
class Step:
    action: str                 # as the agent wrote it
    tool: str                   # shell, apply_patch, or a tool name (see the table above)
    description: str
    inputs: dict[str, Any]      # metadata.inputs as given (JSON values)

    def canonical(self) -> dict[str, Any]:
        # the registration's own shape (plus `tool`), so normalize(plan.canonical()) gives the plan back
        return {"action": self.action, "tool": self.tool, "description": self.description,
                "metadata": {"inputs": self.inputs}}


@dataclass(frozen=True)
class Plan:
    goal: str
    steps: tuple[Step, ...]

    def canonical(self) -> dict[str, Any]:
        return {"goal": self.goal, "steps": [s.canonical() for s in self.steps]}

    @property
    def hash(self) -> str:
        return plan_hash(self.canonical())


class Check(NamedTuple):
    allowed: bool
    reason: str
    step: int | None            # the index of the step the call matched


@dataclass(frozen=True)
class Revision:
    number: int                 # 1 for the first plan
    source: str                 # mcp | fenced_json | update_plan
    plan_hash: str
    plan: dict[str, Any]        # the canonical plan (or update_plan's arguments)
    enforced: bool              # False for update_plan: its steps name no tool, so they only attest


def plan_hash(canonical: dict[str, Any]) -> str:
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def tool_of(action: str) -> str:
    word = action.strip()
    low = word.lower()
    if low in SHELL_ACTIONS:
        return SHELL
    if low in PATCH_ACTIONS:
        return PATCH
    return word


def call_tool(tool_name: str) -> str:
    """The family of a tool name as codex reports it in PreToolUse (`Bash` -> shell)."""
    low = tool_name.lower()
    if low in SHELL_TOOLS:
        return SHELL
    if low in PATCH_TOOLS:
        return PATCH
    return tool_name


def normalize(raw: Any) -> Plan | str:
    """The plan in `raw`, or one line saying what is wrong with it."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return "the plan is not JSON"
    if not isinstance(raw, dict):
        return "a plan is an object {goal, steps: [{action, description, metadata: {inputs}}]}"
    goal = raw.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        return "the plan needs a non-empty `goal` string"
    steps = raw.get("steps")
    if not isinstance(steps, list) or not steps:
        return "the plan needs a non-empty `steps` list"
    if len(steps) > MAX_STEPS:
        return f"the plan has {len(steps)} steps; at most {MAX_STEPS}"
    out = []
    for n, item in enumerate(steps):
        if not isinstance(item, dict):
            return f"steps[{n}] is not an object"
        action = item.get("action")
        if not isinstance(action, str) or not action.strip():
            return f"steps[{n}] needs an `action` string (shell, apply_patch, or a tool name)"
        description = item.get("description", "")
        if not isinstance(description, str):
            return f"steps[{n}].description is not a string"
        metadata = item.get("metadata", {})
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            return f"steps[{n}].metadata is not an object"
        inputs = metadata.get("inputs", {})
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            return f"steps[{n}].metadata.inputs is not an object"
        try:
            inputs = json.loads(json.dumps(inputs))  # plain JSON values only, a copy nobody else holds
        except (TypeError, ValueError, RecursionError):
            return f"steps[{n}].metadata.inputs is not plain JSON"
        out.append(Step(action.strip()[:200], tool_of(action), description[:MAX_TEXT], inputs))
    return Plan(goal.strip()[:MAX_TEXT], tuple(out))


def fenced_plans(text: str) -> list[Plan]:
    """The plans written as fenced JSON blocks in one agent message, in order; other JSON is ignored."""
    found = []
    for block in re.findall(r"```(?:json|JSON)?[ \t]*\n(.*?)```", text, flags=re.S):
        plan = normalize(block.strip())
        if isinstance(plan, Plan):
            found.append(plan)
    return found


def rollout_items(chunk: bytes) -> list[tuple[str, Any]]:
    """From whole rollout lines: ("message", assistant text) and ("update_plan", arguments), in order."""
    out: list[tuple[str, Any]] = []
    for line in chunk.splitlines():
        if b'"response_item"' not in line:
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        payload = entry.get("payload") if isinstance(entry, dict) and entry.get("type") == "response_item" else None
        if not isinstance(payload, dict):
            continue
        if payload.get("type") == "message" and payload.get("role") == "assistant":
            content = payload.get("content")
            texts = [str(c["text"]) for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)] \
                if isinstance(content, list) else []
            if texts:
                out.append(("message", "\n".join(texts)))
        elif payload.get("type") == "function_call" and payload.get("name") == UPDATE_PLAN:
            arguments = payload.get("arguments")
            try:
                out.append(("update_plan", json.loads(arguments) if isinstance(arguments, str) else arguments))
            except (ValueError, RecursionError):
                out.append(("update_plan", {"unparsed": str(arguments)[:MAX_TEXT]}))
    return out


# --- matching -----------------------------------------------------------------------------------------

def _squash(text: str) -> str:
    return " ".join(text.split())


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    free = f"[^{re.escape(CONTROL)}]"
    body = "".join(f"{free}*" if c == "*" else free if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body)


def command_matches(pattern: str, command: str) -> bool:
    """Exact, a whole-word prefix whose rest holds no shell control character, or a wildcard pattern."""
    pattern, command = _squash(pattern), _squash(command)
    if not pattern:
        return False
    if "*" in pattern or "?" in pattern:
        return _pattern_regex(pattern).fullmatch(command) is not None
    if command == pattern:
        return True
    rest = command[len(pattern):]
    return command.startswith(pattern) and rest.startswith(" ") and not any(c in rest for c in CONTROL)


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _command_text(tool_input: Any) -> str | None:
    if isinstance(tool_input, str):
        return tool_input
    if isinstance(tool_input, dict):
        for key in ("command", "cmd"):
            value = tool_input.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return " ".join(value)
    return None


def _patch_targets(tool_input: Any) -> list[str]:
    from supervisor.govern.targets import patch_files

    text = _command_text(tool_input)
    if text is None and isinstance(tool_input, dict):
        text = next((v for v in tool_input.values() if isinstance(v, str) and "*** Begin Patch" in v), None)
    targets = patch_files(text or "")
    if not targets and isinstance(tool_input, dict):  # Edit/Write-shaped tools name the file
        targets = [v for k, v in tool_input.items() if k in ("file_path", "path") and isinstance(v, str)]
    return targets


def _path_matches(patterns: list[str], target: str, cwd: str) -> bool:
    full = os.path.normpath(os.path.join(cwd, target))
    return any(fnmatch.fnmatchcase(full, os.path.normpath(os.path.join(cwd, p))) for p in patterns)


def _value_matches(want: Any, got: Any) -> bool:
    if isinstance(want, str) and isinstance(got, str):
        return fnmatch.fnmatchcase(got, want) if ("*" in want or "?" in want) else got == want
    return bool(want == got)


def step_match(step: Step, tool_name: str, tool_input: Any, cwd: str) -> str | None:
    """How `step` allows the call ("inputs" or "tool name only"), or None if it does not."""
    family = call_tool(tool_name)
    if step.tool.lower() != family.lower():
        return None
    if not step.inputs:
        return "tool name only"
    if family == SHELL:
        keys = [k for k in COMMAND_KEYS if k in step.inputs]
        patterns = [p for k in keys for p in (_strings(step.inputs[k]) or [])]
        if not keys or not patterns:
            return "tool name only"
        command = _command_text(tool_input)
        if command is None:
            return None
        return "inputs" if any(command_matches(p, command) for p in patterns) else None
    if family == PATCH:
        keys = [k for k in PATH_KEYS if k in step.inputs]
        patterns = [p for k in keys for p in (_strings(step.inputs[k]) or [])]
        if not keys or not patterns:
            return "tool name only"
        targets = _patch_targets(tool_input)
        if not targets:
            return None
        return "inputs" if all(_path_matches(patterns, t, cwd) for t in targets) else None
    if not isinstance(tool_input, dict) or any(k not in tool_input for k in step.inputs):
        return "tool name only"
    return "inputs" if all(_value_matches(v, tool_input[k]) for k, v in step.inputs.items()) else None


def check(plan: Plan | None, tool_name: str, tool_input: Any, cwd: str, plan_first: bool = True) -> Check:
    """Whether the call fits the plan: the first step that matches by inputs, else by tool name only."""
    if tool_name == REGISTER_TOOL:
        return Check(True, "registering the plan is always allowed", None)
    if plan is None:
        if plan_first:
            return Check(False, "no plan is registered yet; register your plan with register_intent_plan "
                                "(or a fenced JSON block {goal, steps}) before any tool call", None)
        return Check(True, "no plan registered yet", None)
    fallback = None
    for n, step in enumerate(plan.steps):
        how = step_match(step, tool_name, tool_input, cwd or "/")
        if how == "inputs":
            return Check(True, f"matches plan step {n + 1} ({step.action}) by its inputs", n)
        if how is not None and fallback is None:
            fallback = n
    if fallback is not None:
        step = plan.steps[fallback]
        return Check(True, f"matches plan step {fallback + 1} ({step.action}) by tool name only: its inputs "
                           f"{sorted(step.inputs)} do not fit the shape of {tool_name}'s input", fallback)
    return Check(False, f"{tool_name} call {NOT_IN_PLAN}", None)


# --- what the guard server holds ------------------------------------------------------------------------

@dataclass
class PlanState:
    """The plan in force, its revisions and the enforcement switch; safe to share between threads."""
    enforce: bool = False
    plan_first: bool = False
    _plan: Plan | None = None
    _revisions: list[Revision] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def current(self) -> Plan | None:
        return self._plan

    @property
    def hash(self) -> str | None:
        plan = self._plan
        return plan.hash if plan is not None else None

    @property
    def revisions(self) -> list[Revision]:
        with self._lock:
            return list(self._revisions)

    def register(self, plan: Plan, source: str) -> Revision | None:
        """Make `plan` the one in force; None when it is the plan already in force (no new revision)."""
        with self._lock:
            if self._plan is not None and self._plan.hash == plan.hash:
                return None
            self._plan = plan
            revision = Revision(len(self._revisions) + 1, source, plan.hash, plan.canonical(), True)
            self._revisions.append(revision)
            return revision

    def note_update_plan(self, arguments: Any) -> Revision:
        """codex's own `update_plan` (steps with a status, no tool): recorded, not enforced."""
        canonical = arguments if isinstance(arguments, dict) else {"arguments": arguments}
        with self._lock:
            revision = Revision(len(self._revisions) + 1, "update_plan", plan_hash(canonical), canonical, False)
            self._revisions.append(revision)
            return revision

    def check(self, tool_name: str, tool_input: Any, cwd: str) -> Check:
        if not self.enforce:
            return Check(True, "plans are not enforced", None)
        return check(self._plan, tool_name, tool_input, cwd, self.plan_first)

    def restore(self, canonical: Any) -> None:
        """Put back the plan in force after a runner restart (from guard-state.json, which ao wrote)."""
        plan = normalize(canonical)
        if isinstance(plan, Plan):
            with self._lock:
                self._plan = plan
