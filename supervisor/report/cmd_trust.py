"""`ao trust PATH`: accept a repository's agent-orchestrator.yaml exactly as it is now."""
from __future__ import annotations

from pathlib import Path

import click

from supervisor.report.common import print_json


@click.command("trust")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {path, sha256, grants: [{key, line, why}]}.")
def trust_cmd(path: Path, as_json: bool) -> None:
    """Let the config at PATH set codex.binary, provider, policy, approval... until the file changes.

    A config found in the working directory is the repository's, not yours: until you trust it,
    it may not loosen anything your own config sets. Trust records the file's sha256 in
    $AO_HOME/trusted-configs.json; any later edit makes it untrusted again.
    """
    from supervisor import config as config_mod  # lazy: ruamel is heavy
    from supervisor.errors import FatalError

    if not path.is_file():
        raise FatalError(f"config file not found: {path}")
    sha256, grants = config_mod.trust_with_review(path)
    resolved = str(path.expanduser().resolve())
    if as_json:
        print_json({"path": resolved, "sha256": sha256,
                    "grants": [{"key": g.key, "line": g.line, "why": g.why} for g in grants]})
        return
    click.echo(f"trusted {resolved} (sha256 {sha256[:16]}…); editing it makes it untrusted again")
    for g in grants:
        click.echo(f"  now allowed: line {g.line or '?'}: {g.key}: {g.why}")
