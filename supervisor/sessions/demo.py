"""`ao demo`: a sample repo, the scripted model, three agents in parallel worktrees, then status and cost."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from supervisor import config as config_mod
from supervisor.config import Config
from supervisor.errors import FatalError
from supervisor.model import script as script_mod
from supervisor.model.server import ScriptedModel
from supervisor.records import SessionRecord
from supervisor.resources import read_text
from supervisor.sessions.spawn import SpawnRequest, spawn

DEMO_MODEL = "gpt-5.1-codex"
DEMO_PROVIDER = "ao-scripted"  # `ao resume` names the demo when this provider no longer answers
TASKS = {
    "branch": "Create a branch named demo/greeting for the upcoming greeting work.",
    "edit": "Write a short NOTES.md describing what this repository is for.",
    "commit": "Add a hello.py that prints a greeting, run it, and commit it.",
}


def make_sample_repo(root: Path) -> Path:
    repo = root / "sample-repo"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "README.md").write_text("# sample\n\nA tiny repository for the ao demo.\n")
    for args in (["init", "-q", "-b", "main"], ["config", "user.name", "ao demo"],
                 ["config", "user.email", "demo@ao.invalid"], ["add", "README.md"],
                 ["commit", "-q", "-m", "Initial commit"]):
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FatalError(f"cannot build the demo repo: git {' '.join(args)}: {proc.stderr.strip()}")
    return repo


def demo_script() -> script_mod.Script:
    text = read_text("templates", "demo-script.yaml")
    return script_mod.load_text(text, "demo-script.yaml")


def demo_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ao" / "demo"


def run_demo(base: Config, directory: Path | None, wait: Callable[[list[str], float], list[SessionRecord]],
             echo: Callable[[str], None]) -> tuple[list[SessionRecord], Path]:
    # one demo home, reused, rather than a new temp dir per run: the demo's worktrees live on in
    # $AO_HOME/worktrees and need their repository, and nothing piles up in /tmp. Not inside $AO_HOME,
    # whose files the jail never lets an agent write (a worktree's commits write the repository's .git).
    root = Path(directory) if directory else demo_home()
    root.mkdir(parents=True, exist_ok=True)
    repo = root / "sample-repo"
    if not (repo / ".git").is_dir():
        repo = make_sample_repo(root)
    ledger = root / "model-ledger.jsonl"
    ledger.unlink(missing_ok=True)  # "served vs counted" is about this run's three agents
    server = ScriptedModel(demo_script(), ledger=ledger, model=None)
    server.start_in_thread()
    echo(f"scripted model listening on {server.base_url}; sample repo at {repo}")
    data = config_mod.merge(base.data, {
        "provider": {"id": DEMO_PROVIDER, "base_url": server.base_url, "wire_api": "responses"},
        "agent": {"model": DEMO_MODEL, "approval": "skip"},
        "runtime": "headless", "workspace": "worktree",
    })
    cfg = Config(data, base.path)
    try:
        sessions = []
        for task, prompt in TASKS.items():
            record = spawn(cfg, SpawnRequest(prompt=f"[ao-task:{task}] {prompt}", repo=str(repo),
                                             runtime="headless", name=f"demo-{task}"))
            echo(f"spawned {record['session']} ({task}) in {record['workspace']}")
            sessions.append(record["session"])
        return wait(sessions, 120.0), ledger
    finally:
        server.shutdown()
        server.server_close()
