"""`ao status` without click: the rows, the text, and a fast path for the plain invocations.

`ao status` runs on every glance at the fleet, so its start-up is felt (P4). `fast_status` handles the
arguments it fully understands (filters, `--json`, one SESSION) without importing click, the YAML
parser or the command table; anything else (`--watch`, `--help`, a typo, a repeated option) returns
None and click parses it, so errors and help read exactly as before. The click command in
`cmd_sessions` prints the same text from the same functions, so both paths give the same bytes.
A `--json` answer is served from `status_cache` while nothing it was computed from has changed.
"""
from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # `typing` costs ~3 ms to import, a tenth of a served answer: annotations only
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from supervisor.records import SessionRecord

# the name `supervisor.config.CONFIG_NAME` gives the config file; repeated here so the fast path can tell
# "no config file anywhere" without importing the config module (tests/test_status_fast.py checks it)
CONFIG_NAME = "agent-orchestrator.yaml"
# set to 1 to send every `ao status` through click (tests compare the two paths)
CLICK_ONLY_ENV = "AO_STATUS_CLICK"
_FLAGS = ("--json", "--active", "--attention")
_VALUED = ("--project", "--since")


def terminal_size() -> tuple[int | None, int | None]:
    """(columns, lines) of the terminal, or (None, None) when output goes to a pipe and COLUMNS is unset.

    A pipe has no width to respect, so scripts reading the table get every column.
    """
    if not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        return None, None
    import shutil

    size = shutil.get_terminal_size()
    return max(20, size.columns), max(5, size.lines)


def status_filter(active: bool, project: str | None, since: str | None, attention: bool) -> Any:
    """The filters as `fleet.StatusFilter`; a span like 30m counts back from now."""
    from supervisor.sessions import fleet

    return fleet.StatusFilter(active=active, project=project, attention=attention,
                              since=fleet.cutoff(since, time.time()) if since else None)


def status_rows(session: str | None, wanted: Any, table: Mapping[str, Any],
                usage_of: Any = None) -> list[dict[str, Any]]:
    """Reconciled, filtered status rows for one session (by id, thread id or name) or all of them."""
    return _status(read_records(session), wanted, table, usage_of)[2]


def read_records(session: str | None) -> list[SessionRecord]:
    """The stored record of one session (by id, thread id or name), or of all of them."""
    from supervisor import store
    from supervisor.errors import FatalError

    if session:
        found = store.find(session)
        if found is None:
            raise FatalError(f"unknown session {session!r}; `ao status` lists the known ones")
        return [found]
    return store.status_sessions()


def _status(records: list[SessionRecord], wanted: Any, table: Mapping[str, Any], usage_of: Any
            ) -> tuple[list[SessionRecord], list[SessionRecord], list[dict[str, Any]]]:
    """(every record reconciled, those the filters pick, their rows)."""
    from supervisor.sessions import fleet, query, reconcile

    reconciled = reconcile.reconcile_all(records)
    selected = fleet.select_records(reconciled, wanted)
    rows = fleet.select_rows(query.status_rows(selected, table, usage_of or query.cached_sessions_usage), wanted)
    return reconciled, selected, rows


def status_text(rows: list[dict[str, Any]], as_json: bool, filtered: bool, width: int | None = None,
                max_lines: int | None = None) -> str:
    if as_json:
        import orjson

        # the same bytes as report.common.json_text, without importing click through that module
        return orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()  # one shape, a list, with or without SESSION
    if not rows:
        return "no session matches these filters" if filtered else "no sessions yet; start one with `ao spawn`"
    from supervisor.report import views

    return views.status_table(rows, width, max_lines)


def pricing_table(config_path: str | None) -> Any:
    """The pricing table under the config's `pricing:` overrides; the YAML parser loads only if a config
    file exists (the defaults override no price)."""
    from supervisor.observe import pricing

    if config_path is None and not os.environ.get("AO_CONFIG") and not os.path.isfile(CONFIG_NAME):
        from supervisor import paths

        if not os.path.isfile(os.path.join(paths.ao_home(), CONFIG_NAME)):
            return pricing.load_table(None)
    from supervisor import config as config_mod

    return pricing.load_table(config_mod.load(config_path).data.get("pricing"))


class _Args:
    """`ao status` arguments the fast path takes."""

    __slots__ = ("session", "as_json", "active", "attention", "project", "since")

    def __init__(self) -> None:
        self.session: str | None = None
        self.as_json = self.active = self.attention = False
        self.project: str | None = None
        self.since: str | None = None


def parse(argv: list[str]) -> _Args | None:
    """`ao status` arguments (after `status`), or None for anything only click should judge: help,
    --watch, an unknown or repeated option, a missing value, `--`, a second SESSION."""
    from supervisor.report.fast_args import split

    found = split(argv, _FLAGS, _VALUED)
    if found is None or len(found[1]) > 1 or "" in found[1]:
        return None
    args = _Args()
    args.session = found[1][0] if found[1] else None
    for name, value in found[0].items():
        if value is True:
            setattr(args, name[2:].replace("-", "_") if name != "--json" else "as_json", True)
        else:
            setattr(args, name[2:], value)
    return args


def _terminated(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # as report.cli does: SIGTERM unwinds like ^C


def fast_status(argv: list[str]) -> int | None:
    """Run `ao status ARGV` without click and return the exit code, or None to let click handle ARGV."""
    if os.environ.get(CLICK_ONLY_ENV) == "1":
        return None
    args = parse(argv)
    if args is None:
        return None
    cache = _cache_key(args)
    if cache is not None:  # before asking `ao watch`: a served answer costs less than the question
        from supervisor.report import status_cache

        text = status_cache.serve(cache[0])
        if text is not None:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except Exception as exc:  # a closed pipe, a full disk: worded as the one-shot path words it
                from supervisor.errors import error_handler  # contextlib: ~3 ms a served answer need not pay

                with error_handler():
                    raise exc from None
            from supervisor.report import fast_args

            fast_args.served = True
            return 0
    width, _ = terminal_size()
    if not _cwd_relative(args.project):
        from supervisor.report import watch_client

        code = watch_client.ask("status", {"session": args.session, "as_json": args.as_json, "active": args.active,
                                           "attention": args.attention, "project": args.project,
                                           "since": args.since, "width": width})
        if code is not None:
            from supervisor.report import fast_args

            fast_args.served = True
            return code
    import signal

    from supervisor.errors import error_handler

    with error_handler():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _terminated)
        if cache is not None:
            text = cached_answer(args, *cache)
        else:
            table = pricing_table(None)
            wanted = status_filter(args.active, args.project, args.since, args.attention)
            text = answer(args.session, wanted, table, args.as_json,
                          bool(args.active or args.project or args.since or args.attention), width)
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


def _cache_key(args: _Args) -> tuple[str, str | None] | None:
    """(the `status_cache` key, the config file) for an answer that may be kept, else None: JSON only
    (the table's widths follow its ages), no `--since` (it counts back from now), and a `--project`
    that is a name (a path is resolved through the filesystem)."""
    if not args.as_json or args.since is not None:
        return None
    if args.project is not None and (args.project.startswith((".", "~")) or "/" in args.project):
        return None
    from supervisor.report import status_cache, watch_client

    located = watch_client.located_config(None)
    if located is None:  # a repository's config in the working directory: its trust check is read here
        return None
    return status_cache.key_of(args, located), located[0]


def cached_answer(args: _Args, key: str, config: str | None) -> str:
    """The `--json` answer computed as `answer` does, stored in `status_cache` with what it read."""
    from supervisor.report import status_cache

    snapshot = status_cache.Snapshot(key)
    snapshot.globals(config)  # before anything reads them
    table = pricing_table(None)
    wanted = status_filter(args.active, args.project, None, args.attention)
    records = read_records(args.session)
    snapshot.records(records)
    with status_cache.StderrWatch() as stderr:
        reconciled, selected, rows = _status(records, wanted, table, None)
        text = status_text(rows, True, False) + "\n"
    snapshot.store(text, rows, reconciled, selected, stderr.written)
    return text


def answer(session: str | None, wanted: Any, table: Mapping[str, Any], as_json: bool, filtered: bool,
           width: int | None, usage_of: Any = None) -> str:
    """What `ao status` prints: here, and in `ao watch` for a client that asked it."""
    return status_text(status_rows(session, wanted, table, usage_of), as_json, filtered, width) + "\n"


def _cwd_relative(project: str | None) -> bool:
    """Whether `--project` names a path relative to the working directory (`fleet.matches_project`
    resolves it there), which only this process can resolve."""
    if not project:
        return False
    return not os.path.isabs(os.path.expanduser(project)) and (project.startswith(".") or "/" in project)
