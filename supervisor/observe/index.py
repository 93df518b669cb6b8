"""A rebuildable SQLite index of rollout usage under $AO_HOME, so repeated reports only stat files.

Per file it keeps size, mtime, inode, the read offset, the fold state and partial sums per model and
UTC quarter hour; plus the response ids it was credited with (one JSON list per read, not a row per id:
rows per id made the index 15x larger than the sums and thrashed SQLite's cache on a cold run), so a
response repeated in another file counts once.
Deleting the database loses nothing: the next run reads the rollouts again.
"""
from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from supervisor import paths, sqlite_file
from supervisor.errors import FatalError
from supervisor.observe import codex_format as cf
from supervisor.observe import rollout, usage

SCHEMA_VERSION = 5  # 2: files.first_total, for forks recognised by a copied prefix; 3: ids as blobs;
#                      4: files_first_total indexes only files that have one; 5: sums and ids keyed by an
#                      integer file id (written in order, no text index), 16 KiB pages
CACHE_KIB = 8 << 10  # SQLite page cache (8 MiB): the index without per-id rows is small; RSS target is 150 MB
MAX_FILE_WARNINGS = 20
TYPED_READ = 8 << 20  # bytes to read from one file above which its lines are decoded typed
# A cold build appends: file ids are handed out in read order, so sums and ids (keyed by them) grow at
# the end of their b-trees; a path key repeated in both, inserted in creation order, was a random insert
# into two more text indexes, about a third of a cold run's SQLite time.
SCHEMA = f"""
PRAGMA page_size = 16384;
CREATE TABLE files (fid INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, dev INTEGER NOT NULL, offset INTEGER NOT NULL,
    line_no INTEGER NOT NULL, head BLOB, fold BLOB, thread_id TEXT, cwd TEXT,
    duplicates INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT 0, warnings TEXT, first_total TEXT);
CREATE TABLE sums (fid INTEGER NOT NULL, model TEXT NOT NULL, bucket TEXT NOT NULL,
    input INTEGER NOT NULL, cached_input INTEGER NOT NULL, output INTEGER NOT NULL,
    reasoning INTEGER NOT NULL, responses INTEGER NOT NULL, PRIMARY KEY (fid, model, bucket)) WITHOUT ROWID;
CREATE TABLE ids (fid INTEGER NOT NULL, ids BLOB NOT NULL);
CREATE INDEX ids_fid ON ids(fid);
CREATE INDEX files_thread ON files(thread_id);
CREATE INDEX files_first_total ON files(first_total) WHERE first_total IS NOT NULL;
PRAGMA user_version = {SCHEMA_VERSION};
"""


def index_path() -> Path:
    return paths.ao_home() / "index.db"


@dataclass
class FileUsage:
    """What the index knows of one file, for reports."""
    path: str
    thread_id: str | None
    cwd: str | None
    sums: list[tuple[str, str, dict[str, int]]]   # (model, bucket, tokens)


@dataclass
class Refresh:
    files: dict[str, FileUsage] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    read_files: int = 0       # files whose new bytes were read this time
    read_bytes: int = 0
    resets: int = 0
    behind: _CommitBehind | None = None   # refresh(commit_behind=True)'s commit, still running

    def settle(self) -> None:
        """Wait for a commit left running by refresh(commit_behind=True); raise what it raised."""
        if self.behind is not None:
            behind, self.behind = self.behind, None
            behind.join()


class _CommitBehind:
    """COMMIT and close a connection on a thread, while the caller builds its report from what the
    transaction read (a cold 1 GB index commits ~18 MB of pages, ~60 ms). Not a daemon: an interrupted
    caller's exit still waits for it, so the index is committed whole or not at all, never cut short."""

    def __init__(self, con: sqlite3.Connection) -> None:
        import threading

        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(con,), name="ao-index-commit")
        self.thread.start()

    def _run(self, con: sqlite3.Connection) -> None:
        try:
            con.execute("COMMIT")
        except BaseException as exc:  # handed to join(): a thread's exception would only be printed
            self.error = exc
        finally:
            con.close()  # rolls back what a failed COMMIT left open

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise FatalError(f"the usage index {index_path()} is unusable ({self.error}); delete it and run again")


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the block: reading a history or reporting on it makes hundreds of
    thousands of acyclic objects (ids, sums, rows), and the collector's passes over them, which can find
    nothing to free, were a tenth of a cold run and half of building a 9,356-row report."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def connect(threads: bool = False) -> sqlite3.Connection:
    path = index_path()
    try:
        if not path.exists():
            sqlite_file.create(path, SCHEMA)
        con = sqlite_file.open_wal(path, timeout=60, threads=threads)
        if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            con.close()
            for suffix in ("", "-wal", "-shm"):  # an index from another version: rebuild it
                Path(str(path) + suffix).unlink(missing_ok=True)
            sqlite_file.create(path, SCHEMA)
            con = sqlite_file.open_wal(path, timeout=60, threads=threads)
        con.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        return con
    except (OSError, sqlite3.Error) as exc:
        raise FatalError(f"cannot open the usage index {path}: {exc}; deleting it is safe") from None


def discover(codex_home: Path) -> list[str]:
    """Every rollout under sessions/ and archived_sessions/, in a stable order.

    Nothing is opened here and only directories (not links to them) are entered, so a FIFO, a
    device or a symlink loop cannot stall the walk; `refresh` skips what is not a regular file.
    """
    found: list[str] = []
    for root in (codex_home / cf.SESSIONS_DIR, codex_home / cf.ARCHIVED_DIR):
        stack = [str(root)]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif cf.is_rollout_name(entry.name):
                    found.append(entry.path)
    return sorted(found)


def _total_key(total: usage.Totals | None) -> str | None:
    return ",".join(map(str, total)) if total else None


class _Parents:
    """What a fork's fold asks of other rollouts: the parent's token_count history before the fork point,
    and which older file a copied prefix came from. Parent histories are read once per refresh."""

    def __init__(self, con: sqlite3.Connection, candidates: Iterable[str], acc: _Pending | None = None) -> None:
        self.con = con
        self.candidates = candidates
        self.by_thread: dict[str, str] | None = None  # made on the first question: most refreshes ask none
        self.cache: dict[tuple[str, int | None], usage.History | None] = {}
        self.acc = acc

    def _files(self) -> sqlite3.Connection:
        # the files read before this one are in the table, as when each row was written at once
        if self.acc is not None:
            self.acc.flush_files(self.con)
        return self.con

    def _path(self, thread_id: str) -> str | None:
        if self.by_thread is None:
            self.by_thread = {t: p for p in self.candidates if (t := cf.thread_of_name(p))}
        path = self.by_thread.get(thread_id)
        if path is None:
            row = self._files().execute("SELECT path FROM files WHERE thread_id = ?", (thread_id,)).fetchone()
            path = row[0] if row else None
        return path

    def history(self, thread_id: str, end_offset: int | None) -> usage.History | None:
        path = self._path(thread_id)
        return None if path is None else self._read(path, end_offset)

    def copied_from(self, total: usage.Totals, where: str) -> tuple[str, usage.History] | None:
        # the one whose usage came first (codex stamps in UTC, so the text sorts as the time): a sibling
        # or a twin with the same first total must not hide the parent
        best: tuple[str, usage.History] | None = None
        for (path,) in self._files().execute("SELECT path FROM files WHERE first_total = ? AND path != ? ORDER BY path",
                                        (_total_key(total), where)):
            found = self._read(path, None)
            if found and (best is None or found[0][1] < best[1][0][1]):
                best = path, found
        return best

    def _read(self, path: str, end: int | None) -> usage.History | None:
        key = (path, end)
        if key not in self.cache:
            try:
                self.cache[key] = _history(path, end)
            except OSError:  # gone, unreadable, or not a regular file: the fork's fold warns
                self.cache[key] = None
        return self.cache[key]


def _history(path: str, end: int | None) -> usage.History:
    """Every token_count total of a rollout (up to byte `end`), in order, with its timestamp."""
    out: usage.History = []
    if path.endswith(cf.COMPRESSED_SUFFIX):
        tail = rollout.RolloutTail(path)
        for _, line in tail.records((cf.TOKEN_COUNT_MARKER,)):
            if end is not None and tail.offset > end:
                break
            counted = cf.token_count(line)
            if counted is not None:
                out.append((counted.total, str(line.get(cf.TIMESTAMP) or "")))
        return out
    with cf.open_regular(path) as fh:
        left = end
        carry = b""
        while left is None or left > 0:
            block = fh.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            if left is not None:
                left -= len(block)
            lines = (carry + block).split(b"\n")
            carry = lines.pop()
            _scan(lines, out)
        _scan([carry], out)
    return out


def _scan(lines: list[bytes], out: usage.History) -> None:
    needle = cf.TOKEN_COUNT_MARKER
    for raw in lines:
        if needle not in raw:
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        counted = cf.token_count(line)
        if counted is not None:
            out.append((counted.total, str(line.get(cf.TIMESTAMP) or "")))


def _created(path: str) -> str:
    """The first line's timestamp (see scan.created_of), "" when there is none or the file is compressed."""
    if path.endswith(cf.COMPRESSED_SUFFIX):
        return ""
    from supervisor.observe import scan
    return scan.created_of(scan.head_of(path))


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _changed(row: tuple[Any, ...] | None, st: os.stat_result) -> bool:
    return row is None or (row[0], row[1], row[2], row[3]) != (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def refresh(paths_in: Iterable[str], prune_roots: Iterable[Path] = (), commit_behind: bool = False,
            statted: Mapping[str, os.stat_result | None] | None = None) -> Refresh:
    """Bring the index up to date for these rollout files and return their usage.

    Files under `prune_roots` that are indexed but gone are dropped (or renamed, when the same inode
    shows up at a new path, as `codex archive` does). With `commit_behind`, the usage is read inside the
    transaction that wrote it and the commit may still be running on return: call `settle()` on the
    result before the process ends or reads the index again. `statted`: os.stat of some of the files,
    taken a moment ago (None where it failed); the others are statted here.
    """
    wanted = list(dict.fromkeys(os.path.abspath(p) for p in paths_in))
    given = statted or {}
    stats = {p: given[p] if p in given else _stat(p) for p in wanted}
    out = Refresh()
    for p, st in stats.items():
        if st is None:
            out.warnings.append(f"{p}: rollout not found")
        elif not cf.is_regular(st):
            # a FIFO would block the open and /dev/zero would never end: treat it as absent
            out.warnings.append(str(cf.NotRegularFile(p, st.st_mode)))
            stats[p] = None
    early = None
    if not index_path().exists():
        # no index: every file will be read fresh, so the workers start reading now, while the index is
        # made and opened (_update takes them when its own list of fresh files is the same)
        from supervisor.observe import scan

        early = scan.Reads(_fresh_files([p for p in wanted if stats[p] is not None], {}, stats)[1], [])
    try:
        con = connect(threads=commit_behind)
        try:
            _refresh_open(con, wanted, stats, prune_roots, commit_behind, early, out)
        except sqlite3.DatabaseError as exc:
            raise FatalError(f"the usage index {index_path()} is unusable ({exc}); delete it and run again") from None
        finally:
            if out.behind is None:
                con.close()
    finally:
        if early is not None:
            early.close()
    return out


def _refresh_open(con: sqlite3.Connection, wanted: list[str], stats: dict[str, os.stat_result | None],
                  prune_roots: Iterable[Path], commit_behind: bool, early: Any, out: Refresh) -> None:
    """refresh() on the open index: write what changed, then read every wanted file's usage into `out`."""
    known = {r[0]: r[1:] for r in con.execute("SELECT path, size, mtime_ns, inode, dev FROM files")}
    roots = [str(r) + os.sep for r in prune_roots]
    present = {p for p, st in stats.items() if st is not None}
    gone = [p for p in known if roots and p.startswith(tuple(roots)) and p not in present]
    # oldest first (rollout names start with their time), so a response repeated in a fork or
    # resume is always credited to the file that had it first, the same on every run
    todo = [p for p in wanted if p in present and _changed(known.get(p), stats[p])]  # type: ignore[arg-type]
    if not todo and not gone:
        _collect(con, [p for p in wanted if p in present], out)
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        with collector_paused():
            _update(con, todo, gone, stats, wanted, out, early)
            _collect(con, [p for p in wanted if p in present], out)  # the transaction reads its own writes
        if commit_behind:
            out.behind = _CommitBehind(con)  # it closes con
        else:
            con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _fresh_files(todo: list[str], rows: dict[str, Any], stats: dict[str, os.stat_result | None]
                 ) -> tuple[list[str], list[tuple[str, int]]]:
    """`todo` in name order; and those of them the index has never read that workers may read, with
    their sizes, in that order."""
    from supervisor.observe import scan

    guess = sorted(todo, key=os.path.basename)
    return guess, [(p, st.st_size) for p in guess if p not in rows and (st := stats[p]) is not None
                   and not p.endswith(cf.COMPRESSED_SUFFIX) and st.st_size <= scan.MAX_WORKER_FILE]


def _in_order(todo: list[str], created: dict[str, str] | None = None) -> list[str]:
    """Creation order, then name: a response repeated in a fork or resume is credited to the file that
    had it first, and a fork's parent is indexed before the fork, the same on every run. `created`
    gives the stamps a scan already read."""
    if len(todo) < 2:
        return todo
    known = created or {}
    keyed = [(known[p] if p in known else _created(p), os.path.basename(p), p) for p in todo]
    # files whose first line has no time keep their name order, after the timed ones
    return [p for _, _, p in sorted(keyed, key=lambda k: (k[0] == "", k[0], k[1]))]


_FID_OF = "(SELECT fid FROM files WHERE path = ?)"


def _forget(con: sqlite3.Connection, path: str) -> None:
    con.execute(f"DELETE FROM sums WHERE fid = {_FID_OF}", (path,))
    con.execute(f"DELETE FROM ids WHERE fid = {_FID_OF}", (path,))


class _Seen:
    """Every response id counted so far. A cold run starts empty; otherwise the index's ids are loaded
    on the first batch that has ids, so a run whose changed files have none never reads them."""

    def __init__(self, con: sqlite3.Connection, cold: bool) -> None:
        self.con = con
        self.ids: set[str] = set()
        self.loaded = cold

    def load(self) -> set[str]:
        if not self.loaded:
            self.loaded = True
            for (blob,) in self.con.execute("SELECT ids FROM ids"):
                self.ids.update(orjson.loads(blob))
        return self.ids

    def forget(self, path: str) -> None:
        """Before a reset file's ids leave the index: reading it again must not find them counted."""
        if self.loaded:
            for (blob,) in self.con.execute(f"SELECT ids FROM ids WHERE fid = {_FID_OF}", (path,)):
                self.ids.difference_update(orjson.loads(blob))


def _update(con: sqlite3.Connection, todo: list[str], gone: list[str], stats: dict[str, os.stat_result | None],
            wanted: list[str], out: Refresh, early: Any = None) -> None:
    """Write what changed in `todo` and `gone`. `early`: a scan.Reads started before the write lock was
    taken, used when it reads exactly the files found fresh under the lock (refresh closes it)."""
    # re-read under the write lock: another ao may have advanced these files meanwhile
    rows = {r[0]: r[1:] for r in con.execute("SELECT path, size, mtime_ns, inode, dev, offset, line_no, head, fold,"
                                             " warnings, fid FROM files")}
    todo = [p for p in todo if _changed(rows.get(p), stats[p])]  # type: ignore[arg-type]
    renamed = _renames(con, todo, gone, rows, stats)
    todo = [p for p in todo if p not in renamed]
    gone = [p for p in gone if p in rows and p not in renamed.values()]
    duplicates = con.execute("SELECT COALESCE(SUM(duplicates), 0) FROM files").fetchone()[0]
    resets = [p for p in todo if p in rows and _will_reset(p, rows[p], stats[p])]  # type: ignore[arg-type]
    if duplicates and (gone or resets):
        # a response counted in a vanished or rewritten file may have been skipped as a duplicate
        # elsewhere; only a full rebuild credits it again
        con.execute("DELETE FROM files")
        con.execute("DELETE FROM sums")
        con.execute("DELETE FROM ids")
        rows = {}
        todo = [p for p in wanted if stats.get(p) is not None]
        gone = []
    for p in gone:
        _forget(con, p)
        con.execute("DELETE FROM files WHERE path = ?", (p,))
    from supervisor.observe import scan
    # Files the index has never read are folded on their own, in worker processes on a big job, while
    # this process writes them in name order. Creation order is what decides (see _in_order): when it
    # differs, those writes are undone and done again in creation order, so dedup and forks stay exact.
    guess, fresh = _fresh_files(todo, rows, stats)
    if early is not None and early.items == fresh:
        stream: Iterator[tuple[str, Any]] = iter(early)
        scan_warnings = early.warnings
    else:  # another ao indexed some of them first, or a rebuild: read what is fresh now
        if early is not None:
            early.close()
        scan_warnings = []
        stream = scan.read_all(fresh, scan_warnings)
    reads: dict[str, Any] = {}
    con.execute("SAVEPOINT written")
    mark = (len(out.warnings), out.read_files, out.read_bytes, out.resets)
    _write_all(con, guess, rows, stats, wanted, out, reads, stream)
    order = _in_order(todo, {p: r.created for p, r in reads.items()})
    if order != guess:
        con.execute("ROLLBACK TO written")
        del out.warnings[mark[0]:]
        out.read_files, out.read_bytes, out.resets = mark[1:]
        _write_all(con, order, rows, stats, wanted, out, reads, iter(()))
    con.execute("RELEASE written")
    out.warnings.extend(scan_warnings)


def _write_all(con: sqlite3.Connection, order: list[str], rows: dict[str, tuple[Any, ...]],
               stats: dict[str, os.stat_result | None], wanted: list[str], out: Refresh, reads: dict[str, Any],
               stream: Iterator[tuple[str, Any]]) -> None:
    """Write every file of `order` in that order: a scan's result (from `reads`, or the next of `stream`,
    which yields the fresh files in this same order) when dedup allows, else _read_file."""
    seen = _Seen(con, cold=not rows)
    acc = _Pending({p: row[9] for p, row in rows.items()},
                   con.execute("SELECT COALESCE(MAX(fid), 0) + 1 FROM files").fetchone()[0])
    parents = _Parents(con, wanted, acc)
    upcoming = next(stream, None)
    for p in order:
        read = reads.get(p)
        if read is None and upcoming is not None and upcoming[0] == p:
            read = reads[p] = upcoming[1]
            upcoming = next(stream, None)
        if read is None or read.deferred or not _apply(read, seen, out, acc):
            _read_file(con, p, rows.get(p), stats[p], seen, parents, out, acc)  # type: ignore[arg-type]
        if acc.id_count > 20_000:  # write as the workers read: the last flush is all that waits at the end
            acc.flush(con)
    acc.flush(con)


def _renames(con: sqlite3.Connection, todo: list[str], gone: list[str], rows: dict[str, tuple[Any, ...]],
             stats: dict[str, os.stat_result | None]) -> dict[str, str]:
    """New path -> old path, for files that moved unchanged (same inode, size and mtime)."""
    vanished = {(rows[g][2], rows[g][3], rows[g][0], rows[g][1]): g for g in gone if g in rows}
    if not vanished:
        return {}
    # in creation order, so of two links to one moved file the older-named one takes its rows
    moved = {}
    for p in _in_order([p for p in todo if (st := stats[p]) is not None
                        and (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns) in vanished]):
        st = stats[p]
        old = vanished.get((st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)) if st else None
        if p not in rows and old is not None:
            con.execute("UPDATE files SET path = ? WHERE path = ?", (p, old))  # its sums and ids follow its fid
            moved[p] = old
    return moved


def _will_reset(path: str, row: tuple[Any, ...], st: os.stat_result) -> bool:
    tail = rollout.RolloutTail(path, offset=row[4], line_no=row[5], inode=row[2], dev=row[3], size=row[0],
                               head=row[6] or b"")
    try:
        return tail.sync(st)
    except OSError:  # swapped or removed since the stat: _read_file reports it
        return False


_FILE_ROW = ("INSERT INTO files (fid, path, size, mtime_ns, inode, dev, offset, line_no, head, fold, thread_id, cwd,"
             " duplicates, pending, warnings, first_total) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
             " ON CONFLICT(path) DO UPDATE SET"
             " size=excluded.size, mtime_ns=excluded.mtime_ns, inode=excluded.inode, dev=excluded.dev,"
             " offset=excluded.offset, line_no=excluded.line_no, head=excluded.head, fold=excluded.fold,"
             " thread_id=excluded.thread_id, cwd=excluded.cwd, duplicates=files.duplicates + excluded.duplicates,"
             " pending=excluded.pending, warnings=excluded.warnings, first_total=excluded.first_total")


class _Pending:
    """Files rows, sums and response ids of many files, written in a few large statements."""

    def __init__(self, fids: dict[str, int], next_fid: int) -> None:
        self.files: list[tuple[Any, ...]] = []   # in read order: fid order is the report's file order
        self.sums: dict[tuple[int, str, str], list[int]] = {}
        self.ids: dict[int, list[str]] = {}   # fid -> ids credited to it by this read
        self.id_count = 0
        self.fids = fids   # path -> fid of every file in the table or pending
        self.next_fid = next_fid

    def fid(self, path: str) -> int:
        found = self.fids.get(path)
        if found is None:
            found = self.fids[path] = self.next_fid
            self.next_fid += 1
        return found

    def flush_files(self, con: sqlite3.Connection) -> None:
        if self.files:
            con.executemany(_FILE_ROW, self.files)
            self.files = []

    def flush(self, con: sqlite3.Connection) -> None:
        self.flush_files(con)
        con.executemany(
            "INSERT INTO sums VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(fid, model, bucket) DO UPDATE SET"
            " input=input+excluded.input, cached_input=cached_input+excluded.cached_input,"
            " output=output+excluded.output, reasoning=reasoning+excluded.reasoning,"
            " responses=responses+excluded.responses",
            [(*key, *s) for key, s in self.sums.items()])
        # one blob at a time: orjson gives each at least 4 KiB, which a list of thousands would hold at once
        con.executemany("INSERT INTO ids VALUES (?, ?)", ((f, orjson.dumps(i)) for f, i in self.ids.items() if i))
        self.sums, self.ids, self.id_count = {}, {}, 0


def _read_file(con: sqlite3.Connection, path: str, row: tuple[Any, ...] | None, st: os.stat_result,
               seen: _Seen, parents: _Parents, out: Refresh, acc: _Pending) -> None:
    if row is None:
        tail = rollout.RolloutTail(path)
        fold_state: dict[str, Any] = {}
        warnings: list[str] = []
    else:
        tail = rollout.RolloutTail(path, offset=row[4], line_no=row[5], inode=row[2], dev=row[3], size=row[0],
                                   head=row[6] or b"")
        fold_state = orjson.loads(row[7]) if row[7] else {}
        warnings = orjson.loads(row[8]) if row[8] else []
    start = tail.offset
    try:
        st = os.stat(path)  # fresh: the stat taken for the whole refresh may predate a replacement
    except OSError:
        pass
    try:
        reset = tail.sync(st)
    except OSError as exc:  # swapped for a FIFO or removed since the stat: keep what the index had
        out.warnings.append(f"{path}: cannot read ({exc.strerror})")
        return
    if reset:
        out.resets += 1
        acc.flush(con)  # nothing of this file may stay pending: its ids and sums are dropped now
        seen.forget(path)
        _forget(con, path)
        fold_state, warnings, start = {}, [], 0
        con.execute("UPDATE files SET duplicates = 0 WHERE path = ?", (path,))
    fold = usage.FileFold({**fold_state, "where": path}, parent_totals=parents)
    from supervisor.observe import scan
    duplicates = 0
    fid = acc.fid(path)
    ids = acc.ids.setdefault(fid, [])

    def add(rid: str | None, model: str, bucket: str, i: int, c: int, o: int, r: int) -> None:
        # usage.dedupe against every id counted so far, then the pending sums
        nonlocal duplicates, ids
        if rid is not None:
            known = seen.load()
            if rid in known:
                duplicates += 1
                return
            known.add(rid)
            ids.append(rid)
            acc.id_count += 1
        key = (fid, model, bucket)
        s = acc.sums.get(key)
        if s is None:
            s = acc.sums[key] = [0, 0, 0, 0, 0]
        s[0] += i
        s[1] += c
        s[2] += o
        s[3] += r
        s[4] += 1
        if acc.id_count > 20_000:  # pending ids and their JSON cost RSS: write them in modest batches
            acc.flush(con)
            ids = acc.ids.setdefault(fid, [])

    try:
        # msgspec's typed decoding pays for its import (~15 ms) only on a big read, not on a few new lines
        scan.feed_new_lines(tail, fold, add, path, typed=st.st_size - tail.offset > TYPED_READ)
    except OSError as exc:
        tail.warnings.append(f"{path}: read failed at byte {tail.offset}: {exc.strerror}")
    if tail.torn:
        # replaced between the stat and the open: nothing was read; size -1 forces a re-read next time
        st = SimpleNamespace(st_size=-1, st_mtime_ns=st.st_mtime_ns,  # type: ignore[assignment]
                             st_ino=st.st_ino, st_dev=st.st_dev)
        tail.warnings.append(f"{path}: replaced while being read; it is read again on the next run")
    elif tail.read_stat is not None:
        st = tail.read_stat  # describe the file that was actually read, not the path's earlier state
    out.read_files += 1
    out.read_bytes += tail.offset - start
    warnings = (warnings + tail.warnings + fold.warnings)[:MAX_FILE_WARNINGS]
    thread_id = fold.thread_id or cf.thread_of_name(path)
    acc.files.append(
        (fid, path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, tail.offset, tail.line_no, tail.head,
         _compact(orjson.dumps(fold.state())), thread_id, fold.cwd, duplicates, tail.pending,
         orjson.dumps(warnings).decode() if warnings else None, _total_key(fold.first_total)))


def _compact(blob: bytes) -> bytes:
    """A copy of its exact size: orjson allocates at least 4 KiB per result, and rows wait for their flush."""
    return bytes(memoryview(blob))


def _apply(read: Any, seen: _Seen, out: Refresh, acc: _Pending) -> bool:
    """Write a file a scan folded on its own (a scan.FileRead), if none of its responses was counted
    before it; False leaves the file to _read_file, which credits each repeated response exactly."""
    if read.failed:
        out.warnings.append(read.failed)
        return True
    path = read.path
    if read.ids:
        known = seen.load()
        if not known.isdisjoint(read.ids):
            return False
        known.update(read.ids)
        acc.ids.setdefault(acc.fid(path), []).extend(read.ids)
        acc.id_count += len(read.ids)
    fid = acc.fid(path)
    for model, bucket, *new in read.sums:
        s = acc.sums.get((fid, model, bucket))
        if s is None:
            acc.sums[(fid, model, bucket)] = new
        else:
            for n in range(5):
                s[n] += new[n]
    out.read_files += 1
    out.read_bytes += read.offset
    acc.files.append((fid, path, *read.stat, read.offset, read.line_no, read.head, read.fold, read.thread_id, read.cwd,
                      read.duplicates, read.pending, orjson.dumps(read.warnings).decode() if read.warnings else None,
                      read.first_total))
    return True


def _collect(con: sqlite3.Connection, present: list[str], out: Refresh) -> None:
    wanted = set(present)
    by_fid: dict[int, FileUsage] = {}
    for fid, path, thread_id, cwd, pending, warnings in con.execute(
            "SELECT fid, path, thread_id, cwd, pending, warnings FROM files"):
        if path in wanted:
            out.files[path] = by_fid[fid] = FileUsage(path, thread_id, cwd, [])
            if warnings:
                out.warnings.extend(orjson.loads(warnings))
            if pending:
                out.warnings.append(f"{path}: ends with an incomplete line ({pending} bytes), not counted yet")
    for fid, model, bucket, i, c, o, r in con.execute(
            "SELECT fid, model, bucket, input, cached_input, output, reasoning FROM sums"):
        f = by_fid.get(fid)
        if f is not None:
            f.sums.append((model, bucket, {"input": i, "cached_input": c, "output": o, "reasoning": r}))


def iter_sums(files: Iterable[FileUsage]) -> Iterator[tuple[FileUsage, str, str, dict[str, int]]]:
    for f in files:
        for model, bucket, tokens in f.sums:
            yield f, model, bucket, tokens
