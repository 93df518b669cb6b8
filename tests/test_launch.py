"""Launch with the real codex: tmux and headless runtimes, send, resume, kill, queueing, AGENTS.md."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil
from polling import wait_for

from supervisor import store
from supervisor.launch import agents_md
from supervisor.launch.runtimes import tmux
from supervisor.model.server import read_ledger

SCRIPT = """
tasks:
  two:
    steps:
      - run: echo first > first.txt
        usage: {input: 1100, cached_input: 100, output: 30, reasoning: 5}
      - say: first turn done
        usage: {input: 1200, cached_input: 1100, output: 20, reasoning: 0}
    followup:
      - run: echo second > second.txt
        usage: {input: 1300, cached_input: 1200, output: 25, reasoning: 4}
      - say: second turn done
        usage: {input: 1400, cached_input: 1300, output: 15, reasoning: 0}
  slow:
    steps:
      - run: sleep 60
      - say: never reached
  quick:
    steps:
      - say: ok
        usage: {input: 500, cached_input: 0, output: 5, reasoning: 0}
"""


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # exited or a zombie between listing and reading
        return ""


def status_of(ao, session):
    out = ao("status", session, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]


def ledger_totals(path: Path) -> dict[str, int]:
    entries = read_ledger(path)
    return {k: sum(e["usage"][k] for e in entries) for k in ("input", "cached_input", "output", "reasoning")}


def test_headless_resume_keeps_session_and_rollout(ao, codex, scripted_model, config_for, sample_repo, tmp_path):
    config_for(scripted_model(SCRIPT))
    session = json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:two] go").stdout)["session"]
    assert ao("wait", session, "--timeout", "120").returncode == 0
    first = status_of(ao, session)
    out = ao("resume", session, "and now the second part", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["session"] == session
    assert ao("wait", session, "--timeout", "120").returncode == 0
    second = status_of(ao, session)
    assert second["thread_id"] == first["thread_id"] and second["rollout_path"] == first["rollout_path"]
    assert (Path(second["workspace"]) / "second.txt").read_text() == "second\n"
    totals = ledger_totals(tmp_path / "ledger-0.jsonl")
    assert {k: second["tokens"][k] for k in totals} == totals
    unknown = ao("resume", "no-such-thread", "x")
    assert unknown.returncode == 1 and "unknown thread or session 'no-such-thread'" in unknown.stderr


def test_kill_headless_ends_the_tree_and_keeps_records(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    session = json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:slow] go").stdout)["session"]
    # wait until the agent's `sleep 60` runs under codex
    def sleeping():
        record = store.get(session)
        if not record.get("codex_pid"):
            return None
        try:
            kids = psutil.Process(record["codex_pid"]).children(recursive=True)
        except psutil.Error:
            return None
        return any(_cmdline(k).startswith("sleep") for k in kids) and record
    record = wait_for(sleeping)
    codex_proc = psutil.Process(record["codex_pid"])
    tree = [psutil.Process(record["pid"]), codex_proc, *codex_proc.children(recursive=True)]
    assert ao("kill", session).returncode == 0
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    status = status_of(ao, session)
    assert status["status"] == "killed" and status["activity"] == "exited"
    assert Path(status["workspace"]).is_dir()
    again = ao("kill", session)
    assert again.returncode == 1 and "is not running" in again.stderr


def test_max_concurrent_queues_then_runs_all(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT), "max_concurrent: 1\n")
    spawn = lambda task: json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json",
                                       f"[ao-task:{task}] go").stdout)
    blocker = spawn("slow")
    queued = [spawn("quick") for _ in range(2)]
    assert [s["status"] for s in queued] == ["queued", "queued"]
    time.sleep(1.5)
    assert [status_of(ao, s["session"])["status"] for s in queued] == ["queued", "queued"]
    assert ao("kill", blocker["session"]).returncode == 0
    assert ao("wait", *[s["session"] for s in queued], "--timeout", "120").returncode == 0
    assert [status_of(ao, s["session"])["status"] for s in queued] == ["done", "done"]


def test_tmux_spawn_send_kill(ao, codex, scripted_model, config_for, sample_repo, tmp_path):
    config_for(scripted_model(SCRIPT))
    out = ao("spawn", "--tmux", "--repo", str(sample_repo), "--json", "[ao-task:two] go")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    workspace = Path(json.loads(out.stdout)["workspace"])
    wait_for(lambda: (workspace / "first.txt").exists() and store.get(session).get("rollout_path"))
    message = "a follow-up\nthat spans two lines"
    sent = ao("send", session, message)
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: (workspace / "second.txt").exists())
    rollout = Path(store.get(session)["rollout_path"]).read_text()
    assert json.dumps(message)[1:-1] in rollout
    record = store.get(session)
    pane = psutil.Process(record["codex_pid"])
    tree = [pane, *pane.children(recursive=True)]
    assert ao("kill", session).returncode == 0
    assert not tmux.alive(session)
    gone, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive
    assert status_of(ao, session)["status"] == "done"  # its turn had ended: the kill keeps the outcome


def test_agents_md_section_is_replaced_not_duplicated(tmp_path, sample_repo):
    created = agents_md.install(sample_repo, "s1", "Always run tests.")
    assert created
    first = (sample_repo / "AGENTS.md").read_text()
    assert first.count(agents_md.BEGIN) == 1 and "Always run tests." in first and "s1" in first
    agents_md.install(sample_repo, "s1", "New rule.")
    again = (sample_repo / "AGENTS.md").read_text()
    assert again.count(agents_md.BEGIN) == 1 and "New rule." in again and "Always run tests." not in again
    status = subprocess.run(["git", "status", "--porcelain"], cwd=sample_repo, capture_output=True, text=True).stdout
    assert "AGENTS.md" not in status  # kept out of the agent's commits
    own = tmp_path / "own"
    own.mkdir()
    (own / "AGENTS.md").write_text("# House rules\n\nBe kind.\n")
    assert not agents_md.install(own, "s2", None)
    text = (own / "AGENTS.md").read_text()
    assert text.startswith("# House rules\n\nBe kind.\n") and text.count(agents_md.BEGIN) == 1


def test_isolated_codex_home_keeps_the_users_codex_untouched(ao, codex, scripted_model, config_for, sample_repo,
                                                             isolated_home):
    (isolated_home / ".codex" / "config.toml").write_text('model_verbosity = "low"\n')
    config_for(scripted_model(SCRIPT), "codex:\n  home: isolated\n")
    session = json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:quick] go").stdout)["session"]
    assert ao("wait", session, "--timeout", "120").returncode == 0
    row = status_of(ao, session)
    own_home = isolated_home / ".agent-orchestrator" / "sessions" / session / "codex-home"
    assert row["rollout_path"].startswith(str(own_home / "sessions"))
    assert (own_home / "config.toml").read_text() == 'model_verbosity = "low"\n'
    assert not (isolated_home / ".codex" / "sessions").exists()


def test_rm_refuses_uncommitted_changes_unless_forced(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    spawned = json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:two] go").stdout)
    assert ao("wait", spawned["session"], "--timeout", "120").returncode == 0
    workspace = Path(spawned["workspace"])
    refused = ao("rm", spawned["session"])
    assert refused.returncode == 1 and "uncommitted changes" in refused.stderr
    assert (workspace / "first.txt").exists()
    assert ao("rm", spawned["session"], "--force").returncode == 0
    assert not workspace.exists()
    branches = subprocess.run(["git", "branch", "--list", f"ao/{spawned['session']}"], cwd=sample_repo,
                              capture_output=True, text=True).stdout
    assert branches.strip()  # the agent's branch survives the worktree
    assert status_of(ao, spawned["session"])["status"] == "done"  # records stay


def test_tmux_resume_continues_the_same_thread(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    spawned = json.loads(ao("spawn", "--tmux", "--repo", str(sample_repo), "--json", "[ao-task:two] go").stdout)
    session, workspace = spawned["session"], Path(spawned["workspace"])
    wait_for(lambda: (workspace / "first.txt").exists() and store.get(session).get("thread_id"))
    thread = store.get(session)["thread_id"]
    assert ao("kill", session).returncode == 0
    out = ao("resume", thread, "carry on please")  # by thread id, back into the same session
    assert out.returncode == 0, out.stderr
    wait_for(lambda: (workspace / "second.txt").exists())
    record = store.get(session)
    assert record["thread_id"] == thread and record["runtime"] == "tmux"
    assert "carry on please" in Path(record["rollout_path"]).read_text()
    assert ao("kill", session).returncode == 0
    assert not tmux.alive(session)


def test_codex_does_not_outlive_a_killed_supervisor(ao, codex, scripted_model, config_for, sample_repo):
    """Found by the reliability suite: kill -9 of the runner once left codex running unsupervised."""
    config_for(scripted_model(SCRIPT))
    session = json.loads(ao("spawn", "--headless", "--repo", str(sample_repo), "--json", "[ao-task:slow] go").stdout)["session"]
    record = wait_for(lambda: (lambda r: r if r.get("codex_pid") else None)(store.get(session)))
    codex_proc = psutil.Process(record["codex_pid"])
    tree = [codex_proc, *codex_proc.children(recursive=True)]
    psutil.Process(record["pid"]).kill()
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    status = status_of(ao, session)
    assert status["status"] == "failed" and status["activity"] == "exited"


def test_parallel_spawns_into_one_repo_all_get_worktrees(ao, codex, scripted_model, config_for, sample_repo):
    """Found by the reliability suite: concurrent `git worktree add` in one repo sometimes failed."""
    import concurrent.futures
    config_for(scripted_model(SCRIPT))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda _: ao("spawn", "--headless", "--repo", str(sample_repo), "--json",
                                          "[ao-task:quick] go"), range(8)))
    assert [o.returncode for o in outs] == [0] * 8, [o.stderr for o in outs if o.returncode]
    sessions = [json.loads(o.stdout)["session"] for o in outs]
    assert ao("wait", *sessions, "--timeout", "120").returncode == 0
