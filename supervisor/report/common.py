"""What every command shares: the loaded config and the one JSON printer."""
from __future__ import annotations

from typing import Any

import click

from supervisor import config as config_mod


def config_of(ctx: click.Context) -> config_mod.Config:
    """The config for this invocation, loaded once (from --config, AO_CONFIG or the usual places)."""
    obj = ctx.find_root().obj
    if "config" not in obj:
        obj["config"] = config_mod.load(obj.get("config_path"))
    config: config_mod.Config = obj["config"]
    return config


def config_path_arg(ctx: click.Context) -> str | None:
    value: str | None = ctx.find_root().obj.get("config_path")
    return value


def json_text(value: Any) -> str:
    """Indented JSON for every `--json`; orjson is ~30x faster than json on big reports."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def print_json(value: Any) -> None:
    click.echo(json_text(value))


def print_result(result: Any, as_json: bool, text: str) -> None:
    """A command's one result: the JSON document under `--json`, else its line of text."""
    if as_json:
        print_json(result)
    else:
        click.echo(text)
