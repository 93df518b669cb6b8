"""The fast usage scan (observe/scan.py) and the parallel cold index: the same lines, the same fold, the same
report as the generic path (orjson on every chosen line), whatever the line shapes, the worker count, the
order files land in workers, or a worker killed mid-run."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from supervisor.observe import codex_format as cf
from supervisor.observe import index, rollout, scan, scan_shapes, usage
from tests.test_usage_hostile import line, meta, model_line, record, rollout_file, tid, tok, token_count, totals

REAL_RECORD = (b'{"timestamp":"2026-12-03T18:42:41.709Z","ordinal":10,"type":"token_usage_record","payload":'
               b'{"thread_id":"002c771f-cbb4-4576-a7b5-ad42230ad011","turn_id":"8f896770","session_id":"002c771f",'
               b'"root_turn_id":"8f896770","response_id":"resp_b743","usage":{"input_tokens":4000,'
               b'"cached_input_tokens":3000,"cache_write_input_tokens":0,"output_tokens":120,'
               b'"reasoning_output_tokens":40,"total_tokens":4120},"turn_token_usage":{"input_tokens":4000},'
               b'"thread_token_usage":{"input_tokens":4000}}}')
REAL_META = (b'{"timestamp":"2026-12-03T18:42:41.598Z","ordinal":0,"type":"session_meta","payload":'
             b'{"account_scoped":true,"session_id":"s","id":"01a23d37-42ed-7252-a5c4-ef35766f6a32",'
             b'"timestamp":"2026-12-03T18:42:41.524Z","cwd":"/tmp/ws","runtime_workspace_roots":["/tmp/ws"],'
             b'"originator":"codex_exec","cli_version":"0.169.0","source":"exec","thread_source":"user",'
             b'"model_provider":"bench","base_instructions":{"text":"You are a coding agent \\" 1e999 \\u00e9",'
             b'"provenance":{"type":"default","model":"m"}},"history_mode":"paginated",'
             b'"context_window":{"window_id":"w"}}}')


# --- the generic path, as index._read_file did it before the scan ---------------------------------------
def generic_fold(path: Path) -> tuple[list[usage.ResponseUsage], dict[str, Any], list[str], int]:
    tail = rollout.RolloutTail(path)
    tail.sync()
    fold = usage.FileFold({"where": str(path)})
    out: list[usage.ResponseUsage] = []

    def spans(chunk: bytes, last_nl: int) -> list[tuple[int, int]]:
        return cf.usage_spans(chunk, last_nl, fold.has_records)

    for raw in tail.fast_lines(spans):
        if fold.has_records and cf.TOKEN_COUNT_MARKER in raw:
            continue
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            tail.warnings.append(f"{path}:{tail.line_number()}: skipped a corrupt line ({exc.msg})")
            continue
        item = fold.feed(parsed)
        if item is not None:
            out.append(item)
    return out, fold.state(), tail.warnings + fold.warnings, tail.line_no


def fast_fold(path: Path, typed: bool = True) -> tuple[list[usage.ResponseUsage], dict[str, Any], list[str], int]:
    tail = rollout.RolloutTail(path)
    tail.sync()
    fold = usage.FileFold({"where": str(path)})
    out: list[usage.ResponseUsage] = []

    def add(rid: str | None, model: str, bucket: str, i: int, c: int, o: int, r: int) -> None:
        out.append(usage.ResponseUsage(rid, model, bucket, i, c, o, r))

    scan.feed_new_lines(tail, fold, add, str(path), typed)
    return out, fold.state(), tail.warnings + fold.warnings, tail.line_no


# --- which lines -----------------------------------------------------------------------------------
PIECES = [b'"type":"t', b'"type":"token_usage_record"', b'"type":"token_count"', b'"type":"turn_context"',
          b'"type":"thread_settings_applied"', b'"type":"session_meta"', b'"type":"task_started"', b'"type":"type":"t',
          b'"type":"tu', b'"type":"th', b'"type":"to', b'x', b'\n', b'\n', b'{', b'"', b':']


@pytest.mark.parametrize("seed", range(300))
def test_the_same_lines_as_usage_spans(seed: int) -> None:
    rng = random.Random(seed)
    chunk = b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 60))) + b"\n"
    last_nl = chunk.rfind(b"\n")
    ours = [(start, end) for start, end, _ in scan.spans(chunk, last_nl)]
    assert ours == cf.usage_spans(chunk, last_nl, False), chunk


def test_a_line_chosen_for_two_markers_goes_to_the_generic_decoder() -> None:
    chunk = b'{"type":"token_usage_record","x":{"type":"session_meta"}}\n{"type":"session_meta"}\n'
    kinds = [kind for _, _, kind in scan.spans(chunk, len(chunk) - 1)]
    assert kinds == [scan._OTHER, scan._META]


# --- the same fold for odd and hostile shapes ----------------------------------------------------------
def variants() -> list[bytes]:
    """Lines the typed decoders must refuse (or read exactly as orjson does)."""
    rec, met = REAL_RECORD, REAL_META
    return [
        rec, met,
        rec.replace(b'"input_tokens":4000,', b'"input_tokens":123456789012345678901234567890,', 1),  # orjson: float
        rec.replace(b'"input_tokens":4000,', b'"input_tokens":18446744073709551615,', 1),  # u64 max: an int
        rec.replace(b'"input_tokens":4000,', b'"input_tokens":9223372036854775808,', 1),  # above i64
        rec.replace(b'"input_tokens":4000,', b'"input_tokens":-5,', 1),
        rec.replace(b'"input_tokens":4000,', b'"input_tokens":4000.0,', 1),
        rec.replace(b'"input_tokens":4000,', b'"input_tokens":true,', 1),
        rec.replace(b'"input_tokens":4000,', b'"input_tokens":"4000",', 1),
        rec.replace(b'"input_tokens":4000,', b'"input_tokens":null,', 1),
        rec.replace(b'"turn_token_usage":{"input_tokens":4000}', b'"turn_token_usage":{"input_tokens":1e999}'),
        rec.replace(b'"turn_id":"8f896770"', b'"turn_id":"\xff\xfe"'),
        rec.replace(b'"turn_id":"8f896770"', b'"turn_id":"\\ud800"'),
        rec.replace(b'"turn_id":"8f896770"', b'"extra":[1,2,{"a":1e999}],"turn_id":"x"'),
        rec.replace(b'"turn_id":"8f896770"', b'"extra":{"type":"token_count"},"turn_id":"x"'),
        rec.replace(b'"response_id":"resp_b743"', b'"response_id":""'),
        rec.replace(b'"response_id":"resp_b743"', b'"response_id":7'),
        rec.replace(b'"response_id":"resp_b743"', b'"response_id":"a","response_id":"b"'),
        rec.replace(b'"type":"token_usage_record"', b'"type":"token_count","type":"token_usage_record"'),
        rec.replace(b'"type":"token_usage_record"', b'"type":"token_usage_record","type":"event_msg"'),
        rec.replace(b'"usage":{', b'"usage":null,"x":{'),
        rec.replace(b'"timestamp":"2026-12-03T18:42:41.709Z"', b'"timestamp":12'),
        rec.replace(b'"timestamp":"2026-12-03T18:42:41.709Z"', b'"timestamp":"2026-12-03T18:42:41+02:00"'),
        rec.replace(b'"timestamp":"2026-12-03T18:42:41.709Z"', b'"timestamp":"9Z"'),
        rec.replace(b'"ordinal":10', b'"ordinal":1e999'),
        rec[:-1] + b',}',
        rec[:len(rec) // 2],
        met.replace(b'"text":"You', b'"text":"\xc0\xaf You'),               # overlong UTF-8, skipped by msgspec
        met.replace(b'"text":"You', b'"text":"\xed\xa0\x80 You'),           # an encoded surrogate
        met.replace(b'"text":"You', b'"text":"\xc3\xa9 You'),               # valid UTF-8
        met.replace(b'"text":"You are a coding agent \\" 1e999 \\u00e9"', b'"text":1e999'),
        met.replace(b'"text":"You are a coding agent \\" 1e999 \\u00e9"', b'"text":null'),
        met.replace(b'"text":"You are a coding agent \\" 1e999 \\u00e9"', b'"text":{"a":1}'),
        met.replace(b'"source":"exec"', b'"source":{"subagent":{"thread_spawn":{"parent_thread_id":"p-1"}}}'),
        met.replace(b'"source":"exec"', b'"source":"exec","new_field":1'),
        met.replace(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/ws","forked_from_id":"parent-1",'
                    b'"history_base":{"thread_id":"parent-1","end_byte_offset":100}'),
        met.replace(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/ws","history_base":{"end_byte_offset":1e3}'),
        met.replace(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/ws","subagent_history_start_ordinal":3'),
        met.replace(b'"cwd":"/tmp/ws"', b'"cwd":5'),
        met.replace(b'"id":"01a23d37', b'"id":"x","id":"01a23d37'),
        met.replace(b'"payload":{', b'"payload":[],"p":{'),
        met.replace(b'"type":"session_meta"', b'"type":"session_meta","type":"turn_context"'),
        met[:-2],
    ]


@pytest.mark.parametrize("n", range(len(variants())))
def test_each_odd_line_folds_as_the_generic_path_does(tmp_path: Path, n: int) -> None:
    odd = variants()[n]
    path = tmp_path / "rollout-2026-12-03T18-42-41-01a23d37-42ed-7252-a5c4-ef35766f6a32.jsonl"
    # the odd line both before and after the file's first record, and as the file's first line
    body = odd + b"\n" + model_line() + token_count((10, 0, 1, 0)) + odd + b"\n" + REAL_RECORD + b"\n" \
        + token_count((20, 0, 2, 0)) + odd + b"\n" + record("resp_z", (5, 1, 1, 0)) + odd + b"\n"
    path.write_bytes(body)
    assert fast_fold(path) == generic_fold(path)
    assert fast_fold(path, typed=False) == generic_fold(path)


def test_a_random_mix_folds_as_the_generic_path_does(tmp_path: Path) -> None:
    rng = random.Random(13)
    pool = variants() + [model_line().rstrip(b"\n"), token_count((5, 1, 1, 0)).rstrip(b"\n"),
                         line("event_msg", {"type": "thread_settings_applied",
                                            "thread_settings": {"model": "gpt-5.4"}}).rstrip(b"\n"),
                         b"garbage", b""]
    for n in range(40):
        path = tmp_path / f"rollout-2026-11-20T10-00-00-{tid(n % 10)}.jsonl"
        path.write_bytes(b"\n".join(rng.choice(pool) for _ in range(rng.randint(1, 30))) + rng.choice([b"\n", b""]))
        assert fast_fold(path) == generic_fold(path), n
        assert fast_fold(path, typed=False) == generic_fold(path), n


# --- the compiled loop (_fastscan.c) against the same walk without it ------------------------------------
def test_the_compiled_loop_is_built() -> None:
    # make install compiles it (gcc and Python's headers are on every machine this runs on); without it
    # the scan is exact but slower, and the tests below would compare the Python walk with itself
    assert scan._fast is not None, "supervisor/observe/_fastscan.c was not built: rerun `make install`"


def compiled_variants() -> list[bytes]:
    """Record lines at the edge of what the compiled parser accepts: it must fold them as msgspec and
    orjson do, or leave them to the Python walk."""
    rec = REAL_RECORD
    swap = rec.replace
    return [
        swap(b'"ordinal":10', b'"ordinal": 10'), b" " + rec, rec + b" ", rec + b"\r", rec + b"x",
        swap(b'"response_id":"resp_b743"', b'"response_id":"resp\\u005fb743"'),   # the same id, escaped
        swap(b'"response_id":"resp_b743"', b'"response_id":"resp_\xc3\xa9"'),
        swap(b'"input_tokens":4000,', b'"input_tokens":04000,', 1),
        swap(b'"input_tokens":4000,', b'"input_tokens":999999999999999999,', 1),     # 18 digits
        swap(b'"input_tokens":4000,', b'"input_tokens":9223372036854775807,', 1),    # 19: left to msgspec
        swap(b'"input_tokens":4000,', b'"input_tokens":-0,', 1),
        swap(b'"input_tokens":4000,', b'"input_tokens":-999999999999999999,', 1),
        swap(b'"input_tokens":4000,', b'"input_tokens":1,"input_tokens":2,', 1),
        swap(b'"input_tokens":4000,', b'"input_tokens":4000,"new_tokens":1,', 1),
        swap(b'"turn_token_usage":{"input_tokens":4000}', b'"turn_token_usage":{"input_tokens":1,"x":2}'),
        swap(b'"turn_token_usage":{"input_tokens":4000}', b'"turn_token_usage":[]'),
        swap(b'"turn_token_usage":{"input_tokens":4000}', b'"turn_token_usage":{}'),
        rec[:rec.index(b'"usage":')] + b'"usage":{}}}',
        rec[:rec.index(b'"payload":')] + b'"payload":{}}',
        rec[:rec.index(b'"payload":')] + b'"payload":null}',
        swap(b'"thread_id":"002c771f', b'"thread_id":null,"x_id":"002c771f'),
        swap(b'"thread_id":"002c771f', b'"thread_id":"\xc3\xa9'),
        swap(b'"timestamp":"2026-12-03T18:42:41.709Z"', b'"timestamp":"2031-06-30T23:59:59.999Z"'),   # a new bucket
        swap(b'"timestamp":"2026-12-03T18:42:41.709Z"', b'"timestamp":null'),
        swap(b'"timestamp":"2026-12-03T18:42:41.709Z",', b''),
        swap(b'"ordinal":10', b'"ordinal":null'), swap(b'"ordinal":10', b'"ordinal":-1'),
        swap(b'"ordinal":10', b'"ordinal":true'),
        swap(b'{"timestamp"', b'{"payload":null,"timestamp"'),
        swap(b'"response_id":"resp_b743"', b'"response_id":null'),
        swap(b'"response_id":"resp_b743"', b'"response_id":"resp_b743","response_id":"resp_b743"'),
        b'{"type":"token_usage_record"}', b'{"type":"token_usage_record","payload":{"usage":{"input_tokens":5}}}',
        b'{}{"type":"token_usage_record"}',
    ]


REAL_CONTEXT = (b'{"timestamp":"2026-12-04T03:23:31.492Z","ordinal":5,"type":"turn_context","payload":{"turn_id":'
                b'"01a23f14-1906","root_turn_id":"01a23f14-1906","disabled_plugin_ids":[],"cwd":"/tmp/ws",'
                b'"approval_policy":"never","approvals_reviewer":"user","permission_profile":{"type":"disabled"},'
                b'"model":"gpt-5.4-mini","collaboration_mode":{"mode":"default","settings":{"model":"gpt-5.1-codex",'
                b'"reasoning_effort":null,"developer_instructions":null}},"multi_agent_version":"v1",'
                b'"realtime_active":false,"summary":"none","sandbox_policy":{"type":"danger-full-access"}}}')


def context_variants() -> list[bytes]:
    """turn_context lines at the edge of what the compiled reader accepts (any valid JSON, within its
    limits): it must switch the model as orjson and FileFold.feed do, or leave the line to the walk."""
    ctx = REAL_CONTEXT
    swap = ctx.replace
    return [
        ctx, b" " + ctx + b" \r", swap(b'":', b'" : '), swap(b',"', b' ,\t"'), ctx + b"x", ctx[:-1], ctx + b"}",
        swap(b'"model":"gpt-5.4-mini"', b'"model":""'), swap(b'"model":"gpt-5.4-mini"', b'"model":null'),
        swap(b'"model":"gpt-5.4-mini"', b'"model":7'), swap(b'"model":"gpt-5.4-mini"', b'"model":["m"]'),
        swap(b'"model":"gpt-5.4-mini"', b'"model":"a","model":"gpt-5.5"'),
        swap(b'"model":"gpt-5.4-mini"', b'"model":"gpt-5.5","model":null'),
        swap(b'"model":"gpt-5.4-mini"', b'"model":"gpt\\u002d5"'),            # an escape: the walk decodes it
        swap(b'"model":"gpt-5.4-mini"', b'"mod\\u0065l":"gpt-5.5"'),            # a key spelled with an escape
        swap(b'"model":"gpt-5.4-mini"', b'"model":"gpt\\n5"'),
        swap(b'"model":"gpt-5.4-mini"', b'"model":"gpt-\xc3\xa9"'),
        swap(b'"model":"gpt-5.4-mini"', b'"model":"gpt-\x7f"'),
        swap(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\"\\\\\\/\\b\\f\\n\\r\\t"'),
        swap(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/\xc0\xaf"'), swap(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/\xed\xa0\x80"'),
        swap(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/\xf4\x90\x80\x80"'), swap(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/\xc3"'),
        swap(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/\x01"'), swap(b'"cwd":"/tmp/ws"', b'"cwd":"a\\x"'),
        swap(b'"cwd":"/tmp/ws"', b'"cwd":"\\ud800"'),
        swap(b'"ordinal":5', b'"ordinal":-0'), swap(b'"ordinal":5', b'"ordinal":-01'),
        swap(b'"ordinal":5', b'"ordinal":5.5'), swap(b'"ordinal":5', b'"ordinal":1e3'),
        swap(b'"ordinal":5', b'"ordinal":123456789012345678901'), swap(b'"ordinal":5', b'"ordinal":05'),
        swap(b'"ordinal":5', b'"ordinal":tru'), swap(b'"ordinal":5', b'"ordinal":[1,[2,[]],{}]'),
        swap(b'"ordinal":5', b'"ordinal":[1,]'), swap(b'"ordinal":5', b'"ordinal":{"a":1,}'),
        swap(b'"ordinal":5', b'"ordinal":' + b"[" * 70 + b"]" * 70),
        swap(b'"ordinal":5', b'"ordinal":' + b"[" * 20 + b"]" * 20),
        swap(b'"type":"turn_context"', b'"type":"turn_context","type":"event_msg"'),
        swap(b'"type":"turn_context"', b'"type":"event_msg","type":"turn_context"'),
        swap(b'"type":"turn_context"', b'"type":"turn_context","type":null'),
        swap(b'"type":"turn_context"', b'"x":{"type":"turn_context"}'),
        swap(b'"type":"turn_context"', b'"x":{"type":"turn_context"},"type":"token_usage_record"'),
        swap(b'"type":"turn_context"', b'"type":"task_started","x":{"type":"turn_context"}'),
        swap(b'"payload":{', b'"payload":null,"p":{'), swap(b'"payload":{', b'"payload":{"model":"x"},"payload":{'),
        swap(b'"payload":{', b'"p":{"model":"x"},"payload":{'),
        swap(b'"summary":"none"', b'"summary":{"type":"token_count"}'),
        b'{"type":"turn_context"}', b'{"type":"turn_context","payload":{"model":"m"}}', b'{}{"type":"turn_context"}',
        b'["type":"turn_context"]', b'{"type":"turn_context","payload":[]}',
    ]


REAL_SETTINGS = (b'{"timestamp":"2026-12-04T03:23:31.492Z","ordinal":6,"type":"event_msg","payload":{"type":'
                 b'"thread_settings_applied","thread_id":"01a23f14-18f4","thread_settings":{"model":"gpt-5.4-mini",'
                 b'"model_provider_id":"bench","approval_policy":"never","approvals_reviewer":"user",'
                 b'"requested_approvals_reviewer":"user","permission_profile":{"type":"disabled"},"cwd":"/tmp/ws",'
                 b'"runtime_workspace_roots":["/tmp/ws"],"collaboration_mode":{"mode":"default","settings":'
                 b'{"model":"gpt-5.1-codex","reasoning_effort":null,"developer_instructions":null}},'
                 b'"disabled_plugin_ids":[]}}}')


def settings_variants() -> list[bytes]:
    """thread_settings_applied lines at the edge of what the compiled reader accepts."""
    st = REAL_SETTINGS
    swap = st.replace
    return [
        st, swap(b'"model":"gpt-5.4-mini"', b'"model":""'), swap(b'"model":"gpt-5.4-mini"', b'"model":null'),
        swap(b'"model":"gpt-5.4-mini"', b'"model":"a","model":"gpt-5.5"'),
        swap(b'"model":"gpt-5.4-mini"', b'"model":"gpt\\u002d5"'),
        swap(b'"thread_settings":{', b'"model":"top","thread_settings":{'),
        swap(b'"disabled_plugin_ids":[]}', b'"disabled_plugin_ids":[]},"model":"top"'),   # not the settings' model
        b'{"type":"event_msg","payload":{"type":"thread_settings_applied","model":"m"}}',
        swap(b'"thread_settings":{', b'"thread_settings":null,"x":{'),
        swap(b'"thread_settings":{', b'"thread_settings":{"model":"gpt-5.5"},"thread_settings":{'),
        swap(b'"thread_settings":{', b'"thread_settings":{"model":"gpt-5.5"},"x":{'),
        swap(b'"disabled_plugin_ids":[]}', b'"disabled_plugin_ids":[]},"thread_settings":[]'),
        swap(b'"type":"thread_settings_applied"', b'"type":"thread_settings_applied","type":"token_count"'),
        swap(b'"type":"thread_settings_applied"', b'"type":"task_started","x":{"type":"thread_settings_applied"}'),
        swap(b'"type":"event_msg"', b'"type":"response_item"'), swap(b'"type":"event_msg"', b'"type":"turn_context"'),
        swap(b'"type":"event_msg"', b'"type":"event_msg","type":"x"'),
        swap(b'"payload":{', b'"payload":{"model":"x"},"payload":{'),
        swap(b'"cwd":"/tmp/ws"', b'"cwd":"/tmp/\xff"'), st[:-1],
        b'{"type":"event_msg","payload":{"type":"thread_settings_applied"}}',
        b'{"type":"event_msg","payload":{"type":"thread_settings_applied","thread_settings":{"model":"m"}}}',
    ]


def whole_read(path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(scan, "_fast", None)
        return scan.read_fresh(str(path))


@pytest.mark.parametrize("n", range(len(variants()) + len(compiled_variants()) + len(context_variants())
                                     + len(settings_variants())))
def test_each_odd_line_folds_the_same_with_the_compiled_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            n: int) -> None:
    odd = (variants() + compiled_variants() + context_variants() + settings_variants())[n]
    path = tmp_path / "rollout-2026-12-03T18-42-41-01a23d37-42ed-7252-a5c4-ef35766f6a32.jsonl"
    # before the first record, between records (whose id repeats), after a model switch, and last
    body = odd + b"\n" + REAL_RECORD + b"\n" + odd + b"\n" + REAL_RECORD + b"\n" + model_line() + odd + b"\n" \
        + token_count((20, 0, 2, 0)) + record("resp_z", (5, 1, 1, 0)) + REAL_META + b"\n" + odd + b"\n"
    path.write_bytes(body)
    assert whole_read(path, True, monkeypatch) == whole_read(path, False, monkeypatch)
    assert sorted(map(str, fast_fold(path)[0])) == sorted(map(str, generic_fold(path)[0]))  # the same responses


def test_a_random_mix_folds_the_same_with_the_compiled_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(29)
    pool = variants() + compiled_variants() + context_variants() + settings_variants() + [
        model_line().rstrip(b"\n"), token_count((5, 1, 1, 0)).rstrip(b"\n"), REAL_RECORD, REAL_RECORD, REAL_META,
        REAL_CONTEXT, REAL_SETTINGS, model_line("gpt-5.5").rstrip(b"\n"),
        record("resp_a", (3, 1, 1, 0)).rstrip(b"\n"), record("resp_b", (4, 1, 2, 1), "2026-12-04T00:14:59.000Z").rstrip(b"\n"),
        line("event_msg", {"type": "thread_settings_applied", "thread_settings": {"model": "gpt-5.4"}}).rstrip(b"\n"),
        b"garbage", b""]
    folded = 0
    for n in range(120):
        path = tmp_path / f"rollout-2026-11-20T10-00-00-{tid(n % 10)}.jsonl"
        path.write_bytes(b"\n".join(rng.choice(pool) for _ in range(rng.randint(1, 40))) + rng.choice([b"\n", b""]))
        fast = whole_read(path, True, monkeypatch)
        assert fast == whole_read(path, False, monkeypatch), n
        folded += fast.sums != []
    assert folded > 60   # most files counted something: the mix is not all refused lines


def test_the_compiled_loop_stops_where_the_walk_must_decide() -> None:
    if scan._fast is None:
        pytest.skip("no compiled loop")
    chunk = REAL_RECORD + b"\n" + model_line() + REAL_RECORD.replace(b"resp_b743", b"resp_2") + b"\n"
    seen: set[str] = set()
    ids: list[str] = []
    sums: dict[tuple[str, str], list[int]] = {}
    usage.bucket_of("2026-12-03T18:42:41.709Z")   # the walk caches a bucket before the compiled loop uses it
    bucket = usage.bucket_of("2026-12-03T18:42:41.709Z")
    pos, has, dups, model = scan._fast(chunk, 0, len(chunk), len(chunk) - 1, False, "m1", usage._BUCKETS, seen, ids,
                                       sums)
    # the first record is folded under m1, the turn_context line switches the model for the second
    assert (pos, has, dups, model, ids) == (-1, 1, 0, "gpt-5.1-codex", ["resp_b743", "resp_2"])
    assert sums == {("m1", bucket): [4000, 3000, 120, 40, 1], ("gpt-5.1-codex", bucket): [4000, 3000, 120, 40, 1]}
    # a turn_context line it cannot prove (its model escaped) is the walk's, and the model stays
    escaped = chunk.replace(b'"model":"gpt-5.1-codex"', b'"model":"gpt\\u002d5"')
    pos, has, dups, model = scan._fast(escaped, 0, len(escaped), len(escaped) - 1, False, "m1", usage._BUCKETS, set(),
                                       [], {})
    assert (escaped[pos:pos + 21], model) == (cf.TURN_CONTEXT_MARKER, "m1")
    # a bound (the next session_meta line) stops it before any marker at or past it
    assert scan._fast(chunk, 0, 5, len(chunk) - 1, False, "m1", usage._BUCKETS, set(), [], {})[0] == \
        chunk.index(b'"type":"token_usage_record"')


# --- the parallel cold index ------------------------------------------------------------------------
@pytest.fixture
def home(isolated_home: Path) -> Path:
    return Path(os.environ["CODEX_HOME"])


def corpus(home: Path) -> dict[str, Path]:
    """Plain sessions, a response repeated across files, a fork that needs its parent, a corrupt line."""
    files: dict[str, Path] = {}
    for n in range(1, 9):
        body = meta(tid(n)) + model_line() + b"".join(
            record(f"resp_{n}_{k}", (100 * n + k, k, 10 + k, 1)) for k in range(30))
        files[f"plain{n}"] = rollout_file(home, n, body)
    # named to sort first, created last: its copy of resp_1_0 is credited to plain1 (the older file)
    late = home / "sessions/2026/11/20" / f"rollout-2026-11-20T09-00-00-{tid(9)}.jsonl"
    late.write_bytes(line("session_meta", {"id": tid(9), "cwd": "/w"}, "2026-11-20T11:00:00.000Z")
                     + model_line() + record("resp_1_0", (100, 0, 10, 1)) + record("resp_9", (7, 0, 7, 0))
                     + b'{"type":"token_usage_record", broken\n')
    files["late"] = late
    # a fork counted by token_count deltas after the parent's total: its fold asks for the parent's history
    parent = home / "sessions/2026/11/20" / f"rollout-2026-11-20T10-30-00-{tid(10)}.jsonl"
    parent.write_bytes(line("session_meta", {"id": tid(10)}, "2026-11-20T10:30:00.000Z") + model_line()
                       + token_count((50, 0, 5, 0), ts="2026-11-20T10:31:00.000Z"))
    fork = home / "sessions/2026/11/20" / f"rollout-2026-11-20T10-29-00-{tid(11)}.jsonl"  # sorts before it
    fork.write_bytes(line("session_meta", {"id": tid(11), "forked_from_id": tid(10)}, "2026-11-20T10:40:00.000Z")
                     + model_line() + token_count((50, 0, 5, 0), ts="2026-11-20T10:40:00.000Z")
                     + token_count((80, 0, 9, 0), (30, 0, 4, 0), ts="2026-11-20T10:41:00.000Z"))
    files["parent"], files["fork"] = parent, fork
    return files


def snapshot(result: index.Refresh) -> tuple[Any, ...]:
    con = sqlite3.connect(index.index_path())
    try:
        rows = con.execute("SELECT path, size, mtime_ns, inode, dev, offset, line_no, head, fold, thread_id, cwd,"
                           " duplicates, pending, warnings, first_total FROM files ORDER BY rowid").fetchall()
        sums = con.execute("SELECT f.path, s.model, s.bucket, s.input, s.cached_input, s.output, s.reasoning,"
                           " s.responses FROM sums s JOIN files f USING (fid) ORDER BY f.path, s.model, s.bucket"
                           ).fetchall()
        ids = sorted((p, tuple(sorted(orjson.loads(b))))
                     for p, b in con.execute("SELECT f.path, i.ids FROM ids i JOIN files f USING (fid)"))
    finally:
        con.close()
    files = [(f.path, f.thread_id, f.cwd, sorted(f.sums, key=repr)) for f in result.files.values()]
    return files, result.warnings, rows, sums, ids


def cold(home: Path) -> index.Refresh:
    index.index_path().unlink(missing_ok=True)
    return index.refresh(index.discover(home), prune_roots=[home])


def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "BATCH_FILES", 2)   # files of one copy land in different workers


def test_one_and_many_workers_write_the_same_index(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = corpus(home)
    small_batches(monkeypatch)
    monkeypatch.setenv(scan.WORKERS_ENV, "1")
    one = snapshot(cold(home))
    monkeypatch.setenv(scan.WORKERS_ENV, "3")
    many = snapshot(cold(home))
    assert one == many
    result = cold(home)
    plain1 = sum(100 + k for k in range(30))
    assert totals(result, files["plain1"])[0] == plain1
    assert totals(result, files["late"]) == (7, 0, 7, 0)             # resp_1_0 stays with plain1
    assert totals(result, files["fork"]) == (30, 0, 4, 0)           # only what the fork added
    assert any(":5: skipped a corrupt line" in w for w in result.warnings)


def started_reads(monkeypatch: pytest.MonkeyPatch) -> list[scan.Reads]:
    """Every scan.Reads made from now on, in order."""
    made: list[scan.Reads] = []
    real = scan.Reads.__init__

    def record_init(self: scan.Reads, items: Any, warnings: list[str]) -> None:
        real(self, items, warnings)
        made.append(self)
    monkeypatch.setattr(scan.Reads, "__init__", record_init)
    return made


def children() -> list[Any]:
    """This process's children that were not there when the test began, zombies included: a worker not
    reaped is still one. (The others are another test's: a Ray cluster lives as long as its pytest worker.)"""
    import psutil
    return [c for c in psutil.Process().children() if c not in _BEFORE]


_BEFORE: set[Any] = set()


@pytest.fixture(autouse=True)
def _children_before() -> None:
    import psutil
    _BEFORE.clear()
    _BEFORE.update(psutil.Process().children())


def test_with_no_index_the_workers_start_before_it_is_opened(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = corpus(home)
    small_batches(monkeypatch)
    monkeypatch.setenv(scan.WORKERS_ENV, "1")
    one = snapshot(cold(home))
    monkeypatch.setenv(scan.WORKERS_ENV, "3")
    made = started_reads(monkeypatch)
    connect = index.connect
    running: list[int] = []

    def watching(threads: bool = False) -> sqlite3.Connection:
        running.append(len(made[0].workers) if made else 0)  # workers already forked when the index opens
        return connect(threads)
    monkeypatch.setattr(index, "connect", watching)
    assert snapshot(cold(home)) == one
    assert running[0] == 3 and len(made) == 1 and len(made[0].items) == len(files)
    assert children() == []


def test_files_another_ao_indexed_meanwhile_are_not_taken_from_the_early_workers(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = corpus(home)
    small_batches(monkeypatch)
    monkeypatch.setenv(scan.WORKERS_ENV, "1")
    one = snapshot(cold(home))
    monkeypatch.setenv(scan.WORKERS_ENV, "2")
    index.index_path().unlink()
    made = started_reads(monkeypatch)
    connect = index.connect

    def racing(threads: bool = False) -> sqlite3.Connection:
        if len(made) == 1:  # while this refresh's workers read, another ao indexes two of the files
            monkeypatch.setattr(index, "connect", connect)
            index.refresh([str(files["plain1"]), str(files["plain2"])])
        return connect(threads)
    monkeypatch.setattr(index, "connect", racing)
    result = index.refresh(index.discover(home), prune_roots=[home])
    assert len(made) == 3  # the early reads, the other ao's, and the ones for what was still fresh
    assert len(made[2].items) == len(files) - 2
    assert snapshot(result)[2:] == one[2:]  # the same rows, sums and ids
    assert children() == []


def test_no_worker_is_left_when_the_index_cannot_be_opened(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus(home)
    monkeypatch.setenv(scan.WORKERS_ENV, "2")
    made = started_reads(monkeypatch)

    def failing(threads: bool = False) -> sqlite3.Connection:
        raise index.FatalError("cannot open the usage index: disk full")
    monkeypatch.setattr(index, "connect", failing)
    with pytest.raises(index.FatalError, match="disk full"):
        index.refresh(index.discover(home), prune_roots=[home])
    assert len(made) == 1 and len(made[0].workers) == 2 and all(w[2] for w in made[0].workers)  # reaped
    assert children() == []


def test_a_response_repeated_across_workers_counts_once_for_the_oldest(home: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    small_batches(monkeypatch)
    monkeypatch.setattr(scan, "BATCH_FILES", 1)
    monkeypatch.setenv(scan.WORKERS_ENV, "2")
    # the newer file's name sorts first, so it is scanned first; creation order decides the credit
    older = rollout_file(home, 5, line("session_meta", {"id": tid(5)}, "2026-11-20T08:00:00.000Z")
                         + record("resp_same", (1000, 0, 100, 0)) + record("resp_old", (1, 0, 1, 0)))
    newer = rollout_file(home, 1, line("session_meta", {"id": tid(1)}, "2026-11-20T09:00:00.000Z")
                         + record("resp_same", (1000, 0, 100, 0)) + record("resp_new", (2, 0, 2, 0)))
    result = cold(home)
    assert totals(result, older) == (1001, 0, 101, 0)
    assert totals(result, newer) == (2, 0, 2, 0)
    con = sqlite3.connect(index.index_path())
    dups = dict(con.execute("SELECT path, duplicates FROM files").fetchall())
    con.close()
    assert dups == {str(older): 0, str(newer): 1}


def test_a_worker_killed_mid_run_costs_time_not_counts(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus(home)
    small_batches(monkeypatch)
    monkeypatch.setenv(scan.WORKERS_ENV, "1")
    expected = snapshot(cold(home))
    real = scan.read_fresh
    parent_pid = os.getpid()

    def dies_in_a_worker(path: str) -> scan_shapes.FileRead:
        if os.getpid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or the agent would
        return real(path)

    monkeypatch.setattr(scan, "read_fresh", dies_in_a_worker)  # the forked workers inherit it
    monkeypatch.setenv(scan.WORKERS_ENV, "2")
    result = cold(home)
    died = [w for w in result.warnings if "usage scan worker died" in w]
    assert len(died) == 1 and "killed by signal 9" in died[0] and "read in the main process instead" in died[0]
    files_, warnings, rows, sums, ids = snapshot(result)
    assert (files_, [w for w in warnings if w not in died], rows, sums, ids) == expected


def test_the_cli_report_is_the_same_with_one_or_two_workers(home: Path, ao: Any) -> None:
    corpus(home)
    outputs = []
    for workers in ("1", "2"):
        index.index_path().unlink(missing_ok=True)
        done = ao("cost", "--all", "--json", env={**os.environ, scan.WORKERS_ENV: workers})
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0]["totals"]["tokens"]["input"] > 0


def test_warm_appends_after_a_parallel_cold_run_stay_exact(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = corpus(home)
    small_batches(monkeypatch)
    monkeypatch.setenv(scan.WORKERS_ENV, "2")
    cold(home)
    with files["plain2"].open("ab") as fh:
        fh.write(record("resp_1_1", (9, 9, 9, 9)) + record("resp_2_new", (3, 0, 3, 0)))
    warm = index.refresh(index.discover(home), prune_roots=[home])
    assert totals(warm, files["plain2"])[0] == sum(200 + k for k in range(30)) + 3
    monkeypatch.setenv(scan.WORKERS_ENV, "1")
    assert totals(cold(home)) == totals(warm)


def test_record_usage_keys_stay_those_the_fold_reads() -> None:
    # the typed record shape names the same four counters as codex_format
    assert set(tok(1, 2, 3, 4)) - {"total_tokens"} == set(cf.USAGE_KEYS)
    assert set(cf.USAGE_KEYS) <= set(scan_shapes._Usage.__struct_fields__)


def test_a_whole_file_read_keeps_the_tails_bookkeeping(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # offsets, line counts, heads, pending bytes and warnings as the chunked tail leaves them
    bodies = [b"", b"{", b"no newline at all " + record("r_x", (1, 0, 1, 0)).rstrip(b"\n"),
              meta(tid(3)) + record("r_3", (3, 0, 3, 0)) + record("r_3", (3, 0, 3, 0))   # repeated in the file
              + b'{"type":"token_usage_record","partial',
              meta(tid(4)).replace(b"\n", b"\r\n") + record("r_4", (4, 0, 4, 0)).replace(b"\n", b"\r\n"),
              b"\n\n\n" + record("r_5", (5, 0, 5, 0)) + b"\n",
              b'{"type":"session_meta","payload":{"id":"x"}}\n' * 3 + b'{"type":"turn_context" broken\n',
              meta(tid(7)) + model_line() + token_count((9, 1, 2, 0)) + token_count((19, 1, 4, 0))]
    for n, body in enumerate(bodies, 1):
        rollout_file(home, n, body)
    monkeypatch.setenv(scan.WORKERS_ENV, "1")
    fast = snapshot(cold(home))
    monkeypatch.setattr(scan, "MAX_WORKER_FILE", -1)   # every file through index._read_file and RolloutTail
    assert snapshot(cold(home)) == fast
    assert any("skipped a corrupt line" in w for w in fast[1])
    assert [row[11] for row in fast[2] if row[0].endswith(f"{tid(4)}.jsonl")] == [1]   # one duplicate


@pytest.mark.parametrize("named_in_creation_order", [True, False])
def test_written_in_creation_order_whatever_the_names(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                      named_in_creation_order: bool) -> None:
    # the scan writes in name order first; when creation order differs it undoes that and writes again
    for n in range(1, 9):
        hour = 10 + n if named_in_creation_order else 20 - n
        rollout_file(home, n, line("session_meta", {"id": tid(n)}, f"2026-11-20T{hour:02d}:00:00.000Z")
                     + record("resp_shared", (1000, 0, 100, 0)) + record(f"resp_{n}", (n, 0, n, 0)))
    small_batches(monkeypatch)
    monkeypatch.setenv(scan.WORKERS_ENV, "2")
    parallel = snapshot(cold(home))
    monkeypatch.setattr(scan, "MAX_WORKER_FILE", -1)
    assert snapshot(cold(home)) == parallel
    first = tid(1) if named_in_creation_order else tid(8)
    owner = [f for f in cold(home).files.values() if (1000, 0, 100, 0) <= totals_of(f)]
    assert [f.thread_id for f in owner] == [first]


def totals_of(f: index.FileUsage) -> tuple[int, ...]:
    return tuple(sum(t[k] for _, _, t in f.sums) for k in usage.TOKEN_KEYS)
