"""`ao wrappers status|install`: the git/gh PATH wrappers in ao's bin dir."""
from __future__ import annotations

import click

from supervisor.launch import wrappers as wrappers_mod
from supervisor.report.common import print_json


@click.group("wrappers")
def wrappers() -> None:
    """The git and gh wrappers ao puts first on every agent's PATH."""


@wrappers.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list of {name, path, state, version, action}.")
def status_cmd(as_json: bool) -> int:
    """Compare the installed wrappers with this version's; exit 1 unless all are ok."""
    states = wrappers_mod.status()
    if as_json:
        print_json([s.as_dict() for s in states])
    else:
        from tabulate import tabulate  # lazy: keeps every ao command's start-up lean
        click.echo(tabulate([(s.name, s.state, s.version if s.version is not None else "-", str(s.path))
                             for s in states], headers=("file", "state", "version", "path")))
        if any(s.state != "ok" for s in states):
            click.echo("run `ao wrappers install` to repair", err=True)
    return 0 if all(s.state == "ok" for s in states) else 1


@wrappers.command("install")
def install_cmd() -> None:
    """Write missing or differing wrappers and remove ones this version no longer ships."""
    for s in wrappers_mod.install():
        verb = {"written": "wrote", "removed": "removed"}.get(s.action or "", "kept")
        click.echo(f"{verb:7} {s.name} ({s.state}) {s.path}")
