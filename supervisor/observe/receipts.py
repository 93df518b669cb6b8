"""One receipt per tool call in a rollout: the call paired with its output by call_id, secrets redacted."""
from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from supervisor.observe import codex_format as cf
from supervisor.observe import rollout
from supervisor.redact import redact, redact_text

EXIT_LINE = re.compile(r"(?:Process exited with code|Exit code:?)\s*(-?\d+)")
EXCERPT = 400


@dataclass
class Receipt:
    call_id: str
    tool: str
    arguments: Any              # parsed JSON when the call carried JSON, else the raw text; redacted
    turn_id: str | None
    started_at: str | None      # the call line's timestamp
    ended_at: str | None        # the output line's timestamp (None while the call is pending)
    exit_code: int | None
    status: str                 # completed | pending
    output_excerpt: str | None  # the start of the output, redacted

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return redact_text(raw)
    return redact(raw)


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, dict):
        return _output_text(output.get("content", output.get("output", "")))
    if isinstance(output, list):
        return "\n".join(_output_text(part.get("text", "")) if isinstance(part, dict) else str(part) for part in output)
    return ""


def _ms_iso(ms: Any) -> str | None:
    if not isinstance(ms, int):
        return None
    at = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def receipts_from_lines(lines: Iterable[Any]) -> list[Receipt]:
    """Pure: parsed rollout lines in, receipts out in call order."""
    by_call: dict[str, Receipt] = {}
    turn_id: str | None = None
    for line in lines:
        if type(line) is not dict:
            continue
        ts = line.get(cf.TIMESTAMP)
        if opened := cf.turn_started(line):
            turn_id = opened
        elif (call := cf.tool_call(line)) is not None:
            call_id = call.call_id or f"call-{len(by_call)}"
            by_call[call_id] = Receipt(call_id, call.tool, _arguments(call.arguments), call.turn_id or turn_id,
                                       ts, None, None, "pending", None)
        elif (output := cf.tool_output(line)) is not None:
            receipt = by_call.get(output.call_id)
            if receipt is None:
                continue
            text = _output_text(output.output)
            receipt.ended_at, receipt.status = ts, "completed"
            receipt.output_excerpt = redact_text(text[:EXCERPT])
            found = EXIT_LINE.search(text[:2000])
            if found and receipt.exit_code is None:
                receipt.exit_code = int(found.group(1))
        elif (done := cf.tool_exit(line)) is not None:
            receipt = by_call.get(done.call_id)
            if receipt is not None and done.exit_code is not None:
                receipt.exit_code = done.exit_code
                receipt.started_at = _ms_iso(done.started_at_ms) or receipt.started_at
    return list(by_call.values())


def read_receipts(path: str | os.PathLike[str], warnings: list[str] | None = None) -> list[Receipt]:
    return receipts_from_lines(line for _, line in rollout.read_lines(path, warnings))
