"""`ao status` without click (P4): the fast path prints the same bytes as the click command, leaves
everything it does not fully understand to click, and does not import click, ruamel or the config."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_fleet_view import _record as fleet_record

from supervisor import paths, store
from supervisor.records import Status
from supervisor.report import status_view

CLICK = {status_view.CLICK_ONLY_ENV: "1"}
BIG_ARGV = ["bwrap", *(f"--ro-bind /some/long/path/{i} /some/long/path/{i}" for i in range(300)), "codex"]


def _record(session: str, status: Status, age_s: float, ended: bool = True, **fields: Any) -> str:
    """A fake session with a real-sized launch argv; never a real pid (the teardown kills record pids)."""
    launch = {"argv": BIG_ARGV, "env": {"AO_SESSION": session}, "jail": {"argv": ["bwrap"]}, "budget_usd": 2.5}
    return fleet_record(session, status, age_s, ended, launch, **fields)


def _fleet() -> None:
    _record("ao-0101-aaaaaa", Status.DONE, 2 * 3600, name="fix-login", project="webapp", repo="/src/webapp",
            pr_url="https://github.com/acme/webapp/pull/42", input=1000, output=200, model="gpt-5.1-codex")
    _record("ao-0101-bbbbbb", Status.FAILED, 3 * 86400, repo="/src/api", error="codex exited 1", input=500,
            output=100)
    _record("ao-0101-cccccc", Status.WORKING, 300, ended=False, repo="/src/webapp", project="webapp")
    _record("ao-0101-dddddd", Status.STALLED, 600, ended=False, repo="/src/api", error="model unreachable")
    _record("ao-0101-eeeeee", Status.BLOCKED, 4 * 3600, repo="/src/api", error="budget reached \x1b[31m")
    sdir = paths.session_dir("ao-0101-aaaaaa")
    sdir.mkdir(parents=True, exist_ok=True)
    (sdir / "operator.json").write_text(json.dumps({"budget_usd": 0.001}))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != status_view.CLICK_ONLY_ENV}
    return {**env, **extra}


def _both(ao: Any, *args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """`ao status ARGS` by the fast path and by click. Rows carry `age_s` from each run's clock, so a pair
    run across a second's edge may differ there: such a pair is run again, and on a loaded machine the
    JSON ages are compared as equal (the table shows ages in minutes and hours)."""
    for _ in range(3):
        fast = ao("status", *args, env=_env())
        slow = ao("status", *args, env=_env(**CLICK))
        if (fast.stdout, fast.stderr, fast.returncode) == (slow.stdout, slow.stderr, slow.returncode):
            break
    if fast.stdout != slow.stdout:
        fast.stdout, slow.stdout = (_AGE.sub('"age_s": N', out.stdout) for out in (fast, slow))
    return fast, slow


_AGE = re.compile(r'"age_s": \d+')


@pytest.mark.parametrize("args", [
    ("--json",), (), ("--active", "--json"), ("--project", "webapp"), ("--project=/src/api", "--json"),
    ("--since", "1h", "--json"), ("--attention",), ("--attention", "--json", "--project", "api", "--since", "1d"),
    ("fix-login", "--json"), ("ao-0101-bbbbbb",), ("--active", "--project", "nothing-here"),
])
def test_fast_and_click_paths_print_the_same_bytes(ao: Any, args: tuple[str, ...]) -> None:
    _fleet()
    fast, slow = _both(ao, *args)
    assert fast.returncode == 0, fast.stderr
    assert fast.stdout == slow.stdout and fast.stderr == slow.stderr == ""
    assert "\x1b" not in fast.stdout


def test_an_empty_store_reads_the_same(ao: Any) -> None:
    for args in (("--json",), ()):
        fast, slow = _both(ao, *args)
        assert fast.returncode == slow.returncode == 0
        assert fast.stdout == slow.stdout


def test_a_config_with_prices_is_read_by_both_paths(ao: Any, tmp_path: Path) -> None:
    _fleet()
    config = tmp_path / "prices.yaml"
    config.write_text("pricing:\n  gpt-5.1-codex: {input: 1000, output: 1000}\n")
    plain = json.loads(ao("status", "--json", "fix-login").stdout)
    for _ in range(3):  # the same retry as _both, with the config set
        fast = ao("status", "--json", "fix-login", env=_env(AO_CONFIG=str(config)))
        slow = ao("status", "--json", "fix-login", env=_env(AO_CONFIG=str(config), **CLICK))
        if fast.stdout == slow.stdout:
            break
    assert fast.returncode == 0, fast.stderr
    assert fast.stdout == slow.stdout
    assert json.loads(fast.stdout)[0]["cost_usd"] > plain[0]["cost_usd"]  # the override was applied


@pytest.mark.parametrize("args", [
    ("--bogus",), ("a", "b"), ("--since",), ("--json", "--json"), ("--project", "--json"), ("--help",),
    ("--watch", "--nope"), ("-x",), ("--json=1",),
])
def test_arguments_only_click_judges_give_clicks_output(ao: Any, args: tuple[str, ...]) -> None:
    fast, slow = _both(ao, *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    if args == ("--help",):
        assert fast.returncode == 0 and fast.stdout.startswith("Usage: ao status")
    elif args not in (("--json", "--json"), ("--project", "--json")):  # click takes these: a repeated flag,
        # and `--json` as the project's name; the fast path leaves both to click
        assert fast.returncode == 2 and "Error: " in fast.stderr


@pytest.mark.parametrize("args", [("no-such-session",), ("--since", "yesterday-ish")])
def test_errors_are_the_same_one_line(ao: Any, args: tuple[str, ...]) -> None:
    fast, slow = _both(ao, *args)
    assert fast.returncode == slow.returncode == 1
    assert fast.stderr == slow.stderr and len(fast.stderr.strip().splitlines()) == 1
    assert fast.stderr.startswith("ao: error: ")


def test_a_bad_config_is_the_same_one_line(ao: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pricing: [unclosed\n")
    fast = ao("status", "--json", env=_env(AO_CONFIG=str(bad)))
    slow = ao("status", "--json", env=_env(AO_CONFIG=str(bad), **CLICK))
    assert (fast.returncode, fast.stderr) == (slow.returncode, slow.stderr) == (1, fast.stderr)
    assert fast.stderr.startswith("ao: error: ") and fast.stdout == ""


def test_a_launch_that_is_not_json_fails_as_before(ao: Any) -> None:
    _fleet()
    with sqlite3.connect(paths.db_path()) as con:
        con.execute("UPDATE sessions SET launch = '{not json' WHERE session = 'ao-0101-bbbbbb'")
    try:
        fast, slow = _both(ao, "--json")
    finally:  # the fixtures' teardown reads every record
        with sqlite3.connect(paths.db_path()) as con:
            con.execute("UPDATE sessions SET launch = '{}' WHERE session = 'ao-0101-bbbbbb'")
    assert (fast.returncode, fast.stdout) == (slow.returncode, slow.stdout)
    assert fast.returncode != 0 and len(fast.stderr.strip().splitlines()) == 1


def test_status_records_drop_only_the_command_line() -> None:
    _fleet()
    with sqlite3.connect(paths.db_path()) as con:  # an older or odd row: no launch at all
        con.execute("UPDATE sessions SET launch = NULL WHERE session = 'ao-0101-cccccc'")
    full = {r["session"]: r for r in store.all_sessions()}
    slim = {r["session"]: r for r in store.status_sessions()}
    assert list(full) == list(slim)
    for sid, record in full.items():
        launch = dict(record["launch"])
        launch.pop("argv", None)
        assert slim[sid]["launch"] == launch
        assert {k: v for k, v in slim[sid].items() if k != "launch"} == {
            k: v for k, v in record.items() if k != "launch"}


def test_the_fast_path_imports_no_click_yaml_or_config(tmp_path: Path) -> None:
    _fleet()
    code = ("import sys; sys.argv = ['ao', 'status', '--json']\n"
            "from supervisor.entry import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'ruamel')\n"
            "               or m in ('supervisor.config', 'supervisor.report.cli', 'secrets'))\n"
            "print(repr((code, heavy)), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stderr.strip().splitlines()[-1] == "(0, [])", out.stderr
    assert len(json.loads(out.stdout)) == 5


def test_parse_takes_only_what_it_fully_understands() -> None:
    args = status_view.parse(["--json", "x", "--project=p", "--since", "2h", "--active", "--attention"])
    assert args is not None
    assert (args.session, args.as_json, args.project, args.since, args.active, args.attention) == (
        "x", True, "p", "2h", True, True)
    for argv in (["--watch"], ["--help"], ["--"], ["a", "b"], [""], ["--since"], ["--json=yes"], ["--act"],
                 ["--project", "-x"], ["--active", "--active"]):
        assert status_view.parse(argv) is None, argv


def test_the_fast_path_agrees_with_the_config_module() -> None:
    from supervisor import config

    assert status_view.CONFIG_NAME == config.CONFIG_NAME
    assert not config.DEFAULTS.get("pricing")  # no config file means no price overrides
