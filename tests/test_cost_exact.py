"""`ao cost` against the real codex: its totals equal, token for token, what the scripted model served.

The corpus: a multi-turn run, a resume (appends to the same rollout), a fork (a new rollout whose
token_count totals include the parent's), three agents in parallel, an `ao spawn` session, and one
agent killed with SIGKILL while a `sleep 30` tool call runs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil
import pytest
from polling import wait_for

from supervisor.launch import command
from supervisor.model.server import read_ledger
from supervisor.observe import index

pytestmark = pytest.mark.codex

SCRIPT = """
tasks:
  multi:
    steps:
      - run: echo one > one.txt
        usage: {input: 1000, cached_input: 100, output: 50, reasoning: 10}
      - run: cat one.txt
        usage: {input: 1100, cached_input: 900, output: 60, reasoning: 20}
      - say: Done with one.
        usage: {input: 1200, cached_input: 1000, output: 30, reasoning: 0}
    followup:
      - run: echo two > two.txt
        usage: {input: 2000, cached_input: 1500, output: 70, reasoning: 5}
      - say: Done with two.
        usage: {input: 2100, cached_input: 2000, output: 40, reasoning: 0}
  parallel:
    steps:
      - run: echo parallel
        usage: {input: 3000, cached_input: 0, output: 90, reasoning: 30}
      - say: Parallel done.
        usage: {input: 3100, cached_input: 2900, output: 25, reasoning: 0}
  slow:
    steps:
      - run: echo before-sleep
        usage: {input: 700, cached_input: 0, output: 11, reasoning: 3}
      - run: sleep 30
        usage: {input: 800, cached_input: 600, output: 13, reasoning: 7}
      - say: Never reached.
        usage: {input: 999999, cached_input: 0, output: 999999, reasoning: 0}
"""
KEYS = ("input", "cached_input", "output", "reasoning")


def cost_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `ao` command line, in a child process."""
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def ledger_sums(entries: list[dict[str, Any]]) -> dict[str, int]:
    return {k: sum(e["usage"][k] for e in entries) for k in KEYS}


class Codex:
    def __init__(self, binary: Path, base_url: str, workspace: Path) -> None:
        cfg = {"agent": {"reasoning_effort": None}, "codex": {"overrides": {}},
               "provider": {"id": "scripted", "base_url": base_url}}
        self.spec = command.LaunchSpec(str(workspace), "gpt-5.1-codex", "skip", "workspace-write",
                                       command.build_overrides(cfg, "gpt-5.1-codex", [], "", None))
        self.binary = str(binary)
        self.workspace = workspace

    def argv(self, prompt: str, resume: str | None = None, fork: str | None = None) -> list[str]:
        argv = command.exec_argv(self.binary, self.spec, prompt, resume_thread=resume)
        if fork:  # `codex exec fork THREAD PROMPT` takes the same flags as resume
            argv = command.exec_argv(self.binary, self.spec, prompt, resume_thread=fork)
            argv[argv.index("resume")] = "fork"
        return argv

    def start(self, prompt: str, **kw: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(prompt, **kw), cwd=self.workspace, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def run(self, prompt: str, **kw: str) -> str:
        proc = self.start(prompt, **kw)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        return thread_of(out)


def thread_of(stdout: str) -> str:
    for line in stdout.splitlines():
        event = json.loads(line)
        if event.get("type") == "thread.started":
            return str(event["thread_id"])
    raise AssertionError(f"no thread.started in {stdout[:500]}")


def kill_tree(proc: subprocess.Popen[str]) -> None:
    parent = psutil.Process(proc.pid)
    family = [parent, *parent.children(recursive=True)]
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)


def rollout_with(home: Path, needle: str) -> bool:
    return any(needle in p.read_text(errors="replace") for p in (home / "sessions").rglob("rollout-*.jsonl"))


def test_cost_all_equals_the_ledger(codex, scripted_model, config_for, sample_repo, ao, tmp_path) -> None:
    server = scripted_model(SCRIPT)
    ledger_path = tmp_path / "ledger-0.jsonl"
    home = Path(os.environ["CODEX_HOME"])
    workspace = tmp_path / "ws"
    workspace.mkdir()
    agent = Codex(codex, server.base_url, workspace)

    # several turns, then a resume (same file) and a fork (new file)
    parent = agent.run("[ao-task:multi] make one.txt")
    assert agent.run("now make two.txt", resume=parent) == parent
    forked = agent.run("make two.txt on the fork", fork=parent)
    assert forked != parent

    # three agents at once
    procs = [agent.start(f"[ao-task:parallel] agent {n}") for n in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]

    # killed while its `sleep 30` runs: the response asking for the sleep is already in the ledger and,
    # as a token_usage_record, in the rollout; codex is dead before it could ask for anything else,
    # so ledger and rollouts describe the same set of responses
    slow = agent.start("[ao-task:slow] take your time")
    wait_for(lambda: any(e["step"] == 1 and e["task"] == "slow" for e in read_ledger(ledger_path)), what="sleep step", step=0.1)
    sleep_response = next(e["response_id"] for e in read_ledger(ledger_path) if e["task"] == "slow" and e["step"] == 1)
    wait_for(lambda: rollout_with(home, sleep_response), what="the sleep response in the rollout")
    wait_for(lambda: any("sleep" in " ".join(c.cmdline()) for c in psutil.Process(slow.pid).children(recursive=True)),
             what="sleep to run")
    kill_tree(slow)
    assert slow.returncode == -signal.SIGKILL

    # one ao session, through `ao spawn`, for the default (ao sessions) report
    config_for(server)
    spawned = json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json",
                            "[ao-task:parallel] from ao").stdout)
    assert ao("wait", spawned["session"], "--timeout", "120").returncode == 0

    served = read_ledger(ledger_path)
    assert len(served) == 3 + 2 + 2 + 3 * 2 + 2 + 2  # multi, resume, fork, parallel, slow, spawn
    assert not any(e["task"] == "slow" and e["step"] == 2 for e in served)

    out = cost_cli("cost", "--all", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    expected = ledger_sums(served)
    assert {k: report["totals"]["tokens"][k] for k in KEYS} == expected
    assert report["totals"]["tokens"]["total"] == expected["input"] + expected["output"]
    assert report["unpriced_models"] == [] and report["warnings"] == []
    uncached = expected["input"] - expected["cached_input"]
    assert report["totals"]["cost_usd"] == round((uncached * 1.25 + expected["cached_input"] * 0.125
                                                  + expected["output"] * 10) / 1e6, 6)

    # per thread, too: the fork counts only its own responses, not the parent's it started from
    per_thread: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in served:
        per_thread[e["thread_id"]].append(e)
    rows = {r["key"]: {k: r["tokens"][k] for k in KEYS} for r in report["rows"]}
    assert all(e["thread_id"] for e in served)
    assert rows == {t: ledger_sums(es) for t, es in per_thread.items()}
    assert rows[forked] == ledger_sums([e for e in served if e["thread_id"] == forked])

    # ao's own sessions: the spawned one, read from its rollout
    mine = json.loads(cost_cli("cost", "--json").stdout)
    assert [r["key"] for r in mine["rows"]] == [spawned["session"]]
    thread = json.loads(ao("status", spawned["session"], "--json").stdout)[0]["thread_id"]
    assert {k: mine["rows"][0]["tokens"][k] for k in KEYS} == ledger_sums(per_thread[thread])

    # the index: a second run reads nothing and says the same; a deleted index is rebuilt identically
    again = cost_cli("cost", "--all", "--json")
    assert again.stdout == out.stdout
    prune = [home / "sessions", home / "archived_sessions"]
    assert index.refresh(index.discover(home), prune_roots=prune).read_files == 0
    index.index_path().unlink()
    assert cost_cli("cost", "--all", "--json").stdout == out.stdout

    # receipts of the spawned session: one exec_command, exit code 0
    stream = json.loads(cost_cli("receipts", spawned["session"], "--json").stdout)["receipts"]
    receipts = [r for r in stream if r["kind"] == "tool_call"]
    assert [(r["tool"], r["exit_code"], r["status"]) for r in receipts] == [("exec_command", 0, "completed")]
    assert [r["decision"] for r in stream if r["kind"] == "guard_decision"] == ["allow"]  # the guard saw it

    # the token_count fallback on the same real rollouts: records renamed to an unknown type (same
    # length, so the fork's history_base byte offset still points at the right place in its parent)
    old_home = tmp_path / "codex-without-records"
    for path in (home / "sessions").rglob("rollout-*.jsonl"):
        target = old_home / path.relative_to(home)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes().replace(b'"type":"token_usage_record"', b'"type":"token_usage_recorX"'))
    # another AO_HOME has its own trust store: name the config explicitly, as a user would
    env = dict(os.environ, CODEX_HOME=str(old_home), AO_HOME=str(tmp_path / "ao-home-2"),
               AO_CONFIG=str(Path.cwd() / "agent-orchestrator.yaml"))
    fallback = json.loads(cost_cli("cost", "--all", "--json", env=env).stdout)
    # codex writes a response's token_count only after its tool call returns, so the response that
    # asked for the killed `sleep 30` has a record but no token_count: only records count it
    killed = [e for e in served if e["response_id"] == sleep_response]
    assert {k: fallback["totals"]["tokens"][k] for k in KEYS} == \
        {k: expected[k] - ledger_sums(killed)[k] for k in KEYS}
    fallback_rows = {r["key"]: {k: r["tokens"][k] for k in KEYS} for r in fallback["rows"]}
    assert fallback_rows[forked] == rows[forked] and fallback_rows[parent] == rows[parent]
