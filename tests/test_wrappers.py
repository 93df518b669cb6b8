"""The git/gh PATH wrappers against the real git and a fake gh: transparency, recursion, events, installer."""
from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from supervisor import paths
from supervisor.launch import wrappers
from supervisor.observe import events
from supervisor.report.cli import cli

SESSION = "ao-test-1"
FAKE_GH = r"""#!/bin/sh
# A stand-in for gh: pr create prints a URL (no trailing newline), others echo their argv.
for a in "$@"; do
    case $a in
        --fail) echo "fake gh: failed as asked" >&2; exit 1 ;;
        --die) kill -TERM $$ ;;
    esac
done
case "${1-} ${2-}" in
    "pr create") [ -t 1 ] && printf '(stdout is a terminal) '
                 printf 'Creating pull request for feat into main\n\nhttps://github.com/acme/repo/pull/42' ;;
    "pr merge"|"pr close") printf 'done: %s %s\n' "$2" "${3-}" ;;
    "pr view") printf 'https://github.com/acme/repo/pull/42\n' ;;
    *) printf 'gh args:'; for a in "$@"; do printf ' [%s]' "$a"; done; printf '\n'
       [ "${1-}" = stdin ] && cat
       [ "${1-}" = exit ] && { echo "exiting $2" >&2; exit "$2"; } ;;
esac
exit 0
"""
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com", "GIT_AUTHOR_DATE": "1700000000 +0000",
    "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_COMMITTER_DATE": "1700000000 +0000", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
}


@pytest.fixture
def bin_dir() -> Path:
    wrappers.install()
    return paths.bin_dir()


@pytest.fixture
def base_path(tmp_path: Path) -> str:
    """PATH without ao's bin dir, with the fake gh AFTER where the wrapper dir will go."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "gh").write_text(FAKE_GH)
    (fake / "gh").chmod(0o755)
    rest = [p for p in os.environ["PATH"].split(os.pathsep) if p and "agent-orchestrator" not in p]
    return os.pathsep.join([str(fake), *rest])


@pytest.fixture
def template_repo(tmp_path: Path, base_path: str) -> Path:
    repo = tmp_path / "template"
    env = {**os.environ, **GIT_ENV, "PATH": base_path}
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, env=env, check=True, capture_output=True)
    repo.mkdir()
    git("init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello world\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "guide.md").write_text("a guide\n")
    (repo / "notes with space.txt").write_text("spaces\n")
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    git("branch", "existing")
    return repo


def make_env(base_path: str, bin_dir: Path | None, **extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AO_WRAPPER")}
    env.update(GIT_ENV)
    env["PATH"] = base_path if bin_dir is None else f"{bin_dir}{os.pathsep}{base_path}"
    env["AO_SESSION"] = SESSION
    env["AO_DATA_DIR"] = str(paths.ao_home())
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def fresh_repo(template: Path, tmp_path: Path) -> Path:
    """The same repo at the same path for each run, so mutating commands print the same bytes."""
    repo = tmp_path / "run"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(template, repo, symlinks=True)
    return repo


def run(argv: list[str], env: dict[str, str], cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, env=env, cwd=cwd, input=stdin if stdin is not None else b"",
                          capture_output=True, timeout=20)


def session_events() -> list[dict[str, Any]]:
    return events.read_events(SESSION)


# --- transparency ---------------------------------------------------------------------------------

CASES: list[tuple[list[str], bytes | None]] = [
    (["git", "rev-parse", "HEAD"], None),
    (["git", "status"], None),
    (["git", "status", "--porcelain=v1"], None),
    (["git", "log", "--format=%s"], None),
    (["git", "log", "--format=%s | %an <%ae> '%H' \"q\""], None),
    (["git", "ls-files", "*.md"], None),
    (["git", "ls-files", "*"], None),
    (["git", "ls-files", "notes with space.txt"], None),
    (["git", "hash-object", "--stdin"], b"hello\n"),
    (["git", "hash-object", "--stdin"], bytes(range(256)) * 8),
    (["git", "commit", "-q", "--allow-empty", "-F", "-"], b"subject 'q' \"dq\" $(touch pwned)\n\nbody *\n"),
    (["git", "commit", "--allow-empty", "-m", "line one\nline two\\ `x` $HOME *"], None),
    (["git", "frobnicate"], None),
    (["git", "rev-parse", "--verify", "no-such-ref"], None),
    (["git", "show", "no-such-ref:README.md"], None),
    (["git", "checkout", "-b", "feat/x"], None),
    (["git", "checkout", "-b"], None),
    (["git", "checkout", "existing"], None),
    (["git", "checkout", "no-such-branch"], None),
    (["git", "checkout", "--", "README.md"], None),
    (["git", "switch", "-c", "feat/y"], None),
    (["git", "switch", "no-such-branch"], None),
    (["git", "branch", "-m", "main", "renamed"], None),
    (["git", "branch", "-m", "existing", "main"], None),
    (["git", "branch", "--list"], None),
    (["git", "-C", "docs", "status", "--short"], None),
    (["git", "-c", "core.quotepath=false", "ls-files"], None),
    (["git", "--no-pager", "log", "--oneline"], None),
    (["git", "tag", "-a", "v1", "-m", "a tag message with spaces"], None),
    (["git", "config", "--get", "no.such-key"], None),
    (["git", "cat-file", "-p", "HEAD"], None),
    (["git", "apply", "--stat", "-"], b"--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-hello world\n+bye\n"),
    (["git", "--version"], None),
    (["gh", "--version"], None),
    (["gh", "api", "repos/{owner}/{repo}", "-f", "body=two words\nand 'quotes'"], None),
    (["gh", "stdin", "x"], b"piped through gh\n"),
    (["gh", "exit", "3"], None),
    (["gh", "pr", "create", "--title", "a title", "--body", "b\nc"], None),
    (["gh", "pr", "create", "--fail"], None),
    (["gh", "pr", "create", "--die"], None),
    (["gh", "pr", "merge", "42", "--squash"], None),
    (["gh", "pr", "close", "42"], None),
    (["gh", "pr", "view", "42"], None),
]


@pytest.mark.parametrize("argv,stdin", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_wrapper_is_transparent(argv: list[str], stdin: bytes | None, bin_dir: Path, base_path: str,
                                template_repo: Path, tmp_path: Path) -> None:
    results = []
    for wrapped in (None, bin_dir):
        repo = fresh_repo(template_repo, tmp_path)
        proc = run(argv, make_env(base_path, wrapped), repo, stdin)
        results.append((proc.returncode, proc.stdout, proc.stderr))
    assert results[1] == results[0]
    assert not (tmp_path / "run" / "pwned").exists()


def test_signal_reaches_the_real_git_and_its_status_comes_back(bin_dir: Path, base_path: str,
                                                                 template_repo: Path) -> None:
    codes = []
    for wrapped in (None, bin_dir):
        proc = subprocess.Popen(["git", "hash-object", "--stdin"], env=make_env(base_path, wrapped),
                                cwd=template_repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        time.sleep(0.2)  # blocked reading stdin
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        codes.append(proc.returncode)
    assert codes == [-signal.SIGTERM, -signal.SIGTERM]


# --- recursion ------------------------------------------------------------------------------------

@pytest.mark.parametrize("tool", ["git", "gh"])
def test_missing_real_binary_stops_with_127(tool: str, bin_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "bin-link"
    link.symlink_to(bin_dir, target_is_directory=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = make_env(os.pathsep.join([str(bin_dir), f"{bin_dir}/", str(link), str(bin_dir), str(empty)]), None)
    proc = subprocess.run([str(bin_dir / tool), "status"], env=env, capture_output=True, timeout=10)
    assert proc.returncode == 127
    assert proc.stdout == b""
    assert proc.stderr == f"ao wrapper: real {tool} not found on PATH\n".encode()


def test_two_wrapper_dirs_do_not_call_each_other(bin_dir: Path, base_path: str, tmp_path: Path,
                                                 template_repo: Path) -> None:
    copy = tmp_path / "other-ao-bin"
    shutil.copytree(bin_dir, copy)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = make_env(os.pathsep.join([str(bin_dir), str(copy), str(empty)]), None)
    proc = subprocess.run(["git", "status"], env=env, capture_output=True, timeout=10)
    assert (proc.returncode, proc.stderr) == (127, b"ao wrapper: real git not found on PATH\n")
    env = make_env(os.pathsep.join([str(bin_dir), str(copy), base_path]), None)
    proc = subprocess.run(["git", "rev-parse", "HEAD"], env=env, cwd=template_repo, capture_output=True, timeout=10)
    assert proc.returncode == 0 and len(proc.stdout.strip()) == 40


# --- events ---------------------------------------------------------------------------------------

def test_branch_and_pr_events_are_recorded_once_and_folded(bin_dir: Path, base_path: str,
                                                           template_repo: Path) -> None:
    env = make_env(base_path, bin_dir)

    def ok(*argv: str) -> bytes:
        proc = run(list(argv), env, template_repo)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    ok("git", "checkout", "-b", "feat/one")
    ok("git", "switch", "-c", "feat/two")
    ok("git", "checkout", "feat/one")
    ok("git", "checkout", "--", "README.md")      # file checkouts are not branch changes
    ok("git", "checkout", "README.md")
    ok("git", "checkout", "feat/one")             # already there: nothing new
    ok("git", "-C", "docs", "switch", "feat/two")  # global options before the subcommand
    ok("git", "branch", "-m", "feat/one", "other")  # not the current branch: no change
    ok("git", "branch", "-m", "feat/final")         # renames the current branch
    ok("git", "status")
    assert run(["git", "checkout", "no-such"], env, template_repo).returncode != 0
    assert [e["name"] for e in session_events()] == ["feat/one", "feat/two", "feat/one", "feat/two", "feat/final"]

    assert ok("gh", "pr", "create", "--title", "t") == (
        b"Creating pull request for feat into main\n\nhttps://github.com/acme/repo/pull/42")
    assert run(["gh", "pr", "merge", "--fail"], env, template_repo).returncode == 1
    ok("gh", "pr", "merge", "--auto", "--squash")    # only queues the merge
    folded = events.fold(session_events())
    assert folded == {"branch": "feat/final", "pr_url": "https://github.com/acme/repo/pull/42",
                      "pr_number": 42, "status": "pr_open"}
    ok("gh", "pr", "merge", "42", "--squash")
    assert events.fold(session_events())["status"] == "merged"
    ok("gh", "pr", "close", "https://github.com/acme/repo/pull/42")
    evs = session_events()
    assert events.fold(evs)["status"] == "closed"
    assert [(e["cmd"], e["event"]) for e in evs].count(("gh", "pr")) == 3
    assert all(e["session"] == SESSION and isinstance(e["ts"], int) for e in evs)
    assert evs[-3]["number"] == 42


def test_hostile_values_come_through_intact_and_inert(bin_dir: Path, base_path: str, template_repo: Path,
                                                      tmp_path: Path) -> None:
    env = make_env(base_path, bin_dir)
    names = ["$(touch${IFS}pwned)", "it's\"quoted", "a`touch${IFS}pwned`b", "semi;touch${IFS}pwned;x"]
    for name in names:
        assert run(["git", "checkout", "-b", name], env, template_repo).returncode == 0
    targets = ["$(touch pwned)", "back\\slash", "line one\nline two", "'; touch pwned; '"]
    for target in targets:
        assert run(["gh", "pr", "close", target], env, template_repo).returncode == 0
    evs = session_events()
    assert [e["name"] for e in evs if e["event"] == "branch"] == names
    assert [e["target"] for e in evs if e["event"] == "pr"] == targets
    for where in (template_repo, tmp_path, Path.cwd(), bin_dir, paths.session_dir(SESSION)):
        assert not list(where.glob("pwned*"))


def test_pr_create_on_a_terminal_keeps_the_tty_and_still_records(bin_dir: Path, base_path: str,
                                                                 template_repo: Path) -> None:
    outputs = []
    for wrapped in (None, bin_dir):
        leader, follower = pty.openpty()
        proc = subprocess.Popen(["gh", "pr", "create"], env=make_env(base_path, wrapped), cwd=template_repo,
                                stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.PIPE)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO once the last writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        outputs.append((proc.wait(timeout=10), b"".join(chunks), proc.stderr.read()))
        proc.stderr.close()
    assert outputs[1] == outputs[0]
    assert outputs[0][1].startswith(b"(stdout is a terminal) ")
    assert events.fold(session_events()) == {"pr_url": "https://github.com/acme/repo/pull/42", "pr_number": 42,
                                             "status": "pr_open"}


def test_shell_encoder_round_trips_every_byte(bin_dir: Path) -> None:
    value = bytes(range(1, 256)) + b"\n\n"  # argv cannot carry NUL
    script = f'. "{bin_dir}/ao-metadata-helper.sh"; ao_hex "$1"'
    proc = subprocess.run(["sh", "-c", script, "sh", value], capture_output=True, check=True)
    assert events.decode_hex(proc.stdout.decode()) == value
    assert events.decode({"event": "x", "name_hex": "610a27225c"}) == {"event": "x", "name": "a\n'\"\\"}


def test_read_events_skips_torn_and_garbage_lines() -> None:
    path = events.events_path(SESSION)
    path.parent.mkdir(parents=True)
    good = {"ts": 1, "session": SESSION, "cmd": "git", "event": "branch", "name_hex": "6f6e65"}
    path.write_bytes(json.dumps(good).encode() + b"\n{\"ts\":2,\"sess\n\xff\xfe garbage\n[1,2]\n"
                     + b'{"event":"branch","name_hex":"zz"}\n'
                     + json.dumps({**good, "name_hex": "74776f"}).encode() + b"\n{\"event\":\"pr\"")
    assert [e["name"] for e in events.read_events(SESSION)] == ["one", "two"]
    assert events.read_events("no-such-session") == []


def test_fold_later_wins_and_ignores_other_prs() -> None:
    evs = [{"event": "pr", "status": "pr_open", "url": "https://github.com/a/b/pull/7", "number": 7},
           {"event": "pr", "status": "merged", "target": "8"},
           {"event": "branch", "name": "x"}, {"event": "branch", "name": "y"}]
    assert events.fold(evs) == {"pr_url": "https://github.com/a/b/pull/7", "pr_number": 7,
                                "status": "pr_open", "branch": "y"}
    evs.append({"event": "pr", "status": "closed", "target": "#7"})
    assert events.fold(evs)["status"] == "closed"
    assert events.fold([{"event": "pr", "status": "merged", "target": ""}]) == {"status": "merged"}


def _broken_data_dirs(tmp_path: Path) -> dict[str, dict[str, str | None]]:
    file_as_dir = tmp_path / "data-file-as-dir"
    (file_as_dir / "sessions").mkdir(parents=True)
    (file_as_dir / "sessions" / SESSION).write_text("a file where the session dir should be")
    full = tmp_path / "data-full"
    (full / "sessions" / SESSION).mkdir(parents=True)
    (full / "sessions" / SESSION / "events.jsonl").symlink_to("/dev/full")
    cases: dict[str, dict[str, str | None]] = {
        "no-session": {"AO_SESSION": None},
        "bad-session-id": {"AO_SESSION": "../../escape"},
        "missing-data-dir": {"AO_DATA_DIR": str(tmp_path / "nowhere")},
        "no-data-dir-var": {"AO_DATA_DIR": None},
        "under-a-file": {"AO_DATA_DIR": "/dev/null/x"},    # ENOTDIR, even for root
        "session-dir-is-a-file": {"AO_DATA_DIR": str(file_as_dir)},
        "disk-full": {"AO_DATA_DIR": str(full)},           # events.jsonl -> /dev/full: ENOSPC
    }
    if os.geteuid() != 0:  # root writes through 0500 anyway
        readonly = tmp_path / "data-readonly"
        (readonly / "sessions").mkdir(parents=True)
        (readonly / "sessions").chmod(0o500)
        cases["read-only"] = {"AO_DATA_DIR": str(readonly)}
    return cases


@pytest.mark.parametrize("argv", [["git", "checkout", "-b", "feat/z"], ["gh", "pr", "create"],
                                  ["gh", "pr", "merge", "1"]])
def test_unrecordable_sessions_still_run_the_command(argv: list[str], bin_dir: Path, base_path: str,
                                                     template_repo: Path, tmp_path: Path) -> None:
    for name, extra in _broken_data_dirs(tmp_path).items():
        results = []
        for wrapped in (None, bin_dir):
            repo = fresh_repo(template_repo, tmp_path)
            proc = run(argv, make_env(base_path, wrapped, **extra), repo)
            results.append((proc.returncode, proc.stdout, proc.stderr))
        assert results[1] == results[0], name
    assert not (paths.ao_home().parent / "escape").exists()
    assert not paths.sessions_dir().exists()


def test_events_land_in_one_write(bin_dir: Path, base_path: str, template_repo: Path, tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace not installed")
    trace = tmp_path / "trace"
    env = make_env(base_path, bin_dir)
    subprocess.run([strace, "-f", "-qq", "-s", "4096", "-e", "trace=openat,write", "-o", str(trace),
                    "git", "checkout", "-q", "-b", "traced"], env=env, cwd=template_repo, check=True)
    lines = trace.read_text().splitlines()
    opened = [ln for ln in lines if "events.jsonl" in ln and "O_APPEND" in ln]
    assert len(opened) == 1
    # dash opens the file O_APPEND, moves it to fd 1 and issues exactly one write with the whole line.
    pid, at = opened[0].split()[0], lines.index(opened[0])
    calls = [ln.split(None, 1) for ln in lines[at + 1:]]
    writes = [call for who, call in calls if who == pid and call.startswith("write(")]
    assert len(writes) == 1
    assert '"event\\":\\"branch' in writes[0] and '}\\n", ' in writes[0]
    assert len(events.events_path(SESSION).read_bytes().splitlines()) == 1


def test_concurrent_writers_lose_nothing(bin_dir: Path) -> None:
    script = (f'. "{bin_dir}/ao-metadata-helper.sh"; pad=$(printf "%0900d" 0); i=0; '
              'while [ $i -lt 20 ]; do '
              'ao_record gh pr ",\\"status\\":\\"closed\\",\\"target_hex\\":\\"$(ao_hex "w$1-$i-$pad")\\""; '
              'i=$((i + 1)); done')
    env = {**os.environ, "AO_SESSION": SESSION, "AO_DATA_DIR": str(paths.ao_home())}
    procs = [subprocess.Popen(["sh", "-c", script, "sh", str(n)], env=env) for n in range(50)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    raw = events.events_path(SESSION).read_bytes().split(b"\n")
    assert raw[-1] == b"" and len(raw) == 1001
    assert all(json.loads(line)["event"] == "pr" for line in raw[:-1])
    targets = {e["target"].rsplit("-", 1)[0] for e in session_events()}
    assert len(session_events()) == 1000
    assert targets == {f"w{n}-{i}" for n in range(50) for i in range(20)}


# --- installer ------------------------------------------------------------------------------------

def states(bin_dir: Path) -> dict[str, str]:
    return {s.name: s.state for s in wrappers.status(bin_dir)}


def test_fresh_install_is_ok_and_identified(tmp_path: Path) -> None:
    target = tmp_path / "bin"
    assert {s.name: s.action for s in wrappers.install(target)} == dict.fromkeys(wrappers.NAMES, "written")
    assert states(target) == dict.fromkeys(wrappers.NAMES, "ok")
    for name in wrappers.NAMES:
        text = (target / name).read_text()
        found = wrappers.identity(text)
        assert found and found.name == name and found.version >= 1 and len(found.sha256) == 64
        assert (target / name).stat().st_mode & 0o777 == 0o755
        assert text == wrappers.render(name)
    assert {s.action for s in wrappers.install(target)} == {None}  # nothing to do the second time


def test_install_repairs_removes_extras_and_leaves_others_alone(tmp_path: Path) -> None:
    target = tmp_path / "bin"
    wrappers.install(target)
    with open(target / "git", "a") as fh:
        fh.write("echo tampered\n")
    (target / "gh").unlink()
    helper = target / "ao-metadata-helper.sh"
    helper.write_text(helper.read_text().replace("version=1 sha256=", "version=0 sha256=0", 1))
    (target / "hub").write_text("#!/bin/sh\n# ao-wrapper: hub version=1 sha256=abc\nexec hub \"$@\"\n")
    (target / "mytool").write_text("#!/bin/sh\necho mine\n")
    assert states(target) == {"git": "modified", "gh": "missing", "ao-metadata-helper.sh": "outdated",
                              "hub": "extra"}
    done = {s.name: (s.state, s.action) for s in wrappers.install(target)}
    assert done == {"git": ("modified", "written"), "gh": ("missing", "written"),
                    "ao-metadata-helper.sh": ("outdated", "written"), "hub": ("extra", "removed")}
    assert states(target) == dict.fromkeys(wrappers.NAMES, "ok")
    assert (target / "mytool").read_text() == "#!/bin/sh\necho mine\n"
    (target / "git").chmod(0o644)
    assert states(target)["git"] == "modified"


def test_cli_status_and_install(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["wrappers", "status", "--json"])
    assert result.exit_code == 1
    assert {row["name"]: row["state"] for row in json.loads(result.output)} == dict.fromkeys(wrappers.NAMES, "missing")
    result = runner.invoke(cli, ["wrappers", "install"])
    assert result.exit_code == 0 and "wrote" in result.output
    result = runner.invoke(cli, ["wrappers", "status"])
    assert result.exit_code == 0 and result.output.count(" ok ") == 3


def test_reader_resynchronises_after_a_torn_write(tmp_path, monkeypatch):
    """Found by the reliability suite: a write cut short by a full disk glued the next event onto it."""
    from supervisor.observe import events as events_mod
    monkeypatch.setenv("AO_HOME", str(tmp_path))
    path = events_mod.events_path("s1")
    path.parent.mkdir(parents=True)
    whole = '{"ts":2,"session":"s1","cmd":"git","event":"branch","name_hex":"6669782f61"}'
    path.write_text('{"ts":1,"session":"s1","cm' + whole + "\n")
    assert [e["name"] for e in events_mod.read_events("s1")] == ["fix/a"]


def test_events_file_and_session_dir_are_private_whatever_the_umask(bin_dir: Path, base_path: str,
                                                                   template_repo: Path) -> None:
    """Other local users must not read what an agent's git and gh did; the caller's umask is kept."""
    env = make_env(base_path, bin_dir)
    old = os.umask(0o022)
    try:
        assert run(["git", "checkout", "-q", "-b", "private"], env, template_repo).returncode == 0
        # the same shell (helper sourced) records, then reports the umask it is left with
        probe = subprocess.run(["sh", "-c", f'. "{bin_dir}/ao-metadata-helper.sh"; ao_record git probe ""; umask'],
                               env=env, capture_output=True, text=True, timeout=20)
    finally:
        os.umask(old)
    path = events.events_path(SESSION)
    assert [e["event"] for e in session_events()] == ["branch", "probe"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert probe.stdout.strip() == "0022"
