"""`ao spawn`: pick a workspace, build the codex launch, record the session, start its supervisor."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import paths, store
from supervisor.config import Config
from supervisor.errors import FatalError
from supervisor.launch import codex_bin, command, runner, workspace as ws


@dataclass
class SpawnRequest:
    prompt: str
    repo: str | None = None
    workspace: str | None = None
    project: str | None = None
    issue: str | None = None
    headless: bool = True
    approval: str | None = None
    model: str | None = None
    overrides: list[str] = field(default_factory=list)
    name: str | None = None


def _pick_workspace(cfg: Config, req: SpawnRequest, session: str) -> tuple[Path, str | None, str | None]:
    """Returns (workspace, repo, branch)."""
    if req.workspace:
        path = Path(req.workspace).expanduser().resolve()
        if not path.is_dir():
            raise FatalError(f"workspace not found: {path}")
        return path, None, ws.current_branch(path)
    project = cfg.project(req.project)
    repo_arg = req.repo or project.get("repo")
    repo = ws.repo_root(Path(repo_arg).expanduser().resolve()) if repo_arg else None
    if repo is None:
        try:
            repo = ws.repo_root(Path.cwd())
        except FatalError:
            raise FatalError("no workspace: pass --repo PATH or --workspace DIR, "
                             "or run `ao spawn` inside a git repository") from None
    if cfg.data["workspace"] == "in-place":
        return repo, str(repo), ws.current_branch(repo)
    path, branch = ws.create_worktree(repo, session, project.get("default_branch"))
    return path, str(repo), branch


def spawn(cfg: Config, req: SpawnRequest) -> dict[str, Any]:
    if not req.prompt.strip():
        raise FatalError("the prompt is empty; say what the agent should do")
    if not req.headless:
        raise FatalError("the tmux runtime is not available in this build; pass --headless "
                         "or set `runtime: headless` in agent-orchestrator.yaml")
    data = cfg.data
    codex = codex_bin.resolve(data["codex"]["binary"], data["codex"]["version"])
    session = store.new_session_id()
    while store.find(session) is not None:
        session = store.new_session_id()
    sdir = paths.session_dir(session)
    try:
        sdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FatalError(f"cannot create session dir {sdir}: {exc.strerror}") from None
    workspace, repo, branch = _pick_workspace(cfg, req, session)
    model = req.model or data["agent"]["model"]
    approval = req.approval or data["agent"]["approval"]
    instructions = data["agent"].get("instructions") or ""
    instructions_file = data["agent"].get("instructions_file")
    if instructions_file:
        instructions_file = str(Path(instructions_file).expanduser().resolve())
        if not os.path.isfile(instructions_file):
            raise FatalError(f"agent.instructions_file not found: {instructions_file}")
    elif len(instructions) > command.INLINE_INSTRUCTIONS_LIMIT:
        instructions_file = command.write_instructions_file(sdir, instructions)
    overrides = command.build_overrides(data, model, req.overrides, instructions, instructions_file)
    spec = command.LaunchSpec(str(workspace), model, approval, data["agent"]["sandbox"], overrides)
    env, unset = command.agent_env(session, req.project, req.issue)
    argv = command.exec_argv(str(codex), spec, req.prompt)
    limit = int(data["max_concurrent"])
    status = "queued" if store.count_running() >= limit else "spawning"
    store.insert({
        "session": session, "name": req.name, "project": req.project, "issue": req.issue,
        "repo": repo, "workspace": str(workspace), "runtime": "headless", "status": status,
        "activity": None, "branch": branch, "model": model, "prompt": req.prompt,
        "launch": {"argv": argv, "env": env, "unset": unset, "codex": str(codex), "overrides": overrides,
                   "approval": approval, "sandbox": spec.sandbox, "max_concurrent": limit},
    })
    pid = runner.start_detached(session)
    store.update(session, pid=pid)
    return store.get(session)
