"""Usage from hand-made hostile rollouts: exact token numbers, no crashes, warnings that name file:line."""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from supervisor.observe import index, receipts, rollout, usage
from supervisor.redact import MASK, redact, redact_text
from supervisor.report import cmd_cost

T0 = "2026-11-20T10:00:00.000Z"


def line(kind: str, payload: Any, ts: str = T0) -> bytes:
    return orjson.dumps({"timestamp": ts, "type": kind, "payload": payload}) + b"\n"


def tok(i: int, c: int, o: int, r: int) -> dict[str, int]:
    return {"input_tokens": i, "cached_input_tokens": c, "output_tokens": o, "reasoning_output_tokens": r,
            "total_tokens": i + o}


def token_count(total: tuple[int, int, int, int] | None, last: tuple[int, int, int, int] | None = None,
                ts: str = T0) -> bytes:
    info = None if total is None else {"total_token_usage": tok(*total),
                                       "last_token_usage": tok(*(last or total)), "model_context_window": 1000}
    return line("event_msg", {"type": "token_count", "info": info, "rate_limits": None}, ts)


def record(response_id: str, used: tuple[int, int, int, int], ts: str = T0) -> bytes:
    return line("token_usage_record", {"response_id": response_id, "turn_id": "turn-1", "usage": tok(*used)}, ts)


def meta(thread: str, forked_from: str | None = None, fork_offset: int | None = None) -> bytes:
    payload: dict[str, Any] = {"id": thread, "cwd": f"/work/{thread[:4]}", "cli_version": "0.169.0"}
    if forked_from:
        payload["forked_from_id"] = forked_from
        if fork_offset is not None:
            payload["history_base"] = {"thread_id": forked_from, "end_byte_offset": fork_offset}
    return line("session_meta", payload)


def model_line(name: str = "gpt-5.1-codex") -> bytes:
    return line("turn_context", {"turn_id": "turn-1", "model": name, "cwd": "/work"})


def tid(n: int) -> str:
    return f"0000000{n}-0000-7000-8000-000000000000"


def rollout_file(home: Path, n: int, body: bytes, archived: bool = False) -> Path:
    folder = home / ("archived_sessions" if archived else "sessions/2026/11/20")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rollout-2026-11-20T10-00-0{n}-{tid(n)}.jsonl"
    path.write_bytes(body)
    return path


def totals(result: index.Refresh, path: Path | None = None) -> tuple[int, int, int, int]:
    sums = [0, 0, 0, 0]
    for f in result.files.values():
        if path is not None and f.path != str(path):
            continue
        for _, _, t in f.sums:
            for n, key in enumerate(usage.TOKEN_KEYS):
                sums[n] += t[key]
    return tuple(sums)  # type: ignore[return-value]


@pytest.fixture
def home(isolated_home: Path) -> Path:
    return Path(os.environ["CODEX_HOME"])


def scan_all(home: Path) -> index.Refresh:
    return index.refresh(index.discover(home), prune_roots=[home / "sessions", home / "archived_sessions"])


# --- token_count fallback -------------------------------------------------------------------------

def test_reemitted_token_counts_are_counted_once(home: Path) -> None:
    body = (meta(tid(1)) + model_line() + token_count(None)
            + token_count((100, 10, 5, 1)) + token_count((100, 10, 5, 1))      # re-emitted
            + token_count((250, 60, 15, 3), (150, 50, 10, 2)) + token_count(None)
            + token_count((250, 60, 15, 3)) + token_count((400, 160, 40, 3)))
    path = rollout_file(home, 1, body)
    assert totals(scan_all(home), path) == (400, 160, 40, 3)


def test_token_usage_records_win_and_count_each_response_once_across_files(home: Path) -> None:
    first = meta(tid(1)) + model_line() + record("resp_a", (1000, 100, 50, 10)) + token_count((1000, 100, 50, 10)) \
        + record("resp_b", (1100, 900, 60, 20)) + token_count((2100, 1000, 110, 30))
    # a resumed copy replaying resp_b, and a response of its own
    second = meta(tid(2)) + model_line() + record("resp_b", (1100, 900, 60, 20)) \
        + record("resp_c", (500, 0, 7, 0)) + token_count((9999, 0, 999, 0))
    rollout_file(home, 1, first)
    rollout_file(home, 2, second)
    assert totals(scan_all(home)) == (2600, 1000, 117, 30)


def test_fork_starts_from_parent_totals(home: Path) -> None:
    parent_body = meta(tid(1)) + model_line() + token_count((3000, 0, 700, 50)) + token_count((3000, 0, 750, 50))
    fork_point = len(parent_body)
    # the parent goes on after the fork (a resume): the fork's base is the total at the fork point
    parent = rollout_file(home, 1, parent_body + token_count((5000, 0, 900, 60)))
    fork = rollout_file(home, 2, meta(tid(2), tid(1), fork_point) + model_line()
                        + token_count((4000, 200, 1000, 80), (1000, 200, 250, 30)) + token_count((4000, 200, 1000, 80)))
    result = scan_all(home)
    assert totals(result, parent) == (5000, 0, 900, 60)
    assert totals(result, fork) == (1000, 200, 250, 30)  # 3,750 of its first total were the parent's


def test_fork_without_offset_uses_parents_last_total_and_unknown_parent_warns(home: Path) -> None:
    rollout_file(home, 1, meta(tid(1)) + token_count((3000, 0, 750, 0)))
    known = rollout_file(home, 2, meta(tid(2), tid(1)) + token_count((4000, 0, 1000, 0), (1000, 0, 250, 0)))
    orphan = rollout_file(home, 3, meta(tid(3), tid(9)) + token_count((4000, 0, 1000, 0), (900, 0, 200, 0)))
    result = scan_all(home)
    assert totals(result, known) == (1000, 0, 250, 0)
    assert totals(result, orphan) == (900, 0, 200, 0)
    assert any(tid(9) in w and str(orphan) in w for w in result.warnings)


def test_old_format_and_unknown_lines_do_not_crash(home: Path) -> None:
    old = (b'{"id":"x","timestamp":"2025-05-01T10:00:00Z","instructions":null}\n'
           b'{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}\n'
           b'{"record_type":"state"}\n')
    odd = (meta(tid(2)) + line("future_kind", {"type": "token_count"}) + b'[1, 2, 3]\n' + b'"token_count"\n'
           + b'{"type":"token_count","payload":7}\n' + line("event_msg", {"type": "token_count", "info": {"x": 1}})
           + line("event_msg", {"type": "token_count", "info": {"total_token_usage": "lots"}})
           + line("world_state", {}) + token_count((10, 0, 2, 0)))
    rollout_file(home, 1, old)
    rollout_file(home, 2, odd)
    assert totals(scan_all(home)) == (10, 0, 2, 0)


# --- bytes on disk --------------------------------------------------------------------------------

def test_garbage_and_truncated_lines_warn_with_file_and_line(home: Path) -> None:
    body = (meta(tid(1)) + record("r1", (100, 0, 10, 0))
            + b'\x00\xff\xfe garbage "type":"token_usage_record" {{{\n'          # line 3
            + b'{"timestamp":"x","type":"token_usage_record","payload":{"usage":\n'  # line 4: cut short
            + record("r2", (200, 0, 20, 0))
            + b'{"timestamp":"' + T0.encode() + b'","type":"token_usage_record","payl')  # no newline yet
    path = rollout_file(home, 1, body)
    result = scan_all(home)
    assert totals(result, path) == (300, 0, 30, 0)
    assert any(w.startswith(f"{path}:3:") for w in result.warnings)
    assert any(w.startswith(f"{path}:4:") for w in result.warnings)
    assert any("incomplete line" in w for w in result.warnings)
    # the writer finishes the last line: only those bytes are read, and it counts
    with open(path, "ab") as fh:
        fh.write(b'oad":{"response_id":"r3","usage":' + orjson.dumps(tok(5, 0, 1, 0)) + b"}}\n")
    again = scan_all(home)
    assert totals(again, path) == (305, 0, 31, 0)
    assert again.read_files == 1 and again.read_bytes < 250  # the completed last line only
    assert not any("incomplete line" in w for w in again.warnings)


def test_ten_megabyte_line_and_overlong_line(tmp_path: Path) -> None:
    big = orjson.dumps({"timestamp": T0, "type": "token_usage_record",
                        "payload": {"response_id": "big", "padding": "x" * (10 << 20), "usage": tok(7, 0, 3, 0)}})
    path = tmp_path / "rollout-big.jsonl"
    path.write_bytes(record("r0", (1, 0, 1, 0)) + big + b"\n" + record("r1", (2, 0, 2, 0)))
    for chunk in (1 << 20, 3 << 20, 64 << 20):
        tail = rollout.RolloutTail(path, chunk_size=chunk)
        got, fold = usage.fold_lines(line for _, line in tail.read_new(usage.USAGE_MARKERS).lines)
        assert [u.response_id for u in got] == ["r0", "big", "r1"]
        assert sum(u.input for u in got) == 10
    capped = rollout.RolloutTail(path, chunk_size=1 << 20, max_line=4 << 20)
    batch = capped.read_new()
    assert [n for n, _ in batch.lines] == [1, 3]
    assert batch.warnings == [f"{path}:2: skipped a line longer than 4 MiB"]
    assert capped.offset == path.stat().st_size


def test_file_grows_across_reads_with_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "rollout-grow.jsonl"
    first, second = record("r1", (10, 0, 1, 0)), record("r2", (20, 0, 2, 0))
    path.write_bytes(first + second[:25])
    tail = rollout.RolloutTail(path, chunk_size=16)
    batch = tail.read_new()
    assert [n for n, _ in batch.lines] == [1] and not batch.reset and tail.pending == 25
    assert tail.offset == len(first)
    with open(path, "ab") as fh:
        fh.write(second[25:] + b"\n" + first)  # a blank line, then r1
    batch = tail.read_new()
    assert [(n, v["payload"]["response_id"]) for n, v in batch.lines] == [(2, "r2"), (4, "r1")]
    assert tail.offset == path.stat().st_size and tail.line_no == 4
    assert tail.read_new().lines == []


def test_file_replaced_or_truncated_mid_read_resets(home: Path, tmp_path: Path) -> None:
    path = rollout_file(home, 1, meta(tid(1)) + record("r1", (100, 0, 10, 0)) + record("r2", (100, 0, 10, 0)))
    assert totals(scan_all(home)) == (200, 0, 20, 0)
    tail = rollout.RolloutTail(path)
    assert len(tail.read_new().lines) == 3
    # replaced by a new file (new inode) that is longer than what was read
    fresh = tmp_path / "new.jsonl"
    fresh.write_bytes(meta(tid(1)) + record("r5", (1, 0, 1, 0)) + record("r6", (2, 0, 2, 0)) + record("r7", (3, 0, 3, 0)))
    os.replace(fresh, path)
    batch = tail.read_new()
    assert batch.reset and [n for n, _ in batch.lines] == [1, 2, 3, 4]
    result = scan_all(home)
    assert result.resets == 1 and totals(result) == (6, 0, 6, 0)
    # truncated: shrinks below the offset
    path.write_bytes(meta(tid(1)) + record("r9", (4, 0, 4, 0)))
    result = scan_all(home)
    assert result.resets == 1 and totals(result) == (4, 0, 4, 0)
    assert tail.read_new().reset


def test_zst_without_module_warns_naming_the_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    real_import = builtins.__import__

    def no_zstd(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "zstandard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zstd)
    folder = home / "archived_sessions"
    folder.mkdir(parents=True)
    path = folder / f"rollout-2026-11-20T10-00-00-{tid(4)}.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd not really")
    result = scan_all(home)
    assert totals(result) == (0, 0, 0, 0)
    assert any(str(path) in w and "zstandard" in w for w in result.warnings)


def test_zst_is_read_when_zstandard_is_installed(home: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    folder = home / "archived_sessions"
    folder.mkdir(parents=True)
    path = folder / f"rollout-2026-11-20T10-00-00-{tid(4)}.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(meta(tid(4)) + record("z1", (40, 4, 4, 0))))
    assert totals(scan_all(home)) == (40, 4, 4, 0)


# --- the index --------------------------------------------------------------------------------------

def test_index_warm_run_reads_nothing_and_rebuilds_identically(home: Path) -> None:
    for n in range(1, 4):
        rollout_file(home, n, meta(tid(n)) + model_line() + record(f"r{n}", (100 * n, 10 * n, n, 0)))
    cold = scan_all(home)
    assert cold.read_files == 3
    warm = scan_all(home)
    assert warm.read_files == 0 and totals(warm) == totals(cold) == (600, 60, 6, 0)
    index.index_path().unlink()
    rebuilt = scan_all(home)
    assert rebuilt.read_files == 3 and totals(rebuilt) == totals(cold)


def test_index_follows_an_archived_file_without_reading_it(home: Path) -> None:
    path = rollout_file(home, 1, meta(tid(1)) + record("r1", (100, 0, 10, 0)))
    rollout_file(home, 2, meta(tid(2)) + record("r2", (50, 0, 5, 0)))
    scan_all(home)
    (home / "archived_sessions").mkdir()
    os.rename(path, home / "archived_sessions" / path.name)
    moved = scan_all(home)
    assert moved.read_files == 0 and totals(moved) == (150, 0, 15, 0)
    assert str(home / "archived_sessions" / path.name) in moved.files
    (home / "archived_sessions" / path.name).unlink()
    assert totals(scan_all(home)) == (50, 0, 5, 0)


def test_deleting_a_file_that_owned_a_duplicate_credits_the_other_copy(home: Path) -> None:
    first = rollout_file(home, 1, meta(tid(1)) + record("same", (100, 0, 10, 0)))
    rollout_file(home, 2, meta(tid(2)) + record("same", (100, 0, 10, 0)) + record("own", (1, 0, 1, 0)))
    assert totals(scan_all(home)) == (101, 0, 11, 0)
    first.unlink()
    assert totals(scan_all(home)) == (101, 0, 11, 0)


# --- report ------------------------------------------------------------------------------------------

def run_cost(*args: str) -> Any:
    from supervisor.report.cli import cli
    return CliRunner().invoke(cli, ["cost", *args], catch_exceptions=False)


def test_cost_all_groups_by_day_in_a_timezone_and_filters(home: Path) -> None:
    rollout_file(home, 1, meta(tid(1)) + model_line()
                 + record("a", (1_000_000, 0, 0, 0), "2026-11-20T22:50:00.000Z")
                 + record("b", (0, 0, 100_000, 0), "2026-11-21T01:10:00.000Z"))
    rollout_file(home, 2, meta(tid(2)) + model_line("mystery-model") + record("c", (5, 0, 5, 0), "2026-11-21T12:00:00Z"))
    out = run_cost("--all", "--json", "--by", "day", "--timezone", "Z")
    report = json.loads(out.output)
    assert [r["key"] for r in report["rows"]] == ["2026-11-20", "2026-11-21"]
    assert report["rows"][0]["cost_usd"] == 1.25 and report["rows"][1]["cost_usd"] == 1.0
    assert report["unpriced_models"] == ["mystery-model"]
    assert report["totals"]["tokens"] == {"input": 1_000_005, "cached_input": 0, "output": 100_005,
                                          "reasoning": 0, "total": 1_100_010}
    tokyo = json.loads(run_cost("--all", "--json", "--by", "day", "--timezone", "+09:00").output)
    assert [r["key"] for r in tokyo["rows"]] == ["2026-11-21"]
    only = json.loads(run_cost("--all", "--json", "--by", "model", "--since", "2026-11-21", "--timezone", "Z").output)
    assert {r["key"]: r["tokens"]["output"] for r in only["rows"]} == {"gpt-5.1-codex": 100_000, "mystery-model": 5}
    text = run_cost("--all", "--by", "day", "--timezone", "Z").output
    assert "█" in text and "TOTAL" in text
    bad = CliRunner().invoke(__import__("supervisor.report.cli", fromlist=["cli"]).cli,
                             ["cost", "--all", "--since", "2026-13-01"])
    assert bad.exit_code == 1 and "YYYY-MM-DD" in bad.output


def test_build_report_prices_per_model_exactly() -> None:
    from supervisor.observe import pricing
    table = pricing.load_table({"house-model": {"input": 3, "output": 9}})
    entries = [("s1", "p", "gpt-5.1-codex", "2026-11-20T10:00", {"input": 1200, "cached_input": 200, "output": 60, "reasoning": 6}),
               ("s1", "p", "house-model", "2026-11-20T10:15", {"input": 1000, "cached_input": 0, "output": 10, "reasoning": 0}),
               ("s2", "q", "", "", {"input": 7, "cached_input": 0, "output": 1, "reasoning": 0})]
    report = cmd_cost.build_report(entries, "session", dt.timezone.utc, None, None, table)
    assert report["rows"][0]["cost_usd"] == round((1000 * 1.25 + 200 * 0.125 + 60 * 10 + 1000 * 3 + 10 * 9) / 1e6, 6)
    assert report["rows"][0]["models"] == ["gpt-5.1-codex", "house-model"]
    assert report["unpriced_models"] == ["unknown"]
    assert report["totals"]["tokens"]["total"] == 1200 + 60 + 1010 + 8


# --- receipts and redaction ------------------------------------------------------------------------

def test_receipts_pair_calls_with_outputs_and_redact() -> None:
    call = {"type": "function_call", "name": "exec_command", "call_id": "c1",
            "arguments": json.dumps({"cmd": "OPENAI_API_KEY=sk-abcdefghijklmnopqrstu curl x", "env": {"GH_TOKEN": "t"}}),
            "internal_chat_message_metadata_passthrough": {"turn_id": "turn-9"}}
    lines = [orjson.loads(x) for x in (
        line("turn_context", {"turn_id": "turn-9", "model": "m"}),
        line("response_item", call, "2026-11-20T10:00:01.000Z"),
        line("response_item", {"type": "custom_tool_call", "name": "apply_patch", "call_id": "c2",
                               "input": "*** Begin Patch\nPASSWORD=hunter2\n"}, "2026-11-20T10:00:02.000Z"),
        line("response_item", {"type": "function_call_output", "call_id": "c1",
                               "output": "Chunk ID: 1\nProcess exited with code 3\nOutput:\nghp_" + "a" * 30},
             "2026-11-20T10:00:03.000Z"),
        line("response_item", {"type": "function_call", "name": "exec_command", "call_id": "c3",
                               "arguments": "{\"cmd\": \"sleep 30\"}"}),
    )]
    found = {r.call_id: r for r in receipts.receipts_from_lines(lines)}
    c1 = found["c1"]
    assert c1.tool == "exec_command" and c1.exit_code == 3 and c1.status == "completed" and c1.turn_id == "turn-9"
    assert c1.arguments == {"cmd": f"OPENAI_API_KEY={MASK} curl x", "env": {"GH_TOKEN": MASK}}
    assert c1.started_at == "2026-11-20T10:00:01.000Z" and c1.ended_at == "2026-11-20T10:00:03.000Z"
    assert "ghp_" not in (c1.output_excerpt or "")
    assert found["c2"].arguments == f"*** Begin Patch\nPASSWORD={MASK}\n" and found["c2"].status == "pending"
    assert found["c3"].exit_code is None and found["c3"].ended_at is None


def test_redact_shapes() -> None:
    assert redact_text("token github_pat_11ABCDEFGHIJKLMNOPQRSTUV_xyz end") == f"token {MASK} end"
    assert redact_text("export AWS_SECRET_ACCESS_KEY='a b' && ls") == f"export AWS_SECRET_ACCESS_KEY='{MASK}' && ls"
    # JSON-style keys inside text, the way tool arguments arrive; the result stays valid JSON
    as_json = redact_text('{"api_key": "v1", "GH_TOKEN": "v2", "name": "x"}')
    assert json.loads(as_json) == {"api_key": MASK, "GH_TOKEN": MASK, "name": "x"}
    assert redact_text("cache_key_count=3 monkey=2") == "cache_key_count=3 monkey=2"
    assert redact({"Password": "x", "nested": [{"my_secret_thing": 1}], "plain": "sk-proj-abcdefghijklmnopqrstuv"}) == \
        {"Password": MASK, "nested": [{"my_secret_thing": MASK}], "plain": MASK}


def test_a_truncated_record_line_does_not_switch_off_token_counts(home: Path) -> None:
    """Found by the reliability suite: a cut-off token_usage_record line once hid every later token_count."""
    cut = b'{"timestamp":"2026-11-20T10:00:00.000Z","type":"token_usage_record","payload":{"usage":\n'
    body = (meta(tid(1)) + model_line() + token_count((100, 0, 10, 0)) + cut + token_count((300, 0, 30, 0)))
    path = rollout_file(home, 1, body)
    result = scan_all(home)
    assert totals(result, path) == (300, 0, 30, 0)
    assert any(f"{path}:4" in w for w in result.warnings)


def test_a_file_replaced_between_stat_and_read_is_read_again(home: Path) -> None:
    """Found by the reliability suite: the index once kept the old file's stat with the new file's totals."""
    path = rollout_file(home, 1, meta(tid(1)) + model_line() + token_count((100, 0, 10, 0)))
    assert totals(scan_all(home), path) == (100, 0, 10, 0)
    with open(path, "ab") as fh:
        fh.write(token_count((150, 0, 15, 0)))
    real_open = rollout.open if hasattr(rollout, "open") else open
    swapped = path.with_suffix(".swap")
    swapped.write_bytes(meta(tid(1)) + model_line() + token_count((14, 0, 1, 0)))
    original = path.read_bytes()

    def replacing_open(file, mode="r", *args, **kwargs):  # the path is replaced right before the read
        if os.fspath(file) == str(path) and "b" in mode:
            os.replace(swapped, path)
        return real_open(file, mode, *args, **kwargs)

    rollout.open = replacing_open  # type: ignore[attr-defined]
    try:
        scan_all(home)
    finally:
        del rollout.open  # type: ignore[attr-defined]
    path.write_bytes(original)  # the original comes back
    assert totals(scan_all(home), path) == (150, 0, 15, 0)
