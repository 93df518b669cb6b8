"""Each bad input gets a clear message (no traceback), and nothing already recorded is lost."""
from __future__ import annotations

import json
import os
from pathlib import Path

from supervisor import store

REFUSE = """
tasks:
  ok:
    steps:
      - say: fine
        usage: {input: 900, cached_input: 0, output: 10, reasoning: 0}
  refused:
    steps:
      - refuse: "this model refuses: quota exhausted"
"""


def _sessions_before(ao):
    out = ao("status", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_broken_yaml(ao):
    Path("agent-orchestrator.yaml").write_text("agent:\n  model: [oops\n")
    out = ao("status")
    assert out.returncode == 1
    assert "agent-orchestrator.yaml:" in out.stderr and "invalid YAML" in out.stderr
    assert "Traceback" not in out.stderr
    assert Path("agent-orchestrator.yaml").read_text() == "agent:\n  model: [oops\n"


def test_unknown_config_key(ao):
    Path("agent-orchestrator.yaml").write_text("runtime: headless\nagnet:\n  model: x\n")
    out = ao("spawn", "--headless", "hello")
    assert out.returncode == 1
    assert "agent-orchestrator.yaml:2: unknown key agnet; allowed keys:" in out.stderr


def test_unknown_session(ao):
    for args in (["status", "ao-nope"], ["wait", "ao-nope"]):
        out = ao(*args)
        assert out.returncode == 1
        assert "unknown session 'ao-nope'" in out.stderr and "Traceback" not in out.stderr


def test_nonexistent_repo(ao, codex, scripted_model, config_for, tmp_path):
    config_for(scripted_model(REFUSE))
    out = ao("spawn", "--headless", "--repo", str(tmp_path / "missing"), "x")
    assert out.returncode == 1 and "repository not found" in out.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    out = ao("spawn", "--headless", "--repo", str(plain), "x")
    assert out.returncode == 1 and "is not a git repository" in out.stderr
    assert _sessions_before(ao) == []


def test_codex_that_exits_non_zero(ao, tmp_path, sample_repo):
    bad = tmp_path / "bin" / "codex"
    bad.parent.mkdir()
    # answers --version like codex, then fails every real run
    bad.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'codex-cli 0.169.0'; exit 0; }\n"
                   "echo 'fatal: simulated codex failure' >&2\nexit 7\n")
    bad.chmod(0o755)
    Path("agent-orchestrator.yaml").write_text(f"runtime: headless\ncodex:\n  binary: {bad}\n")
    assert ao("trust", "agent-orchestrator.yaml").returncode == 0  # the user's own binary, so the user trusts it
    spawned = json.loads(ao("spawn", "--headless", "--no-check", "--repo", str(sample_repo), "--json", "x").stdout)
    waited = ao("wait", spawned["session"], "--timeout", "30")
    assert waited.returncode == 1 and "failed" in waited.stdout
    status = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert status["status"] == "failed"
    record = store.get(spawned["session"])
    assert record["exit_code"] == 7 and "simulated codex failure" in record["error"]
    assert Path(status["workspace"]).is_dir()  # the worktree is kept for inspection


def test_model_server_refuses(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(REFUSE))
    first = json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:ok] hi").stdout)
    assert ao("wait", first["session"], "--timeout", "120").returncode == 0
    refused = json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:refused] hi").stdout)
    waited = ao("wait", refused["session"], "--timeout", "120")
    assert waited.returncode == 1
    status = json.loads(ao("status", "--json").stdout)
    by_id = {s["session"]: s for s in status}
    assert by_id[refused["session"]]["status"] == "failed"
    assert "quota exhausted" in store.get(refused["session"])["error"]
    # the earlier session's numbers survive the failure next to it
    assert by_id[first["session"]]["status"] == "done"
    assert by_id[first["session"]]["tokens"]["input"] == 900


def test_unwritable_ao_home(ao, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    env = dict(os.environ, AO_HOME=str(blocker / "home"))
    out = ao("spawn", "--headless", "--workspace", str(tmp_path), "x", env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert str(blocker) in out.stderr
