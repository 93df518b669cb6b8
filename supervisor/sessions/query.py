"""Read-only questions about sessions: status rows, exact usage, and the receipts stream.

Plain arguments in (records, a pricing table), plain rows out, so the CLI and a web board call the same
code. Callers that want up-to-date records run `reconcile` first; nothing here writes the store.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.launch import runtimes
from supervisor.records import SessionRecord


class UsageEntry(NamedTuple):
    """Tokens of one (session, model, hour bucket): what cost reports add up."""

    key: str  # the session id, or a rollout's thread id for `ao cost --all`
    project: str
    model: str
    bucket: str
    tokens: Mapping[str, int]


class SessionUsage(NamedTuple):
    tokens: dict[str, int]
    cost: Decimal
    models: list[str]


def rollout_of(record: SessionRecord) -> str | None:
    """The session's rollout, wherever its runtime keeps it (running sessions may have none yet)."""
    from supervisor import registry

    if record["runtime"] in registry.REMOTE_ROLLOUTS:
        return runtimes.of(record).rollout_path(record)
    from supervisor.launch.runtimes.local import local_rollout_path

    return local_rollout_path(record)


def _bucket_of_epoch(ts: float | None) -> str:
    from supervisor.observe import usage

    if not ts:
        return ""
    return usage.bucket_of(dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def _stored_tokens(record: SessionRecord) -> dict[str, int]:
    from supervisor.observe import usage

    stored: Mapping[str, Any] = record
    return {k: int(stored.get(k) or 0) for k in usage.TOKEN_KEYS}


def session_entries(records: list[SessionRecord]) -> tuple[list[UsageEntry], list[str]]:
    """Entries for ao's own sessions: from their rollouts, or their stored token columns before one exists."""
    from supervisor.observe import index

    rollouts = {r["session"]: rollout_of(r) for r in records}
    refreshed = index.refresh([p for p in rollouts.values() if p])
    entries = []
    for r in records:
        repo = r.get("repo")
        project = r.get("project") or (Path(repo).name if repo else r.get("workspace") or "")
        rollout = rollouts[r["session"]]
        file_usage = refreshed.files.get(os.path.abspath(rollout)) if rollout else None
        if file_usage is None:
            entries.append(UsageEntry(r["session"], project, r.get("model") or "",
                                      _bucket_of_epoch(r.get("started_at")), _stored_tokens(r)))
            continue
        for model, bucket, tokens in file_usage.sums:
            entries.append(UsageEntry(r["session"], project, model, bucket, tokens))
    return entries, refreshed.warnings


def codex_homes(records: list[SessionRecord] | None = None) -> list[Path]:
    """Every CODEX_HOME ao has used, the default one first: each local session's `launch.env.CODEX_HOME`
    (isolated homes live under the session dir) and any `codex-home` left in a session dir.

    Homes are told apart by their real path, so a symlinked or repeated home is read once, but each is
    kept as first written: the index keys files by that path, and `ao cost` for one session must find
    the same keys. Homes that no longer exist are skipped.
    """
    from supervisor import registry

    candidates = [paths.codex_home()]
    for r in store.all_sessions() if records is None else records:
        if r.get("runtime") in registry.REMOTE_ROLLOUTS:
            continue  # a remote session's CODEX_HOME is a path on another machine
        home = ((r.get("launch") or {}).get("env") or {}).get("CODEX_HOME")
        if isinstance(home, str) and os.path.isabs(home):
            candidates.append(Path(home))
    try:
        candidates += sorted(Path(e.path) / "codex-home" for e in os.scandir(paths.sessions_dir())
                             if e.is_dir(follow_symlinks=False))
    except OSError:
        pass
    homes: dict[str, Path] = {}
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real not in homes and os.path.isdir(real):
            homes[real] = candidate
    return list(homes.values())


def all_entries(codex_home: Path | None = None, commit_behind: bool = False,
                walked: tuple[list[str], dict[str, Any]] | None = None
                ) -> tuple[list[UsageEntry], list[str], Callable[[], None]]:
    """Entries for every rollout under sessions/ and archived_sessions/ of `codex_home`, or of every
    CODEX_HOME ao has used (`codex_homes`) when none is given; and the index's `settle` (see
    index.refresh's `commit_behind`), to call before the process ends.

    `walked`: (folders, path -> stat) of a walk just made (answer_cache.Tree). A home whose two folders
    it covers, spelt the same, is taken from it instead of being walked and statted again."""
    from supervisor.observe import codex_format as cf
    from supervisor.observe import index

    homes = [codex_home] if codex_home else codex_homes()
    walked_roots, walked_stats = walked if walked is not None else ([], {})
    found: list[str] = []
    roots: list[Path] = []
    for home in homes:
        folders = (home / cf.SESSIONS_DIR, home / cf.ARCHIVED_DIR)
        roots += folders
        if all(str(f) in walked_roots for f in folders):
            under = tuple(str(f) + os.sep for f in folders)
            found += sorted(p for p in walked_stats if p.startswith(under))  # as index.discover lists them
        else:
            found += index.discover(home)
    refreshed = index.refresh(found, prune_roots=roots, commit_behind=commit_behind, statted=walked_stats)
    try:
        entries = [UsageEntry(f.thread_id or os.path.basename(f.path), f.cwd or "", model, bucket, tokens)
                   for f, model, bucket, tokens in index.iter_sums(refreshed.files.values())]
    except BaseException:
        refreshed.settle()
        raise
    return entries, refreshed.warnings, refreshed.settle


def sessions_usage(records: list[SessionRecord], table: Mapping[str, Any]) -> dict[str, SessionUsage]:
    """Session id -> exact tokens, cost and models; one index pass for all."""
    from supervisor.observe import usage

    entries, _ = session_entries(records)
    by_session: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(usage.empty_tokens))
    for entry in entries:
        usage.add_tokens(by_session[entry.key][entry.model], entry.tokens)
    out = {}
    for r in records:
        by_model = by_session.get(r["session"], {})
        tokens, cost, _ = usage.price_models(by_model, table)
        out[r["session"]] = SessionUsage(tokens, cost, sorted(m for m in by_model if m))
    return out


def cached_sessions_usage(records: list[SessionRecord], table: Mapping[str, Any]) -> dict[str, SessionUsage]:
    """`sessions_usage`, stored by `observe.answer_cache` while none of its inputs changed: the sessions'
    rollouts, ao.db, the usage index's identity, the prices and the records' own token columns. The
    same inputs as the per-session `ao cost` answer; `ao status` skips the index when they hold (P4)."""
    from supervisor.observe import answer_cache

    rollouts = {r["session"]: rollout_of(r) for r in records}
    db = str(paths.db_path())
    # what a record without a rollout contributes, and which sessions are asked (the filters pick them)
    facts = [json.dumps([[r["session"], rollouts[r["session"]], r.get("model"), r.get("started_at"),
                          r.get("repo"), r.get("project"), r.get("workspace"), _stored_tokens(r)] for r in records],
                        default=str)]
    try:
        st = os.stat(paths.ao_home() / "index.db")  # index.index_path(), as cost_view._index_fact reads it
        facts.append(f"index {st.st_dev},{st.st_ino}")
    except OSError:
        facts.append("index none")
    files = sorted({os.path.abspath(p) for p in rollouts.values() if p}) + [db, db + "-wal"]
    prices = sorted((str(k), repr(v)) for k, v in table.items())

    def compute() -> str:
        found = sessions_usage(records, table)
        return json.dumps({k: [u.tokens, str(u.cost), u.models] for k, u in found.items()})

    text = answer_cache.answer("status-usage", {"prices": prices},
                               lambda _hint: answer_cache.Depends(files, facts), compute)
    return {k: SessionUsage(v[0], Decimal(v[1]), v[2]) for k, v in json.loads(text).items()}


STATUS_KEYS = ("session", "name", "project", "issue", "workspace", "runtime", "status", "activity", "branch",
               "pr_url", "pr_number", "thread_id", "model", "tokens", "cost_usd", "pid", "rollout_path",
               "started_at", "updated_at")
# `budget_warning` is raised at this share of the budget, before the guard has to stop the agent
BUDGET_WARNING_SHARE = 0.8
_PR_NUMBER = re.compile(r"/pull/(\d+)(?:[/?#]|$)")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def money(value: Decimal) -> float:
    """Dollars as the JSON contract carries them: rounded to a millionth."""
    return float(round(value, 6))


def pr_number_of(record: Mapping[str, Any]) -> int | None:
    """The PR's number as the wrappers recorded it, else read from its url (`.../pull/42`)."""
    number = record.get("pr_number")
    if isinstance(number, int) and not isinstance(number, bool):
        return number
    found = _PR_NUMBER.search(str(record.get("pr_url") or ""))
    return int(found.group(1)) if found else None


def budget_of(session: str, launch: Mapping[str, Any] | None = None) -> float | None:
    """The session's budget in USD: the operator's override (`operator.json`), else its compiled policy's
    (recorded in the launch since this ao; older sessions' policy.json is read).

    Both files live in the session dir, which the jail hides from the agent. A file that is missing,
    unreadable or not the expected JSON object gives no budget rather than a failing `ao status`.
    """
    from supervisor.govern import guard

    sdir = paths.session_dir(session)
    names = ["operator.json"]
    if launch is None or "budget_usd" not in launch:
        names.append("policy.json")
    for name in names:
        try:
            doc = json.loads(guard.read_regular(str(sdir / name)))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, guard.GuardError):
            continue
        value = doc.get("budget_usd") if isinstance(doc, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
    value = (launch or {}).get("budget_usd")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def budget_warning(spent_usd: float | None, cost_usd: float, budget_usd: float | None) -> bool:
    """Pure: the larger of the guard's spend and the rollout's exact cost has reached 80% of the budget."""
    if budget_usd is None:
        return False
    return max(spent_usd or 0.0, cost_usd) >= BUDGET_WARNING_SHARE * budget_usd


def status_row(record: SessionRecord, tokens: Mapping[str, int], cost: Decimal,
               now: float | None = None) -> dict[str, Any]:
    """The public `ao status --json` row; tokens and cost come priced per response from the rollout."""
    from supervisor.sessions.fleet import project_of

    row: dict[str, Any] = {key: record.get(key) for key in STATUS_KEYS}
    row["project"] = project_of(record) or None
    row["pr_number"] = pr_number_of(record)
    started = record.get("started_at")
    row["age_s"] = None if started is None else max(0, int((now or time.time()) - float(started)))
    row["tokens"] = dict(tokens)
    row["cost_usd"] = money(cost)
    row["started_at"] = iso(record.get("started_at"))
    row["updated_at"] = iso(record.get("updated_at"))
    # the reason in words for a failed, blocked or stalled run; a live working run has none to show
    row["error"] = record.get("error")
    row["jailed"] = bool((record.get("launch") or {}).get("jail"))
    row["node"] = record.get("node")  # the Ray node a remote runtime placed the agent on; null when local
    return row


def status_rows(records: list[SessionRecord], table: Mapping[str, Any],
                usage_of: Any = None) -> list[dict[str, Any]]:
    """The `ao status --json` rows: exact tokens and cost from each session's rollout, live activity, and
    `attention`: why a human is needed now (approval, input, stalled, failed, budget) or null."""
    from supervisor.govern import guard
    from supervisor.observe import activity
    from supervisor.sessions import reaction_state

    # `usage_of` (records, table) -> sessions_usage's answer: `ao watch` passes one that reuses it while
    # inotify saw no change to a rollout or to ao.db
    usage_by_session = (usage_of or sessions_usage)(records, table)
    home = str(paths.ao_home())
    gave_up = reaction_state.gave_up_sessions()  # PR reactions that ran out of attempts need a human
    now = time.time()
    rows = []
    for record in records:
        used = usage_by_session[record["session"]]
        row = status_row(record, used.tokens, used.cost, now)
        row["approval_id"] = None
        budget_blocked = False
        gov = guard.session_governance(home, record["session"])
        spent = gov.get("spent_usd")
        row["spent_usd"] = float(spent) if isinstance(spent, (int, float)) and not isinstance(spent, bool) else None
        row["budget_usd"] = budget_of(record["session"], record.get("launch"))
        row["budget_warning"] = budget_warning(row["spent_usd"], row["cost_usd"], row["budget_usd"])
        if store.is_live(record):  # approvals and budget stops only matter while the agent runs
            row["approval_id"] = gov["waiting_input"]
            budget_blocked = bool(gov["budget_blocked"])
            row["activity"] = activity.activity(record.get("rollout_path"), True,
                                                pending_approval=bool(gov["waiting_input"]),
                                                guard_blocked=budget_blocked) or row["activity"]
        interactive = runtimes.of(record).interactive if store.is_live(record) else False
        row["attention"] = attention_of(row["status"], row["activity"], row["approval_id"], budget_blocked,
                                        store.is_live(record), interactive,
                                        record["session"] in gave_up and row["status"] == "pr_open")
        rows.append(row)
    return rows


def attention_of(status: str, activity: str | None, approval_id: str | None, budget_blocked: bool,
                 live: bool, interactive: bool, reactions_gave_up: bool = False) -> str | None:
    """Pure: what a human must do for this session, most urgent first, or None."""
    from supervisor.records import Attention, Status

    if live and approval_id:
        return Attention.APPROVAL.value
    if status == Status.BLOCKED or (live and budget_blocked):
        return Attention.BUDGET.value
    if status == Status.STALLED:
        return Attention.STALLED.value
    if status == Status.LOST:
        return Attention.LOST.value  # its Ray node died: `ao resume` continues it on another node
    if status == Status.FAILED or reactions_gave_up:  # CI or review kept failing after max_attempts sends
        return Attention.FAILED.value
    if live and interactive and activity in ("idle", "waiting_input"):
        return Attention.INPUT.value  # the TUI's turn ended: the agent waits for its user
    return None


LEDGER_KINDS = ("wrapper_event", "guard_decision", "approval", "budget_stop", "budget_exhausted", "budget_warning",
                "operator", "reaction")


def ledger_receipts(session: str) -> list[dict[str, Any]]:
    """Wrapper events, guard decisions, approvals and budget stops from the session's signed ledger.

    `provenance` says whose word a row is: "rollout" (codex's rollout lists the call), "unconfirmed"
    (a hook request codex's rollout does not list), "claim" (the agent's side says so), or None (no
    hook request behind it, or written before ao recorded provenance). Tool calls come from the
    rollout itself; a PostToolUse receipt codex did not confirm is listed as a `tool_call_claim`.
    """
    from supervisor.govern import ledger

    sdir = paths.session_dir(session)
    if not (sdir / "ledger.jsonl").exists() and not (sdir / "ledger.spool.jsonl").exists():
        return []
    ledger.ingest_wrapper_events(sdir)
    out = []
    for entry in ledger.read(sdir):
        body: dict[str, Any] = entry["body"] if isinstance(entry.get("body"), dict) else {}
        kind = entry.get("kind")
        if kind == "tool_call" and ledger.is_claim(body):
            kind = "tool_call_claim"
        elif kind not in LEDGER_KINDS:
            continue
        at = dt.datetime.fromtimestamp(float(entry["ts"]), dt.timezone.utc).isoformat(timespec="milliseconds")
        provenance = body.get("provenance") if isinstance(body.get("provenance"), str) else None
        out.append({"kind": kind, "at": at.replace("+00:00", "Z"), "seq": entry.get("seq"),
                    "event": body.get("event"), "decision": body.get("decision"),
                    "provenance": provenance or ("claim" if ledger.is_claim(body) else None),
                    "detail": {k: v for k, v in body.items() if k not in ("event", "decision")},
                    "prompt_hash": entry.get("prompt_hash"),
                    "plan_hash": body.get("plan_hash") if isinstance(body.get("plan_hash"), str) else None})
    return out


class ReceiptStream(NamedTuple):
    session: str
    rollout_path: str
    receipts: list[dict[str, Any]]
    warnings: list[str]


def receipts(record: SessionRecord) -> ReceiptStream:
    """One receipt per tool call from the rollout, merged in time order with the ledger's receipts."""
    from supervisor.observe import receipts as receipts_mod

    path = rollout_of(record)
    if path is None:
        raise FatalError(f"session {record['session']} has no rollout yet; it appears once codex has started")
    warnings: list[str] = []
    stream = [{"kind": "tool_call", "at": r.started_at, **r.as_dict()}
              for r in receipts_mod.read_receipts(path, warnings)]
    ledger_rows = ledger_receipts(record["session"])
    # a rollout call carries the plan its PreToolUse decision was made under (the guard's word)
    plan_of_call = {r["detail"].get("tool_use_id"): r["plan_hash"] for r in ledger_rows
                    if r["kind"] == "guard_decision" and r["event"] == "PreToolUse" and r["provenance"] == "rollout"}
    for row in stream:
        row["plan_hash"] = plan_of_call.get(row.get("call_id"))
    stream += ledger_rows
    stream.sort(key=lambda r: r["at"] or "")
    return ReceiptStream(record["session"], path, stream, warnings)
