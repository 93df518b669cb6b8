"""govern: the hook guard against the real codex, approvals, budget, the signed ledger and bundles."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.govern import bundle, guard, hooks, ledger
from supervisor.govern import policy as policy_mod
from supervisor.govern.guard_server import GuardServer
from supervisor.launch.command import LaunchSpec, build_overrides, exec_argv
from supervisor.report import cmd_govern
from supervisor.report.cli import cli

MODEL = "gpt-5.1-codex"


def _policy(text: str, file: str = "policy.yaml") -> policy_mod.Policy:
    return policy_mod.parse(YAML().load(text), file)


_SERVERS: dict[str, GuardServer] = {}


@pytest.fixture(autouse=True)
def _stop_guard_servers():
    yield
    for server in _SERVERS.values():
        server.stop(drain_s=5)
    _SERVERS.clear()


def make_session(name: str, workspace: Path, policy_text: str) -> Path:
    """Compile the policy and start the session's guard server, as the runner does."""
    sdir = paths.session_dir(name)
    sdir.mkdir(parents=True, exist_ok=True)
    compiled = policy_mod.compile_policy(_policy(policy_text), name, workspace, MODEL)
    policy_mod.write_compiled(compiled, sdir)
    _SERVERS[name] = GuardServer(name, paths.ao_home(), sdir)
    _SERVERS[name].start()
    return sdir


def entries(sdir: Path) -> list[dict[str, Any]]:
    """The ledger, once the session's guard server has written every receipt it queued."""
    if sdir.name in _SERVERS:
        assert _SERVERS[sdir.name].flush(10)
    return ledger.read(sdir)


def codex_argv(codex: Path, server: Any, workspace: Path, session: str, prompt: str,
               approval_timeout_s: float = 300, resume_thread: str | None = None) -> list[str]:
    cfg = {"agent": {"reasoning_effort": None}, "codex": {"overrides": {}},
           "provider": {"id": "scripted", "base_url": server.base_url}}
    overrides = build_overrides(cfg, MODEL, [], "", None)
    overrides += hooks.guard_overrides(paths.session_dir(session) / "guard", approval_timeout_s, server_pid=os.getpid())
    overrides += hooks.safety_overrides()
    spec = LaunchSpec(str(workspace), MODEL, "skip", "workspace-write", overrides, flags=[hooks.TRUST_FLAG])
    return exec_argv(str(codex), spec, prompt, resume_thread)


def start_codex(*args: Any, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(codex_argv(*args, **kwargs), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def run_codex(*args: Any, **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    proc = subprocess.run(codex_argv(*args, **kwargs), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=dict(os.environ), timeout=180, cwd=args[2])  # resume runs in cwd
    return proc, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def commands_run(events: list[dict[str, Any]]) -> list[str]:
    return [e["item"]["command"] for e in events
            if e.get("type") == "item.completed" and e["item"].get("type") == "command_execution"]


def decisions(sdir: Path) -> list[dict[str, Any]]:
    return [e["body"] for e in entries(sdir) if e["kind"] == "guard_decision"]


def rollout_outputs(events: list[dict[str, Any]]) -> list[str]:
    thread = next(e["thread_id"] for e in events if e.get("type") == "thread.started")
    rollout = next(paths.codex_home().glob(f"sessions/*/*/*/rollout-*{thread}.jsonl"))
    outs = []
    for line in rollout.read_text().splitlines():
        entry = json.loads(line)
        if entry["type"] == "response_item" and entry["payload"].get("type") == "function_call_output":
            outs.append(str(entry["payload"].get("output")))
    return outs


@pytest.fixture
def workspace(sample_repo: Path) -> Path:
    (sample_repo / "backup").mkdir()
    (sample_repo / "backup" / "db.dump").write_text("precious\n")
    return sample_repo


# --- real codex ---------------------------------------------------------------------------------

FORBIDDEN = """
tasks:
  wipe:
    steps:
      - run: rm -rf ./backup
      - run: echo ok > notes.txt
      - say: finished
"""
FORBIDDEN_POLICY = """
forbidden_paths:
  - {glob: "backup/**", reason: "backups are kept for the auditors"}
forbidden_commands:
  - {pattern: "git\\\\s+push\\\\s+.*--force", reason: "no force pushes"}
"""


@pytest.mark.codex
def test_forbidden_rm_is_blocked(codex, scripted_model, workspace):
    server = scripted_model(FORBIDDEN)
    sdir = make_session("ao-forbid", workspace, FORBIDDEN_POLICY)
    proc, events = run_codex(codex, server, workspace, "ao-forbid", "[ao-task:wipe] clean up")
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "backup" / "db.dump").read_text() == "precious\n"
    ran = commands_run(events)
    assert not any("rm -rf" in c for c in ran) and any("notes.txt" in c for c in ran)
    # codex does not emit a command_execution item for a blocked call; it logs the block on stderr
    # and hands the model the reason as the call's output
    assert "Command blocked by PreToolUse hook: backups are kept for the auditors" in proc.stderr
    assert any("backups are kept for the auditors" in out for out in rollout_outputs(events))
    denied = [d for d in decisions(sdir) if d["decision"] == "deny"]
    assert len(denied) == 1 and denied[0]["reason"] == "backups are kept for the auditors"
    assert denied[0]["command"] == "rm -rf ./backup" and denied[0]["rule"] == "forbidden_paths backup/**"
    ok, bad, reason = ledger.check_lines(ledger.raw_lines(sdir), ledger.public_key_raw())
    assert ok, (bad, reason)


CORRUPT = """
tasks:
  corrupt:
    steps:
      - run: python3 -c "open('{policy}', 'w').write('{{not json')"
      - run: rm -rf ./backup
      - run: touch after-corrupt.txt
      - say: finished
  gone:
    steps:
      - run: python3 -c "import os; p='{policy}'; os.remove(p); os.mkdir(p)"
      - run: rm -rf ./backup
      - run: touch after-gone.txt
      - say: finished
"""


@pytest.mark.codex
@pytest.mark.parametrize("task", ["corrupt", "gone"])
def test_policy_breaking_mid_run_changes_no_decision(codex, scripted_model, workspace, task):
    """The guard server read the policy once at start; a broken file mid-run is not consulted."""
    session = f"ao-fail-{task}"
    policy_file = paths.session_dir(session) / policy_mod.POLICY_FILE
    server = scripted_model(CORRUPT.format(policy=policy_file))
    sdir = make_session(session, workspace, FORBIDDEN_POLICY)
    proc, events = run_codex(codex, server, workspace, session, f"[ao-task:{task}] go")
    assert proc.returncode == 0, proc.stderr
    assert len(commands_run(events)) == 2  # the breaking command and the touch; the rm was denied
    assert (workspace / f"after-{task}.txt").exists()
    assert (workspace / "backup" / "db.dump").exists()
    assert [d["decision"] for d in decisions(sdir)] == ["allow", "deny", "allow"]


BUDGET = """
tasks:
  spend:
    steps:
      - run: echo one > one.txt
        usage: {input: 10000, cached_input: 0, output: 1000, reasoning: 0}
      - run: echo two > two.txt
        usage: {input: 10000, cached_input: 0, output: 1000, reasoning: 0}
      - run: echo three > three.txt
        usage: {input: 10000, cached_input: 0, output: 1000, reasoning: 0}
      - say: finished
"""


@pytest.mark.codex
def test_budget_stops_further_tool_calls(codex, scripted_model, workspace):
    # each response costs 10000 x 1.25 + 1000 x 10 per million = $0.0225; the budget is 3 cents
    server = scripted_model(BUDGET)
    sdir = make_session("ao-budget", workspace, "budget_usd: 0.03\n")
    proc, events = run_codex(codex, server, workspace, "ao-budget", "[ao-task:spend] go")
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "one.txt").exists()
    assert not (workspace / "two.txt").exists() and not (workspace / "three.txt").exists()
    receipts = entries(sdir)
    stops = [e for e in receipts if e["kind"] == "budget_stop"]
    assert len(stops) == 1 and stops[0]["body"]["budget_usd"] == 0.03
    assert stops[0]["body"]["spent_usd"] == pytest.approx(0.045)
    denied = [d for d in decisions(sdir) if d["decision"] == "deny"]
    assert len(denied) == 2 and all(d["rule"] == "budget_usd" for d in denied)
    assert "budget reached" in denied[0]["reason"]
    assert guard.session_governance(str(paths.ao_home()), "ao-budget")["budget_blocked"] is True


GATED = """
tasks:
  deploy:
    steps:
      - run: "echo deployed > deployed.txt  # deploy"
      - say: finished
"""
GATED_POLICY = """
approval_required:
  - {pattern: "# deploy", reason: "deploys need a human"}
approval_timeout_s: %s
"""


def _wait_pending(session: str, proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = cmd_govern.pending(session)
        if waiting:
            return waiting[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("no approval request appeared")


@pytest.mark.codex
@pytest.mark.parametrize("answer", ["approve", "deny"])
def test_approval_gate(codex, scripted_model, workspace, answer):
    session = f"ao-gate-{answer}"
    server = scripted_model(GATED)
    sdir = make_session(session, workspace, GATED_POLICY % 60)
    proc = start_codex(codex, server, workspace, session, "[ao-task:deploy] ship it", approval_timeout_s=60)
    try:
        request = _wait_pending(session, proc)
        assert request["reason"] == "deploys need a human" and "deployed.txt" in request["command"]
        assert guard.session_governance(str(paths.ao_home()), session)["waiting_input"] == request["id"]
        time.sleep(0.5)
        assert not (workspace / "deployed.txt").exists()  # still waiting
        args = [request["id"]] if answer == "approve" else [request["id"], "--reason", "not on a Friday"]
        result = CliRunner().invoke(cli, [answer, *args])
        assert result.exit_code == 0, result.output
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert (workspace / "deployed.txt").exists() is (answer == "approve")
    final = [d for d in decisions(sdir)][-1]
    assert final["decision"] == ("allow" if answer == "approve" else "deny")
    if answer == "deny":
        assert "not on a Friday" in final["reason"] and "not on a Friday" in err
    approvals = [e["body"] for e in entries(sdir) if e["kind"] == "approval"]
    assert [a["status"] for a in approvals] == ["pending", "approved" if answer == "approve" else "denied"]
    again = CliRunner().invoke(cli, ["approve", request["id"]])
    # a second answer is refused (AoGroup prints FatalError as `ao: error: ...`)
    assert again.exit_code == 1 and "ao: error:" in again.output and "is already" in again.output


@pytest.mark.codex
def test_approval_times_out_to_deny(codex, scripted_model, workspace):
    server = scripted_model(GATED)
    sdir = make_session("ao-gate-late", workspace, GATED_POLICY % 1.5)
    started = time.monotonic()
    proc, events = run_codex(codex, server, workspace, "ao-gate-late", "[ao-task:deploy] ship it",
                             approval_timeout_s=1.5)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 1.5
    assert not (workspace / "deployed.txt").exists()
    final = decisions(sdir)[-1]
    assert final["decision"] == "deny" and "expired" in final["reason"]
    assert cmd_govern.pending("ao-gate-late") == []


@pytest.mark.codex
def test_prompt_hash_on_later_receipts(codex, scripted_model, workspace):
    import hashlib

    server = scripted_model(FORBIDDEN)
    sdir = make_session("ao-hash", workspace, FORBIDDEN_POLICY)
    prompt = "[ao-task:wipe] clean up"
    run_codex(codex, server, workspace, "ao-hash", prompt)
    digest = "sha256:" + hashlib.sha256(prompt.encode()).hexdigest()
    receipts = entries(sdir)
    at = next(i for i, e in enumerate(receipts) if e["body"].get("event") == "UserPromptSubmit")
    assert receipts[at]["body"]["prompt_sha256"] == digest
    assert all(e["prompt_hash"] == digest for e in receipts[at:])
    assert {e["kind"] for e in receipts} >= {"lifecycle", "guard_decision", "tool_call"}


PLANNED = """
tasks:
  plan:
    steps:
      - say: "Here is my plan:\\n```json\\n{\\"goal\\": \\"edit\\", \\"steps\\": [{\\"action\\": \\"shell\\", \\"description\\": \\"write it\\"}]}\\n```\\nStarting now."
    followup:
      - run: echo editing > edit.txt
      - say: edited
"""


@pytest.mark.codex
def test_written_plan_is_hashed_and_carried_by_later_receipts(codex, scripted_model, workspace):
    server = scripted_model(PLANNED)
    sdir = make_session("ao-plan", workspace, FORBIDDEN_POLICY)
    _, events = run_codex(codex, server, workspace, "ao-plan", "[ao-task:plan] plan first")
    thread = next(e["thread_id"] for e in events if e.get("type") == "thread.started")
    resumed, _ = run_codex(codex, server, workspace, "ao-plan", "go ahead", resume_thread=thread)
    assert resumed.returncode == 0, resumed.stderr
    assert (workspace / "edit.txt").read_text() == "editing\n"
    from supervisor.govern import plans as plans_mod

    written = plans_mod.normalize({"goal": "edit", "steps": [{"action": "shell", "description": "write it"}]})
    assert not isinstance(written, str)
    digest = written.hash
    receipts = entries(sdir)
    plans = [e for e in receipts if e["body"].get("event") == "plan"]
    assert [p["body"]["plan_sha256"] for p in plans] == [digest]
    after = receipts[receipts.index(plans[0]):]
    calls = [e for e in after if e["kind"] == "tool_call"]
    assert calls and all(c["body"]["plan_hash"] == digest for c in calls)


def test_repo_hooks_are_detected(sample_repo, tmp_path):
    assert hooks.detect_repo_hooks(sample_repo) == []
    (sample_repo / ".codex").mkdir()
    (sample_repo / ".codex" / "hooks.json").write_text('{"hooks": {}}')
    (sample_repo / ".codex" / "config.toml").write_text('model = "x"\n')
    sub = sample_repo / "pkg"
    sub.mkdir()
    assert hooks.detect_repo_hooks(sub) == [sample_repo / ".codex" / "hooks.json"]
    (sample_repo / ".codex" / "config.toml").write_text('[hooks]\nPreToolUse = []\n')
    assert len(hooks.detect_repo_hooks(sample_repo)) == 2
    with pytest.raises(FatalError, match="ships codex hooks"):
        hooks.refuse_repo_hooks(sample_repo, allow_repo_hooks=False)
    assert hooks.refuse_repo_hooks(sample_repo, allow_repo_hooks=True)


# --- the guard without codex ----------------------------------------------------------------------

def _guard(session: str, payload: dict[str, Any], event: str = "PreToolUse") -> subprocess.CompletedProcess[str]:
    command = hooks.client_command(event, paths.session_dir(session) / "guard", 10, server_pid=os.getpid())
    return subprocess.run(["/bin/bash", "-c", command], input=json.dumps(payload), capture_output=True, text=True)


def test_guard_decisions(workspace):
    make_session("ao-unit", workspace, FORBIDDEN_POLICY + "mcp: {allow: [docs], deny: [docs/delete_*]}\n")
    base = {"hook_event_name": "PreToolUse", "cwd": str(workspace), "tool_name": "Bash"}
    cases = {
        "ls -la": 0, "rm -rf backup": 2, "cd backup && rm db.dump": 2, "echo x > backup/new": 2,
        "rm -rf .": 2, "bash -c 'rm -r ./backup'": 2, "cp notes.txt backup/": 2, "tee -a backup/log": 2,
        "git push origin main --force": 2, "git push origin main": 0, "echo backup > notes.txt": 0,
        "mv backup old": 2, "rm -f notes.txt 2>&1": 0, "cat backup/db.dump": 0,
        "apply_patch <<'EOF'\n*** Begin Patch\n*** Delete File: backup/db.dump\n*** End Patch\nEOF\n": 2,
    }
    for cmd, code in cases.items():
        out = _guard("ao-unit", {**base, "tool_input": {"command": cmd}})
        assert out.returncode == code, (cmd, out.stderr)
    patch = {**base, "tool_name": "apply_patch",
             "tool_input": {"command": "*** Begin Patch\n*** Update File: backup/db.dump\n*** End Patch"}}
    assert _guard("ao-unit", patch).returncode == 2
    assert _guard("ao-unit", {**base, "tool_name": "mcp__docs__search", "tool_input": {}}).returncode == 0
    denied = _guard("ao-unit", {**base, "tool_name": "mcp__docs__delete_page", "tool_input": {}})
    assert denied.returncode == 2 and "mcp.deny" in denied.stderr
    assert _guard("ao-unit", {**base, "tool_name": "mcp__shell__run", "tool_input": {}}).returncode == 2
    own = _guard("ao-unit", {**base, "tool_input": {"command": f"echo x > {paths.ao_home()}/sessions/ao-unit/policy.json"}})
    assert own.returncode == 2 and "off limits" in own.stderr
    assert _guard("ao-unit", {**base, "tool_input": {"command": "ls"}}, event="PostToolUse").returncode == 0


def test_guard_fails_closed_on_garbage(workspace):
    make_session("ao-garbage", workspace, "forbidden_commands: []\n")
    command = hooks.client_command("PreToolUse", paths.session_dir("ao-garbage") / "guard", 10)
    out = subprocess.run(["/bin/bash", "-c", command], input="{not json", capture_output=True, text=True)
    assert out.returncode == 2 and "not JSON" in out.stderr
    state = paths.session_dir("ao-garbage") / guard.STATE
    state.write_text("[]")  # only a copy now: the server's memory decides
    out = _guard("ao-garbage", {"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"}})
    assert out.returncode == 0, out.stderr
    broken = hooks.client_command("PreToolUse", paths.session_dir("ao-garbage") / "guard", 10,
                                  python="/nonexistent/python")
    out = subprocess.run(["/bin/bash", "-c", broken], input="{}", capture_output=True, text=True)
    assert out.returncode == 2 and "failing closed" in out.stderr


# --- policy ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,line,problem", [
    ("forbidden_commands:\n  - {pattern: '(', reason: x}\n", 2, "invalid regular expression"),
    ("budget_usd: 1\nbudget: 3\n", 2, "unknown key budget"),
    ("forbidden_paths:\n  - glob: a\n    reason: b\n    extra: c\n", 4, "unknown key extra"),
    ("mcp:\n  allow: docs\n", 2, "policy.mcp.allow"),
    ("approval_timeout_s: 0\n", 1, "positive number"),
    ("allow_repo_hooks: yes please\n", 1, "true or false"),
])
def test_policy_errors_name_file_and_line(text, line, problem):
    with pytest.raises(FatalError) as err:
        _policy(text, "p.yaml")
    assert str(err.value).startswith(f"p.yaml:{line}: ") and problem in str(err.value)


def test_policy_from_config_merges_project(tmp_path):
    (tmp_path / "extra.yaml").write_text("forbidden_paths:\n  - {glob: secrets/**, reason: no}\n")
    cfg = tmp_path / "agent-orchestrator.yaml"
    cfg.write_text("budget_usd: 5\npolicy:\n  forbidden_commands:\n    - {pattern: sudo, reason: no root}\n"
                   "projects:\n  web:\n    repo: .\n    policy: extra.yaml\n")
    merged = policy_mod.from_config(cfg, "web")
    assert merged.budget_usd == 5 and len(merged.forbidden_commands) == 1 and len(merged.forbidden_paths) == 1
    cfg.write_text("policy:\n  forbidden_commands:\n    - {pattern: sudo}\n    - {pattern: 7}\n")
    with pytest.raises(FatalError, match=r"agent-orchestrator.yaml:4: policy.forbidden_commands\[1\].pattern"):
        policy_mod.from_config(cfg)


# --- ledger and bundles ---------------------------------------------------------------------------

def _filled_ledger(session: str, count: int = 12) -> Path:
    sdir = paths.session_dir(session)
    sdir.mkdir(parents=True)
    for n in range(count):
        ledger.append(sdir, "tool_call", {"n": n, "command": f"echo {n}", "env": {"OPENAI_API_KEY": "sk-abc"}},
                      prompt_hash="sha256:" + "ab" * 32)
    return sdir


def test_ledger_redacts_chains_and_survives_concurrent_writers(workspace):
    sdir = _filled_ledger("ao-led", 3)
    text = (sdir / ledger.LEDGER).read_text()
    assert "sk-abc" not in text and "[REDACTED]" in text
    token = "ghp_" + "x" * 36
    ledger.spool(sdir, "wrapper_event", {"cmd": f"git push https://{token}@h"})
    code = "from supervisor.govern import ledger; import sys; from pathlib import Path\n" \
           "for n in range(15): ledger.append(Path(sys.argv[1]), 'wrapper_event', {'w': sys.argv[2], 'n': n})"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(sdir), str(w)]) for w in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    lines = ledger.raw_lines(sdir)
    assert len(lines) == 3 + 1 + 60 and token not in b"".join(lines).decode()
    assert ledger.check_lines(lines, ledger.public_key_raw()) == (True, None, "64 lines verified")
    key = ledger.key_path()
    assert key.stat().st_mode & 0o777 == 0o600


def test_bundle_verifies_and_detects_tampering(tmp_path):
    from supervisor import store  # `receipts export` takes known sessions only

    _filled_ledger("ao-bundle")
    store.insert({"session": "ao-bundle", "workspace": str(tmp_path), "runtime": "headless", "status": "done"})
    out = tmp_path / "bundle.jsonl"
    result = CliRunner().invoke(cli, ["receipts", "export", "ao-bundle", "-o", str(out)])
    assert result.exit_code == 0, result.output
    ok, bad, reason = bundle.verify(out)
    assert ok and bad is None, reason
    original = out.read_bytes()
    line_of = [original[:i].count(b"\n") + 1 for i in range(len(original))]
    rng = random.Random(1234)
    for pos in rng.sample(range(len(original)), 250):
        data = bytearray(original)
        data[pos] = (data[pos] + rng.randint(1, 255)) % 256
        out.write_bytes(bytes(data))
        ok, bad, reason = bundle.verify(out)
        assert not ok, f"byte {pos} changed but the bundle verified"
        assert bad is not None and bad <= line_of[pos] + 1, (pos, line_of[pos], bad, reason)
    lines = original.split(b"\n")[:-1]
    dropped = lines[:5] + lines[6:]
    out.write_bytes(b"\n".join(dropped) + b"\n")
    assert bundle.verify(out)[:2] == (False, 6)
    swapped = lines[:4] + [lines[5], lines[4]] + lines[6:]
    out.write_bytes(b"\n".join(swapped) + b"\n")
    assert bundle.verify(out)[:2] == (False, 5)
    out.write_bytes(b"\n".join(lines[:-2] + lines[-1:]) + b"\n")  # the last ledger line removed
    assert bundle.verify(out)[:2] == (False, len(lines) - 1)
    out.write_bytes(original)
    result = CliRunner().invoke(cli, ["receipts", "verify", str(out)])
    assert result.exit_code == 0 and result.output.startswith("OK")
    out.write_bytes(original.replace(b'"n":3', b'"n":4', 1))
    result = CliRunner().invoke(cli, ["receipts", "verify", str(out), "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["first_bad_line"] == 5


def test_hot_path_stays_lean(workspace):
    """The hook client must not import json, re, typing, socket or crypto: that is its time budget."""
    make_session("ao-lean", workspace, FORBIDDEN_POLICY + "mcp: {deny: [shell]}\nbudget_usd: 5\n")
    code = hooks.client_source().replace('if __name__ == "__main__":\n    sys.exit(main())', "") + (
        "\nrc=main();heavy=sorted({'json','re','enum','typing','socket','cryptography','ruamel','click'}"
        " & set(sys.modules));print(rc, heavy)")
    payload = {"hook_event_name": "PreToolUse", "cwd": str(workspace), "tool_name": "Bash",
               "tool_input": {"command": "cd src && rm -f build.log > out.txt 2>&1"}, "transcript_path": ""}
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, "--event", "PreToolUse", "--socket-dir",
                          str(paths.session_dir("ao-lean") / "guard"), "--deadline", "10"],
                         input=json.dumps(payload), capture_output=True, text=True)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr
