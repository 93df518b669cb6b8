"""`ao approve`, `ao deny` and the receipt tools `ao receipts export|verify|trust`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.govern import bundle, guard
from supervisor.report import views
from supervisor.report.common import print_json, print_result


def _resolve(approval_id: str, status: str, reason: str | None) -> dict[str, Any]:
    home = str(paths.ao_home())
    try:
        before = guard.read_approval(home, approval_id)
    except (OSError, ValueError, guard.GuardError):
        pending = ", ".join(r["id"] for r in guard.pending_approvals(home)) or "none"
        raise FatalError(f"unknown approval {approval_id!r} (pending: {pending})") from None
    if before.get("status") != "pending":
        raise FatalError(f"approval {approval_id} is already {before.get('status')}")
    by = "ao " + ("approve" if status == "approved" else "deny")
    record = guard.resolve_approval(home, approval_id, status, reason, by=by)
    if record.get("status") != status:
        raise FatalError(f"approval {approval_id} was {record.get('status')} before your answer arrived")
    return record


def approve(approval_id: str, reason: str | None = None) -> dict[str, Any]:
    return _resolve(approval_id, "approved", reason)


def deny(approval_id: str, reason: str | None = None) -> dict[str, Any]:
    return _resolve(approval_id, "denied", reason or "denied by the operator")


def pending(session: str | None = None) -> list[dict[str, Any]]:
    return guard.pending_approvals(str(paths.ao_home()), session)


def export_receipts(session: str, out: Path, since: float | None = None) -> dict[str, Any]:
    """Export by session id, name or thread id; an unknown one is refused, not guessed at."""
    from supervisor import store

    return bundle.export(store.get(session)["session"], out, since=since)


def verify_receipts(path: Path, key: str | None = None) -> tuple[bool, int | None, str]:
    from supervisor.govern import trust

    return bundle.verify(path, trust.parse_fingerprint(key) if key else None)


def verify_session_ledger(session: str) -> tuple[bool, int | None, str]:
    """The local check of a session's ledger: signatures, chain and the head anchored in ao.db."""
    from supervisor import store
    from supervisor.govern import ledger

    return ledger.verify_session(paths.session_dir(store.get(session)["session"]), paths.ao_home())


def trust_key(fingerprint: str, comment: str | None = None) -> tuple[str, bool]:
    from supervisor.govern import trust

    return trust.add(fingerprint, comment)


def describe_command(record: dict[str, Any]) -> str:
    """All of the command the approval record holds, and its sha256 and length when it has them."""
    command = record.get("command")
    parts = []
    if isinstance(command, str):
        parts.append(command)
    elif isinstance(record.get("command_head"), str):
        parts.append(f"(too long to show whole; it starts with:) {record['command_head']}")
    else:
        parts.append("(no command recorded)")
    if record.get("command_sha256") or record.get("command_len") is not None:
        parts.append(f"[command: {record.get('command_len')} chars, sha256 {record.get('command_sha256')}]")
    return "\n".join(parts)


@click.command("approve")
@click.argument("approval_id")
@click.option("--json", "as_json", is_flag=True, help="Print the approval record as JSON.")
def approve_cmd(approval_id: str, as_json: bool) -> None:
    """Let a tool call that waits for approval run."""
    record = approve(approval_id)
    print_result(record, as_json, f"approved {approval_id}: {views.printable(describe_command(record))}")


@click.command("deny")
@click.argument("approval_id")
@click.option("--reason", help="Why; the agent is told this.")
@click.option("--json", "as_json", is_flag=True, help="Print the approval record as JSON.")
def deny_cmd(approval_id: str, reason: str | None, as_json: bool) -> None:
    """Block a tool call that waits for approval."""
    record = deny(approval_id, reason)
    if as_json:
        print_json(record)
    else:
        click.echo(f"denied {approval_id}: {views.printable(describe_command(record))}")


@click.group("receipts_tools")
def receipts_tools() -> None:
    """Export, verify and trust signed evidence bundles."""


@receipts_tools.command("export")
@click.argument("session", required=False)
@click.option("--all", "every", is_flag=True, help="Every session with ledger lines in the window (needs --since).")
@click.option("--since", metavar="DURATION", help="Only the ledger from this long ago to now: 90s, 10m, 2h, 1d.")
@click.option("-o", "--out", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="The bundle file (JSON lines); with --all a new directory: one bundle per session + MANIFEST.jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Print the session summary as JSON.")
def export_cmd(session: str | None, every: bool, since: str | None, out: Path, as_json: bool) -> None:
    """Write SESSION's signed ledger (or, with --all, every session's) as self-contained evidence bundles.

    A --since window is a contiguous part of the hash chain; its signed header names the hash of
    the line before it, so it verifies on its own with `ao receipts verify`.
    """
    import time

    from supervisor.govern import operator

    if every == (session is not None):
        raise FatalError("give either SESSION or --all")
    start = time.time() - operator.parse_duration(since) if since else None
    if every:
        if start is None:
            raise FatalError("--all needs a window: add --since, e.g. --since 24h")
        summaries = bundle.export_all(out, start)
        for summary in summaries:
            operator.note(paths.session_dir(summary["session"]), "export", {"since": start, "out": str(out)})
        if as_json:
            print_json({"directory": str(out), "manifest": str(out / bundle.MANIFEST), "since": start,
                        "sessions": summaries})
        else:
            click.echo(f"wrote {out}: {len(summaries)} session bundle{'s' if len(summaries) != 1 else ''} "
                       f"and {bundle.MANIFEST}")
        return
    assert session is not None
    summary = export_receipts(session, out, start)
    operator.note(paths.session_dir(summary["session"]), "export", {"since": start, "out": str(out)})
    if as_json:
        print_json({"bundle": str(out), "since": start, "summary": summary})
    else:
        click.echo(f"wrote {out}: {summary['entries']} ledger lines, "
                   f"{summary['tool_calls_denied']} denied tool calls")


@receipts_tools.command("verify")
@click.argument("bundle_path", metavar="[FILE|DIR]", required=False, type=click.Path(path_type=Path))
@click.option("--session", help="Check this session's ledger here instead of a bundle (chain, signatures, anchor).")
@click.option("--key", "fingerprint", metavar="FINGERPRINT",
              help="Require this signing key (SHA256:...) instead of the keys trusted here.")
@click.option("--json", "as_json", is_flag=True, help="Print {ok, first_bad_line, reason} as JSON.")
def verify_cmd(bundle_path: Path | None, session: str | None, fingerprint: str | None, as_json: bool) -> int:
    """Check a bundle offline (or an `export --all` directory, or --session's ledger); exits 1 and names the
    first bad line if anything was changed.

    A bundle verifies only when signed by a trusted key: this installation's public key, one added
    with `ao receipts trust`, or the one given with --key.
    """
    if (bundle_path is None) == (session is None):
        raise FatalError("give either a bundle FILE or --session SESSION to check")
    if session is not None:
        ok, bad_line, reason = verify_session_ledger(session)
    else:
        assert bundle_path is not None
        ok, bad_line, reason = verify_receipts(bundle_path, fingerprint)
    if as_json:
        print_json({"ok": ok, "first_bad_line": bad_line, "reason": reason})
    elif ok:
        click.echo(f"OK: {reason}")
    else:
        click.echo(f"FAILED at line {bad_line}: {reason}" if bad_line else f"FAILED: {reason}", err=True)
    return 0 if ok else 1


@receipts_tools.command("trust")
@click.argument("fingerprint")
@click.option("--comment", help="A note kept next to the fingerprint, e.g. whose key it is.")
def trust_cmd(fingerprint: str, comment: str | None) -> None:
    """Accept bundles signed by the key FINGERPRINT (SHA256:...) in `ao receipts verify`."""
    from supervisor.govern import trust

    added_fp, added = trust_key(fingerprint, comment)
    where = trust.trust_path()
    click.echo(f"trusted {added_fp} (added to {where})" if added else f"{added_fp} is already trusted")
