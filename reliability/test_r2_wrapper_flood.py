"""R2: 50 agents x 200 branch changes through the installed git wrapper, all released at the same moment.

Each agent is a shell in its own clone running `$AO_HOME/bin/git` (checkout -b / switch -c / switch)
with AO_SESSION set; half the agents have a session each, the other half share one session, so
one events.jsonl takes 25 concurrent writers while 25 others fill at once. Every branch change must
appear in its session's events.jsonl exactly once, in the agent's order, with no torn line, and
`ao status` must show the branch the agent ended on.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from _harness import Fault, make_home, run_ao

AGENTS = int(os.environ.get("R2_AGENTS", "50"))
EVENTS = int(os.environ.get("R2_EVENTS", "200"))
GIT_ENV = {"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com", "GIT_COMMITTER_NAME": "Ada",
           "GIT_COMMITTER_EMAIL": "ada@example.com", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
AGENT = r"""
read _go < "$1"
n=$2; count=$3; i=0; fails=0
while [ "$i" -lt "$count" ]; do
    case $((i % 3)) in
        0) git checkout -q -b "a$n-$i" ;;
        1) git switch -q -c "a$n-$i" ;;
        2) git switch -q "a$n-$((i - 2))" ;;
    esac || fails=$((fails + 1))
    i=$((i + 1))
done
[ "$fails" -eq 0 ] || { echo "agent $n: $fails git commands failed" >&2; exit 1; }
"""


def expected_names(n: int) -> list[str]:
    return [f"a{n}-{i - 2 if i % 3 == 2 else i}" for i in range(EVENTS)]


def session_of(n: int) -> str:
    return f"ao-r2-own-{n:02d}" if n < AGENTS // 2 else "ao-r2-shared"


def test_r2_fifty_agents_times_two_hundred_events(tmp_path: Path, monkeypatch: Any) -> None:
    from supervisor import paths, store
    from supervisor.launch import wrappers
    from supervisor.observe import events

    fault = Fault.get("R2", f"{AGENTS} agents x {EVENTS} wrapper events at once")
    home = make_home(tmp_path, monkeypatch)
    wrappers.install()
    base_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and "agent-orchestrator" not in p)
    template = tmp_path / "template"
    template.mkdir()
    git_env = {**os.environ, **GIT_ENV, "PATH": base_path}
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "first"]):
        subprocess.run(["git", *args], cwd=template, env=git_env, check=True, capture_output=True)
    repos = []
    for n in range(AGENTS):
        repos.append(tmp_path / f"agent-{n:02d}")
        shutil.copytree(template, repos[-1], symlinks=True)

    barrier = tmp_path / "go"
    os.mkfifo(barrier)
    hold = os.open(barrier, os.O_RDWR)  # readers' open() returns at once; their read() waits for a line
    procs = []
    try:
        for n, repo in enumerate(repos):
            env = {**git_env, "PATH": f"{paths.bin_dir()}{os.pathsep}{base_path}", "AO_SESSION": session_of(n),
                   "AO_DATA_DIR": str(paths.ao_home())}
            procs.append(subprocess.Popen(["sh", "-c", AGENT, "sh", str(barrier), str(n), str(EVENTS)], cwd=repo,
                                          env=env, stderr=subprocess.PIPE, text=True))
        time.sleep(1.0)  # every agent is blocked on the barrier
        started = time.monotonic()
        os.write(hold, b"go\n" * AGENTS)
        errors = [p.communicate(timeout=840)[1] for p in procs]
        elapsed = time.monotonic() - started
    finally:
        os.close(hold)
        for p in procs:
            if p.poll() is None:
                p.kill()
    fault.note(f"R2: {AGENTS * EVENTS} wrapped git commands in {elapsed:.0f}s")

    raw_by_session: dict[str, list[bytes]] = {}
    for session in sorted({session_of(n) for n in range(AGENTS)}):
        raw = events.events_path(session).read_bytes() if events.events_path(session).exists() else b""
        lines = raw.split(b"\n")
        if lines[-1] != b"":
            fault.trial([f"{session}/events.jsonl ends with a torn line {lines[-1][:80]!r}"], session)
        raw_by_session[session] = lines[:-1]
    for n in range(AGENTS):
        session = session_of(n)
        problems = [f"agent exited {procs[n].returncode}: {errors[n].strip()[:200]}"] if procs[n].returncode else []
        actual = []
        for number, line in enumerate(raw_by_session[session], 1):
            event = events.parse_line(line)
            if event is None:
                if n == 0 or session != session_of(n - 1):  # report torn lines once per file
                    problems.append(f"{session}/events.jsonl:{number} is not an event: {line[:80]!r}")
                continue
            name = event.get("name", "")
            if event.get("event") == "branch" and name.startswith(f"a{n}-"):
                actual.append(name)
        want = expected_names(n)
        missing = extra = 0
        for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, want, actual, autojunk=False).get_opcodes():
            if op in ("delete", "replace"):
                missing += a1 - a0
            if op in ("insert", "replace"):
                extra += b1 - b0
        if missing or extra:
            problems.append(f"{missing} of {EVENTS} events missing, {extra} extra or out of order "
                            f"(got {len(actual)})")
        head = subprocess.run(["git", "symbolic-ref", "--short", "HEAD"], cwd=repos[n], env=git_env,
                              capture_output=True, text=True).stdout.strip()
        if head != want[-1]:
            problems.append(f"the clone ended on {head!r}, expected {want[-1]!r}")
        # one trial per event: an agent's problems fail as many events as they affect (at least one)
        bad = max(missing + extra, 1 if problems else 0)
        for k in range(EVENTS):
            fault.trial(problems if k < bad else [], f"agent {n} ({session})")

    # ao status folds the files into the sessions' branch
    now = time.time()
    for session in raw_by_session:
        store.insert({"session": session, "workspace": str(tmp_path), "runtime": "headless", "status": "done",
                      "activity": "exited", "ended_at": now})
    out = run_ao(home, "status", "--json")
    rows = {r["session"]: r for r in json.loads(out.stdout)} if out.returncode == 0 else {}
    for n in range(AGENTS // 2):
        branch = rows.get(session_of(n), {}).get("branch")
        fault.trial([] if branch == expected_names(n)[-1] else
                    [f"ao status branch {branch!r}, expected {expected_names(n)[-1]!r} ({out.stderr[-200:]})"],
                    f"ao status {session_of(n)}")
    shared_last = {expected_names(n)[-1] for n in range(AGENTS // 2, AGENTS)}
    branch = rows.get("ao-r2-shared", {}).get("branch")
    fault.trial([] if branch in shared_last else [f"ao status branch {branch!r} is no agent's last branch"],
                "ao status ao-r2-shared")
    fault.assert_passed()
