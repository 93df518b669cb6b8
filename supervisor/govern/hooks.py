"""The codex hook configuration for one session, and detection of hooks a repository brings along.

Measured against codex 0.169.0: `-c hooks.<Event>=[...]` overrides register hooks for one run
(no shared file under $CODEX_HOME), and they only run with `--dangerously-bypass-hook-trust`.
The same flag also runs a trusted project's own `.codex/hooks.json`, so a launch must refuse a
workspace that ships hooks unless the policy says `allow_repo_hooks: true`.
"""
from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from supervisor.errors import FatalError
from supervisor.launch.command import toml_value

TRUST_FLAG = "--dangerously-bypass-hook-trust"
EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop")
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# Codex kills a hook at its timeout and then lets the call run, so the guard gives up (and denies)
# GUARD_MARGIN_S before codex would.
HOOK_MARGIN_S = 30
GUARD_MARGIN_S = 10
OTHER_TIMEOUT_S = 60


def guard_command(event: str, session: str, ao_home: Path, python: str | None = None,
                  deadline_s: float | None = None) -> str:
    """The shell command codex runs for one event (codex runs it with `/bin/bash -c`).

    PreToolUse starts Python with -I -S (no site-packages: ~35 ms less start-up) and maps any
    unexpected exit status (interpreter missing, crash, kill) to exit 2, so codex denies.
    """
    python = python or sys.executable
    code = f"import sys;sys.path.insert(0,{PACKAGE_ROOT!r});from supervisor.govern.guard import main;sys.exit(main())"
    flags = ["-I", "-S"] if event == "PreToolUse" else ["-I"]
    argv = [python, *flags, "-c", code, "--event", event, "--session", session, "--home", str(ao_home)]
    if deadline_s:
        argv += ["--deadline", str(int(deadline_s))]
    cmd = " ".join(shlex.quote(a) for a in argv)
    if event != "PreToolUse":
        return cmd
    return (f"{cmd}; rc=$?; if [ $rc -ne 0 ] && [ $rc -ne 2 ]; then "
            f"echo \"ao guard could not run (exit $rc); failing closed\" >&2; rc=2; fi; exit $rc")


def hooks_config(session: str, ao_home: Path, approval_timeout_s: float = 300,
                 python: str | None = None) -> dict[str, Any]:
    """The `{"hooks": {...}}` document, in the shape of $CODEX_HOME/hooks.json."""
    hooks: dict[str, Any] = {}
    for event in EVENTS:
        if event == "PreToolUse":
            timeout = int(approval_timeout_s) + HOOK_MARGIN_S
            command = guard_command(event, session, ao_home, python, deadline_s=timeout - GUARD_MARGIN_S)
        else:
            timeout = OTHER_TIMEOUT_S
            command = guard_command(event, session, ao_home, python)
        hooks[event] = [{"hooks": [{"type": "command", "command": command, "timeout": timeout}]}]
    return {"hooks": hooks}


def hook_overrides(session: str, ao_home: Path, approval_timeout_s: float = 300,
                   python: str | None = None) -> list[str]:
    """`key=toml` pairs for LaunchSpec.overrides (each becomes `-c hooks.<Event>=[...]`)."""
    config = hooks_config(session, ao_home, approval_timeout_s, python)["hooks"]
    return [f"hooks.{event}={toml_value(groups)}" for event, groups in config.items()]


def codex_args(session: str, ao_home: Path, approval_timeout_s: float = 300,
               python: str | None = None) -> list[str]:
    """Extra codex argv for `codex exec` and `codex exec resume`: the trust flag plus -c pairs."""
    out = [TRUST_FLAG]
    for pair in hook_overrides(session, ao_home, approval_timeout_s, python):
        out += ["-c", pair]
    return out


def write_hooks_json(path: Path, session: str, ao_home: Path, approval_timeout_s: float = 300) -> Path:
    """The same hooks as a file, for a per-session isolated CODEX_HOME (codex.home: isolated)."""
    from supervisor import paths

    paths.atomic_write(path, json.dumps(hooks_config(session, ao_home, approval_timeout_s), indent=2))
    return path


def _config_has_hooks(path: Path) -> bool:
    text = path.read_text(errors="replace")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return re.search(r"(?m)^\s*(\[+\s*hooks\b|hooks\s*[.=])", text) is not None
    try:
        return "hooks" in tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return re.search(r"(?m)^\s*(\[+\s*hooks\b|hooks\s*[.=])", text) is not None


def detect_repo_hooks(workspace: Path) -> list[Path]:
    """Hook definitions codex would pick up from the workspace or its parents up to the repo root."""
    found: list[Path] = []
    here = Path(workspace).resolve()
    chain = [here]
    for folder in (here, *here.parents):  # codex's project root is the nearest folder with .git
        if (folder / ".git").exists():
            chain = [f for f in (here, *here.parents) if f == folder or folder in f.parents]
            break
    for folder in chain:
        codex_dir = folder / ".codex"
        if (codex_dir / "hooks.json").is_file():
            found.append(codex_dir / "hooks.json")
        config = codex_dir / "config.toml"
        if config.is_file() and _config_has_hooks(config):
            found.append(config)
    return found


def refuse_repo_hooks(workspace: Path, allow_repo_hooks: bool) -> list[Path]:
    """Raise unless the policy allows repository hooks; returns the hooks found (for the ledger)."""
    found = detect_repo_hooks(workspace)
    if found and not allow_repo_hooks:
        listed = ", ".join(str(p) for p in found)
        raise FatalError(f"the workspace ships codex hooks ({listed}); ao runs hooks without review, so it "
                         "refuses to launch. Remove them, or set `policy: {allow_repo_hooks: true}` "
                         "if you trust this repository")
    return found
