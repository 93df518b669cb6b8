"""The operator's verbs: policy with sources, pause/resume, revoke, budget, approvals, daily ceilings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from polling import wait_for

from supervisor import paths, store
from supervisor.govern import guard, ledger, operator
from supervisor.govern import policy as policy_mod
from supervisor.records import Status


def ops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True, text=True, timeout=120)


def operator_receipts(session_dir: Path) -> list[dict]:
    return [e["body"] for e in ledger.read(session_dir, seal_first=False) if e["kind"] == "operator"]


def _compiled_session(name: str, policy_text: str, tmp_path: Path, status: Status = Status.DONE,
                      project: str | None = None, started: float | None = None) -> Path:
    from ruamel.yaml import YAML

    session_dir = paths.session_dir(name)
    session_dir.mkdir(parents=True)
    pol = policy_mod.parse(YAML().load(policy_text), "policy.yaml") if policy_text else policy_mod.Policy()
    policy_mod.write_compiled(policy_mod.compile_policy(pol, name, tmp_path, "gpt-5.1-codex"), session_dir)
    store.insert({"session": name, "name": f"{name}-name", "workspace": str(tmp_path), "runtime": "headless",
                  "status": status, "project": project, "started_at": started or time.time(),
                  "ended_at": None if status == Status.WORKING else time.time(), "launch": {"argv": ["codex"]}})
    return session_dir


RULES = """
forbidden_commands:
  - {pattern: 'rm\\s+-rf', reason: no recursive deletes}
forbidden_paths:
  - {glob: 'secrets/**', reason: keep out}
approval_required:
  - {pattern: deploy, reason: humans deploy}
budget_usd: 1.5
"""


# --- the control file --------------------------------------------------------------------------------

def test_no_file_means_no_controls_and_a_malformed_one_is_an_error(tmp_path: Path) -> None:
    assert operator.read(tmp_path) == operator.Controls()
    for bad in ("{", '{"format": 2}', '{"format": 1, "paused": {"x": "soon"}}', '{"format": 1, "revoked": "yes"}',
                '{"format": 1, "budget_usd": -1}', '{"format": 1, "extra": 1}', "[]"):
        (tmp_path / operator.CONTROL_FILE).write_text(bad)
        with pytest.raises(operator.OperatorError, match="denies every tool call"):
            operator.read(tmp_path)
    (tmp_path / operator.CONTROL_FILE).unlink()
    os.symlink("/etc/passwd", tmp_path / operator.CONTROL_FILE)  # never followed
    with pytest.raises(operator.OperatorError):
        operator.read(tmp_path)


def test_pause_expires_by_itself_and_resume_restores_now(tmp_path: Path) -> None:
    session_dir = _compiled_session("ao-op-pause", RULES, tmp_path)
    now = time.time()
    controls = operator.pause(session_dir, "approval_required[0]", now + 60)
    assert operator.paused_now(controls, now) == {"approval_required[0]"}
    assert operator.paused_now(controls, now + 61) == set()  # expiry restores the rule: no write needed
    on_disk = json.loads((session_dir / operator.CONTROL_FILE).read_text())
    assert on_disk["format"] == 1 and on_disk["paused"] == {"approval_required[0]": pytest.approx(now + 60)}
    assert (session_dir / operator.CONTROL_FILE).stat().st_mode & 0o777 == 0o600
    operator.resume(session_dir, "approval_required[0]")
    assert operator.paused_now(operator.read(session_dir)) == set()
    with pytest.raises(operator.OperatorError, match="not paused"):
        operator.resume(session_dir, "approval_required[0]")
    with pytest.raises(operator.OperatorError, match="24h"):
        operator.pause(session_dir, "budget_usd", time.time() + 25 * 3600)
    actions = [r["action"] for r in operator_receipts(session_dir)]
    assert actions == ["pause", "resume"]
    assert ledger.verify_session(session_dir)[0]


def test_durations() -> None:
    assert operator.parse_duration("90s") == 90 and operator.parse_duration("10m") == 600
    assert operator.parse_duration("2h") == 7200
    for bad in ("", "10", "1w", "-5m", "0s", "5 minutes"):
        with pytest.raises(operator.OperatorError):
            operator.parse_duration(bad)
    with pytest.raises(operator.OperatorError, match="24h"):
        operator.parse_duration("25h", operator.MAX_PAUSE_S)


def test_rule_names_come_from_the_compiled_policy(tmp_path: Path) -> None:
    session_dir = _compiled_session("ao-op-rules", RULES, tmp_path)
    compiled = guard.load_policy(str(session_dir), "ao-op-rules")
    assert operator.pausable_rules(compiled) == ["forbidden_commands[0]", "forbidden_paths secrets/**",
                                                 "approval_required[0]", "budget_usd"]
    with pytest.raises(operator.OperatorError, match="its rules: 'forbidden_commands\\[0\\]'"):
        operator.check_rule(compiled, "forbidden_commands[7]")
    for protected in ("unknown_payload", "ledger_unwritable", "fail_closed", "deadline",
                      f"forbidden_paths {paths.ao_home().resolve()}/sessions/**"):
        with pytest.raises(operator.OperatorError, match="protects ao itself"):
            operator.check_rule(compiled, protected)


def test_a_revoked_session_cannot_be_loosened_again(tmp_path: Path) -> None:
    session_dir = _compiled_session("ao-op-rev", RULES, tmp_path)
    first = operator.revoke(session_dir)
    assert first.revoked and first.revoked_at
    assert operator.revoke(session_dir).revoked_at == first.revoked_at
    for change in (lambda: operator.set_budget(session_dir, 100.0),
                   lambda: operator.pause(session_dir, "budget_usd", time.time() + 60)):
        with pytest.raises(operator.OperatorError, match="revoked"):
            change()
    assert operator.read(session_dir).budget_usd is None


# --- policy provenance -------------------------------------------------------------------------------

def test_each_rule_knows_its_source(tmp_path: Path) -> None:
    cfg = tmp_path / "agent-orchestrator.yaml"
    cfg.write_text("budget_usd: 4\n"
                   "policy:\n"
                   "  forbidden_commands:\n"
                   "    - {pattern: 'rm -rf', reason: global says no}\n"
                   "  budget_usd_per_day: 20\n"
                   "projects:\n"
                   "  web:\n"
                   "    policy:\n"
                   "      approval_required:\n"
                   "        - {pattern: deploy, reason: web deploys need a human}\n"
                   "      plan: enforce\n"
                   "      budget_usd_per_day: 5\n")
    extra = tmp_path / "strict.yaml"
    extra.write_text("forbidden_commands:\n  - {pattern: curl, reason: no network}\nforbidden_paths:\n"
                     "  - {glob: 'secrets/**', reason: keep out}\n")
    pol = policy_mod.from_config(cfg, "web")
    pol = policy_mod.load_file(extra, base=pol)
    compiled = policy_mod.compile_policy(pol, "s1", tmp_path, "gpt-5.1-codex")
    sources = compiled["sources"]
    assert sources["budget_usd"] == {"scope": "global", "file": str(cfg), "line": 1}
    assert sources["forbidden_commands[0]"] == {"scope": "global", "file": str(cfg), "line": 4}
    assert sources["approval_required[0]"] == {"scope": "project web", "file": str(cfg), "line": 10}
    assert sources["forbidden_commands[1]"] == {"scope": "--policy", "file": str(extra), "line": 2}
    assert sources["forbidden_paths secrets/**"]["scope"] == "--policy"
    assert sources[f"forbidden_paths {paths.ao_home().resolve()}/sessions/**"]["scope"] == "builtin"
    assert compiled["plan"] == "enforce" and sources["plan"]["line"] == 11
    assert compiled["budget_usd_per_day"] == {"global": 20.0, "project": 5.0}
    # the compiled file stays what the guard loads
    policy_mod.write_compiled(compiled, tmp_path)
    assert guard.load_policy(str(tmp_path), "s1")["plan"] == "enforce"


def test_plan_and_daily_ceiling_are_validated_with_file_and_line(tmp_path: Path) -> None:
    from ruamel.yaml import YAML

    with pytest.raises(Exception, match="policy.yaml:2: policy.plan: must be one of off, enforce"):
        policy_mod.parse(YAML().load("forbidden_commands: []\nplan: strict\n"), "policy.yaml")
    with pytest.raises(Exception, match="policy.yaml:1: policy.budget_usd_per_day"):
        policy_mod.parse(YAML().load("budget_usd_per_day: -3\n"), "policy.yaml")
    assert policy_mod.compile_policy(policy_mod.Policy(), "s", tmp_path, "m")["plan"] == "off"


# --- daily ceilings ----------------------------------------------------------------------------------

def _spent(session_dir: Path, usd: str) -> None:
    (session_dir / guard.STATE).write_text(json.dumps({"spent_usd_exact": usd, "spent_usd": float(usd)}))


def test_daily_spend_sums_sessions_by_start_day(tmp_path: Path) -> None:
    home = paths.ao_home()
    today = date.today()
    yesterday = datetime.combine(today - timedelta(days=1), datetime.min.time()).timestamp() + 3600
    _spent(_compiled_session("ao-day-a", "", tmp_path, project="web"), "0.10")
    _spent(_compiled_session("ao-day-b", "", tmp_path, project="api"), "0.25")
    _spent(_compiled_session("ao-day-old", "", tmp_path, project="web", started=yesterday), "9")
    _compiled_session("ao-day-none", "", tmp_path)  # no guard state yet: nothing spent
    assert operator.daily_spend(home, today) == Decimal("0.35")
    assert operator.daily_spend(home, today, "web") == Decimal("0.10")
    assert operator.daily_spend(home, today - timedelta(days=1)) == Decimal("9")
    assert operator.daily_ceiling_problem(home, {"global": 1.0, "project": 0.2}, "web") is None
    problem = operator.daily_ceiling_problem(home, {"global": 0.3, "project": None}, "web")
    assert problem and "all sessions spent $0.3500 of $0.3000" in problem
    problem = operator.daily_ceiling_problem(home, {"global": None, "project": 0.1}, "web")
    assert problem and "project web" in problem
    (paths.session_dir("ao-day-b") / guard.STATE).write_text("not json")  # fails closed, not as zero
    problem = operator.daily_ceiling_problem(home, {"global": 100.0}, None)
    assert problem and "cannot be checked" in problem and "ao-day-b" in problem


# --- the verbs through the CLI -----------------------------------------------------------------------

def test_policy_pause_and_budget_verbs(tmp_path: Path) -> None:
    session_dir = _compiled_session("ao-cli-op", RULES, tmp_path, status=Status.BLOCKED)
    out = ops("guard", "pause", "ao-cli-op-name", "forbidden_commands[3]", "--for", "10m")
    assert out.returncode == 1 and "has no rule 'forbidden_commands[3]'" in out.stderr
    assert "'approval_required[0]'" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = ops("guard", "pause", "ao-cli-op", "approval_required[0]", "--for", "48h")
    assert out.returncode == 1 and "24h" in out.stderr
    out = ops("guard", "pause", "ao-cli-op", "approval_required[0]", "--for", "10m", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["seconds"] == 600
    view = json.loads(ops("policy", "ao-cli-op", "--json").stdout)
    rules = {r["rule"]: r for r in view["rules"]}
    assert rules["approval_required[0]"]["paused_until"] and rules["forbidden_commands[0]"]["paused_until"] is None
    assert rules["forbidden_commands[0]"]["source"] == {"scope": "--policy", "file": "policy.yaml", "line": 3}  # RULES opens with a newline
    assert view["operator"]["paused_now"] == ["approval_required[0]"]
    text = ops("policy", "ao-cli-op").stdout
    assert "paused until" in text and "builtin" in text
    out = ops("budget", "ao-cli-op", "3.25")
    assert out.returncode == 0 and "ao resume ao-cli-op" in out.stderr
    assert operator.read(session_dir).budget_usd == 3.25
    assert json.loads(ops("policy", "ao-cli-op", "--json").stdout)["operator"]["budget_in_force"] == 3.25
    assert ops("budget", "ao-cli-op", "lots").returncode == 1
    assert ops("guard", "resume", "ao-cli-op", "approval_required[0]").returncode == 0
    # the refused ones wrote nothing; the reads are receipts too
    assert [r["action"] for r in operator_receipts(session_dir)] == [
        "pause", "view_policy", "view_policy", "budget", "view_policy", "resume"]


def test_revoke_a_finished_session(tmp_path: Path) -> None:
    session_dir = _compiled_session("ao-cli-fin", RULES, tmp_path)
    out = ops("revoke", "ao-cli-fin", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["killed"] is False and result["status"] == "done"
    assert store.get("ao-cli-fin")["error"] == "revoked by the operator"
    assert operator.read(session_dir).revoked
    assert [r["action"] for r in operator_receipts(session_dir)] == ["revoke"]
    assert ledger.verify_session(session_dir)[0]
    out = ops("budget", "ao-cli-fin", "5")
    assert out.returncode == 1 and "revoked" in out.stderr


# --- on a real codex session -------------------------------------------------------------------------

SCRIPT = """
tasks:
  spend:
    steps:
      - run: echo one
        usage: {input: 20000, cached_input: 0, output: 500, reasoning: 0}
      - run: echo two > two.txt
      - say: spent it all
  deploy:
    steps:
      - run: echo deploying the site now
      - say: deployed
"""

APPROVAL_POLICY = """
policy:
  approval_required:
    - pattern: deploying
      reason: a human says when we deploy
  approval_timeout_s: 120
"""


def test_approvals_policy_and_revoke_on_a_running_session(ao, codex, scripted_model, config_for, sample_repo,
                                                          tmp_path) -> None:
    cfg = config_for(scripted_model(SCRIPT), APPROVAL_POLICY)
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "--name", "shipper", "--json", "[ao-task:deploy] go")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    session_dir = paths.session_dir(session)
    wait_for(lambda: guard.pending_approvals(str(paths.ao_home()), session), 90, what="a pending approval")

    listed = ops("approvals", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["approvals"]
    assert row["session"] == session and row["name"] == "shipper"
    assert row["command"] and "echo deploying the site now" in row["command"]
    assert 0 <= row["age_s"] < 120 and 0 < row["timeout_in_s"] <= 120
    assert "echo deploying the site now" in ops("approvals").stdout

    view = json.loads(ops("policy", "shipper", "--json").stdout)
    [gate] = [r for r in view["rules"] if r["rule"] == "approval_required[0]"]
    assert gate["source"]["scope"] == "global" and gate["source"]["file"] == str(cfg)
    assert gate["source"]["line"] == cfg.read_text().splitlines().index("    - pattern: deploying") + 1

    out = ops("revoke", "shipper", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["killed"] is True
    record = store.get(session)
    assert record["status"] == "killed" and record["error"] == "revoked by the operator"
    assert record["ended_at"] is not None
    for pid in (record.get("codex_pid"), record.get("pid")):
        if pid:
            wait_for(lambda pid=pid: not _alive(pid), 15, what=f"pid {pid} to end")
    ok, _bad, reason = ledger.verify_session(session_dir)
    assert ok, reason
    assert "revoke" in [r["action"] for r in operator_receipts(session_dir)]
    bundle_path = tmp_path / "revoked.jsonl"
    assert ao("receipts", "export", session, "--since", "1h", "-o", str(bundle_path)).returncode == 0
    assert ao("receipts", "verify", str(bundle_path)).returncode == 0
    # every verb leaves a receipt, the reading ones included
    actions = [r["action"] for r in operator_receipts(session_dir)]
    assert actions.count("list_approvals") == 2 and actions.count("view_policy") == 1
    assert actions[-1] == "export"


def test_budget_on_a_blocked_session_and_its_day(ao, codex, scripted_model, config_for, sample_repo) -> None:
    config_for(scripted_model(SCRIPT), "budget_usd: 0.01\n")
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:spend] go")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    ao("wait", session, "--timeout", "120")
    assert store.get(session)["status"] == "blocked"
    spent = operator.daily_spend(paths.ao_home(), date.today())
    assert spent >= Decimal("0.01")  # the guard's exact count of the real session
    assert operator.daily_ceiling_problem(paths.ao_home(), {"global": 0.01, "project": None}, None)
    raised = ops("budget", session, "5", "--json")
    assert raised.returncode == 0, raised.stderr
    result = json.loads(raised.stdout)
    assert result == {**result, "budget_usd": 5.0, "policy_budget_usd": 0.01, "status": "blocked"}
    assert "ao resume" in ops("budget", session, "6").stderr
    assert [r["budget_usd"] for r in operator_receipts(paths.session_dir(session))] == [5.0, 6.0]
    assert ledger.verify_session(paths.session_dir(session))[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False
