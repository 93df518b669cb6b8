"""Helpers the benchmarks share: the provisioned codex, the scripted model, timed child processes, rollouts."""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODEX_VERSION = "0.169.0"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RESP = re.compile(rb"resp_[0-9a-f]{32}")
STAMP = re.compile(rb"rollout-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}")

# ao runs as an installed program would: with its bytecode cached. A PYTHONDONTWRITEBYTECODE inherited from
# the shell would make every `ao` child compile its modules from source (~50 ms each start); the cache goes
# to a prefix dir, so the benchmarks write nothing into the source tree.
BYTECODE_NOTE = ""
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    BYTECODE_NOTE = "PYTHONDONTWRITEBYTECODE was set in the caller's environment; the benchmarks unset it"
os.environ.setdefault("PYTHONPYCACHEPREFIX", str(ROOT / ".cache" / "bench-pycache"))


@contextmanager
def scratch(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temp work dir for one benchmark, removed afterwards unless `keep`."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def test_home() -> Path:
    """Where `make codex` provisions codex (the same place the test suite uses)."""
    return Path(os.environ.get("AO_TEST_HOME") or ROOT / ".cache" / "test-home")


def provisioned_codex() -> Path:
    """The codex binary `make codex` installed, provisioned through ao's own code if missing."""
    from supervisor.launch import codex_bin
    return codex_bin.ensure_cached(CODEX_VERSION, test_home() / "cache" / "codex")


def link_codex_cache(ao_home: Path) -> None:
    """Make a fresh AO_HOME find the provisioned codex through the resolver's cache step, as the tests do."""
    target = ao_home / "cache" / "codex" / CODEX_VERSION
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(test_home() / "cache" / "codex" / CODEX_VERSION, target_is_directory=True)


def ao_argv(*args: str) -> list[str]:
    """The real `ao` command line: the `ao` script installed beside this interpreter (what a user runs),
    else `python -m supervisor`, whose runpy and importlib.util add ~4 ms to every start."""
    import sys
    script = Path(sys.executable).with_name("ao")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "supervisor", *args]


@dataclass
class Timed:
    seconds: float
    max_rss: int  # bytes, from wait4
    stdout: str
    returncode: int


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Timed:
    """Wall time and peak RSS of one child process, start to exit."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return Timed(elapsed, usage.ru_maxrss * 1024, out.read().decode(errors="replace"), proc.returncode)


def start_model(script_text: str, ledger: Path) -> Any:
    """The scripted Responses API server in a thread of this process."""
    from supervisor.model import script as script_mod
    from supervisor.model.server import ScriptedModel
    server = ScriptedModel(script_mod.load_text(script_text, "bench-script.yaml"), ledger=ledger)
    server.start_in_thread()
    return server


def stop_model(server: Any) -> None:
    server.shutdown()
    server.server_close()


def run_codex_exec(codex: str, base_url: str, workspace: Path, codex_home: Path, home: Path, prompt: str,
                   resume_thread: str | None = None, fork: bool = False) -> str:
    """One real `codex exec --json` run against the scripted model; returns its thread id."""
    from supervisor.launch import command
    cfg = {"agent": {"reasoning_effort": None}, "codex": {"overrides": {}},
           "provider": {"id": "bench", "base_url": base_url}}
    spec = command.LaunchSpec(str(workspace), "gpt-5.1-codex", "skip", "workspace-write",
                              command.build_overrides(cfg, "gpt-5.1-codex", [], "", None))
    argv = command.exec_argv(codex, spec, prompt, resume_thread=resume_thread)
    if fork:
        argv[argv.index("resume")] = "fork"
    env = dict(os.environ, CODEX_HOME=str(codex_home), HOME=str(home))
    done = subprocess.run(argv, cwd=workspace, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"seed codex run failed: {done.stderr[-1000:]}")
    return next(json.loads(line)["thread_id"] for line in done.stdout.splitlines() if '"thread.started"' in line)


class RolloutTemplate:
    """A rollout cut at every thread, call and response id, so copies get fresh ids at full speed."""

    def __init__(self, name: str, body: bytes) -> None:
        spots = sorted([(m.start(), m.end()) for m in UUID.finditer(body)]
                       + [(m.start(), m.end()) for m in RESP.finditer(body)])
        self.pieces, self.ids, at = [], [], 0
        for start, end in spots:
            self.pieces.append(body[at:start])
            self.ids.append(body[start:end])
            at = end
        self.pieces.append(body[at:])
        self.name = name
        self.thread = UUID.search(name.encode()).group()  # type: ignore[union-attr]

    def render(self, fresh: dict[bytes, bytes]) -> tuple[str, bytes]:
        """(file name, body) with every id replaced through `fresh` (shared across one copy's files)."""
        out = [self.pieces[0]]
        for found, piece in zip(self.ids, self.pieces[1:]):
            out += [new_id(fresh, found), piece]
        return self.name.replace(self.thread.decode(), new_id(fresh, self.thread).decode()), b"".join(out)


def new_id(fresh: dict[bytes, bytes], old: bytes) -> bytes:
    if old not in fresh:
        fresh[old] = (b"resp_" + uuid.uuid4().hex.encode()) if old.startswith(b"resp_") else str(uuid.uuid4()).encode()
    return fresh[old]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "ram_gb": round(ram / 2**30, 1), "cpu": cpu,
            "python": platform.python_version(), "load": os.getloadavg()}


def ao_env(work: Path, config: Path | None = None) -> dict[str, str]:
    """An environment whose HOME, AO_HOME and CODEX_HOME all live under `work`, with the provisioned codex."""
    home = work / "home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    link_codex_cache(home / ".agent-orchestrator")
    env = dict(os.environ, HOME=str(home), AO_HOME=str(home / ".agent-orchestrator"), CODEX_HOME=str(home / ".codex"))
    for name in ("AO_SESSION", "AO_CONFIG", "AO_DATA_DIR"):
        env.pop(name, None)
    if config is not None:
        env["AO_CONFIG"] = str(config)
    return env


def write_config(path: Path, base_url: str, extra: str = "") -> Path:
    """An agent-orchestrator.yaml pointing codex at the scripted model, headless, bypassing approvals."""
    path.write_text("provider:\n"
                    f"  id: scripted\n  base_url: {base_url}\n"
                    "agent:\n  model: gpt-5.1-codex\n  approval: skip\n"
                    "runtime: headless\n" + extra)
    return path


def run_ao(env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run the real `ao` CLI; its stdout, or SystemExit naming the command and its stderr."""
    done = subprocess.run(ao_argv(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"`ao {' '.join(args[:3])}` exited {done.returncode}: {done.stderr[-1500:]}{done.stdout[-500:]}")
    return done.stdout
