"""Shared pieces of the reliability suite: the results registry, isolated ao homes, the real codex,
the scripted model, process scans and an independent rollout reader."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODEX_VERSION = "0.169.0"


# --- results --------------------------------------------------------------------------------------

@dataclass
class Fault:
    """Trials of one fault: how many ran, which failed and why."""
    fault_id: str
    title: str
    trials: int = 0
    failures: int = 0
    details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def get(cls, fault_id: str, title: str) -> Fault:
        if fault_id not in RESULTS:
            RESULTS[fault_id] = cls(fault_id, title)
        return RESULTS[fault_id]

    def trial(self, problems: Iterable[str], label: str) -> bool:
        """Record one trial; `problems` empty means the property held."""
        found = [p for p in problems if p]
        with self.lock:
            self.trials += 1
            if found:
                self.failures += 1
                self.details.append(f"{label}: " + "; ".join(found))
        return not found

    def note(self, text: str) -> None:
        with self.lock:
            self.notes.append(text)

    @property
    def passed(self) -> bool:
        return self.trials > 0 and self.failures == 0

    def assert_passed(self) -> None:
        assert self.trials > 0, f"{self.fault_id}: no trials ran"
        assert self.failures == 0, f"{self.fault_id}: {self.failures}/{self.trials} trials failed " \
            "(details in the reliability summary below)"


RESULTS: dict[str, Fault] = {}


def progress(text: str) -> None:
    """One line of progress on the terminal (the suite runs with -s)."""
    sys.stdout.write(f"  {text}\n")
    sys.stdout.flush()


# --- an isolated ao installation ------------------------------------------------------------------

def shared_codex_cache() -> Path:
    """The codex `make codex` provisioned through ao's own resolver (provisioned here if missing)."""
    sys.path.insert(0, str(ROOT))
    from supervisor.launch import codex_bin

    test_home = Path(os.environ.get("AO_TEST_HOME") or ROOT / ".cache" / "test-home")
    codex_bin.ensure_cached(CODEX_VERSION, test_home / "cache" / "codex")
    return test_home / "cache" / "codex" / CODEX_VERSION


@dataclass
class Home:
    """HOME, AO_HOME and CODEX_HOME under one folder, plus a working dir for ao's config."""
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def ao_home(self) -> Path:
        return self.home / ".agent-orchestrator"

    @property
    def codex_home(self) -> Path:
        return self.home / ".codex"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("AO_CONFIG", "AO_SESSION", "AO_DATA_DIR", "AO_WRAPPER_ACTIVE")}
        env.update(HOME=str(self.home), AO_HOME=str(self.ao_home), CODEX_HOME=str(self.codex_home))
        return env


def make_home(root: Path, monkeypatch: Any, with_codex: bool = False) -> Home:
    h = Home(root)
    for folder in (h.codex_home, h.ao_home, h.cwd):
        folder.mkdir(parents=True, exist_ok=True)
    for key, value in (("HOME", h.home), ("AO_HOME", h.ao_home), ("CODEX_HOME", h.codex_home)):
        monkeypatch.setenv(key, str(value))
    if with_codex:
        target = h.ao_home / "cache" / "codex" / CODEX_VERSION
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(shared_codex_cache(), target_is_directory=True)
    return h


def write_config(home: Home, base_url: str, extra: str = "") -> Path:
    path = home.cwd / "agent-orchestrator.yaml"
    path.write_text("provider:\n  id: scripted\n"
                    f"  base_url: {base_url}\n"
                    "agent:\n  model: gpt-5.1-codex\n  approval: skip\n"
                    "runtime: headless\n" + extra)
    trusted = run_ao(home, "trust", str(path))  # the suite is the user: it trusts the config it wrote
    assert trusted.returncode == 0, trusted.stderr
    return path


def run_ao(home: Home, *args: str, timeout: float = 120, input: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    """The real `ao` CLI in a child process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True, text=True,
                          timeout=timeout, env=home.env(), cwd=home.cwd, input=input)


def start_model(script_text: str, ledger: Path) -> Any:
    from supervisor.model import script as script_mod
    from supervisor.model.server import ScriptedModel

    server = ScriptedModel(script_mod.load_text(script_text, "reliability-script.yaml"), ledger=ledger)
    # a killed codex drops its connection mid-request; that is the point here, not worth a traceback
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    server.start_in_thread()
    return server


# --- processes --------------------------------------------------------------------------------------

def session_processes(session: str, workspace: str | None = None) -> list[Any]:
    """Live (non-zombie) processes that belong to a session: AO_SESSION in their environment, or the
    session id or its worktree on their command line. Our own `ao ...` children are not counted."""
    import psutil

    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline", "status"]):
        try:
            info = proc.info
            if info["pid"] == me or info["ppid"] == me or info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(info["cmdline"] or [])
            hit = session in cmd or (workspace is not None and workspace in cmd)
            if not hit:
                try:
                    hit = proc.environ().get("AO_SESSION") == session
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    hit = False
            if hit:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def describe(procs: Iterable[Any]) -> str:
    import psutil

    out = []
    for p in procs:
        try:
            argv = p.cmdline()
            out.append(f"pid {p.pid} ({' '.join([os.path.basename(argv[0]), *argv[1:3]])[:60]})")
        except (psutil.Error, IndexError):
            out.append(f"pid {p.pid}")
    return ", ".join(out)


def kill_pids(procs: Iterable[Any]) -> None:
    """Clean up processes this suite started (by pid, one by one)."""
    import psutil

    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass


# --- rollouts, read independently of ao --------------------------------------------------------------

TOKEN_FIELDS = (("input", "input_tokens"), ("cached_input", "cached_input_tokens"),
                ("output", "output_tokens"), ("reasoning", "reasoning_output_tokens"))


def rollouts_for_workspace(codex_home: Path, workspace: str) -> list[Path]:
    """Rollouts whose session_meta names this workspace as cwd."""
    out = []
    for path in sorted((codex_home / "sessions").rglob("rollout-*.jsonl")):
        try:
            with open(path, "rb") as fh:
                first = fh.readline()
            meta = json.loads(first)
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and (meta.get("payload") or {}).get("cwd") == workspace:
            out.append(path)
    return out


def parse_rollout(path: Path) -> tuple[dict[str, int], list[str]]:
    """Tokens of every token_usage_record (once per response id) and the problems found: complete
    lines that are not JSON. A partial last line (no newline yet) is not a problem."""
    tokens = {k: 0 for k, _ in TOKEN_FIELDS}
    problems: list[str] = []
    seen: set[str] = set()
    data = path.read_bytes()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines[:-1], 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            problems.append(f"{path.name}:{number} is not JSON")
            continue
        if isinstance(entry, dict) and entry.get("type") == "token_usage_record":
            payload = entry.get("payload") or {}
            rid = payload.get("response_id")
            if rid in seen:
                continue
            seen.add(rid)
            usage = payload.get("usage") or {}
            for key, field_name in TOKEN_FIELDS:
                tokens[key] += int(usage.get(field_name) or 0)
    return tokens, problems


def ledger_tokens(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    tokens = {k: 0 for k, _ in TOKEN_FIELDS}
    for e in entries:
        for key, _ in TOKEN_FIELDS:
            tokens[key] += int(e["usage"][key])
    return tokens


def four(tokens: dict[str, Any]) -> dict[str, int]:
    return {k: int(tokens.get(k) or 0) for k, _ in TOKEN_FIELDS}
