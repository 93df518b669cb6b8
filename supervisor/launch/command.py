"""Build the codex command line and environment from config. Pure: no processes started here."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.errors import FatalError

# Instructions longer than this go to a file (model_instructions_file) instead of a -c value.
INLINE_INSTRUCTIONS_LIMIT = 2000
# `codex exec` reads its prompt from stdin when given this instead: argv is readable by every local
# user through `ps`, stdin is not.
STDIN_PROMPT = "-"


def toml_value(value: Any) -> str:
    """Render a Python value as the TOML that codex's `-c key=value` parses."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        raise FatalError("a codex override cannot be null; remove the key instead")
    raise FatalError(f"cannot pass {value!r} to codex as a -c override")


@dataclass
class LaunchSpec:
    """What one codex command line is built from (the session stores the resulting argv)."""
    workspace: str
    model: str
    approval: str
    sandbox: str
    overrides: list[str] = field(default_factory=list)   # "key=toml" pairs, in order
    flags: list[str] = field(default_factory=list)  # e.g. the hook-trust flag, placed before the -c pairs
    # What this codex accepts for -a/approval_policy (from its --help, at spawn); empty means the
    # built-in table's values for the pinned version, so older records and callers keep working.
    approval_values: list[str] = field(default_factory=list)


def is_o_series(model: str) -> bool:
    return re.match(r"^o\d", model) is not None


def build_overrides(cfg: dict[str, Any], model: str, cli_overrides: list[str],
                    instructions: str, instructions_file: str | None) -> list[str]:
    out = [
        "allow_login_shell=false",  # a login shell resets PATH and would drop the wrapper dir
        "check_for_update_on_startup=false",
        f"model={toml_value(model)}",
    ]
    effort = cfg["agent"].get("reasoning_effort")
    if effort:
        out.append(f"model_reasoning_effort={toml_value(effort)}")
    elif is_o_series(model):
        out.append('model_reasoning_effort="high"')
    provider = cfg.get("provider")
    if provider:
        pid = provider.get("id") or "ao-local"
        if pid in ("openai", "ollama", "lmstudio", "amazon-bedrock"):
            raise FatalError(f"provider.id {pid!r} is built into codex and cannot be overridden; pick another id")
        out += [f"model_provider={toml_value(pid)}",
                f"model_providers.{pid}.name={toml_value(pid)}",
                f"model_providers.{pid}.base_url={toml_value(provider['base_url'])}",
                f"model_providers.{pid}.wire_api={toml_value(provider.get('wire_api') or 'responses')}"]
        if provider.get("env_key"):
            out.append(f"model_providers.{pid}.env_key={toml_value(provider['env_key'])}")
    if instructions_file:
        out.append(f"model_instructions_file={toml_value(instructions_file)}")
    elif instructions:
        out.append(f"developer_instructions={toml_value(instructions)}")
    for key, value in (cfg["codex"].get("overrides") or {}).items():
        out.append(f"{key}={toml_value(value)}")
    for raw in cli_overrides:
        if "=" not in raw or raw.startswith("="):
            raise FatalError(f"-c {raw!r}: expected KEY=VALUE")
        out.append(raw)
    return out


# ao's approval modes onto codex's approval_policy, most faithful first: `suggest` meant codex's
# `untrusted` until 0.169 dropped it; `on-request` (the model asks to leave the sandbox) is the
# closest that remains. `skip` takes the bypass flag instead and needs no value.
APPROVAL_PREFERENCES: dict[str, tuple[str, ...]] = {
    "auto-edit": ("never",),
    "suggest": ("untrusted", "on-request"),
}
BYPASS_FLAG = "--dangerously-bypass-approvals-and-sandbox"
# What ao's pinned codex (0.169.0) accepts for -a; for launch specs recorded without values.
# codex_bin.KNOWN_APPROVAL_VALUES holds the per-version table.
PINNED_APPROVAL_VALUES = ("on-request", "never")


def codex_approval(approval: str, accepted: Sequence[str], version: str = "") -> str:
    """The approval_policy value codex gets for ao's mode; FatalError when this codex has none of them."""
    if approval not in APPROVAL_PREFERENCES:
        raise FatalError(f"approval {approval!r} is not an ao mode; use one of skip, "
                         f"{', '.join(APPROVAL_PREFERENCES)}")
    values = list(accepted) or list(PINNED_APPROVAL_VALUES)
    for wanted in APPROVAL_PREFERENCES[approval]:
        if wanted in values:
            return wanted
    who = f"codex {version}" if version else "this codex"
    raise FatalError(f"{who} cannot run approval {approval!r}: it needs -a "
                     f"{' or '.join(APPROVAL_PREFERENCES[approval])}, but {who} accepts only "
                     f"{', '.join(values)}. Use another approval mode, or set codex.version to one ao supports.")


def policy_flags(approval: str, sandbox: str, interactive: bool, accepted: Sequence[str] = ()) -> list[str]:
    """Map ao's approval policy onto codex flags; `accepted` is what this codex takes for -a.

    `codex exec` has no -a and never asks: given on-request it still records approval_policy never
    and refuses commands that ask to leave the sandbox (measured on 0.169.0).
    """
    if approval == "skip":
        return [BYPASS_FLAG]
    ask = codex_approval(approval, accepted)
    if interactive:
        return ["-a", ask, "-s", sandbox]
    # `codex exec resume` has no -s/-a flags, so exec mode sets both through -c on every path.
    return ["-c", f"approval_policy={toml_value(ask)}", "-c", f"sandbox_mode={toml_value(sandbox)}"]


def exec_argv(codex: str, spec: LaunchSpec, prompt: str, resume_thread: str | None = None) -> list[str]:
    argv = [codex, "exec"]
    if resume_thread:
        argv += ["resume"]
    argv += ["--json", "--skip-git-repo-check"]
    if not resume_thread:
        argv += ["-C", spec.workspace]
    argv += spec.flags
    argv += policy_flags(spec.approval, spec.sandbox, interactive=False, accepted=spec.approval_values)
    for pair in spec.overrides:
        argv += ["-c", pair]
    if resume_thread:
        argv.append(resume_thread)
    argv.append(prompt)
    return argv


def tui_argv(codex: str, spec: LaunchSpec, prompt: str | None, resume_thread: str | None = None) -> list[str]:
    """The interactive codex command; the workspace is pre-trusted so no trust screen blocks it."""
    argv = [codex] + (["resume"] if resume_thread else [])
    argv += policy_flags(spec.approval, spec.sandbox, interactive=True, accepted=spec.approval_values)
    argv += spec.flags
    argv += ["-C", spec.workspace]
    for pair in spec.overrides:
        argv += ["-c", pair]
    if resume_thread:
        argv.append(resume_thread)
    if prompt:
        argv.append(prompt)
    return argv


def agent_env(session: str, project: str | None, issue: str | None,
              path: str | None = None) -> tuple[dict[str, str], list[str]]:
    """The variables ao sets for an agent, and the ones it removes; the rest is inherited.

    Only this delta is stored with the session, so no inherited secret lands in ao's state.
    """
    wrapper_dir = str(paths.bin_dir())
    inherited = os.environ.get("PATH", "") if path is None else path
    rest = [p for p in inherited.split(os.pathsep)
            if p and os.path.realpath(p) != os.path.realpath(wrapper_dir)]
    env = {
        "PATH": os.pathsep.join([wrapper_dir, *rest]),
        "AO_SESSION": session,
        "AO_DATA_DIR": str(paths.ao_home()),
        "AO_HOME": str(paths.ao_home()),
        "CODEX_DISABLE_UPDATE_CHECK": "1",
    }
    unset = ["AO_WRAPPER_ACTIVE"]  # a wrapper guard inherited from a parent shell must not reach the agent
    for key, value in (("AO_PROJECT_ID", project), ("AO_ISSUE_ID", issue)):
        if value:
            env[key] = value
        else:
            unset.append(key)
    return env, unset


def apply_env(delta: dict[str, str], unset: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(delta)
    return env


def write_instructions_file(session_dir: Path, text: str) -> str:
    path = session_dir / "instructions.md"
    paths.atomic_write(path, text)
    return str(path)
