"""`ao dashboard`: the fleet in a browser (see `supervisor.dashboard.security` for who may use it)."""
from __future__ import annotations

import click

from supervisor.report.common import config_of


@click.command("dashboard")
@click.option("--host", help="Address to listen on (default: config dashboard.host, 127.0.0.1). "
                             "Anything but loopback needs --token-file.")
@click.option("--port", type=int, help="Port (default: config dashboard.port, 8787); 0 picks a free one.")
@click.option("--no-browser", "no_browser", is_flag=True, help="Print the URL; do not open a browser.")
@click.option("--token-file", "token_file", metavar="F",
              help="A 0600 file holding the token (created with a new token if missing).")
@click.pass_context
def dashboard(ctx: click.Context, host: str | None, port: int | None, no_browser: bool, token_file: str | None) -> int:
    """Serve a live web board of every session: status, approvals, receipts, cost and terminals."""
    from supervisor.dashboard import server

    return server.serve(config_of(ctx), host, port, not no_browser, token_file, echo=click.echo)
