"""Fold parsed rollout lines into per-response token usage. Pure: no files, no clock.

Per response the exact source is `token_usage_record` (keyed by `response_id`, counted once across
all files by the caller). A file without any such record falls back to `event_msg/token_count`:
the advance of `info.total_token_usage` over the previous event of the same file.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from supervisor.observe import codex_format as cf
from supervisor.observe import pricing

TOKEN_KEYS = ("input", "cached_input", "output", "reasoning")
USAGE_MARKERS = cf.USAGE_MARKERS  # old name of the byte pre-filter, kept for callers of `RolloutTail.records`
UNKNOWN_MODEL = ""
_RECORD, _EVENT = cf.Line.TOKEN_USAGE_RECORD, cf.Line.EVENT_MSG
_CONTEXT, _META = cf.Line.TURN_CONTEXT, cf.Line.SESSION_META

Totals = tuple[int, int, int, int]   # input, cached_input, output, reasoning
History = list[tuple[Totals, str]]   # a rollout's token_count totals in file order, with their timestamps
ZERO: Totals = (0, 0, 0, 0)
# Copied history is written in one burst when the fork's file is created (within a millisecond;
# Desktop rewrites the stamps to the creation second); a response of the fork's own cannot come back
# that fast, since it needs a user message and a model round trip first.
COPY_WINDOW = dt.timedelta(seconds=1)
# With no forked_from_id the only sign of a copy is its stamp: within BURST of the creation, or the
# creation second itself (Desktop rewrites copied stamps to it).
BURST = dt.timedelta(milliseconds=5)


class Parents(Protocol):
    """What a fold asks of the other rollouts (the index answers; tests may pass their own)."""

    def history(self, thread_id: str, end_offset: int | None) -> History | None:
        """The parent's token_count totals up to the fork point (`end_offset`, else all); None if not found."""

    def copied_from(self, total: Totals, where: str) -> tuple[str, History] | None:
        """An older rollout whose first token_count total is `total` (a file that may copy its history)."""


@dataclass(frozen=True)
class ResponseUsage:
    response_id: str | None     # None when derived from token_count deltas
    model: str                  # UNKNOWN_MODEL when no turn_context/thread settings named one
    bucket: str                 # UTC quarter hour "YYYY-MM-DDTHH:MM", "" when the line had no time
    input: int
    cached_input: int
    output: int
    reasoning: int


_BUCKETS: dict[str, str] = {}


def bucket_of(timestamp: Any) -> str:
    """The UTC quarter hour of an RFC 3339 time; quarter hours keep every real timezone exact."""
    if not isinstance(timestamp, str) or len(timestamp) < 16:
        return ""
    if timestamp.endswith("Z"):
        found = _BUCKETS.get(timestamp[:16])
        if found is not None:
            return found
        if len(_BUCKETS) > 100_000:
            _BUCKETS.clear()
        found = _BUCKETS[timestamp[:16]] = _bucket(timestamp)
        return found
    return _bucket(timestamp)


def _bucket(timestamp: str) -> str:
    if timestamp.endswith("Z") and timestamp[10] == "T":
        minute = timestamp[14:16]
        if minute.isdigit():
            return f"{timestamp[:14]}{int(minute) // 15 * 15:02d}"
    try:
        when = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    when = when.astimezone(dt.timezone.utc)
    return f"{when:%Y-%m-%dT%H}:{when.minute // 15 * 15:02d}"


def local_date(bucket: str, tz: dt.tzinfo | None) -> str:
    """YYYY-MM-DD of a bucket in `tz` (None: the machine's local time); "unknown" for lines without a time."""
    if not bucket:
        return "unknown"
    when = dt.datetime.fromisoformat(bucket + ":00+00:00")
    return (when.astimezone(tz) if tz else when.astimezone()).strftime("%Y-%m-%d")


def _io(t: Totals) -> int:
    return t[0] + t[2]


def _when(timestamp: Any) -> dt.datetime | None:
    if not isinstance(timestamp, str):
        return None
    try:
        when = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


class FileFold:
    """The usage state of one rollout file. `state()` is small and JSON-able, to persist between reads.

    A fork's own usage is what it consumed after the fork point and nothing before. Until the file's
    first own response (`in_prefix`), token_counts that are the parent's are only taken as the running
    total to continue from: lines before `subagent_history_start_ordinal`, totals found in the parent's
    rollout before the fork, or (with no `forked_from_id`) a burst at creation that repeats another
    file's totals. The first own total then continues from the fork point, or from 0 for subagents
    whose counter starts again. Where that cannot be told, a warning names the file.
    """

    def __init__(self, state: Mapping[str, Any] | None = None, parent_totals: Parents | None = None) -> None:
        s = dict(state or {})
        self.thread_id: str | None = s.get("thread_id")
        self.cwd: str | None = s.get("cwd")
        self.forked_from: str | None = s.get("forked_from")
        self.fork_offset: int | None = s.get("fork_offset")
        self.start_ordinal: int | None = s.get("start_ordinal")
        self.created: str | None = s.get("created")
        self.meta_seen: bool = bool(s.get("meta_seen", self.thread_id is not None))
        self.in_prefix: bool = bool(s.get("in_prefix", True))
        self.copied: int = int(s.get("copied") or 0)
        self.copied_from: str | None = s.get("copied_from")
        self.embedded: bool = bool(s.get("embedded"))  # another thread's session_meta was copied in
        self.model: str = s.get("model") or UNKNOWN_MODEL
        self.has_records: bool = bool(s.get("has_records"))
        last = s.get("last_total")
        self.last_total: Totals | None = tuple(last) if last else None
        first = s.get("first_total")
        self.first_total: Totals | None = tuple(first) if first else None
        self.parents = parent_totals
        self.warnings: list[str] = []
        self.where = s.get("where") or "rollout"
        self._history: History | None = None   # the parent's, before the fork: asked once per read
        self._history_asked = False

    def state(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "cwd": self.cwd, "forked_from": self.forked_from,
                "fork_offset": self.fork_offset, "start_ordinal": self.start_ordinal, "created": self.created,
                "meta_seen": self.meta_seen, "in_prefix": self.in_prefix, "copied": self.copied,
                "copied_from": self.copied_from, "embedded": self.embedded, "model": self.model,
                "has_records": self.has_records,
                "last_total": list(self.last_total) if self.last_total else None,
                "first_total": list(self.first_total) if self.first_total else None}

    def feed(self, line: Any) -> ResponseUsage | None:
        """One parsed line in; the usage of one model response out, when the line carries one."""
        if type(line) is not dict:
            return None
        kind = line.get(cf.TYPE)
        if kind == _RECORD:
            record = cf.usage_record(line)
            if record is None:
                return None
            self.has_records = True
            return ResponseUsage(record.response_id, self.model, bucket_of(line.get(cf.TIMESTAMP)), *record.usage)
        if kind == _EVENT:
            counted = cf.token_count(line)
            if counted is not None:
                return self._token_count(counted, line)
        elif kind == _META:
            meta = cf.session_meta(line)
            if meta is not None:
                self._session_meta(meta)
            return None
        elif kind != _CONTEXT:
            return None
        model = cf.model_of(line)  # turn_context, or event_msg/thread_settings_applied
        if model:
            self.model = model
        return None

    def _session_meta(self, meta: cf.SessionMeta) -> None:
        # only the file's first session_meta is its own: forks copy the parent's in after it
        if self.meta_seen:
            if self.in_prefix and meta.thread_id and meta.thread_id != self.thread_id:
                self.embedded = True  # the parent's own meta, copied in with its history
                self.forked_from = self.forked_from or meta.thread_id
            return
        self.meta_seen = True
        self.thread_id = self.thread_id or meta.thread_id
        self.cwd = self.cwd or meta.cwd
        self.created = meta.timestamp
        self.start_ordinal = meta.history_start_ordinal
        if meta.forked_from and meta.forked_from != meta.thread_id:
            self.forked_from = meta.forked_from
            self.fork_offset = meta.fork_offset

    # --- the fork point ---------------------------------------------------------------------------
    def _parent_history(self) -> History | None:
        """The parent's totals before the fork: up to the byte offset, else those stamped by the creation."""
        if not self._history_asked:
            self._history_asked = True
            found = self.parents.history(self.forked_from, self.fork_offset) \
                if self.parents is not None and self.forked_from else None
            created = _when(self.created)
            if found is not None and created is not None and self.fork_offset is None:
                limit = created + COPY_WINDOW
                found = [(t, ts) for t, ts in found if (w := _when(ts)) is None or w <= limit]
            self._history = found
        return self._history

    def _is_copy(self, counted: cf.TokenCount, line: dict[str, Any]) -> bool:
        """Whether a token_count before the file's first own response is the parent's usage."""
        ordinal = cf.ordinal_of(line)
        if self.start_ordinal is not None and ordinal is not None:
            return ordinal < self.start_ordinal
        total = counted.total
        if self.forked_from:
            history = self._parent_history()
            if history is not None:
                return any(t == total for t, _ in history)
            # with the parent gone, only its copied-in session_meta and the creation stamp tell a copy
            if not (self.embedded and self._burst(line)):
                return False
            if not self.copied:
                self.warnings.append(f"{self.where}: fork of {self.forked_from}, whose rollout was not found; "
                                     "the token_counts stamped at its creation are taken as copied history")
            return True
        if self.copied_from is not None:
            source = self.parents.copied_from(self.first_total, self.where) if self.parents and self.first_total \
                else None
            return source is not None and any(t == total for t, _ in source[1])
        if self.last_total is not None or self.parents is None:
            return False
        # no forked_from_id: a burst at creation repeating an older file's first totals is a copy of it
        if not self._burst(line):
            return False
        created = _when(self.created)
        source = self.parents.copied_from(total, self.where)
        if source is None:
            return False
        first_stamp = _when(source[1][0][1]) if source[1] else None
        if first_stamp is None or created is None or first_stamp >= created:
            return False  # the other file's usage came after this one began: a twin, not a copy
        self.copied_from = source[0]
        return True

    def _burst(self, line: dict[str, Any]) -> bool:
        """Whether a line is stamped as copied history is: at the file's creation (see BURST)."""
        created, stamp = _when(self.created), _when(line.get(cf.TIMESTAMP))
        if created is None or stamp is None:
            return False
        return abs(stamp - created) <= BURST or (stamp.microsecond == 0 and stamp == created.replace(microsecond=0))

    def _baseline(self, counted: cf.TokenCount) -> Totals:
        """Where the first own response's running total starts: the fork point, or 0."""
        current, last = counted.total, counted.last
        if last is not None and current == last:
            return ZERO  # the counter holds this one response only: it (re)started from 0
        if self.last_total is not None:
            # after copied history: continue from it, unless the counter started again (subagents)
            return ZERO if _io(current) <= _io(self.last_total) else self.last_total
        if not self.forked_from:
            return ZERO
        history = self._parent_history()
        if history is None:
            self.warnings.append(f"{self.where}: fork of {self.forked_from}, whose rollout was not found; "
                                 "its starting total is taken from the first token_count's last response")
            if last is None:
                return ZERO
            return tuple(max(c - seen, 0) for c, seen in zip(current, last))  # type: ignore[return-value]
        if self.fork_offset is not None:
            base = history[-1][0] if history else ZERO
        elif last is not None and any(t == (fork := tuple(c - s for c, s in zip(current, last)))
                                       for t, _ in history):
            base = fork  # type: ignore[assignment]
        elif history and _when(self.created) is not None:
            base = history[-1][0]  # the parent's total at the fork's creation
        else:
            base = history[-1][0] if history else ZERO
            self.warnings.append(f"{self.where}: fork of {self.forked_from} with no fork point (no history_base, "
                                 "creation time or matching total); counted from the parent's last total")
        return ZERO if _io(current) < _io(base) else base

    def _token_count(self, counted: cf.TokenCount, line: dict[str, Any]) -> ResponseUsage | None:
        current = counted.total
        if self.first_total is None:
            self.first_total = current
        if self.has_records:
            self.last_total = current
            return None
        if self.in_prefix:
            if self._is_copy(counted, line):
                self.copied += 1
                self.last_total = current
                return None
            previous = self._baseline(counted)
            self.in_prefix = False
        else:
            previous = self.last_total or ZERO
        # a re-emitted (or replayed) event does not advance the running total: nothing new to count
        if _io(current) <= _io(previous):
            self.last_total = previous
            return None
        self.last_total = current
        delta = [max(c - p, 0) for c, p in zip(current, previous)]
        return ResponseUsage(None, counted.model or self.model, bucket_of(line.get(cf.TIMESTAMP)), *delta)


def fold_lines(lines: Iterable[Any], parent_totals: Parents | None = None) -> tuple[list[ResponseUsage], FileFold]:
    """Fold one whole file's parsed lines (tests and small callers)."""
    fold = FileFold(parent_totals=parent_totals)
    out = [u for u in (fold.feed(line) for line in lines) if u is not None]
    return out, fold


def dedupe(usages: Iterable[ResponseUsage], seen: set[str]) -> list[ResponseUsage]:
    """Drop responses whose id was already counted (forks and resumes can repeat history)."""
    out = []
    for u in usages:
        if u.response_id is not None:
            if u.response_id in seen:
                continue
            seen.add(u.response_id)
        out.append(u)
    return out


def empty_tokens() -> dict[str, int]:
    return {"input": 0, "cached_input": 0, "output": 0, "reasoning": 0, "total": 0}


def add_tokens(into: dict[str, int], tokens: Mapping[str, int]) -> None:
    for key in TOKEN_KEYS:
        into[key] += int(tokens[key])
    into["total"] = into["input"] + into["output"]


def price_models(by_model: Mapping[str, Mapping[str, int]], table: Mapping[str, pricing.Price]
                 ) -> tuple[dict[str, int], Decimal, list[str]]:
    """Tokens summed over models, their exact cost, and the models with no known price."""
    tokens, cost, unpriced = empty_tokens(), Decimal(0), []
    for model, t in by_model.items():
        add_tokens(tokens, t)
        price = pricing.lookup(table, model or None)
        if price is None:
            unpriced.append(model or "unknown")
        cost += pricing.cost(price, int(t["input"]), int(t["cached_input"]), int(t["output"]))
    return tokens, cost, sorted(unpriced)
