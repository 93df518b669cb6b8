"""Spawn and resume: pick a workspace, build the codex launch, record it, start its supervisor."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import paths, store
from supervisor.config import Config
from supervisor.errors import FatalError
from supervisor.govern import hooks, ledger
from supervisor.govern import policy as gpolicy
from supervisor.launch import agents_md, codex_bin, command, plan, runtimes, trust, wrappers
from supervisor.launch import workspace as ws
from supervisor.records import LaunchRecord, SessionRecord, Status
from supervisor.sessions import runner


@dataclass
class SpawnRequest:
    prompt: str
    repo: str | None = None
    workspace: str | None = None
    project: str | None = None
    issue: str | None = None
    runtime: str = runtimes.names()[0]
    approval: str | None = None
    model: str | None = None
    overrides: list[str] = field(default_factory=list)
    name: str | None = None
    policy_file: str | None = None
    unjailed: bool = False  # run without ao's jail: governance is then best effort
    plan_first: bool = False  # policy `plan: enforce` for this session: no tool call before a registered plan
    check: bool = True  # ask the provider (or codex's login) before any side effect; --no-check skips
    resources: dict[str, float] | None = None  # Ray resources on top of the config's ray.resources


def _pick_workspace(cfg: Config, req: SpawnRequest, session: str,
                    made: _Made | None = None) -> tuple[Path, str | None, str | None]:
    """Returns (workspace, repo, branch)."""
    if req.workspace:
        path = Path(req.workspace).expanduser().resolve()
        if not path.is_dir():
            raise FatalError(f"workspace not found: {path}")
        return path, None, ws.current_branch(path)
    project = cfg.project(req.project)
    repo_arg = req.repo or project.get("repo")
    if repo_arg:
        repo = ws.repo_root(Path(repo_arg).expanduser().resolve())
    else:
        try:
            repo = ws.repo_root(Path.cwd())
        except FatalError:
            raise FatalError("no workspace: pass --repo PATH or --workspace DIR, "
                             "or run `ao spawn` inside a git repository") from None
    if cfg.data["workspace"] == "in-place":
        return repo, str(repo), ws.current_branch(repo)
    if made is not None:  # before git starts: ^C may land while `git worktree add` is half done
        made.planned_worktree = (repo, paths.worktrees_dir() / session, f"ao/{session}")
    path, branch = ws.create_worktree(repo, session, project.get("default_branch"))
    return path, str(repo), branch


def _instructions(cfg: Config, sdir: Path) -> tuple[str, str | None]:
    agent = cfg.data["agent"]
    text, file = agent.get("instructions") or "", agent.get("instructions_file")
    if file:
        file = str(Path(file).expanduser().resolve())
        if not os.path.isfile(file):
            raise FatalError(f"agent.instructions_file not found: {file}")
    elif len(text) > command.INLINE_INSTRUCTIONS_LIMIT:
        file = command.write_instructions_file(sdir, text)
    return text, file


def govern(cfg: Config, session: str, workspace: str, model: str, project: str | None,
           policy_file: str | None, plan_first: bool = False) -> gpolicy.Policy:
    """Compile the session's policy for its guard server (policy.json, which the jail hides).

    codex runs ao's hooks with the hook-trust flag, which would also run hooks a repository ships in
    .codex/, so such a workspace is refused unless the policy sets allow_repo_hooks.
    """
    pol = gpolicy.Policy()
    for file in cfg.files:  # the user's config, then the repository's on top
        pol = gpolicy.from_config(file, project, base=pol)
    if policy_file:
        pol = gpolicy.load_file(Path(policy_file).expanduser().resolve(), base=pol)
    if plan_first:  # --plan-first is the user's word on this session, over any config
        pol.plan = "enforce"
    found = hooks.refuse_repo_hooks(Path(workspace), pol.allow_repo_hooks)
    sdir = paths.session_dir(session)
    compiled = gpolicy.compile_policy(pol, session, Path(workspace), model, cfg.data.get("pricing"))
    compiled["project"] = project  # the daily ceiling of the session's project
    from supervisor.govern import operator

    daily = operator.daily_ceiling_problem(paths.ao_home(), compiled.get("budget_usd_per_day"), project)
    if daily:
        raise FatalError(f"{daily}; no new agents start until tomorrow or until the ceiling is raised")
    gpolicy.write_compiled(compiled, sdir)
    if found:
        ledger.append(sdir, "lifecycle", {"event": "repo_hooks_allowed", "files": [str(p) for p in found]})
    return pol


def sandbox_warnings(approval: str, sandbox: str, codex_home: Path) -> list[str]:
    """What will go wrong with codex's own sandbox here, said before the agent starts."""
    import shutil

    if approval == "skip" or sandbox == "danger-full-access" or not shutil.which("bwrap"):
        return []
    real = os.path.realpath(codex_home)
    if real != "/tmp" and not real.startswith("/tmp/"):
        return []
    return [f"CODEX_HOME {codex_home} is under /tmp, where codex will not create its sandbox helper; with "
            f"approval {approval} every command codex runs in its {sandbox} sandbox will fail. "
            "Use a CODEX_HOME outside /tmp, or approval skip (ao's jail still applies)."]


def write_prompt(session: str, prompt: str) -> str:
    """The prompt as a 0600 file codex reads on stdin; argv is readable by every local user."""
    path = paths.session_dir(session) / "prompt.txt"
    paths.atomic_write(path, prompt, mode=0o600)
    return str(path)


def build_launch(cfg: Config, session: str, workspace: str, runtime_name: str, model: str, approval: str,
                 cli_overrides: list[str], project: str | None, issue: str | None, prompt: str | None,
                 resume_thread: str | None = None, policy_file: str | None = None,
                 unjailed: bool = False, codex_home_of_thread: str | None = None,
                 plan_first: bool = False, resources: dict[str, float] | None = None) -> LaunchRecord:
    """The launch plan the session's runner renders into a command line once its guard listens."""
    data = cfg.data
    runtime = runtimes.get(runtime_name)
    codex = os.path.realpath(codex_bin.resolve(data["codex"]["binary"], data["codex"]["version"]))
    approval_values = codex_bin.approval_values(codex, approval)  # cached `codex --help`; FatalError if unfit
    sdir = paths.session_dir(session)
    env, unset = command.agent_env(session, project, issue)
    if codex_home_of_thread:  # a resumed thread lives in the CODEX_HOME it started in
        env["CODEX_HOME"] = codex_home_of_thread
    elif data["codex"]["home"] == "isolated":
        env["CODEX_HOME"] = str(isolated_codex_home(session))
    codex_home = Path(env.get("CODEX_HOME") or paths.codex_home())
    hooks.check_codex_home(codex_home)  # hooks or notify ao did not write would run with ao's trust flag
    wrappers.install()  # repairs edited or outdated wrappers before every launch
    text, file = _instructions(cfg, sdir)
    pol = govern(cfg, session, workspace, model, project, policy_file, plan_first)
    if runtime.remote and pol.plan == "enforce":  # ao's plan MCP server runs next to codex; not on a node yet
        raise FatalError(f"plan enforcement (`plan: enforce` or --plan-first) is not available on the "
                         f"{runtime_name} runtime yet; run this agent with --headless, or without plan enforcement")
    overrides = command.build_overrides(data, model, cli_overrides, text, file)
    spec = command.LaunchSpec(workspace, model, approval, data["agent"]["sandbox"], overrides,
                              flags=[hooks.TRUST_FLAG], approval_values=approval_values)
    jail_plan: dict[str, Any] | None = None
    if runtime.remote and not unjailed:  # the node jails codex with its own paths (launch/ray_node.py)
        jail_plan = {"on_node": True}
    elif not unjailed:
        readonly = plan.existing_paths([r["glob"] for r in pol.forbidden_paths], Path(workspace))
        jail_plan = plan.jail_plan(session, Path(workspace), Path(codex), codex_home, readonly, file,
                                   path_var=env["PATH"])
    if runtime.interactive:  # the TUI would stop on "Trust this folder?"
        trust.pre_trust(codex_home, ws.trust_roots(Path(workspace)))
    prompt_file = write_prompt(session, prompt) if prompt and runtime.takes_prompt_on_stdin() else None
    launch: LaunchRecord = {"argv": [], "env": env, "unset": unset, "codex": codex, "overrides": list(cli_overrides),
            "spec": dataclasses.asdict(spec), "resume_thread": resume_thread,
            "prompt": None if prompt_file else prompt, "prompt_file": prompt_file,
            "jail": jail_plan, "unjailed": unjailed, "approval_timeout_s": pol.approval_timeout_s,
            "stall_after_s": float(data["stall_after_s"]),
            "warnings": sandbox_warnings(approval, spec.sandbox, codex_home),
            "policy_file": policy_file, "plan_first": plan_first, "plan": pol.plan,
            "budget_usd": pol.budget_usd,  # the compiled ceiling, for `ao status` without reading policy.json
            "provider": data.get("provider"),  # a resumed thread must go back to the provider it began on
            "approval": approval, "sandbox": spec.sandbox, "max_concurrent": int(data["max_concurrent"]),
            "slots": str(data.get("slots") or "active")}
    if runtime.remote:
        launch["ray"] = ray_placement(data, resources)
    return launch


def ray_placement(data: dict[str, Any], extra: dict[str, float] | None) -> dict[str, Any]:
    """Where a Ray agent runs: the config's address and node root, its resources plus this agent's extra."""
    ray_cfg = data.get("ray") or {}
    resources = {**(ray_cfg.get("resources") or {}), **(extra or {})}
    return {"address": str(ray_cfg.get("address") or "auto"),
            "node_root": str(ray_cfg.get("node_root") or "~/.local/share/ao/ray"), "resources": resources}


def parse_resources(text: str | None) -> dict[str, float] | None:
    """`--resources '{"big_box": 1}'`: a JSON object of Ray resource names to amounts."""
    import json

    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise FatalError(f"--resources is not JSON ({exc}); write it like '{{\"big_box\": 1}}'") from None
    if not isinstance(found, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for k, v in found.items()):
        raise FatalError("--resources must be a JSON object of resource names to amounts, like '{\"big_box\": 1}'")
    return {k: float(v) for k, v in found.items()}


def isolated_codex_home(session: str) -> Path:
    """A per-session CODEX_HOME seeded with the user's auth.json and config.toml."""
    home = paths.session_dir(session) / "codex-home"
    home.mkdir(parents=True, exist_ok=True)
    for name in ("auth.json", "config.toml"):
        source = paths.codex_home() / name
        if source.is_file() and not (home / name).exists():
            paths.atomic_write(home / name, source.read_bytes(), mode=0o600)
    return home


def check_model_access(cfg: Config, doing: str = "spawning") -> None:
    """Refuse a spawn whose codex could never reach a model: it would sit `stalled` forever."""
    from supervisor.launch import preflight

    home = paths.codex_home()  # an isolated CODEX_HOME is seeded from this one's auth.json
    found = preflight.model_access(cfg.data.get("provider"), home)
    if not found.ok:
        raise FatalError(f"not {doing}: {found.detail}; {found.hint}")


def spawn(cfg: Config, req: SpawnRequest) -> SessionRecord:
    if not req.prompt.strip():
        raise FatalError("the prompt is empty; say what the agent should do")
    runtimes.get(req.runtime).preflight()  # e.g. Ray not installed: say how, before anything is made
    codex = codex_bin.resolve(cfg.data["codex"]["binary"], cfg.data["codex"]["version"])
    codex_bin.approval_values(codex, req.approval or cfg.data["agent"]["approval"])  # fail before any side effect
    if req.check:
        check_model_access(cfg)
    session = store.new_session_id()
    while store.find(session) is not None:
        session = store.new_session_id()
    made = _Made(session)
    try:
        _spawn(cfg, req, session, made)
    except BaseException:  # refused, failed or interrupted (^C, SIGTERM): leave no trace
        with _signals_held():
            made.undo()
        raise
    return store.get(session)


class _Made:
    """What a spawn has made so far, so an interrupted or refused one can take it all back."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.session_dir: Path | None = None
        self.worktree: tuple[Path, Path] | None = None  # (repo, workspace)
        self.planned_worktree: tuple[Path, Path, str] | None = None  # (repo, dir, branch) before git made it
        self.recorded = False
        self.runner_pid: int | None = None
        self.complete = False

    def undo(self) -> None:
        import shutil

        if self.complete:
            return  # the runner owns the session now; its record is whole
        found = store.find(self.session) if self.recorded else None
        if found is not None and found.get("pid"):
            return  # the runner was recorded before the interrupt: the session is whole
        if self.runner_pid:
            from supervisor.launch import processes

            processes.kill_tree(self.runner_pid, grace=1.0)
        if self.recorded:
            store.delete(self.session)
        if self.worktree:
            ws.remove_worktree(*self.worktree, delete_branch=True)
        if self.planned_worktree:  # whatever an interrupted `git worktree add` left: dir, admin entry, branch
            ws.discard_worktree(*self.planned_worktree)
        if self.session_dir:
            shutil.rmtree(self.session_dir, ignore_errors=True)


def _signals_held() -> Any:
    """Hold ^C and SIGTERM while a spawn takes back what it made, so a second ^C cannot split it."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return held()


def _spawn(cfg: Config, req: SpawnRequest, session: str, made: _Made) -> None:
    sdir = paths.session_dir(session)
    try:
        paths.ensure_private_dir(paths.sessions_dir())
        made.session_dir = paths.ensure_private_dir(sdir)
    except OSError as exc:
        raise FatalError(f"cannot create session dir {sdir}: {exc.strerror}") from None
    workspace, repo, branch = _pick_workspace(cfg, req, session, made)
    if repo and workspace != Path(repo):
        made.worktree = (Path(repo), workspace)
    model = req.model or cfg.data["agent"]["model"]
    approval = req.approval or cfg.data["agent"]["approval"]
    agents_md.install(workspace, session, cfg.project(req.project).get("rules"))
    launch = build_launch(cfg, session, str(workspace), req.runtime, model, approval, req.overrides,
                          req.project, req.issue, req.prompt, policy_file=req.policy_file,
                          unjailed=req.unjailed, plan_first=req.plan_first, resources=req.resources)
    from supervisor.sessions import reconcile

    reconcile.release_stale_spawns()
    status = Status.QUEUED if reconcile.count_running(launch["slots"]) >= launch["max_concurrent"] \
        else Status.SPAWNING
    store.insert({
        "session": session, "name": req.name, "project": req.project, "issue": req.issue,
        "repo": repo, "workspace": str(workspace), "runtime": req.runtime, "status": status,
        "activity": None, "branch": branch, "model": model, "prompt": req.prompt, "launch": launch,
    })
    made.recorded = True
    ledger.append(sdir, "lifecycle", {"event": "spawn", "workspace": str(workspace), "model": model,
                                      "runtime": req.runtime, "approval": approval,
                                      "jailed": launch["jail"] is not None})
    made.runner_pid = runner.start_detached(session)
    store.update(session, pid=made.runner_pid)
    made.complete = True


def _thread_provider(cfg: Config, record: SessionRecord) -> Config:
    """The config with the provider the thread began on (codex refuses a thread whose provider is gone),
    after checking that it still answers."""
    provider = record["launch"].get("provider")
    if provider and provider != cfg.data.get("provider"):
        cfg = Config({**cfg.data, "provider": provider}, cfg.path)
    try:
        check_model_access(cfg, "resuming")
    except FatalError as exc:
        from supervisor.sessions.demo import DEMO_PROVIDER  # demo imports spawn: not at module level

        if (provider or {}).get("id") == DEMO_PROVIDER:
            raise FatalError(f"{exc}. Session {record['session']} ran on `ao demo`'s scripted model, which stops "
                             "when the demo ends; its thread cannot go on without it (`ao demo` starts new ones)") \
                from None
        raise
    return cfg


def resume(cfg: Config, target: str, prompt: str | None, runtime: str | None) -> SessionRecord:
    """Continue a codex thread in its workspace with the same policy, instructions and wrappers."""
    record = store.find(target)
    if record is None:
        raise FatalError(f"unknown thread or session {target!r}; `ao status` lists ao's sessions")
    if store.is_live(record):
        raise FatalError(f"session {record['session']} is still {record['status']}; "
                         "use `ao send` to talk to it or `ao kill` first")
    if not record.get("thread_id"):
        raise FatalError(f"session {record['session']} never started a codex thread, so there is nothing to resume")
    if not Path(record["workspace"]).is_dir():
        raise FatalError(f"the workspace {record['workspace']} of session {record['session']} no longer exists "
                         "(removed by `ao rm`?); start a new session with `ao spawn`")
    runtime = runtime or record["runtime"]
    runtimes.get(runtime).preflight()
    if not runtimes.get(runtime).interactive and not prompt:
        raise FatalError(f"a {runtime} resume needs a PROMPT to send")
    old = record["launch"]
    cfg = _thread_provider(cfg, record)
    launch = build_launch(cfg, record["session"], record["workspace"], runtime,
                          record["model"] or cfg.data["agent"]["model"],
                          old.get("approval") or cfg.data["agent"]["approval"], old.get("overrides") or [],
                          record.get("project"), record.get("issue"), prompt, record["thread_id"],
                          policy_file=old.get("policy_file"), unjailed=bool(old.get("unjailed")),
                          codex_home_of_thread=(old.get("env") or {}).get("CODEX_HOME"),
                          plan_first=bool(old.get("plan_first")),
                          resources=(old.get("ray") or {}).get("resources"))
    rules = cfg.project(record.get("project")).get("rules") if record.get("project") else None
    agents_md.install(Path(record["workspace"]), record["session"], rules)
    store.update(record["session"], status=Status.SPAWNING, runtime=runtime, launch=launch, activity=None,
                 exit_code=None, error=None, ended_at=None)
    ledger.append(paths.session_dir(record["session"]), "lifecycle",
                  {"event": "resume", "thread_id": record["thread_id"], "runtime": runtime})
    store.update(record["session"], pid=runner.start_detached(record["session"]))
    return store.get(record["session"])
