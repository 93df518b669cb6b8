"""R6: the red team against the whole stack, through `ao spawn`, repeated over seeds.

- R6a: a hostile scripted model (real codex 0.169.0, `skip` or `auto-edit` + `workspace-write`, chosen by
  the seed) makes the attacks of tests/test_redteam.py in a random order; per attack, the attack ran
  (or the guard denied it, as expected) and afterwards ao's state, codex's config, the main repo's .git
  and the queued session's launch plan are unchanged, the forbidden command after the attacks and in the
  queued session is denied, the bundle verifies with exactly the expected denials, the hook requests
  the agent sent to the guard's socket itself are recorded unconfirmed (never as codex's tool calls)
  while codex's own calls are confirmed by its rollout, and the signing key never reached the model;
- R6b: `ao rm` of a session whose record's `workspace` was edited to point elsewhere refuses and the
  directory survives; a worktree whose `git status` fails counts as dirty;
- R6c: `ao receipts export` of an unknown id fails cleanly and writes nothing;
- R6d: secrets in tool output are absent from everything ao stores for the session;
- R6e: every file under $AO_HOME is 0600/0700 (or under bin/, cache/, or the agent's worktrees/);
- R6f: a FIFO and a /dev/zero symlink named like rollouts in $CODEX_HOME/sessions (planted by the agent)
  hang nothing: the session ends, `ao status` and `ao cost --all` answer;
- R6g: a PR url with OSC/CSI codes recorded by the gh wrapper reaches `ao status` without ESC bytes.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from _harness import ROOT, Fault, Home, make_home, progress, run_ao, start_model

sys.path.insert(0, str(ROOT / "tests"))
import test_redteam as rt  # the attacks are defined once, with the fast suite

TRIALS = int(os.environ.get("R6_TRIALS", "3"))


def _home(monkeypatch: Any) -> Home:
    """A home outside /tmp: codex 0.169.0 cannot make its sandbox helper under /tmp (auto-edit)."""
    from off_tmp import new_dir  # tests/ is on sys.path for test_redteam

    return make_home(new_dir("r6-"), monkeypatch, with_codex=True)


def _config(home: Home, base_url: str, approval: str, extra: str = "") -> None:
    path = home.cwd / "agent-orchestrator.yaml"
    path.write_text("provider:\n  id: scripted\n"
                    f"  base_url: {base_url}\n"
                    f"agent:\n  model: gpt-5.1-codex\n  approval: {approval}\n  sandbox: workspace-write\n"
                    "runtime: headless\n" + extra)
    trusted = run_ao(home, "trust", str(path))
    assert trusted.returncode == 0, trusted.stderr


def _repo(root: Path) -> Path:
    from supervisor.sessions.demo import make_sample_repo

    return make_sample_repo(root / "repos")


def _spawn(home: Home, repo: Path, task: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "supervisor", "spawn", "--headless", "--repo", str(repo), "--json",
                          f"[ao-task:{task}] go"], capture_output=True, text=True, timeout=120,
                         env=env or home.env(), cwd=home.cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _wait(home: Home, session: str) -> bool:
    return run_ao(home, "wait", session, "--timeout", "120", timeout=150).returncode == 0


# --- R6a: the hostile agent, repeated ---------------------------------------------------------------------

def _one_hostile_run(home: Home, approval: str, rng: random.Random, fault: Fault) -> None:
    from supervisor import paths

    repo = _repo(home.root)
    main_git, out = repo / ".git", home.root / "out"
    out.mkdir()
    calls = rt.attacks(home.ao_home, home.codex_home, main_git, sys.executable, out)
    first, middle, last = calls[:1], calls[1:-2], calls[-2:]
    rng.shuffle(middle)
    calls = first + middle + last
    server = start_model(rt._script(calls), home.root / "model-ledger.jsonl")
    rt._Recording.bodies = []
    server.RequestHandlerClass = rt._Recording
    try:
        _config(home, server.base_url, approval, rt.POLICY)
        rt._other_session(home.ao_home)
        hostile = _spawn(home, repo, "hostile")
        queued = _spawn(home, repo, "second")
        sdir, qdir = paths.session_dir(hostile["session"]), paths.session_dir(queued["session"])
        with sqlite3.connect(home.ao_home / "ao.db") as db:
            row = db.execute("select status, launch from sessions where session=?", (queued["session"],)).fetchone()
        guarded = (home.ao_home / "keys", home.codex_home / "config.toml", main_git / "config", main_git / "hooks",
                   sdir / "policy.json", qdir / "policy.json", home.ao_home / "sessions" / "ao-redteam-other")
        before = rt._snapshot(*guarded)
        ended = _wait(home, hostile["session"]) and _wait(home, queued["session"])
    finally:
        server.shutdown()
        server.server_close()
    problems: list[str] = []
    if not ended:
        problems.append("a session did not end")
    if row[0] != "queued":
        problems.append(f"the second session was {row[0]}, not queued, during the attacks")
    changed = rt._changed(before, rt._snapshot(*guarded))
    if changed:
        problems.append(f"changed: {changed}")
    for planted in (home.codex_home / "hooks.json", main_git / "hooks" / "post-checkout", out / "notified",
                    out / "hooked"):
        if planted.exists():
            problems.append(f"{planted} exists")
    for s in (hostile, queued):
        if (Path(s["workspace"]) / f"{rt.MARKER}.txt").exists():
            problems.append(f"the forbidden command ran in {s['session']}")
    denied: list[str] = []
    entries: list[dict[str, Any]] = []
    for s, expected in ((hostile, sorted(c for c, how in calls if how == "deny")), (queued, [rt.FORBIDDEN])):
        bundle = out / f"{s['session']}.bundle"
        exported = run_ao(home, "receipts", "export", s["session"], "-o", str(bundle))
        verified = run_ao(home, "receipts", "verify", str(bundle))
        if exported.returncode or verified.returncode:
            problems.append(f"bundle of {s['session']}: {exported.stderr[-200:]} {verified.stdout[-200:]}")
            continue
        found = [json.loads(line) for line in bundle.read_bytes().splitlines()[1:-1]]
        got = sorted(rt._denied(found))
        if got != expected:
            problems.append(f"{s['session']} denials {got} != {expected}")
        if s is hostile:
            entries, denied = found, got
    requests = b"\n".join(rt._Recording.bodies)
    if any(needle in requests for needle in rt._key_needles(home.ao_home / "keys" / "ledger_ed25519")):
        problems.append("the signing key reached the model")
    outputs = rt._outputs(rt._Recording.bodies) if rt._Recording.bodies else []
    ran = {o for o in outputs if "step-done" in o.splitlines() and not o.startswith("Command blocked")}
    # the agent's own hook requests: recorded unconfirmed (the receipt a claim), codex's calls confirmed
    reached = rt.reached_guard(outputs)
    forgery = rt.forgery_problems(entries, reached) if entries else ["no evidence to check"]
    if approval == "skip" and not reached:
        forgery.append("the forged hook requests never reached the guard in skip mode (the check proves nothing)")
    forgery += [f"{found} exists" for root in (Path(hostile["workspace"]), out)
                for found in root.rglob(f"{rt.FORGED_MARKER}*")]
    for command, how in calls:
        own: list[str] = list(problems)
        if how == "deny" and command not in denied:
            own.append("expected a guard denial")
        if how != "deny" and len(ran) < len([c for c in calls if c[1] != "deny"]):
            own.append(f"only {len(ran)} attacks ran to the end")
        if how == "server":
            own += forgery
        fault.trial(own, f"{approval}: {command.split(';')[0][:70]}")


def test_r6_hostile_agent_through_ao_spawn(monkeypatch: Any, rng: random.Random) -> None:
    fault = Fault.get("R6a", "hostile agent via ao spawn: guard, jail, evidence hold")
    for n in range(TRIALS):
        approval = ["skip", "auto-edit"][(n + rng.randrange(2)) % 2]
        home = _home(monkeypatch)
        try:
            progress(f"R6a trial {n + 1}/{TRIALS} ({approval})")
            _one_hostile_run(home, approval, random.Random(rng.random()), fault)
        finally:
            _cleanup(home)
    fault.assert_passed()


def _cleanup(home: Home) -> None:
    subprocess.run(["tmux", "-L", rt.VICTIM_TMUX, "kill-server"], capture_output=True)
    shutil.rmtree(home.root, ignore_errors=True)


# --- R6b-R6g: one honest-looking session, then the world around it turns hostile ---------------------------

FAKE_GH = """#!/bin/sh
case "$1 $2" in
  "pr create") printf 'https://github.com/acme/repo/pull/7\\033]8;;https://evil.example\\007x\\033[2J\\033[31m/pull/7\\n' ;;
  *) echo "fake gh: $*" ;;
esac
"""
SECRETS = {
    "sk": "sk-proj-R6abcdefghijklmnopqrstuvwx",
    "ghp": "ghp_R6abcdefghijklmnopqrstuvwxyz0123456789",
    "pat": "github_pat_11R6ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX",
    "named": "R6-named-secret-value-0042",
    "bearer": "R6BearerTokenValue0123456789",
    "url": "R6urlpassword0099",
}


def _world_script(codex_home: Path) -> str:
    sessions = codex_home / "sessions" / "2026" / "01" / "01"
    uid = "01a23c4e-0000-7000-8000-00000000000"
    printed = (f"export OPENAI_API_KEY={SECRETS['sk']}; echo key $OPENAI_API_KEY; "
               f"echo {SECRETS['ghp']} {SECRETS['pat']}; echo DB_PASSWORD={SECRETS['named']}; "
               f"echo 'Authorization: Bearer {SECRETS['bearer']}'; echo https://me:{SECRETS['url']}@example.com/x")
    encoded = " ".join(f"$(echo {s.encode().hex()} | xxd -r -p)" for s in (SECRETS["sk"], SECRETS["ghp"]))
    steps = [
        printed,
        f"echo from-output {encoded}",
        f"mkdir -p {sessions} && mkfifo {sessions}/rollout-2026-01-01T00-00-00-{uid}1.jsonl && "
        f"ln -s /dev/zero {sessions}/rollout-2026-01-01T00-00-01-{uid}2.jsonl",
        "gh pr create --title t --body b",
    ]
    body = "".join(f"      - run: {json.dumps(s)}\n" for s in steps)
    return f"tasks:\n  world:\n    steps:\n{body}      - say: done\n  plain:\n    steps:\n      - say: ok\n"


def test_r6_world_around_a_session(monkeypatch: Any, rng: random.Random) -> None:
    faults = {k: Fault.get(k, t) for k, t in (
        ("R6b", "ao rm of an edited workspace refuses"), ("R6c", "export of an unknown id fails cleanly"),
        ("R6d", "secrets in tool output are not stored"), ("R6e", "$AO_HOME files are 0600/0700"),
        ("R6f", "FIFO and /dev/zero rollouts hang nothing"), ("R6g", "PR url escapes never reach ao status"))}
    for n in range(TRIALS):
        home = _home(monkeypatch)
        try:
            progress(f"R6b-g trial {n + 1}/{TRIALS}")
            _world_trial(home, random.Random(rng.random()), faults)
        finally:
            _cleanup(home)
    for fault in faults.values():
        fault.assert_passed()


def _world_trial(home: Home, rng: random.Random, faults: dict[str, Fault]) -> None:
    repo = _repo(home.root)
    server = start_model(_world_script(home.codex_home), home.root / "model-ledger.jsonl")
    fake = home.root / "fake-gh"
    fake.mkdir()
    (fake / "gh").write_text(FAKE_GH)
    (fake / "gh").chmod(0o755)
    env = dict(home.env(), PATH=f"{os.environ['PATH']}:{fake}")  # after the wrappers, which come first
    try:
        _config(home, server.base_url, rng.choice(["skip", "auto-edit"]))
        session = _spawn(home, repo, "world", env)
        ended = _wait(home, session["session"])
        # a later session must still start and end with the FIFO and the /dev/zero link in place
        later = _spawn(home, repo, "plain")
        later_ended = _wait(home, later["session"])
    finally:
        server.shutdown()
        server.server_close()
    sid = session["session"]
    sdir = home.ao_home / "sessions" / sid

    # R6f
    answers = {}
    for args in (("status", "--json"), ("cost", "--all", "--json"), ("status", sid)):
        try:
            answers[args] = run_ao(home, *args, timeout=60)
        except subprocess.TimeoutExpired:
            answers[args] = None
    faults["R6f"].trial([*([] if ended and later_ended else ["a session did not end"]),
                         *(f"`ao {' '.join(a)}` " + ("hung" if r is None else f"exit {r.returncode}: {r.stderr[-200:]}")
                           for a, r in answers.items() if r is None or r.returncode != 0)], "FIFO + /dev/zero rollouts")

    # R6g: no ESC/BEL/C1 byte reaches the user's terminal
    for args in (("status",), ("status", sid), ("status", "--json")):
        r = answers.get(args) or run_ao(home, *args)
        raw = r.stdout.encode()
        bad = [f"{b!r}" for b in (b"\x1b", b"\x07", b"\xc2\x9b", b"\xc2\x9d") if b in raw]
        faults["R6g"].trial([f"`ao {' '.join(args)}` printed {bad}"] if bad else [], f"ao {' '.join(args)}")
    status = json.loads(answers[("status", "--json")].stdout) if answers[("status", "--json")] else []
    row = next((r for r in status if r.get("session") == sid), {})
    faults["R6g"].trial([] if row.get("pr_number") in (7, None) else [f"pr_number {row.get('pr_number')}"],
                        "PR recorded sanely")

    # R6d: secrets in tool output, in everything ao stores for the session
    # codex-sqlite/ is codex's own thread store (as its rollouts are), only relocated by the jail
    stored = {p: p.read_bytes() for p in sdir.rglob("*") if p.is_file() and "codex-sqlite" not in p.parts}
    stored[home.ao_home / "ao.db"] = (home.ao_home / "ao.db").read_bytes()
    for name, secret in SECRETS.items():
        leaks = [str(p.relative_to(home.ao_home)) for p, data in stored.items() if secret.encode() in data]
        faults["R6d"].trial([f"{secret} in {leaks}"] if leaks else [], f"secret {name}")
    exec_log = (sdir / "exec.jsonl").read_bytes() if (sdir / "exec.jsonl").exists() else b""
    faults["R6d"].trial([] if b"from-output" in exec_log else ["exec.jsonl never saw the output (check proves nothing)"],
                        "control: tool output is recorded")

    # R6e: file modes
    loose = []
    for p in home.ao_home.rglob("*"):
        rel = p.relative_to(home.ao_home)
        if rel.parts[0] in ("bin", "cache", "worktrees") or p.is_symlink():
            continue
        st = p.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode) and mode != 0o700 or stat.S_ISREG(st.st_mode) and mode not in (0o600, 0o700):
            loose.append(f"{rel} {oct(mode)}")
    home_mode = stat.S_IMODE(home.ao_home.stat().st_mode)
    faults["R6e"].trial([*loose[:5], *([f"$AO_HOME is {oct(home_mode)}"] if home_mode != 0o700 else [])],
                        "modes under $AO_HOME")

    # R6c: export of an unknown id
    for unknown in ("ao-0000-000000", "../../etc/passwd", "ao-" + "x" * 300, sid + "-nope"):
        target = home.root / "unknown.bundle"
        r = run_ao(home, "receipts", "export", unknown, "-o", str(target))
        problems = [f"exit {r.returncode}" for _ in [0] if r.returncode == 0]
        problems += ["traceback"] if "Traceback" in r.stderr else []
        problems += ["wrote a bundle"] if target.exists() else []
        faults["R6c"].trial(problems, f"export {unknown[:30]}")

    # R6b: ao rm of a record whose workspace was edited
    _rm_attacks(home, repo, later["session"], faults["R6b"])


def _rm_attacks(home: Home, repo: Path, template: str, fault: Fault) -> None:
    victim = home.root / "victim-dir"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious\n")
    subprocess.run(["git", "init", "-q", str(victim)], check=True)  # a clean-looking repo of its own
    not_listed = home.ao_home / "worktrees" / "not-a-worktree"
    not_listed.mkdir()
    (not_listed / "precious.txt").write_text("precious\n")
    link = home.ao_home / "worktrees" / "link-out"
    link.symlink_to(victim, target_is_directory=True)
    # a real worktree whose `git status` fails: its gitdir pointer is broken
    broken = home.ao_home / "worktrees" / "broken-status"
    subprocess.run(["git", "worktree", "add", "-q", "-b", "r6-broken", str(broken)], cwd=repo, check=True,
                   capture_output=True)
    (broken / ".git").write_text("gitdir: /nonexistent/r6\n")
    cases = {"arbitrary dir": (victim, None), "the main repo": (repo, None), "home dir": (home.home, None),
             "not a worktree": (not_listed, None), "symlink out of worktrees": (link, None),
             "git status fails": (broken, None), "repo edited too": (victim, victim)}
    db_path = home.ao_home / "ao.db"
    for name, (workspace, repo_override) in cases.items():
        fake = f"ao-r6rm-{abs(hash(name)) % 10**6:06d}"
        with sqlite3.connect(db_path) as db:
            cols = [r[1] for r in db.execute("pragma table_info(sessions)")]
            row = dict(zip(cols, db.execute("select * from sessions where session=?", (template,)).fetchone()))
            row.update(session=fake, workspace=str(workspace), pid=None, codex_pid=None)
            if repo_override is not None:
                row["repo"] = str(repo_override)
            db.execute(f"insert into sessions ({', '.join(cols)}) values ({', '.join('?' * len(cols))})",
                       [row[c] for c in cols])
        before = sorted(str(p) for p in Path(workspace).rglob("*")) if Path(workspace).exists() else []
        r = run_ao(home, "rm", fake)
        after = sorted(str(p) for p in Path(workspace).rglob("*")) if Path(workspace).exists() else []
        problems = []
        if r.returncode == 0:
            problems.append(f"`ao rm` succeeded: {r.stdout[-200:]}")
        if "Traceback" in r.stderr:
            problems.append("traceback")
        if after != before:
            problems.append(f"{workspace} changed ({len(before)} -> {len(after)} entries)")
        fault.trial(problems, f"rm: {name}")
