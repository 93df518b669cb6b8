"""Tail a rollout file: complete new lines only, restart on truncation or replacement, bounded memory.

A `RolloutTail` keeps a byte offset. Each read returns only whole lines added since the last read;
a partial last line is left on disk until its newline arrives. Memory stays bounded by the chunk
size plus the longest line (lines above `max_line` are skipped with a warning). Only regular files
are read (`codex_format.open_regular`): a FIFO or a device raises `NotRegularFile`, an OSError.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from supervisor.observe.codex_format import COMPRESSED_SUFFIX, NotRegularFile, is_regular, open_regular

CHUNK = 8 << 20
MAX_LINE = 64 << 20
HEAD = 64  # bytes of the file start kept to notice a file replaced in place by a longer one


@dataclass
class Batch:
    lines: list[tuple[int, Any]]          # (1-based line number, parsed JSON value)
    reset: bool = False                   # the file shrank or was replaced: totals must be rebuilt
    warnings: list[str] = field(default_factory=list)


def _open_zst(path: str, warnings: list[str]) -> BinaryIO | None:
    try:
        import zstandard  # optional dependency
    except ImportError:
        warnings.append(f"{path}: skipped, compressed rollouts need the `zstandard` module "
                        "(pip install zstandard)")
        return None
    raw = open_regular(path)
    return zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20, closefd=True)


class RolloutTail:
    """Incremental reader of one JSONL rollout; the index stores its position fields and passes them back."""

    def __init__(self, path: str | os.PathLike[str], offset: int = 0, line_no: int = 0,
                 inode: int | None = None, dev: int | None = None, size: int = 0, head: bytes = b"",
                 max_line: int = MAX_LINE, chunk_size: int = CHUNK) -> None:
        self.path = os.fspath(path)
        self.offset, self.line_no, self.inode, self.dev, self.size, self.head = offset, line_no, inode, dev, size, head
        self.max_line, self.chunk_size = max_line, chunk_size
        self.compressed = self.path.endswith(COMPRESSED_SUFFIX)
        self.warnings: list[str] = []
        self.pending = 0  # bytes of an incomplete last line left for the next read
        self.read_stat: os.stat_result | None = None  # fstat of the file actually read
        self.torn = False  # the path was replaced between sync() and the read: nothing was read
        self._fast: Callable[[bytes, int], Iterable[tuple[int, int]]] = lambda chunk, end: ()
        self._where: tuple[bytes, int, int] = (b"", 0, 0)

    def _reset(self) -> None:
        self.offset, self.line_no, self.head = 0, 0, b""

    def sync(self, st: os.stat_result | None = None) -> bool:
        """Stat the file; return True (and rewind to 0) when it shrank or was replaced.

        Raises NotRegularFile for a FIFO, device, socket or directory, before anything opens it.
        """
        if st is None:
            st = os.stat(self.path)
        if not is_regular(st):
            raise NotRegularFile(self.path, st.st_mode)
        replaced = self.inode is not None and (st.st_ino != self.inode or st.st_dev != self.dev)
        shrank = st.st_size < (self.size if self.compressed else self.offset)
        if not replaced and not shrank and self.offset and self.head and not self.compressed:
            with open_regular(self.path) as fh:
                replaced = fh.read(len(self.head)) != self.head
        # a compressed file cannot be appended to in place: any change means read it again
        changed_zst = self.compressed and self.offset and st.st_size != self.size
        self.inode, self.dev = st.st_ino, st.st_dev
        self.size = st.st_size
        if replaced or shrank or changed_zst:
            self._reset()
            return True
        return False

    def read_new(self, markers: tuple[bytes, ...] | None = None) -> Batch:
        """Everything complete since the last read, parsed. See `records` for `markers`."""
        reset = self.sync()
        start = len(self.warnings)
        lines = list(self.records(markers))
        return Batch(lines, reset, self.warnings[start:])

    def records(self, markers: tuple[bytes, ...] | None = None) -> Iterator[tuple[int, Any]]:
        """Parse and yield (line number, value) for new complete lines.

        With `markers`, only lines containing one of those byte strings are parsed (the rest are
        skipped unread, so garbage in them goes unnoticed); call `sync()` first.
        """
        for line_no, raw in self.raw_lines(markers):
            try:
                yield line_no, orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                self.warnings.append(f"{self.path}:{line_no}: skipped a corrupt line ({exc.msg})")

    def raw_lines(self, markers: tuple[bytes, ...] | None = None) -> Iterator[tuple[int, bytes]]:
        if self.compressed:
            fh = _open_zst(self.path, self.warnings)
            if fh is None:
                return
            if self.offset:  # a stream cannot seek: decompress and drop what was read before
                left = self.offset
                while left:
                    got = fh.read(min(left, self.chunk_size))
                    if not got:
                        break
                    left -= len(got)
        else:
            fh = open_regular(self.path)
            st = os.fstat(fh.fileno())
            if self.inode is not None and (st.st_ino, st.st_dev) != (self.inode, self.dev):
                fh.close()  # replaced since sync(): our offset belongs to another file
                self.torn = True
                return
            self.read_stat = st
            if self.offset:
                fh.seek(self.offset)
        with fh:
            yield from self._scan(fh, markers)

    def _scan(self, fh: BinaryIO, markers: tuple[bytes, ...] | None) -> Iterator[tuple[int, bytes]]:
        # self.offset always points at the first byte not yet consumed: the start of `pieces`
        pieces: list[bytes] = []   # an incomplete line, gathered until its newline arrives
        carried = 0
        skipping = False           # inside a line above max_line: drop bytes up to its newline
        at_end = False
        while not at_end:
            # ask for what the stat promised (plus one byte, to see growth) rather than a whole chunk:
            # an 8 MiB buffer allocated for every 100 KB rollout costs more than reading it
            want = min(self.chunk_size, max(self.size - self.offset - carried + 1, MIN_READ))
            chunk = fh.read(want)
            if not chunk:
                break
            # a buffered read returns less than asked only at the end of the file (a zstd stream may
            # return less anywhere): one read call less per rollout
            at_end = len(chunk) < want and not self.compressed
            if not self.head and self.offset == 0 and not self.compressed:
                self.head = chunk[:HEAD]
            if skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    self.offset += len(chunk)
                    continue
                self.offset += nl + 1
                self.line_no += 1
                skipping, chunk = False, chunk[nl + 1:]
            elif pieces:
                nl = chunk.find(b"\n")
                if nl < 0 or carried + nl > self.max_line:
                    if nl < 0:
                        pieces.append(chunk)
                        carried += len(chunk)
                        if carried <= self.max_line:
                            continue
                    self._too_long()
                    if nl < 0:
                        self.offset += carried
                        pieces, carried, skipping = [], 0, True
                        continue
                    self.offset += carried + nl + 1
                    self.line_no += 1
                    pieces, carried, chunk = [], 0, chunk[nl + 1:]
                else:
                    pieces.append(chunk)
                    chunk = b"".join(pieces)
                    pieces, carried = [], 0
            last_nl = chunk.rfind(b"\n")
            if last_nl >= 0:
                base = self.offset
                if markers is _CHUNKS:
                    yield last_nl, chunk  # self.line_no is still the line count before this chunk
                elif markers is _FAST:
                    line_base = self.line_no
                    for start, end in self._fast(chunk, last_nl):
                        self._where = (chunk, start, line_base)
                        yield 0, chunk[start:end]
                else:
                    yield from self._lines(chunk, last_nl, base, markers)
                self.line_no += _count_newlines(chunk, last_nl + 1)
                self.offset = base + last_nl + 1
            rest = chunk[last_nl + 1:]
            if rest:
                pieces, carried = [rest], len(rest)
                if carried > self.max_line:
                    self._too_long()
                    self.offset += carried
                    pieces, carried, skipping = [], 0, True
        self.pending = carried

    def _too_long(self) -> None:
        self.warnings.append(f"{self.path}:{self.line_no + 1}: skipped a line longer than {self.max_line >> 20} MiB")

    def _lines(self, chunk: bytes, last_nl: int, base: int, markers: tuple[bytes, ...] | None
               ) -> Iterator[tuple[int, bytes]]:
        """Complete lines of `chunk` (up to last_nl), optionally only those holding a marker."""
        if markers is None:
            lines = chunk[:last_nl].split(b"\n")
            for n, line in enumerate(lines, self.line_no + 1):
                if line.strip():
                    yield n, line
            return
        counted, counted_at = self.line_no, 0
        for start, end in self._marked(chunk, last_nl, markers):
            counted += chunk.count(b"\n", counted_at, start)
            counted_at = start
            yield counted + 1, chunk[start:end]

    def _marked(self, chunk: bytes, last_nl: int, markers: tuple[bytes, ...]) -> list[tuple[int, int]]:
        spans: dict[int, int] = {}
        for marker in markers:
            pos = chunk.find(marker, 0, last_nl)
            while pos >= 0:
                start = chunk.rfind(b"\n", 0, pos) + 1
                end = chunk.find(b"\n", pos)
                spans[start] = end
                pos = chunk.find(marker, end, last_nl)
        return sorted(spans.items())

    def fast_lines(self, spans: Callable[[bytes, int], Iterable[tuple[int, int]]]) -> Iterator[bytes]:
        """Raw lines chosen by `spans(chunk, last_newline)` -> sorted (start, end) of whole lines.

        The selector sees each chunk of complete lines once, so it can narrow what it looks for as
        it learns about the file. No line numbers are counted; `line_number()` gives one on demand.
        """
        self._fast = spans
        for _, raw in self.raw_lines(_FAST):
            yield raw

    def line_number(self) -> int:
        """The line number of the line `fast_lines` yielded last."""
        chunk, start, base = self._where
        return base + chunk.count(b"\n", 0, start) + 1

    def chunks(self) -> Iterator[tuple[int, bytes]]:
        """(last_newline, chunk) for each run of new complete lines; call `sync()` first.

        The caller reads `chunk[:last_newline + 1]` itself (see observe/scan.py); while it holds a chunk,
        `line_no` is the number of lines before it. Offsets, line counts, over-long lines, the head and
        the pending tail are kept exactly as `records` keeps them.
        """
        yield from self.raw_lines(_CHUNKS)


_FAST: tuple[bytes, ...] = (b"\0fast-lines",)  # a sentinel: lines are chosen by RolloutTail._fast
_CHUNKS: tuple[bytes, ...] = (b"\0chunks",)     # a sentinel: whole chunks go to the caller
MIN_READ = 1 << 16


def _count_newlines(chunk: bytes, end: int) -> int:
    try:
        import stringzilla  # SIMD: five times bytes.count, which was 8% of a cold scan
    except ImportError:  # pragma: no cover - a core dependency; kept exact without it
        return chunk.count(b"\n", 0, end)
    return int(stringzilla.count(chunk, "\n", 0, end))


def read_lines(path: str | os.PathLike[str], warnings: list[str] | None = None) -> Iterator[tuple[int, Any]]:
    """Every complete, parseable line of a whole rollout; corrupt ones become warnings."""
    tail = RolloutTail(path)
    try:
        tail.sync()
    except OSError as exc:
        if warnings is not None:
            warnings.append(f"{os.fspath(path)}: cannot read ({exc.strerror})")
        return
    yield from tail.records()
    if warnings is not None:
        warnings.extend(tail.warnings)
