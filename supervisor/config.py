"""agent-orchestrator.yaml: lookup, schema validation with file:line errors, get/set in place.

Trust: a config given with `--config` or `$AO_CONFIG`, and the user's own
`$AO_HOME/agent-orchestrator.yaml`, are the user's word. A `./agent-orchestrator.yaml` found in the
working directory is the repository's word (anyone who can commit to the repo, or an agent working
in it, wrote it): it is layered on top of the user's config and, until `ao trust PATH` records its
sha256, it may not loosen anything (see `review`). Editing the file makes it untrusted again.
"""
from __future__ import annotations

import copy
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.registry import RUNTIME_SETTINGS, RUNTIMES

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
# what the resident process (`ao watch`) can tell the user about, and how it reacts to a PR's news
NOTIFY_EVENTS = ["finished", "failed", "stalled", "approval_needed", "budget_warning", "budget_exhausted",
                 "pr_opened", "pr_merged", "ci_failed", "changes_requested", "conflict"]
REACTIONS = ["send", "notify", "ignore"]
_NOTIFY_TARGET = {"keys": {
    "type": ["desktop", "command", "webhook"],
    "name": "str",                        # shown in logs; defaults to the type
    "events": {"items": NOTIFY_EVENTS},   # empty or absent: every event
    "command": "str",                     # type command: run with the event as JSON on stdin
    "url": "str",                         # type webhook: POST JSON here
    "format": ["json", "slack"],          # webhook body: ao's JSON, or Slack's {"text": ...}
    "max_per_minute": "int",              # rate limit per target; events over it wait, none is dropped
}}
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
    "runtime": list(RUNTIMES),
    "workspace": ["worktree", "in-place"],
    "max_concurrent": "int",
    "slots": ["active", "alive"],
    "budget_usd": {"nullable": "number"},
    "stall_after_s": "number",
    "projects": {"values": _PROJECT},
    "pricing": {"values": _PRICE},
    "policy": "any",
    "notify": {"items": _NOTIFY_TARGET},
    "reactions": {"keys": {
        "poll_s": "number",
        "ci_failed": REACTIONS,
        "changes_requested": REACTIONS,
        "conflict": REACTIONS,
        "max_attempts": "int",
        "message": "str",
        "log_lines": "int",
    }},
    "dashboard": {"keys": {
        "host": "str",
        "port": "int",
        "token_file": {"nullable": "str"},
    }},
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
    # `active`: an interactive agent waiting for its user gives its slot back; `alive`: every live codex holds one
    "slots": "active",
    "budget_usd": None,
    "stall_after_s": 60,
    "projects": {},
    "pricing": {},
    "policy": None,
    "notify": [],
    "reactions": {"poll_s": 60, "ci_failed": "send", "changes_requested": "send", "conflict": "send",
                  "max_attempts": 3, "log_lines": 80,
                  "message": "{summary}\n\n{details}\n\nFix this on your branch and push again."},
    "dashboard": {"host": "127.0.0.1", "port": 8787, "token_file": None},
}
for _name, (_schema, _defaults, _) in RUNTIME_SETTINGS.items():  # a runtime's own section, e.g. `ray:`
    SCHEMA["keys"][_name] = _schema
    DEFAULTS[_name] = _defaults


@dataclass
class Config:
    data: dict[str, Any]
    path: Path | None = None
    # Every file merged into `data`, least specific first: the user's config, then the repository's.
    layers: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        """The files whose `policy:` and `budget_usd` sections apply, least specific first."""
        return list(self.layers) or ([self.path] if self.path else [])

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


def locate(explicit: str | None = None) -> tuple[Path, bool] | None:
    """The config file in lookup order, and whether it is the user's own (True) or the repository's."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FatalError(f"config file not found: {path}")
        return path, True
    env = os.environ.get("AO_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FatalError(f"config file not found: {path} (from $AO_CONFIG)")
        return path, True
    user = user_config_file()
    here = Path.cwd() / CONFIG_NAME
    if here.is_file():
        return here, user.is_file() and os.path.samefile(here, user)
    if user.is_file():
        return user, True
    return None


def user_config_file() -> Path:
    return paths.ao_home() / CONFIG_NAME


def find_config_file(explicit: str | None = None) -> Path | None:
    found = locate(explicit)
    return found[0] if found else None


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
        if "items" in node:
            return "a list"
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
    elif isinstance(node, dict) and "items" in node:
        if not isinstance(value, list):
            ok = False
        else:
            for i, item in enumerate(value):
                _check(item, node["items"], f"{where}[{i}]", file, line)
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


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FatalError(f"cannot read config {path}: {exc.strerror}") from None


def load_raw(path: Path) -> Any:
    return _parse(_read_bytes(path), path)


def _parse(raw_bytes: bytes, path: Path) -> Any:
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FatalError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise FatalError(f"{path}{line}: invalid YAML: {exc.problem or exc.context}") from None
    except YAMLError as exc:
        raise FatalError(f"{path}: invalid YAML: {exc}") from None


def load(explicit: str | None = None) -> Config:
    found = locate(explicit)
    if found is None:
        return Config(copy.deepcopy(DEFAULTS), None)
    path, users_own = found
    if users_own:
        raw = load_raw(path)
        validate(raw, str(path))
        return Config(merge(DEFAULTS, _plain(raw or {})), path, [path])
    base, layers = user_base()
    raw_bytes = _read_bytes(path)  # hashed and parsed from the same bytes: no swap in between
    raw = _parse(raw_bytes, path)
    validate(raw, str(path))
    from supervisor import trust_store  # lazy: only a repository config needs it
    if not trust_store.is_trusted(path, trust_store.digest(raw_bytes)):
        refusals = review(raw, base, str(path))
        if refusals:
            raise FatalError(refusals[0].message())
    return Config(merge(base, _plain(raw or {})), path, [*layers, path])


def user_base() -> tuple[dict[str, Any], list[Path]]:
    """The defaults with the user's own config merged in: what a repository config is layered on."""
    user = user_config_file()
    if not user.is_file():
        return copy.deepcopy(DEFAULTS), []
    raw = load_raw(user)
    validate(raw, str(user))
    return merge(DEFAULTS, _plain(raw or {})), [user]


# What an untrusted repository config may not do. Each rule errs on the side of refusing: the
# repository (or an agent that edited it) must never get more than the user's own config grants.
APPROVAL_STRENGTH = {"skip": 0, "auto-edit": 1, "suggest": 2}
SANDBOX_STRENGTH = {"danger-full-access": 0, "workspace-write": 1, "read-only": 2}
# codex -c keys a repository may set: display and model tuning only. An allow-list, so a key a new
# codex version adds (another hook, notifier, provider or sandbox knob) is refused until reviewed.
SAFE_OVERRIDES = frozenset({
    "model_reasoning_effort", "model_reasoning_summary", "model_verbosity", "model_context_window",
    "model_auto_compact_token_limit", "hide_agent_reasoning", "show_raw_agent_reasoning",
    "project_doc_max_bytes",
})
# Policy keys that only add restrictions: their lists add up on top of the user's rules.
ADDITIVE_POLICY = frozenset({"forbidden_commands", "forbidden_paths", "approval_required", "mcp"})
_PLAIN_VERSION = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?")


@dataclass
class Refusal:
    file: str
    line: int | None
    key: str
    why: str

    def message(self) -> str:
        import shlex
        loc = f"{self.file}:{self.line}" if self.line else self.file
        return (f"{loc}: {self.key}: {self.why}, which an untrusted repository config may not do; "
                f"if you wrote this file and accept it, run `ao trust {shlex.quote(self.file)}`")


def review(raw: Any, base: dict[str, Any], file: str) -> list[Refusal]:
    """Every setting in a repository config that would loosen `base` (the user's config)."""
    out: list[Refusal] = []
    if not isinstance(raw, dict):
        return out

    def refuse(parent: Any, key: Any, dotted: str, why: str) -> None:
        out.append(Refusal(file, _line_of(parent, key), dotted, why))

    codex = raw.get("codex")
    if isinstance(codex, dict):
        if "binary" in codex and codex["binary"] != "auto":
            refuse(codex, "binary", "codex.binary", f"runs {codex['binary']!r} instead of codex")
        if "version" in codex and not _PLAIN_VERSION.fullmatch(str(codex["version"])):
            refuse(codex, "version", "codex.version",
                   f"{codex['version']!r} is not a plain version number (npm would install it)")
        overrides = codex.get("overrides")
        if isinstance(overrides, dict):
            for key in overrides:
                if str(key).split(".")[0].strip() not in SAFE_OVERRIDES:
                    refuse(overrides, key, f"codex.overrides.{key}",
                           "changes a codex setting outside the model/display allow-list")
    # a key that restates the user's own value (the documented sample's `provider: null`) changes nothing
    if "provider" in raw and raw["provider"] != base.get("provider"):
        refuse(raw, "provider", "provider", "sends the agent's traffic and keys to another server")
    agent = raw.get("agent")
    if isinstance(agent, dict):
        for key, strength in (("approval", APPROVAL_STRENGTH), ("sandbox", SANDBOX_STRENGTH)):
            if key in agent and strength.get(agent[key], 0) < strength[base["agent"][key]]:
                refuse(agent, key, f"agent.{key}", f"{agent[key]!r} is weaker than {base['agent'][key]!r}")
    if "budget_usd" in raw and base.get("budget_usd") is not None:
        value = raw["budget_usd"]
        if value is None or value > base["budget_usd"]:
            refuse(raw, "budget_usd", "budget_usd", f"{value!r} raises the budget of {base['budget_usd']!r}")
    if raw.get("pricing"):
        refuse(raw, "pricing", "pricing", "changes the prices budgets are counted in")
    for key, why in (("notify", "runs commands or posts the fleet's events to a server"),
                     ("reactions", "changes what is sent to agents from their pull requests"),
                     ("dashboard", "changes where the dashboard listens"),
                     *((name, why) for name, (_, _, why) in RUNTIME_SETTINGS.items())):
        if key in raw and raw[key] != base.get(key):
            refuse(raw, key, key, why)
    if "policy" in raw and not (raw["policy"] is None and base.get("policy") is None):
        _review_policy(raw, "policy", "policy", refuse, base)
    projects = raw.get("projects")
    if isinstance(projects, dict):
        for name, project in projects.items():
            if isinstance(project, dict) and "policy" in project:
                _review_policy(project, "policy", f"projects.{name}.policy", refuse, base)
    return out


def _review_policy(parent: Any, key: str, dotted: str, refuse: Any, base: dict[str, Any]) -> None:
    node = parent[key]
    if not isinstance(node, dict):
        refuse(parent, key, dotted, "replaces the policy (only added rules are allowed)")
        return
    for sub, value in node.items():
        if sub == "plan" and value == "enforce":
            continue  # enforcing a plan only tightens
        if sub == "budget_usd_per_day" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and value >= 0 and _daily_at_most(base, value):
            continue  # a lower (or first) daily ceiling only tightens
        if sub not in ADDITIVE_POLICY:
            refuse(node, sub, f"{dotted}.{sub}", "loosens or replaces a policy setting (only added rules are allowed)")
        elif sub == "mcp" and isinstance(value, dict):
            for part in value:
                if part != "deny":
                    refuse(value, part, f"{dotted}.mcp.{part}", "widens the MCP allow-list (only deny is allowed)")


def _daily_at_most(base: dict[str, Any], value: float) -> bool:
    """True when a repository's daily ceiling is no higher than the user's own (or the user set none)."""
    policy = base.get("policy")
    mine = policy.get("budget_usd_per_day") if isinstance(policy, dict) else None
    return mine is None or value <= mine


def trust_config(path: Path | str) -> str:
    """Record the file's sha256 as trusted after validating it; returns the hash."""
    return _trust(Path(path).expanduser())[0]


def _trust(path: Path) -> tuple[str, list[Refusal]]:
    from supervisor import trust_store
    raw_bytes = _read_bytes(path)
    raw = _parse(raw_bytes, path)
    validate(raw, str(path))
    granted = review(raw, user_base()[0], str(path))
    return trust_store.record(path, trust_store.digest(raw_bytes)), granted


def trust_with_review(path: Path | str) -> tuple[str, list[Refusal]]:
    """Trust the file; returns its hash and the settings the trust now lets it make."""
    return _trust(Path(path).expanduser())


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
    from supervisor import trust_store
    was_trusted = path.exists() and trust_store.is_trusted(path, trust_store.digest(_read_bytes(path)))
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # the user's file keeps its mode
    paths.atomic_write(path, _dump(doc), mode=mode)
    if was_trusted:  # the user's own edit keeps a trusted file trusted
        trust_store.record(path, trust_store.digest(_read_bytes(path)))
    return value


def _dump(doc: Any) -> str:
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    return buf.getvalue()
