"""Wait until sessions have finished their work (or, with `until_exit`, until their process ended)."""
from __future__ import annotations

import time
from collections.abc import Callable

from supervisor import store
from supervisor.errors import FatalError
from supervisor.records import SessionRecord
from supervisor.sessions.reconcile import reconcile, turn_ended


def finished(record: SessionRecord, until_exit: bool = False) -> bool:
    """A run ended, or (unless `until_exit`) an interactive agent's turn ended and it waits for input:
    its process lives on for its user, but the work it was given is done."""
    if not store.is_live(record):
        return True
    return not until_exit and turn_ended(record)


def wait_sessions(sessions: list[str], timeout: float, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep, until_exit: bool = False) -> list[SessionRecord]:
    """Each session's record once it has `finished`, in the order given; FatalError (exit 2) on timeout."""
    deadline = clock() + timeout
    order = list(dict.fromkeys(store.get(s)["session"] for s in sessions))
    pending = list(order)
    done: dict[str, SessionRecord] = {}
    while pending:
        for session in list(pending):
            record = reconcile(store.get(session))
            if finished(record, until_exit):
                done[session] = record
                pending.remove(session)
        if pending:
            if clock() >= deadline:
                what = "to exit" if until_exit else "to finish"
                raise FatalError(f"timed out after {timeout:g}s waiting for {', '.join(pending)} {what}", exit_code=2)
            sleep(0.2)
    return [done[s] for s in order]
