"""Fold parsed rollout lines into per-response token usage. Pure: no files, no clock.

Per response the exact source is `token_usage_record` (keyed by `response_id`, counted once across
all files by the caller). A file without any such record falls back to `event_msg/token_count`:
the advance of `info.total_token_usage` over the previous event of the same file.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from supervisor.observe import codex_format as cf
from supervisor.observe import pricing

TOKEN_KEYS = ("input", "cached_input", "output", "reasoning")
USAGE_MARKERS = cf.USAGE_MARKERS  # old name of the byte pre-filter, kept for callers of `RolloutTail.records`
UNKNOWN_MODEL = ""
_RECORD, _EVENT = cf.Line.TOKEN_USAGE_RECORD, cf.Line.EVENT_MSG
_CONTEXT, _META = cf.Line.TURN_CONTEXT, cf.Line.SESSION_META

Totals = tuple[int, int, int, int]   # input, cached_input, output, reasoning
# (parent thread id, byte offset where the fork branched off or None) -> the parent's running total there
ParentTotals = Callable[[str, "int | None"], "Totals | None"]


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


class FileFold:
    """The usage state of one rollout file. `state()` is small and JSON-able, to persist between reads."""

    def __init__(self, state: Mapping[str, Any] | None = None, parent_totals: ParentTotals | None = None) -> None:
        s = dict(state or {})
        self.thread_id: str | None = s.get("thread_id")
        self.cwd: str | None = s.get("cwd")
        self.forked_from: str | None = s.get("forked_from")
        self.fork_offset: int | None = s.get("fork_offset")
        self.model: str = s.get("model") or UNKNOWN_MODEL
        self.has_records: bool = bool(s.get("has_records"))
        last = s.get("last_total")
        self.last_total: Totals | None = tuple(last) if last else None
        self.parent_totals = parent_totals
        self.warnings: list[str] = []
        self.where = s.get("where") or "rollout"

    def state(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "cwd": self.cwd, "forked_from": self.forked_from,
                "fork_offset": self.fork_offset, "model": self.model, "has_records": self.has_records,
                "last_total": list(self.last_total) if self.last_total else None}

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
                return self._token_count(counted, line.get(cf.TIMESTAMP))
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
        if self.thread_id is None and meta.thread_id is not None:
            self.thread_id = meta.thread_id
        if self.cwd is None and meta.cwd is not None:
            self.cwd = meta.cwd
        if meta.forked_from and self.forked_from is None:
            self.forked_from = meta.forked_from
            if meta.fork_offset is not None:
                self.fork_offset = meta.fork_offset

    def _baseline(self, counted: cf.TokenCount) -> Totals:
        """Where the running total of this file starts: 0, or the parent's total for a fork."""
        if not self.forked_from:
            return (0, 0, 0, 0)
        found = self.parent_totals(self.forked_from, self.fork_offset) if self.parent_totals else None
        if found is not None:
            return found
        # parent rollout not found: assume this first event reports exactly one own response
        last = counted.last or (0, 0, 0, 0)
        self.warnings.append(f"{self.where}: fork of {self.forked_from}, whose rollout was not found; "
                             "its starting total is taken from the first token_count")
        return tuple(max(c - seen, 0) for c, seen in zip(counted.total, last))  # type: ignore[return-value]

    def _token_count(self, counted: cf.TokenCount, timestamp: Any) -> ResponseUsage | None:
        current = counted.total
        if self.has_records:
            self.last_total = current
            return None
        previous = self.last_total
        if previous is None:
            previous = self._baseline(counted)
        # a re-emitted (or replayed) event does not advance the running total: nothing new to count
        if current[0] + current[2] <= previous[0] + previous[2]:
            self.last_total = previous
            return None
        self.last_total = current
        delta = [max(c - p, 0) for c, p in zip(current, previous)]
        return ResponseUsage(None, self.model, bucket_of(timestamp), *delta)


def fold_lines(lines: Iterable[Any], parent_totals: ParentTotals | None = None) -> tuple[list[ResponseUsage], FileFold]:
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
