"""`ao demo`: a sample repo, the scripted model, three agents in parallel worktrees, then status and cost."""
from __future__ import annotations

import subprocess
import tempfile
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


def run_demo(base: Config, directory: Path | None, wait: Callable[[list[str], float], list[SessionRecord]],
             echo: Callable[[str], None]) -> tuple[list[SessionRecord], Path]:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="ao-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    repo = make_sample_repo(root)
    ledger = root / "model-ledger.jsonl"
    server = ScriptedModel(demo_script(), ledger=ledger, model=None)
    server.start_in_thread()
    echo(f"scripted model listening on {server.base_url}; sample repo at {repo}")
    data = config_mod.merge(base.data, {
        "provider": {"id": "ao-scripted", "base_url": server.base_url, "wire_api": "responses"},
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
