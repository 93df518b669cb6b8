"""Reliability suite plumbing: every fault records its trials here; the run ends with one table.

Run with `make reliability` (not part of `make test`). Each test file drives one fault (R1..R5)
many times with random variations; a fault passes only when every trial held its property.
The seed is printed so a failing run can be replayed: `RELIABILITY_SEED=N make reliability`.
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _harness import RESULTS, Fault  # noqa: E402

SEED = int(os.environ.get("RELIABILITY_SEED") or time.time_ns() % 1_000_000)
MAX_DETAILS = 12  # failure details printed per fault; the rest are counted


@pytest.fixture(scope="session")
def seed() -> int:
    return SEED


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """One reproducible stream per test: the run's seed plus the test's name."""
    return random.Random(f"{SEED}:{request.node.nodeid}")


@pytest.fixture(autouse=True)
def no_ambient_ao(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials build their own AO_HOME/CODEX_HOME; nothing from the caller's environment leaks in."""
    for name in ("AO_CONFIG", "AO_SESSION", "AO_DATA_DIR", "AO_WRAPPER_ACTIVE"):
        monkeypatch.delenv(name, raising=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A test that breaks for any reason other than failed trials is a failed trial of its fault."""
    report = yield
    if report.failed and "trials failed (details in the reliability summary" not in str(report.longrepr):
        fault_id = item.path.stem.split("_")[1].upper()  # test_r3_... -> R3
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(report.longrepr)[-300:]
        Fault.get(fault_id, item.name).trial([f"harness error in {report.when}: {message[:300]}"], item.nodeid)
    return report


def pytest_report_header(config: pytest.Config) -> str:
    return f"reliability seed: {SEED} (replay with RELIABILITY_SEED={SEED})"


def _table() -> list[str]:
    rows = [("fault", "what", "trials", "failures", "result")]
    for f in RESULTS.values():
        rows.append((f.fault_id, f.title, str(f.trials), str(f.failures), "PASS" if f.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [line]
    for n, row in enumerate(rows):
        out.append("|".join(f" {cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])} " for i, cell in enumerate(row)))
        if n == 0:
            out.append(line)
    out.append(line)
    return out


def pytest_unconfigure(config: pytest.Config) -> None:
    """Printed after pytest's own summary, so the output ends with the table."""
    if not RESULTS:
        return
    write = sys.stdout.write
    write("\n")
    for f in RESULTS.values():
        for note in f.notes:
            write(f"[{f.fault_id}] note: {note}\n")
    for f in RESULTS.values():
        if not f.failures:
            continue
        write(f"\n[{f.fault_id}] {f.failures} failed trial(s) of {f.trials}:\n")
        for detail in f.details[:MAX_DETAILS]:
            write(f"  - {detail}\n")
        if len(f.details) > MAX_DETAILS:
            write(f"  ... and {len(f.details) - MAX_DETAILS} more\n")
    total = time.monotonic() - _STARTED
    write(f"\nreliability summary (seed {SEED}, {total:.0f}s wall)\n")
    for row in _table():
        write(row + "\n")
    sys.stdout.flush()


_STARTED = time.monotonic()
