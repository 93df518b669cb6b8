"""Notifications: the fleet's events pushed to desktop, command and webhook targets, each once.

Events are found in ao's own records (session statuses, pending approvals, budget receipts in the
ledgers) and handed in by the reactions service. Every occurrence has a stable key; the keys already
seen and the outbox of events not yet delivered live in `$AO_HOME/notify/state.json`, written
atomically under a lock, so a restart neither repeats nor loses an event. On the very first run the
service only records what is already there (a baseline) and sends what happens afterwards.

Each target has its own thread, rate limit and backoff: a target that fails or waits never holds up
another. Delivery is at least once: a crash between a delivery and its record can repeat that one.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from supervisor import paths
from supervisor.config import NOTIFY_EVENTS, Config
from supervisor.locking import file_lock

log = logging.getLogger("ao.notify")

POLL_S = 2.0  # how often the records are read for new events
COMMAND_TIMEOUT_S = 30.0
WEBHOOK_TIMEOUT_S = 10.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
SEEN_KEEP = 20000  # the newest keys kept; older ones belong to long-gone occurrences
# a session status and the event it means (a status not listed is no event)
STATUS_EVENTS = {"done": "finished", "failed": "failed", "stalled": "stalled", "blocked": "budget_exhausted",
                 "pr_open": "pr_opened", "merged": "pr_merged",
                 "lost": "failed"}  # a lost session (its Ray node died) needs `ao resume`
LEDGER_EVENTS = ("budget_warning", "budget_exhausted")


class Event(TypedDict, total=False):
    """One occurrence as targets receive it (the JSON on a command's stdin, a webhook's body)."""

    key: str  # stable: session + event + the occurrence's own id
    event: str  # one of config.NOTIFY_EVENTS
    session: str | None
    name: str | None
    project: str | None
    status: str | None
    pr_url: str | None
    summary: str  # one line for people
    detail: dict[str, Any]
    at: float


class Pending(TypedDict):
    event: Event
    delivered: list[str]  # target names that have it


@dataclass
class Target:
    """One configured target, as `notify:` lists it."""

    kind: str
    name: str
    events: frozenset[str]
    command: str | None = None
    url: str | None = None
    body_format: str = "json"
    max_per_minute: int | None = None

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


def targets_of(cfg: Config) -> list[Target]:
    """The `notify:` list as targets; names default to the type, repeated names get a suffix."""
    out: list[Target] = []
    names: set[str] = set()
    for n, raw in enumerate(cfg.data.get("notify") or []):
        kind = str(raw.get("type") or "")
        name = str(raw.get("name") or kind or f"target{n}")
        if name in names:
            name = f"{name}#{n}"
        names.add(name)
        limit = raw.get("max_per_minute")
        out.append(Target(kind, name, frozenset(raw.get("events") or ()), raw.get("command"), raw.get("url"),
                          str(raw.get("format") or "json"),
                          int(limit) if isinstance(limit, int) and limit > 0 else None))
    return out


# --- the state file -------------------------------------------------------------------------------

def state_dir() -> Path:
    return paths.ensure_private_dir(paths.ao_home() / "notify")


def _state_path() -> Path:
    return state_dir() / "state.json"


_THREAD_LOCK = threading.RLock()  # flock is per open file: threads of one process also take this


class _Locked:
    """The state file held for one read-modify-write, by this process's threads and by other ao's."""

    def __enter__(self) -> dict[str, Any]:
        _THREAD_LOCK.acquire()
        self._flock = file_lock(state_dir() / ".lock")
        self._flock.__enter__()
        self.state = load_state()
        self._before = json.dumps(self.state, sort_keys=True)
        return self.state

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            # an idle poll writes nothing: no fsync every POLL_S for a fleet that is quiet
            if kind is None and json.dumps(self.state, sort_keys=True) != self._before:
                save_state(self.state)
        finally:
            self._flock.__exit__(None, None, None)
            _THREAD_LOCK.release()


def load_state() -> dict[str, Any]:
    """The saved state; a missing file is a first run (`baseline` unset), a corrupt one is logged and reset."""
    try:
        doc = json.loads(_state_path().read_text())
        if isinstance(doc, dict) and isinstance(doc.get("seen"), dict) and isinstance(doc.get("outbox"), list):
            doc.setdefault("statuses", {})
            doc.setdefault("ledger_seen", {})
            return doc
        log.warning("notify: %s is not ao's state; starting a new baseline", _state_path())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("notify: cannot read %s (%s); starting a new baseline", _state_path(), exc)
    return {"created": time.time(), "baseline": False, "seen": {}, "statuses": {}, "ledger_seen": {}, "outbox": []}


def save_state(state: dict[str, Any]) -> None:
    seen = state["seen"]
    if len(seen) > SEEN_KEEP:
        state["seen"] = dict(sorted(seen.items(), key=lambda kv: kv[1])[-SEEN_KEEP:])
    paths.atomic_write(_state_path(), json.dumps(state, separators=(",", ":")))


def _add(state: dict[str, Any], event: Event) -> bool:
    if event["key"] in state["seen"]:
        return False
    state["seen"][event["key"]] = event.get("at") or time.time()
    state["outbox"].append({"event": event, "delivered": []})
    return True


def emit(events: Iterable[Event]) -> int:
    """Queue events for delivery, each key once ever; returns how many were new. The reactions service
    calls this; so can anything else in ao."""
    with _Locked() as state:
        return sum(1 for e in events if _add(state, e))


def make_event(event: str, summary: str, key_id: str, record: dict[str, Any] | None = None,
               detail: dict[str, Any] | None = None) -> Event:
    """An event about a session (or none), keyed by session, event name and the occurrence's own id."""
    if event not in NOTIFY_EVENTS:
        raise ValueError(f"unknown notify event {event!r}")
    rec = record or {}
    session = rec.get("session")
    return Event(key=f"{session or '-'}:{event}:{key_id}", event=event, session=session, name=rec.get("name"),
                 project=rec.get("project"), status=rec.get("status"), pr_url=rec.get("pr_url"),
                 summary=_one_line(summary), detail=detail or {}, at=time.time())


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# --- finding events in ao's records (pure over what was read) --------------------------------------

def status_events(records: list[dict[str, Any]], last: dict[str, str]) -> list[Event]:
    """Pure: an event for each session whose status changed to one that means something since `last`."""
    out = []
    for rec in records:
        status = str(rec.get("status"))
        if last.get(rec["session"]) == status or status not in STATUS_EVENTS:
            continue
        event = STATUS_EVENTS[status]
        # one occurrence per run's end, or per PR
        occurrence = rec.get("pr_url") if status in ("pr_open", "merged") else rec.get("ended_at") or rec.get(
            "updated_at")
        label = rec.get("name") or rec["session"]
        words = {"finished": "finished", "failed": f"failed: {rec.get('error') or 'see ao status'}",
                 "stalled": f"stalled: {rec.get('error') or 'no progress'}",
                 "budget_exhausted": "was stopped by its budget",
                 "pr_opened": f"opened {rec.get('pr_url')}", "pr_merged": f"PR merged: {rec.get('pr_url')}"}[event]
        out.append(make_event(event, f"{label} {words}", str(occurrence), rec))
    return out


def approval_events(pending: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> list[Event]:
    """Pure: one approval_needed per pending approval id."""
    out = []
    for approval in pending:
        rec = records.get(str(approval.get("session")), {"session": approval.get("session")})
        command = str(approval.get("command") or approval.get("summary") or "a tool call")
        label = rec.get("name") or rec.get("session")
        out.append(make_event("approval_needed", f"{label} waits for approval: {command} "
                                                 f"(ao approve {approval.get('id')})",
                              str(approval.get("id")), rec, {"approval_id": approval.get("id")}))
    return out


def ledger_events(record: dict[str, Any], entries: list[dict[str, Any]], after_seq: int) -> list[Event]:
    """Pure: budget_warning / budget_exhausted receipts past `after_seq`, keyed by their ledger seq."""
    out = []
    for entry in entries:
        seq = entry.get("seq")
        if not isinstance(seq, int) or seq <= after_seq or entry.get("kind") not in LEDGER_EVENTS:
            continue
        raw_body = entry.get("body")
        body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
        label = record.get("name") or record["session"]
        what = "is near its budget" if entry["kind"] == "budget_warning" else "has spent its budget"
        spent = body.get("spent_usd")
        out.append(make_event(entry["kind"], f"{label} {what}" + (f" (${spent})" if spent is not None else ""),
                              f"seq{seq}", record, {"seq": seq}))
    return out


class Detector:
    """Reads ao's records for new events; keeps which ledgers it has read so a poll stays cheap."""

    def __init__(self) -> None:
        self._ledger_sizes: dict[str, int] = {}

    def scan(self) -> list[Event]:
        """New events into the outbox; on a first run, a baseline instead (nothing sent)."""
        from supervisor import store
        from supervisor.govern import guard

        records: list[dict[str, Any]] = [dict(r) for r in store.all_sessions()]
        by_id = {r["session"]: r for r in records}
        pending = guard.pending_approvals(str(paths.ao_home()))
        ledgers = self._ledger_reads(records)
        with _Locked() as state:
            statuses: dict[str, str] = state["statuses"]
            found = status_events(records, statuses)
            found += approval_events(pending, by_id)
            for session, entries in ledgers.items():
                found += ledger_events(by_id[session], entries, int(state["ledger_seen"].get(session, 0)))
                seqs = [e["seq"] for e in entries if isinstance(e.get("seq"), int)]
                if seqs:
                    state["ledger_seen"][session] = max(seqs + [int(state["ledger_seen"].get(session, 0))])
            for r in records:
                statuses[r["session"]] = str(r.get("status"))
            if not state.get("baseline"):
                for e in found:  # what was there before the first run is history, not news
                    state["seen"][e["key"]] = e.get("at") or time.time()
                state["baseline"] = True
                return []
            return [e for e in found if _add(state, e)]

    def _ledger_reads(self, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        from supervisor.govern import ledger

        out = {}
        for r in records:
            path = paths.session_dir(r["session"]) / ledger.LEDGER
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if self._ledger_sizes.get(r["session"]) == size:
                continue
            try:
                out[r["session"]] = ledger.read(path.parent, seal_first=False)
            except Exception as exc:  # a torn or foreign ledger must not stop notifications
                log.warning("notify: cannot read the ledger of %s (%s)", r["session"], exc)
                continue
            self._ledger_sizes[r["session"]] = size
        return out


# --- delivery -------------------------------------------------------------------------------------

class DeliveryError(Exception):
    """A target did not take the event; the message names the cause."""


def event_text(event: Event) -> str:
    return f"ao: {event.get('summary') or event.get('event')}"


def _deliver_desktop(target: Target, event: Event) -> None:
    exe = shutil.which("notify-send")
    if exe is None:
        if not _DESKTOP_MISSING_LOGGED.is_set():
            _DESKTOP_MISSING_LOGGED.set()
            log.warning("notify: notify-send is not installed; desktop target %r skips its events", target.name)
        return
    # `--` ends options: a summary starting with `-` is text, not a flag
    _run([exe, "--app-name=ao", "--", f"ao: {event.get('event')}", event.get("summary") or ""], None)


_DESKTOP_MISSING_LOGGED = threading.Event()


def command_argv(command: str) -> list[str]:
    """The configured command as argv (no shell: an event's text can never become shell syntax)."""
    argv = shlex.split(command)
    if not argv:
        raise DeliveryError("the command is empty")
    argv[0] = os.path.expanduser(argv[0])
    return argv


def _deliver_command(target: Target, event: Event) -> None:
    _run(command_argv(target.command or ""), json.dumps(event).encode())


def _run(argv: list[str], stdin: bytes | None) -> None:
    try:
        if stdin is None:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=COMMAND_TIMEOUT_S,
                                  start_new_session=True)
        else:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=COMMAND_TIMEOUT_S,
                                  start_new_session=True)
    except subprocess.TimeoutExpired:
        raise DeliveryError(f"{argv[0]} did not finish in {COMMAND_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise DeliveryError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
        raise DeliveryError(f"{argv[0]} exited {done.returncode}" + (f": {_one_line(last, 200)}" if last else ""))


def webhook_body(target: Target, event: Event) -> bytes:
    if target.body_format == "slack":
        return json.dumps({"text": event_text(event)}).encode()
    return json.dumps(event).encode()


def _deliver_webhook(target: Target, event: Event) -> None:
    import urllib.error
    import urllib.request

    url = target.url or ""
    if not url.startswith(("http://", "https://")):
        raise DeliveryError(f"url {url!r} is not http(s)")
    request = urllib.request.Request(url, data=webhook_body(target, event), method="POST",
                                     headers={"content-type": "application/json", "user-agent": "ao-notify"})
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:
            answer.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DeliveryError(f"cannot reach {url}: {reason}") from None


# a notifier is one entry: type name -> how to deliver (config validation lists the same names)
DELIVER: dict[str, Callable[[Target, Event], None]] = {
    "desktop": _deliver_desktop, "command": _deliver_command, "webhook": _deliver_webhook}


def deliver(target: Target, event: Event) -> None:
    """Send one event to one target now; raises DeliveryError naming the cause."""
    found = DELIVER.get(target.kind)
    if found is None:
        raise DeliveryError(f"unknown target type {target.kind!r}")
    found(target, event)


def prune_outbox(targets: list[Target]) -> None:
    """Drop events every configured target that wants them has (or that no target wants)."""
    with _Locked() as state:
        state["outbox"] = [item for item in state["outbox"]
                           if any(t.wants(item["event"]["event"]) and t.name not in item["delivered"]
                                  for t in targets)]


@dataclass
class Worker:
    """One target's delivery: FIFO over the outbox, rate limited, with exponential backoff on failure."""

    target: Target
    clock: Callable[[], float] = time.monotonic
    sent_at: deque[float] = field(default_factory=deque)
    retry_at: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def due(self, outbox: list[Pending]) -> list[Event]:
        return [item["event"] for item in outbox
                if self.target.wants(item["event"]["event"]) and self.target.name not in item["delivered"]]

    def wait_s(self) -> float:
        """How long the rate limit asks to wait before the next send (0 when one may go now)."""
        now = self.clock()
        while self.sent_at and now - self.sent_at[0] >= 60.0:
            self.sent_at.popleft()
        limit = self.target.max_per_minute
        if limit is None or len(self.sent_at) < limit:
            return 0.0
        return 60.0 - (now - self.sent_at[0])

    def step(self, outbox: list[Pending]) -> float:
        """Try the head event; returns how long to sleep before the next step (0: go on now)."""
        due = self.due(outbox)
        if not due:
            return POLL_S
        event = due[0]  # in order: a later event waits for an earlier one's retry
        wait = max(self.wait_s(), self.retry_at.get(event["key"], 0.0) - self.clock())
        if wait > 0:
            return wait
        self.sent_at.append(self.clock())
        try:
            deliver(self.target, event)
        except DeliveryError as exc:
            tries = self.failures.get(event["key"], 0) + 1
            self.failures[event["key"]] = tries
            backoff = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (tries - 1))
            self.retry_at[event["key"]] = self.clock() + backoff
            log.warning("notify: target %s, event %s (%s): %s; retry %d in %.0f s", self.target.name,
                        event["event"], event["key"], exc, tries, backoff)
            return 0.0
        self.failures.pop(event["key"], None)
        self.retry_at.pop(event["key"], None)
        _record_delivery(event["key"], self.target.name)
        return 0.0


def _record_delivery(key: str, target: str) -> None:
    with _Locked() as state:
        for item in state["outbox"]:
            if item["event"]["key"] == key and target not in item["delivered"]:
                item["delivered"].append(target)


def outbox() -> list[Pending]:
    with _THREAD_LOCK:
        return list(load_state()["outbox"])


def _worker_loop(worker: Worker, stop: threading.Event, wake: threading.Event) -> None:
    while not stop.is_set():
        try:
            pause = worker.step(outbox())
        except Exception as exc:  # a bug in one target's delivery must not end it for good
            log.warning("notify: target %s: %s: %s", worker.target.name, type(exc).__name__, exc)
            pause = POLL_S
        if pause > 0:
            wake.wait(min(pause, POLL_S))
            wake.clear()


def run(cfg: Config, stop: threading.Event) -> None:
    """The resident service (`ao watch`): find events every POLL_S, deliver each through its targets'
    threads, until `stop` is set."""
    targets = targets_of(cfg)
    wake = threading.Event()
    threads = [threading.Thread(target=_worker_loop, args=(Worker(t), stop, wake), name=f"notify-{t.name}",
                                daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    detector = Detector()
    while not stop.is_set():
        try:
            if detector.scan():
                wake.set()
            prune_outbox(targets)
        except Exception as exc:  # the store busy or a disk full: said, and tried again next poll
            log.warning("notify: cannot read ao's records: %s: %s", type(exc).__name__, exc)
        stop.wait(POLL_S)
    wake.set()
    for thread in threads:
        thread.join(timeout=COMMAND_TIMEOUT_S + 1)


def run_once(cfg: Config) -> dict[str, int]:
    """One pass for `ao notify --once`: find new events, then give each target one try at each event it
    is owed that its rate limit allows. What is left stays in the outbox for the next pass."""
    targets = targets_of(cfg)
    new = Detector().scan()
    delivered = failed = 0
    for target in targets:
        worker = Worker(target)
        for event in worker.due(outbox()):
            if worker.wait_s() > 0:
                break
            worker.sent_at.append(worker.clock())
            try:
                deliver(target, event)
            except DeliveryError as exc:
                failed += 1
                log.warning("notify: target %s, event %s (%s): %s", target.name, event["event"], event["key"], exc)
                break  # in order: the rest wait for the next pass
            delivered += 1
            _record_delivery(event["key"], target.name)
    prune_outbox(targets)
    return {"new": len(new), "delivered": delivered, "failed": failed, "waiting": len(outbox())}


def send_test(cfg: Config) -> list[tuple[str, str | None]]:
    """`ao notify test`: a sample event to every target now; (target name, error or None) each."""
    event = make_event("finished", "this is a test notification from `ao notify test`", f"test-{time.time()}")
    results: list[tuple[str, str | None]] = []
    for target in targets_of(cfg):
        try:
            deliver(target, event)
            results.append((target.name, None))
        except DeliveryError as exc:
            results.append((target.name, str(exc)))
    return results
