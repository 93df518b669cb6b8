"""The operator's live controls over one session: budget override, paused rules, revocation.

The channel is `operator.json` in the session dir. The agent can reach the guard's socket, so
operator commands never travel over it; the session dir is hidden by the jail, so only the user's
own `ao` writes this file. The guard server re-reads it when its mtime changes and fails closed on
a file it cannot read. Every change is written atomically under a lock and signed into the session's
ledger as an `operator` receipt.

Daily ceilings (`budget_usd_per_day`) sum the guard's spend of every session started that day: a
session's whole spend counts on the local day it started, even when it runs past midnight.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.locking import file_lock

CONTROL_FILE = "operator.json"
FORMAT = 1
LOCK_FILE = ".operator.lock"
MAX_PAUSE_S = 24 * 3600.0
MAX_CONTROL_BYTES = 1 << 20
# Rules that protect ao itself or decide when nothing else can; pausing one would open the guard.
UNPAUSABLE = ("unknown_payload", "ledger_unwritable", "fail_closed", "deadline", "bad_request")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class OperatorError(FatalError):
    """The operator's control file or request is not usable as it is."""


@dataclass
class Controls:
    """What the operator has set on one session; the defaults when nothing was."""

    budget_usd: float | None = None
    paused: dict[str, float] = field(default_factory=dict)  # rule name -> until (epoch seconds)
    revoked: bool = False
    revoked_at: float | None = None
    updated: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "budget_usd": self.budget_usd, "paused": dict(self.paused),
                "revoked": self.revoked, "revoked_at": self.revoked_at, "updated": self.updated}


def control_path(session_dir: Path) -> Path:
    return Path(session_dir) / CONTROL_FILE


def parse_duration(text: str, limit_s: float | None = None) -> float:
    """Seconds in `90s`, `10m`, `2h` or `1d`; at most `limit_s` when given."""
    found = _DURATION.fullmatch(text.strip().lower())
    if not found:
        raise OperatorError(f"bad duration {text!r}: give a number with a unit, e.g. 90s, 10m, 2h or 1d")
    seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    if seconds <= 0:
        raise OperatorError(f"bad duration {text!r}: it must be longer than zero")
    if limit_s is not None and seconds > limit_s:
        raise OperatorError(f"duration {text!r} is longer than the {limit_s / 3600:g}h allowed")
    return seconds


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _malformed(path: Path, why: str) -> OperatorError:
    return OperatorError(f"{path}: {why}; the guard denies every tool call until it is fixed (delete the file "
                         f"to drop all operator controls, or set them again with `ao budget` / `ao guard`)")


def from_json(raw: bytes, path: Path) -> Controls:
    """Strictly parse the control file's bytes; anything unexpected raises (the guard fails closed)."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise _malformed(path, f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _malformed(path, f"not an operator control file of format {FORMAT}")
    extra = set(doc) - {"format", "budget_usd", "paused", "revoked", "revoked_at", "updated"}
    if extra:
        raise _malformed(path, f"unknown key {sorted(extra)[0]!r}")
    budget, paused, revoked = doc.get("budget_usd"), doc.get("paused", {}), doc.get("revoked", False)
    if budget is not None and (not _number(budget) or budget < 0):
        raise _malformed(path, f"budget_usd must be null or a non-negative number, got {budget!r}")
    if not isinstance(paused, dict) or not all(isinstance(k, str) and _number(v) for k, v in paused.items()):
        raise _malformed(path, "paused must map rule names to epoch seconds")
    if not isinstance(revoked, bool):
        raise _malformed(path, f"revoked must be true or false, got {revoked!r}")
    for key in ("revoked_at", "updated"):
        if doc.get(key) is not None and not _number(doc[key]):
            raise _malformed(path, f"{key} must be null or epoch seconds, got {doc[key]!r}")
    return Controls(budget_usd=None if budget is None else float(budget),
                    paused={k: float(v) for k, v in paused.items()}, revoked=revoked,
                    revoked_at=doc.get("revoked_at"), updated=doc.get("updated"))


def read(session_dir: Path) -> Controls:
    """The session's controls; no file means none set. A malformed file raises OperatorError."""
    path = control_path(session_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return Controls()
    except OSError as exc:
        raise _malformed(path, f"cannot be opened ({exc.strerror})") from None
    try:
        raw = os.read(fd, MAX_CONTROL_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_CONTROL_BYTES:
        raise _malformed(path, f"larger than {MAX_CONTROL_BYTES} bytes")
    return from_json(raw, path)


def paused_now(controls: Controls, now: float | None = None) -> set[str]:
    """Rules whose pause has not run out; an expired pause restores its rule by itself."""
    now = time.time() if now is None else now
    return {rule for rule, until in controls.paused.items() if until > now}


def _change(session_dir: Path, action: str, detail: dict[str, Any], edit: Any) -> Controls:
    """Read, edit, write atomically and sign a receipt, all under the session's operator lock."""
    from supervisor.govern import ledger

    session_dir = Path(session_dir)
    if not session_dir.is_dir():
        raise OperatorError(f"no session directory {session_dir}")
    with file_lock(session_dir / LOCK_FILE):
        controls = read(session_dir)
        if controls.revoked and action != "revoke":
            raise OperatorError(f"session {session_dir.name} was revoked; its controls can no longer change")
        now = time.time()
        edit(controls, now)
        controls.paused = {r: u for r, u in controls.paused.items() if u > now}  # expired pauses drop out
        controls.updated = now
        paths.atomic_write(control_path(session_dir), json.dumps(controls.as_json(), sort_keys=True), mode=0o600)
        ledger.append(session_dir, "operator", {"action": action, **detail, "controls": controls.as_json(),
                                                "by": f"uid {os.getuid()}"})
    return controls


def note(session_dir: Path, action: str, detail: dict[str, Any]) -> None:
    """An operator receipt for a verb that reads (policy, approvals, export): who looked, and when."""
    from supervisor.govern import ledger

    if Path(session_dir).is_dir():
        ledger.append(Path(session_dir), "operator", {"action": action, **detail, "by": f"uid {os.getuid()}"})


def set_budget(session_dir: Path, budget_usd: float | None) -> Controls:
    """Override the session's budget ceiling (None: back to the policy's)."""
    if budget_usd is not None and (not _number(budget_usd) or budget_usd < 0):
        raise OperatorError(f"budget must be a non-negative number of USD, got {budget_usd!r}")

    def edit(controls: Controls, _now: float) -> None:
        controls.budget_usd = None if budget_usd is None else float(budget_usd)
    return _change(session_dir, "budget", {"budget_usd": budget_usd}, edit)


def pause(session_dir: Path, rule: str, until: float) -> Controls:
    """Suspend `rule` until the epoch time `until` (at most 24h from now)."""
    if not _number(until) or until <= time.time() or until > time.time() + MAX_PAUSE_S + 1:
        raise OperatorError(f"a pause must end within {MAX_PAUSE_S / 3600:g}h from now")

    def edit(controls: Controls, _now: float) -> None:
        controls.paused[rule] = float(until)
    return _change(session_dir, "pause", {"rule": rule, "until": until}, edit)


def resume(session_dir: Path, rule: str) -> Controls:
    """Restore a paused rule now."""
    def edit(controls: Controls, now: float) -> None:
        if controls.paused.get(rule, 0) <= now:
            active = ", ".join(sorted(paused_now(controls, now))) or "none"
            raise OperatorError(f"rule {rule!r} is not paused in session {Path(session_dir).name} "
                                f"(paused now: {active})")
        del controls.paused[rule]
    return _change(session_dir, "resume", {"rule": rule}, edit)


def revoke(session_dir: Path) -> Controls:
    """Deny every further tool call; revoking twice keeps the first time."""
    def edit(controls: Controls, now: float) -> None:
        if not controls.revoked:
            controls.revoked, controls.revoked_at = True, now
    return _change(session_dir, "revoke", {}, edit)


# --- rule names -------------------------------------------------------------------------------------

def pausable_rules(compiled: dict[str, Any]) -> list[str]:
    """The rule names of a compiled policy an operator may pause (never ao's protection of itself)."""
    from supervisor.govern import policy

    home = Path(str(compiled.get("ao_home") or paths.ao_home()))
    builtin = {r["glob"] for r in policy.builtin_paths(home)}
    names = [policy.rule_name("forbidden_commands", i) for i, _ in enumerate(compiled.get("forbidden_commands") or [])]
    names += [policy.rule_name("forbidden_paths", r["glob"]) for r in compiled.get("forbidden_paths") or []
              if r.get("glob") not in builtin]
    names += [policy.rule_name("approval_required", i) for i, _ in enumerate(compiled.get("approval_required") or [])]
    mcp = compiled.get("mcp") or {}
    if mcp.get("allow") or mcp.get("deny"):
        names.append("mcp")
    if compiled.get("budget_usd") is not None:
        names.append("budget_usd")
    return list(dict.fromkeys(names))


def check_rule(compiled: dict[str, Any], rule: str) -> None:
    """Refuse a rule name the session's policy does not have, or one that guards ao itself."""
    from supervisor.govern import policy

    home = Path(str(compiled.get("ao_home") or paths.ao_home()))
    if rule in UNPAUSABLE or rule in {policy.rule_name("forbidden_paths", r["glob"])
                                      for r in policy.builtin_paths(home)}:
        raise OperatorError(f"{rule!r} protects ao itself and cannot be paused")
    valid = pausable_rules(compiled)
    if rule not in valid:
        raise OperatorError(f"session {compiled.get('session')} has no rule {rule!r}; its rules: "
                            f"{', '.join(repr(r) for r in valid) or 'none'} (`ao policy SESSION` lists them)")


# --- daily ceilings -------------------------------------------------------------------------------

def _sessions(ao_home: Path) -> list[tuple[str, str | None, float]]:
    """(session, project, started_at) of every session in ao.db, read-only."""
    import sqlite3

    db = Path(ao_home) / "ao.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT session, project, started_at FROM sessions").fetchall()
    except sqlite3.Error as exc:
        raise OperatorError(f"cannot read the sessions in {db}: {exc}") from None
    finally:
        con.close()
    return [(str(s), p, float(t or 0)) for s, p, t in rows]


def daily_spend(ao_home: Path, day: date, project: str | None = None) -> Decimal:
    """USD the guards counted for sessions started on local `day` (of `project`, or all when None)."""
    from supervisor.govern import guard

    total = Decimal(0)
    for session, session_project, started in _sessions(ao_home):
        if datetime.fromtimestamp(started).date() != day or (project is not None and session_project != project):
            continue
        session_dir = Path(ao_home) / "sessions" / session
        try:
            state = guard.read_state(str(session_dir))
            spent = Decimal(str(state.get("spent_usd_exact") or state.get("spent_usd") or 0))
        except (guard.GuardError, InvalidOperation) as exc:
            raise OperatorError(f"cannot count the spend of session {session}: {exc}") from None
        total += max(spent, Decimal(0))
    return total


def daily_ceiling_problem(ao_home: Path, ceilings: dict[str, Any] | None, project: str | None,
                          day: date | None = None) -> str | None:
    """Why no more may be spent today under the compiled `budget_usd_per_day`, or None.

    Fails closed: spend that cannot be counted is a problem, not zero.
    """
    ceilings = ceilings or {}
    day = day or date.today()
    for level, scope in (("global", None), ("project", project)):
        ceiling = ceilings.get(level)
        if ceiling is None:
            continue
        try:
            spent = daily_spend(ao_home, day, scope)
        except OperatorError as exc:
            return f"the daily ceiling cannot be checked: {exc}"
        if spent >= Decimal(str(ceiling)):
            where = "all sessions" if scope is None else f"project {scope}"
            return (f"daily budget reached: {where} spent ${spent:.4f} of ${float(ceiling):.4f} on {day.isoformat()} "
                    f"(policy budget_usd_per_day, {level})")
    return None
