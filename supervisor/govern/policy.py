"""The `policy:` section: validation with file:line errors, and the compact JSON the guard server loads.

A policy comes from the config's top-level `policy:`, a project's `policy:` (merged on top), or a
separate YAML file (`policy: path/to/policy.yaml`, relative to the config file). Lists add up,
scalars from the more specific source win.

Every rule remembers where it came from (scope, file, line): the compiled policy carries them as a
`sources` map keyed by the rule names the guard reports (`forbidden_commands[0]`,
`forbidden_paths <glob>`, `approval_required[0]`, `mcp`, `budget_usd`, ...), so `ao policy` can
answer "who forbade this?" and `ao guard pause` can name a rule.

`budget_usd_per_day` is a daily ceiling summed over sessions: set in a config's top-level policy it
is the global ceiling (all sessions); set in a project's policy or a `--policy` file it is the
project's ceiling (the session's project, or all sessions when it has none).
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.errors import FatalError

FORMAT = 1
DEFAULT_APPROVAL_TIMEOUT_S = 300.0
POLICY_FILE = "policy.json"
RULE_LISTS = {"forbidden_commands": "pattern", "forbidden_paths": "glob", "approval_required": "pattern"}
KEYS = (*RULE_LISTS, "mcp", "budget_usd", "allow_repo_hooks", "approval_timeout_s", "plan", "budget_usd_per_day")
PLAN_MODES = ("off", "enforce")
GLOBAL_SCOPE = "global"
POLICY_FILE_SCOPE = "--policy"
BUILTIN_SCOPE = "builtin"


@dataclass
class Policy:
    forbidden_commands: list[dict[str, str]] = field(default_factory=list)
    forbidden_paths: list[dict[str, str]] = field(default_factory=list)
    approval_required: list[dict[str, str]] = field(default_factory=list)
    mcp_allow: list[str] = field(default_factory=list)
    mcp_deny: list[str] = field(default_factory=list)
    budget_usd: float | None = None
    allow_repo_hooks: bool = False
    approval_timeout_s: float = DEFAULT_APPROVAL_TIMEOUT_S
    plan: str = "off"
    budget_usd_per_day_global: float | None = None
    budget_usd_per_day_project: float | None = None
    # rule name -> {"scope", "file", "line"}: where the rule (or the scalar's winning value) was set
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)


def rule_name(kind: str, index_or_glob: int | str) -> str:
    """The name the guard reports for a rule: `forbidden_commands[2]`, `forbidden_paths backup/**`."""
    return f"forbidden_paths {index_or_glob}" if kind == "forbidden_paths" else f"{kind}[{index_or_glob}]"


def _origin(scope: str, file: str, line: int | None) -> dict[str, Any]:
    return {"scope": scope, "file": file, "line": line}


def _line(node: Any, key: Any, fallback: int | None) -> int | None:
    try:
        lines: Any = node.lc  # ruamel's round-trip nodes carry line info; plain dicts raise AttributeError
        return lines.key(key)[0] + 1 if isinstance(node, dict) else lines.item(key)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        try:
            return node.lc.line + 1
        except AttributeError:
            return fallback


def _fail(file: str, line: int | None, where: str, problem: str) -> FatalError:
    loc = f"{file}:{line}" if line else file
    return FatalError(f"{loc}: {where}: {problem}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def glob_to_regex(glob: str) -> str:
    """`**` spans folders, `*` and `?` stay inside one path part, `[...]` is a character class."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _literal_prefix(glob: str) -> str:
    """The folder part of a glob before its first wildcard: `backup/**` -> `backup`."""
    cut = min([glob.find(c) for c in "*?[" if c in glob] or [len(glob)])
    head = glob[:cut]
    return head.rstrip("/") if cut == len(glob) else head.rsplit("/", 1)[0] if "/" in head else ""


def _rules(raw: Any, name: str, file: str, line: int | None) -> list[dict[str, str]]:
    key = RULE_LISTS[name]
    if not isinstance(raw, list):
        raise _fail(file, line, f"policy.{name}", f"must be a list of {{{key}, reason}} mappings")
    out = []
    for i, item in enumerate(raw):
        where, item_line = f"policy.{name}[{i}]", _line(raw, i, line)
        if not isinstance(item, dict):
            raise _fail(file, item_line, where, f"must be a mapping with `{key}` and `reason`")
        extra = [k for k in item if k not in (key, "reason")]
        if extra:
            raise _fail(file, _line(item, extra[0], item_line), where,
                        f"unknown key {extra[0]}; allowed: {key}, reason")
        value, reason = item.get(key), item.get("reason", "")
        if not isinstance(value, str) or not value.strip():
            raise _fail(file, _line(item, key, item_line), f"{where}.{key}", "must be a non-empty string")
        if not isinstance(reason, str):
            raise _fail(file, _line(item, "reason", item_line), f"{where}.reason", "must be a string")
        if key == "pattern":
            try:
                re.compile(value)
            except re.error as exc:
                raise _fail(file, _line(item, key, item_line), f"{where}.pattern",
                            f"invalid regular expression {value!r}: {exc}") from None
        out.append({key: str(value), "reason": str(reason) or f"matches policy {name} {value!r}"})
    return out


def _names(raw: Any, where: str, file: str, line: int | None) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(v, str) and v for v in raw):
        raise _fail(file, line, where, "must be a list of server or server/tool names (globs allowed)")
    return [str(v) for v in raw]


def parse(raw: Any, file: str, line: int | None = 1, base: Policy | None = None,
          scope: str = POLICY_FILE_SCOPE) -> Policy:
    """Validate one policy mapping (round-trip YAML keeps line numbers) and merge it onto `base`.

    `scope` says whose word it is (`global`, `project NAME`, `--policy`) for the rules' sources.
    """
    policy = Policy(**copy.deepcopy(vars(base or Policy())))
    if raw is None:
        return policy
    if not isinstance(raw, dict):
        raise _fail(file, line, "policy", f"must be a mapping with keys {', '.join(KEYS)}")
    for key, value in raw.items():
        at = _line(raw, key, line)
        origin = _origin(scope, file, at)
        if key in RULE_LISTS:
            rules, start = _rules(value, key, file, at), len(getattr(policy, key))
            getattr(policy, key).extend(rules)
            for i, rule in enumerate(rules):
                name = rule_name(key, rule["glob"] if key == "forbidden_paths" else start + i)
                # a repeated glob is one rule name; the first place that set it stays its source
                policy.sources.setdefault(name, _origin(scope, file, _line(value, i, at)))
        elif key == "mcp":
            if not isinstance(value, dict) or set(value) - {"allow", "deny"}:
                raise _fail(file, at, "policy.mcp", "must be a mapping with `allow` and/or `deny` lists")
            for sub in ("allow", "deny"):
                if sub in value:
                    getattr(policy, f"mcp_{sub}").extend(
                        _names(value[sub], f"policy.mcp.{sub}", file, _line(value, sub, at)))
            if "mcp" in policy.sources:  # the lists add up, so every place that added to them is a source
                policy.sources["mcp"].setdefault("also", []).append(origin)
            else:
                policy.sources["mcp"] = origin
        elif key == "budget_usd":
            if value is not None and (not _number(value) or value < 0):
                raise _fail(file, at, "policy.budget_usd", f"must be a non-negative number, got {value!r}")
            policy.budget_usd = None if value is None else float(value)
            policy.sources["budget_usd"] = origin
        elif key == "approval_timeout_s":
            if not _number(value) or value <= 0:
                raise _fail(file, at, "policy.approval_timeout_s", f"must be a positive number, got {value!r}")
            policy.approval_timeout_s = float(value)
            policy.sources["approval_timeout_s"] = origin
        elif key == "allow_repo_hooks":
            if not isinstance(value, bool):
                raise _fail(file, at, "policy.allow_repo_hooks", f"must be true or false, got {value!r}")
            policy.allow_repo_hooks = value
            policy.sources["allow_repo_hooks"] = origin
        elif key == "plan":
            if value not in PLAN_MODES:
                raise _fail(file, at, "policy.plan", f"must be one of {', '.join(PLAN_MODES)}, got {value!r}")
            policy.plan = str(value)
            policy.sources["plan"] = origin
        elif key == "budget_usd_per_day":
            if value is not None and (not _number(value) or value < 0):
                raise _fail(file, at, "policy.budget_usd_per_day", f"must be a non-negative number, got {value!r}")
            level = "global" if scope == GLOBAL_SCOPE else "project"
            setattr(policy, f"budget_usd_per_day_{level}", None if value is None else float(value))
            policy.sources[f"budget_usd_per_day.{level}"] = origin
        else:
            raise _fail(file, at, "policy", f"unknown key {key}; allowed keys: {', '.join(KEYS)}")
    return policy


def load_file(path: Path, base: Policy | None = None, scope: str = POLICY_FILE_SCOPE) -> Policy:
    """A separate policy YAML: either the policy mapping itself or a document with a `policy:` key."""
    from supervisor import config as config_mod  # ruamel is heavy; never on the guard's path

    doc = config_mod.load_raw(path)
    if isinstance(doc, dict) and set(doc) == {"policy"}:
        return parse(doc["policy"], str(path), _line(doc, "policy", 1), base, scope)
    return parse(doc, str(path), 1, base, scope)


def _section(node: Any, file: Path, line: int | None, base: Policy | None, scope: str) -> Policy:
    if isinstance(node, str):  # `policy: ./policy.yaml`
        target = (file.parent / node).expanduser()
        if not target.is_file():
            raise _fail(str(file), line, "policy", f"policy file not found: {target}")
        return load_file(target, base, scope)
    return parse(node, str(file), line, base, scope)


def from_config(config_path: Path | None, project: str | None = None, base: Policy | None = None) -> Policy:
    """Read the config file again with line info and merge its top-level and project policy onto `base`."""
    from supervisor import config as config_mod

    policy = base or Policy()
    if config_path is None:
        return policy
    doc = config_mod.load_raw(config_path) or {}
    if isinstance(doc, dict) and doc.get("budget_usd") is not None:
        policy = Policy(**copy.deepcopy(vars(policy)))
        policy.budget_usd = float(doc["budget_usd"])
        policy.sources["budget_usd"] = _origin(GLOBAL_SCOPE, str(config_path), _line(doc, "budget_usd", 1))
    if isinstance(doc, dict) and doc.get("policy") is not None:
        policy = _section(doc["policy"], config_path, _line(doc, "policy", 1), policy, GLOBAL_SCOPE)
    projects = doc.get("projects") if isinstance(doc, dict) else None
    if project and isinstance(projects, dict) and isinstance(projects.get(project), dict):
        node = projects[project]
        if node.get("policy") is not None:
            policy = _section(node["policy"], config_path, _line(node, "policy", 1), policy, f"project {project}")
    return policy


def _mcp_regex(name: str) -> str:
    server, _, tool = name.partition("/")
    return glob_to_regex(server) + "/" + (glob_to_regex(tool) if tool else ".*")


def builtin_paths(ao_home: Path) -> list[dict[str, Any]]:
    """ao's own state is never the agent's to change, whatever the policy says."""
    reason = "ao's own state (policy, ledger, keys, approvals) is off limits to agents"
    return [{"glob": str(ao_home / sub), "reason": reason}
            for sub in ("sessions/**", "keys/**", "approvals/**", "ao.db*", "trusted-*", ".trusted-*",
                        "agent-orchestrator.yaml")]


def compile_policy(policy: Policy, session: str, workspace: Path, model: str,
                   pricing_overrides: dict[str, Any] | None = None, ao_home: Path | None = None) -> dict[str, Any]:
    """Everything the guard needs, resolved: regexes for globs, prices for the session's model."""
    from supervisor.observe import pricing

    home = Path(ao_home or paths.ao_home()).resolve()
    table = pricing.load_table(pricing_overrides)
    price = pricing.lookup(table, model)
    rules = []
    sources = copy.deepcopy(policy.sources)
    for rule in builtin_paths(home):
        sources.setdefault(rule_name("forbidden_paths", rule["glob"]), _origin(BUILTIN_SCOPE, "ao", None))
    for rule in [*policy.forbidden_paths, *builtin_paths(home)]:
        glob = rule["glob"]
        absolute = glob.startswith(("/", "~"))
        if glob.startswith("~"):
            glob = str(Path(glob).expanduser())
        glob = glob[2:] if glob.startswith("./") else glob
        rules.append({"glob": rule["glob"], "reason": rule["reason"], "absolute": absolute,
                      "regex": glob_to_regex(glob.rstrip("/")), "prefix": _literal_prefix(glob)})
    mcp_allow, mcp_deny = [_mcp_regex(n) for n in policy.mcp_allow], [_mcp_regex(n) for n in policy.mcp_deny]
    return {
        "format": FORMAT,
        "session": session,
        "ao_home": str(home),
        "workspace": str(Path(workspace).resolve()),
        "forbidden_commands": policy.forbidden_commands,
        "forbidden_paths": rules,
        "approval_required": policy.approval_required,
        "mcp": {"allow": mcp_allow, "deny": mcp_deny,
                "allow_names": policy.mcp_allow, "deny_names": policy.mcp_deny},
        "budget_usd": policy.budget_usd,
        "allow_repo_hooks": policy.allow_repo_hooks,
        "approval_timeout_s": policy.approval_timeout_s,
        "plan": policy.plan,
        "budget_usd_per_day": {"global": policy.budget_usd_per_day_global,
                               "project": policy.budget_usd_per_day_project},
        "sources": sources,
        "model": model,
        # USD per million tokens: input, cached input, output; guard.price_for reads them back as Decimal
        "prices": {model: [float(price.input), float(price.cached_input), float(price.output)]} if price else {},
    }


def write_compiled(compiled: dict[str, Any], session_dir: Path) -> Path:
    path = session_dir / POLICY_FILE
    paths.atomic_write(path, json.dumps(compiled, sort_keys=True, separators=(",", ":")), mode=0o600)
    return path
