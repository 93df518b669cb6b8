"""The runner keeps the record from what a runtime reports, tested with scripted histories (no codex)."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor import paths, store
from supervisor.launch.command import LaunchSpec
from supervisor.launch.runtimes.base import Changed, Exited, Job, Report, Run, Runtime, Started, Tick, Trouble
from supervisor.records import SessionRecord, Status
from supervisor.sessions import runner


class ScriptedRun(Run):
    """Replays reports; a plain callable in the history runs between reports (a probe or a clock step)."""

    def __init__(self, history: list[Report]) -> None:
        self.history = history
        self.stopped = 0
        self.pid = 4242

    def reports(self) -> Iterator[Report]:
        for report in self.history:
            if callable(report):
                report()
                continue
            if self.stopped and isinstance(report, Changed):
                continue  # a stopped run reports nothing more but its exit
            yield report

    def stop(self) -> None:
        self.stopped += 1


class ScriptedRuntime(Runtime):
    name = "scripted"
    interactive = False
    description = "replays a history"

    def __init__(self, history: list[Report], fail_start: Exception | None = None) -> None:
        self.history = history
        self.fail_start = fail_start
        self.runs: list[ScriptedRun] = []

    def command(self, codex: str, spec: LaunchSpec, prompt: str | None, resume_thread: str | None) -> list[str]:
        return [codex]

    def start(self, job: Job) -> Run:
        if self.fail_start:
            raise self.fail_start
        run = ScriptedRun(self.history)
        self.runs.append(run)
        return run

    def stop(self, record: SessionRecord) -> None:
        pass


def make_session(session: str = "ao-test-000001", status: Status = Status.SPAWNING) -> Job:
    store.insert({"session": session, "workspace": "/nonexistent", "runtime": "headless", "status": status,
                  "launch": {"argv": ["codex"]}})
    paths.session_dir(session).mkdir(parents=True, exist_ok=True)
    return runner.job_for(store.get(session))


def test_a_clean_exit_is_done_and_every_change_reaches_the_record() -> None:
    job = make_session()
    history: list[Report] = [Started(11), Changed({"thread_id": "t-1", "activity": "active"}),
                             Changed({"rollout_path": "/r.jsonl"}), Changed({"activity": "idle"}), Exited(0)]
    status = runner.supervise(job.session, ScriptedRuntime(history), job, budget_spent=lambda s: False)
    record = store.get(job.session)
    assert status == Status.DONE and record["status"] == "done"
    assert record["thread_id"] == "t-1" and record["rollout_path"] == "/r.jsonl"
    assert record["activity"] == "exited" and record["exit_code"] == 0 and record["ended_at"] is not None


def test_a_reported_failure_with_exit_zero_is_failed_with_its_reason() -> None:
    job = make_session()
    history: list[Report] = [Started(11), Exited(0, failed=True, error="turn.failed: model unreachable")]
    status = runner.supervise(job.session, ScriptedRuntime(history), job, budget_spent=lambda s: False)
    record = store.get(job.session)
    assert status == Status.FAILED
    assert record["error"] == "turn.failed: model unreachable"


def test_a_spent_budget_stops_the_run_at_the_first_idle_and_ends_blocked() -> None:
    job = make_session()
    history: list[Report] = [Started(11), Changed({"activity": "active"}), Changed({"activity": "idle"}),
                             Changed({"activity": "active"}), Exited(-15)]
    runtime = ScriptedRuntime(history)
    status = runner.supervise(job.session, runtime, job, budget_spent=lambda s: True)
    assert status == Status.BLOCKED
    assert runtime.runs[0].stopped == 1  # stopped once, at the turn boundary
    assert "budget" in (store.get(job.session)["error"] or "")


def test_a_runtime_that_cannot_start_fails_the_session_with_the_cause() -> None:
    job = make_session()
    runtime = ScriptedRuntime([], fail_start=FileNotFoundError(2, "No such file or directory", "codex"))
    status = runner.supervise(job.session, runtime, job, budget_spent=lambda s: False)
    assert status == Status.FAILED
    assert "cannot start codex" in (store.get(job.session)["error"] or "")


def test_a_run_that_ends_without_an_exit_report_is_failed_not_done() -> None:
    job = make_session()
    status = runner.supervise(job.session, ScriptedRuntime([Started(11)]), job, budget_spent=lambda s: False)
    assert status == Status.FAILED


def test_kill_during_the_run_keeps_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    job = make_session()

    class KilledRun(ScriptedRun):
        def reports(self) -> Iterator[Report]:
            yield Started(11)
            os.kill(os.getpid(), signal.SIGTERM)  # what `ao kill` sends the runner
            time.sleep(0.01)
            yield Exited(-15)

    class KilledRuntime(ScriptedRuntime):
        def start(self, job: Job) -> Run:
            run = KilledRun([])
            self.runs.append(run)
            return run

    previous = signal.getsignal(signal.SIGTERM)
    try:
        runtime = KilledRuntime([])
        status = runner.supervise(job.session, runtime, job, budget_spent=lambda s: False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert status == Status.KILLED and runtime.runs[0].stopped == 1


def test_queued_sessions_start_in_spawn_order_as_slots_free() -> None:
    first = make_session("ao-test-000001", Status.WORKING)
    second = make_session("ao-test-000002", Status.QUEUED)
    third = make_session("ao-test-000003", Status.QUEUED)
    naps: list[float] = []

    def sleep(seconds: float) -> None:  # the clock moves only when the runner waits
        naps.append(seconds)
        if len(naps) == 3:
            store.update(first.session, status=Status.DONE, ended_at=time.time())

    runner.wait_for_slot(second.session, limit=1, sleep=sleep)
    assert len(naps) == 3
    assert store.get(second.session)["status"] == "spawning"
    assert store.get(third.session)["status"] == "queued"
    assert Path(paths.ao_home() / "slots.lock").exists()


# --- stalled: trouble and silence, decided by the runner from reports and its clock -----------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float) -> Callable[[], None]:
        def move() -> None:
            self.now += seconds
        return move


def expect(session: str, status: str, error_has: str | None = None) -> Callable[[], None]:
    def probe() -> None:
        record = store.get(session)
        assert record["status"] == status, (record["status"], record["error"])
        if error_has is None:
            assert record["error"] is None
        else:
            assert error_has in (record["error"] or "")
    return probe


def test_reported_trouble_stalls_at_once_and_progress_brings_working_back() -> None:
    job = make_session()
    clock = Clock()
    reason = "the model does not answer, codex keeps retrying: Reconnecting... waiting for network"
    history: list[Report] = [Started(11), Changed({"activity": "active"}), expect(job.session, "working"),
                             Trouble(reason), expect(job.session, "stalled", "keeps retrying"),
                             Tick(), Trouble(reason), expect(job.session, "stalled", "keeps retrying"),
                             Changed({}, progress=True), expect(job.session, "working"),
                             Changed({"activity": "idle"}), Exited(0)]  # type: ignore[list-item]
    status = runner.supervise(job.session, ScriptedRuntime(history), job, budget_spent=lambda s: False,
                              clock=clock, stall_after_s=60)
    assert status == Status.DONE and store.get(job.session)["error"] is None
    from supervisor.govern import ledger

    events = [e["body"].get("event") for e in ledger.read(paths.session_dir(job.session))]
    assert events.count("stalled") == 1 and events.count("recovered") == 1


def test_silence_mid_turn_stalls_after_stall_after_s_and_any_progress_recovers() -> None:
    job = make_session()
    clock = Clock()
    history: list[Report] = [Started(11), Changed({"activity": "active"}),
                             clock.step(59), Tick(), expect(job.session, "working"),
                             clock.step(2), Tick(), expect(job.session, "stalled", "no progress for over 60 s"),
                             clock.step(30), Tick(), expect(job.session, "stalled", "no progress"),
                             Changed({"thread_id": "t-1"}), expect(job.session, "working"),
                             clock.step(59), Tick(), expect(job.session, "working"),
                             Exited(0)]  # type: ignore[list-item]
    status = runner.supervise(job.session, ScriptedRuntime(history), job, budget_spent=lambda s: False,
                              clock=clock, stall_after_s=60)
    assert status == Status.DONE


def test_quiet_is_no_stall_between_turns_during_a_command_or_an_approval_wait() -> None:
    job = make_session()
    clock = Clock()
    waiting = {"approval": False}
    history: list[Report] = [Started(11), Changed({"activity": "idle"}), clock.step(600), Tick(),
                             expect(job.session, "working"),  # a TUI waiting for its user is not stuck
                             Changed({"activity": "active"}), Changed({}, tool_call=True),
                             clock.step(600), Tick(tool_running=True), expect(job.session, "working"),
                             Changed({}), lambda: waiting.update(approval=True), clock.step(600), Tick(),
                             expect(job.session, "working"),  # a human's turn, shown as attention: approval
                             lambda: waiting.update(approval=False), Tick(),
                             expect(job.session, "stalled", "no progress"),
                             Exited(-15)]  # type: ignore[list-item]
    status = runner.supervise(job.session, ScriptedRuntime(history), job, budget_spent=lambda s: False,
                              clock=clock, stall_after_s=60, approval_waiting=lambda: waiting["approval"])
    assert status == Status.FAILED


def test_a_progress_poll_that_did_not_move_does_not_end_a_stall() -> None:
    job = make_session()
    clock = Clock()
    history: list[Report] = [Started(11), Changed({"activity": "active"}), clock.step(61), Tick(),
                             Changed({"activity": "active"}, progress=False),
                             expect(job.session, "stalled", "no progress"), Exited(0)]  # type: ignore[list-item]
    assert runner.supervise(job.session, ScriptedRuntime(history), job, budget_spent=lambda s: False,
                            clock=clock, stall_after_s=60) == Status.DONE


def test_a_stall_never_overwrites_killed() -> None:
    job = make_session()
    clock = Clock()
    history: list[Report] = [Started(11), lambda: store.update(job.session, status=Status.KILLED),
                             Trouble("model gone"), expect(job.session, "killed"), Exited(-15)]  # type: ignore[list-item]
    assert runner.supervise(job.session, ScriptedRuntime(history), job, budget_spent=lambda s: False,
                            clock=clock) == Status.KILLED


def test_a_tool_call_before_the_guard_heard_sessionstart_stops_the_run_as_ungoverned(monkeypatch) -> None:
    import threading

    monkeypatch.setattr(runner, "GOVERNANCE_GRACE_S", 0.05)
    job = make_session()
    history: list[Report] = [Started(11), Changed({"thread_id": "t-1"}), Changed({}, tool_call=True),
                             Changed({"activity": "idle"}), Exited(-15)]
    runtime = ScriptedRuntime(history)
    status = runner.supervise(job.session, runtime, job, budget_spent=lambda s: False,
                              governed=threading.Event())  # the hooks never reached the guard
    record = store.get(job.session)
    assert status == Status.FAILED and runtime.runs[0].stopped == 1
    assert (record["error"] or "").startswith("ungoverned: codex ran a tool call")


def test_a_governed_run_is_left_alone() -> None:
    import threading

    job = make_session()
    governed = threading.Event()
    governed.set()
    history: list[Report] = [Started(11), Changed({}, tool_call=True), Changed({"activity": "idle"}), Exited(0)]
    runtime = ScriptedRuntime(history)
    assert runner.supervise(job.session, runtime, job, budget_spent=lambda s: False,
                            governed=governed) == Status.DONE
    assert runtime.runs[0].stopped == 0
