"""From a stored launch plan to the final command line: codex's argv for the runtime, inside the jail.

Spawn stores the plan; the session's runner renders it once its guard server is listening, because the
hook commands name that server. The jail's inputs are stored as plain data so `ao status` can show
them and a test can read them.
"""
from __future__ import annotations

import glob as globlib
import os
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.launch import jail
from supervisor.launch.command import LaunchSpec
from supervisor.launch.runtimes.base import Runtime
from supervisor.records import LaunchRecord

MAX_READONLY = 256  # forbidden paths bound read-only at most; the guard's rules still cover the rest


def existing_paths(globs: list[str], workspace: Path) -> list[str]:
    """The files and dirs the policy's forbidden_paths name that exist now (relative globs: in the workspace)."""
    found: list[str] = []
    for pattern in globs:
        pattern = os.path.expanduser(pattern)
        base = pattern if os.path.isabs(pattern) else str(workspace / pattern.removeprefix("./"))
        found += globlib.glob(base.rstrip("/"), recursive=True)
        if len(found) >= MAX_READONLY:
            break
    return sorted(dict.fromkeys(os.path.realpath(p) for p in found))[:MAX_READONLY]


def jail_plan(session: str, workspace: Path, codex: Path, codex_home: Path, readonly: list[str],
              instructions_file: str | None, path_var: str = "") -> dict[str, Any]:
    """The jail's inputs as plain data; refuses (FatalError) when bubblewrap cannot run here.

    The programs on the agent's PATH stay visible (read-only) even where the jail hides their
    folder, such as a tool dir under the private /tmp.
    """
    bwrap = jail.find_bwrap(codex)
    if bwrap is None:
        raise FatalError("cannot jail the agent: no bubblewrap (bwrap) found; `ao doctor` says how to get one, "
                         "or pass --unjailed to run without ao's jail (ao's governance is then best effort)")
    reason = jail.probe_recent(bwrap, paths.ao_home() / "cache")
    if reason:
        raise FatalError(f"cannot jail the agent: {reason}; `ao doctor` says more, or pass --unjailed to run "
                         "without ao's jail (ao's governance is then best effort)")
    git_ro, git_rw = jail.worktree_git_paths(workspace)
    tool_dirs = [d for d in path_var.split(os.pathsep) if d and os.path.isdir(d)]
    extra_ro = [*readonly, *map(str, git_ro), *tool_dirs]
    if instructions_file:
        extra_ro.append(instructions_file)
    return {"bwrap": str(bwrap), "readonly": extra_ro, "extra_writable": [str(p) for p in git_rw],
            "codex_home": str(codex_home), "workspace": str(workspace)}


def jail_spec(session: str, plan: dict[str, Any], codex: str) -> jail.JailSpec:
    sdir = paths.session_dir(session)
    return jail.JailSpec(
        ao_home=paths.ao_home(), session_dir=sdir, workspace=Path(plan["workspace"]),
        codex_home=Path(plan["codex_home"]), codex_binary=Path(codex),
        extra_writable=tuple(Path(p) for p in plan.get("extra_writable") or []),
        readonly=tuple(Path(p) for p in plan.get("readonly") or []),
        guard_dir=sdir / "guard", events_file=sdir / "events.jsonl")


def render_argv(session: str, launch: LaunchRecord, runtime: Runtime, guard_overrides: list[str]) -> list[str]:
    """codex's argv with the guard's hooks and the safety overrides last, wrapped in the jail if planned."""
    spec_fields = dict(launch["spec"])
    spec = LaunchSpec(**{**spec_fields, "overrides": [*spec_fields.get("overrides", []), *guard_overrides]})
    codex_argv = runtime.command(launch["codex"], spec, launch.get("prompt"), launch.get("resume_thread"))
    plan = launch.get("jail")
    if not plan:
        return codex_argv
    spec_jail = jail_spec(session, plan, launch["codex"])
    jail.prepare(spec_jail)
    return jail.argv(spec_jail, Path(plan["bwrap"]), codex_argv)
