"""Tables never pass a control character from a record to the terminal."""
from __future__ import annotations

from decimal import Decimal

from supervisor.report import views
from supervisor.sessions import query

HOSTILE_URL = "https://github.com/acme/repo/pull/1\x1b]0;pwned\x07"
HOSTILE_BRANCH = "feat\x1b[2J\x9b31m\rmain\b\u202egnp.exe"


def _record() -> dict:
    return {"session": "s\x1b[1A", "status": "working", "activity": "active\x07", "branch": HOSTILE_BRANCH,
            "pr_url": HOSTILE_URL, "thread_id": "019a\x1b]8;;x\x07", "model": "gpt\x1b[31m", "started_at": 1.0}


def test_status_table_shows_escapes_instead_of_sending_them() -> None:
    row = query.status_row(_record(), {"input": 1, "cached_input": 0, "output": 2, "reasoning": 0, "total": 3},
                           Decimal("0.5"))
    table = views.status_table([row])
    for byte in ("\x1b", "\x07", "\x9b", "\r", "\b", "\u202e"):
        assert byte not in table
    assert "\\x1b]0;pwned\\x07" in table and "feat\\x1b[2J\\x9b31m\\x0dmain\\x08\\u202egnp.exe" in table
    assert row["pr_url"] == HOSTILE_URL  # the JSON contract keeps the real value; only the view escapes


def test_cost_table_escapes_keys_and_models() -> None:
    tokens = {"input": 1, "cached_input": 0, "output": 2, "reasoning": 0, "total": 3}
    table = views.cost_table([{"key": "day\x1b[2J", "models": ["m\x07"], "tokens": tokens, "cost_usd": 0.1}],
                             {"tokens": tokens, "cost_usd": 0.1})
    assert "\x1b" not in table and "\x07" not in table and "day\\x1b[2J" in table


def test_printable_keeps_ordinary_text() -> None:
    text = "feat/ünïcode-branch with spaces — https://x/pull/3"
    assert views.printable(text) == text
    assert views.printable(None) == "None"
