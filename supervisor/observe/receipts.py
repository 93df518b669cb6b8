"""One receipt per tool call in a rollout: the call paired with its output by call_id, secrets redacted."""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import orjson

from supervisor.observe import rollout
from supervisor.redact import redact, redact_text

CALLS = ("function_call", "custom_tool_call", "local_shell_call")
OUTPUTS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")
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


def _arguments(payload: dict[str, Any]) -> Any:
    raw = payload.get("arguments", payload.get("input", payload.get("action")))
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
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def receipts_from_lines(lines: Iterable[Any]) -> list[Receipt]:
    """Pure: parsed rollout lines in, receipts out in call order."""
    by_call: dict[str, Receipt] = {}
    turn_id: str | None = None
    for line in lines:
        if not isinstance(line, dict) or not isinstance(line.get("payload"), dict):
            continue
        payload, kind, ts = line["payload"], line.get("type"), line.get("timestamp")
        sub = payload.get("type")
        if kind == "turn_context" or (kind == "event_msg" and sub == "task_started"):
            turn_id = payload.get("turn_id") or turn_id
        elif kind == "response_item" and sub in CALLS:
            call_id = str(payload.get("call_id") or payload.get("id") or f"call-{len(by_call)}")
            meta = payload.get("internal_chat_message_metadata_passthrough")
            call_turn = meta.get("turn_id") if isinstance(meta, dict) else None
            by_call[call_id] = Receipt(call_id, str(payload.get("name") or sub), _arguments(payload),
                                       call_turn or turn_id, ts, None, None, "pending", None)
        elif kind == "response_item" and sub in OUTPUTS:
            receipt = by_call.get(str(payload.get("call_id")))
            if receipt is None:
                continue
            text = _output_text(payload.get("output"))
            receipt.ended_at, receipt.status = ts, "completed"
            receipt.output_excerpt = redact_text(text[:EXCERPT])
            found = EXIT_LINE.search(text[:2000])
            if found and receipt.exit_code is None:
                receipt.exit_code = int(found.group(1))
        elif kind == "event_msg" and sub in ("item_completed", "exec_command_end"):
            item = payload.get("item") if sub == "item_completed" else payload
            if not isinstance(item, dict):
                continue
            receipt = by_call.get(str(item.get("id") if sub == "item_completed" else item.get("call_id")))
            if receipt is not None and isinstance(item.get("exit_code"), int):
                receipt.exit_code = item["exit_code"]
                receipt.started_at = _ms_iso(payload.get("started_at_ms")) or receipt.started_at
    return list(by_call.values())


def read_receipts(path: str | os.PathLike[str], warnings: list[str] | None = None) -> list[Receipt]:
    return receipts_from_lines(line for _, line in rollout.read_lines(path, warnings))
