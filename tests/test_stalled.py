"""A fleet view that does not lie: `stalled` when codex cannot reach its model, `attention` for what needs a
human, and a spawn that refuses a provider nobody answers at. Real codex 0.169.0, scripted model."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor import paths, store
from supervisor.model import script as script_mod
from supervisor.model.server import ScriptedModel
from tests.conftest import write_config

SLOW = """
tasks:
  slow:
    steps:
      - run: sleep 4
      - say: done after a nap
"""
GATED = """
tasks:
  deploy:
    steps:
      - run: "echo deployed > deployed.txt  # deploy"
      - say: finished
"""
STALL_CONFIG = "stall_after_s: 5\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_of(ao: Callable[..., Any], session: str) -> dict[str, Any]:
    out = ao("status", session, "--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)[0])


def wait_for(ao: Callable[..., Any], session: str, check: Callable[[dict[str, Any]], bool], timeout: float,
             seen: list[str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = status_of(ao, session)
        if seen is not None and (not seen or seen[-1] != row["status"]):
            seen.append(row["status"])
        if check(row):
            return row
        time.sleep(0.5)
    raise AssertionError(f"{session} never got there; last row: {row}")


def serve_on(port: int, text: str, tmp_path: Path) -> ScriptedModel:
    server = ScriptedModel(script_mod.load_text(text, "late.yaml"), "127.0.0.1", port,
                           ledger=tmp_path / "late-ledger.jsonl")
    server.start_in_thread()
    return server


def test_spawn_refuses_a_dead_provider_at_once_and_leaves_nothing(codex, sample_repo, ao, tmp_path):
    port = free_port()
    write_config(Path.cwd(), f"http://127.0.0.1:{port}/v1")
    started = time.monotonic()
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "x")
    assert out.returncode == 1 and time.monotonic() - started < 15
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert f"127.0.0.1:{port}" in out.stderr and "--no-check" in out.stderr
    assert store.all_sessions() == [] if paths.db_path().exists() else True
    assert not (paths.ao_home() / "worktrees").exists() or not any((paths.ao_home() / "worktrees").iterdir())


def test_no_provider_and_no_login_is_refused_and_doctor_says_why(codex, sample_repo, ao):
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "x")
    assert out.returncode == 1 and "not logged in" in out.stderr and "codex login" in out.stderr
    doctor = json.loads(ao("doctor", "--json").stdout)
    login = [c for c in doctor["model_access"] if c["name"] == "login"][0]
    assert login["ok"] is False and login["needed"] is True
    (paths.codex_home() / "auth.json").write_text('{"auth_mode": "apikey", "OPENAI_API_KEY": "sk-test"}')
    doctor = json.loads(ao("doctor", "--json").stdout)
    assert [c for c in doctor["model_access"] if c["name"] == "login"][0]["ok"] is True


def test_headless_dead_provider_stalls_with_a_reason_and_recovers_when_it_comes_up(codex, sample_repo, ao,
                                                                                    tmp_path):
    port = free_port()
    write_config(Path.cwd(), f"http://127.0.0.1:{port}/v1", STALL_CONFIG)
    doctor = json.loads(ao("doctor", "--json").stdout)
    provider = [c for c in doctor["model_access"] if c["name"] == "provider"][0]
    assert provider["ok"] is False and f"127.0.0.1:{port}" in provider["detail"]
    out = ao("spawn", "--headless", "--no-check", "--repo", str(sample_repo), "--json", "[ao-task:slow] nap")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    started = time.monotonic()
    row = wait_for(ao, session, lambda r: r["status"] == "stalled", 60)
    assert time.monotonic() - started < 60
    assert row["attention"] == "stalled" and "retrying" in row["error"] and "Traceback" not in row["error"]
    table = ao("status").stdout
    assert "ATTENTION" in table and "stalled" in table and "retrying" in table
    server = serve_on(port, SLOW, tmp_path)
    try:
        seen: list[str] = []
        row = wait_for(ao, session, lambda r: r["status"] == "working", 60, seen)
        assert row["error"] is None and row["attention"] is None
        waited = ao("wait", session, "--timeout", "60")
        assert waited.returncode == 0, waited.stdout + waited.stderr
    finally:
        server.shutdown()
        server.server_close()
    final = status_of(ao, session)
    assert final["status"] == "done" and final["error"] is None and final["attention"] is None
    from supervisor.govern import ledger

    events = [e["body"].get("event") for e in ledger.read(paths.session_dir(session))]
    assert events.index("stalled") < events.index("recovered")


def test_tmux_dead_provider_stalls_from_the_screen_and_recovers(codex, sample_repo, ao, tmp_path):
    port = free_port()
    write_config(Path.cwd(), f"http://127.0.0.1:{port}/v1", STALL_CONFIG)
    out = ao("spawn", "--tmux", "--no-check", "--repo", str(sample_repo), "--json", "[ao-task:slow] nap")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    row = wait_for(ao, session, lambda r: r["status"] == "stalled", 60)
    assert row["attention"] == "stalled" and "retrying" in row["error"]
    server = serve_on(port, SLOW, tmp_path)
    try:
        # the TUI finishes its turn and waits for its user: working again, and the human's turn
        row = wait_for(ao, session, lambda r: r["status"] == "working" and r["attention"] == "input", 90)
        assert row["error"] is None
    finally:
        ao("kill", session)
        server.shutdown()
        server.server_close()


def test_tmux_with_no_provider_and_no_login_stalls_on_the_sign_in_screen(codex, sample_repo, ao):
    from supervisor import config

    Path("agent-orchestrator.yaml").write_text("agent:\n  approval: skip\n" + STALL_CONFIG)
    config.trust_config(Path("agent-orchestrator.yaml"))
    out = ao("spawn", "--tmux", "--no-check", "--repo", str(sample_repo), "--json", "hello")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    try:
        row = wait_for(ao, session, lambda r: r["status"] == "stalled", 60)
        assert "not logged in" in row["error"] and row["attention"] == "stalled"
    finally:
        ao("kill", session)


@pytest.mark.codex
def test_a_headless_approval_wait_shows_attention_approval(codex, scripted_model, config_for, sample_repo, ao):
    server = scripted_model(GATED)
    config_for(server, STALL_CONFIG + "policy:\n  approval_required:\n"
                       "    - {pattern: '# deploy', reason: deploys need a human}\n  approval_timeout_s: 120\n")
    out = ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:deploy] ship it")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    try:
        row = wait_for(ao, session, lambda r: r["attention"] == "approval", 60)
        assert row["approval_id"] and row["status"] == "working"
        time.sleep(7)  # longer than stall_after_s: a wait for a human is not a stall
        row = status_of(ao, session)
        assert row["status"] == "working" and row["attention"] == "approval"
        first = ao("status").stdout.splitlines()[2]
        assert session in first and "approval" in first
        assert ao("approve", row["approval_id"]).returncode == 0
        assert ao("wait", session, "--timeout", "60").returncode == 0
    finally:
        ao("kill", session)
    assert status_of(ao, session)["attention"] is None
