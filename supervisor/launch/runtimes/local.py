"""Where a local runtime's session keeps its codex home and rollout: light, so readers need not import
a runtime to find a rollout."""
from __future__ import annotations

from pathlib import Path

from supervisor.records import SessionRecord


def local_rollout_path(record: SessionRecord) -> str | None:
    """The rollout under the session's CODEX_HOME: the stored path, else found by thread id."""
    import os

    stored = record.get("rollout_path")
    if stored and os.path.exists(stored):
        return str(stored)
    thread = record.get("thread_id")
    if not thread:
        return None
    from supervisor.observe import locate

    found = locate.find_rollout(thread, codex_home_of(record), record.get("started_at"))
    return str(found) if found else None


def codex_home_of(record: SessionRecord) -> Path:
    """The CODEX_HOME a session ran with (isolated homes live under its session dir)."""
    from supervisor import paths

    launch = record.get("launch") or {}
    home = (launch.get("env") or {}).get("CODEX_HOME")
    return Path(home) if home else paths.codex_home()
