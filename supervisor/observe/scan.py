"""The usage scan of rollout bytes: the lines the fold needs, found with SIMD search, decoded typed when they can be.

`feed_new_lines` / `fold_chunk` fold a rollout's new complete lines exactly as reading each chosen line
with orjson and `FileFold.feed` would: the same lines are chosen (see `codex_format.usage_spans`), the
same lines are skipped or warned about, and the fold sees the same values. Only the cost differs:

- stringzilla finds the markers (about 4x `bytes.find`) and counts newlines (5x `bytes.count`);
- with `typed`, token_usage_record, session_meta, turn_context and thread_settings_applied lines are
  decoded by msgspec into strict structs naming every field codex 0.169.0 writes (scan_shapes.py; the
  22 KB base_instructions text is skipped, not built). A line that does not fit them exactly (another
  field, another type, an int orjson would read as a float) is decoded the generic way instead, so odd
  and hostile shapes stay exact.

`read_fresh` folds a whole rollout the index has never read, with no other file: `read_all` gives those
to forked worker processes on a big job. A fold that needs another file (a fork asking for its parent's
history) stops and says so (`FileRead.deferred`); the index then reads that file itself, in order.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
import stringzilla as sz

from supervisor.observe import codex_format as cf
from supervisor.observe import rollout, usage

if TYPE_CHECKING:
    from supervisor.observe.scan_shapes import FileRead

try:  # the per-response loop compiled (_fastscan.c); without a compiler at install time, this file's own
    from supervisor.observe._fastscan import fold_records as _fast
except ImportError:
    _fast = None  # type: ignore[assignment]

MAX_FILE_WARNINGS = 20
# Files above this are left to the index's streaming path: a worker keeps a file's ids in memory.
MAX_WORKER_FILE = 64 << 20
# Worker processes pay off only on a big job: forking and collecting cost a few milliseconds.
MIN_PARALLEL_BYTES = 32 << 20
MIN_PARALLEL_FILES = 16
BATCH_BYTES = 4 << 20
BATCH_FILES = 64
WORKERS_ENV = "AO_SCAN_WORKERS"

_T = b'"type":"t'
_REC, _TC, _OTHER, _META, _CTX, _SET = 0, 1, 2, 3, 4, 5
_NL = b"\n"
_RECORD, _TOKEN_COUNT = cf.RECORD_MARKER, cf.TOKEN_COUNT_MARKER
_CONTEXT, _SETTINGS, _SESSION = cf.TURN_CONTEXT_MARKER, cf.SETTINGS_MARKER, cf.SESSION_META_MARKER
_O, _U, _H = ord("o"), ord("u"), ord("h")   # the byte after `"type":"t` of each wanted marker


def spans(chunk: bytes, last_nl: int) -> list[tuple[int, int, int]]:
    """(start, end, kind) of the lines `codex_format.usage_spans(chunk, last_nl, False)` chooses, in order.

    The same walk over `"type":"t` (a miss resumes 9 bytes on, a hit at the end of its line), so the same
    lines; `kind` says which marker chose the line, so the caller can pick a decoder. `_fold_chunk` walks
    the same way inline; this list form is for tests and tools.
    """
    out: list[tuple[int, int, int]] = []
    for start, end, kind in _walk(chunk, last_nl, None):
        out.append((start, end, kind))
    return out


def _metas(chunk: bytes, last_nl: int) -> list[tuple[int, int]]:
    """(start, end) of every line holding the session_meta marker, in order."""
    out = []
    find, nl, rfind = sz.find, chunk.find, chunk.rfind
    pos = find(chunk, _SESSION, 0, last_nl)
    while pos >= 0:
        end = nl(_NL, pos)
        out.append((rfind(_NL, 0, pos) + 1, end))
        pos = find(chunk, _SESSION, end, last_nl)
    return out


def _walk(chunk: bytes, last_nl: int, fold: usage.FileFold | None) -> Iterator[tuple[int, int, int]]:
    """The chosen lines in order; with a fold, token_count lines are passed over once it has records.

    A line chosen both by the walk and for holding the session_meta marker is yielded once, as _OTHER.
    """
    find, nl, rfind, starts = sz.find, chunk.find, chunk.rfind, chunk.startswith
    metas = _metas(chunk, last_nl)
    m, n_metas = 0, len(metas)
    pos = find(chunk, _T, 0, last_nl)
    while pos >= 0:
        c = chunk[pos + 9]  # pos + 9 <= last_nl: at worst the newline
        kind = -1
        if c == _O:
            kind = _REC if starts(_RECORD, pos) else _TC if starts(_TOKEN_COUNT, pos) else -1
        elif c == _U:
            kind = _CTX if starts(_CONTEXT, pos) else -1
        elif c == _H:
            kind = _SET if starts(_SETTINGS, pos) else -1
        if kind < 0:
            pos = find(chunk, _T, pos + 9, last_nl)
            continue
        end = nl(_NL, pos)
        if kind == _TC and fold is not None and fold.has_records and (m == n_metas or metas[m][0] > pos):
            pos = find(chunk, _T, end, last_nl)  # skipped unread, as the generic path skips it
            continue
        start = rfind(_NL, 0, pos) + 1
        while m < n_metas and metas[m][0] < start:
            yield metas[m][0], metas[m][1], _META
            m += 1
        if m < n_metas and metas[m][0] == start:
            kind = _OTHER
            m += 1
        yield start, end, kind
        pos = find(chunk, _T, end, last_nl)
    while m < n_metas:
        yield metas[m][0], metas[m][1], _META
        m += 1


# --- folding new lines ----------------------------------------------------------------------------
Add = Callable[[str | None, str, str, int, int, int, int], None]  # (response id, model, bucket, i, c, o, r)


def feed_new_lines(tail: rollout.RolloutTail, fold: usage.FileFold, add: Add, path: str,
                   typed: bool = False) -> None:
    """Fold every new complete line of `tail` (synced) into `fold`; each response's usage goes to `add`.

    `typed` decodes the common lines with msgspec (see scan_shapes): worth its import on a big read.
    Raises OSError from reading; warnings go to `tail.warnings` and `fold.warnings`.
    """
    for last_nl, chunk in tail.chunks():
        fold_chunk(chunk, last_nl, tail.line_no, fold, add, path, tail.warnings, typed)


class FileSums:
    """One file's responses on their own: ids seen in it (each counted once), sums per (model, bucket)."""
    __slots__ = ("seen", "sums", "ids", "duplicates")

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.sums: dict[tuple[str, str], list[int]] = {}   # (model, bucket) -> input, cached, output, reasoning, n
        self.ids: list[str] = []
        self.duplicates = 0

    def add(self, rid: str | None, model: str, bucket: str, i: int, c: int, o: int, r: int) -> None:
        if rid is not None:
            if rid in self.seen:
                self.duplicates += 1
                return
            self.seen.add(rid)
            self.ids.append(rid)
        s = self.sums.get((model, bucket))
        if s is None:
            s = self.sums[(model, bucket)] = [0, 0, 0, 0, 0]
        s[0] += i
        s[1] += c
        s[2] += o
        s[3] += r
        s[4] += 1


def fold_chunk(chunk: bytes, last_nl: int, line_base: int, fold: usage.FileFold, add: Add, path: str,
               warnings: list[str], typed: bool = True, own: FileSums | None = None) -> None:
    """Fold the chosen lines of `chunk[:last_nl + 1]` (complete lines; `line_base` lines come before it).

    The walk of `_walk`, inline: a generator's resume per line was a tenth of the scan. With `own` (whose
    `add` is `add`), a record's usage goes into it inline, one call less per response.
    """
    fast = None
    if own is not None:
        seen, sums, ids = own.seen, own.sums, own.ids
        fast = _fast if typed else None
    bucket_of, loads, feed, buckets = usage.bucket_of, orjson.loads, fold.feed, usage._BUCKETS
    find, nl, rfind, starts = sz.find, chunk.find, chunk.rfind, chunk.startswith
    if typed:
        from supervisor.observe import scan_shapes as shapes
        record_decode, decode_error, record_type = shapes.record_decode, shapes.DecodeError, cf.Line.TOKEN_USAGE_RECORD

    def other(start: int, end: int, kind: int) -> None:
        """Any chosen line but a strict record: the generic path, or the typed session_meta."""
        raw = chunk[start:end]
        if fold.has_records and (kind == _TC or _TOKEN_COUNT in raw):
            return  # a file with records counts them, not its token_counts
        if not typed:
            pass
        elif kind == _META:
            small = shapes.meta(raw)
            if small is not None:
                feed(small)
                return
        elif kind == _CTX or kind == _SET:
            plain, model = shapes.model_switch(raw, kind)
            if plain:
                if model:
                    fold.model = model
                return
        try:
            line = loads(raw)
        except orjson.JSONDecodeError as exc:
            warnings.append(f"{path}:{line_base + chunk.count(_NL, 0, start) + 1}: skipped a corrupt line ({exc.msg})")
            return
        item = feed(line)
        if item is not None:
            add(item.response_id, item.model, item.bucket, item.input, item.cached_input, item.output,
                item.reasoning)

    metas = _metas(chunk, last_nl)
    m, n_metas = 0, len(metas)
    pos = find(chunk, _T, 0, last_nl)
    while pos >= 0:
        if fast is not None:
            # the compiled loop folds plain records up to the next session_meta line and stops at the
            # first marker it leaves to this walk (its position), or finds none left (-1)
            pos, has_records, dups, fold.model = fast(chunk, pos, metas[m][0] if m < n_metas else last_nl + 1,
                                                      last_nl, fold.has_records, fold.model, buckets, seen, ids,
                                                      sums)
            fold.has_records = bool(has_records)
            own.duplicates += dups  # type: ignore[union-attr]
            if pos < 0:
                break
        c = chunk[pos + 9]  # pos + 9 <= last_nl: at worst the newline
        kind = -1
        if c == _O:
            kind = _REC if starts(_RECORD, pos) else _TC if starts(_TOKEN_COUNT, pos) else -1
        elif c == _U:
            kind = _CTX if starts(_CONTEXT, pos) else -1
        elif c == _H:
            kind = _SET if starts(_SETTINGS, pos) else -1
        if kind < 0:
            pos = find(chunk, _T, pos + 9, last_nl)
            continue
        end = nl(_NL, pos)
        if kind == _TC and fold.has_records and (m == n_metas or metas[m][0] > pos):
            pos = find(chunk, _T, end, last_nl)  # skipped unread, as the generic path skips it
            continue
        start = rfind(_NL, 0, pos) + 1
        pos = find(chunk, _T, end, last_nl)
        while m < n_metas and metas[m][0] < start:
            other(metas[m][0], metas[m][1], _META)
            m += 1
        if m < n_metas and metas[m][0] == start:
            m += 1
            other(start, end, _OTHER)  # chosen twice: not a plain session_meta
            continue
        if kind != _REC or not typed:
            other(start, end, kind)
            continue
        # cf.usage_record and FileFold.feed's record branch, inlined: this runs once per response
        try:
            rec: shapes.RecordLine | None = record_decode(chunk[start:end])
        except decode_error:
            rec = None
        payload = rec.payload if rec is not None else None
        used = payload.usage if payload is not None else None
        if used is None or rec.type != record_type:  # type: ignore[union-attr]
            other(start, end, kind)
            continue
        # A strict record holds no `"type":"token_count"`: the walk met no earlier "type" in the line,
        # and a later one would have been the line's type. So it needs no skip check.
        fold.has_records = True
        stamp = rec.timestamp  # type: ignore[union-attr]
        bucket = buckets.get(stamp[:16]) if stamp is not None and stamp[-1:] == "Z" else None  # bucket_of's cache
        i, c, o, r = used.input_tokens, used.cached_input_tokens, used.output_tokens, used.reasoning_output_tokens
        i, c, o, r = (i if i is not None and i > 0 else 0, c if c is not None and c > 0 else 0,
                      o if o is not None and o > 0 else 0, r if r is not None and r > 0 else 0)
        rid = payload.response_id or None  # type: ignore[union-attr]
        if bucket is None:
            bucket = bucket_of(stamp)
        if own is None:
            add(rid, fold.model, bucket, i, c, o, r)
            continue
        if rid is not None:  # FileSums.add, inline
            if rid in seen:
                own.duplicates += 1
                continue
            seen.add(rid)
            ids.append(rid)
        key = (fold.model, bucket)
        s = sums.get(key)
        if s is None:
            s = sums[key] = [0, 0, 0, 0, 0]
        s[0] += i
        s[1] += c
        s[2] += o
        s[3] += r
        s[4] += 1
    while m < n_metas:
        other(metas[m][0], metas[m][1], _META)
        m += 1


# --- whole new files, in worker processes ---------------------------------------------------------
_STAMP = b'"timestamp":"'


HEAD_BYTES = 4096


def head_of(path: str) -> bytes:
    """A rollout's first HEAD_BYTES bytes (b"" when it cannot be read)."""
    try:
        with cf.open_regular(path) as fh:
            return fh.read(HEAD_BYTES)
    except OSError:
        return b""


def created_of(head: bytes) -> str:
    """The first line's timestamp, from a file's first HEAD_BYTES bytes; "" when there is none.

    Codex writes UTC, so these sort as text: a cold run reads files in creation order, so a fork's
    parent is indexed before the fork whatever their names (local-time names can sort a later file first).
    """
    first = head.split(b"\n", 1)[0]
    at = first.find(_STAMP)
    if at < 0:
        return ""
    stamp = first[at + len(_STAMP):first.find(b'"', at + len(_STAMP))]
    return stamp.decode("ascii", "replace") if stamp.endswith(b"Z") else ""


class Deferred(Exception):
    """A fold asked for another rollout: the file is read again in order, by the index."""


class _NoParents:
    """The Parents a worker's fold sees: any question about another file defers the file."""

    def history(self, thread_id: str, end_offset: int | None) -> usage.History | None:
        raise Deferred(thread_id)

    def copied_from(self, total: usage.Totals, where: str) -> tuple[str, usage.History] | None:
        raise Deferred(where)


def total_key(total: usage.Totals | None) -> str | None:
    return ",".join(map(str, total)) if total else None


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _read_whole(path: str, st: os.stat_result) -> tuple[bytes | None, os.stat_result]:
    """The bytes of the regular file `st` describes, with its fstat; None when it cannot be read or the
    path now leads elsewhere (swapped since the stat: not a regular file, another inode).

    codex_format.open_regular's checks for a file just statted, with plain os calls: that stat is the
    one before opening (devices stay unopened), O_NONBLOCK and the fstat close the swap race. A file
    that grew since the stat is read to its end.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return None, st
    try:
        now = os.fstat(fd)
        if not cf.is_regular(now) or (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
            return None, now
        data = os.read(fd, st.st_size + 1)
        if len(data) > st.st_size or 0 < len(data) < st.st_size:  # grown, or a short read: to the end
            parts = [data]
            while part := os.read(fd, 1 << 20):
                parts.append(part)
            data = b"".join(parts)
        return data, now
    except OSError:
        return None, st
    finally:
        os.close(fd)


def read_fresh(path: str) -> FileRead:
    """Fold a rollout the index has never read, as index._read_file would with no other file to ask.

    The whole file is read at once (what RolloutTail's chunks add up to when no line is over its limit).
    Anything unusual (gone, unreadable, replaced meanwhile, grown past the line limit, a fork asking for
    its parent) is left to index._read_file: `deferred`.
    """
    from supervisor.observe import scan_shapes as shapes
    result = shapes.FileRead(path)
    try:
        st = os.stat(path)  # fresh: the stat taken for the whole refresh may predate a replacement
    except OSError:
        result.deferred = True
        return result
    if not cf.is_regular(st):
        result.failed = f"{path}: cannot read ({cf.NotRegularFile(path, st.st_mode).strerror})"
        return result
    data, now = _read_whole(path, st)
    if data is None or len(data) > rollout.MAX_LINE:
        result.deferred = True
        result.created = created_of(head_of(path))
        return result
    result.created = created_of(data[:HEAD_BYTES])
    fold = usage.FileFold({"where": path}, parent_totals=_NoParents())
    own = FileSums()
    warnings: list[str] = []
    last_nl = data.rfind(b"\n")
    if last_nl >= 0:
        try:
            fold_chunk(data, last_nl, 0, fold, own.add, path, warnings, True, own)
        except Deferred:
            result.deferred = True
            return result
    result.offset = last_nl + 1
    result.line_no = int(sz.count(data, "\n", 0, last_nl + 1)) if last_nl >= 0 else 0
    result.pending = len(data) - result.offset
    result.head = data[:rollout.HEAD]
    result.stat = (now.st_size, now.st_mtime_ns, now.st_ino, now.st_dev)
    result.fold = shapes.encode_json(fold.state())  # orjson's bytes hold 4 KiB each, and thousands wait
    result.thread_id = fold.thread_id or cf.thread_of_name(path)
    result.cwd, result.first_total = fold.cwd, total_key(fold.first_total)
    result.warnings = (warnings + fold.warnings)[:MAX_FILE_WARNINGS]
    result.duplicates, result.ids = own.duplicates, own.ids
    result.sums = [(model, bucket, *s) for (model, bucket), s in own.sums.items()]  # type: ignore[misc]
    return result


def _read_batch(paths: list[str]) -> bytes:
    import gc

    from supervisor.observe import scan_shapes as shapes
    gc.disable()  # a worker makes short-lived acyclic objects only; collections were 10% of its time
    return shapes.encode_reads([read_fresh(path) for path in paths])


def workers_for(total_bytes: int, files: int) -> int:
    """How many worker processes read a job of this size (1: none, this process reads it)."""
    wanted = os.environ.get(WORKERS_ENV, "")
    if wanted.strip().isdigit():
        return max(1, int(wanted))
    if total_bytes < MIN_PARALLEL_BYTES or files < MIN_PARALLEL_FILES:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    # one more than the cores: the parent spends much of a cold run waiting on pipes and SQLite, and an
    # extra worker keeps the cores busy then (3 workers on 2 cores beat 2 in each of 5 paired 1 GB runs)
    return max(1, min(cpus + 1, 8))


def _batches(items: list[tuple[str, int]], parts: int) -> list[list[str]]:
    """Runs of about BATCH_BYTES or BATCH_FILES, and at least `parts` of them when there are enough files."""
    most = max(1, min(BATCH_FILES, -(-len(items) // max(parts, 1))))
    out: list[list[str]] = []
    size = 0
    for path, length in items:
        if not out or size >= BATCH_BYTES or len(out[-1]) >= most:
            out.append([])
            size = 0
        out[-1].append(path)
        size += length
    return out


def read_all(items: list[tuple[str, int]], warnings: list[str]) -> Iterator[tuple[str, FileRead]]:
    """(path, size) -> (path, the file folded on its own), in the order given; by worker processes when
    the job is big enough, so the caller writes results while the rest are read. The workers start
    when the iteration does; `Reads` starts them at once."""
    reads = Reads(items, warnings)
    try:
        yield from reads
    finally:
        reads.close()


class Reads:
    """read_all's reading, with its workers started at once, so the caller can do other work (open the
    index, sort the files) while they read. Iterate it once; close() it in every case: it ends and reaps
    the workers, which are otherwise left to end when their pipe closes.

    Worker k reads batches k, k + n, k + 2n ... and writes each result to its own pipe, in order: no task
    queue and no threads here, whose turns at the GIL starved the workers. A worker that dies (killed,
    out of memory) costs time, not counts: what it had not sent is read in this process instead, and a
    warning says so.
    """

    def __init__(self, items: list[tuple[str, int]], warnings: list[str]) -> None:
        self.items = items
        self.warnings = warnings
        procs = workers_for(sum(size for _, size in items), len(items))
        self.batches = _batches(items, procs)
        procs = min(procs, len(self.batches))
        # imported before the fork: a child of a threaded process (`ao watch`) should not need the import lock
        from supervisor.observe import scan_shapes  # noqa: F401
        self.workers: list[list[Any]] = []   # [pid, read end, reaped]
        if procs > 1 and hasattr(os, "fork"):
            self.workers = _start(self.batches, procs)

    def __iter__(self) -> Iterator[tuple[str, FileRead]]:
        from supervisor.observe import scan_shapes as shapes
        workers = self.workers
        if not workers:
            for path, _ in self.items:
                yield path, read_fresh(path)
            return
        procs = len(workers)
        dead: str | None = None
        for n, batch in enumerate(self.batches):
            reads = None if dead else _receive(workers[n % procs][1])
            if reads is None:
                if dead is None:
                    dead = _reap(workers, n % procs)
                    left = sum(len(b) for b in self.batches[n:])
                    self.warnings.append(f"a usage scan worker died ({dead}); {left} rollouts were read in the "
                                         "main process instead")
                for path in batch:
                    yield path, read_fresh(path)
                continue
            for read in shapes.decode_reads(reads):
                yield read.path, read

    def close(self) -> None:
        _end(self.workers)


def _start(batches: list[list[str]], procs: int) -> list[list[Any]]:
    """Fork the workers; none (and nothing left running) when the system refuses a process or a pipe."""
    workers: list[list[Any]] = []
    try:
        for k in range(procs):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the caller's code
                os.close(read_fd)
                _worker(batches[k::procs], write_fd)
            os.close(write_fd)
            _widen(read_fd)
            workers.append([pid, os.fdopen(read_fd, "rb"), False])
    except OSError:
        _end(workers)
        return []
    return workers


def _end(workers: list[list[Any]]) -> None:
    """Close the pipes; end and reap the workers this process started and has not reaped yet."""
    for worker in workers:
        pid, pipe, reaped = worker
        pipe.close()
        if reaped:
            continue  # its pid may belong to another process by now
        try:  # unreaped, the pid is still this child's (at worst a zombie): safe to signal
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        worker[2] = True


def _worker(batches: list[list[str]], fd: int) -> None:
    """A forked worker's whole life: each batch's results, length first, then exit without cleanup."""
    code = 1
    try:
        import gc
        gc.disable()  # short-lived acyclic objects only: collections were a tenth of its time
        from supervisor.observe import scan_shapes as shapes
        with os.fdopen(fd, "wb") as out:
            for batch in batches:
                blob = shapes.encode_reads([read_fresh(path) for path in batch])
                out.write(len(blob).to_bytes(8, "little"))
                out.write(blob)
        code = 0
    finally:
        os._exit(code)


def _receive(pipe: Any) -> bytes | None:
    """One result from a worker's pipe; None when it ended first (died)."""
    head = pipe.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "little")
    blob = pipe.read(size)
    return blob if len(blob) == size else None


def _reap(workers: list[list[Any]], k: int) -> str:
    """Why worker k ended (its pipe closed early): its signal or exit status."""
    pid = workers[k][0]
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "it exited"
    finally:
        workers[k][2] = True
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _widen(fd: int) -> None:
    """Room for a few results in the pipe, so a worker rarely waits for this process to read."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass
