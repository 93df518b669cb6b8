"""Metadata events the git/gh wrappers append to `<ao home>/sessions/<id>/events.jsonl`, and their fold.

The wrappers store every free-text value hex-encoded in a `<field>_hex` member, so a branch named
`$(touch pwned)` or holding quotes or newlines arrives intact; `decode` turns it back into `<field>`.
"""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.observe.codex_format import NotRegularFile, open_regular

PR_STATUSES = ("pr_open", "merged", "closed")
_PULL_RE = re.compile(r"/pull/(\d+)/?$")


def events_path(session: str) -> Path:
    return paths.session_dir(session) / "events.jsonl"


def decode_hex(value: str) -> bytes:
    """The bytes a wrapper hex-encoded (`od -tx1`); raises ValueError on anything else."""
    return bytes.fromhex(value)


def decode(event: dict[str, Any]) -> dict[str, Any]:
    """Replace each `<field>_hex` member with `<field>` as text (invalid UTF-8 becomes U+FFFD)."""
    out: dict[str, Any] = {}
    for key, value in event.items():
        if key.endswith("_hex") and isinstance(value, str):
            out[key[:-4]] = decode_hex(value).decode("utf-8", "replace")
        else:
            out[key] = value
    return out


def parse_line(line: bytes | str) -> dict[str, Any] | None:
    """One decoded event, or None for a blank, torn or foreign line."""
    try:
        event = json.loads(line)
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            return None
        return decode(event)
    except (ValueError, UnicodeDecodeError):
        return None


def read_events(session: str, warnings: list[str] | None = None) -> list[dict[str, Any]]:
    """Every readable event of a session, in file order; unreadable lines are skipped.

    The agent can write this file, so a FIFO or a device in its place is skipped with a warning
    (into `warnings`, else on stderr) instead of hanging the reader.
    """
    try:
        with open_regular(events_path(session)) as fh:
            raw = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return []
    except NotRegularFile as exc:
        if warnings is None:
            sys.stderr.write(f"warning: {exc}\n")
        else:
            warnings.append(str(exc))
        return []
    events = []
    for line in raw.split(b"\n"):
        event = parse_line(line) if line.strip() else None
        if event is None and b'{"ts":' in line[1:]:
            # a write cut short by a full disk leaves a fragment with no newline, and the next
            # event is glued onto it: resynchronise on the last record start in the line
            event = parse_line(line[line.rindex(b'{"ts":'):])
        if event is not None and event.get("session", session) == session:
            events.append(event)
    return events


def pr_number_of(ref: Any) -> int | None:
    """The pull request number in `42`, `#42` or `https://github.com/o/r/pull/42`; None for a branch name."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    if not isinstance(ref, str):
        return None
    text = ref.strip().lstrip("#")
    if text.isdigit():
        return int(text)
    match = _PULL_RE.search(text)
    return int(match.group(1)) if match else None


def fold(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The session fields the events set (branch, pr_url, pr_number, status); later events win.

    A merge or close that names a different pull request than the session's own is ignored.
    """
    fields: dict[str, Any] = {}
    for event in events:
        kind = event.get("event")
        if kind == "branch" and isinstance(event.get("name"), str) and event["name"]:
            fields["branch"] = event["name"]
        elif kind == "pr" and event.get("status") in PR_STATUSES:
            if event["status"] == "pr_open":
                url = event.get("url")
                if not isinstance(url, str) or not url:
                    continue
                fields["pr_url"] = url
                number = event.get("number")
                fields["pr_number"] = number if isinstance(number, int) and number > 0 else pr_number_of(url)
            else:
                target = pr_number_of(event.get("target"))
                if target is not None and fields.get("pr_number") not in (None, target):
                    continue
            fields["status"] = event["status"]
    return fields
