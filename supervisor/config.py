"""agent-orchestrator.yaml: lookup, schema validation with file:line errors, get/set in place."""
from __future__ import annotations

import copy
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.errors import FatalError

CONFIG_NAME = "agent-orchestrator.yaml"
APPROVALS = ["skip", "auto-edit", "suggest"]
SANDBOXES = ["read-only", "workspace-write", "danger-full-access"]
EFFORTS = ["minimal", "low", "medium", "high", "xhigh"]

# A schema node is one of: a type name ("str", "int", "number", "bool", "any"),
# a list of allowed strings, {"keys": {...}} for a fixed mapping,
# {"values": node} for a free mapping, or {"nullable": node}.
_PROJECT = {"keys": {
    "repo": "str",
    "default_branch": "str",
    "rules": "str",
    "policy": "any",
}}
_PRICE = {"keys": {"input": "number", "cached_input": "number", "output": "number"}}
SCHEMA: dict[str, Any] = {"keys": {
    "codex": {"keys": {
        "binary": "str",
        "version": "str",
        "home": ["shared", "isolated"],
        "overrides": {"values": "any"},
    }},
    "agent": {"keys": {
        "model": "str",
        "reasoning_effort": {"nullable": EFFORTS},
        "approval": APPROVALS,
        "sandbox": SANDBOXES,
        "instructions": "str",
        "instructions_file": {"nullable": "str"},
    }},
    "provider": {"nullable": {"keys": {
        "id": "str",
        "base_url": "str",
        "wire_api": ["responses"],
        "env_key": {"nullable": "str"},
    }}},
    "runtime": ["tmux", "headless"],
    "workspace": ["worktree", "in-place"],
    "max_concurrent": "int",
    "budget_usd": {"nullable": "number"},
    "projects": {"values": _PROJECT},
    "pricing": {"values": _PRICE},
    "policy": "any",
}}

DEFAULTS: dict[str, Any] = {
    "codex": {"binary": "auto", "version": "0.169.0", "home": "shared", "overrides": {}},
    "agent": {
        "model": "gpt-5.1-codex",
        "reasoning_effort": None,
        "approval": "auto-edit",
        "sandbox": "workspace-write",
        "instructions": "",
        "instructions_file": None,
    },
    "provider": None,
    "runtime": "tmux",
    "workspace": "worktree",
    "max_concurrent": 8,
    "budget_usd": None,
    "projects": {},
    "pricing": {},
    "policy": None,
}


@dataclass
class Config:
    data: dict[str, Any]
    path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise FatalError(f"unknown config key {dotted!r}")
            node = node[part]
        return node

    def project(self, name: str | None) -> dict[str, Any]:
        if name is None:
            return {}
        projects = self.data.get("projects") or {}
        if name not in projects:
            known = ", ".join(sorted(projects)) or "none configured"
            raise FatalError(f"unknown project {name!r} (known: {known})")
        return dict(projects[name])


def _yaml() -> Any:
    from ruamel.yaml import YAML  # lazy: with no config file, ao never pays for the YAML parser
    y = YAML()  # round-trip: keeps comments and order for `ao config set`
    y.preserve_quotes = True
    return y


def find_config_file(explicit: str | None = None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FatalError(f"config file not found: {path}")
        return path
    env = os.environ.get("AO_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FatalError(f"config file not found: {path} (from $AO_CONFIG)")
        return path
    for candidate in (Path.cwd() / CONFIG_NAME, paths.ao_home() / CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def _line_of(parent: Any, key: Any) -> int | None:
    try:
        return parent.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        try:
            return parent.lc.line + 1
        except AttributeError:
            return None


def _describe(node: Any) -> str:
    if isinstance(node, list):
        return "one of " + ", ".join(node)
    if isinstance(node, dict):
        if "nullable" in node:
            return _describe(node["nullable"]) + " or null"
        if "keys" in node:
            return "a mapping with keys " + ", ".join(node["keys"])
        return "a mapping"
    return {"str": "a string", "int": "an integer", "number": "a number",
            "bool": "true or false", "any": "any value"}[node]


def _check(value: Any, node: Any, where: str, file: str, line: int | None) -> None:
    loc = f"{file}:{line}" if line else file
    if isinstance(node, dict) and "nullable" in node:
        if value is None:
            return
        node = node["nullable"]
    ok = True
    if node == "any":
        return
    if isinstance(node, list):
        ok = isinstance(value, str) and value in node
    elif node == "str":
        ok = isinstance(value, str)
    elif node == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif node == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif node == "bool":
        ok = isinstance(value, bool)
    elif isinstance(node, dict):
        if not isinstance(value, dict):
            ok = False
        elif "keys" in node:
            for key, sub in value.items():
                sub_line = _line_of(value, key) or line
                if key not in node["keys"]:
                    raise FatalError(
                        f"{file}:{sub_line}: unknown key {where + '.' if where else ''}{key}; "
                        f"allowed keys: {', '.join(node['keys'])}")
                _check(sub, node["keys"][key], f"{where}.{key}" if where else str(key), file, sub_line)
        else:
            for key, sub in value.items():
                _check(sub, node["values"], f"{where}.{key}", file, _line_of(value, key) or line)
    if not ok:
        raise FatalError(f"{loc}: {where} must be {_describe(node)}, got {value!r}")


def validate(raw: Any, file: str) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise FatalError(f"{file}:1: the config must be a mapping of keys, got {type(raw).__name__}")
    _check(raw, SCHEMA, "", file, 1)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("projects", "pricing"):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_raw(path: Path) -> Any:
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    try:
        text = path.read_text()
    except OSError as exc:
        raise FatalError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise FatalError(f"{path}{line}: invalid YAML: {exc.problem or exc.context}") from None
    except YAMLError as exc:
        raise FatalError(f"{path}: invalid YAML: {exc}") from None


def load(explicit: str | None = None) -> Config:
    path = find_config_file(explicit)
    if path is None:
        return Config(copy.deepcopy(DEFAULTS), None)
    raw = load_raw(path)
    validate(raw, str(path))
    return Config(merge(DEFAULTS, _plain(raw or {})), path)


def _schema_node(dotted: str) -> Any:
    node: Any = SCHEMA
    for part in dotted.split("."):
        if isinstance(node, dict) and "nullable" in node:
            node = node["nullable"]
        if isinstance(node, dict) and "keys" in node and part in node["keys"]:
            node = node["keys"][part]
        elif isinstance(node, dict) and "values" in node:
            node = node["values"]
        else:
            raise FatalError(f"unknown config key {dotted!r}")
    return node


def parse_value(text: str) -> Any:
    """Parse a command-line value the way YAML would (numbers, booleans, null, strings)."""
    from ruamel.yaml import YAML
    value = YAML(typ="safe").load(text)
    return text if value is None and text.strip() not in ("null", "~", "") else value


def set_value(path: Path, dotted: str, text: str) -> Any:
    """Set KEY to VALUE in the file, keeping comments and order, after validating the result."""
    _schema_node(dotted)
    doc = load_raw(path) if path.exists() else None
    if doc is None:
        doc = _yaml().load("{}")
    value = parse_value(text)
    node = doc
    parts = dotted.split(".")
    for part in parts[:-1]:
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    validate(_yaml().load(_dump(doc)), str(path))
    paths.atomic_write(path, _dump(doc))
    return value


def _dump(doc: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()
