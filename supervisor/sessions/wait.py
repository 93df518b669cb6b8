"""Wait until sessions have ended."""
from __future__ import annotations

import time
from collections.abc import Callable

from supervisor import store
from supervisor.errors import FatalError
from supervisor.records import SessionRecord
from supervisor.sessions.reconcile import reconcile


def wait_sessions(sessions: list[str], timeout: float, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> list[SessionRecord]:
    """Each session's final record, in the order given; FatalError (exit 2) on timeout."""
    deadline = clock() + timeout
    pending = list(dict.fromkeys(store.get(s)["session"] for s in sessions))
    done: dict[str, SessionRecord] = {}
    while pending:
        for session in list(pending):
            record = reconcile(store.get(session))
            if not store.is_live(record):
                done[session] = record
                pending.remove(session)
        if pending:
            if clock() >= deadline:
                raise FatalError(f"timed out after {timeout:g}s waiting for {', '.join(pending)}", exit_code=2)
            sleep(0.2)
    return list(done.values())
