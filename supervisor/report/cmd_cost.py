"""`ao cost`: exact usage and cost from rollouts, through the usage index.

The arguments, the computation and the printed text live in `cost_view` (no click), which the fast
path (`entry`) and `ao watch` use too; this is the click command for everything else.
"""
from __future__ import annotations

from typing import Any

import click

from supervisor.errors import FatalError
from supervisor.report.common import config_of
from supervisor.report.cost_view import (  # noqa: F401  (re-exported: callers use cmd_cost.cached_report)
    BAR_WIDTH,
    GROUPS,
    bar_chart,
    cached_report,
    parse_date,
    parse_timezone,
    render,
)

# The store, the usage index, pricing and the report builder are imported only when an answer has to
# be computed: a cached answer (`observe.answer_cache`) is served without them (issue #13).


def __getattr__(name: str) -> Any:
    # `cmd_cost.build_report` still works for callers, without importing the builder at start-up
    if name == "build_report":
        from supervisor.report.cost_report import build_report

        return build_report
    raise AttributeError(name)


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
    config_path = ctx.find_root().obj.get("config_path")
    args = {"by": by, "since": since, "until": until, "timezone": tz_name, "all_rollouts": all_rollouts,
            "as_json": as_json}
    from supervisor.report import watch_client

    code = watch_client.ask("cost", args, config_path)  # `ao --config F cost`: the watcher reads F too
    if code is not None:
        ctx.exit(code)
    overrides = config_of(ctx).data.get("pricing")
    out, err = render(cached_report(all_rollouts, by, tz, tz_name, since, until, overrides), by, all_rollouts,
                      as_json)
    # through click.echo as before: on a pipe it strips terminal escapes a model name may carry
    if out:
        click.echo(out[:-1])
    if err:
        click.echo(err[:-1], err=True)
