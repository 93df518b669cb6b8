"""Shared fixtures: every test gets its own HOME, AO_HOME and CODEX_HOME; codex is the real binary."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor.launch import codex_bin
from supervisor.model import script as script_mod
from supervisor.model.server import ScriptedModel
from supervisor.sessions.demo import make_sample_repo

ROOT = Path(__file__).resolve().parents[1]
CODEX_VERSION = "0.169.0"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No test may touch the real home: HOME, AO_HOME and CODEX_HOME all point into tmp_path.

    Afterwards, whatever a test's sessions left running (a failed test does not kill its agents)
    is ended, so no supervisor, codex or tmux server outlives the test.
    """
    home = tmp_path / "home"
    for sub in ("", ".codex"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AO_HOME", str(home / ".agent-orchestrator"))
    monkeypatch.setenv("CODEX_HOME", str(home / ".codex"))
    monkeypatch.delenv("AO_CONFIG", raising=False)
    monkeypatch.delenv("AO_SESSION", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield home
    _end_leftover_sessions()


def _end_leftover_sessions() -> None:
    from supervisor import paths, store
    from supervisor.launch import processes
    from supervisor.launch.runtimes import tmux

    if not paths.db_path().exists():
        return
    for record in store.all_sessions():
        processes.kill_tree(record.get("codex_pid"), grace=1.0)
        processes.kill_tree(record.get("pid"), grace=1.0)
    subprocess.run(["tmux", "-L", tmux.socket_name(), "kill-server"], capture_output=True)


@pytest.fixture(scope="session")
def shared_codex_cache() -> Path:
    """The codex install `make codex` provisioned (through ao's own resolver), shared by all tests."""
    test_home = Path(os.environ.get("AO_TEST_HOME") or ROOT / ".cache" / "test-home")
    codex_bin.ensure_cached(CODEX_VERSION, test_home / "cache" / "codex")
    return test_home / "cache" / "codex" / CODEX_VERSION


@pytest.fixture
def codex(shared_codex_cache: Path, isolated_home: Path) -> Path:
    """Link the shared install into this test's ao cache, where the resolver's step 4 finds it."""
    target = isolated_home / ".agent-orchestrator" / "cache" / "codex" / CODEX_VERSION
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(shared_codex_cache, target_is_directory=True)
    return codex_bin.native_binary(target)


@pytest.fixture
def scripted_model(tmp_path: Path) -> Iterator[Callable[[str], ScriptedModel]]:
    servers: list[ScriptedModel] = []

    def start(script_text: str, model: str | None = None) -> ScriptedModel:
        script = script_mod.load_text(script_text, "test-script.yaml")
        server = ScriptedModel(script, ledger=tmp_path / f"ledger-{len(servers)}.jsonl", model=model)
        server.start_in_thread()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def codex_home_off_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A CODEX_HOME outside /tmp, as a user's ~/.codex is (see off_tmp.py: codex's own sandbox needs it)."""
    import shutil

    from off_tmp import new_dir

    home = new_dir("codex-home-")
    monkeypatch.setenv("CODEX_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    return make_sample_repo(tmp_path / "repos")


def write_config(directory: Path, base_url: str, extra: str = "") -> Path:
    """An agent-orchestrator.yaml pointing codex at the scripted model, headless, bypassing approvals.

    The test is the user here, so the file is trusted (`ao trust`) like a user would after writing it.
    """
    from supervisor import config

    path = directory / "agent-orchestrator.yaml"
    path.write_text(
        "provider:\n"
        f"  id: scripted\n  base_url: {base_url}\n"
        "agent:\n  model: gpt-5.1-codex\n  approval: skip\n"
        "runtime: headless\n" + extra)
    config.trust_config(path)
    return path


def run_ao(*args: str, input: str | None = None, timeout: float = 180, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `ao` CLI in a child process, as a user would."""
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, env=env, cwd=cwd)


@pytest.fixture
def ao() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_ao


@pytest.fixture
def config_for(tmp_path: Path) -> Callable[[ScriptedModel, str], Path]:
    def make(server: ScriptedModel, extra: str = "") -> Path:
        return write_config(Path.cwd(), server.base_url, extra)
    return make
