"""The Ray runtime: `codex exec --json` on a Ray cluster node, mirrored into $AO_HOME as if it ran here.

The session's runner (on the head) creates a per-session actor (`ray_node.NodeAgent`, named `ao-<session>`)
where the config's `ray.resources` fit, ships it the workspace, codex and the codex home, and reads its
stream: exec lines are folded as the headless runtime folds them, rollout bytes land in a mirror at the
same path under the session's CODEX_HOME here (so status, cost, receipts and the guard's provenance and
budget checks read a local file), wrapper events land in the session's events file, and hook requests
are forwarded to the session's own guard socket with the answer sent back to the actor. A dead node or
actor ends the run as `lost`; `ao resume` ships the mirrored rollout and the branch to another node.
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.launch import command
from supervisor.launch.command import LaunchSpec
from supervisor.launch.runtimes.base import Changed, Exited, Job, Report, Run, Runtime, Started, Tick
from supervisor.launch.runtimes.headless import private_log, redacted_line
from supervisor.records import LaunchRecord, SessionRecord

INSTALL_HINT = "the ray runtime needs Ray, which is not installed: pip install 'ao-supervisor[ray]'"
NAMESPACE = "ao"
PLACE_TICK_S = 2.0  # a Tick this often while the agent waits for free Ray resources
CHUNK = 64 << 20
SKIPPED_PACKAGE_DIRS = ("codex-resources/voice",)  # not needed to run codex; saves shipping it to every node


def actor_name(session: str) -> str:
    return f"ao-{session}"


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise FatalError(INSTALL_HINT) from None
    return ray


def connect(address: str) -> Any:
    """Join the cluster as a driver (once per process); FatalError naming the address when it cannot."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a loopback address on loopback
    _probe(address)
    try:
        ray.init(address=address or "auto", namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FatalError(f"cannot reach the Ray cluster at {address or 'auto'} ({exc}); start one with "
                         "`ray start --head` or set ray.address in the config") from None
    return ray


def _probe(address: str) -> None:
    """Fail in seconds on a host:port nobody listens on; `ray.init` would retry it for a minute or more."""
    host, sep, port = (address or "").rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # `auto`, or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise FatalError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start one with "
                         "`ray start --head` or set ray.address in the config") from None


def record_node(session: str, node: str) -> None:
    """Keep the node in the record (`ao status` shows it)."""
    store.update(session, node=node)


def node_of(record: SessionRecord) -> str | None:
    return record.get("node")


def _options(launch: LaunchRecord) -> dict[str, Any]:
    resources = {k: float(v) for k, v in ((launch.get("ray") or {}).get("resources") or {}).items()}
    opts: dict[str, Any] = {"num_cpus": resources.pop("CPU", 0.0), "num_gpus": resources.pop("GPU", 0.0),
                            "resources": resources, "scheduling_strategy": "SPREAD", "max_restarts": 0,
                            "max_concurrency": 16, "lifetime": "detached", "namespace": NAMESPACE}
    memory = resources.pop("memory", None)
    if memory:
        opts["memory"] = memory
    return opts


def _codex_files(codex: Path) -> tuple[str, list[tuple[str, Path]]]:
    """(cache key, [(relpath on the node, file here)]): codex's npm vendor dir, or the binary alone."""
    from supervisor.launch import jail

    real = Path(os.path.realpath(codex))
    package = jail.codex_package_dir(real)
    files: list[tuple[str, Path]] = []
    if package != real.parent:
        for path in sorted(package.rglob("*")):
            rel = str(path.relative_to(package))
            if path.is_file() and not rel.startswith(SKIPPED_PACKAGE_DIRS):
                files.append((rel, path))
    else:
        files.append(("bin/codex", real))
    st = real.stat()
    key = hashlib.sha256(f"{real}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return key, files


def ship_codex(ray: Any, actor: Any, node: str, codex: Path) -> str:
    """Put codex in the node's cache unless it is there; one runner per node ships it at a time."""
    from supervisor.locking import file_lock

    key, files = _codex_files(codex)
    if ray.get(actor.has_codex.remote(key)):
        return key
    lock_dir = paths.ao_home() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_dir / f"ray-codex-{node[:12]}.lock"):
        if ray.get(actor.has_codex.remote(key)):
            return key
        shipped = []
        for rel, path in files:
            refs = []
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    refs.append(ray.put(chunk))
            shipped.append((rel, path.stat().st_mode & 0o777, refs))
        ray.get(actor.install_codex.remote(key, shipped))
    return key


def _git_out(cwd: str, *args: str) -> bytes:
    proc = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args], cwd=cwd,
                          capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise FatalError(f"git {args[0]} in {cwd} failed: {proc.stderr.decode(errors='replace').strip()[:200]}")
    return proc.stdout


def apply_bundle(workspace: str, bundle: Path) -> str | None:
    """Bring the head's copy of the branch up to the node's bundle (fast-forward only); the problem, or None."""
    try:
        _git_out(workspace, "fetch", "--quiet", str(bundle), "HEAD")
        _git_out(workspace, "merge", "--ff-only", "--quiet", "FETCH_HEAD")
    except FatalError as exc:
        return str(exc)
    return None


def node_job(job: Job, record: SessionRecord, codex_key: str) -> Any:
    from supervisor.launch.ray_node import NodeJob

    launch = record["launch"]
    workspace = record["workspace"]
    files: dict[str, bytes] = {}
    agents = Path(workspace) / "AGENTS.md"
    if agents.is_file():
        files["AGENTS.md"] = agents.read_bytes()
    identity = {}
    for key in ("user.name", "user.email"):
        proc = subprocess.run(["git", "config", "--get", key], cwd=workspace, capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            identity[key] = proc.stdout.strip()
    home_files: dict[str, bytes] = {}
    for name in ("auth.json", "config.toml"):
        if (job.codex_home / name).is_file():
            home_files[name] = (job.codex_home / name).read_bytes()
    rollout = record.get("rollout_path")
    resume = launch.get("resume_thread")
    if resume and rollout and os.path.isfile(rollout):
        rel = os.path.relpath(rollout, job.codex_home)
        if not rel.startswith(".."):
            home_files[rel] = Path(rollout).read_bytes()
    instructions = {}
    for pair in (launch.get("spec") or {}).get("overrides") or []:
        key, _, value = pair.partition("=")
        if key == "model_instructions_file":
            from supervisor.launch.ray_node import command_value

            path = command_value(value)
            instructions[path] = Path(path).read_bytes()
    prompt = Path(job.prompt_file).read_bytes() if job.prompt_file else b""
    spec = dict(launch["spec"])
    spec["approval_values"] = tuple(spec.get("approval_values") or ())
    spec["flags"] = list(spec.get("flags") or [])
    return NodeJob(
        session=job.session, branch=record.get("branch"), bundle=_git_out(workspace, "bundle", "create", "-", "HEAD"),
        workspace_files=files, git_identity=identity, codex_key=codex_key, spec=spec, resume_thread=resume,
        prompt=prompt, env=dict(job.env), unset=list(job.unset), head_bin_dir=str(paths.bin_dir()),
        codex_home_files=home_files, instructions=instructions,
        approval_timeout_s=float(launch.get("approval_timeout_s") or 300), jailed=bool(launch.get("jail")),
        started_at=time.time())


def ask_guard(session_dir: Path, request: bytes) -> bytes:
    """Hand one hook request to the session's guard server, as the local hook client does; its answer."""
    import importlib

    from supervisor.launch.ray_node import _deadline_of

    guard_dir = importlib.import_module("supervisor.govern.guard_server").socket_dir(session_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dirfd = os.open(guard_dir, os.O_PATH | os.O_DIRECTORY)
    try:
        sock.settimeout(_deadline_of(request) + 5)
        sock.connect(f"/proc/self/fd/{dirfd}/guard.sock")  # the session dir may be longer than sun_path
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        return f"error\nao guard unreachable from the Ray relay: {exc}".encode()
    finally:
        os.close(dirfd)
        sock.close()


# a node lost before codex began a thread cost nothing that matters: place the agent again this many times
MAX_PLACEMENTS = 4


class RayRun(Run):
    def __init__(self, job: Job) -> None:
        self.job = job
        self.record = store.get(job.session)
        launch = self.record["launch"]
        self.ray = connect(str((launch.get("ray") or {}).get("address") or "auto"))
        self.stopped = False
        self.node: str | None = None
        self.pid = None
        self.actor = self._new_actor()

    def _new_actor(self) -> Any:
        """The session's actor, where `ray.resources` fit; an earlier one of this session is killed first."""
        from supervisor.launch.ray_node import NodeAgent

        launch = self.record["launch"]
        node_root = str((launch.get("ray") or {}).get("node_root") or "~/.local/share/ao/ray")
        name = actor_name(self.job.session)
        deadline = time.monotonic() + 30
        while True:
            try:  # a leftover of an earlier run (its runner was killed) or of a lost node
                self.ray.kill(self.ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:
                pass
            try:
                return self.ray.remote(NodeAgent).options(name=name, **_options(launch)).remote(node_root)
            except ValueError:  # the name is released a moment after the kill
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _wait_dead(self, node: str | None, timeout: float = 30.0) -> None:
        """Until Ray marks NODE dead (a few health checks after it went), or a short pause for an unknown one."""
        deadline = time.monotonic() + (timeout if node else 3.0)
        while time.monotonic() < deadline:
            if node and not any(n.get("NodeID") == node and n.get("Alive") for n in self.ray.nodes()):
                return
            time.sleep(0.5)

    def _placed(self) -> Iterator[Report]:
        """Wait for a node with free resources (Ticks meanwhile), then record it."""
        where = self.actor.where.remote()
        while True:
            ready, _ = self.ray.wait([where], timeout=PLACE_TICK_S)
            if ready:
                break
            yield Tick()
        self.node = self.ray.get(where)
        record_node(self.job.session, self.node or "")

    def reports(self) -> Iterator[Report]:
        from supervisor.observe import exec_events, locate

        ray, job = self.ray, self.job
        fold = exec_events.ExecFold(thread_id=job.thread_id)
        state: dict[str, Any] = {"rollout": job.rollout_path, "code": None, "error": None}
        lost = False
        placements = 1
        with private_log(job.session_dir / "exec.jsonl") as events_out:
            try:
                while True:
                    try:
                        yield from self._attempt(fold, state, events_out)
                        break
                    except FatalError as exc:
                        state["error"] = str(exc)
                        break
                    except Exception as exc:  # every Ray failure (node or actor death, task error) ends the run
                        lost = _is_loss(ray, exc) and not self.stopped
                        where = f"Ray node {self.node}" if self.node else "a Ray node (before it reported its id)"
                        if lost and not fold.thread_id and placements < MAX_PLACEMENTS:
                            placements += 1  # nothing of the thread exists yet: start it afresh elsewhere
                            lost = False
                            print(f"ao runner: {where} was lost before codex began ({type(exc).__name__}: "
                                  f"{str(exc)[:400]}); placing the agent again", file=sys.stderr)
                            self._end_actor()
                            self._wait_dead(self.node)  # else Ray may place it on the dying node again
                            self.actor = self._new_actor()
                            continue
                        if lost:
                            state["error"] = (f"lost: {where} or its agent died ({type(exc).__name__}); "
                                              f"`ao resume {job.session} PROMPT` continues on another node")
                        else:
                            state["error"] = (f"the Ray agent failed: {type(exc).__name__}: "
                                              f"{str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ''}")
                        break
            finally:
                self._end_actor()  # after the loop: a retry's `continue` must not end the actor it made
        code, error, rollout = state["code"], state["error"], state["rollout"]
        extra: dict[str, Any] = {}
        if fold.thread_id and not rollout:
            found = locate.find_rollout(fold.thread_id, job.codex_home, job.started_at)
            if found:
                extra["rollout_path"] = str(found)
        if code is not None and code < 0 and not self.stopped:
            error = f"codex was killed by signal {-code}" + (f" ({error})" if error else "")
        yield Exited(code, fold.failed or code is None, fold.error or error, extra, lost=lost)

    def _attempt(self, fold: Any, state: dict[str, Any], events_out: Any) -> Iterator[Report]:
        """One placement: wait for a node, ship codex, run the stream to its end (or raise on a loss)."""
        from supervisor.observe import locate

        ray, job = self.ray, self.job
        yield from self._placed()
        key = ship_codex(ray, self.actor, self.node or "", Path(self.record["launch"]["codex"]))
        stream = self.actor.run.options(num_returns="streaming").remote(node_job(job, self.record, key))
        for ref in stream:
            item = ray.get(ref)
            kind = item[0]
            if kind == "start":
                yield Started(None)
            elif kind == "exec":
                line = item[1]
                events_out.write(redacted_line(line))
                events_out.flush()
                calls = fold.tool_calls
                changes = fold.feed(line)
                if fold.tool_calls > calls:
                    yield Changed({}, tool_call=True)
                if fold.thread_id and not state["rollout"] and changes:
                    found = locate.find_rollout(fold.thread_id, job.codex_home, job.started_at)
                    if found:
                        state["rollout"] = changes["rollout_path"] = str(found)
                if changes or fold.progressed:
                    yield Changed(changes, progress=fold.progressed)
            elif kind == "rollout":
                self._mirror(item[1], item[2], item[3])
            elif kind == "events":
                with private_log(job.session_dir / "events.jsonl") as out:
                    out.write(item[2])
            elif kind == "guard":
                threading.Thread(target=self._forward, args=(item[1], item[2]), daemon=True).start()
            elif kind == "bundle":
                self._bundle(item[2])
            elif kind == "tick":
                yield Tick(tool_running=fold.tool_running)
            elif kind == "exit":
                state["code"], state["error"] = item[1], item[2] or None

    def _mirror(self, rel: str, offset: int, data: bytes) -> None:
        """Write rollout bytes at their offset in the head's copy; only under CODEX_HOME/sessions."""
        home = self.job.codex_home.resolve()
        target = (home / rel).resolve()
        if not str(target).startswith(str(home / "sessions") + os.sep):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def _forward(self, req_id: int, request: bytes) -> None:
        reply = ask_guard(self.job.session_dir, request)
        try:
            self.actor.answer.remote(req_id, reply)
        except Exception as exc:  # the actor is gone; its hook fails closed on its own
            print(f"ao runner: cannot answer the Ray agent: {exc}", file=sys.stderr)

    def _bundle(self, data: bytes) -> None:
        path = self.job.session_dir / "branch.bundle"
        paths.atomic_write(path, data, mode=0o600)
        problem = apply_bundle(self.record["workspace"], path)
        if problem:
            print(f"ao runner: the node's branch was kept in {path} but not applied: {problem}", file=sys.stderr)

    def _end_actor(self) -> None:
        try:
            self.ray.kill(self.actor)
        except Exception:  # already dead with its node
            pass

    def stop(self) -> None:
        self.stopped = True
        try:
            self.actor.stop.remote()
        except Exception as exc:
            print(f"ao runner: cannot reach the Ray agent to stop it: {exc}", file=sys.stderr)


def _is_loss(ray: Any, exc: BaseException) -> bool:
    """A node or actor death, as opposed to an error raised by the agent's own code. An agent whose
    constructor raised (a node root codex cannot use, say) died of its own error: placing it again would
    only repeat it, so that is a failure with the error's words, not a loss."""
    errors = ray.exceptions
    if getattr(exc, "actor_init_failed", False) or getattr(exc, "_actor_init_failed", False):
        return False
    lost_kinds = tuple(getattr(errors, name) for name in ("ActorDiedError", "ActorUnavailableError",
                                                           "NodeDiedError", "OwnerDiedError", "ObjectLostError",
                                                           "WorkerCrashedError") if hasattr(errors, name))
    return isinstance(exc, lost_kinds)


class RayRuntime(Runtime):
    name = "ray"
    interactive = False
    remote = True
    description = "Run `codex exec --json` on a Ray cluster node (config ray.address, ray.resources)."

    def command(self, codex: str, spec: LaunchSpec, prompt: str | None, resume_thread: str | None) -> list[str]:
        return command.exec_argv(codex, spec, command.STDIN_PROMPT, resume_thread)

    def takes_prompt_on_stdin(self) -> bool:
        return True

    def preflight(self) -> None:
        import importlib.util

        try:
            found = importlib.util.find_spec("ray")
        except (ImportError, ValueError):  # ValueError: a module entry without a spec (blocked on purpose)
            found = None
        if found is None:
            raise FatalError(INSTALL_HINT)

    def start(self, job: Job) -> Run:
        try:
            return RayRun(job)
        except FatalError:
            raise
        except Exception as exc:  # a cluster that refuses the actor: one line for the record, not a traceback
            raise FatalError(f"cannot place the agent on the Ray cluster: {type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ''}") from None

    def stop(self, record: SessionRecord) -> None:
        """`ao kill` from another process: the session's actor kills codex's group and what escaped it."""
        ray = connect(str((record["launch"].get("ray") or {}).get("address") or "auto"))
        try:
            actor = ray.get_actor(actor_name(record["session"]), namespace=NAMESPACE)
        except ValueError:
            return  # no actor: nothing runs on any node
        try:
            ray.get(actor.stop.remote(), timeout=30)
        except Exception as exc:  # a dead node's processes died with it
            raise FatalError(f"cannot stop session {record['session']} on its Ray node: {type(exc).__name__}") \
                from None
        deadline = time.monotonic() + 5  # the runner kills the actor once the stream ends
        while time.monotonic() < deadline:
            try:
                ray.get_actor(actor_name(record["session"]), namespace=NAMESPACE)
            except ValueError:
                return
            time.sleep(0.2)
        ray.kill(actor)


RUNTIME = RayRuntime()
