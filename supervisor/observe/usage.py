"""Fold parsed rollout lines into per-response token usage. Pure: no files, no clock.

Per response the exact source is `token_usage_record` (keyed by `response_id`, counted once across
all files by the caller). A file without any such record falls back to `event_msg/token_count`:
the advance of `info.total_token_usage` over the previous event of the same file.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

from supervisor.observe import pricing

TOKEN_KEYS = ("input", "cached_input", "output", "reasoning")
# The byte strings that mark the only lines usage needs; everything else is skipped unparsed.
RECORD_MARKER, TOKEN_COUNT_MARKER = b'"type":"token_usage_record"', b'"type":"token_count"'
USAGE_MARKERS = (RECORD_MARKER, TOKEN_COUNT_MARKER, b'"type":"turn_context"', b'"type":"session_meta"',
                 b'"type":"thread_settings_applied"')
# once a file has shown a token_usage_record its token_count lines are never needed again
RECORDS_ERA_MARKERS = tuple(m for m in USAGE_MARKERS if m != TOKEN_COUNT_MARKER)
UNKNOWN_MODEL = ""
_T = b'"type":"t'
_WANTED_T = (b'"type":"token_usage_record"', b'"type":"token_count"', b'"type":"turn_context"',
             b'"type":"thread_settings_applied"')
_META = b'"type":"session_meta"'

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


def usage_spans(chunk: bytes, last_nl: int, has_records: bool) -> list[tuple[int, int]]:
    """(start, end) of the lines usage needs, in order: two passes over the chunk instead of one a type.

    Once a file has a valid token_usage_record its token_count lines are not needed, so later chunks
    leave them out (the caller skips them within the chunk where the first record is parsed).
    """
    spans: dict[int, int] = {}
    # Only a record already parsed proves the file has them: a line merely naming the type may be
    # truncated, and skipping token_count lines on its word would silently drop usage.
    first_record = 0 if has_records else last_nl
    find, rfind = chunk.find, chunk.rfind
    pos = find(_T, 0, last_nl)
    while pos >= 0:
        end = find(b"\n", pos)
        if chunk.startswith(_WANTED_T, pos) and (pos < first_record or not chunk.startswith(TOKEN_COUNT_MARKER, pos)):
            spans[rfind(b"\n", 0, pos) + 1] = end
            pos = find(_T, end, last_nl)   # the rest of this line cannot add anything
        else:
            pos = find(_T, pos + 9, last_nl)
    pos = find(_META, 0, last_nl)
    while pos >= 0:
        end = find(b"\n", pos)
        spans[rfind(b"\n", 0, pos) + 1] = end
        pos = find(_META, end, last_nl)
    return sorted(spans.items())


def _totals(raw: Any) -> Totals | None:
    """The four counts of a usage object; anything that is not a positive int counts as 0."""
    if type(raw) is not dict:
        return None
    i, c, o, r = (raw.get("input_tokens"), raw.get("cached_input_tokens"), raw.get("output_tokens"),
                  raw.get("reasoning_output_tokens"))
    return (i if type(i) is int and i > 0 else 0, c if type(c) is int and c > 0 else 0,
            o if type(o) is int and o > 0 else 0, r if type(r) is int and r > 0 else 0)


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
        self.last_total: Totals | None = tuple(last) if last else None  # type: ignore[assignment]
        self.parent_totals = parent_totals
        self.warnings: list[str] = []
        self.where = s.get("where") or "rollout"

    def state(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "cwd": self.cwd, "forked_from": self.forked_from,
                "fork_offset": self.fork_offset, "model": self.model, "has_records": self.has_records,
                "last_total": list(self.last_total) if self.last_total else None}

    def feed(self, line: Any) -> ResponseUsage | None:
        """One parsed line in; the usage of one model response out, when the line carries one."""
        if not isinstance(line, dict):
            return None
        payload = line.get("payload")
        if not isinstance(payload, dict):
            return None
        kind = line.get("type")
        if kind == "token_usage_record":
            usage = _totals(payload.get("usage"))
            if usage is None:
                return None
            self.has_records = True
            rid = payload.get("response_id")
            return ResponseUsage(rid if isinstance(rid, str) and rid else None, self.model,
                                 bucket_of(line.get("timestamp")), *usage)
        if kind == "event_msg":
            sub = payload.get("type")
            if sub == "token_count":
                return self._token_count(payload, line.get("timestamp"))
            if sub == "thread_settings_applied":
                settings = payload.get("thread_settings")
                if isinstance(settings, dict) and isinstance(settings.get("model"), str) and settings["model"]:
                    self.model = settings["model"]
            return None
        if kind == "turn_context":
            if isinstance(payload.get("model"), str) and payload["model"]:
                self.model = payload["model"]
        elif kind == "session_meta":
            self._session_meta(payload)
        return None

    def _session_meta(self, payload: dict[str, Any]) -> None:
        if self.thread_id is None and isinstance(payload.get("id"), str):
            self.thread_id = payload["id"]
        if self.cwd is None and isinstance(payload.get("cwd"), str):
            self.cwd = payload["cwd"]
        parent = payload.get("forked_from_id")
        if isinstance(parent, str) and parent and self.forked_from is None:
            self.forked_from = parent
            base = payload.get("history_base")
            if isinstance(base, dict) and isinstance(base.get("end_byte_offset"), int):
                self.fork_offset = base["end_byte_offset"]

    def _baseline(self, info: dict[str, Any], current: Totals) -> Totals:
        """Where the running total of this file starts: 0, or the parent's total for a fork."""
        if not self.forked_from:
            return (0, 0, 0, 0)
        found = self.parent_totals(self.forked_from, self.fork_offset) if self.parent_totals else None
        if found is not None:
            return found
        # parent rollout not found: assume this first event reports exactly one own response
        last = _totals(info.get("last_token_usage")) or (0, 0, 0, 0)
        self.warnings.append(f"{self.where}: fork of {self.forked_from}, whose rollout was not found; "
                             "its starting total is taken from the first token_count")
        return tuple(max(c - l, 0) for c, l in zip(current, last))  # type: ignore[return-value]

    def _token_count(self, payload: dict[str, Any], timestamp: Any) -> ResponseUsage | None:
        info = payload.get("info")
        if not isinstance(info, dict):
            return None  # rate-limit-only event
        current = _totals(info.get("total_token_usage"))
        if current is None:
            return None
        if self.has_records:
            self.last_total = current
            return None
        previous = self.last_total
        if previous is None:
            previous = self._baseline(info, current)
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
