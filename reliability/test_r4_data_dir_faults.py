"""R4: the git/gh wrappers with a data dir they cannot write: missing, read-only, full, out of inodes,
or pointing somewhere absurd. The real command's exit code, stdout and stderr must be byte-identical
to running it directly, whatever the command (random branch names, failing commands, stdin).

Read-only, full and inode-less data dirs are real tmpfs mounts (`mount -t tmpfs -o size=64k`, then
`remount,ro`, or `nr_inodes=`); when mounting is not permitted the suite says so and falls back to
an `events.jsonl -> /dev/full` symlink (ENOSPC on write) and a file where a folder should be.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import Fault, make_home

TRIALS_PER_STATE = int(os.environ.get("R4_TRIALS", "20"))
SESSION = "ao-r4-1"
GIT_ENV = {"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.com", "GIT_AUTHOR_DATE": "1700000000 +0000",
           "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.com",
           "GIT_COMMITTER_DATE": "1700000000 +0000", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
FAKE_GH = r"""#!/bin/sh
case "${1-} ${2-}" in
    "pr create") printf 'Creating pull request\n\nhttps://github.com/acme/repo/pull/%s' "${3:-42}" ;;
    "pr merge"|"pr close") printf 'done: %s %s\n' "$2" "${3-}" ;;
    "exit "*) echo "exiting $2" >&2; exit "$2" ;;
    "stdin "*) cat; echo "read stdin" >&2 ;;
    *) printf 'gh args:'; for a in "$@"; do printf ' [%s]' "$a"; done; printf '\n' ;;
esac
"""


def mount(*args: str) -> str | None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"mount exited {proc.returncode}")


def fill(folder: Path) -> None:
    """Write until the filesystem says ENOSPC."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            os.write(fd, b"x" * 1024)
    except OSError:
        pass
    finally:
        os.close(fd)


class States:
    """Each state returns the AO_DATA_DIR to use; mounts are undone at the end."""

    def __init__(self, root: Path, fault: Fault) -> None:
        self.root, self.fault = root, fault
        self.mounts: list[Path] = []
        self.substitutes: list[str] = []

    def tmpfs(self, name: str, options: str) -> Path | None:
        target = self.root / name
        target.mkdir(parents=True)
        problem = mount("-t", "tmpfs", "-o", options, "tmpfs", str(target))
        if problem:
            self.substitutes.append(f"{name}: cannot mount tmpfs ({problem})")
            return None
        self.mounts.append(target)
        return target

    def missing(self) -> str:
        return str(self.root / "no-such-dir")

    def read_only(self) -> str:
        target = self.tmpfs("ro", "size=64k")
        if target is None:  # substitute: a file where the sessions folder should be
            target = self.root / "ro-substitute"
            target.mkdir()
            (target / "sessions").write_text("not a folder")
            return str(target)
        (target / "sessions" / SESSION).mkdir(parents=True)
        (target / "sessions" / SESSION / "events.jsonl").write_bytes(b"")
        problem = mount("-o", "remount,ro", str(target))
        if problem:
            self.substitutes.append(f"read-only: cannot remount ro ({problem})")
        return str(target)

    def full_empty(self) -> str:
        target = self.tmpfs("full", "size=64k")
        if target is None:
            return self.dev_full()
        (target / "sessions" / SESSION).mkdir(parents=True)
        fill(target)
        return str(target)

    def full_mid_page(self) -> str:
        """events.jsonl ends 6 bytes short of a page boundary on a full tmpfs: a write gets 6 bytes in."""
        target = self.tmpfs("full-page", "size=64k")
        if target is None:
            return self.dev_full()
        (target / "sessions" / SESSION).mkdir(parents=True)
        (target / "sessions" / SESSION / "events.jsonl").write_bytes(b"#" * 4089 + b"\n")
        fill(target)
        return str(target)

    def no_inodes(self) -> str:
        target = self.tmpfs("inodes", "size=64k,nr_inodes=2")
        if target is None:
            return self.missing()
        try:
            (target / "sessions").mkdir()
        except OSError:
            pass
        return str(target)

    def dev_full(self) -> str:
        target = self.root / "dev-full"
        (target / "sessions" / SESSION).mkdir(parents=True, exist_ok=True)
        link = target / "sessions" / SESSION / "events.jsonl"
        if not link.is_symlink():
            link.symlink_to("/dev/full")
        return str(target)

    def under_a_file(self) -> str:
        return "/dev/null/ao"

    def session_is_a_file(self) -> str:
        target = self.root / "session-file"
        (target / "sessions").mkdir(parents=True)
        (target / "sessions" / SESSION).write_text("a file where the session folder should be")
        return str(target)

    def events_is_a_dir(self) -> str:
        target = self.root / "events-dir"
        (target / "sessions" / SESSION / "events.jsonl").mkdir(parents=True)
        return str(target)

    def dangling_link(self) -> str:
        link = self.root / "dangling"
        link.symlink_to(self.root / "gone")
        return str(link)

    def cleanup(self) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def commands(rng: Any) -> tuple[list[str], bytes]:
    names = ["feat/x", "fix-1", "a/b/c", "ünï", "with space", "-dash", "..bad", "x" * 200, "$(touch pwned)",
             "it's", "a\tb", "main", "existing", "HEAD", "@", "trailing/"]
    name = rng.choice(names) + ("" if rng.random() < 0.5 else str(rng.randint(0, 9999)))
    data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 3000)))
    return rng.choice([
        (["git", "checkout", "-b", name], b""),
        (["git", "switch", "-c", name], b""),
        (["git", "checkout", rng.choice(["existing", "main", "no-such-branch", name])], b""),
        (["git", "switch", rng.choice(["existing", "no-such-branch", name])], b""),
        (["git", "checkout", "-q", "-b", name], b""),
        (["git", "-C", ".", "switch", "-c", name], b""),
        (["git", "branch", "-m", name], b""),
        (["git", "checkout", "-b"], b""),
        (["git", "checkout", "--", "README.md"], b""),
        (["git", "hash-object", "--stdin"], data),
        (["git", "status", "--porcelain"], b""),
        (["gh", "pr", "create", str(rng.randint(1, 99999))], b""),
        (["gh", "pr", "merge", str(rng.randint(1, 999)), "--squash"], b""),
        (["gh", "pr", "close", name], b""),
        (["gh", "exit", str(rng.randint(0, 255))], b""),
        (["gh", "stdin", "x"], data),
    ])


def test_r4_wrapper_result_unchanged_when_data_dir_is_broken(tmp_path: Path, monkeypatch: Any, rng: Any) -> None:
    from supervisor import paths
    from supervisor.launch import wrappers

    fault = Fault.get("R4", "wrappers with a missing/read-only/full data dir")
    make_home(tmp_path / "installation", monkeypatch)
    wrappers.install()
    bin_dir = paths.bin_dir()
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "gh").write_text(FAKE_GH)
    (fake / "gh").chmod(0o755)
    base_path = os.pathsep.join([str(fake), *(p for p in os.environ["PATH"].split(os.pathsep)
                                              if p and "agent-orchestrator" not in p)])
    template = tmp_path / "template"
    template.mkdir()
    env0 = {**os.environ, **GIT_ENV, "PATH": base_path}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "--allow-empty", "-m", "first"],
                 ["branch", "existing"]):
        if args[0] == "add":
            (template / "README.md").write_text("hello\n")
        subprocess.run(["git", *args], cwd=template, env=env0, check=True, capture_output=True)
    run_dir = tmp_path / "run"

    def run(argv: list[str], stdin: bytes, wrapped: bool, data_dir: str) -> tuple[int, bytes, bytes]:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(template, run_dir, symlinks=True)
        env = {**env0, "AO_SESSION": SESSION, "AO_DATA_DIR": data_dir,
               "PATH": f"{bin_dir}{os.pathsep}{base_path}" if wrapped else base_path}
        proc = subprocess.run(argv, cwd=run_dir, env=env, input=stdin, capture_output=True, timeout=30)
        return proc.returncode, proc.stdout, proc.stderr

    states = States(tmp_path / "data", fault)
    cases: dict[str, Callable[[], str]] = {
        "missing dir": states.missing, "read-only tmpfs": states.read_only, "full tmpfs": states.full_empty,
        "full tmpfs, events.jsonl mid-page": states.full_mid_page, "tmpfs out of inodes": states.no_inodes,
        "events.jsonl -> /dev/full": states.dev_full, "data dir under a file": states.under_a_file,
        "session dir is a file": states.session_is_a_file, "events.jsonl is a folder": states.events_is_a_dir,
        "dangling symlink": states.dangling_link,
    }
    try:
        for state, make in cases.items():
            data_dir = make()
            for _ in range(TRIALS_PER_STATE):
                argv, stdin = commands(rng)
                direct = run(argv, stdin, False, data_dir)
                wrapped = run(argv, stdin, True, data_dir)
                problems = []
                for what, a, b in zip(("exit code", "stdout", "stderr"), direct, wrapped):
                    if a != b:
                        problems.append(f"{what} differs: direct {a!r:.120} wrapped {b!r:.120}")
                fault.trial(problems, f"{state}: {' '.join(argv)!r:.80}")
            if state == "full tmpfs, events.jsonl mid-page":
                events = Path(data_dir) / "sessions" / SESSION / "events.jsonl"
                size = events.stat().st_size if events.exists() else 0
                if size != 4090:
                    fault.note(f"R4 '{state}': events.jsonl grew from 4090 to {size} bytes on a full disk "
                               f"(a torn, partial event line: {events.read_bytes()[4090:][:60]!r})")
    finally:
        states.cleanup()
    for text in states.substitutes:
        fault.note(f"R4 substitute used: {text}")
    if not states.substitutes:
        fault.note("R4: read-only, full and inode-less data dirs were real tmpfs mounts (64 KiB)")
    fault.assert_passed()


def test_r4b_events_after_a_full_data_dir_recovers(tmp_path: Path, monkeypatch: Any, rng: Any) -> None:
    """A wrapper that hit ENOSPC must not spoil the events written once space is back: the next branch
    change is recorded exactly once and earlier events still read."""
    from supervisor import paths
    from supervisor.launch import wrappers
    from supervisor.observe import events

    fault = Fault.get("R4b", "events once a full data dir has space again")
    make_home(tmp_path / "installation", monkeypatch)
    wrappers.install()
    bin_dir = paths.bin_dir()
    base_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and "agent-orchestrator" not in p)
    repo = tmp_path / "repo"
    repo.mkdir()
    env0 = {**os.environ, **GIT_ENV, "PATH": base_path}
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "first"]):
        subprocess.run(["git", *args], cwd=repo, env=env0, check=True, capture_output=True)
    states = States(tmp_path / "data", fault)
    try:
        for n in range(int(os.environ.get("R4B_TRIALS", "8"))):
            target = states.tmpfs(f"recover-{n}", "size=64k")
            if target is None:
                fault.note("R4b skipped: tmpfs cannot be mounted here")
                return
            sdir = target / "sessions" / SESSION
            sdir.mkdir(parents=True)
            # earlier events, padded so the file ends a random few bytes short of a page boundary
            free = rng.randint(0, 120)
            head = b""
            for k in range(3):
                head += (f'{{"ts":1,"session":"{SESSION}","cmd":"git","event":"branch","name_hex":"'
                         f'{f"before-{k}".encode().hex()}"}}\n').encode()
            pad = 4096 - free - len(head) - len(b'{"event":"pad","x":""}\n')
            head += b'{"event":"pad","x":"' + b"p" * pad + b'"}\n'
            (sdir / "events.jsonl").write_bytes(head)
            fill(target)
            env = {**env0, "AO_SESSION": SESSION, "AO_DATA_DIR": str(target),
                   "PATH": f"{bin_dir}{os.pathsep}{base_path}"}
            subprocess.run(["git", "checkout", "-q", "-b", f"while-full-{n}"], cwd=repo, env=env, capture_output=True)
            torn = (sdir / "events.jsonl").stat().st_size - len(head)
            (target / "filler").unlink()
            subprocess.run(["git", "checkout", "-q", "-b", f"after-{n}"], cwd=repo, env=env, capture_output=True)
            monkeypatch.setenv("AO_HOME", str(target))
            names = [e.get("name") for e in events.read_events(SESSION) if e.get("event") == "branch"]
            problems = []
            if names.count(f"after-{n}") != 1:
                problems.append(f"the event written after space came back was read {names.count(f'after-{n}')} "
                                f"times; the full disk had left {torn} bytes of a torn line "
                                f"({(sdir / 'events.jsonl').read_bytes()[len(head):len(head) + 40]!r}...)")
            if names[:3] != ["before-0", "before-1", "before-2"]:
                problems.append(f"earlier events read as {names[:3]}")
            fault.trial(problems, f"trial {n}: {free} bytes left in the last page")
    finally:
        states.cleanup()
    fault.assert_passed()
