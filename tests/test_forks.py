"""Exact usage for every fork and subagent shape (issue #13): a fork counts only what it consumed after
the fork point, its parent counts its own once, and where ao cannot tell a warning names the file.

Every fixture is synthetic, shaped after what real rollouts do (codex-facts.md, "Fork and subagent
shapes in older releases", and other trackers' issue threads): each builds its files in a temp
CODEX_HOME and states its expected totals, worked out by hand, in a comment.

The shared parent P (thread 1) is created at 10:00:00 and has three responses; the fork point of every
fork is 10:02:00, after its second response. P goes on working after the fork (its third response):

    p1  total (1000,  100,  50, 10)  last (1000,  100, 50, 10)   10:00:05
    p2  total (2500, 1100, 120, 20)  last (1500, 1000, 70, 10)   10:01:00   <- total at the fork point
    p3  total (4500, 2600, 200, 25)  last (2000, 1500, 80,  5)   10:03:00
    P's own usage = p3's total = (4500, 2600, 200, 25).

A fork whose totals continue from P ("continuing") makes two responses of its own:

    f1  total (3200, 1700, 150, 24)  last (700, 600, 30, 4)      = p2 + f1.last
    f2  total (4000, 2500, 190, 30)  last (800, 800, 40, 6)
    its own usage = f1.last + f2.last = (1500, 1400, 70, 10).

A subagent whose counter starts again from 0 ("from zero") makes two responses:

    s1  total ( 800,    0,  40,  8)  last (800,   0, 40, 8)
    s2  total (1900,  700,  90, 12)  last (1100, 700, 50, 4)
    its own usage = s2's total = (1900, 700, 90, 12).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from supervisor.observe import codex_format as cf
from supervisor.observe import index, usage

Totals = tuple[int, int, int, int]
P1, P1_LAST = (1000, 100, 50, 10), (1000, 100, 50, 10)
P2, P2_LAST = (2500, 1100, 120, 20), (1500, 1000, 70, 10)
P3, P3_LAST = (4500, 2600, 200, 25), (2000, 1500, 80, 5)
PARENT_OWN = P3
F1, F1_LAST = (3200, 1700, 150, 24), (700, 600, 30, 4)
F2, F2_LAST = (4000, 2500, 190, 30), (800, 800, 40, 6)
FORK_OWN = (1500, 1400, 70, 10)
S1, S1_LAST = (800, 0, 40, 8), (800, 0, 40, 8)
S2, S2_LAST = (1900, 700, 90, 12), (1100, 700, 50, 4)
SUB_OWN = S2
ZERO = (0, 0, 0, 0)
FORKED_AT = "2026-11-20T10:02:00.000Z"


def tid(n: int) -> str:
    return f"0000000{n}-0000-7000-8000-000000000000"


def line(kind: str, payload: Any, ts: str, ordinal: int | None = None) -> bytes:
    obj: dict[str, Any] = {"timestamp": ts, "type": kind, "payload": payload}
    if ordinal is not None:
        obj["ordinal"] = ordinal
    return orjson.dumps(obj) + b"\n"


def tok(t: Totals) -> dict[str, int]:
    return {"input_tokens": t[0], "cached_input_tokens": t[1], "output_tokens": t[2],
            "reasoning_output_tokens": t[3], "total_tokens": t[0] + t[2]}


def tc(total: Totals, last: Totals | None, ts: str, model: str | None = None, ordinal: int | None = None) -> bytes:
    info: dict[str, Any] = {"total_token_usage": tok(total), "model_context_window": 272000}
    if last is not None:  # releases before last_token_usage write the running total only
        info["last_token_usage"] = tok(last)
    if model is not None:
        info["model"] = model
    return line("event_msg", {"type": "token_count", "info": info, "rate_limits": None}, ts, ordinal)


def meta(thread: str, ts: str, ordinal: int | None = None, **extra: Any) -> bytes:
    payload = {"id": thread, "timestamp": ts, "cwd": "/work/repo", "cli_version": "0.169.0", **extra}
    return line("session_meta", payload, ts, ordinal)


def ctx(ts: str, model: str = "gpt-5.1-codex", ordinal: int | None = None) -> bytes:
    return line("turn_context", {"turn_id": "t", "model": model, "cwd": "/work/repo"}, ts, ordinal)


def user(text: str, ts: str, ordinal: int | None = None) -> bytes:
    return line("response_item", {"type": "message", "role": "user",
                                  "content": [{"type": "input_text", "text": text}]}, ts, ordinal)


def parent_body(last: bool = True) -> tuple[bytes, int]:
    """P's rollout, and the byte offset just after p2 (the fork point for history_base)."""
    def lt(x: Totals) -> Totals | None:
        return x if last else None
    head = (meta(tid(1), "2026-11-20T10:00:00.000Z") + ctx("2026-11-20T10:00:01.000Z")
            + user("first", "2026-11-20T10:00:01.000Z") + tc(P1, lt(P1_LAST), "2026-11-20T10:00:05.000Z")
            + user("second", "2026-11-20T10:00:30.000Z") + tc(P2, lt(P2_LAST), "2026-11-20T10:01:00.000Z"))
    return head + user("third", "2026-11-20T10:02:30.000Z") + tc(P3, lt(P3_LAST), "2026-11-20T10:03:00.000Z"), \
        len(head)


def continuing(last: bool = True) -> bytes:
    """f1, f2: the fork's own responses, totals continuing from p2."""
    return (ctx("2026-11-20T10:02:05.000Z") + user("fork task", "2026-11-20T10:02:05.000Z")
            + tc(F1, F1_LAST if last else None, "2026-11-20T10:02:10.000Z")
            + tc(F2, F2_LAST if last else None, "2026-11-20T10:02:30.000Z"))


def from_zero(last: bool = True) -> bytes:
    """s1, s2: a subagent's own responses, its counter started again from 0."""
    return (ctx("2026-11-20T10:02:05.000Z") + user("sub task", "2026-11-20T10:02:05.000Z")
            + tc(S1, S1_LAST if last else None, "2026-11-20T10:02:10.000Z")
            + tc(S2, S2_LAST if last else None, "2026-11-20T10:02:40.000Z"))


def copied_prefix(stamps: tuple[str, str] = ("2026-11-20T10:02:00.000Z", "2026-11-20T10:02:00.001Z"),
                  embed_meta: bool = True, ordinals: bool = False) -> bytes:
    """The parent's history copied into the fork's file at creation: its meta, turns and p1, p2 token_counts."""
    o = (lambda n: n) if ordinals else (lambda n: None)
    out = meta(tid(1), "2026-11-20T10:00:00.000Z", o(1)) if embed_meta else b""
    return out + (ctx(stamps[0], "gpt-5.1-codex-max", o(2)) + user("first", stamps[0], o(3))
                  + tc(P1, P1_LAST, stamps[0], ordinal=o(4)) + user("second", stamps[1], o(5))
                  + tc(P2, P2_LAST, stamps[1], ordinal=o(6)))


@pytest.fixture
def home(isolated_home: Path) -> Path:
    return Path(os.environ["CODEX_HOME"])


def put(home: Path, name_time: str, n: int, body: bytes, thread: str | None = None) -> Path:
    folder = home / "sessions/2026/11/20"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rollout-2026-11-20T{name_time}-{thread or tid(n)}.jsonl"
    path.write_bytes(body)
    return path


def scan(home: Path) -> index.Refresh:
    return index.refresh(index.discover(home), prune_roots=[home / "sessions", home / "archived_sessions"])


def totals(result: index.Refresh, path: Path | None = None) -> Totals:
    sums = [0, 0, 0, 0]
    for f in result.files.values():
        if path is None or f.path == str(path):
            for _, _, t in f.sums:
                for n, key in enumerate(usage.TOKEN_KEYS):
                    sums[n] += t[key]
    return tuple(sums)  # type: ignore[return-value]


def add(*many: Totals) -> Totals:
    return tuple(sum(x) for x in zip(*many))


def check(home: Path, expected: dict[Path, Totals], warn: Path | None = None) -> index.Refresh:
    """Cold, warm and rebuilt runs all give the expected totals; a warning names `warn` (else none)."""
    cold = scan(home)
    for path, want in expected.items():
        assert totals(cold, path) == want, path.name
    assert totals(cold) == add(*expected.values())
    if warn is None:
        assert cold.warnings == []
    else:
        assert any(str(warn) in w for w in cold.warnings), cold.warnings
    warm = scan(home)
    assert warm.read_files == 0 and totals(warm) == totals(cold)
    index.index_path().unlink()
    assert totals(scan(home)) == totals(cold)
    return cold


# --- forks that name their parent ------------------------------------------------------------------

def test_0169_fork_with_history_base_offset(home: Path) -> None:
    # 0.169.0: no copied history; history_base.end_byte_offset is the fork point (just after p2).
    # P = (4500, 2600, 200, 25); fork = f1.last + f2.last = (1500, 1400, 70, 10)
    body, offset = parent_body()
    parent = put(home, "10-00-00", 1, body)
    fork = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(1),
                                         history_base={"thread_id": tid(1), "end_byte_offset": offset})
               + continuing())
    check(home, {parent: PARENT_OWN, fork: FORK_OWN})


def test_fork_without_offset_when_the_parent_went_on_working(home: Path) -> None:
    # forked_from_id only. The old baseline, P's final total (4500, ...), was above f1 and f2, so the
    # fork counted 0. The fork point is the parent total equal to f1 - f1.last = p2.
    # P = (4500, 2600, 200, 25); fork = (1500, 1400, 70, 10)
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body)
    fork = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + continuing())
    check(home, {parent: PARENT_OWN, fork: FORK_OWN})


def test_fork_of_an_era_without_last_token_usage_uses_the_parent_total_at_creation(home: Path) -> None:
    # only total_token_usage is written: the fork point is P's last total stamped before the fork's
    # creation (10:02:00), p2 (p3 came at 10:03). fork = f2 - p2 = (1500, 1400, 70, 10)
    body, _ = parent_body(last=False)
    parent = put(home, "10-00-00", 1, body)
    fork = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + continuing(last=False))
    check(home, {parent: PARENT_OWN, fork: FORK_OWN})


@pytest.mark.parametrize("link", ["forked_from_id", "parent_thread_id", "thread_spawn"])
def test_thread_spawn_subagent_whose_totals_start_at_zero(home: Path, link: str) -> None:
    # 0.145 thread_spawn subagent: its counter starts from 0 while P keeps working. The old baseline
    # (P's total) was above s1 and s2, so the subagent counted 0 with no warning.
    # P = (4500, 2600, 200, 25); subagent = s2's total = (1900, 700, 90, 12)
    source = {"subagent": {"thread_spawn": {"parent_thread_id": tid(1), "depth": 1, "agent_nickname": "N"}}}
    extra: dict[str, Any] = {"source": source} if link == "thread_spawn" else {link: tid(1), "source": source}
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body)
    sub = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, cli_version="0.145.0", **extra) + from_zero())
    check(home, {parent: PARENT_OWN, sub: SUB_OWN})


def test_subagent_from_zero_without_last_token_usage(home: Path) -> None:
    # no last_token_usage: s1's total (840 in+out) lies below P's total at the fork (2620), so the
    # counter started again. subagent = s2 = (1900, 700, 90, 12)
    body, _ = parent_body(last=False)
    parent = put(home, "10-00-00", 1, body)
    sub = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + from_zero(last=False))
    check(home, {parent: PARENT_OWN, sub: SUB_OWN})


# --- forks whose file begins with a copy of the parent's history ------------------------------------

def test_subagent_with_copied_history_before_its_start_ordinal(home: Path) -> None:
    # lines 1-6 are P's history (ordinal < subagent_history_start_ordinal = 7), p1 and p2 among them;
    # the subagent's own counter starts from 0. subagent = s2 = (1900, 700, 90, 12), P = (4500, ...)
    source = {"subagent": {"thread_spawn": {"parent_thread_id": tid(1), "depth": 1}}}
    own = b"".join(line_with_ordinal(raw, 7 + n) for n, raw in enumerate(from_zero().splitlines(keepends=True)))
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body)
    sub = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, 0, parent_thread_id=tid(1), source=source,
                                         subagent_history_start_ordinal=7)
              + copied_prefix(ordinals=True) + own)
    check(home, {parent: PARENT_OWN, sub: SUB_OWN})


def line_with_ordinal(raw: bytes, ordinal: int) -> bytes:
    obj = orjson.loads(raw)
    obj["ordinal"] = ordinal
    return orjson.dumps(obj) + b"\n"


@pytest.mark.parametrize("own", ["continuing", "from_zero"])
def test_fork_whose_file_begins_with_a_bulk_copy(home: Path, own: str) -> None:
    # forked_from_id, then P's history with p1 and p2 stamped within a millisecond of the creation.
    # Those are P's usage (counted once, in P). continuing: fork = (1500, 1400, 70, 10);
    # from zero (the counter starts again after the copy): fork = s2 = (1900, 700, 90, 12)
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body)
    tail, want = (continuing(), FORK_OWN) if own == "continuing" else (from_zero(), SUB_OWN)
    fork = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + copied_prefix() + tail)
    check(home, {parent: PARENT_OWN, fork: want})


def test_a_fork_that_made_no_request_counts_nothing(home: Path) -> None:
    # only the copy: P = (4500, 2600, 200, 25), fork = 0 (it made no request of its own)
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body)
    fork = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + copied_prefix())
    check(home, {parent: PARENT_OWN, fork: ZERO})


def test_bulk_copy_whose_parent_is_gone_skips_the_burst_and_warns(home: Path) -> None:
    # P's rollout was deleted: the copied p1, p2 (stamped at creation) still are not the fork's, and
    # f1 continues from the last of them. fork = (1500, 1400, 70, 10), with a warning naming the file
    fork = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + copied_prefix() + continuing())
    result = check(home, {fork: FORK_OWN}, warn=fork)
    assert any(tid(1) in w for w in result.warnings)


@pytest.mark.parametrize("embed_meta", [True, False])
def test_desktop_branch_without_forked_from_replays_the_parent(home: Path, embed_meta: bool) -> None:
    # no forked_from_id: the file replays P's p1, p2 with stamps rewritten to the creation second
    # (10:02:00.000 for a file created at 10:02:00.412), with or without P's own session_meta copied in.
    # Recognised by that prefix alone. P = (4500, ...), branch = (1500, 1400, 70, 10)
    created = "2026-11-20T10:02:00.412Z"
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body)
    branch = put(home, "10-02-00", 2, meta(tid(2), created)
                 + copied_prefix(("2026-11-20T10:02:00.000Z",) * 2, embed_meta=embed_meta) + continuing())
    check(home, {parent: PARENT_OWN, branch: FORK_OWN})


def test_siblings_replaying_the_same_parent_each_count_their_own(home: Path) -> None:
    # one parent, three Desktop branches (no forked_from_id) and two subagents, all copying p1, p2
    # (a real day had 16 siblings repeating one 34-step sequence). Each sibling's own is only its own:
    # P = (4500, 2600, 200, 25); branches 2-4 = (1500, 1400, 70, 10) each; subagents 5-6 = s2 each.
    # all = P + 3 * (1500, 1400, 70, 10) + 2 * (1900, 700, 90, 12) = (12800, 8200, 590, 79)
    body, _ = parent_body()
    files = {put(home, "10-00-00", 1, body): PARENT_OWN}
    for n in (2, 3, 4):
        created = f"2026-11-20T10:02:0{n}.250Z"
        files[put(home, f"10-02-0{n}", n, meta(tid(n), created)
                  + copied_prefix((created[:19] + ".000Z",) * 2, embed_meta=False) + continuing())] = FORK_OWN
    for n in (5, 6):
        created = f"2026-11-20T10:02:0{n}.000Z"
        files[put(home, f"10-02-0{n}", n, meta(tid(n), created, parent_thread_id=tid(1))
                  + copied_prefix((created, created)) + from_zero())] = SUB_OWN
    check(home, files)
    assert add(*files.values()) == (12800, 8200, 590, 79)


def test_a_fork_of_a_fork(home: Path) -> None:
    # P -> F (0.169 fork at p2) -> G (0.169 fork of F just after f1). G's first total is f1 plus its
    # own response (300, 200, 10, 2). P = (4500, ...), F = (1500, 1400, 70, 10), G = (300, 200, 10, 2)
    body, offset = parent_body()
    parent = put(home, "10-00-00", 1, body)
    f_head = meta(tid(2), FORKED_AT, forked_from_id=tid(1),
                  history_base={"thread_id": tid(1), "end_byte_offset": offset}) + continuing()
    f_at = f_head.index(b"\n", f_head.index(b'"input_tokens":3200')) + 1  # just after f1
    fork = put(home, "10-02-00", 2, f_head)
    g_own = (300, 200, 10, 2)
    grandchild = put(home, "10-02-20", 3, meta(tid(3), "2026-11-20T10:02:20.000Z", forked_from_id=tid(2),
                                               history_base={"thread_id": tid(2), "end_byte_offset": f_at})
                     + tc(add(F1, g_own), g_own, "2026-11-20T10:02:25.000Z"))
    check(home, {parent: PARENT_OWN, fork: FORK_OWN, grandchild: g_own})


def test_a_reemit_after_the_copy_is_still_the_parents(home: Path) -> None:
    # `codex fork`: the copy (p1, p2), then p2 again when the fork's session starts (a re-emit with a
    # later stamp: 0 new tokens), then the fork's own f1, f2. fork = (1500, 1400, 70, 10)
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body)
    fork = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + copied_prefix()
               + tc(P2, P2_LAST, "2026-11-20T10:02:03.000Z") + continuing())
    check(home, {parent: PARENT_OWN, fork: FORK_OWN})


# --- file order --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["forked_from", "prefix"])
def test_fork_whose_name_sorts_before_its_parent(home: Path, shape: str) -> None:
    # names carry local time: the fork (made after a timezone change) is named 08:02, its parent 10:00,
    # and the parent's file does not carry the parent's id in its name (so only the index finds it).
    # A cold run must still read the parent first. P = (4500, ...), fork = (1500, 1400, 70, 10)
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body, thread="0000000a-0000-7000-8000-000000000000")
    if shape == "forked_from":
        fork_body = meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + continuing()
    else:
        fork_body = meta(tid(2), FORKED_AT) + copied_prefix(embed_meta=False) + continuing()
    fork = put(home, "08-02-00", 2, fork_body)
    assert str(fork) < str(parent)
    check(home, {parent: PARENT_OWN, fork: FORK_OWN})


def test_a_fork_read_in_two_parts_gives_the_same_totals(home: Path) -> None:
    # the copy is written first, the fork's own responses later: state kept between reads.
    # run 1: fork = 0; run 2: fork = (1500, 1400, 70, 10)
    body, _ = parent_body()
    parent = put(home, "10-00-00", 1, body)
    fork = put(home, "10-02-00", 2, meta(tid(2), "2026-11-20T10:02:00.412Z")
               + copied_prefix(("2026-11-20T10:02:00.000Z",) * 2, embed_meta=False))
    first = scan(home)
    assert totals(first, fork) == ZERO and totals(first, parent) == PARENT_OWN
    with fork.open("ab") as fh:
        fh.write(continuing())
    second = scan(home)
    assert second.read_files == 1
    assert totals(second, fork) == FORK_OWN and totals(second, parent) == PARENT_OWN


# --- what must not be taken for a fork --------------------------------------------------------------

def test_twins_with_equal_first_totals_are_not_copies(home: Path) -> None:
    # two independent sessions whose first responses used exactly the same tokens (a scripted model
    # does this): B's first token_count comes 0.3 s after its creation and after A's, yet it is B's own.
    # A = B = s2's total = (1900, 700, 90, 12); all = (3800, 1400, 180, 24)
    def session(n: int, start: str, first: str, second: str) -> bytes:
        return (meta(tid(n), start) + ctx(start) + tc(S1, S1_LAST, first) + tc(S2, S2_LAST, second))
    a = put(home, "10-00-00", 1, session(1, "2026-11-20T10:00:00.000Z", "2026-11-20T10:00:00.200Z",
                                         "2026-11-20T10:00:01.000Z"))
    b = put(home, "10-00-01", 2, session(2, "2026-11-20T10:00:00.500Z", "2026-11-20T10:00:00.800Z",
                                         "2026-11-20T10:00:01.500Z"))
    check(home, {a: SUB_OWN, b: SUB_OWN})


def test_byte_identical_copies_under_other_ids_count_each(home: Path) -> None:
    # the bench replicates a rollout with fresh ids and the same stamps: each copy is its own work.
    # each = (1900, 700, 90, 12)
    def session(n: int) -> bytes:
        return (meta(tid(n), "2026-11-20T10:00:00.000Z") + ctx("2026-11-20T10:00:00.000Z")
                + tc(S1, S1_LAST, "2026-11-20T10:00:00.000Z") + tc(S2, S2_LAST, "2026-11-20T10:00:09.000Z"))
    copies = {put(home, "10-00-00", n, session(n)): SUB_OWN for n in (1, 2, 3)}
    check(home, copies)


def test_fork_of_an_unknown_parent_with_no_copy_warns_naming_the_file(home: Path) -> None:
    # P is not on disk and nothing was copied: ao cannot know the fork point, says so, and takes f1's
    # last response as f1's own. fork = f1.last + f2.last = (1500, 1400, 70, 10)
    fork = put(home, "10-02-00", 2, meta(tid(2), FORKED_AT, forked_from_id=tid(9)) + continuing())
    result = check(home, {fork: FORK_OWN}, warn=fork)
    assert any(tid(9) in w and "not found" in w for w in result.warnings)


# --- pricing: info.model ----------------------------------------------------------------------------

def test_token_count_info_model_wins_over_the_turn_model(home: Path) -> None:
    # turn_context says gpt-5.1-codex; the second response's token_count names gpt-5.3-codex (0.155+
    # auto review), so that response is priced as gpt-5.3-codex.
    # gpt-5.1-codex = s1 = (800, 0, 40, 8); gpt-5.3-codex = s2 - s1 = (1100, 700, 50, 4)
    path = put(home, "10-00-00", 1, meta(tid(1), "2026-11-20T10:00:00.000Z") + ctx("2026-11-20T10:00:01.000Z")
               + tc(S1, S1_LAST, "2026-11-20T10:00:05.000Z")
               + tc(S2, S2_LAST, "2026-11-20T10:00:09.000Z", model="gpt-5.3-codex"))
    result = check(home, {path: SUB_OWN})
    by_model: dict[str, Totals] = {}
    for model, _, t in result.files[str(path)].sums:
        by_model[model] = tuple(t[k] for k in usage.TOKEN_KEYS)  # type: ignore[assignment]
    assert by_model == {"gpt-5.1-codex": (800, 0, 40, 8), "gpt-5.3-codex": (1100, 700, 50, 4)}


# --- the keys, and the pure fold ----------------------------------------------------------------------

def test_session_meta_names_the_parent_in_every_shape() -> None:
    spawn = {"subagent": {"thread_spawn": {"parent_thread_id": "p-spawn", "depth": 1}}}
    cases: list[tuple[dict[str, Any], str | None]] = [({"forked_from_id": "p-fork", "parent_thread_id": "p-other"}, "p-fork"),
             ({"parent_thread_id": "p-parent"}, "p-parent"), ({"source": spawn}, "p-spawn"),
             ({"source": "cli"}, None), ({"source": {"subagent": "review"}}, None)]
    for extra, want in cases:
        found = cf.session_meta(orjson.loads(meta(tid(2), FORKED_AT, 0, subagent_history_start_ordinal=4, **extra)))
        assert found is not None and found.forked_from == want, extra
        assert found.history_start_ordinal == 4 and found.timestamp == FORKED_AT
    counted = cf.token_count(orjson.loads(tc(S2, S2_LAST, FORKED_AT, model="gpt-5.3-codex")))
    assert counted == cf.TokenCount(S2, S2_LAST, "gpt-5.3-codex")
    assert cf.ordinal_of(orjson.loads(tc(S2, None, FORKED_AT, ordinal=12))) == 12


class _Parents:
    """The index's answers, from memory: thread id -> its rollout bytes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def history(self, thread_id: str, end_offset: int | None) -> usage.History | None:
        body = self.files.get(thread_id)
        if body is None:
            return None
        out: usage.History = []
        for raw in (body if end_offset is None else body[:end_offset]).splitlines():
            parsed = orjson.loads(raw)
            counted = cf.token_count(parsed)
            if counted is not None:
                out.append((counted.total, parsed.get("timestamp", "")))
        return out

    def copied_from(self, total: Totals, where: str) -> tuple[str, usage.History] | None:
        for thread in self.files:
            found = self.history(thread, None)
            if found and found[0][0] == total:
                return thread, found
        return None


def test_the_pure_fold_gives_each_shape_its_own_usage() -> None:
    # the same shapes without the index: fold_lines with parents answered from memory
    body, offset = parent_body()
    parents = _Parents({tid(1): body})
    shapes = {
        "history_base": (meta(tid(2), FORKED_AT, forked_from_id=tid(1),
                              history_base={"end_byte_offset": offset}) + continuing(), FORK_OWN),
        "no offset": (meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + continuing(), FORK_OWN),
        "from zero": (meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + from_zero(), SUB_OWN),
        "bulk copy": (meta(tid(2), FORKED_AT, forked_from_id=tid(1)) + copied_prefix() + continuing(), FORK_OWN),
        "desktop": (meta(tid(2), "2026-11-20T10:02:00.412Z")
                    + copied_prefix(("2026-11-20T10:02:00.000Z",) * 2, embed_meta=False) + continuing(), FORK_OWN),
    }
    for name, (fork, want) in shapes.items():
        got, fold = usage.fold_lines((orjson.loads(raw) for raw in fork.splitlines()), parents)
        assert add(*((u.input, u.cached_input, u.output, u.reasoning) for u in got)) == want, name
        assert fold.warnings == [], name


def test_a_fork_with_no_way_to_find_its_fork_point_warns() -> None:
    # no history_base, no last_token_usage and no time at all: ao cannot tell where the fork began,
    # and says so. It takes P's last total p3 as the start; f1's in+out (3350) lies below p3's (4700),
    # which only a counter started again can do, so f1 and f2 count whole: f2's total (4000, 2500, 190, 30).
    # (The truth, f1.last + f2.last = (1500, ...), is not knowable from these lines: hence the warning.)
    body, _ = parent_body(last=False)
    stripped = b"".join(orjson.dumps({k: v for k, v in orjson.loads(raw).items() if k != "timestamp"}) + b"\n"
                        for raw in body.splitlines())
    fork = [orjson.loads(meta(tid(2), FORKED_AT, forked_from_id=tid(1)))] + [
        {k: v for k, v in orjson.loads(raw).items() if k != "timestamp"} for raw in continuing(last=False).splitlines()]
    fork[0].pop("timestamp")
    fork[0]["payload"].pop("timestamp")
    got, fold = usage.fold_lines(fork, _Parents({tid(1): stripped}))
    assert add(*((u.input, u.cached_input, u.output, u.reasoning) for u in got)) == F2
    assert any("no fork point" in w for w in fold.warnings), fold.warnings
