"""`ao doctor`: every codex candidate and why it was taken or skipped, plus git, tmux, npm and gh, codex's
login and whether the configured provider answers."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from supervisor.config import Config
from supervisor.errors import FatalError
from supervisor.launch import codex_bin

TOOLS = {
    "git": ("git --version", "install git (apt-get install git); ao makes a worktree per agent"),
    "npm": ("npm --version", "install Node.js and npm so ao can provision codex"),
    "gh": ("gh --version", "install the GitHub CLI so agents can open PRs (optional)"),
}


def all_tools() -> dict[str, tuple[str, str]]:
    """ao's own tools, then what each registered runtime needs."""
    from supervisor.launch import runtimes

    found = dict(TOOLS)
    for name in runtimes.names():
        found.update(runtimes.get(name).tools)
    return found


def _tool(name: str, cmd: str, hint: str) -> dict[str, Any]:
    path = shutil.which(name)
    if not path:
        return {"name": name, "ok": False, "detail": "not found on PATH", "hint": hint}
    try:
        proc = subprocess.run(cmd.split(), capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        first = (proc.stdout or proc.stderr).strip().splitlines()
        detail = first[0] if first else f"exit {proc.returncode}"
        ok = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        detail, ok = str(exc), False
    return {"name": name, "ok": ok, "detail": f"{path}: {detail}", "hint": "" if ok else hint}


def diagnose(cfg: Config, provision: bool) -> dict[str, Any]:
    report: list[codex_bin.Candidate] = []
    codex: dict[str, Any] = {"path": None, "error": None}
    try:
        codex["path"] = str(codex_bin.resolve(cfg.data["codex"]["binary"], cfg.data["codex"]["version"],
                                              provision=provision, report=report))
    except FatalError as exc:
        codex["error"] = str(exc)
    codex["candidates"] = [{"source": c.source, "path": c.path, "taken": c.taken,
                            "reason": c.reason or "not checked (an earlier candidate was taken)"}
                           for c in report]
    from supervisor.launch import jail

    tools = [_tool(name, cmd, hint) for name, (cmd, hint) in all_tools().items()]
    tools.append(jail.doctor_check(Path(codex["path"]) if codex["path"] else None))
    tools.append(scanner_check())
    return {"config": str(cfg.path) if cfg.path else None, "codex": codex, "tools": tools,
            "model_access": model_access(cfg)}


def scanner_check() -> dict[str, Any]:
    """Whether the install compiled the scan loop (supervisor/observe/_fastscan.c). The build is optional so
    that ao installs without a compiler; without it `ao cost` gives the same answers in pure Python, slower."""
    try:
        from supervisor.observe import _fastscan
    except ImportError as exc:
        return {"name": "scanner", "ok": False,
                "detail": f"the compiled scan loop is missing ({exc}); ao cost runs its pure-Python twin",
                "hint": "install a C compiler and the Python headers (e.g. apt-get install gcc python3-dev), "
                        "then reinstall ao"}
    return {"name": "scanner", "ok": True, "detail": f"compiled: {_fastscan.__file__}", "hint": ""}


def model_access(cfg: Config) -> list[dict[str, Any]]:
    """codex's login always; the provider's reachability when one is configured (then no login is needed)."""
    from dataclasses import asdict

    from supervisor import paths
    from supervisor.launch import preflight

    provider = cfg.data.get("provider")
    login = asdict(preflight.logged_in(paths.codex_home()))
    login["needed"] = not (provider and provider.get("base_url"))
    found = [login]
    if provider and provider.get("base_url"):
        found.append({**asdict(preflight.provider_reachable(str(provider["base_url"]))), "needed": True})
    return found


def render(result: dict[str, Any]) -> str:
    lines = [f"config: {result['config'] or 'none found, using built-in defaults'}", "codex candidates:"]
    for c in result["codex"]["candidates"]:
        mark = "->" if c["taken"] else "  "
        lines.append(f" {mark} [{c['source']}] {c['path']}: {c['reason']}")
    if result["codex"]["path"]:
        lines.append(f"codex: {result['codex']['path']}")
    else:
        lines.append(f"codex: MISSING. {result['codex']['error']}")
    for tool in result["tools"]:
        state = "ok" if tool["ok"] else "MISSING"
        hint = f"  hint: {tool['hint']}" if tool["hint"] else ""
        lines.append(f"{tool['name']}: {state} ({tool['detail']}){hint}")
    for check in result.get("model_access", []):
        state = "ok" if check["ok"] else ("MISSING" if check["needed"] else "not needed (a provider is set)")
        hint = f"  hint: {check['hint']}" if check["hint"] and check["needed"] and not check["ok"] else ""
        lines.append(f"{check['name']}: {state} ({check['detail']}){hint}")
    return "\n".join(lines)
