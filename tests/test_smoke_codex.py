"""End to end: `ao spawn --headless` drives the real codex against the scripted model."""
from __future__ import annotations

import json

from supervisor.model.server import read_ledger

SCRIPT = """
tasks:
  touch:
    steps:
      - run: echo hello > greeting.txt
        usage: {input: 1500, cached_input: 500, output: 40, reasoning: 8}
      - say: Wrote greeting.txt.
        usage: {input: 1700, cached_input: 1500, output: 20, reasoning: 0}
"""


def test_spawn_wait_status_real_codex(codex, scripted_model, config_for, sample_repo, ao, tmp_path):
    server = scripted_model(SCRIPT)
    config_for(server)
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:touch] write a greeting")
    assert out.returncode == 0, out.stderr
    spawned = json.loads(out.stdout)
    assert set(spawned) >= {"session", "workspace", "thread_id"}
    waited = ao("wait", spawned["session"], "--timeout", "120")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    status = json.loads(ao("status", spawned["session"], "--json").stdout)[0]
    assert status["status"] == "done"
    assert status["thread_id"]
    assert (tmp_path / "home/.agent-orchestrator/worktrees" / spawned["session"] / "greeting.txt").read_text() == "hello\n"
    served = read_ledger(tmp_path / "ledger-0.jsonl")
    assert [e["step"] for e in served] == [0, 1]
    assert status["tokens"]["input"] == sum(e["usage"]["input"] for e in served) == 3200
    assert status["tokens"]["cached_input"] == 2000
    assert status["tokens"]["output"] == 60
    assert status["rollout_path"] and status["rollout_path"].endswith(".jsonl")
    # 1200 uncached x 1.25 + 2000 cached x 0.125 + 60 output x 10, per million tokens
    assert status["cost_usd"] == round((1200 * 1.25 + 2000 * 0.125 + 60 * 10) / 1e6, 6)
