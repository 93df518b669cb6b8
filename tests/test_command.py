"""The codex command line ao builds: policy flags, overrides, instructions, environment."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from supervisor import config, paths
from supervisor.errors import FatalError
from supervisor.launch import command


def cfg(**agent):
    data = copy.deepcopy(config.DEFAULTS)
    data["agent"].update(agent)
    return data


def test_o_series_gets_high_effort_unless_configured():
    assert 'model_reasoning_effort="high"' in command.build_overrides(cfg(), "o3", [], "", None)
    assert 'model_reasoning_effort="high"' in command.build_overrides(cfg(), "o4-mini", [], "", None)
    assert not [o for o in command.build_overrides(cfg(), "gpt-5.1-codex", [], "", None) if "effort" in o]
    low = command.build_overrides(cfg(reasoning_effort="low"), "o3", [], "", None)
    assert 'model_reasoning_effort="low"' in low and 'model_reasoning_effort="high"' not in low


def test_always_passes_path_and_update_settings_and_every_override():
    data = cfg()
    data["codex"]["overrides"] = {"model_verbosity": "low", "tools": {"web_search": False}, "n": 3}
    out = command.build_overrides(data, "gpt-5", ["sandbox_workspace_write.network_access=true"], "be brief", None)
    assert out[:2] == ["allow_login_shell=false", "check_for_update_on_startup=false"]
    assert 'model="gpt-5"' in out and 'developer_instructions="be brief"' in out
    assert 'model_verbosity="low"' in out and 'tools={"web_search" = false}' in out and "n=3" in out
    assert out[-1] == "sandbox_workspace_write.network_access=true"
    with pytest.raises(FatalError, match="expected KEY=VALUE"):
        command.build_overrides(data, "gpt-5", ["novalue"], "", None)


def test_instructions_file_wins_over_inline_text():
    out = command.build_overrides(cfg(), "gpt-5", [], "short", "/tmp/instr.md")
    assert 'model_instructions_file="/tmp/instr.md"' in out and not [o for o in out if "developer_instructions" in o]


def test_provider_block_and_builtin_ids_refused():
    data = cfg()
    data["provider"] = {"id": "local", "base_url": "http://127.0.0.1:9/v1", "wire_api": "responses", "env_key": None}
    out = command.build_overrides(data, "gpt-5", [], "", None)
    assert 'model_provider="local"' in out and 'model_providers.local.base_url="http://127.0.0.1:9/v1"' in out
    data["provider"]["id"] = "openai"
    with pytest.raises(FatalError, match="built into codex"):
        command.build_overrides(data, "gpt-5", [], "", None)


@pytest.mark.parametrize("approval, tui, exec_", [
    ("skip", ["--dangerously-bypass-approvals-and-sandbox"], ["--dangerously-bypass-approvals-and-sandbox"]),
    ("auto-edit", ["-a", "never", "-s", "workspace-write"],
     ["-c", 'approval_policy="never"', "-c", 'sandbox_mode="workspace-write"']),
    # codex 0.169 dropped `untrusted`; its accepted values are the default when none are passed
    ("suggest", ["-a", "on-request", "-s", "workspace-write"],
     ["-c", 'approval_policy="on-request"', "-c", 'sandbox_mode="workspace-write"']),
])
def test_approval_mapping_for_tui_and_exec(approval, tui, exec_):
    assert command.policy_flags(approval, "workspace-write", interactive=True) == tui
    assert command.policy_flags(approval, "workspace-write", interactive=False) == exec_
    assert command.policy_flags(approval, "workspace-write", True, accepted=["on-request", "never"]) == tui


def test_suggest_keeps_untrusted_on_a_codex_that_still_has_it():
    older = ["untrusted", "on-failure", "on-request", "never"]
    assert command.policy_flags("suggest", "read-only", True, accepted=older) == ["-a", "untrusted", "-s", "read-only"]
    with pytest.raises(FatalError, match=r"codex 9\.0\.0 cannot run approval 'suggest'.*accepts only never, always"):
        command.codex_approval("suggest", ["never", "always"], "9.0.0")


def test_spec_values_reach_both_argvs():
    spec = command.LaunchSpec("/w", "gpt-5", "suggest", "workspace-write", approval_values=["untrusted", "never"])
    assert 'approval_policy="untrusted"' in command.exec_argv("codex", spec, "-")
    assert command.tui_argv("codex", spec, None)[1:3] == ["-a", "untrusted"]
    spec.approval_values = ["never"]
    with pytest.raises(FatalError, match="accepts only never"):
        command.exec_argv("codex", spec, "-")


def test_exec_and_resume_argv():
    spec = command.LaunchSpec("/w", "gpt-5", "auto-edit", "read-only", ["model=\"gpt-5\""], flags=["--x"])
    argv = command.exec_argv("codex", spec, "do it")
    assert argv[:6] == ["codex", "exec", "--json", "--skip-git-repo-check", "-C", "/w"] and argv[-1] == "do it"
    resumed = command.exec_argv("codex", spec, "more", resume_thread="T1")
    assert resumed[:3] == ["codex", "exec", "resume"] and resumed[-2:] == ["T1", "more"] and "-C" not in resumed
    tui = command.tui_argv("codex", spec, None, resume_thread="T1")
    assert tui[:2] == ["codex", "resume"] and tui[-1] == "T1" and "--x" in tui


def test_agent_env_puts_wrappers_first_once_and_drops_the_guard(monkeypatch):
    wrapper = str(paths.bin_dir())
    env, unset = command.agent_env("s1", "web", None, path=f"/usr/bin:{wrapper}:/bin")
    assert env["PATH"].split(os.pathsep) == [wrapper, "/usr/bin", "/bin"]
    assert env["AO_SESSION"] == "s1" and env["AO_PROJECT_ID"] == "web" and env["CODEX_DISABLE_UPDATE_CHECK"] == "1"
    assert env["AO_DATA_DIR"] == str(paths.ao_home())
    assert "AO_ISSUE_ID" in unset and "AO_WRAPPER_ACTIVE" in unset
    monkeypatch.setenv("SECRET_TOKEN", "x")
    assert "SECRET_TOKEN" not in env  # only ao's own variables are stored with the session
    assert Path(wrapper).name == "bin"
