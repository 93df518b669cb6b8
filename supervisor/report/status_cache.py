"""A finished `ao status --json` answer, served again while nothing it was computed from has changed (P4).

`ao status` reconciles every session and prices every rollout; with a hundred sessions that is a
hundred milliseconds of imports and work for an answer that rarely changes between two glances. An
entry holds the answer and everything it was computed from, taken *before* computing it:

- files, by stat (device, inode, mode, links, size, mtime_ns, ctime_ns, or the errno of a failed
  stat): ao.db and ao.db-wal; per session its events.jsonl, guard-state.json, operator.json (and
  policy.json where `query.budget_of` reads it), its stored rollout_path, its rollout (or the date
  folders `locate.find_rollout` listed to find it); the approvals folder and each approval in it;
  reactions/state.json; the config
  file `watch_client.located_config` names; pricing.json; /etc/localtime (date folders are local
  days); and every module file outside the standard library loaded while computing (ao's own code,
  orjson, psutil). index.db counts by identity only: it is a cache of the rollouts, which count whole.
- racy files also by a blake2b of their bytes (a folder's: of its names): a rewrite within the same
  timestamp tick as the stat keeps the stat. As git does with its index, "racy" is judged by the
  filesystem's own clock: a probe file under $AO_HOME/answers is touched before anything is stat'ed,
  and a file on that filesystem is racy unless its mtime and ctime are older than the probe's (any
  later write stamps it at least as new as the probe). A file on another filesystem is racy when
  touched within RACY_NS of the computation. A later serve that finds the racy files unchanged and
  older than a new probe drops their hashes. Module files that are racy keep the answer from being
  stored.
- the supervisor pid of each live session: /proc/PID/stat's start time, not a zombie.
- the clock: `age_s` is recomputed from `started_at` when served, and each time-based state is a
  predicate `now - base > limit` that must come out as it did: a spawn left without a supervisor for
  `reconcile.STALE_SPAWN_S`, a live session's activity turning idle after `activity.STALE_AFTER`.
- the arguments, the environment (`ENV_KEYS`), uid, Python and the located config pick the entry.

An answer is stored only when computing it wrote nothing to stderr, wrote nothing to ao.db (a
reconcile that wrote will read differently next time), crossed no time threshold while it ran, and
found every rollout without searching the whole tree. A hit is therefore an answer the one-shot path
would print byte for byte, and the one-shot path would have written nothing on the way.

The entry lives in $AO_HOME/answers (which the agent's jail hides), is written atomically and 0600,
and is read only from a private folder owned by this uid, as a regular file owned by this uid with no
group or other bits, whose blake2b matches: anything else (a truncated, corrupt or foreign file, a
link) is a miss, and the answer is computed and the entry rewritten.

Serving imports nothing beyond `marshal` and `_blake2`: the point is not to load sqlite, orjson,
pathlib or typing.
"""
from __future__ import annotations

import marshal
import os
import sys
import time

TYPE_CHECKING = False  # `typing` costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

    from supervisor.records import SessionRecord

FORMAT = b"ao-status-cache/1\n"
DIGEST_SIZE = 32
RACY_NS = 2_000_000_000  # as observe.answer_cache: covers 1-2 s timestamp granularity (no probe there)
PROBE_NAME = "status-clock"
MAX_RACY_BYTES = 4 << 20  # files being written right now (live rollouts) will differ next time anyway
MAX_ENTRIES = 8  # argument sets kept; the least recently written go first
ENV_KEYS = ("AO_HOME", "CODEX_HOME", "HOME", "TZ", "AO_CONFIG")
PREFIX, SUFFIX = "status-", ".bin"
_AGE_MARK = "@@ao-status-age@@"
last_refusal: str | None = None  # why the last computed answer was not stored (tests, debugging)


def home() -> str:
    """`paths.ao_home()` without importing pathlib (the same place, maybe spelled differently)."""
    env = os.environ.get("AO_HOME")
    return os.path.expanduser(env) if env else os.path.join(os.path.expanduser("~"), ".agent-orchestrator")


def key_of(args: Any, located: tuple[str | None, bool]) -> str:
    """What picks the entry: the arguments, the environment, the config file, this uid and Python."""
    from supervisor import __version__

    return repr((FORMAT, __version__, sys.version, sys.executable, os.geteuid(),
                 tuple(os.environ.get(k) for k in ENV_KEYS), tuple(located),
                 args.session, bool(args.active), bool(args.attention), args.project))


def entry_name(key: str) -> str:
    from _blake2 import blake2b

    return PREFIX + blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest() + SUFFIX


def signature(path: str) -> tuple[int, ...] | int:
    """A file's (or folder's) stat, as compared; the errno when it cannot be taken."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc.errno or -1
    return (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def identity(path: str) -> tuple[int, int] | int:
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc.errno or -1
    return st.st_dev, st.st_ino


def content_hash(path: str) -> bytes:
    """blake2b of a regular file's bytes, or of a folder's names; a marker for anything else.
    O_NONBLOCK: a FIFO put in the file's place must not hang `ao status`."""
    import stat as stat_mod
    from _blake2 import blake2b

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return b"!%d" % (exc.errno or -1)
    try:
        mode = os.fstat(fd).st_mode
        h = blake2b(digest_size=DIGEST_SIZE)
        if stat_mod.S_ISDIR(mode):
            h.update("\0".join(sorted(os.listdir(fd))).encode("utf-8", "surrogateescape"))
        elif stat_mod.S_ISREG(mode):
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
        else:
            return b"!mode %o" % mode
        return h.digest()
    except OSError as exc:
        return b"!%d" % (exc.errno or -1)
    finally:
        os.close(fd)


def process_start(pid: Any) -> bytes | None:
    """A running process's start time in clock ticks since boot (/proc/PID/stat), None when it is gone,
    a zombie, or not a pid: the same pid with the same start time is the same process."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data.rpartition(b")")[2].split()  # the command name may hold spaces and parentheses
    if len(fields) < 20 or fields[0] in (b"Z", b"X", b"x"):
        return None
    return fields[19]


def clock_probe() -> tuple[int, int] | None:
    """(device, time) of the probe file touched just now: its filesystem's own idea of now, in the units
    and ticks it stamps files with. None when it cannot be written (a read-only home)."""
    folder = os.path.join(home(), "answers")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(folder, PROBE_NAME), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.utime(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError:
        return None
    return st.st_dev, min(st.st_mtime_ns, st.st_ctime_ns)


def is_racy(sig: tuple[int, ...] | int, probe: tuple[int, int] | None, horizon_ns: int) -> bool:
    """Whether a write after `probe` could have left this stat as it is."""
    if not isinstance(sig, tuple):
        return False  # a missing file that appears has a stat
    newest = max(sig[5], sig[6])
    if probe is not None and sig[0] == probe[0]:
        return newest >= probe[1]
    return newest >= horizon_ns


def age_of(started: float, now: float) -> int:
    """`query.status_row`'s age_s."""
    return max(0, int(now - float(started)))


def render(parts: list[str], starts: list[float], now: float) -> str:
    out = [parts[0]]
    for started, part in zip(starts, parts[1:]):
        out.append(str(age_of(started, now)))
        out.append(part)
    return "".join(out)


# --- serving -----------------------------------------------------------------------------------------

def _private_dir(path: str) -> int | None:
    """An fd of `path` if it is a folder (not a link) owned by this uid with no group or other bits."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        return None
    return fd


def read_entry(key: str) -> tuple[Any, ...] | None:
    """The entry for `key` if it is whole and ours, else None."""
    import stat as stat_mod

    root = home()
    try:
        st = os.stat(root)
    except OSError:
        return None
    # ao makes its home 0700 on every start; a home that is not (yet) waits for the one-shot path to fix it
    if not stat_mod.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o777 != 0o700:
        return None
    dirfd = _private_dir(os.path.join(root, "answers"))
    if dirfd is None:
        return None
    try:
        fd = os.open(entry_name(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:
        return None
    finally:
        os.close(dirfd)
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    head = len(FORMAT) + DIGEST_SIZE
    if not raw.startswith(FORMAT) or len(raw) < head:
        return None
    from _blake2 import blake2b

    payload = raw[head:]
    if blake2b(payload, digest_size=DIGEST_SIZE).digest() != raw[len(FORMAT):head]:
        return None  # truncated or damaged
    entry = marshal.loads(payload)
    if not isinstance(entry, tuple) or len(entry) != 8 or entry[0] != key:
        return None
    return entry


def serve(key: str) -> str | None:
    """The stored answer for `key` when nothing it depends on has changed; None to compute it."""
    try:
        entry = read_entry(key)
        if entry is None:
            return None
        _, files, ids, racy, pids, clock, parts, starts = entry
        probe = clock_probe() if racy else None  # before the checks: a write after it shows in a stat
        horizon = time.time_ns() - RACY_NS
        for path, want in files:
            if signature(path) != want:
                return None
        for path, want in ids:
            if identity(path) != want:
                return None
        for path, want in racy:
            if content_hash(path) != want:
                return None
        for pid, want in pids:
            if process_start(pid) != want:
                return None
        now = time.time()
        for base, limit, over in clock:
            if ((now - base) > limit) != over:
                return None
        if len(parts) != len(starts) + 1:
            return None
        text = render(parts, starts, now)
    except Exception:  # an entry of any other shape is a miss, never an error
        return None
    if racy:
        sigs = dict(files)
        if not any(is_racy(sigs.get(path, 0), probe, horizon) for path, _ in racy):
            # the bytes were found unchanged after the probe, and a write from now on changes a stat
            write_entry(key, (*entry[:3], [], *entry[4:]))
    return text


def write_entry(key: str, entry: tuple[Any, ...]) -> None:
    """Atomically, 0600, without fsync (a torn entry after a crash fails its digest and is a miss);
    a full disk or a read-only home costs only the cache."""
    from _blake2 import blake2b

    payload = marshal.dumps(entry)
    data = FORMAT + blake2b(payload, digest_size=DIGEST_SIZE).digest() + payload
    folder = os.path.join(home(), "answers")
    name = entry_name(key)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(folder, name))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    _prune(folder)


def _prune(folder: str) -> None:
    """Keep the MAX_ENTRIES newest entries (answer_cache clears temp files a killed writer left)."""
    try:
        with os.scandir(folder) as it:
            found = [(e.stat(follow_symlinks=False).st_mtime_ns, e.path) for e in it
                     if e.name.startswith(PREFIX) and e.name.endswith(SUFFIX)]
        for _, old in sorted(found, reverse=True)[MAX_ENTRIES:]:
            os.unlink(old)
    except OSError:
        pass


# --- computing and storing ---------------------------------------------------------------------------

class Snapshot:
    """What one computation of the answer depends on, taken before it reads each input."""

    def __init__(self, key: str) -> None:
        from supervisor import paths

        self.key = key
        paths.ao_home()  # made private first: the probe's folder is made inside it
        self.probe = clock_probe()  # before any stat
        self.start_ns = time.time_ns()
        self.start = time.time()
        self.files: dict[str, tuple[int, ...] | int] = {}
        self.ids: dict[str, tuple[int, int] | int] = {}
        self.racy: dict[str, bytes] = {}
        self.racy_bytes = 0
        self.pids: dict[int, bytes] = {}
        self.store_files: tuple[str, ...] = ()
        self.refused: str | None = None  # why this answer is not stored (tests read it)

    def refuse(self, why: str) -> None:
        if self.refused is None:
            self.refused = why

    def file(self, path: str) -> None:
        if path in self.files:
            return
        sig = self.files[path] = signature(path)
        if isinstance(sig, tuple) and is_racy(sig, self.probe, self.start_ns - RACY_NS):
            self.racy_bytes += sig[4]
            if self.racy_bytes > MAX_RACY_BYTES:
                self.refuse("more bytes than MAX_RACY_BYTES are being written")
            if self.refused is None:  # hashing pays only for an answer that is stored
                self.racy[path] = content_hash(path)

    def globals(self, config: str | None) -> None:
        """The inputs every answer reads, before the answer is computed."""
        from supervisor import paths
        from supervisor.govern import guard
        from supervisor.observe import pricing
        from supervisor.sessions import reaction_state

        db = str(paths.db_path())
        self.store_files = (db, db + "-wal")
        for path in (db, db + "-wal", str(reaction_state.state_file()), "/etc/localtime",
                     os.path.join(os.path.dirname(os.path.abspath(pricing.__file__)), "pricing.json")):
            self.file(path)
        if config:
            self.file(config)
        approvals = guard.approvals_dir(str(paths.ao_home()))
        self.file(approvals)
        try:
            names = sorted(n for n in os.listdir(approvals) if n.endswith(".json"))
        except OSError:
            names = []
        for name in names:
            self.file(os.path.join(approvals, name))
        index = str(paths.ao_home() / "index.db")  # observe.index.index_path()
        self.ids[index] = identity(index)

    def records(self, records: list[SessionRecord]) -> None:
        """Each session's own inputs, after the store was read and before anything else is."""
        from supervisor import paths, registry, store

        for record in records:
            sdir = str(paths.session_dir(record["session"]))
            launch = record.get("launch")
            # policy.json only where `query.budget_of` reads it: a launch that does not carry the budget
            for name in ("events.jsonl", "guard-state.json", "operator.json") if launch and "budget_usd" in launch \
                    else ("events.jsonl", "guard-state.json", "operator.json", "policy.json"):
                self.file(os.path.join(sdir, name))
            if record["runtime"] in registry.REMOTE_ROLLOUTS:
                self.refuse(f"session {record['session']}'s rollout is on another machine")
            else:
                self._rollout(record)
            if store.is_live(record) and record.get("pid"):
                start = process_start(record.get("pid"))
                if start is None:  # reconcile is about to end it: the store changes
                    self.refuse(f"session {record['session']}'s supervisor is not running")
                else:
                    self.pids[int(record["pid"] or 0)] = start

    def _rollout(self, record: SessionRecord) -> None:
        """What `local_rollout_path` reads: the stored path, else the date folders it searches in turn."""
        stored = record.get("rollout_path")
        if stored:
            self.file(str(stored))
            if os.path.exists(stored):
                return
        thread = record.get("thread_id")
        if not thread:
            return
        from supervisor.launch.runtimes.local import codex_home_of
        from supervisor.observe import codex_format as cf
        from supervisor.observe import locate

        started = record.get("started_at")
        if not started:  # the search starts from today: it changes at midnight
            self.refuse(f"session {record['session']} has no start time")
            return
        pattern = cf.rollout_glob(thread)
        for folder in locate._day_dirs(codex_home_of(record) / cf.SESSIONS_DIR, started):
            self.file(str(folder))
            hits = sorted(folder.glob(pattern))
            if hits:
                self.file(str(hits[0]))
                return
        self.refuse(f"session {record['session']}'s rollout is found only by searching the whole tree")

    def store(self, text: str, rows: list[dict[str, Any]], reconciled: list[SessionRecord],
              selected: list[SessionRecord], stderr_written: bool) -> None:
        """Store the answer if it may be served again; `reconciled` are all records after reconcile,
        `selected` those the rows were made from."""
        end = time.time()
        if stderr_written:
            self.refuse("computing it wrote to stderr")
        for path in self.store_files:  # a reconcile that wrote: the next one reads differently
            if signature(path) != self.files[path]:
                self.refuse("the store changed while computing")
        for path, before in self.ids.items():
            after = identity(path)
            if isinstance(before, int) and isinstance(after, tuple):
                self.ids[path] = after  # the index this computation made, from the rollouts it read
            elif after != before:
                self.refuse(f"{path} was replaced while computing")
        clock = self._clock(reconciled, selected, end)
        template = self._template(text, rows, selected, end)
        self._code()
        global last_refusal
        last_refusal = self.refused
        if self.refused is not None or template is None:
            return
        write_entry(self.key, (self.key, list(self.files.items()), list(self.ids.items()), list(self.racy.items()),
                               list(self.pids.items()), clock, *template))

    def _clock(self, reconciled: list[SessionRecord], selected: list[SessionRecord],
               end: float) -> list[tuple[float, float, bool]]:
        """Each `now - base > limit` a state depends on, as it came out while computing."""
        from supervisor import store
        from supervisor.observe import activity
        from supervisor.sessions import reconcile

        found = []
        for record in reconciled:
            if reconcile.is_stale_spawn(record, float("inf")):  # one of ours: live, unstarted, no supervisor
                found.append((float(record["started_at"]), reconcile.STALE_SPAWN_S))
        for record in selected:
            if store.is_live(record) and record.get("rollout_path"):
                stamp = _activity_stamp(str(record["rollout_path"]))
                if stamp is not None:
                    found.append((stamp, activity.STALE_AFTER))
        out = []
        for base, limit in found:
            over = (self.start - base) > limit
            if ((end - base) > limit) != over:
                self.refuse("a time threshold passed while computing")
            out.append((base, float(limit), over))
        return out

    def _template(self, text: str, rows: list[dict[str, Any]], selected: list[SessionRecord],
                  end: float) -> tuple[list[str], list[float]] | None:
        """The answer split where each row's age goes, checked to give back `text` exactly."""
        import orjson

        started = {r["session"]: r.get("started_at") for r in selected}
        marked, ages, starts = [], [], []
        for row in rows:
            if row.get("age_s") is None:
                marked.append(row)
                continue
            base = started.get(row["session"])
            if base is None or not age_of(base, self.start) <= row["age_s"] <= age_of(base, end):
                self.refuse("a row's age is not counted from its start")  # the age formula changed?
                return None
            marked.append({**row, "age_s": _AGE_MARK})
            ages.append(str(row["age_s"]))
            starts.append(float(base))
        parts = (orjson.dumps(marked, option=orjson.OPT_INDENT_2).decode() + "\n").split(f'"{_AGE_MARK}"')
        if len(parts) != len(ages) + 1 or "".join(p + a for p, a in zip(parts, [*ages, ""])) != text:
            self.refuse("the answer does not split at its ages")
            return None
        return parts, starts

    def _code(self) -> None:
        """Every module file outside the standard library loaded while computing, and not being edited."""
        stdlib = os.path.dirname(os.__file__) + os.sep
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and not path.startswith(stdlib) and path not in self.files:
                sig = self.files[path] = signature(path)
                if is_racy(sig, self.probe, self.start_ns - RACY_NS):
                    self.refuse(f"{path} changed in the last seconds")


def _activity_stamp(rollout: str) -> float | None:
    """What `activity.activity` counts a live session's age from: its newest event's own time, else the
    rollout's mtime; None when neither exists (no time dependence)."""
    from pathlib import Path

    from supervisor.observe import activity
    from supervisor.observe import codex_format as cf

    events = activity.last_events(Path(rollout))
    stamp = activity.event_time(events[-1]) if events else None
    if stamp is None:
        try:
            st = os.stat(rollout)
        except OSError:
            return None
        if not cf.is_regular(st):
            return None
        stamp = st.st_mtime
    return stamp


class StderrWatch:
    """sys.stderr while computing, noting whether anything was written to it: a warning the one-shot
    path prints every time, which a served answer would not repeat."""

    def __init__(self) -> None:
        self.written = False
        self._stream = sys.stderr

    def write(self, text: str) -> int:
        self.written = True
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __enter__(self) -> StderrWatch:
        sys.stderr = self
        return self

    def __exit__(self, *_exc: object) -> None:
        sys.stderr = self._stream
