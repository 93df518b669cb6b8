"""Governance wired through `ao spawn`: policy from the config, budget stop, repo hooks, signed bundle."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from supervisor.model.server import read_ledger

SCRIPT = """
tasks:
  cleanup:
    steps:
      - run: mkdir -p backup && echo keep > backup/data.txt
      - run: rm -rf ./backup
      - say: tried to clean up
  spend:
    steps:
      - run: echo one
        usage: {input: 20000, cached_input: 0, output: 500, reasoning: 0}
      - run: echo two > two.txt
        usage: {input: 20000, cached_input: 0, output: 500, reasoning: 0}
      - run: echo three > three.txt
      - say: spent it all
"""

POLICY = """
policy:
  forbidden_commands:
    - pattern: 'rm\\s+-rf'
      reason: recursive deletes are not allowed here
"""


def spawn(ao, repo, task):
    out = ao("spawn", "--headless", "--repo", str(repo), "--json", f"[ao-task:{task}] go")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_forbidden_command_is_denied_and_signed_into_the_ledger(ao, codex, scripted_model, config_for, sample_repo,
                                                                 tmp_path):
    config_for(scripted_model(SCRIPT), POLICY)
    spawned = spawn(ao, sample_repo, "cleanup")
    assert ao("wait", spawned["session"], "--timeout", "120").returncode == 0
    assert (Path(spawned["workspace"]) / "backup" / "data.txt").read_text() == "keep\n"
    bundle = tmp_path / "evidence.json"
    assert ao("receipts", "export", spawned["session"], "-o", str(bundle)).returncode == 0
    verified = ao("receipts", "verify", str(bundle))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    text = bundle.read_text()
    assert "recursive deletes are not allowed here" in text and '"spawn"' in text and '"exit"' in text
    listing = ao("receipts", spawned["session"], "--json")
    assert listing.returncode == 0, listing.stderr
    stream = json.loads(listing.stdout)["receipts"]
    tools = [r["arguments"] for r in stream if r["kind"] == "tool_call"]
    assert any("rm -rf ./backup" in json.dumps(a) for a in tools)
    denials = [r for r in stream if r["kind"] == "guard_decision" and r["decision"] == "deny"]
    assert [d["detail"]["reason"] for d in denials] == ["recursive deletes are not allowed here"]


def test_budget_stops_the_agent_blocked(ao, codex, scripted_model, config_for, sample_repo, tmp_path):
    config_for(scripted_model(SCRIPT), "budget_usd: 0.02\n")
    spawned = spawn(ao, sample_repo, "spend")
    ao("wait", spawned["session"], "--timeout", "120")
    status = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert status["status"] == "blocked"
    workspace = Path(spawned["workspace"])
    assert not (workspace / "two.txt").exists() and not (workspace / "three.txt").exists()
    served = len(read_ledger(tmp_path / "ledger-0.jsonl"))
    # nothing more is served after the stop, and ao counted exactly what was served
    assert len(read_ledger(tmp_path / "ledger-0.jsonl")) == served
    assert status["tokens"]["input"] == sum(e["usage"]["input"] for e in read_ledger(tmp_path / "ledger-0.jsonl"))


def test_repository_hooks_refuse_the_spawn(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    hooks = sample_repo / ".codex" / "hooks.json"
    hooks.parent.mkdir()
    hooks.write_text('{"hooks": {"PreToolUse": [{"hooks": [{"type": "command", "command": "true"}]}]}}\n')
    subprocess.run(["git", "add", ".codex"], cwd=sample_repo, check=True)
    subprocess.run(["git", "commit", "-qm", "ship hooks"], cwd=sample_repo, check=True)
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "[ao-task:cleanup] go")
    assert out.returncode == 1
    assert ".codex/hooks.json" in out.stderr and "allow_repo_hooks" in out.stderr
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=sample_repo, capture_output=True, text=True).stdout
    assert len(worktrees.splitlines()) == 1  # the refused spawn left no worktree behind
