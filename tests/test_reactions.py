"""The PR feedback loop: a failing check's log and a reviewer's comment reach the agent that owns the PR
(real codex 0.169.0 on the scripted model, asserted on what the model was sent), attempts stop at
max_attempts with `attention: failed` and a notification, a merge seen on GitHub ends the loop, and a
missing or lying gh never crashes it. The only stand-in is a fake `gh` after ao's wrappers on PATH."""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from supervisor import config, paths, store
from supervisor.govern import ledger
from supervisor.model.server import RecordingHandler
from supervisor.records import Status
from supervisor.sessions import notify, reaction_state, reactions

SCRIPT = """
tasks:
  pr:
    steps:
      - run: git checkout -b feature/agent-7
      - run: gh pr create --title 'Agent work' --body 'Done by an agent'
      - say: opened a PR
    followup:
      - say: on it
"""


def fake_gh(tmp_path: Path) -> Path:
    """A gh that opens PR #N for branch ...-N, and answers `pr view` / `run view` from files in its dir."""
    fake = tmp_path / "fake-gh"
    fake.mkdir()
    (fake / "gh").write_text(f"""#!/bin/sh
here={fake}
echo "$*" >> "$here/calls"
case "$1 $2" in
  "pr create")
    branch=$(git rev-parse --abbrev-ref HEAD)
    echo "https://github.com/acme/repo/pull/${{branch##*-}}" ;;
  "pr view")
    [ -f "$here/pr.rc" ] && {{ echo "gh: $(cat "$here/pr.rc")" >&2; exit 1; }}
    cat "$here/pr.json" ;;
  "run view") cat "$here/run-$3.log" ;;
  *) echo "fake gh: $*" ;;
esac
""")
    (fake / "gh").chmod(0o755)
    return fake


def pr_doc(state: str = "OPEN", checks: list[dict[str, object]] | None = None,
           reviews: list[dict[str, object]] | None = None, mergeable: str = "MERGEABLE",
           decision: str = "REVIEW_REQUIRED", head: str = "abc123") -> str:
    return json.dumps({"state": state, "mergeable": mergeable, "reviewDecision": decision, "headRefOid": head,
                       "reviews": reviews or [], "statusCheckRollup": checks or []})


def check(name: str, conclusion: str, run: int, job: int) -> dict[str, object]:
    return {"__typename": "CheckRun", "name": name, "status": "COMPLETED", "conclusion": conclusion,
            "detailsUrl": f"https://github.com/acme/repo/actions/runs/{run}/job/{job}"}


def reaction_receipts(session: str) -> list[dict[str, object]]:
    """The reactions' ledger bodies (kind `reaction`, or the ledger's unknown-kind wrapper until it knows it)."""
    out = []
    for entry in ledger.read(paths.session_dir(session)):
        body = entry["body"]
        if entry["kind"] == "reaction":
            out.append(body)
        elif entry["kind"] == "lifecycle" and body.get("unknown_kind") == "reaction":
            out.append(body["body"])
    return out


class _Bodies(RecordingHandler):
    bodies: list[bytes] = []


def _sent_texts() -> str:
    return "\n".join(b.decode("utf-8", "replace") for b in _Bodies.bodies)


@pytest.mark.codex
def test_ci_log_and_review_reach_the_agent_then_attempts_stop_then_merge_ends_the_loop(
        ao, codex, scripted_model, config_for, sample_repo, tmp_path, monkeypatch) -> None:
    server = scripted_model(SCRIPT)
    _Bodies.bodies = []
    server.RequestHandlerClass = _Bodies
    config_for(server, "reactions:\n  max_attempts: 2\n  log_lines: 3\n"
                       "  message: 'CI says: {summary}\\n{details}'\n")
    fake = fake_gh(tmp_path)
    monkeypatch.setenv("PATH", f"{os.environ['PATH']}:{fake}")  # after the wrappers, as a user's gh is
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:pr] open a PR")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    assert ao("wait", session, "--timeout", "90", timeout=120).returncode == 0
    assert store.get(session)["status"] == "pr_open"
    notify.Detector().scan()  # the notifications' baseline: what follows is news
    cfg = config.load()

    # 1. a failed check: its name and the tail of its log go to the agent's next model request
    (fake / "pr.json").write_text(pr_doc(checks=[check("unit-tests", "FAILURE", 111, 222),
                                                 check("lint", "SUCCESS", 111, 223)]))
    (fake / "run-111.log").write_text("early line NOT-IN-TAIL\nsetup ok\n"
                                      "\x1b[31mFAIL test_widget: expected 3 got 4 MARKER-CI-LOG\x1b[0m\nexit 1\n")
    before = len(_Bodies.bodies)
    assert reactions.poll_once(cfg) == 1
    assert ao("wait", session, "--timeout", "90", timeout=120).returncode == 0
    sent = "\n".join(b.decode() for b in _Bodies.bodies[before:])
    assert "MARKER-CI-LOG" in sent and "unit-tests" in sent and "CI says:" in sent
    assert "NOT-IN-TAIL" not in sent  # log_lines: 3
    assert "\\u001b[31m" not in sent  # the log's colour codes never reach the agent
    calls = (fake / "calls").read_text()
    assert "run view 111 --repo acme/repo --log-failed" in calls

    # 2. the same failure again is not sent again; the fixed check stops the loop
    before = len(_Bodies.bodies)
    reactions.poll_once(cfg)
    (fake / "pr.json").write_text(pr_doc(checks=[check("unit-tests", "SUCCESS", 112, 230)]))
    reactions.poll_once(cfg)
    assert len(_Bodies.bodies) == before
    assert [r["event"] for r in reaction_receipts(session)] == ["sent"]

    # 3. a changes-requested review's comment reaches the agent
    review = {"id": "PRR_kw1", "author": {"login": "alice"}, "state": "CHANGES_REQUESTED",
              "body": "Please rename widget() to gadget() MARKER-REVIEW", "submittedAt": "2026-12-01T10:00:00Z"}
    (fake / "pr.json").write_text(pr_doc(reviews=[review], decision="CHANGES_REQUESTED"))
    reactions.poll_once(cfg)
    assert ao("wait", session, "--timeout", "90", timeout=120).returncode == 0
    sent = "\n".join(b.decode() for b in _Bodies.bodies[before:])
    assert "MARKER-REVIEW" in sent and "alice" in sent

    # 4. max_attempts (2) reached: a conflict is not sent, the session needs a human, the user is told
    before = len(_Bodies.bodies)
    (fake / "pr.json").write_text(pr_doc(reviews=[review], decision="CHANGES_REQUESTED", mergeable="CONFLICTING"))
    reactions.poll_once(cfg)
    reactions.poll_once(cfg)
    assert len(_Bodies.bodies) == before
    assert [r["event"] for r in reaction_receipts(session)] == ["sent", "sent", "gave_up"]
    assert session in reaction_state.gave_up_sessions()
    queued = [item["event"] for item in notify.outbox()]
    gave_up = [e for e in queued if e["event"] == "failed" and e["detail"].get("gave_up")]
    assert len(gave_up) == 1 and "conflicts" in gave_up[0]["summary"], queued
    assert {"ci_failed", "changes_requested"} <= {e["event"] for e in queued}

    # 5. merged on GitHub (not by the agent): the status follows, even through `ao status`, and the loop ends
    (fake / "pr.json").write_text(pr_doc(state="MERGED"))
    reactions.poll_once(cfg)
    assert store.get(session)["status"] == Status.MERGED
    row = json.loads(ao("status", session, "--json").stdout)
    row = row[0] if isinstance(row, list) else row
    assert row["status"] == "merged", row
    # ao's word on the merge is the store and its signed receipt, never a line in the agent's events file
    events_file = paths.session_dir(session) / "events.jsonl"
    assert '"status": "pr_open"' in events_file.read_text() or '"status":"pr_open"' in events_file.read_text()
    assert "ao-reactions" not in events_file.read_text()
    assert reaction_receipts(session)[-1]["event"] == "merged_seen"
    assert reactions.candidates() == []
    views = (fake / "calls").read_text().count("pr view")
    assert reactions.poll_once(cfg) == 0 and (fake / "calls").read_text().count("pr view") == views


def _pr_session(session: str, workspace: Path, url: str = "https://github.com/acme/repo/pull/9") -> None:
    store.insert({"session": session, "workspace": str(workspace), "runtime": "headless", "status": Status.PR_OPEN,
                  "pr_url": url, "pr_number": 9, "ended_at": 1.0, "launch": {"argv": []}})
    paths.session_dir(session).mkdir(parents=True, exist_ok=True)


def test_a_pr_closed_without_the_agent_ends_its_loop(sample_repo, tmp_path, monkeypatch) -> None:
    fake = fake_gh(tmp_path)
    monkeypatch.setenv("PATH", f"{os.environ['PATH']}:{fake}")
    _pr_session("ao-test-close1", sample_repo)
    (fake / "pr.json").write_text(pr_doc(state="CLOSED"))
    assert reactions.poll_once(config.Config(dict(config.DEFAULTS))) == 1
    assert store.get("ao-test-close1")["status"] == Status.CLOSED
    assert reaction_receipts("ao-test-close1")[-1]["event"] == "closed_seen"
    assert reactions.candidates() == []


def test_gh_missing_failing_or_lying_is_one_log_line_and_the_loop_goes_on(sample_repo, tmp_path, monkeypatch,
                                                                          caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ao")
    cfg = config.Config(dict(config.DEFAULTS))
    _pr_session("ao-test-gh0001", sample_repo)
    _pr_session("ao-test-badurl", sample_repo, url="--help")  # an agent-written "URL" is never a gh flag
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    stop = threading.Event()
    thread = threading.Thread(target=reactions.run, args=(config.Config({**config.DEFAULTS, "reactions": {
        **config.DEFAULTS["reactions"], "poll_s": 0.05}}), stop))
    thread.start()
    try:
        from polling import wait_for

        wait_for(lambda: "gh is not installed" in caplog.text, 10, what="the missing gh's log line")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert "not a pull request URL" in caplog.text and caplog.text.count("not a pull request URL") == 1
    fake = fake_gh(tmp_path)
    monkeypatch.setenv("PATH", f"/usr/bin:/bin:{fake}")
    caplog.clear()
    for answer in ("not json at all", "[1, 2]", '{"state": 5}'):
        (fake / "pr.json").write_text(answer)
        assert reactions.poll_once(cfg) == 2
    (fake / "pr.rc").write_text("HTTP 502: Bad Gateway")
    reactions.poll_once(cfg)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all("ao-test-gh0001" in line and "\n" not in line for line in lines), lines
    assert "did not answer JSON" in lines[0] and "without a state" in lines[1] and "502" in lines[3]
    assert "--help" not in (fake / "calls").read_text()
    assert store.get("ao-test-gh0001")["status"] == Status.PR_OPEN


def test_findings_read_gh_documented_shapes() -> None:
    doc = json.loads(pr_doc(checks=[check("build", "TIMED_OUT", 5, 6), check("ok", "SUCCESS", 5, 7),
                                     {"__typename": "StatusContext", "context": "ci/jenkins", "state": "ERROR",
                                      "targetUrl": "https://ci.example/job/1"},
                                     {"__typename": "CheckRun", "name": "pending", "status": "IN_PROGRESS",
                                      "conclusion": "", "detailsUrl": ""}],
                            reviews=[{"id": "R1", "author": {"login": "bob"}, "state": "COMMENTED", "body": "nit"}],
                            mergeable="CONFLICTING", head="deadbeef"))
    found = reactions.findings(doc)
    assert [(f.kind, f.key) for f in found] == [("ci_failed", "check:job6"),
                                                ("ci_failed", "check:ci/jenkins@https://ci.example/job/1"),
                                                ("conflict", "conflict:deadbeef")]
    assert found[0].run == ("acme/repo", "5") and found[1].run is None
    # a run id that is not digits is never passed to gh
    bad = json.loads(pr_doc(checks=[{"__typename": "CheckRun", "name": "x", "conclusion": "FAILURE",
                                     "detailsUrl": "https://github.com/a/b/actions/runs/--web/job/1"}]))
    assert reactions.findings(bad)[0].run is None


def test_cli_reactions_once_sends_nothing_twice_across_runs(sample_repo, tmp_path, monkeypatch) -> None:
    """`ao reactions --once` twice: the second pass is a new process state over the same files."""
    from click.testing import CliRunner

    from supervisor.report import cli

    # the lead adds this line to cli.COMMANDS; until then the test dispatches it the same way
    monkeypatch.setitem(cli.COMMANDS, "reactions", ("supervisor.report.cmd_notify", "reactions_cmd"))
    fake = fake_gh(tmp_path)
    monkeypatch.setenv("PATH", f"{os.environ['PATH']}:{fake}")
    cfg_file = tmp_path / "ao.yaml"
    cfg_file.write_text("reactions:\n  ci_failed: notify\n  conflict: ignore\n")
    config.trust_config(cfg_file)
    _pr_session("ao-test-cli001", sample_repo)
    (fake / "pr.json").write_text(pr_doc(checks=[check("build", "FAILURE", 7, 8)], mergeable="CONFLICTING"))
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli.cli, ["--config", str(cfg_file), "reactions", "--once"])
        assert result.exit_code == 0 and "1 pull request(s) polled" in result.output, result.output
    assert [(r["event"], r["reaction"]) for r in reaction_receipts("ao-test-cli001")] == [("notified", "ci_failed")]
    queued = [item["event"] for item in notify.outbox() if item["event"]["session"] == "ao-test-cli001"]
    assert [e["event"] for e in queued] == ["ci_failed"]
    assert "run view" not in (fake / "calls").read_text()  # notify only: no log fetched for the agent


def _query_knows_gave_up() -> bool:
    import inspect

    from supervisor.sessions import query

    return "reactions_gave_up" in inspect.signature(query.attention_of).parameters


@pytest.mark.skipif(not _query_knows_gave_up(), reason="needs the query.py change from the reactions report "
                                                       "(attention_of(..., reactions_gave_up))")
def test_giving_up_makes_status_say_attention_failed_and_receipts_list_reactions(ao, sample_repo, tmp_path,
                                                                                 monkeypatch) -> None:
    fake = fake_gh(tmp_path)
    monkeypatch.setenv("PATH", f"{os.environ['PATH']}:{fake}")
    _pr_session("ao-test-gave01", sample_repo)
    (fake / "pr.json").write_text(pr_doc(mergeable="CONFLICTING"))
    cfg = config.Config({**config.DEFAULTS, "reactions": {**config.DEFAULTS["reactions"], "max_attempts": 0}})
    reactions.poll_once(cfg)
    assert [r["event"] for r in reaction_receipts("ao-test-gave01")] == ["gave_up"]
    row = json.loads(ao("status", "ao-test-gave01", "--json").stdout)
    row = row[0] if isinstance(row, list) else row
    assert (row["status"], row["attention"]) == ("pr_open", "failed"), row
    from supervisor.sessions import query

    listed = query.ledger_receipts("ao-test-gave01")  # what `ao receipts` merges with the rollout's calls
    assert [(r["kind"], r["event"]) for r in listed] == [("reaction", "gave_up")]
