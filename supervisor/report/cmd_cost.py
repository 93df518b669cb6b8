"""`ao cost`: exact usage and cost from rollouts, through the usage index."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import click

from supervisor import store
from supervisor.errors import FatalError
from supervisor.observe import pricing
from supervisor.report import views
from supervisor.report.common import config_of, print_json
from supervisor.report.cost_report import build_report
from supervisor.sessions import query

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
        raise FatalError(f"unknown --timezone {name!r}; use Z, an offset like +02:00, "
                         "or a name like Europe/Paris") from None


def parse_date(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise FatalError(f"{option} {value!r}: expected a date as YYYY-MM-DD") from None


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
@click.option("--all", "all_rollouts", is_flag=True,
              help="Every codex rollout in every CODEX_HOME ao has used (isolated session homes too), "
                   "not only ao's sessions.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cost(ctx: click.Context, by: str, since: str | None, until: str | None, tz_name: str | None,
         all_rollouts: bool, as_json: bool) -> None:
    """Exact tokens and cost from codex rollouts, per session, day, month, project or model."""
    since, until = parse_date(since, "--since"), parse_date(until, "--until")
    if since and until and since > until:
        raise FatalError(f"--since {since} is after --until {until}")
    tz = parse_timezone(tz_name)
    table = pricing.load_table(config_of(ctx).data.get("pricing"))
    if all_rollouts:
        entries, warnings = query.all_entries()
    else:
        entries, warnings = query.session_entries(store.all_sessions())
    report = build_report(entries, by, tz, since, until, table, warnings)
    if as_json:
        print_json(report)
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
