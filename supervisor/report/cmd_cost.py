"""`ao cost`: exact usage and cost from rollouts, through the usage index."""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

import click

from supervisor.errors import FatalError
from supervisor.report.common import config_of

# The store, the usage index, pricing and the report builder are imported only when an answer has to
# be computed: a cached answer (`observe.answer_cache`) is served without them (issue #13).

GROUPS = ("session", "day", "month", "project", "model")
BAR_WIDTH = 40
_LOCALTIME = "/etc/localtime"


def __getattr__(name: str) -> Any:
    # `cmd_cost.build_report` still works for callers, without importing the builder at start-up
    if name == "build_report":
        from supervisor.report.cost_report import build_report

        return build_report
    raise AttributeError(name)


def _local_zone() -> list[Any]:
    """What "local time" means right now: $TZ, and the zone file /etc/localtime leads to."""
    try:
        st = os.stat(_LOCALTIME)
        zone: list[Any] = [os.path.realpath(_LOCALTIME), st.st_ino, st.st_size, st.st_mtime_ns]
    except OSError:
        zone = [None]
    return [os.environ.get("TZ"), *zone]


def _db_files() -> list[str]:
    from supervisor import paths

    db = str(paths.db_path())
    return [db, db + "-wal"]


def _index_fact() -> str:
    # which usage index the answer came from: a rebuilt index (deleted, or a new schema) may credit a
    # fork's tokens differently, so its identity (not its stat: every refresh writes it) is an input.
    # The name is index.index_path()'s, repeated here so the cached path does not import the index.
    from supervisor import paths

    try:
        st = os.stat(paths.ao_home() / "index.db")
        return f"index {st.st_dev},{st.st_ino}"
    except OSError:
        return "index none"


def _all_depends(hint: Any) -> Any:
    """Inputs of `ao cost --all`: every rollout in every home `query.codex_homes` could pick.

    The homes come from the sessions table (each launch's CODEX_HOME), the default home and the
    sessions dir. The table is read only when ao.db changed since the hint was stored; the candidate
    list is a superset of what codex_homes keeps (remote sessions too), so it can only over-invalidate.
    """
    from supervisor import paths
    from supervisor.observe import answer_cache, codex_format

    db_files = _db_files()
    db_stat = answer_cache.stat_facts(db_files)
    if isinstance(hint, dict) and isinstance(hint.get("launch_homes"), list) \
            and answer_cache.settled(hint.get("db"), db_files):
        launch_homes = [h for h in hint["launch_homes"] if isinstance(h, str)]
    else:
        from supervisor import store

        launch_homes = []
        for r in store.all_sessions():
            home = ((r.get("launch") or {}).get("env") or {}).get("CODEX_HOME")
            if isinstance(home, str) and os.path.isabs(home) and home not in launch_homes:
                launch_homes.append(home)
    candidates = [str(paths.codex_home()), *launch_homes]
    try:
        with os.scandir(paths.sessions_dir()) as it:
            candidates += sorted(os.path.join(e.path, "codex-home") for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        pass
    homes: dict[str, str] = {}
    facts = [_index_fact()]
    for candidate in candidates:
        real = os.path.realpath(candidate)
        is_dir = os.path.isdir(real)
        facts.append(f"home {candidate}\0{real}\0{is_dir}")
        if is_dir and real not in homes:
            homes[real] = candidate
    files = answer_cache.rollouts_under(homes.values(), codex_format.is_rollout_name)
    return answer_cache.Depends([*files, *db_files], facts, {"db": db_stat, "launch_homes": launch_homes})


def _rollout_is_settled(record: Mapping[str, Any], rollout: str | None) -> bool:
    """Whether `query.rollout_of` gives the same answer while the record is unchanged: the stored
    rollout path while it exists (its disappearance shows in the stats), or none with no thread to
    search for. A rollout found by searching the home can change without the record changing."""
    from supervisor import registry

    if record.get("runtime") in registry.REMOTE_ROLLOUTS:
        return False
    stored = record.get("rollout_path")
    if rollout is not None:
        return rollout == stored
    return not stored and not record.get("thread_id")


def _sessions_depends(hint: Any) -> Any:
    """Inputs of the per-session `ao cost`: the sessions table and each session's rollout."""
    from supervisor.observe import answer_cache

    db_files = _db_files()
    db_stat = answer_cache.stat_facts(db_files)  # before the table is read: a later write shows
    if isinstance(hint, dict) and hint.get("settled") is True and isinstance(hint.get("rollouts"), list) \
            and answer_cache.settled(hint.get("db"), db_files):
        rollouts = [p for p in hint["rollouts"] if isinstance(p, str)]
        settled = True
    else:
        from supervisor import store
        from supervisor.sessions import query

        records = store.all_sessions()
        found = [(r, query.rollout_of(r)) for r in records]
        rollouts = sorted({os.path.abspath(p) for _, p in found if p})
        settled = all(_rollout_is_settled(r, p) for r, p in found)
    return answer_cache.Depends([*rollouts, *db_files], [_index_fact()],
                                {"db": db_stat, "rollouts": rollouts, "settled": settled})


def _compute(all_rollouts: bool, by: str, tz: dt.tzinfo | None, since: str | None, until: str | None,
             overrides: Any) -> str:
    from supervisor import store
    from supervisor.observe import pricing
    from supervisor.report.common import json_text
    from supervisor.report.cost_report import build_report
    from supervisor.sessions import query

    table = pricing.load_table(overrides)
    if all_rollouts:
        entries, warnings = query.all_entries()
    else:
        entries, warnings = query.session_entries(store.all_sessions())
    return json_text(build_report(entries, by, tz, since, until, table, warnings))


def cached_report(all_rollouts: bool, by: str, tz: dt.tzinfo | None, tz_name: str | None, since: str | None,
                  until: str | None, overrides: Any) -> str:
    """The `ao cost --json` text: stored if no rollout, session, home, price or zone changed, else fresh."""
    from supervisor.observe import answer_cache

    args = {"by": by, "since": since, "until": until, "timezone": tz_name,
            "local_zone": None if tz_name else _local_zone(), "pricing": overrides,
            "codex_home": os.environ.get("CODEX_HOME")}
    return answer_cache.answer("cost-all" if all_rollouts else "cost-sessions", args,
                               _all_depends if all_rollouts else _sessions_depends,
                               lambda: _compute(all_rollouts, by, tz, since, until, overrides))


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
    from supervisor.report import views

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
    overrides = config_of(ctx).data.get("pricing")
    text = cached_report(all_rollouts, by, tz, tz_name, since, until, overrides)
    if as_json:
        click.echo(text)
        return
    import orjson

    report = orjson.loads(text)
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
