"""What a session leaves on disk is private: secrets redacted in ao's logs, files 0600 in 0700 dirs."""
from __future__ import annotations

import json
import stat
from pathlib import Path

from supervisor import paths
from supervisor.sessions.spawn import sandbox_warnings

SECRET = "sk-proj-" + "Q" * 40
GITHUB = "ghp_" + "R6abcdefghijklmnopqrstuvwxyz0123456789"  # alone on a line: JSON escapes the newline before it
SCRIPT = f"""
tasks:
  leak:
    steps:
      - run: echo "OPENAI_API_KEY={SECRET}" && echo token={SECRET} && echo {GITHUB}
      - say: printed it
"""


def test_exec_log_is_redacted_and_session_files_are_private(ao, codex, scripted_model, config_for, sample_repo) -> None:
    config_for(scripted_model(SCRIPT))
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:leak] go")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    assert ao("wait", session, "--timeout", "120").returncode == 0
    sdir = paths.session_dir(session)
    exec_log = (sdir / "exec.jsonl").read_text()
    assert "printed it" in exec_log  # the run's events are there
    assert SECRET not in exec_log and GITHUB not in exec_log
    for path in [sdir, *sdir.rglob("*")]:
        if path.is_socket() or path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_a_sandboxed_agent_with_codex_home_under_tmp_is_warned_about(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bwrap").write_text("#!/bin/sh\n")
    (bin_dir / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert sandbox_warnings("auto-edit", "workspace-write", Path("/tmp/x/.codex"))
    assert sandbox_warnings("skip", "workspace-write", Path("/tmp/x/.codex")) == []
    assert sandbox_warnings("auto-edit", "workspace-write", Path("/home/u/.codex")) == []
