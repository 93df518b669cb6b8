"""`ao cost` and `ao receipts`: exact usage and cost from rollouts, through the usage index."""
from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

import click

from supervisor import config as config_mod, paths, store
from supervisor.errors import FatalError
from supervisor.observe import index, locate, pricing, receipts as receipts_mod, usage
from supervisor.report import views

GROUPS = ("session", "day", "month", "project", "model")
BAR_WIDTH = 40


def parse_timezone(name: str | None) -> dt.tzinfo | None:
    """None means the machine's local time (with its DST rules); Z/UTC, ±HH:MM and IANA names work."""
    if not name:
        return None
    if name.upper() in ("Z", "UTC"):
        return dt.timezone.utc
    if name[0] in "+-":
        try:
            hours, _, minutes = name[1:].partition(":")
            delta = dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
        except ValueError:
            raise FatalError(f"--timezone {name!r}: write an offset as +HH:MM") from None
        return dt.timezone(-delta if name[0] == "-" else delta)
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name)
    except Exception:
        raise FatalError(f"unknown --timezone {name!r}; use Z, an offset like +02:00, or a name like Europe/Paris") from None


def parse_date(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise FatalError(f"{option} {value!r}: expected a date as YYYY-MM-DD") from None


def _local_date(bucket: str, tz: dt.tzinfo | None, cache: dict[str, str]) -> str:
    found = cache.get(bucket)
    if found is None:
        found = cache[bucket] = usage.local_date(bucket, tz)
    return found


def build_report(entries: Iterable[tuple[str, str, str, str, Mapping[str, int]]], by: str, tz: dt.tzinfo | None,
                 since: str | None, until: str | None, table: Mapping[str, pricing.Price],
                 warnings: list[str] | None = None) -> dict[str, Any]:
    """Pure: (session key, project, model, bucket, tokens) entries in; the `ao cost --json` document out."""
    dates: dict[str, str] = {}
    per_row: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(usage.empty_tokens))
    order: dict[str, str] = {}
    for session, project, model, bucket, tokens in entries:
        day = _local_date(bucket, tz, dates)
        if (since or until) and (day == "unknown" or (since and day < since) or (until and day > until)):
            continue
        key = {"session": session, "project": project, "model": model or "unknown",
               "day": day, "month": day[:7] if day != "unknown" else day}[by]
        usage.add_tokens(per_row[key][model], tokens)
        order[key] = min(order.get(key, bucket or "~"), bucket or "~")
    rows, total_models = [], defaultdict(usage.empty_tokens)
    unpriced: set[str] = set()
    total_cost = Decimal(0)
    keys = sorted(per_row, key=lambda k: (order[k], k)) if by == "session" else sorted(per_row)
    for key in keys:
        tokens, cost, missing = usage.price_models(per_row[key], table)
        unpriced.update(missing)
        total_cost += cost
        for model, t in per_row[key].items():
            usage.add_tokens(total_models[model], t)
        rows.append({"key": key, "tokens": tokens, "cost_usd": views.money(cost),
                     "models": sorted(m or "unknown" for m in per_row[key])})
    totals, _, _ = usage.price_models(total_models, table)
    return {"rows": rows, "totals": {"tokens": totals, "cost_usd": views.money(total_cost)},
            "unpriced_models": sorted(unpriced), "warnings": list(dict.fromkeys(warnings or []))}


def _bucket_of_epoch(ts: float | None) -> str:
    if not ts:
        return ""
    return usage.bucket_of(dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def rollout_of(record: Mapping[str, Any]) -> str | None:
    """The session's rollout: the stored path, else found by thread id (running sessions have none yet)."""
    stored = record.get("rollout_path")
    if stored and os.path.exists(stored):
        return str(stored)
    thread = record.get("thread_id")
    if not thread:
        return None
    launch = record.get("launch") or {}
    home = (launch.get("env") or {}).get("CODEX_HOME") if isinstance(launch, dict) else None
    found = locate.find_rollout(thread, Path(home) if home else paths.codex_home(), record.get("started_at"))
    return str(found) if found else None


def _stored_tokens(record: Mapping[str, Any]) -> dict[str, int]:
    return {k: int(record.get(k) or 0) for k in usage.TOKEN_KEYS}


def session_entries(records: list[Mapping[str, Any]]) -> tuple[list[tuple[str, str, str, str, Mapping[str, int]]], list[str]]:
    """Entries for ao's own sessions: from their rollouts, or their stored token columns before one exists."""
    rollouts = {r["session"]: rollout_of(r) for r in records}
    refreshed = index.refresh([p for p in rollouts.values() if p])
    entries = []
    for r in records:
        project = r.get("project") or (Path(r["repo"]).name if r.get("repo") else r.get("workspace") or "")
        file_usage = refreshed.files.get(os.path.abspath(rollouts[r["session"]])) if rollouts[r["session"]] else None
        if file_usage is None:
            entries.append((r["session"], project, r.get("model") or "", _bucket_of_epoch(r.get("started_at")),
                            _stored_tokens(r)))
            continue
        for model, bucket, tokens in file_usage.sums:
            entries.append((r["session"], project, model, bucket, tokens))
    return entries, refreshed.warnings


def all_entries(codex_home: Path | None = None) -> tuple[list[tuple[str, str, str, str, Mapping[str, int]]], list[str]]:
    """Entries for every rollout under $CODEX_HOME/sessions and archived_sessions."""
    home = codex_home or paths.codex_home()
    refreshed = index.refresh(index.discover(home), prune_roots=[home / "sessions", home / "archived_sessions"])
    entries = []
    for f, model, bucket, tokens in index.iter_sums(refreshed.files.values()):
        entries.append((f.thread_id or Path(f.path).name, f.cwd or "", model, bucket, tokens))
    return entries, refreshed.warnings


def sessions_usage(records: list[Mapping[str, Any]], table: Mapping[str, pricing.Price]
                   ) -> dict[str, tuple[dict[str, int], Decimal, list[str]]]:
    """Session id -> (tokens, exact cost, models), one index pass for all (for `ao status`)."""
    entries, _ = session_entries(records)
    by_session: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(usage.empty_tokens))
    for session, _, model, _, tokens in entries:
        usage.add_tokens(by_session[session][model], tokens)
    out = {}
    for r in records:
        by_model = by_session.get(r["session"], {})
        tokens, cost, _ = usage.price_models(by_model, table)
        out[r["session"]] = (tokens, cost, sorted(m for m in by_model if m))
    return out


def session_usage(record: Mapping[str, Any], table: Mapping[str, pricing.Price]) -> tuple[dict[str, int], Decimal, list[str]]:
    """Exact tokens, cost and models of one ao session; its stored columns before a rollout exists."""
    return sessions_usage([record], table)[record["session"]]


def _table_text(report: Mapping[str, Any]) -> str:
    return views.cost_table(report["rows"], report["totals"])


def bar_chart(rows: list[Mapping[str, Any]], width: int = BAR_WIDTH) -> str:
    top = max((r["cost_usd"] for r in rows), default=0) or 1
    lines = []
    for r in rows:
        filled = int(round(r["cost_usd"] / top * width))
        lines.append(f"{r['key']:<10} {'█' * filled}{'·' * (width - filled)} ${r['cost_usd']:.4f}")
    return "\n".join(lines)


@click.command(name="cost")
@click.option("--by", type=click.Choice(GROUPS), default="session", show_default=True, help="How to group rows.")
@click.option("--since", metavar="YYYY-MM-DD", help="First day to count (inclusive).")
@click.option("--until", metavar="YYYY-MM-DD", help="Last day to count (inclusive).")
@click.option("--timezone", "tz_name", metavar="ZONE", help="Timezone for days: Z, +HH:MM or a name (default: local).")
@click.option("--all", "all_rollouts", is_flag=True, help="Every codex rollout under $CODEX_HOME, not only ao's sessions.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cost(ctx: click.Context, by: str, since: str | None, until: str | None, tz_name: str | None,
         all_rollouts: bool, as_json: bool) -> None:
    """Exact tokens and cost from codex rollouts, per session, day, month, project or model."""
    since, until = parse_date(since, "--since"), parse_date(until, "--until")
    if since and until and since > until:
        raise FatalError(f"--since {since} is after --until {until}")
    tz = parse_timezone(tz_name)
    cfg = config_mod.load(ctx.find_root().obj.get("config_path"))
    table = pricing.load_table(cfg.data.get("pricing"))
    if all_rollouts:
        entries, warnings = all_entries()
    else:
        entries, warnings = session_entries(store.all_sessions())
    report = build_report(entries, by, tz, since, until, table, warnings)
    if as_json:
        from supervisor.report.cli import json_text
        click.echo(json_text(report))
        return
    if not report["rows"]:
        click.echo("no usage found" + ("" if all_rollouts else "; `ao cost --all` reads every codex rollout"))
    else:
        click.echo(_table_text(report))
        if by == "day":
            click.echo("")
            click.echo(bar_chart(report["rows"]))
    for model in report["unpriced_models"]:
        click.echo(f"warning: no price known for model {model!r}; counted as $0. Add it under `pricing:`.", err=True)
    for warning in report["warnings"]:
        click.echo(f"warning: {warning}", err=True)


@click.command(name="receipts")
@click.argument("session")
@click.option("--json", "as_json", is_flag=True)
def receipts(session: str, as_json: bool) -> None:
    """One receipt per tool call of SESSION: tool, arguments (secrets redacted), exit code, times."""
    record = store.get(session)
    path = rollout_of(record)
    if path is None:
        raise FatalError(f"session {record['session']} has no rollout yet; it appears once codex has started")
    warnings: list[str] = []
    stream = [{"kind": "tool_call", "at": r.started_at, **r.as_dict()} for r in receipts_mod.read_receipts(path, warnings)]
    stream += ledger_receipts(record["session"])
    stream.sort(key=lambda r: r["at"] or "")
    if as_json:
        from supervisor.report.cli import json_text
        click.echo(json_text({"session": record["session"], "rollout_path": path, "receipts": stream,
                              "warnings": warnings}))
        return
    from tabulate import tabulate
    body = [[r["at"] or "-", r["kind"], r.get("tool") or r.get("event") or "-",
             "-" if r.get("exit_code") is None else str(r["exit_code"]), r.get("status") or r.get("decision") or "-",
             _short(r.get("arguments") if r["kind"] == "tool_call" else r.get("detail"))] for r in stream]
    click.echo(tabulate(body, headers=["AT", "KIND", "WHAT", "EXIT", "STATUS", "DETAIL"], tablefmt="simple",
                        disable_numparse=True) if body else f"no tool calls in {path}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


LEDGER_KINDS = ("wrapper_event", "guard_decision", "approval", "budget_stop")


def ledger_receipts(session: str) -> list[dict[str, Any]]:
    """Wrapper events, guard decisions, approvals and budget stops from the session's signed ledger."""
    from supervisor.govern import ledger
    sdir = paths.session_dir(session)
    if not (sdir / "ledger.jsonl").exists() and not (sdir / "ledger.spool.jsonl").exists():
        return []
    ledger.ingest_wrapper_events(sdir)
    out = []
    for entry in ledger.read(sdir):
        if entry.get("kind") not in LEDGER_KINDS:
            continue
        body = entry.get("body") if isinstance(entry.get("body"), dict) else {}
        at = dt.datetime.fromtimestamp(float(entry["ts"]), dt.timezone.utc).isoformat(timespec="milliseconds")
        out.append({"kind": entry["kind"], "at": at.replace("+00:00", "Z"), "seq": entry.get("seq"),
                    "event": body.get("event"), "decision": body.get("decision"),
                    "detail": {k: v for k, v in body.items() if k not in ("event", "decision")},
                    "prompt_hash": entry.get("prompt_hash")})
    return out


def _short(arguments: Any, width: int = 70) -> str:
    text = arguments.get("cmd") if isinstance(arguments, dict) and isinstance(arguments.get("cmd"), str) else None
    text = text if text is not None else json.dumps(arguments) if not isinstance(arguments, str) else arguments
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
