"""Real codex agents change branches and open PRs through ao's wrappers; ao status shows each one's own."""
from __future__ import annotations

import json
import os
from pathlib import Path

FAKE_GH = """#!/bin/sh
# stands in for GitHub's side of gh: a PR number from the agent's branch name
case "$1 $2" in
  "pr create")
    branch=$(git rev-parse --abbrev-ref HEAD)
    echo "Creating pull request for $branch into main in acme/repo"
    echo "https://github.com/acme/repo/pull/${branch##*-}" ;;
  "pr merge") echo "Merged pull request #$3" ;;
  *) echo "fake gh: $*" ;;
esac
"""

AGENTS = 20


def fleet_script() -> str:
    lines = ["tasks:"]
    for n in range(1, AGENTS + 1):
        lines += [f"  a{n}:", "    steps:",
                  f"      - run: git checkout -b feature/agent-{n}",
                  "      - run: gh pr create --title 'Agent work' --body 'Done by an agent'",
                  *(["      - run: gh pr merge 3 --squash"] if n == 3 else []),
                  "      - say: opened a PR"]
    return "\n".join(lines) + "\n"


def test_twenty_agents_branches_and_prs_land_in_status(ao, codex, scripted_model, config_for, sample_repo, tmp_path):
    config_for(scripted_model(fleet_script()), "max_concurrent: 20\n")
    fake = tmp_path / "fake-gh"
    fake.mkdir()
    (fake / "gh").write_text(FAKE_GH)
    (fake / "gh").chmod(0o755)
    env = dict(os.environ, PATH=f"{os.environ['PATH']}:{fake}")  # after the wrappers, which come first
    sessions = {}
    for n in range(1, AGENTS + 1):
        out = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", f"[ao-task:a{n}] open a PR", env=env)
        assert out.returncode == 0, out.stderr
        sessions[json.loads(out.stdout)["session"]] = n
    waited = ao("wait", *sessions, "--timeout", "240", timeout=300)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    rows = {r["session"]: r for r in json.loads(ao("status", "--json").stdout)}
    for session, n in sessions.items():
        row = rows[session]
        assert row["branch"] == f"feature/agent-{n}", row
        assert row["pr_url"] == f"https://github.com/acme/repo/pull/{n}"
        assert row["pr_number"] == n
        assert row["status"] == ("merged" if n == 3 else "pr_open")
    # each wrapper event is a receipt, once, in the session's signed stream
    first = next(iter(sessions))
    stream = json.loads(ao("receipts", first, "--json").stdout)["receipts"]
    wrapper = [r for r in stream if r["kind"] == "wrapper_event"]
    assert [r["event"] for r in wrapper] == ["branch", "pr"]
    assert wrapper[0]["detail"]["name"] == f"feature/agent-{sessions[first]}"
    assert [r["kind"] for r in stream].count("tool_call") >= 2
    bundle = tmp_path / "bundle.json"
    assert ao("receipts", "export", first, "-o", str(bundle)).returncode == 0
    assert ao("receipts", "verify", str(bundle)).returncode == 0
    assert bundle.read_text().count('"kind":"wrapper_event"') == 2
    # the agent saw gh's output unchanged through the wrapper
    exec_log = (Path(os.environ["AO_HOME"]) / "sessions" / next(iter(sessions)) / "exec.jsonl").read_text()
    assert "Creating pull request for feature/agent-" in exec_log
