"""Which sessions' PR reactions ran out of attempts, for `ao status` without loading the reactions service.

The reactions service (sessions/reactions.py) owns the file; this reads it only, so the status path
imports nothing beyond json. A missing or unreadable file names no session.
"""
from __future__ import annotations

import json
from pathlib import Path

from supervisor import paths


def state_file() -> Path:
    return paths.ao_home() / "reactions" / "state.json"


def gave_up_sessions() -> set[str]:
    """Sessions whose reactions gave up after `max_attempts`: they need a human (`attention: failed`)."""
    try:
        doc = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return set()
    return {s for s, v in doc.items() if isinstance(v, dict) and v.get("gave_up")} if isinstance(doc, dict) else set()
