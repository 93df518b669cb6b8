"""Reactions: a PR's CI failures, change requests and conflicts go back to the agent that owns it.

Every `reactions.poll_s` each session with an open PR is read with the real `gh` (`gh pr view URL --json
...`, and `gh run view RUN --log-failed` for a failed check). What is new (a check's job id, a review id,
a conflict at a head sha) is sent to the agent (`control.send`), notified, or ignored, as configured;
each is handled once, across restarts (`$AO_HOME/reactions/state.json`). After `max_attempts` sends to
one PR the service gives up: the session needs a human (`attention: failed`) and the user is told.
A PR found merged or closed sets the session's status and ends its loop. Each reaction is a receipt.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import paths, store
from supervisor.config import Config
from supervisor.errors import FatalError
from supervisor.locking import file_lock
from supervisor.records import SessionRecord, Status
from supervisor.sessions import notify, reaction_state

log = logging.getLogger("ao.reactions")

GH_TIMEOUT_S = 60.0
PR_FIELDS = "state,mergeable,reviewDecision,reviews,statusCheckRollup,headRefOid"
FAILED_CONCLUSIONS = frozenset({"FAILURE", "TIMED_OUT", "CANCELLED", "ACTION_REQUIRED", "STARTUP_FAILURE"})
FAILED_STATES = frozenset({"FAILURE", "ERROR"})
# what the agent's records may name as its PR: nothing that gh could read as a flag or a path
PR_URL = re.compile(r"https://[A-Za-z0-9.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/pull/\d+")
RUN_URL = re.compile(r"https://([A-Za-z0-9.-]+)/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/actions/runs/(\d+)(?:/job/(\d+))?")
ENDED = frozenset({Status.MERGED, Status.CLOSED, Status.KILLED})
LINE_LIMIT = 400


@dataclass(frozen=True)
class Finding:
    """One thing to react to on a PR; `key` is never handled twice."""

    kind: str  # ci_failed | changes_requested | conflict
    key: str
    summary: str
    details: str
    run: tuple[str, str] | None = None  # (repo for --repo, run id) of a failed check, for its log


class GhError(Exception):
    """gh missing, failing or answering garbage; the message names the cause."""


# --- gh -------------------------------------------------------------------------------------------

def real_gh() -> str | None:
    """The first `gh` on PATH that is not one of ao's wrappers (they pass `pr view` through anyway)."""
    ours = os.path.realpath(paths.bin_dir())
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or os.path.realpath(entry) == ours:
            continue
        candidate = os.path.join(entry, "gh")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK) and not _is_wrapper(candidate):
            return candidate
    return None


def _is_wrapper(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return b"ao-wrapper:" in fh.read(200)
    except OSError:
        return False


def gh(args: list[str]) -> str:
    exe = real_gh()
    if exe is None:
        raise GhError("gh is not installed (no gh on PATH besides ao's wrapper)")
    env = {k: v for k, v in os.environ.items() if k not in ("AO_SESSION", "GH_PAGER", "PAGER")}
    env.update(GH_PROMPT_DISABLED="1", GH_NO_UPDATE_NOTIFIER="1", NO_COLOR="1", CLICOLOR="0")
    try:
        done = subprocess.run([exe, *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=GH_TIMEOUT_S,
                              env=env, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise GhError(f"`gh {' '.join(args[:2])}` did not answer in {GH_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise GhError(f"cannot run {exe}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        raise GhError(f"`gh {' '.join(args[:2])}` exited {done.returncode}: {_clean(last)[:200]}")
    return done.stdout.decode("utf-8", "replace")


def pr_view(url: str) -> dict[str, Any]:
    out = gh(["pr", "view", url, "--json", PR_FIELDS])
    try:
        doc = json.loads(out)
    except ValueError:
        raise GhError(f"`gh pr view {url}` did not answer JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("state"), str):
        raise GhError(f"`gh pr view {url}` answered JSON without a state")
    return doc


def failed_log(repo: str, run_id: str, lines: int) -> str:
    text = gh(["run", "view", run_id, "--repo", repo, "--log-failed"])
    return tail(text, lines)


def _clean(text: str) -> str:
    """Printable text: escape sequences and control characters from CI logs never reach a terminal."""
    text = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", "", text)
    return "".join(c if c.isprintable() or c in "\n\t" else " " for c in text)


def tail(text: str, lines: int) -> str:
    kept = _clean(text).rstrip("\n").splitlines()[-max(lines, 1):]
    return "\n".join(line if len(line) <= LINE_LIMIT else line[:LINE_LIMIT] + "…" for line in kept)


# --- what a PR view means (pure) ------------------------------------------------------------------

def _items(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key)
    return [i for i in value if isinstance(i, dict)] if isinstance(value, list) else []


def findings(doc: dict[str, Any]) -> list[Finding]:
    """Pure: the failed checks, change requests and conflict a `gh pr view --json` document shows."""
    out = []
    for check in _items(doc, "statusCheckRollup"):
        if check.get("__typename") == "StatusContext":
            if str(check.get("state")).upper() not in FAILED_STATES:
                continue
            name, url = str(check.get("context") or "status"), str(check.get("targetUrl") or "")
        else:
            if str(check.get("conclusion")).upper() not in FAILED_CONCLUSIONS:
                continue
            name, url = str(check.get("name") or "check"), str(check.get("detailsUrl") or "")
        found = RUN_URL.fullmatch(url.split("?")[0])
        run = None
        if found:
            host, owner, repo, run_id, job_id = found.groups()
            run = (f"{owner}/{repo}" if host == "github.com" else f"{host}/{owner}/{repo}", run_id)
            ident = f"job{job_id}" if job_id else f"run{run_id}"
        else:
            ident = f"{name}@{url}"
        conclusion = check.get("conclusion") or check.get("state")
        out.append(Finding("ci_failed", f"check:{ident}", f"check {name} {str(conclusion).lower()}",
                           f"Check {_clean(name)} ({str(conclusion).lower()}) {url}".strip(), run))
    if str(doc.get("reviewDecision")).upper() != "APPROVED":
        for review in _items(doc, "reviews"):
            if str(review.get("state")).upper() != "CHANGES_REQUESTED":
                continue
            author = review.get("author") if isinstance(review.get("author"), dict) else {}
            who = str((author or {}).get("login") or "a reviewer")
            ident = review.get("id") or f"{who}@{review.get('submittedAt')}"
            out.append(Finding("changes_requested", f"review:{ident}", f"{who} requested changes",
                               f"Review by {_clean(who)} requesting changes:\n{_clean(str(review.get('body') or ''))}"))
    if str(doc.get("mergeable")).upper() == "CONFLICTING":
        head = str(doc.get("headRefOid") or "unknown-head")
        out.append(Finding("conflict", f"conflict:{head}", "the branch conflicts with its base",
                           "The pull request's branch has merge conflicts with its base branch: merge or rebase "
                           "onto the base, resolve them, and push."))
    return out


def message_for(template: str, found: list[Finding], logs: dict[str, str]) -> str:
    """The text sent to the agent: the template with `{summary}` and `{details}` filled in."""
    summary = "Your pull request needs work: " + "; ".join(f.summary for f in found) + "."
    parts = []
    for f in found:
        part = f.details
        if f.run and logs.get(f.run[1]):
            part += f"\nFailed log (last lines):\n{logs[f.run[1]]}"
        parts.append(part)
    details = "\n\n".join(parts)
    try:
        return template.format_map({"summary": summary, "details": details})
    except (KeyError, ValueError, IndexError, AttributeError):  # a template with other braces: still say it all
        return f"{summary}\n\n{details}"


# --- state ----------------------------------------------------------------------------------------

def _state_path() -> Path:
    path = reaction_state.state_file()
    paths.ensure_private_dir(path.parent)
    return path


def load_state() -> dict[str, Any]:
    try:
        doc = json.loads(_state_path().read_text())
        if isinstance(doc, dict):
            return doc
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("reactions: cannot read %s (%s); starting afresh", _state_path(), exc)
    return {}


def _save(state: dict[str, Any]) -> None:
    paths.atomic_write(_state_path(), json.dumps(state, separators=(",", ":")))


# --- one poll -------------------------------------------------------------------------------------

def candidates() -> list[SessionRecord]:
    return [r for r in store.all_sessions() if r.get("pr_url") and r["status"] not in ENDED]


def _receipt(record: SessionRecord, body: dict[str, Any]) -> None:
    from supervisor.govern import ledger

    ledger.append(paths.session_dir(record["session"]), "reaction", body)


def poll_session(cfg: Config, record: SessionRecord, state: dict[str, Any]) -> None:
    """React to one session's PR once; updates `state[session]` in place."""
    session, url = record["session"], str(record.get("pr_url") or "")
    mine = state.setdefault(session, {"handled": [], "attempts": 0})
    if mine.get("ended"):
        return
    if not PR_URL.fullmatch(url):
        if mine.get("bad_url") != url:
            log.warning("reactions: session %s's PR %r is not a pull request URL; it is not polled", session, url)
            mine["bad_url"] = url
        return
    try:
        doc = pr_view(url)
    except GhError as exc:
        log.warning("reactions: %s (%s): %s", session, url, exc)
        return
    pr_state = doc["state"].upper()
    if pr_state in ("MERGED", "CLOSED"):
        status = Status.MERGED if pr_state == "MERGED" else Status.CLOSED
        store.update(session, status=status)
        mine["ended"] = pr_state.lower()
        _receipt(record, {"event": f"{pr_state.lower()}_seen", "pr_url": url})
        return  # the notify service sees the status (pr_merged)
    react = cfg.data.get("reactions") or {}
    handled = set(mine["handled"])
    new = [f for f in findings(doc) if f.key not in handled]
    to_send = []
    for f in new:
        action = str(react.get(f.kind) or "send")
        if action == "ignore":
            mine["handled"].append(f.key)
        elif action == "notify":
            _notify(f.kind, record, f.summary, f.key, {"details": f.details})
            _receipt(record, {"event": "notified", "reaction": f.kind, "key": f.key, "pr_url": url})
            mine["handled"].append(f.key)
        else:
            to_send.append(f)
    if not to_send or mine.get("gave_up"):
        for f in to_send:  # after giving up, the rest is only told
            _notify(f.kind, record, f.summary, f.key, {"details": f.details, "gave_up": True})
            mine["handled"].append(f.key)
        return
    limit = react.get("max_attempts")
    max_attempts = int(limit) if isinstance(limit, int) and limit >= 0 else 3
    if mine["attempts"] >= max_attempts:
        _give_up(record, mine, to_send, max_attempts, url)
        return
    fresh = store.get(session)
    if store.is_live(fresh) and not _interactive(fresh):
        return  # a headless agent still at work: send at the next poll, once its run has ended
    logs = _logs([f for f in to_send if f.run], int(react.get("log_lines") or 80), session)
    message = message_for(str(react.get("message") or "{summary}\n\n{details}"), to_send, logs)
    from supervisor.sessions import control

    mine["attempts"] += 1
    try:
        _, live = control.send(cfg, session, message)
    except FatalError as exc:
        log.warning("reactions: %s: cannot send %s (%s); attempt %d of %d", session,
                    ", ".join(f.kind for f in to_send), exc, mine["attempts"], max_attempts)
        _receipt(record, {"event": "send_failed", "keys": [f.key for f in to_send], "error": str(exc)[:500],
                          "attempt": mine["attempts"], "pr_url": url})
        return
    mine["handled"] += [f.key for f in to_send]
    _receipt(record, {"event": "sent", "reactions": sorted({f.kind for f in to_send}),
                      "keys": [f.key for f in to_send], "live": live, "attempt": mine["attempts"],
                      "pr_url": url, "message_chars": len(message)})
    for f in to_send:
        _notify(f.kind, record, f"{f.summary}; sent to the agent", f.key, {"sent": True})


def _give_up(record: SessionRecord, mine: dict[str, Any], found: list[Finding], attempts: int, url: str) -> None:
    mine["gave_up"] = True
    mine["handled"] += [f.key for f in found]
    label = record.get("name") or record["session"]
    _receipt(record, {"event": "gave_up", "attempts": attempts, "keys": [f.key for f in found], "pr_url": url})
    _notify("failed", record, f"{label}: gave up on {url} after {attempts} attempts; still "
                              f"{', '.join(f.summary for f in found)}", f"reactions-gave-up:{url}",
            {"gave_up": True, "reactions": [f.kind for f in found]})


def _logs(found: list[Finding], lines: int, session: str) -> dict[str, str]:
    logs: dict[str, str] = {}
    for f in found:
        assert f.run is not None
        repo, run_id = f.run
        if run_id in logs:
            continue
        try:
            logs[run_id] = failed_log(repo, run_id, lines)
        except GhError as exc:
            log.warning("reactions: %s: no log for run %s (%s)", session, run_id, exc)
            logs[run_id] = ""
    return logs


def _interactive(record: SessionRecord) -> bool:
    from supervisor.launch import runtimes

    try:
        return bool(runtimes.of(record).interactive)
    except FatalError:
        return False


def _notify(event: str, record: SessionRecord, summary: str, key: str, detail: dict[str, Any]) -> None:
    try:
        notify.emit([notify.make_event(event, f"{record.get('name') or record['session']}: {summary}", key,
                                       dict(record), detail)])
    except (OSError, FatalError) as exc:
        log.warning("reactions: cannot queue the %s notification for %s (%s)", event, record["session"], exc)


def poll_once(cfg: Config) -> int:
    """One pass over every session with an open PR; returns how many were polled. Held under a lock so
    `ao reactions --once` and `ao watch` never both send the same thing."""
    polled = 0
    with file_lock(paths.ensure_private_dir(paths.ao_home() / "reactions") / ".lock"):
        state = load_state()
        for record in candidates():
            try:
                poll_session(cfg, record, state)
            except (FatalError, OSError) as exc:
                log.warning("reactions: %s: %s", record["session"], exc)
            polled += 1
            _save(state)  # after each session: a crash mid-pass never sends one twice
    return polled


def run(cfg: Config, stop: threading.Event) -> None:
    """The resident service (`ao watch`): poll every `reactions.poll_s` until `stop` is set."""
    poll_s = float((cfg.data.get("reactions") or {}).get("poll_s") or 60)
    while not stop.is_set():
        try:
            poll_once(cfg)
        except Exception as exc:  # never crash the resident process; said, then tried again
            log.warning("reactions: poll failed: %s: %s", type(exc).__name__, exc)
        stop.wait(poll_s)
