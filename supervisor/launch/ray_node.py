"""The node side of the Ray runtime: one actor per session that does, on its node, what the local runner does.

Nothing here assumes a filesystem shared with the head. Everything arrives by value or object ref (the
workspace as a git bundle, codex's files, the codex home's auth and config, a resumed thread's rollout)
and everything goes back as a stream of plain tuples, in the order it happened on the node:

    ("start", pid, node_id)          codex started
    ("exec", line)                   one `codex exec --json` stdout line
    ("rollout", relpath, offset, b)  bytes codex wrote to a rollout under CODEX_HOME
    ("events", offset, b)            bytes the wrappers appended to the session's events file
    ("guard", req_id, request)       a hook's request; the head answers with `answer(req_id, reply)`
    ("bundle", sha, b)               a git bundle of the branch (at each new commit and at the end)
    ("tick",)                        nothing for a while
    ("exit", code, stderr_tail)      codex ended

Rollout bytes written before a hook's request are always shipped ahead of it, so the head's guard
finds the call in its mirror of the rollout. Layout on a node (`node_root` is the config's, expanded there):

    <node_root>/<node id[:12]>/cache/codex/<key>/    codex's files, once per node and version
    <node_root>/<node id[:12]>/s/<session>/home/     the session's AO_HOME: bin/ (wrappers), sessions/<s>/
    <node_root>/<node id[:12]>/s/<session>/work/     the workspace (a clone of the shipped bundle)
    <node_root>/<node id[:12]>/s/<session>/codex/    its CODEX_HOME, removed at teardown
"""
from __future__ import annotations

import importlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK_S = 2.0
POLL_S = 0.05  # how often the rollout and events files are read for new bytes
COMMIT_POLL_S = 1.0  # how often the branch head is compared, to ship a bundle at each commit
RELAY_SOCKET = "guard.sock"
CHUNK = 64 << 20  # object store pieces of a shipped file


@dataclass
class NodeJob:
    """What a node needs to run one session's codex; plain data, pickled by Ray."""

    session: str
    branch: str | None
    bundle: bytes  # `git bundle` of the workspace's HEAD
    workspace_files: dict[str, bytes]  # files outside git the agent must see (AGENTS.md)
    git_identity: dict[str, str]  # user.name / user.email for the agent's commits
    codex_key: str
    spec: dict[str, Any]  # LaunchSpec fields (head paths; the node rewrites workspace and files)
    resume_thread: str | None
    prompt: bytes
    env: dict[str, str]
    unset: list[str]
    head_bin_dir: str  # the head's wrapper dir, replaced by the node's on PATH
    codex_home_files: dict[str, bytes]  # auth.json, config.toml, a resumed thread's rollout
    instructions: dict[str, bytes] = field(default_factory=dict)  # head path -> content of an instructions file
    approval_timeout_s: float = 300.0
    jailed: bool = True
    started_at: float = 0.0


def node_base(node_root: str, node_id: str) -> Path:
    """This node's own dir: several Ray nodes on one host (a test cluster) still share nothing."""
    root = Path(os.path.expanduser(node_root)).resolve()
    real = str(root)
    if real == "/tmp" or real.startswith("/tmp/"):
        raise OSError(f"ray.node_root {node_root} is under /tmp, where codex refuses its CODEX_HOME; "
                      "set ray.node_root to a directory outside /tmp")
    return root / node_id[:12]


def _git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args],
                          cwd=cwd, input=stdin, capture_output=True, env=env)
    if proc.returncode != 0:
        raise OSError(f"git {' '.join(args[:2])} failed: {proc.stderr.decode(errors='replace').strip()[:300]}")
    return proc.stdout


class NodeAgent:
    """The Ray actor (created with `ray.remote(NodeAgent)` on the head, max_concurrency > 1)."""

    def __init__(self, node_root: str) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.base = node_base(node_root, self.node_id)
        self.answers: dict[int, tuple[threading.Event, list[bytes]]] = {}
        self.out: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.child: subprocess.Popen[bytes] | None = None
        self.session: str | None = None
        self.stopped = False
        self.tail_lock = threading.Lock()
        self.offsets: dict[str, int] = {}
        self.events_offset = 0

    # -- provisioning ------------------------------------------------------------------------------------------
    def where(self) -> str:
        return self.node_id

    def has_codex(self, key: str) -> bool:
        return (self.base / "cache" / "codex" / key / ".complete").exists()

    def install_codex(self, key: str, files: list[tuple[str, int, list[Any]]]) -> None:
        """Write codex's files (relpath, mode, chunk refs) into this node's cache, atomically per version."""
        import ray

        final = self.base / "cache" / "codex" / key
        if (final / ".complete").exists():
            return
        temp = final.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}")
        shutil.rmtree(temp, ignore_errors=True)
        for rel, mode, refs in files:
            target = temp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for ref in refs:
                    out.write(ray.get(ref))
            os.chmod(target, mode)
        (temp / ".complete").write_text(key)
        try:
            os.rename(temp, final)
        except OSError:  # another session on this node installed it meanwhile
            shutil.rmtree(temp, ignore_errors=True)

    def _provision(self, job: NodeJob) -> tuple[Path, Path, Path, Path]:
        """The session's dirs on this node: (ao home, workspace, codex home, session state dir)."""
        top = self.base / "s" / job.session
        if top.exists():  # a previous run of this session on this node: start from what the head sent
            shutil.rmtree(top)
        home, work, codex_home = top / "home", top / "work", top / "codex"
        sdir = home / "sessions" / job.session
        for d in (sdir, codex_home):
            d.mkdir(parents=True, mode=0o700)
        bundle = top / "branch.bundle"
        bundle.write_bytes(job.bundle)
        _git("clone", "--quiet", str(bundle), str(work))
        if job.branch:
            _git("checkout", "--quiet", "-B", job.branch, cwd=work)
        for key, value in job.git_identity.items():
            _git("config", key, value, cwd=work)
        exclude = work / ".git" / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        for rel, content in job.workspace_files.items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_bytes(content)
            with open(exclude, "a") as f:
                f.write(f"/{rel}\n")  # ao's files stay out of the agent's commits, as locally
        for rel, content in job.codex_home_files.items():
            target = codex_home / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            if rel.startswith("sessions/"):  # a resumed rollout: the head has these bytes already
                self.offsets[str(target)] = len(content)
        wrappers = importlib.import_module("supervisor.launch.wrappers")
        os.environ["AO_HOME"] = str(home)  # wrappers render for this node's AO_HOME
        wrappers.install(home / "bin")
        return home, work, codex_home, sdir

    # -- running -----------------------------------------------------------------------------------------------
    def run(self, job: NodeJob) -> Iterator[tuple[Any, ...]]:
        """Provision, start codex, and stream what happens until it ends (a streaming generator)."""
        self.session = job.session
        home, work, codex_home, sdir = self._provision(job)
        relay_dir = sdir / "guard"
        relay_dir.mkdir(mode=0o700)
        events_file = sdir / "events.jsonl"
        events_file.touch(mode=0o600)
        codex_dir = self.base / "cache" / "codex" / job.codex_key
        codex = codex_dir / "bin" / "codex"
        argv, env = self._command(job, home, work, codex_home, sdir, relay_dir, codex)
        relay = self._serve_relay(relay_dir, lambda: self._tail(codex_home, events_file))
        prompt_file = sdir / "prompt.txt"
        prompt_file.write_bytes(job.prompt)
        try:
            if job.jailed:
                argv = self._jail(argv, job, home, work, codex_home, sdir, relay_dir, codex, events_file)
            with open(prompt_file, "rb") as stdin, open(sdir / "codex.stderr.log", "wb") as err:
                # its own process group, to kill as one; and it dies with this actor (with the node), as the
                # jail's --die-with-parent takes the whole pid namespace along
                self.child = subprocess.Popen(argv, cwd=work, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                              stderr=err, start_new_session=True,
                                              preexec_fn=importlib.import_module(
                                                  "supervisor.launch.processes").die_with_parent)
            yield ("start", self.child.pid, self.node_id)
            yield from self._stream(job, work, codex_home, events_file)
            code = self.child.wait()
            self._tail(codex_home, events_file)
            while not self.out.empty():
                yield self.out.get()
            bundle = self._bundle(job, work)
            if bundle:
                yield ("bundle", *bundle)
            headless = importlib.import_module("supervisor.launch.runtimes.headless")
            yield ("exit", code, headless.stderr_tail(sdir / "codex.stderr.log"))
        finally:
            relay.close()
            self._kill_all(job.session, job.started_at)
            # auth leaves the node with the run, and so does the rest: the head has the rollout and the branch
            shutil.rmtree(self.base / "s" / job.session, ignore_errors=True)

    def _command(self, job: NodeJob, home: Path, work: Path, codex_home: Path, sdir: Path, relay_dir: Path,
                 codex: Path) -> tuple[list[str], dict[str, str]]:
        command = importlib.import_module("supervisor.launch.command")
        hooks = importlib.import_module("supervisor.govern.hooks")
        overrides = []
        for pair in job.spec.get("overrides") or []:
            key, _, value = pair.partition("=")
            if key == "model_instructions_file":
                head_path = command_value(value)
                local = sdir / "instructions.md"
                local.write_bytes(job.instructions.get(head_path, b""))
                pair = f"model_instructions_file={command.toml_value(str(local))}"
            overrides.append(pair)
        guard = hooks.guard_overrides(relay_dir, job.approval_timeout_s, python=sys.executable,
                                      server_pid=0 if job.jailed else os.getpid())
        overrides += [*guard, *hooks.safety_overrides()]
        spec = command.LaunchSpec(**{**job.spec, "workspace": str(work), "overrides": overrides})
        argv = command.exec_argv(str(codex), spec, command.STDIN_PROMPT, job.resume_thread)
        env = dict(job.env)
        path = [p for p in env.get("PATH", os.environ.get("PATH", "")).split(os.pathsep)
                if p and p != job.head_bin_dir]
        env.update(PATH=os.pathsep.join([str(home / "bin"), *path]), AO_HOME=str(home), AO_DATA_DIR=str(home),
                   CODEX_HOME=str(codex_home))
        full = command.apply_env(env, job.unset)
        return argv, full

    def _jail(self, argv: list[str], job: NodeJob, home: Path, work: Path, codex_home: Path, sdir: Path,
              relay_dir: Path, codex: Path, events_file: Path) -> list[str]:
        jail = importlib.import_module("supervisor.launch.jail")
        bwrap = jail.find_bwrap(codex)
        if bwrap is None:
            raise OSError(f"no bubblewrap on Ray node {self.node_id}; install bwrap there, or spawn with --unjailed")
        reason = jail.probe_recent(bwrap, self.base / "cache")
        if reason:
            raise OSError(f"cannot jail the agent on Ray node {self.node_id}: {reason}")
        spec = jail.JailSpec(ao_home=home, session_dir=sdir, workspace=work, codex_home=codex_home,
                             codex_binary=codex, readonly=(codex.parent.parent,), guard_dir=relay_dir,
                             events_file=events_file, extra_hidden=(self.base / "s",))
        jail.prepare(spec)
        out: list[str] = jail.argv(spec, bwrap, argv)
        return out

    def _stream(self, job: NodeJob, work: Path, codex_home: Path, events_file: Path) -> Iterator[tuple[Any, ...]]:
        assert self.child is not None and self.child.stdout is not None
        stdout = self.child.stdout

        def pump() -> None:
            for line in stdout:
                self._tail(codex_home, events_file)  # what codex wrote before it printed this goes first
                self.out.put(("exec", line))
            self.out.put(("eof",))

        threading.Thread(target=pump, daemon=True).start()
        quiet_since = time.monotonic()
        last_commit_check = 0.0
        last_sha = self._head_sha(work)
        while True:
            try:
                item = self.out.get(timeout=POLL_S)
            except queue.Empty:
                self._tail(codex_home, events_file)
                now = time.monotonic()
                if now - last_commit_check >= COMMIT_POLL_S:
                    last_commit_check = now
                    sha = self._head_sha(work)
                    if sha and sha != last_sha:
                        last_sha = sha
                        bundle = self._bundle(job, work)
                        if bundle:
                            yield ("bundle", *bundle)
                if self.out.empty() and now - quiet_since >= TICK_S:
                    quiet_since = now
                    yield ("tick",)
                continue
            if item[0] == "eof":
                return
            quiet_since = time.monotonic()
            yield item

    def _tail(self, codex_home: Path, events_file: Path) -> None:
        """Queue new rollout and events bytes (whole lines only); called before each hook request is queued."""
        with self.tail_lock:
            for path in sorted((codex_home / "sessions").rglob("rollout-*.jsonl")):
                key = str(path)
                start = self.offsets.get(key, 0)
                data = _read_lines_from(path, start)
                if data:
                    self.offsets[key] = start + len(data)
                    self.out.put(("rollout", str(path.relative_to(codex_home)), start, data))
            data = _read_lines_from(events_file, self.events_offset)
            if data:
                self.out.put(("events", self.events_offset, data))
                self.events_offset += len(data)

    def _head_sha(self, work: Path) -> str | None:
        try:
            return _git("rev-parse", "HEAD", cwd=work).decode().strip()
        except OSError:
            return None

    def _bundle(self, job: NodeJob, work: Path) -> tuple[str, bytes] | None:
        sha = self._head_sha(work)
        if not sha:
            return None
        try:
            data = _git("bundle", "create", "-", "HEAD", cwd=work)
        except OSError:
            return None
        return sha, data

    # -- the guard relay ---------------------------------------------------------------------------------------
    def _serve_relay(self, relay_dir: Path, flush: Any) -> socket.socket:
        """A unix socket where the hook client's request is read, queued for the head, and answered."""
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dirfd = os.open(relay_dir, os.O_PATH | os.O_DIRECTORY)
        server.bind(f"/proc/self/fd/{dirfd}/{RELAY_SOCKET}")  # the node path may be longer than sun_path
        os.close(dirfd)
        server.listen(16)
        counter = iter(range(1, 1 << 62))

        def serve(conn: socket.socket) -> None:
            try:
                conn.settimeout(30)
                chunks = []
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                request = b"".join(chunks)
                deadline_s = _deadline_of(request)
                req_id = next(counter)
                done = threading.Event()
                reply: list[bytes] = []
                self.answers[req_id] = (done, reply)
                flush()  # rollout bytes written before this request reach the head ahead of it
                self.out.put(("guard", req_id, request))
                if done.wait(deadline_s) and reply:
                    answer = reply[0]
                else:
                    answer = b"error\nao guard did not answer through the Ray relay in time"
                conn.settimeout(10)
                conn.sendall(answer)
            except OSError:
                pass
            finally:
                conn.close()

        def accept() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return server

    def answer(self, req_id: int, reply: bytes) -> None:
        found = self.answers.pop(req_id, None)
        if found:
            found[1].append(reply)
            found[0].set()

    # -- stopping ----------------------------------------------------------------------------------------------
    def stop(self) -> int:
        """Kill codex's process group and every process of the session on this node; returns how many."""
        self.stopped = True
        if self.session is None:
            return 0
        return len(self._kill_all(self.session, 0.0))

    def _kill_all(self, session: str, since: float) -> list[int]:
        processes = importlib.import_module("supervisor.launch.processes")
        if self.child is not None and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signal.SIGKILL)
            except OSError:
                pass
        ended: list[int] = processes.end_session(session, [self.child.pid if self.child else None], since,
                                                 grace=0)
        return ended


def command_value(toml_string: str) -> str:
    """The path in a `key="..."` override value (a TOML basic string)."""
    import json

    try:
        value = json.loads(toml_string)
    except ValueError:
        return toml_string
    return value if isinstance(value, str) else toml_string


def _deadline_of(request: bytes) -> float:
    """The hook's own deadline from its header line (`AOG1 <event> <deadline_ms>`), plus a little."""
    head = request.split(b"\n", 1)[0].split()
    try:
        return int(head[2]) / 1000 + 1
    except (IndexError, ValueError):
        return 30.0


def _read_lines_from(path: Path, offset: int) -> bytes:
    """The whole lines of PATH after OFFSET (a partial last line waits for its newline)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return b""
    end = data.rfind(b"\n")
    return data[:end + 1] if end >= 0 else b""
