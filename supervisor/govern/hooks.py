"""The codex hook configuration for one session, and the checks that no other hook or notify runs.

Measured against codex 0.169.0: `-c hooks.<Event>=[...]` overrides register hooks for one run
(no shared file under $CODEX_HOME), and they only run with `--dangerously-bypass-hook-trust`.
The same flag also runs a trusted project's own `.codex/hooks.json` and $CODEX_HOME's hooks, so a
launch refuses a workspace that ships hooks unless the policy says `allow_repo_hooks: true`, and a
CODEX_HOME that holds hooks or a notify command (`check_codex_home`).

Every hook runs `hook_client` (its source embedded in the command, so editing the file mid-session
changes nothing), which asks the session's `GuardServer` over `<session_dir>/guard/guard.sock`.
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

from supervisor.errors import FatalError
from supervisor.launch.command import toml_value

TRUST_FLAG = "--dangerously-bypass-hook-trust"
EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop")
CLIENT_SOURCE = Path(__file__).with_name("hook_client.py")
# Codex kills a hook at its timeout and then lets the call run, so the client gives up (and
# denies) GUARD_MARGIN_S before codex would.
HOOK_MARGIN_S = 30
GUARD_MARGIN_S = 10
OTHER_TIMEOUT_S = 60
OTHER_DEADLINE_S = 30


def client_source() -> str:
    return CLIENT_SOURCE.read_text()


def client_command(event: str, socket_dir: Path, deadline_s: float, python: str | None = None,
                   server_pid: int | None = None, source: str | None = None) -> str:
    """The shell command codex runs for one event (codex runs it with `/bin/bash -c`).

    Python starts with -I -S (no site-packages, no environment). PreToolUse maps any unexpected
    exit status (interpreter missing, crash, kill) to exit 2, so codex denies.
    """
    argv = [python or sys.executable, "-I", "-S", "-c", source or client_source(), "--event", event,
            "--socket-dir", str(socket_dir), "--deadline", f"{deadline_s:g}"]
    if server_pid is not None:  # 0 when the runner is outside the hook's pid namespace (SO_PEERCRED says 0)
        argv += ["--server-pid", str(int(server_pid))]
    cmd = " ".join(shlex.quote(a) for a in argv)
    if event != "PreToolUse":
        return cmd
    return (f"{cmd}; rc=$?; if [ $rc -ne 0 ] && [ $rc -ne 2 ]; then "
            f"echo \"ao guard could not run (exit $rc); failing closed\" >&2; rc=2; fi; exit $rc")


def hooks_config(socket_dir: Path, approval_timeout_s: float = 300, python: str | None = None,
                 server_pid: int | None = None) -> dict[str, Any]:
    """The `{"hooks": {...}}` document, in the shape of $CODEX_HOME/hooks.json."""
    source = client_source()
    hooks: dict[str, Any] = {}
    for event in EVENTS:
        timeout = int(approval_timeout_s) + HOOK_MARGIN_S if event == "PreToolUse" else OTHER_TIMEOUT_S
        deadline = timeout - GUARD_MARGIN_S if event == "PreToolUse" else OTHER_DEADLINE_S
        command = client_command(event, socket_dir, deadline, python, server_pid, source)
        hooks[event] = [{"hooks": [{"type": "command", "command": command, "timeout": timeout}]}]
    return {"hooks": hooks}


def guard_overrides(socket_dir: Path, approval_timeout_s: float = 300, python: str | None = None,
                    server_pid: int | None = None) -> list[str]:
    """`key=toml` pairs for LaunchSpec.overrides (each becomes `-c hooks.<Event>=[...]`)."""
    config = hooks_config(socket_dir, approval_timeout_s, python, server_pid)["hooks"]
    return [f"hooks.{event}={toml_value(groups)}" for event, groups in config.items()]


def safety_overrides() -> list[str]:
    """`-c` pairs ao passes LAST on every codex command line, so no config file can undo them.

    codex 0.169.0: `features.hooks=true` wins over `[features] hooks = false` and over the
    deprecated `[features] codex_hooks = false` (which makes codex warn), and `notify=[]` replaces a
    configured notify command (tests/test_guard_server.py measures each).
    """
    return ["features.hooks=true", "notify=[]"]


def _codex_config_problems(config: Path) -> list[str]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python 3.10: a line-based look, erring towards refusing
        text = config.read_text(errors="replace")
        risky = r"(?m)^\s*(\[+\s*(profiles\.[^]]*\.)?hooks\b|(hooks|notify)\s*[.=]|codex_hooks\s*=\s*false)"
        if re.search(risky, text):
            return [f"{config} may set notify, hooks or turn hooks off"]
        return []

    try:
        doc = tomllib.loads(config.read_text(errors="replace"))
    except tomllib.TOMLDecodeError as exc:
        return [f"{config} is not valid TOML ({exc}); codex would not start either"]
    problems = []
    tables = [("", doc)] + [(f"profiles.{name}.", table) for name, table in (doc.get("profiles") or {}).items()
                            if isinstance(table, dict)]
    for prefix, table in tables:
        if "notify" in table:
            problems.append(f"{config} sets `{prefix}notify` (a command codex runs after every turn)")
        if "hooks" in table:
            problems.append(f"{config} has a `[{prefix}hooks]` table (hooks ao did not write)")
        features = table.get("features")
        if isinstance(features, dict) and any(features.get(k) is False for k in ("codex_hooks", "hooks")):
            problems.append(f"{config} turns hooks off in `[{prefix}features]` (the guard would never run)")
    return problems


def check_codex_home(codex_home: Path) -> None:
    """Refuse a CODEX_HOME whose own hooks or notify command would run next to ao's guard.

    ao passes --dangerously-bypass-hook-trust, which runs every hook codex finds, reviewed or not.
    """
    codex_home = Path(codex_home)
    if (codex_home / "hooks.json").exists():
        raise FatalError(f"refusing to launch: {codex_home / 'hooks.json'} holds hooks ao did not write, and "
                         f"ao runs codex with {TRUST_FLAG}, which would run them unreviewed next to ao's "
                         "guard. Remove that file, or set `codex: {home: isolated}` so each session gets "
                         "its own CODEX_HOME")
    config = codex_home / "config.toml"
    problems = _codex_config_problems(config) if config.is_file() else []
    if problems:
        raise FatalError("refusing to launch: " + "; ".join(problems) + f". ao runs codex with {TRUST_FLAG}, "
                         "which would run them unreviewed next to ao's guard. Remove those keys from the "
                         "file (an isolated CODEX_HOME starts from a copy of it, so that does not help)")


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


PLAN_MCP_SOURCE = Path(__file__).with_name("plan_mcp.py")


def plan_mcp_overrides(python: str | None = None, startup_timeout_s: float = 20) -> list[str]:
    """`key=toml` pairs that serve ao's `register_intent_plan` MCP server to codex for one session.

    codex 0.169.0 starts it as its own child (so inside ao's jail), lists it to the model as the
    namespace `mcp__ao`, and fires PreToolUse/PostToolUse for its calls with `tool_name`
    `mcp__ao__register_intent_plan`; the guard takes the plan from that payload. The source is
    embedded like the hook client's, and python runs with -I -S (no site-packages, no environment).
    """
    from supervisor.govern.plans import SERVER_NAME

    argv = ["-I", "-S", "-c", PLAN_MCP_SOURCE.read_text()]
    prefix = f"mcp_servers.{SERVER_NAME}"
    return [f"{prefix}.command={toml_value(python or sys.executable)}", f"{prefix}.args={toml_value(argv)}",
            f"{prefix}.startup_timeout_sec={toml_value(int(startup_timeout_s))}"]
