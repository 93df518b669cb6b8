"""`ao cost` without click: the text the command prints, and a fast path for the plain invocations (P2).

A warm `ao cost` is a stored answer (`observe.answer_cache`) or the watcher's (`ao watch`); either is
served in a few milliseconds, so importing click, the YAML parser and the command table would be most
of the time. `fast_cost` handles the arguments it fully understands and returns None for anything
else (help, a typo, a repeated option, an invalid value), which click then parses and words exactly as
before. `render` is the one place the printed text is made, for click, this path and the watcher.
"""
from __future__ import annotations

import os
import sys

from supervisor.errors import FatalError

# typing costs 3 ms to import, a tenth of a watched answer: annotations only
TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Mapping
    from typing import Any

# cmd_cost.GROUPS, repeated so this path does not import click (tests/test_watch.py checks they agree)
GROUPS = ("session", "day", "month", "project", "model")
_VALUED = ("--by", "--since", "--until", "--timezone")
_FLAGS = ("--all", "--json")


class CostArgs:
    """`ao cost` arguments the fast path takes."""

    __slots__ = ("by", "since", "until", "timezone", "all_rollouts", "as_json")

    def __init__(self) -> None:
        self.by = "session"
        self.since: str | None = None
        self.until: str | None = None
        self.timezone: str | None = None
        self.all_rollouts = self.as_json = False

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def parse(argv: list[str]) -> CostArgs | None:
    """`ao cost` arguments (after `cost`), or None for anything only click should judge."""
    from supervisor.report.fast_args import split

    found = split(argv, _FLAGS, _VALUED)
    if found is None or found[1]:
        return None
    args = CostArgs()
    for name, value in found[0].items():
        if value is True:
            setattr(args, "all_rollouts" if name == "--all" else "as_json", True)
        elif name == "--by" and value not in GROUPS:
            return None
        else:
            setattr(args, name[2:], value)
    return args


def render(text: str, by: str, all_rollouts: bool, as_json: bool) -> tuple[str, str]:
    """(stdout, stderr) of `ao cost` for the `--json` document `text`: what the command prints."""
    if as_json:
        return text + "\n", ""
    import json

    report = json.loads(text)
    out: list[str] = []
    if not report["rows"]:
        out.append("no usage found" + ("" if all_rollouts else "; `ao cost --all` reads every codex rollout"))
    else:
        from supervisor.report import views

        out.append(views.cost_table(report["rows"], report["totals"]))
        if by == "day":
            out += ["", bar_chart(report["rows"])]
    err = [f"warning: no price known for model {model!r}; counted as $0. Add it under `pricing:`."
           for model in report["unpriced_models"]]
    err += [f"warning: {warning}" for warning in report["warnings"]]
    return "".join(line + "\n" for line in out), "".join(line + "\n" for line in err)


BAR_WIDTH = 40


def bar_chart(rows: list[Any], width: int = BAR_WIDTH) -> str:
    top = max((r["cost_usd"] for r in rows), default=0) or 1
    lines = []
    for r in rows:
        filled = int(round(r["cost_usd"] / top * width))
        lines.append(f"{r['key']:<10} {'█' * filled}{'·' * (width - filled)} ${r['cost_usd']:.4f}")
    return "\n".join(lines)


# --- computing the `--json` document (the answer cache decides whether it is stored or fresh) -----

_LOCALTIME = "/etc/localtime"


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

    db = os.path.join(paths.ao_home_text(), "ao.db")  # paths.db_path(), without pathlib
    return [db, db + "-wal"]


def _index_fact() -> str:
    # which usage index the answer came from: a rebuilt index (deleted, or a new schema) may credit a
    # fork's tokens differently, so its identity (not its stat: every refresh writes it) is an input.
    # The name is index.index_path()'s, repeated here so the cached path does not import the index.
    from supervisor import paths

    try:
        st = os.stat(os.path.join(paths.ao_home_text(), "index.db"))
        return f"index {st.st_dev},{st.st_ino}"
    except OSError:
        return "index none"


def _all_depends(hint: Any, walked: list[Any] | None = None) -> Any:
    """Inputs of `ao cost --all`: every rollout in every home `query.codex_homes` could pick.

    The homes come from the sessions table (each launch's CODEX_HOME), the default home and the
    sessions dir. The table is read only when ao.db changed since the hint was stored; the candidate
    list is a superset of what codex_homes keeps (remote sessions too), so it can only over-invalidate.
    The rollouts' Tree is also appended to `walked`, where the computation finds the walk's stats.
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
    candidates = [paths.codex_home_text(), *launch_homes]
    try:
        with os.scandir(os.path.join(paths.ao_home_text(), "sessions")) as it:
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
    tree = answer_cache.Tree(homes.values(), codex_format.ROLLOUT_PREFIX, codex_format.ROLLOUT_SUFFIXES)
    if walked is not None:
        walked.append(tree)
    return answer_cache.Depends(db_files, facts, {"db": db_stat, "launch_homes": launch_homes}, tree=tree)


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
             overrides: Any, walked: list[Any] | None = None) -> str:
    from supervisor.observe import index

    with index.collector_paused():
        return _compute_text(all_rollouts, by, tz, since, until, overrides, walked[-1] if walked else None)


def _compute_text(all_rollouts: bool, by: str, tz: dt.tzinfo | None, since: str | None, until: str | None,
                  overrides: Any, tree: Any = None) -> str:
    from supervisor import store
    from supervisor.observe import pricing
    from supervisor.report.cost_report import build_report
    from supervisor.sessions import query

    table = pricing.load_table(overrides)
    settle = None
    if all_rollouts:
        # the index's commit runs while the report is built; settled before the answer is kept or shown
        walked = (tree.roots(), tree.stats()) if tree is not None else None  # answer_cache's walk, just made
        entries, warnings, settle = query.all_entries(commit_behind=True, walked=walked)
    else:
        entries, warnings = query.session_entries(store.all_sessions())
    import orjson

    try:
        # report.common.json_text's bytes, without importing click through that module
        return orjson.dumps(build_report(entries, by, tz, since, until, table, warnings),
                            option=orjson.OPT_INDENT_2).decode()
    finally:
        if settle is not None:
            settle()


def cached_report(all_rollouts: bool, by: str, tz: dt.tzinfo | None, tz_name: str | None, since: str | None,
                  until: str | None, overrides: Any, raw: bool = False) -> Any:
    """The `ao cost --json` text: stored if no rollout, session, home, price or zone changed, else fresh.
    With `raw`, a stored one comes as a view of its UTF-8 bytes (answer_cache.answer_bytes)."""
    from supervisor.observe import answer_cache

    args = {"by": by, "since": since, "until": until, "timezone": tz_name,
            "local_zone": None if tz_name else _local_zone(), "pricing": overrides,
            "codex_home": os.environ.get("CODEX_HOME")}
    get = answer_cache.answer_bytes if raw else answer_cache.answer
    walked: list[Any] = []
    return get("cost-all" if all_rollouts else "cost-sessions", args,
               (lambda hint: _all_depends(hint, walked)) if all_rollouts else _sessions_depends,
               lambda: _compute(all_rollouts, by, tz, since, until, overrides, walked))


def parse_timezone(name: str | None) -> dt.tzinfo | None:
    """None means the machine's local time (with its DST rules); Z/UTC, ±HH:MM and IANA names work."""
    if not name:
        return None
    import datetime as dt

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
    import datetime as dt

    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise FatalError(f"{option} {value!r}: expected a date as YYYY-MM-DD") from None


def pricing_overrides(explicit: str | None = None) -> Any:
    """The config's `pricing:` (what `config.load(explicit).data.get("pricing")` gives, or raises). No
    file: the defaults, which override no price. With a file, the result is stored (answer_cache) while
    nothing it was read from changed: importing and running the YAML parser, the validation and a
    repository config's trust review were ~55 ms of every `ao cost` beside an agent-orchestrator.yaml."""
    from supervisor.report import watch_client

    located = watch_client.located_config(explicit)
    if located is not None and located[0] is None:
        return {}  # config.DEFAULTS["pricing"] (tests/test_watch.py checks)
    from supervisor import paths, plain_json
    from supervisor.observe import answer_cache

    env = os.environ.get("AO_CONFIG")
    home = paths.ao_home_text()
    # every file config.load may read, or whose absence or identity it may act on: the explicit or
    # $AO_CONFIG file, the working directory's, the user's, the trust records; and the code that reads
    # them (answer_cache adds its own CODE_FILES, this module among them)
    named = [os.path.abspath(os.path.expanduser(p)) for p in (explicit, env) if p]
    configs = [*named, os.path.abspath(watch_client.CONFIG_NAME), os.path.join(home, watch_client.CONFIG_NAME)]
    files = [*configs, os.path.join(home, "trusted-configs.json"),  # trust_store.store_path()
             answer_cache.code_file("config.py"), answer_cache.code_file("trust_store.py")]
    facts = [f"{p}\0{os.path.realpath(p)}" for p in configs]  # trust is by resolved path

    def compute() -> str:
        from supervisor import config as config_mod
        from supervisor.errors import FatalError

        try:
            value = config_mod.load(explicit).data.get("pricing")
        except FatalError as exc:
            return plain_json.dumps({"error": str(exc), "code": exc.exit_code})
        try:
            text = plain_json.dumps({"pricing": value})
        except (TypeError, ValueError):
            return '{"load": true}'
        # kept only when JSON gives back the same value (YAML allows keys JSON would turn into text)
        return text if plain_json.loads(text.encode()) == {"pricing": value} else '{"load": true}'

    stored = plain_json.loads(answer_cache.answer("config-pricing", {"explicit": explicit, "env": env, "files": files},
                                                  lambda _hint: answer_cache.Depends(files, facts), compute).encode())
    if isinstance(stored, dict) and "pricing" in stored:
        return stored["pricing"]
    if isinstance(stored, dict) and isinstance(stored.get("error"), str) and isinstance(stored.get("code"), int):
        from supervisor.errors import FatalError

        raise FatalError(stored["error"], stored["code"])
    from supervisor import config as config_mod  # not storable: read it as before

    return config_mod.load(explicit).data.get("pricing")



def answer(args: CostArgs, overrides: Any, raw: bool = False) -> tuple[Any, str]:
    """(stdout, stderr) of `ao cost ARGS` computed here: the stored answer when nothing changed. With
    `raw` and --json, stdout is the document as stored (a view of its UTF-8 bytes, or text when computed
    now), without its final newline."""
    from supervisor.errors import FatalError
    since, until = parse_date(args.since, "--since"), parse_date(args.until, "--until")
    if since and until and since > until:
        raise FatalError(f"--since {since} is after --until {until}")
    tz = parse_timezone(args.timezone)
    text = cached_report(args.all_rollouts, args.by, tz, args.timezone, since, until, overrides,
                         raw and args.as_json)
    if raw and args.as_json:
        return text, ""
    return render(text, args.by, args.all_rollouts, args.as_json)


def _has_escape(out: str | memoryview) -> bool:
    # `in` on a view compares item by item; `find` on what it views (the mapped entry, whose end is the
    # answer) from the answer's start is one search, without a copy
    if isinstance(out, str):
        return "\x1b" in out
    whole: Any = out.obj
    return whole.find(b"\x1b", len(whole) - len(out)) >= 0


def _terminated(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # as report.cli does: SIGTERM unwinds like ^C


def fast_cost(argv: list[str]) -> int | None:
    """Run `ao cost ARGV` without click and return the exit code, or None to let click handle ARGV."""
    args = parse(argv)
    if args is None:
        return None
    from supervisor.report import watch_client

    code = watch_client.ask("cost", args.as_dict())
    if code is not None:
        from supervisor.report import fast_args

        fast_args.served = True
        return code
    import _signal  # not `signal`: its enums cost ~4.5 ms to build

    from supervisor.errors import error_handler

    with error_handler():
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        _signal.signal(_signal.SIGTERM, _terminated)
        try:
            out, err = answer(args, pricing_overrides(), raw=True)
        except FatalError:
            return None  # click words the error (the same line; one place keeps it so)
        if _has_escape(out) or "\x1b" in err:
            return None  # click.echo strips escapes on a pipe; only click prints those the same
        if isinstance(out, str):
            sys.stdout.write(out if not args.as_json else out + "\n")
        elif (sys.stdout.encoding or "").lower().replace("-", "") == "utf8":
            sys.stdout.flush()
            sys.stdout.buffer.write(out)  # the bytes the text would encode to, without two copies of it
            sys.stdout.buffer.write(b"\n")
        else:
            sys.stdout.write(str(out, "utf-8") + "\n")
        sys.stdout.flush()
        if err:
            sys.stderr.write(err)
            sys.stderr.flush()
    from supervisor.report import fast_args

    # written whole, and the index, the store and the workers are closed: the exit may skip the teardown
    fast_args.served = True
    return 0
