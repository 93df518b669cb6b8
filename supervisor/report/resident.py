"""`ao watch`: the resident process. It keeps answers hot and answers `ao status` and `ao cost` over a
unix socket, and it runs the hub's services (notifications, PR reactions, the dashboard).

Why an answer from here is never stale. The watcher holds one inotify instance (watchdog's `InotifyFD`)
over every folder an answer reads: each codex home's sessions/ and archived_sessions/, `$AO_HOME`, its
sessions/ and ao's own package. A change bumps a generation counter; an answer is kept with the
generation it was computed at and served only while that is still the generation. A client's own
write (`echo >> rollout`, then `ao cost`) was queued in the kernel's inotify queue before the client
even connected, so every request first *fences* the queue: it creates a link in a watched folder and
waits for that event. One inotify instance has one queue in order, so once the fence comes out every
earlier event has been counted. Then the generation decides.

What inotify cannot see is checked per request, cheaply: the environment and config the client runs
with, the local time zone, and which codex homes exist and where their links lead. What it cannot
promise makes the watcher decline, and the client computes the answer itself (the one-shot path):
a queue overflow (events were lost: the watcher re-stats everything before it answers again), a
filesystem whose changes do not reach inotify (NFS, SMB, FUSE, 9p: writes from other machines), a
watch that could not be added (the watch limit), a remote runtime's rollouts, a code change (the
watcher runs the code it started with; restart it).

Answers are the one-shot path's bytes by construction: the watcher calls the same functions
(`status_view.answer`, `cost_view.cached_report` + `render`) in the same environment. An answer is
encoded once, when it is computed, and a client whose stdout is a file or a terminal has it written
there by the watcher (15 MB at 50,000 rollouts: the socket would copy it twice). The client hands its
stdout and stderr over only once the watcher says the answer is ready (`watch_client.request`), so a
client that stopped waiting and prints the answer itself never has a second copy written after it.

The socket is safe to leave open to the user's uid: it lives in `$AO_HOME/watch/` (0700, socket
0600), and the agent's jail (`launch/jail.py`) lays a tmpfs over `$AO_HOME` and re-binds only bin/,
cache/ and worktrees/, so no jailed agent can reach it. The peer's uid is checked too. It answers only
read-only questions (what `ao status`/`ao cost` print) and `stop`.
"""
from __future__ import annotations

import importlib
import itertools
import json
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import __version__, paths
from supervisor.errors import FatalError
from supervisor.report import watch_client

# name -> (module, attribute): `run(cfg, stop)` run in its own thread. Loaded by name, so this room
# does not import the rooms above it (tests/test_layout.py).
SERVICES: dict[str, tuple[str, str]] = {
    "notify": ("supervisor.sessions.notify", "run"),
    "reactions": ("supervisor.sessions.reactions", "run"),
    "dashboard": ("supervisor.dashboard.server", "run"),
}
OPTIONAL_SERVICES = ("dashboard",)  # only with `ao watch --dashboard`
# filesystems whose changes may come from elsewhere (another machine, a FUSE daemon): inotify sees only
# this kernel's writes, so an answer over them is never served from here
NO_INOTIFY_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs", "lustre",
                           "gpfs", "ncpfs", "davfs", "virtiofs", "fuse", "fuseblk"})
FENCE_TIMEOUT_S = 2.0
REQUEST_MAX = 1 << 16
QUIET_S = 0.2  # after a change, keep answers hot once writes pause this long
KEEP_ANSWERS = 16
IDLE_WORKERS = 4  # request threads kept waiting for the next request; more are started while all are busy
_RELEVANT_NAMES = frozenset({"codex-home", "sessions", "archived_sessions",
                             watch_client.CONFIG_NAME})


def log(message: str) -> None:
    sys.stderr.write(f"ao watch: {message}\n")
    sys.stderr.flush()


def fs_type(path: str) -> str | None:
    """The filesystem type of the mount `path` lies on, from /proc/self/mountinfo (None if unknown)."""
    best, kind = -1, None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                left, sep, right = line.partition(" - ")
                parts = left.split()
                if not sep or len(parts) < 5:
                    continue
                mount = parts[4].replace("\\040", " ")
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > best:
                    best, kind = len(mount), right.split()[0]
    except OSError:
        return None
    return kind


def inotify_reliable(kind: str | None) -> bool:
    """Pure: whether inotify sees every change on a filesystem of this type."""
    return kind is not None and kind not in NO_INOTIFY_FS and not kind.startswith("fuse.")


@dataclass
class Reply:
    """An answer as the client gets it: its exit code and the bytes of its stdout and stderr."""

    code: int
    out: bytes
    err: bytes


def encoded(code: int, out: str, err: str) -> Reply | str:
    """The answer's bytes, or why the client should print it itself. Done once per computed answer: at
    50,000 rollouts the text is 15 MB, and encoding and searching it cost ~10 ms."""
    if "\x1b" in out or "\x1b" in err:
        return "terminal escapes: the one-shot path strips them on a pipe"
    try:  # strict: text the one-shot path could not print either is left to it, error and all
        return Reply(code, out.encode("utf-8"), err.encode("utf-8"))
    except UnicodeEncodeError:
        return "text that is not UTF-8"


@dataclass
class _Answer:
    generation: int
    reply: Reply | str


@dataclass
class State:
    """What the watcher knows; every field is read and written under `cond`."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    generation: int = 0
    stale: str | None = "starting"  # why answers are not served now; None when they are
    code_changed: str = ""  # the first source file of the watcher's own code that changed
    fences: dict[str, bool] = field(default_factory=dict)  # awaited fence -> whether its event was read
    roots: dict[str, str] = field(default_factory=dict)  # watched folder -> why it cannot be trusted ("" ok)
    answers: dict[str, _Answer] = field(default_factory=dict)
    last_change: float = 0.0
    served: int = 0
    direct: int = 0  # answers written into the client's own stdout
    declined: dict[str, int] = field(default_factory=dict)
    recent: list[str] = field(default_factory=list)  # the last changes counted, for `ao watch --status --json`


class Watcher:
    """The inotify side: folders watched through one watchdog InotifyFD, events counted in order."""

    def __init__(self, state: State, fence_dir: Path, package: str) -> None:
        from watchdog.observers.inotify import InotifyWatchGroup
        from watchdog.observers.inotify_c import InotifyConstants, InotifyFD

        self.state = state
        self.fence_dir = os.fsencode(str(fence_dir))
        self.package = os.fsencode(package)
        self.spent: list[str] = []
        with os.scandir(fence_dir) as it:
            self.spent += [e.path for e in it]
        self.sweep()
        self.fd = InotifyFD()  # our own instance: one queue, so the fence orders every watched folder
        self.fd.daemon = True
        self.groups: dict[str, Any] = {}
        self._isdir = InotifyConstants.IN_ISDIR
        self._modify = InotifyConstants.IN_MODIFY
        self._structural = (InotifyConstants.IN_CREATE | InotifyConstants.IN_DELETE | InotifyConstants.IN_MOVED_FROM
                            | InotifyConstants.IN_MOVED_TO | InotifyConstants.IN_DELETE_SELF
                            | InotifyConstants.IN_MOVE_SELF)
        self._mask = (self._structural | InotifyConstants.IN_MODIFY | InotifyConstants.IN_ATTRIB
                      | InotifyConstants.IN_CLOSE_WRITE)
        watcher = self

        class _NoGrouping:
            """watchdog pairs moves for its emitters; the watcher reads events as they come, so nothing
            is queued (a queue no emitter reads would grow forever)."""

            def put_event(self, _event: Any) -> None:
                pass

            def get_queued_moved_from_event(self, _cookie: int) -> None:
                return None

            def discard_pending_events(self) -> None:
                pass

            def close(self) -> None:
                pass

        class Group(InotifyWatchGroup):
            def __post_init__(self) -> None:
                self._move_event_grouper = _NoGrouping()  # type: ignore[assignment]
                super().__post_init__()

            def on_event(self, event: Any) -> None:
                base = self._active_callbacks_by_watch.get(event.wd)
                super().on_event(event)
                if base is not None:
                    watcher.on_path(os.path.join(base, event.name) if event.name else base, int(event.mask))

            def on_queue_overflow(self) -> None:
                super().on_queue_overflow()
                watcher.on_overflow()

        self._group_cls = Group
        self.fd.start()

    def watch(self, folder: str, recursive: bool) -> str:
        """Watch `folder`; '' when done, else why answers reading it cannot come from here."""
        if folder in self.groups:
            return ""
        kind = fs_type(os.path.realpath(folder))
        if not inotify_reliable(kind):
            return f"{folder} is on {kind or 'an unknown filesystem'}, where inotify misses other machines' writes"
        try:
            self.groups[folder] = self._group_cls(self.fd, os.fsencode(folder), event_mask=self._mask,  # type: ignore[arg-type]
                                                  is_recursive=recursive)
        except OSError as exc:
            return f"cannot watch {folder}: {exc.strerror} (the inotify watch limit is fs.inotify.max_user_watches)"
        return ""

    def on_path(self, path: bytes, mask: int) -> None:
        st = self.state
        if os.path.dirname(path) == self.fence_dir:
            token = os.fsdecode(os.path.basename(path))
            with st.cond:
                if token in st.fences:  # not its deletion's event, read after the fence was done with
                    st.fences[token] = True
                    st.cond.notify_all()
            return
        if path.startswith(self.package + b"/"):
            # the code the watcher already runs: an edit to a module it has not loaded yet changes
            # nothing here, as it loads that module from disk when it first needs it
            if path.endswith(b".json") or (path.endswith(b".py") and _loaded(os.fsdecode(path))):
                with st.cond:
                    st.code_changed = st.code_changed or os.fsdecode(path)
                    st.generation += 1
            return
        name = os.fsdecode(os.path.basename(path))
        from supervisor.observe import codex_format

        if name in ("ao.db", "ao.db-wal"):
            # a reader opens and at its end deletes ao.db-wal (sqlite's WAL), which changes nothing; only
            # a write appends to it (and a checkpoint writes ao.db), and a replaced ao.db is new
            relevant = bool(mask & self._modify) or (name == "ao.db" and bool(mask & self._structural))
        else:
            relevant = (codex_format.is_rollout_name(name) or name in _RELEVANT_NAMES or bool(mask & self._isdir)
                        or (name == "index.db" and bool(mask & self._structural)))
        if relevant:
            with st.cond:
                st.recent.append(os.fsdecode(path))
                del st.recent[:-8]
                st.generation += 1
                st.last_change = time.monotonic()
                st.cond.notify_all()

    def on_overflow(self) -> None:
        with self.state.cond:
            self.state.stale = "inotify queue overflow: events were lost; re-stat under way"
            self.state.generation += 1
            self.state.cond.notify_all()

    def fence(self, token: str) -> bool:
        """Whether every event queued before now has been counted (see the module's docstring)."""
        path = os.path.join(os.fsdecode(self.fence_dir), token)
        st = self.state
        with st.cond:
            st.fences[token] = False
        try:
            # a symlink, not a file: its creation is one event (a file's close is a second one), and
            # the fence waits for the watcher to read every event before its own
            os.symlink(token, path)
        except OSError:
            with st.cond:
                del st.fences[token]
            return False
        deadline = time.monotonic() + FENCE_TIMEOUT_S
        try:
            with st.cond:
                while not st.fences[token]:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    st.cond.wait(left)
                return True
        finally:
            with st.cond:
                del st.fences[token]
                self.spent.append(path)  # removed by sweep(), once the answer is out: its event waits till then

    def sweep(self) -> None:
        """Remove the fences done with (and, at start, those a killed watcher left)."""
        with self.state.cond:
            spent, self.spent = self.spent, []
        for path in spent:
            try:
                os.unlink(path)
            except OSError:
                pass

    def close(self) -> None:
        self.sweep()
        for group in self.groups.values():
            try:
                group.deactivate()
            except Exception:  # stopping: a watch already gone is fine
                pass
        self.fd.close()


def _config_for(located: list[Any], cache: dict[str, Any]) -> Any:
    """The client's `pricing:` overrides, read the way `config.load` reads the file it named. Cached by
    the file's bytes, so an edit is seen at once (a config is small: reading it costs microseconds)."""
    path = located[0] if located else None
    if path is None:
        return {}
    with open(path, "rb") as fh:
        raw = fh.read()
    hit = cache.get(path)
    if hit is not None and hit[0] == raw:
        return hit[1]
    from supervisor import config as config_mod

    overrides = config_mod.load(path).data.get("pricing")
    with open(path, "rb") as fh:
        if fh.read() == raw:  # not rewritten while it was parsed
            cache[path] = (raw, overrides)
    return overrides


class Resident:
    """The socket server and the hot answers."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.state = State()
        self.dir = paths.ensure_private_dir(Path(watch_client.watch_dir()))
        self.fence_dir = paths.ensure_private_dir(self.dir / "fence")
        self.compute_lock = threading.Lock()
        self.tokens = itertools.count()
        self.env = {k: os.environ.get(k) for k in watch_client.ENV_KEYS}
        self.zone = _local_zone()
        self.package = watch_client.package_dir()
        self.configs: dict[str, Any] = {}
        self.homes_key: Any = None
        self.watcher: Watcher | None = None
        self.started_at = time.time()
        self.candidates: list[str] = []
        self.services_state: dict[str, str] = {}
        self.last_answer_ms = 0.0
        self.usage_cache: dict[str, tuple[int, Any]] = {}

    # --- watching ------------------------------------------------------------------------------

    def start_watching(self) -> None:
        try:
            self.watcher = Watcher(self.state, self.fence_dir, self.package)
        except Exception as exc:  # no inotify (another OS, no instances left, an old watchdog)
            with self.state.cond:
                self.state.stale = f"inotify is unavailable ({type(exc).__name__}: {exc}); clients compute answers"
            log(self.state.stale)
            return
        for folder, recursive in ((str(self.fence_dir), False), (self.package, True),
                                  (str(paths.ao_home()), False), (str(paths.sessions_dir()), True)):
            if os.path.isdir(folder):
                self.state.roots[folder] = self.watcher.watch(folder, recursive)
        self._watch_homes()
        with self.state.cond:
            self.state.stale = None

    def _homes(self) -> tuple[Any, list[str]]:
        """(what inotify cannot see about the codex homes, the folders to watch): each candidate home of
        `cost_view._all_depends` with where it leads, and its two rollout roots' identities."""
        from supervisor import store

        candidates = [str(paths.codex_home())]
        for r in store.all_sessions():
            home = ((r.get("launch") or {}).get("env") or {}).get("CODEX_HOME")
            if isinstance(home, str) and os.path.isabs(home) and home not in candidates:
                candidates.append(home)
        return self._homes_key(candidates), candidates

    def _homes_key(self, candidates: list[str]) -> Any:
        try:
            with os.scandir(paths.sessions_dir()) as it:
                extra = sorted(os.path.join(e.path, "codex-home") for e in it if e.is_dir(follow_symlinks=False))
        except OSError:
            extra = []
        key = []
        for candidate in [*candidates, *extra]:
            if not os.path.lexists(candidate):
                key.append([candidate, None])  # realpath of a missing path costs a stat per component
                continue
            real = os.path.realpath(candidate)
            row: list[Any] = [candidate, real]
            for sub in ("sessions", "archived_sessions"):
                try:
                    st = os.stat(os.path.join(real, sub))
                    row.append((st.st_dev, st.st_ino, stat.S_ISDIR(st.st_mode)))
                except OSError:
                    row.append(None)
            key.append(row)
        return key

    def _watch_homes(self) -> None:
        key, candidates = self._homes()
        assert self.watcher is not None
        for row in key:
            real = row[1]
            if real is None:
                continue
            for sub in ("sessions", "archived_sessions"):
                folder = os.path.join(real, sub)
                if os.path.isdir(folder) and folder not in self.state.roots:
                    self.state.roots[folder] = self.watcher.watch(folder, True)
            if os.path.isdir(real) and real not in self.state.roots:
                self.state.roots[real] = self.watcher.watch(real, False)  # sessions/ appearing
        self.candidates = candidates
        self.homes_key = key

    def homes_changed(self) -> bool:
        """Whether a home appeared, went, or now leads elsewhere (links change without inotify events)."""
        return self._homes_key(self.candidates) != self.homes_key

    def untrusted(self) -> str | None:
        return next((why for why in self.state.roots.values() if why), None)

    # --- answering -----------------------------------------------------------------------------

    def decline_reason(self, message: Any) -> str | None:
        if not isinstance(message, dict) or message.get("proto") != watch_client.PROTO:
            return "another protocol"
        if message.get("version") != __version__ or message.get("package") != self.package:
            return "another ao (version or install) than the watcher's"
        if message.get("env") != self.env:
            return "another environment (AO_HOME, CODEX_HOME, HOME or TZ) than the watcher's"
        if message.get("kind") not in ("status", "cost") or not isinstance(message.get("args"), dict):
            return "not a question the watcher answers"
        config = message.get("config")
        if not (isinstance(config, list) and len(config) == 2 and config[1] is True
                and (config[0] is None or isinstance(config[0], str))):
            return "a config only the client can read"
        with self.state.cond:
            if self.state.code_changed:
                return f"ao's code changed since the watcher started ({self.state.code_changed}); restart `ao watch`"
            if self.state.stale:
                return self.state.stale
        if self.watcher is None:
            return "not watching"
        return None

    def answer(self, message: dict[str, Any]) -> Reply | str:
        """The answer, or why the client should compute it itself."""
        reason = self.decline_reason(message)
        if reason:
            return reason
        assert self.watcher is not None
        if not self.watcher.fence(f"f{os.getpid()}-{next(self.tokens)}"):
            return "inotify did not deliver the fence in time"
        try:
            overrides = _config_for(message["config"], self.configs)
        except (FatalError, OSError, ValueError):
            return "the config does not load here; the client words the error"
        if message["kind"] == "status":
            return self._status(message["args"], overrides)
        if _local_zone() != self.zone:
            with self.state.cond:
                self.state.stale = "the local time zone changed; restart `ao watch`"
            return self.state.stale or ""
        return self._cost(message["args"], overrides)

    def _status(self, args: dict[str, Any], overrides: Any) -> Reply | str:
        from supervisor.observe import pricing
        from supervisor.report import status_view

        with self.compute_lock:
            try:
                table = pricing.load_table(overrides)
                wanted = status_view.status_filter(bool(args.get("active")), args.get("project"), args.get("since"),
                                                   bool(args.get("attention")))
                filtered = bool(args.get("active") or args.get("project") or args.get("since") or args.get("attention"))
                out = status_view.answer(args.get("session"), wanted, table, bool(args.get("as_json")), filtered,
                                         args.get("width"), self._usage_memo(overrides))
            except FatalError:
                return "an error: the client words it"
        return encoded(0, out, "")

    def _cost(self, args: dict[str, Any], overrides: Any) -> Reply | str:
        from supervisor.report import cost_view

        parsed = cost_view.CostArgs()
        for name in parsed.__slots__:
            if name in args:
                setattr(parsed, name, args[name])
        key = json.dumps([args, overrides], sort_keys=True, default=str)
        st = self.state
        if self.homes_changed():
            with self.compute_lock:
                self._watch_homes()
            with st.cond:
                st.generation += 1
        untrusted = self.untrusted()
        if untrusted:
            return untrusted
        with st.cond:
            generation = st.generation
            hit = st.answers.get(key)
            if hit is not None and hit.generation == generation:
                return hit.reply
        with self.compute_lock:
            with st.cond:
                generation = st.generation  # before computing: a change during it leaves the answer old
            try:
                out, err = cost_view.answer(parsed, overrides)
            except FatalError:
                return "an error: the client words it"
            if not parsed.all_rollouts and not self._sessions_watched():
                return "a session's rollout lies outside the watched folders"
        reply = encoded(0, out, err)
        with st.cond:
            st.answers[key] = _Answer(generation, reply)
            st.answers.pop(next(iter(st.answers)), None) if len(st.answers) > KEEP_ANSWERS else None
        return reply

    def _usage_memo(self, overrides: Any) -> Callable[[Any, Any], Any]:
        """`query.sessions_usage`, reused while the generation holds and every rollout read lies under a
        trusted watched folder (the rest of a status row, liveness and age, is computed per request)."""
        from supervisor.sessions import query

        def usage_of(records: Any, table: Any) -> Any:
            watched = [root for root, why in self.state.roots.items() if not why]
            rollouts = [query.rollout_of(r) for r in records]
            key = json.dumps([overrides, [r["session"] for r in records], rollouts], default=str)
            with self.state.cond:
                generation = self.state.generation
                hit = self.usage_cache.get(key)
            if hit is not None and hit[0] == generation:
                return hit[1]
            found = query.sessions_usage(records, table)
            if all(p is None or any(os.path.abspath(p).startswith(root + "/") for root in watched) for p in rollouts):
                self.usage_cache = {key: (generation, found)}
            return found

        return usage_of

    def _sessions_watched(self) -> bool:
        from supervisor import registry, store
        from supervisor.sessions import query

        watched = [root for root, why in self.state.roots.items() if not why]
        for record in store.all_sessions():
            if record.get("runtime") in registry.REMOTE_ROLLOUTS:
                return False
            rollout = query.rollout_of(record)
            if rollout and not any(os.path.abspath(rollout).startswith(root + "/") for root in watched):
                return False
        return True

    def keep_hot(self) -> None:
        """After changes, recompute the answers clients asked for once writes pause (the index stays hot)."""
        st = self.state
        seen = -1
        while not self.stop.is_set():
            with st.cond:
                st.cond.wait(1.0)
                if st.generation == seen or st.stale or st.code_changed:
                    continue
                if time.monotonic() - st.last_change < QUIET_S:
                    continue
                seen = st.generation
                wanted = [json.loads(k) for k, a in st.answers.items() if a.generation != st.generation]
            for args, overrides in wanted:
                if self.stop.is_set():
                    return
                self._cost(args, overrides)

    def rescan(self) -> None:
        """After an overflow: forget every answer, re-stat the watched folders (watchdog re-adds their
        watches), and serve again."""
        while not self.stop.is_set():
            with self.state.cond:
                self.state.cond.wait(0.5)
                if not (self.state.stale or "").startswith("inotify queue overflow"):
                    continue
                self.state.answers.clear()
            with self.compute_lock:
                self._watch_homes()
            with self.state.cond:
                self.state.generation += 1
                self.state.stale = None
            log("caught up after an inotify queue overflow")

    def status(self) -> dict[str, Any]:
        with self.state.cond:
            st = self.state
            return {"pid": os.getpid(), "started_at": self.started_at, "version": __version__,
                    "generation": st.generation, "stale": f"ao's code changed ({st.code_changed}); restart `ao watch`"
                    if st.code_changed else st.stale, "watched": sorted(st.roots),
                    "untrusted": {k: v for k, v in st.roots.items() if v}, "answers": len(st.answers),
                    "served": st.served, "direct": st.direct, "declined": dict(st.declined),
                    "recent_changes": list(st.recent),
                    "last_answer_ms": round(self.last_answer_ms, 2),
                    "services": dict(self.services_state)}

    # --- the socket ----------------------------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            uid = int.from_bytes(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[4:8], sys.byteorder)
            if uid != os.getuid():
                return
            conn.settimeout(2.0)
            data, ancdata, _, _ = conn.recvmsg(REQUEST_MAX, socket.CMSG_SPACE(2 * 4))
            fds += _rights(ancdata)  # none expected with a request: closed unused
            if not data:
                return
            while not data.endswith(b"\n") and len(data) < REQUEST_MAX:
                chunk = conn.recv(REQUEST_MAX)
                if not chunk:
                    return
                data += chunk
            try:
                message = json.loads(data)
            except ValueError:
                conn.sendall(b"-not JSON\n")
                return
            kind = message.get("kind") if isinstance(message, dict) else None
            if kind == "ping":
                body = json.dumps(self.status()).encode()
                conn.sendall(b"+" + json.dumps({"code": 0, "out_len": len(body), "body_len": len(body)}).encode()
                             + b"\n" + body)
                return
            if kind == "stop":
                conn.sendall(b"+" + json.dumps({"code": 0, "out_len": 0, "body_len": 0}).encode() + b"\n")
                self.stop.set()
                return
            conn.sendall(b"+")  # accepted: the client now waits for the answer, however long it takes
            started = time.perf_counter()
            result = self.answer(message)
            self.last_answer_ms = (time.perf_counter() - started) * 1000
            if isinstance(result, str):
                with self.state.cond:
                    self.state.declined[result] = self.state.declined.get(result, 0) + 1
                conn.sendall(json.dumps({"declined": result}).encode() + b"\n")  # no body_len: the client declines
                return
            code, out_b, err_b = result.code, result.out, result.err
            if message.get("direct") is True:
                # the client's stdout and stderr come now, once the answer is ready (watch_client.request)
                conn.sendall(watch_client.OFFER)
                data, ancdata, _, _ = conn.recvmsg(1, socket.CMSG_SPACE(2 * 4))
                given = _rights(ancdata)
                fds += given
                if data != b"c" or len(given) != 2 or not all(_writable_file(fd) for fd in given):
                    return  # nothing written: the client computes the answer itself
                conn.sendall(watch_client.WRITING)
                failed = _write_all(given[0], out_b) or _write_all(given[1], err_b)
                with self.state.cond:
                    self.state.direct += 1
                reply = {"code": 1 if failed else code, "direct": True, "out_len": 0, "body_len": 0, "error": failed}
                conn.sendall(json.dumps(reply).encode() + b"\n")
            else:
                header = {"code": code, "out_len": len(out_b), "body_len": len(out_b) + len(err_b)}
                conn.sendall(json.dumps(header).encode() + b"\n")
                conn.sendall(out_b)
                if err_b:
                    conn.sendall(err_b)
            with self.state.cond:
                self.state.served += 1
        except OSError:
            pass  # the client went away
        except Exception as exc:  # one bad request must not end the watcher
            log(f"a request failed: {type(exc).__name__}: {exc}")
        finally:
            conn.close()
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self.watcher is not None:
                self.watcher.sweep()


class Workers:
    """The threads that handle requests. A thread kept waiting takes the next request at once (starting
    one costs ~0.3 ms, a tenth of a watched answer's time in the watcher); while every thread is busy
    (a long recompute), each new request gets a new thread, so none waits for another."""

    def __init__(self, handle: Callable[[Any], None]) -> None:
        import queue

        self.handle = handle
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = 0  # threads that will take from the queue: one per request put there

    def submit(self, conn: Any) -> None:
        with self.lock:
            waiting = self.idle > 0
            if waiting:
                self.idle -= 1
        if waiting:
            self.queue.put(conn)
        else:
            threading.Thread(target=self._run, args=(conn,), name="ao-watch-request", daemon=True).start()

    def _run(self, conn: Any) -> None:
        while conn is not None:
            self.handle(conn)
            with self.lock:
                if self.idle >= IDLE_WORKERS:
                    return
                self.idle += 1
            conn = self.queue.get()

    def close(self) -> None:
        """End the waiting threads (busy ones end when their request does)."""
        with self.lock:
            waiting, self.idle = self.idle, 0
        for _ in range(waiting):
            self.queue.put(None)


def _rights(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The file descriptors an SCM_RIGHTS message brought (each one the caller's to close)."""
    fds = []
    for level, ctype, raw in ancdata:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            fds += [int.from_bytes(raw[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(raw) - len(raw) % 4, 4)]
    return fds


def _writable_file(fd: int) -> bool:
    """A file or a character device, as the client checks: never a pipe or socket a write could block on."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISCHR(mode)


def _write_all(fd: int, data: bytes) -> str:
    """Write all of `data` to the client's file (a file or a character device: see watch_client); ''
    when done, else why it failed part-way (a full disk), which the client reports in one line."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def _loaded(source: str) -> bool:
    """Whether a module loaded in this process came from `source`."""
    return any(getattr(m, "__file__", None) == source for m in list(sys.modules.values()))


def _local_zone() -> list[Any]:
    from supervisor.report import cost_view

    return cost_view._local_zone()


def start_services(cfg: Any, stop: threading.Event, names: list[str], state: dict[str, str],
                   table: dict[str, tuple[str, str]] | None = None) -> list[threading.Thread]:
    """Run each named service's `run(cfg, stop)` in its own thread. One that cannot be imported or that
    raises is logged with its reason in one line, and the others go on."""
    table = SERVICES if table is None else table
    threads = []
    for name in names:
        module, attr = table[name]

        def run(name: str = name, module: str = module, attr: str = attr) -> None:
            try:
                target: Callable[[Any, threading.Event], None] = getattr(importlib.import_module(module), attr)
            except Exception as exc:
                state[name] = f"not started: {type(exc).__name__}: {exc}"
                log(f"service {name}: {state[name]}")
                return
            state[name] = "running"
            try:
                target(cfg, stop)
                state[name] = "ended"
            except Exception as exc:
                state[name] = f"failed: {type(exc).__name__}: {exc}"
                log(f"service {name}: {state[name]}")

        thread = threading.Thread(target=run, name=f"ao-watch-{name}", daemon=True)
        state[name] = "starting"
        thread.start()
        threads.append(thread)
    return threads


LOCK_WAIT_S = 1.0


def _lock(folder: Path) -> int:
    fd = os.open(folder / watch_client.LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    import fcntl

    # A client clearing a dead watcher's socket holds the lock for a moment (watch_client.clear_stale):
    # a watcher starting then waits that moment out; a running watcher holds it for good.
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
        os.close(fd)
        pid = running_pid()
        raise FatalError(f"ao watch is already running for {paths.ao_home()}"
                         + (f" (pid {pid})" if pid else "") + "; `ao watch --stop` ends it") from None


def running_pid() -> int | None:
    try:
        doc = json.loads((Path(watch_client.watch_dir()) / watch_client.STATE_NAME).read_text())
        return int(doc["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _bind(folder: Path) -> tuple[socket.socket, int]:
    """Bind the socket in `folder`, replacing one a killed watcher left (the lock says none runs)."""
    dirfd = os.open(folder, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(dirfd)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        os.close(dirfd)
        raise FatalError(f"{folder} is not a directory this user owns; remove it and run `ao watch` again")
    try:
        os.unlink(watch_client.SOCKET_NAME, dir_fd=dirfd)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is made 0600 at once, not chmod-ed after a window
    try:
        listener.bind(f"/proc/self/fd/{dirfd}/{watch_client.SOCKET_NAME}")  # sun_path holds only 107 bytes
    finally:
        os.umask(old)
    listener.listen(64)
    listener.settimeout(0.5)
    return listener, dirfd


def serve(cfg: Any, services: list[str], ready: Callable[[str], None] = log,
          table: dict[str, tuple[str, str]] | None = None) -> int:
    """Run the watcher until ^C, SIGTERM or `ao watch --stop`; returns the exit code."""
    import signal

    folder = paths.ensure_private_dir(Path(watch_client.watch_dir()))
    lock_fd = _lock(folder)
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    os.chdir("/")  # a config in whatever folder `ao watch` was started from is not the clients'
    resident = Resident(stop)
    workers = Workers(resident.handle)
    listener, dirfd = _bind(folder)
    threads: list[threading.Thread] = []
    try:
        paths.atomic_write(folder / watch_client.STATE_NAME,
                           json.dumps({"pid": os.getpid(), "started_at": resident.started_at, "version": __version__}))
        resident.start_watching()
        for target in (resident.keep_hot, resident.rescan):
            threading.Thread(target=target, name=f"ao-watch-{target.__name__}", daemon=True).start()
        threads = start_services(cfg, stop, services, resident.services_state, table)
        ready(f"answering on {folder / watch_client.SOCKET_NAME} (pid {os.getpid()})")
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if stop.is_set():
                    break
                raise
            workers.submit(conn)
    finally:
        stop.set()
        workers.close()
        listener.close()
        try:
            os.unlink(watch_client.SOCKET_NAME, dir_fd=dirfd)
        except OSError:
            pass
        os.close(dirfd)
        for thread in threads:
            thread.join(timeout=5)
        if resident.watcher is not None:
            resident.watcher.close()
        try:
            os.unlink(folder / watch_client.STATE_NAME)
        except OSError:
            pass
        os.close(lock_fd)
        log("stopped")
    return 0
