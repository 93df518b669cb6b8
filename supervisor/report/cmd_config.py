"""`ao config get|set|path` and `ao doctor`: what ao is configured with and whether its tools work."""
from __future__ import annotations

import json
from pathlib import Path

import click

from supervisor import config as config_mod
from supervisor.report.common import config_of, config_path_arg, print_json


@click.command()
@click.option("--provision/--no-provision", default=False, help="Install the pinned codex with npm if missing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor(ctx: click.Context, provision: bool, as_json: bool) -> int:
    """Show how codex is found and whether git, tmux, npm and gh are usable."""
    from supervisor.report import doctor as doctor_mod

    result = doctor_mod.diagnose(config_of(ctx), provision)
    if as_json:
        print_json(result)
    else:
        click.echo(doctor_mod.render(result))
    return 0 if result["codex"]["path"] else 1


@click.group(name="config")
def config_group() -> None:
    """Read or edit agent-orchestrator.yaml in place."""


def _config_file(ctx: click.Context) -> Path:
    found = config_mod.find_config_file(config_path_arg(ctx))
    return found or Path.cwd() / config_mod.CONFIG_NAME


@config_group.command(name="get")
@click.argument("key")
@click.pass_context
def config_get(ctx: click.Context, key: str) -> None:
    """Print the value of KEY (dotted, e.g. agent.model)."""
    value = config_of(ctx).get(key)
    click.echo(json.dumps(value) if isinstance(value, (dict, list)) or value is None else str(value))


@config_group.command(name="set")
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY to VALUE, keeping the file's comments and order."""
    path = _config_file(ctx)
    new = config_mod.set_value(path, key, value)
    click.echo(f"{path}: {key} = {json.dumps(new)}")


@config_group.command(name="path")
@click.pass_context
def config_path(ctx: click.Context) -> None:
    """Print which config file is in use."""
    found = config_mod.find_config_file(config_path_arg(ctx))
    click.echo(str(found) if found else "none (built-in defaults)")
