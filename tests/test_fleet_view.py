"""`ao status` as a fleet view: filters, columns, totals, budget, the narrow layout and the watch pane."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor import paths, store
from supervisor.records import Status
from supervisor.report import views
from supervisor.report.watch import frame

JAIL = {"jail": {"argv": ["bwrap"]}}


def _record(session: str, status: Status, age_s: float, ended: bool = True, launch: dict[str, Any] | None = None,
            **fields: Any) -> str:
    """A fake finished (or live, with no pid) session; never a real pid (the teardown kills record pids)."""
    now = time.time()  # at insert time: a long run may import this module minutes before the test
    store.insert({"session": session, "workspace": f"/nonexistent/{session}", "runtime": "headless",
                  "status": status, "started_at": now - age_s, "ended_at": (now - 1) if ended else None,
                  "launch": JAIL if launch is None else launch, **fields})
    return session


def _fleet() -> None:
    _record("ao-0101-aaaaaa", Status.DONE, 2 * 3600, name="fix-login", project="webapp", repo="/src/webapp",
            pr_url="https://github.com/acme/webapp/pull/42", input=1000, output=200)
    _record("ao-0101-bbbbbb", Status.FAILED, 3 * 86400, repo="/src/api", error="codex exited 1", input=500,
            output=100)
    _record("ao-0101-cccccc", Status.WORKING, 300, ended=False, repo="/src/webapp", project="webapp")
    _record("ao-0101-dddddd", Status.STALLED, 600, ended=False, repo="/src/api", error="model unreachable")
    _record("ao-0101-eeeeee", Status.BLOCKED, 4 * 3600, repo="/src/api", error="budget reached")


def _json(ao: Any, *args: str) -> list[dict[str, Any]]:
    out = ao("status", *args, "--json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def _ids(rows: list[dict[str, Any]]) -> set[str]:
    return {r["session"] for r in rows}


def test_filters_combine(ao: Any) -> None:
    _fleet()
    assert _ids(_json(ao, "--active")) == {"ao-0101-cccccc", "ao-0101-dddddd"}
    assert _ids(_json(ao, "--project", "webapp")) == {"ao-0101-aaaaaa", "ao-0101-cccccc"}
    assert _ids(_json(ao, "--project", "/src/api")) == {"ao-0101-bbbbbb", "ao-0101-dddddd", "ao-0101-eeeeee"}
    assert _ids(_json(ao, "--since", "1h")) == {"ao-0101-cccccc", "ao-0101-dddddd"}
    assert _ids(_json(ao, "--attention")) == {"ao-0101-bbbbbb", "ao-0101-dddddd", "ao-0101-eeeeee"}
    assert _ids(_json(ao, "--attention", "--project", "api", "--since", "1d")) == {"ao-0101-dddddd",
                                                                                   "ao-0101-eeeeee"}
    assert _ids(_json(ao, "--active", "--project", "webapp")) == {"ao-0101-cccccc"}
    day = time.strftime("%Y-%m-%d", time.localtime(time.time() - 86400))
    assert "ao-0101-bbbbbb" not in _ids(_json(ao, "--since", day))
    assert ao("status", "--active", "--project", "nothing-here").stdout.strip() == "no session matches these filters"


def test_a_bad_since_is_one_line_naming_the_option(ao: Any) -> None:
    out = ao("status", "--since", "yesterday-ish")
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "--since 'yesterday-ish'" in out.stderr and "30m" in out.stderr


def test_one_session_is_a_list_of_one_row_with_the_new_fields(ao: Any) -> None:
    _fleet()
    rows = _json(ao, "fix-login")  # by name, like by id
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert row["session"] == "ao-0101-aaaaaa" and row["name"] == "fix-login" and row["project"] == "webapp"
    assert row["pr_number"] == 42 and 2 * 3600 - 5 <= row["age_s"] <= 2 * 3600 + 60
    assert row["spent_usd"] is None and row["budget_usd"] is None and row["budget_warning"] is False
    assert _json(ao, "ao-0101-bbbbbb")[0]["project"] == "api"  # no config project: the repository's name
    assert ao("status", "ao-nope", "--json").returncode == 1


def test_table_has_name_project_age_pr_number_and_totals(ao: Any) -> None:
    _fleet()
    out = ao("status", env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = lines[0].split()
    for column in ("SESSION", "NAME", "PROJECT", "STATUS", "ATTENTION", "AGE", "TOKENS", "COST", "PR"):
        assert column in header
    row = next(line for line in lines if "ao-0101-aaaaaa" in line)
    assert "fix-login" in row and "webapp" in row and " 2h " in row and "#42" in row
    assert "https://" not in out.stdout
    total = next(line for line in lines if line.startswith("TOTAL"))
    assert "5 sessions" in total and "1,800" in total  # 1,200 + 600 tokens from the stored columns
    assert "ao-0101-bbbbbb: codex exited 1" in out.stdout  # the reason under the table


def test_needs_a_human_first_by_urgency_then_newest(ao: Any) -> None:
    _fleet()
    _record("ao-0101-ffffff", Status.FAILED, 60, error="newer failure")
    out = ao("status", env={**os.environ, "COLUMNS": "250"})
    table = out.stdout.split("\n\n")[0]  # the rows, not the reasons printed under them
    order = [line.split()[0] for line in table.splitlines()[2:] if line.startswith("ao-")]
    # budget, then stalled, then failed (newest first), then the rest newest first
    assert order == ["ao-0101-eeeeee", "ao-0101-dddddd", "ao-0101-ffffff", "ao-0101-bbbbbb",
                     "ao-0101-cccccc", "ao-0101-aaaaaa"]
    rows = [{"session": a, "attention": a, "age_s": 5} for a in ("input", "failed", "stalled", "budget", "approval")]
    assert [r["session"] for r in views.needs_human_first(rows)] == list(views.ATTENTION_ORDER)


@pytest.mark.parametrize("width", [80, 100])
def test_narrow_terminal_gets_the_compact_layout_and_never_wraps(ao: Any, width: int) -> None:
    _fleet()
    _record("ao-0101-gggggg", Status.DONE, 60, name="a-very-long-session-name-" * 4, branch="feat/" + "x" * 90,
            repo="/src/" + "deep" * 30, pr_url="https://github.com/acme/webapp/pull/7")
    out = ao("status", env={**os.environ, "COLUMNS": str(width)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    header = lines[0].split()
    assert header[0] == "SESSION" and {"STATUS", "ATTENTION", "AGE"} <= set(header)
    assert "THREAD" not in header and "BRANCH" not in header
    assert all(s in out.stdout for s in ("ao-0101-aaaaaa", "ao-0101-gggggg"))  # every session keeps its id
    wide = ao("status", env={k: v for k, v in os.environ.items() if k != "COLUMNS"}).stdout
    assert "THREAD" in wide.splitlines()[0] and "BRANCH" in wide.splitlines()[0], wide  # a pipe: every column


def test_budget_column_and_warning(ao: Any) -> None:
    _record("ao-0101-bud001", Status.WORKING, 60, ended=False)
    _record("ao-0101-bud002", Status.WORKING, 120, ended=False)
    for session, spent in (("ao-0101-bud001", 0.085), ("ao-0101-bud002", 0.02)):
        sdir = paths.session_dir(session)
        sdir.mkdir(parents=True)
        (sdir / "policy.json").write_text(json.dumps({"budget_usd": 0.10}))
        (sdir / "guard-state.json").write_text(json.dumps({"spent_usd": spent}))
    rows = {r["session"]: r for r in _json(ao)}
    assert rows["ao-0101-bud001"]["budget_usd"] == 0.10 and rows["ao-0101-bud001"]["spent_usd"] == 0.085
    assert rows["ao-0101-bud001"]["budget_warning"] is True and rows["ao-0101-bud002"]["budget_warning"] is False
    table = ao("status", env={**os.environ, "COLUMNS": "250"}).stdout
    assert "$0.09/$0.10!" in table and "$0.02/$0.10" in table and "$0.02/$0.10!" not in table
    # the operator raised the budget: the override wins over the compiled policy
    (paths.session_dir("ao-0101-bud001") / "operator.json").write_text(json.dumps({"budget_usd": 1.0}))
    row = _json(ao, "ao-0101-bud001")[0]
    assert row["budget_usd"] == 1.0 and row["budget_warning"] is False


def test_broken_governance_files_do_not_break_status(ao: Any) -> None:
    _record("ao-0101-brk001", Status.WORKING, 60, ended=False)
    sdir = paths.session_dir("ao-0101-brk001")
    sdir.mkdir(parents=True)
    os.mkfifo(sdir / "policy.json")  # a FIFO must not hang the read
    (sdir / "operator.json").write_text("{not json")
    (sdir / "guard-state.json").write_text("[1, 2]")
    out = ao("status", "--json", timeout=20)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)[0]
    assert row["budget_usd"] is None and row["spent_usd"] is None and row["budget_warning"] is False


def test_watch_frame_fits_a_100x20_pane() -> None:
    rows = [{"session": f"ao-0101-{i:06d}", "status": "working", "attention": None, "activity": "active",
             "age_s": i, "tokens": {"total": 10}, "cost_usd": 0.01, "jailed": True} for i in range(40)]
    body = views.status_table(rows, width=100, max_lines=18)
    screen = frame("12:00:00 ao status (^C to stop)", body, 100, 20)
    lines = screen.removeprefix("\x1b[H\x1b[2J").splitlines()
    assert lines[0].startswith("12:00:00 ao status") and lines[1].startswith("SESSION")
    assert len(lines) <= 19 and max(len(line) for line in lines) <= 100
    assert any(line == "… 26 more" for line in lines) and lines[-1].startswith("TOTAL 40 sessions")


def test_watch_keeps_its_header_in_a_100x20_pane(tmp_path: Path) -> None:
    for i in range(40):
        _record(f"ao-0101-w{i:05d}", Status.DONE, 60 + i)
    env = {**os.environ, "COLUMNS": "100", "LINES": "20"}
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", "status", "--watch"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(4)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    text = out.decode()  # click drops the clear-screen escape when stdout is not a terminal
    lines = text.splitlines()
    lines = lines[:next(i for i, line in enumerate(lines[1:], 1) if "ao status (^C" in line)] \
        if text.count("ao status (^C") > 1 else lines
    first = "\n".join(lines)
    assert "ao status (^C to stop)" in lines[0] and lines[1].startswith("SESSION"), first
    assert len(lines) <= 19 and max(len(line) for line in lines) <= 100
    assert any(line.startswith("… ") and line.endswith(" more") for line in lines)
    assert proc.returncode == 0, err.decode()
