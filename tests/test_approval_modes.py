"""ao's approval modes on the real codex: the per-version mapping, reading `codex --help`, and each mode
spawned through `ao spawn` in both runtimes with its commands really run."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.launch import codex_bin, command

# Recorded from `codex --help` and `codex -h` of 0.169.0 (the -a option and its neighbours).
HELP_0169_LONG = """\
  -s, --sandbox <SANDBOX_MODE>
          Select the sandbox policy to use when executing model-generated shell commands

          [possible values: read-only, workspace-write, danger-full-access]

      --dangerously-bypass-approvals-and-sandbox
          Skip all confirmation prompts and execute commands without sandboxing. EXTREMELY
          DANGEROUS. Intended solely for running in environments that are externally sandboxed

  -a, --ask-for-approval <APPROVAL_POLICY>
          Configure when the model requires human approval before executing a command

          Possible values:
          - on-request: The model decides when to ask the user for approval
          - never:      Never ask for user approval Execution failures are immediately returned to
            the model

      --search
          Enable live web search. When enabled, the native Responses `web_search` tool is available
"""
HELP_0169_SHORT = """\
  -s, --sandbox <SANDBOX_MODE>
          Select the sandbox policy to use when executing model-generated shell commands [possible
          values: read-only, workspace-write, danger-full-access]
      --dangerously-bypass-approvals-and-sandbox
          Skip all confirmation prompts and execute commands without sandboxing. EXTREMELY
  -a, --ask-for-approval <APPROVAL_POLICY>
          Configure when the model requires human approval before executing a command [possible
          values: on-request, never]
      --search
"""
# An imagined future codex that renamed the asking mode and dropped the bypass flag.
HELP_FUTURE = """\
  -a, --ask-for-approval <APPROVAL_POLICY>
          Configure when the model requires human approval

          Possible values:
          - ask-first: Ask before anything leaves the sandbox
          - never:     Never ask
      --search
"""
HELP_NO_APPROVAL = "Usage: codex [OPTIONS]\n\n  -m, --model <MODEL>\n          Model\n"


# ---- the mapping and the help parsing (pure) ----

def test_parses_long_and_short_help_and_only_the_approval_option():
    assert codex_bin.parse_approval_values(HELP_0169_LONG) == ("on-request", "never")
    assert codex_bin.parse_approval_values(HELP_0169_SHORT) == ("on-request", "never")
    assert codex_bin.parse_approval_values(HELP_FUTURE) == ("ask-first", "never")
    assert codex_bin.parse_approval_values(HELP_NO_APPROVAL) is None
    assert codex_bin.parse_approval_values("  -a, --ask-for-approval <P>\n          odd text\n") is None


def test_support_falls_back_to_the_table_when_help_is_unreadable():
    table = codex_bin.approval_support_from_help(None, "0.169.0")
    assert (table.values, table.bypass, table.source) == (("on-request", "never"), True, "table")
    # unparseable help of an unknown version: the newest measured entry
    odd = codex_bin.approval_support_from_help("  -a, --ask-for-approval <P>\n   ???\n", "0.200.0")
    assert odd.values == codex_bin.KNOWN_APPROVAL_VALUES["0.169.0"] and odd.source == "table"
    parsed = codex_bin.approval_support_from_help(HELP_0169_LONG, "0.169.0")
    assert parsed.source == "help" and parsed.bypass


@pytest.mark.parametrize("approval, tui, exec_value", [
    ("suggest", ["-a", "on-request", "-s", "workspace-write"], "on-request"),
    ("auto-edit", ["-a", "never", "-s", "workspace-write"], "never"),
    ("skip", ["--dangerously-bypass-approvals-and-sandbox"], None),
])
def test_mapping_on_0169(approval: str, tui: list[str], exec_value: str | None):
    support = codex_bin.approval_support_from_help(HELP_0169_LONG, "0.169.0")
    accepted = codex_bin.check_approval(support, approval)
    assert command.policy_flags(approval, "workspace-write", True, accepted) == tui
    exec_flags = command.policy_flags(approval, "workspace-write", False, accepted)
    assert exec_flags == (tui if exec_value is None else
                          ["-c", f'approval_policy="{exec_value}"', "-c", 'sandbox_mode="workspace-write"'])


def test_a_future_codex_without_the_needed_values_fails_in_one_line():
    future = codex_bin.approval_support_from_help(HELP_FUTURE, "0.300.0")
    assert codex_bin.check_approval(future, "auto-edit") == ["ask-first", "never"]
    with pytest.raises(FatalError) as err:
        codex_bin.check_approval(future, "suggest")
    message = str(err.value)
    assert "\n" not in message
    assert "codex 0.300.0" in message and "'suggest'" in message and "accepts only ask-first, never" in message
    with pytest.raises(FatalError, match=r"codex 0\.300\.0 cannot run approval 'skip'.*bypass"):
        codex_bin.check_approval(future, "skip")
    bare = codex_bin.approval_support_from_help(HELP_NO_APPROVAL, "0.400.0")
    with pytest.raises(FatalError, match=r"codex 0\.400\.0 cannot run approval 'auto-edit'.*no --ask-for-approval"):
        codex_bin.check_approval(bare, "auto-edit")


# ---- the probe and its cache, against the real binary ----

def test_real_help_is_read_once_and_cached_per_binary(codex: Path):
    support = codex_bin.approval_support(codex)
    assert support == codex_bin.ApprovalSupport("0.169.0", ("on-request", "never"), True, "help")
    cached = list((paths.ao_home() / "cache" / "codex-help").glob("*.json"))
    assert len(cached) == 1 and oct(cached[0].stat().st_mode & 0o777) == "0o600"
    entry = json.loads(cached[0].read_text())
    assert entry["path"] == os.path.realpath(codex)
    # a second call reads the cache: prove it by a value only the cache holds
    entry["support"]["values"] = ["on-request", "never", "marker"]
    cached[0].write_text(json.dumps(entry))
    started = time.monotonic()
    assert codex_bin.approval_support(codex).values == ("on-request", "never", "marker")
    assert time.monotonic() - started < 0.05
    # a changed binary (other size/mtime/inode) is probed again
    entry["stamp"] = [1, 2, 3]
    cached[0].write_text(json.dumps(entry))
    assert codex_bin.approval_support(codex).values == ("on-request", "never")


def test_damaged_or_poisoned_cache_never_puts_its_strings_in_argv(codex: Path):
    codex_bin.approval_support(codex)
    cache = next((paths.ao_home() / "cache" / "codex-help").glob("*.json"))
    cache.write_text("{not json")  # a crash mid-write or a full disk
    assert codex_bin.approval_support(codex).values == ("on-request", "never")
    entry = json.loads(cache.read_text())
    # the agent has our uid and may rewrite the cache: it can only choose among ao's own constants
    entry["support"]["values"] = ["--dangerously-bypass-approvals-and-sandbox", "on-request; rm -rf ~"]
    cache.write_text(json.dumps(entry))
    with pytest.raises(FatalError, match="cannot run approval 'suggest'"):
        codex_bin.approval_values(codex, "suggest")
    spec = command.LaunchSpec("/w", "m", "suggest", "workspace-write",
                              approval_values=list(codex_bin.approval_support(codex).values))
    with pytest.raises(FatalError):
        command.exec_argv(str(codex), spec, "-")


def test_a_missing_codex_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FatalError, match=r"codex .*nope.*ao doctor"):
        codex_bin.approval_support(tmp_path / "nope")


# ---- each mode through the real `ao spawn`, in both runtimes ----

SCRIPT = """
tasks:
  prove:
    steps:
      - run: echo ran > proof.txt
      - say: proof written
"""


def _turn_contexts(rollout: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in Path(rollout).read_text().splitlines() if line.strip()]
    return [row["payload"] for row in rows if row.get("type") == "turn_context"]


def _turn_completed(rollout: str | None) -> bool:
    if not rollout or not Path(rollout).is_file():
        return False
    text = Path(rollout).read_text()
    return '"task_complete"' in text


# What codex itself recorded as the policy it ran under (turn_context of the rollout).
EXPECTED = {
    ("headless", "suggest"): ("never", "workspace-write"),  # exec never asks, whatever it is given
    ("headless", "auto-edit"): ("never", "workspace-write"),
    ("headless", "skip"): ("never", "danger-full-access"),
    ("tmux", "suggest"): ("on-request", "workspace-write"),
    ("tmux", "auto-edit"): ("never", "workspace-write"),
    ("tmux", "skip"): ("never", "danger-full-access"),
}


@pytest.mark.parametrize("runtime", ["headless", "tmux"])
@pytest.mark.parametrize("approval", ["suggest", "auto-edit", "skip"])
def test_each_mode_spawns_runs_its_command_and_finishes(runtime: str, approval: str, ao, codex: Path,
                                                         scripted_model, config_for, sample_repo: Path,
                                                         codex_home_off_tmp: Path):
    config_for(scripted_model(SCRIPT))
    out = ao("spawn", f"--{runtime}", "--approval", approval, "--repo", str(sample_repo), "--json",
             "[ao-task:prove] go")
    assert out.returncode == 0, out.stderr
    spawned = json.loads(out.stdout)
    session, workspace = spawned["session"], Path(spawned["workspace"])
    if runtime == "headless":
        waited = ao("wait", session, "--timeout", "120")
        assert waited.returncode == 0, (waited.stdout, waited.stderr, store.get(session).get("error"))
        assert store.get(session)["status"] == "done"
    else:  # the TUI stays open after its turn: finished means codex recorded the turn complete
        wait_for(lambda: _turn_completed(store.get(session).get("rollout_path")), timeout=90.0)
    assert (workspace / "proof.txt").read_text() == "ran\n"  # the command really ran, in its workspace
    record = store.get(session)
    argv = record["launch"]["argv"]
    ask = {"suggest": "on-request", "auto-edit": "never"}.get(approval)
    if ask is None:
        assert "--dangerously-bypass-approvals-and-sandbox" in argv
    elif runtime == "tmux":
        assert ["-a", ask] in [argv[i:i + 2] for i in range(len(argv))]
    else:
        assert f'approval_policy="{ask}"' in argv
    contexts = _turn_contexts(record["rollout_path"])
    policy, sandbox = EXPECTED[(runtime, approval)]
    assert contexts and contexts[-1]["approval_policy"] == policy
    assert contexts[-1]["sandbox_policy"]["type"] == sandbox
    if runtime == "tmux":
        assert ao("kill", session).returncode == 0


def _spawn_checks_approval() -> bool:
    import inspect

    from supervisor.sessions import spawn
    return "approval_values" in inspect.getsource(spawn)


@pytest.mark.skipif(not _spawn_checks_approval(),
                    reason="sessions/spawn.py does not call codex_bin.approval_values yet (lead to wire it)")
def test_a_codex_that_cannot_run_the_mode_fails_at_spawn_before_any_side_effect(ao, codex: Path, scripted_model,
                                                                                config_for, sample_repo: Path):
    """A future codex is simulated by what ao learned from its --help (the cache of the real binary)."""
    config_for(scripted_model(SCRIPT))
    codex_bin.approval_support(codex)
    cache = next((paths.ao_home() / "cache" / "codex-help").glob("*.json"))
    entry = json.loads(cache.read_text())
    entry["support"].update(version="0.300.0", values=["ask-first", "never"])
    cache.write_text(json.dumps(entry))
    branches_before = sorted(os.listdir(sample_repo / ".git" / "refs" / "heads"))
    out = ao("spawn", "--headless", "--approval", "suggest", "--repo", str(sample_repo), "[ao-task:prove] go")
    assert out.returncode == 1
    line = out.stderr.strip()
    assert "\n" not in line and "codex 0.300.0" in line and "'suggest'" in line and "ask-first, never" in line
    assert not (paths.ao_home() / "sessions").exists() or not list((paths.ao_home() / "sessions").iterdir())
    assert sorted(os.listdir(sample_repo / ".git" / "refs" / "heads")) == branches_before
