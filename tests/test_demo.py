"""`ao demo`: three real codex agents on the scripted model, in parallel worktrees."""
from __future__ import annotations

import json
import re
import subprocess

from supervisor.model.server import read_ledger


def test_demo_runs_three_agents_to_done(ao, codex, tmp_path):
    out = ao("demo", "--dir", str(tmp_path / "demo"), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads(ao("status", "--json").stdout)
    assert len(rows) == 3
    assert {r["status"] for r in rows} == {"done"}
    assert all(r["tokens"]["total"] > 0 and r["cost_usd"] > 0 and r["thread_id"] for r in rows)
    served = read_ledger(tmp_path / "demo" / "model-ledger.jsonl")
    assert sum(r["tokens"]["total"] for r in rows) == sum(e["usage"]["total"] for e in served)
    match = re.search(r"served ([\d,]+) tokens; ao counted ([\d,]+)", out.stdout)
    assert match and match.group(1) == match.group(2)
    assert len({r["workspace"] for r in rows}) == 3  # each agent had its own worktree
    logs = [subprocess.run(["git", "log", "--format=%s", "-1"], cwd=r["workspace"], capture_output=True,
                           text=True).stdout.strip() for r in rows]
    assert sorted(logs) == ["Add hello.py", "Initial commit", "Initial commit"]


def test_demo_keeps_one_home_and_a_follow_up_says_why_it_cannot_go_on(ao, codex, tmp_path):
    import os

    tmp_before = set(os.listdir("/tmp"))
    for _run in (1, 2):
        out = ao("demo", timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
    from supervisor.sessions.demo import demo_home

    home = demo_home()
    assert str(home).startswith(os.environ["HOME"]) or os.environ.get("XDG_CACHE_HOME")
    assert sorted(p.name for p in home.iterdir()) == ["model-ledger.jsonl", "sample-repo"]
    assert not {n for n in set(os.listdir("/tmp")) - tmp_before if n.startswith("ao-demo-")}
    # the second run's ledger holds only its own three agents
    served = read_ledger(home / "model-ledger.jsonl")
    assert len({e["thread_id"] for e in served}) == 3
    session = json.loads(ao("status", "--json").stdout)[0]["session"]
    for verb in (("resume", session, "one more thing"), ("send", session, "one more thing")):
        out = ao(*verb)
        assert out.returncode == 1
        assert "ao demo" in out.stderr and "scripted model" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
