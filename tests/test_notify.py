"""Notifications: each event once across restarts, a failing webhook retried with backoff while a command
target stays on time, the rate limit holds without dropping anything, and an event's text never becomes
shell syntax. Real processes and a real local HTTP server; events come from ao's own records."""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from polling import wait_for

from supervisor import config, paths, store
from supervisor.govern import ledger
from supervisor.records import Status
from supervisor.sessions import notify

SINK = (f"{sys.executable} -c \"import sys; open(sys.argv[1], 'a').write(sys.stdin.read().replace(chr(10), ' ') "
        "+ chr(10))\"")


def cfg_with(targets: list[dict[str, object]]) -> config.Config:
    return config.Config({**config.DEFAULTS, "notify": targets})


def sink_target(out: Path, **more: object) -> dict[str, object]:
    """A command target that appends each event's JSON (one line) to OUT."""
    return {"type": "command", "name": "sink", "command": f"{SINK} '{out}'", **more}


def received(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def new_session(session: str, status: Status = Status.WORKING, **more: object) -> None:
    store.insert({"session": session, "workspace": "/nonexistent", "runtime": "headless", "status": status,
                  "launch": {"argv": []}, **more})


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "POLL_S", 0.1)


def test_each_event_is_sent_once_across_restarts_and_history_is_not_news(tmp_path) -> None:
    out = tmp_path / "events.jsonl"
    cfg = cfg_with([sink_target(out)])
    new_session("ao-test-old001", Status.DONE, ended_at=100.0)  # finished before notifications existed
    new_session("ao-test-run001")
    assert notify.run_once(cfg)["new"] == 0  # the first run is a baseline
    store.update("ao-test-run001", status=Status.DONE, ended_at=200.0)
    counts = notify.run_once(cfg)
    assert counts == {"new": 1, "delivered": 1, "failed": 0, "waiting": 0}
    # a restart of the resident service: a new process state, the same files
    stop = threading.Event()
    thread = threading.Thread(target=notify.run, args=(cfg, stop))
    thread.start()
    try:
        store.update("ao-test-run001", activity="exited")  # a write that is no new occurrence
        time.sleep(0.5)
        store.update("ao-test-run001", status=Status.PR_OPEN, pr_url="https://github.com/a/b/pull/3")
        wait_for(lambda: len(received(out)) == 2, 10, what="the pr_opened event")
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(5)
    assert notify.run_once(cfg)["new"] == 0
    got = received(out)
    assert [(e["event"], e["session"]) for e in got] == [("finished", "ao-test-run001"),
                                                        ("pr_opened", "ao-test-run001")]
    assert got[1]["pr_url"] == "https://github.com/a/b/pull/3" and got[0]["key"] != got[1]["key"]


def test_approvals_and_budget_receipts_are_events(tmp_path) -> None:
    out = tmp_path / "events.jsonl"
    cfg = cfg_with([sink_target(out, events=["budget_warning", "budget_exhausted", "approval_needed"])])
    new_session("ao-test-budg01")
    sdir = paths.session_dir("ao-test-budg01")
    sdir.mkdir(parents=True)
    ledger.append(sdir, "budget_warning", {"spent_usd": 0.5, "budget_usd": 1.0})  # before the baseline
    notify.run_once(cfg)
    ledger.append(sdir, "budget_warning", {"spent_usd": 0.8, "budget_usd": 1.0})
    ledger.append(sdir, "budget_exhausted", {"spent_usd": 1.01, "budget_usd": 1.0})
    from supervisor.govern import guard

    approvals = Path(guard.approvals_dir(str(paths.ao_home())))
    approvals.mkdir(parents=True, exist_ok=True)
    (approvals / "ap-1.json").write_text(json.dumps({"id": "ap-1", "session": "ao-test-budg01", "status": "pending",
                                                     "command": "rm -rf build", "created": time.time()}))
    store.update("ao-test-budg01", status=Status.DONE, ended_at=5.0)  # `finished` is not this target's
    notify.run_once(cfg)
    notify.run_once(cfg)
    got = received(out)
    assert sorted(e["event"] for e in got) == ["approval_needed", "budget_exhausted", "budget_warning"], got
    assert any("$0.8" in str(e["summary"]) for e in got) and not any("$0.5" in str(e["summary"]) for e in got)
    assert any("rm -rf build" in str(e["summary"]) for e in got)
    assert notify.outbox() == []


class _Flaky(BaseHTTPRequestHandler):
    answers: list[int] = []
    hits: list[tuple[float, int, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        code = type(self).answers.pop(0) if type(self).answers else 200
        type(self).hits.append((time.monotonic(), code, body))
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server() -> Iterator[ThreadingHTTPServer]:
    _Flaky.answers, _Flaky.hits = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_failing_webhook_is_retried_with_backoff_and_never_delays_a_command_target(
        tmp_path, flaky_server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ao")
    _Flaky.answers = [500, 500]
    out = tmp_path / "events.jsonl"
    url = f"http://127.0.0.1:{flaky_server.server_address[1]}/hook"
    cfg = cfg_with([{"type": "webhook", "name": "hook", "url": url, "format": "slack"}, sink_target(out)])
    new_session("ao-test-hook01")
    notify.run_once(cfg)
    stop = threading.Event()
    thread = threading.Thread(target=notify.run, args=(cfg, stop))
    thread.start()
    try:
        store.update("ao-test-hook01", status=Status.FAILED, ended_at=3.0, error="exit 1")
        start = time.monotonic()
        wait_for(lambda: received(out), 5, what="the command target's event")
        command_at = time.monotonic() - start
        wait_for(lambda: any(code == 200 for _, code, _ in _Flaky.hits), 15, what="the webhook's delivery")
        time.sleep(1.0)  # time for a wrong extra delivery to show
    finally:
        stop.set()
        thread.join(5)
    codes = [code for _, code, _ in _Flaky.hits]
    assert codes == [500, 500, 200], codes
    gaps = [b[0] - a[0] for a, b in zip(_Flaky.hits, _Flaky.hits[1:])]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps  # 1 s, then 2 s: exponential
    assert command_at < 1.5 and len(received(out)) == 1, command_at  # on time, while the webhook was failing
    assert json.loads(_Flaky.hits[-1][2]) == {"text": "ao: ao-test-hook01 failed: exit 1"}
    warned = [r.getMessage() for r in caplog.records if "target hook" in r.getMessage()]
    assert len(warned) == 2 and all("HTTP 500" in w and "failed" in w and "\n" not in w for w in warned), warned
    assert notify.outbox() == []


def test_the_rate_limit_holds_and_drops_nothing(tmp_path) -> None:
    out = tmp_path / "events.jsonl"
    target = notify.targets_of(cfg_with([sink_target(out, max_per_minute=2)]))[0]
    now = [1000.0]
    worker = notify.Worker(target, clock=lambda: now[0])
    notify.emit([notify.make_event("finished", f"job {n}", str(n)) for n in range(5)])
    for _ in range(10):
        worker.step(notify.outbox())
    assert len(received(out)) == 2
    assert worker.step(notify.outbox()) == pytest.approx(60.0)  # the rest waits for the minute to pass
    now[0] += 60
    for _ in range(10):
        worker.step(notify.outbox())
    assert len(received(out)) == 4
    now[0] += 60
    for _ in range(10):
        worker.step(notify.outbox())
    assert [e["summary"] for e in received(out)] == [f"job {n}" for n in range(5)]  # all, in order


def test_an_events_text_cannot_inject_into_a_command_target(tmp_path) -> None:
    pwned = tmp_path / "pwned"
    out = tmp_path / "events.jsonl"
    evil = f"x'; touch {pwned}; echo '$(touch {pwned}) `touch {pwned}` && touch {pwned} | tee {pwned}"
    cfg = cfg_with([sink_target(out), {"type": "desktop", "name": "desk"}])
    new_session("ao-test-evil01")
    notify.run_once(cfg)
    store.update("ao-test-evil01", name=evil, status=Status.FAILED, ended_at=1.0, error=evil)
    counts = notify.run_once(cfg)
    assert counts["delivered"] == 2 and counts["failed"] == 0  # no notify-send here: skipped, not an error
    assert not pwned.exists()
    got = received(out)
    assert got[0]["name"] == evil and evil[:200] in str(got[0]["summary"])


def test_a_broken_command_is_logged_retried_and_kept(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ao")
    cfg = cfg_with([{"type": "command", "name": "broken", "command": str(tmp_path / "missing-script")}])
    new_session("ao-test-brok01")
    notify.run_once(cfg)
    store.update("ao-test-brok01", status=Status.DONE, ended_at=1.0)
    assert notify.run_once(cfg)["failed"] == 1
    assert len(notify.outbox()) == 1  # kept for the next pass
    assert "target broken, event finished" in caplog.text and "cannot run" in caplog.text


def test_cli_notify_test_and_once(tmp_path, monkeypatch) -> None:
    from supervisor.report import cli

    # the lead adds these lines to cli.COMMANDS; until then the test dispatches them the same way
    monkeypatch.setitem(cli.COMMANDS, "notify", ("supervisor.report.cmd_notify", "notify_cmd"))

    out = tmp_path / "events.jsonl"
    cfg_file = tmp_path / "ao.yaml"
    cfg_file.write_text(f"notify:\n  - type: command\n    name: sink\n    command: {json.dumps(SINK + ' ' + str(out))}\n"
                        "  - type: webhook\n    name: dead\n    url: http://127.0.0.1:9/nothing\n")
    config.trust_config(cfg_file)
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["--config", str(cfg_file), "notify", "test"])
    assert result.exit_code == 1, result.output
    assert "sink: sent" in result.output and "dead: failed: cannot reach" in result.output
    assert received(out)[0]["event"] == "finished"
    result = runner.invoke(cli.cli, ["--config", str(cfg_file), "notify", "--once", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["new"] == 0, result.output
