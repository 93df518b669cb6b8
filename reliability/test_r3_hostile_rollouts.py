"""R3: `ao cost --all --json` over randomly built hostile rollout histories.

Each world is a fresh $CODEX_HOME holding rollouts of several eras with hostile lines mixed in:
truncated lines, garbage bytes, 10 MB lines, unknown types, pre-envelope files, forks (records and
token_count eras), re-emitted token counts, a partial last line. The oracle below computes the exact
tokens of the parseable part independently of ao. Every run must exit 0 with JSON, the totals must be
exact, and every corrupt line that carries usage must be named in `warnings` as `FILE:LINE:`. Worlds
are then changed (append, replace, truncate, finish the last line) and read again from the warm index
and from a rebuilt one. A race flips a large rollout between two versions while ao reads it.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import Fault, Home, make_home, run_ao

WORLDS = int(os.environ.get("R3_WORLDS", "16"))
RACES = int(os.environ.get("R3_RACES", "6"))
KEYS = ("input", "cached_input", "output", "reasoning")
BIG = 10 << 20


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def ts(n: int) -> str:
    return f"2026-11-20T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z"


def usage_obj(t: tuple[int, int, int, int]) -> dict[str, int]:
    return {"input_tokens": t[0], "cached_input_tokens": t[1], "output_tokens": t[2],
            "reasoning_output_tokens": t[3], "total_tokens": t[0] + t[2]}


def envelope(kind: str, payload: Any, n: int = 0) -> bytes:
    return dumps({"timestamp": ts(n), "type": kind, "payload": payload})


@dataclass
class Rollout:
    """One file as a list of lines (without newlines), what it must add, and where it is corrupt."""
    thread: str
    lines: list[bytes] = field(default_factory=list)
    records: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # counted response ids
    last_total: tuple[int, int, int, int] | None = None   # token_count era: the running total
    base: tuple[int, int, int, int] = (0, 0, 0, 0)        # token_count fork: the parent's total at the fork
    corrupt: list[int] = field(default_factory=list)      # 1-based lines that must be named in warnings
    tail: bytes = b""                                     # an unfinished last line (no newline)
    era: str = "records"
    path: Path | None = None

    def add(self, line: bytes, corrupt: bool = False) -> None:
        self.lines.append(line)
        if corrupt:
            self.corrupt.append(len(self.lines))

    def data(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines) + self.tail

    def tokens(self) -> dict[str, tuple[int, int, int, int]]:
        if self.era == "records":
            return dict(self.records)
        if self.era == "token_count" and self.last_total:
            own = tuple(max(a - b, 0) for a, b in zip(self.last_total, self.base))
            return {f"tc:{self.thread}": own}  # type: ignore[dict-item]
        return {}


def rand_usage(rng: Any) -> tuple[int, int, int, int]:
    i = rng.randint(1, 90_000)
    o = rng.randint(0, 9_000)
    return i, rng.randint(0, i), o, rng.randint(0, o)


def hostile_line(rng: Any, r: Rollout, n: int) -> None:
    """One hostile line that must not change the file's tokens."""
    marker = b'"type":"token_usage_record"' if r.era == "records" else b'"type":"token_count"'
    choice = rng.choice(["truncated", "garbage_marker", "garbage", "unknown", "non_utf8", "blank", "wrong_shape",
                         "reemit"])
    if choice == "truncated":
        whole = envelope("token_usage_record", {"response_id": "resp_cut", "usage": usage_obj(rand_usage(rng))}, n) \
            if r.era == "records" else envelope("event_msg", {"type": "token_count", "info": {
                "total_token_usage": usage_obj(rand_usage(rng))}}, n)
        at = whole.find(marker) + len(marker)  # cut after the marker: ao must notice the line is broken
        r.add(whole[:rng.randint(at + 1, len(whole) - 2)], corrupt=True)
    elif choice == "garbage_marker":
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(5, 60))).replace(b"\n", b" ")
        r.add(b"\x00\xff" + junk + marker + b" {{{", corrupt=True)
    elif choice == "garbage":
        r.add(bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 200))).replace(b"\n", b"\x01"))
    elif choice == "unknown":
        r.add(envelope(rng.choice(["future_kind", "world_state", "compacted", "x" * 40]),
                       {"type": "token_count", "usage": usage_obj(rand_usage(rng))}, n))
    elif choice == "non_utf8":
        good = envelope("token_usage_record", {"response_id": f"resp_{uuid.uuid4().hex}",
                                               "usage": usage_obj(rand_usage(rng)), "note": "@@"}, n) \
            if r.era == "records" else envelope("event_msg", {"type": "token_count", "note": "@@", "info": {
                "total_token_usage": usage_obj(rand_usage(rng))}}, n)
        r.add(good.replace(b"@@", b"\xff\xfe"), corrupt=True)
    elif choice == "blank":
        r.add(b"   ")
    elif choice == "wrong_shape":
        r.add(rng.choice([b'[1, 2, "\\"type\\":\\"token_usage_record\\""]', b'"token_count"', b"7",
                          envelope("event_msg", {"type": "token_count", "info": None}, n),
                          envelope("event_msg", {"type": "token_count", "info": {"total_token_usage": "lots"}}, n),
                          envelope("token_usage_record", "not a dict", n)]))
    else:  # a token_count re-emitted with an unchanged total (records era: ignored anyway)
        if r.last_total:
            r.add(envelope("event_msg", {"type": "token_count", "info": {
                "total_token_usage": usage_obj(r.last_total), "last_token_usage": usage_obj(r.last_total)}}, n))


def records_file(rng: Any, thread: str, big: bool, replay: dict[str, tuple[int, int, int, int]] | None = None,
                 parent: str | None = None) -> Rollout:
    r = Rollout(thread)
    meta: dict[str, Any] = {"id": thread, "cwd": f"/work/{thread[:8]}", "cli_version": "0.169.0"}
    if parent:
        meta["forked_from_id"] = parent
    r.add(envelope("session_meta", meta))
    r.add(envelope("turn_context", {"turn_id": "t1", "model": rng.choice(["gpt-5.1-codex", "gpt-5-mini", "house"])}))
    total = (0, 0, 0, 0)
    for rid, used in (replay or {}).items():  # a fork or resume repeats history: counted once overall
        r.add(envelope("token_usage_record", {"response_id": rid, "turn_id": "t0", "usage": usage_obj(used)}))
        r.records[rid] = used
    for n in range(rng.randint(2, 12)):
        used = rand_usage(rng)
        rid = f"resp_{uuid.uuid4().hex}"
        padding = {"padding": "p" * BIG} if big and n == 1 else {}
        r.add(envelope("token_usage_record", {"response_id": rid, "turn_id": "t1", "usage": usage_obj(used),
                                              **padding}, n))
        r.records[rid] = used
        total = tuple(a + b for a, b in zip(total, used))  # type: ignore[assignment]
        r.last_total = total  # type: ignore[assignment]
        r.add(envelope("event_msg", {"type": "token_count", "info": {"total_token_usage": usage_obj(total)}}, n))
        for _ in range(rng.choice([0, 0, 1, 2])):
            hostile_line(rng, r, n)
        if big and n == 2:  # a 10 MB corrupt line: later line numbers must still be right
            r.add(b'{"type":"token_usage_record","payload":{"usage":' + b"9" * BIG, corrupt=True)
    return r


def token_count_file(rng: Any, thread: str, parent: Rollout | None = None, fork_at: int | None = None) -> Rollout:
    r = Rollout(thread, era="token_count")
    meta: dict[str, Any] = {"id": thread, "cwd": f"/work/{thread[:8]}", "cli_version": "0.160.0"}
    total = (0, 0, 0, 0)
    if parent is not None:
        meta["forked_from_id"] = parent.thread
        meta["history_base"] = {"thread_id": parent.thread, "end_byte_offset": fork_at}
        r.base = total = parent_total_at(parent, fork_at)
    r.add(envelope("session_meta", meta))
    r.add(envelope("turn_context", {"turn_id": "t1", "model": "gpt-5.1-codex"}))
    r.add(envelope("event_msg", {"type": "token_count", "info": None}))
    for n in range(rng.randint(2, 10)):
        used = rand_usage(rng)
        total = tuple(a + b for a, b in zip(total, used))  # type: ignore[assignment]
        r.last_total = total  # type: ignore[assignment]
        r.add(envelope("event_msg", {"type": "token_count", "info": {
            "total_token_usage": usage_obj(total), "last_token_usage": usage_obj(used)}}, n))
        for _ in range(rng.choice([0, 1, 2])):
            hostile_line(rng, r, n)
    return r


def parent_total_at(parent: Rollout, offset: int | None) -> tuple[int, int, int, int]:
    """The last valid running total in the parent's first `offset` bytes."""
    data = parent.data()[:offset]
    found = (0, 0, 0, 0)
    for line in data.split(b"\n"):
        try:
            entry = json.loads(line)
            info = entry["payload"]["info"]
            t = info["total_token_usage"]
            found = (t["input_tokens"], t["cached_input_tokens"], t["output_tokens"], t["reasoning_output_tokens"])
        except (ValueError, KeyError, TypeError):
            continue
    return found


def old_file(rng: Any, thread: str) -> Rollout:
    r = Rollout(thread, era="old")
    r.add(dumps({"id": thread, "timestamp": "2025-05-01T10:00:00Z", "instructions": None}))
    for _ in range(rng.randint(1, 6)):
        r.add(dumps({"type": "message", "role": rng.choice(["user", "assistant"]),
                     "content": [{"type": "input_text", "text": "hi"}]}))
    r.add(dumps({"record_type": "state"}))
    return r


class World:
    def __init__(self, rng: Any, home: Home, big: bool, records_only: bool = False) -> None:
        self.home, self.rng = home, rng
        self.files: list[Rollout] = []
        if records_only:  # the race below: nothing but the flipping file and two plain neighbours
            self.files = [records_file(rng, str(uuid.uuid4()), False) for _ in range(3)]
            self._write(home)
            return
        parent_records = records_file(rng, str(uuid.uuid4()), big)
        self.files.append(parent_records)
        if rng.random() < 0.7:  # a fork of it that replays some of its responses
            replay = dict(rng.sample(sorted(parent_records.records.items()), k=min(2, len(parent_records.records))))
            self.files.append(records_file(rng, str(uuid.uuid4()), False, replay, parent_records.thread))
        tc = token_count_file(rng, str(uuid.uuid4()))
        self.files.append(tc)
        if rng.random() < 0.7:
            cut = rng.randint(3, len(tc.lines))
            fork_at = len(b"".join(line + b"\n" for line in tc.lines[:cut]))
            self.files.append(token_count_file(rng, str(uuid.uuid4()), tc, fork_at))
        for _ in range(rng.randint(0, 2)):
            self.files.append(old_file(rng, str(uuid.uuid4())))
        for _ in range(rng.randint(0, 2)):
            self.files.append(records_file(rng, str(uuid.uuid4()), False))
        last = self.files[-1]
        # still being written: not counted yet. Only a records-era file: codex never writes a
        # token_usage_record into a token_count-era (pre-0.16x) file, whose truth is its token_counts
        if last.era == "records" and rng.random() < 0.5:
            last.tail = envelope("token_usage_record", {"response_id": "resp_unfinished",
                                                        "usage": usage_obj((5, 0, 5, 0))})[:-7]
        self._write(home)

    def _write(self, home: Home) -> None:
        for n, r in enumerate(self.files):
            folder = home.codex_home / ("archived_sessions" if n % 4 == 3 else f"sessions/2026/11/{20 + n % 2}")
            folder.mkdir(parents=True, exist_ok=True)
            r.path = folder / f"rollout-2026-11-20T10-00-{n:02d}-{r.thread}.jsonl"
            r.path.write_bytes(r.data())

    def expected(self) -> dict[str, int]:
        merged: dict[str, tuple[int, int, int, int]] = {}
        for r in self.files:
            merged.update(r.tokens())
        return {k: sum(t[i] for t in merged.values()) for i, k in enumerate(KEYS)}

    def per_thread(self) -> dict[str, dict[str, int]]:
        """Expected tokens per file (keyed by thread id), a repeated response credited to the first file
        in ao's reading order (sorted paths)."""
        seen: set[str] = set()
        out = {}
        for r in sorted(self.files, key=lambda f: str(f.path)):
            own = {rid: t for rid, t in r.tokens().items() if rid not in seen}
            seen.update(own)
            out[r.thread] = {k: sum(t[i] for t in own.values()) for i, k in enumerate(KEYS)}
        return out

    def corrupt_lines(self) -> list[str]:
        return [f"{r.path}:{line}:" for r in self.files for line in r.corrupt]


def cost_all(home: Home) -> tuple[dict[str, Any] | None, str]:
    out = run_ao(home, "cost", "--all", "--json", "--by", "session", timeout=300)
    if out.returncode != 0:
        return None, f"ao cost --all --json exited {out.returncode}: {out.stderr.strip()[-400:]}"
    try:
        return json.loads(out.stdout), ""
    except ValueError:
        return None, f"ao cost --all --json printed no JSON: {out.stdout[:200]!r}"


def check(world: World, report: dict[str, Any] | None, error: str) -> list[str]:
    if report is None:
        return [error]
    problems = []
    got = {k: report["totals"]["tokens"][k] for k in KEYS}
    want = world.expected()
    if got != want:
        problems.append(f"tokens {got}, expected {want}")
        rows = {row["key"]: {k: row["tokens"][k] for k in KEYS} for row in report.get("rows") or []}
        zero = dict.fromkeys(KEYS, 0)
        shared = {rid for r in world.files for rid in r.records
                  if sum(rid in f.records for f in world.files) > 1}
        for r in world.files:
            if shared & set(r.records):
                continue  # which copy of a repeated response ao credits is its choice; the total is checked
            if rows.get(r.thread, zero) != world.per_thread()[r.thread]:
                hint = next((f"; line {n} carries the token_usage_record marker but is no valid record"
                             for n, line in enumerate(r.lines, 1)
                             if r.era == "token_count" and b'"type":"token_usage_record"' in line), "")
                problems.append(f"{r.path.name} ({r.era} era): ao {rows.get(r.thread, zero)}, "
                                f"expected {world.per_thread()[r.thread]}{hint}")
    warnings = report.get("warnings") or []
    for where in world.corrupt_lines():
        if not any(w.startswith(where) for w in warnings):
            problems.append(f"no warning names {where}")
    named = {w.split(": skipped a corrupt line")[0] + ":" for w in warnings if "skipped a corrupt line" in w}
    false = named - set(world.corrupt_lines())
    if false:
        problems.append(f"warnings for lines that are fine: {sorted(false)[:3]}")
    return problems


def mutate(world: World) -> str:
    """Change the world as a live codex history changes; the oracle follows."""
    rng = world.rng
    action = rng.choice(["append", "append", "replace", "truncate", "finish"])
    if action == "finish":
        r = next((f for f in world.files if f.tail), None)
        if r is None:
            action = "append"
        else:
            assert r.path is not None
            used = (5, 0, 5, 0)
            rest = envelope("token_usage_record", {"response_id": "resp_unfinished", "usage": usage_obj(used)})
            with open(r.path, "ab") as fh:
                fh.write(rest[len(r.tail):] + b"\n")
            r.lines.append(rest)
            r.tail = b""
            if r.era == "records":
                r.records["resp_unfinished"] = used
            return f"finished the last line of {r.path.name}"
    if action == "append":
        r = rng.choice([f for f in world.files if f.era != "old"])
        assert r.path is not None
        used = rand_usage(rng)
        before = len(r.lines)
        if r.era == "records":
            rid = f"resp_{uuid.uuid4().hex}"
            r.records[rid] = used
            r.add(envelope("token_usage_record", {"response_id": rid, "usage": usage_obj(used)}))
        else:
            r.last_total = tuple(a + b for a, b in zip(r.last_total or r.base, used))  # type: ignore[assignment]
            r.add(envelope("event_msg", {"type": "token_count", "info": {"total_token_usage": usage_obj(r.last_total)}}))
        hostile_line(rng, r, 59)
        if r.tail:  # the unfinished line stays last: the new lines go in before it
            r.path.write_bytes(r.data())
        else:
            with open(r.path, "ab") as fh:
                fh.write(b"".join(line + b"\n" for line in r.lines[before:]))
        return f"appended {len(r.lines) - before} lines to {r.path.name}"
    # replace or truncate a records-era file (token_count files pin their forks' starting totals)
    r = rng.choice([f for f in world.files if f.era == "records"])
    assert r.path is not None
    old_size = r.path.stat().st_size
    fresh = records_file(rng, r.thread, False)
    if action == "truncate":
        keep = max(3, len(fresh.lines) // 2)
        fresh.lines = fresh.lines[:keep]
        fresh.corrupt = [c for c in fresh.corrupt if c <= keep]
        kept = set()
        for line in fresh.lines:
            try:
                entry = json.loads(line)
                if entry.get("type") == "token_usage_record" and isinstance(entry.get("payload"), dict):
                    kept.add(entry["payload"].get("response_id"))
            except (ValueError, AttributeError):
                continue
        fresh.records = {k: v for k, v in fresh.records.items() if k in kept}
    r.lines, r.records, r.corrupt, r.tail = fresh.lines, fresh.records, fresh.corrupt, b""
    if action == "truncate" and len(r.data()) < old_size:
        r.path.write_bytes(r.data())  # the same inode, shorter
        return f"rewrote {r.path.name} shorter in place"
    tmp = r.path.with_name(".replacement")
    tmp.write_bytes(r.data())
    os.replace(tmp, r.path)  # a new inode
    return f"replaced {r.path.name}"


def test_r3_hostile_rollout_worlds(tmp_path: Path, monkeypatch: Any, rng: Any) -> None:
    fault = Fault.get("R3", "hostile rollouts through ao cost --all")
    for n in range(WORLDS):
        home = make_home(tmp_path / f"world-{n}", monkeypatch)
        world = World(rng, home, big=(n % 4 == 0))
        kinds = ",".join(sorted({r.era for r in world.files}))
        label = f"world {n} ({len(world.files)} files: {kinds}{', 10 MB lines' if n % 4 == 0 else ''})"
        fault.trial(check(world, *cost_all(home)), f"{label}, cold index")
        what = mutate(world)
        fault.trial(check(world, *cost_all(home)), f"{label}, warm index after: {what}")
        what = mutate(world)
        (home.ao_home / "index.db").unlink(missing_ok=True)
        fault.trial(check(world, *cost_all(home)), f"{label}, rebuilt index after: {what}")
    fault.assert_passed()


def test_r3_file_replaced_mid_read(tmp_path: Path, monkeypatch: Any, rng: Any) -> None:
    """A big rollout flips between two versions while ao reads it: each run must report one version or
    the other, and once the flips stop the next run must report the file as it now is."""
    fault = Fault.get("R3b", "rollout replaced while ao reads it")
    for n in range(RACES):
        home = make_home(tmp_path / f"race-{n}", monkeypatch)
        world = World(rng, home, big=False, records_only=True)
        flipping = world.files[0]
        assert flipping.path is not None
        versions = []
        for v in range(2):
            r = records_file(rng, flipping.thread, big=True)
            master = tmp_path / f"race-{n}-v{v}.jsonl"
            master.write_bytes(r.data())
            versions.append((master, r))
        stop = threading.Event()

        def flip(stop: threading.Event = stop, versions: list = versions, flipping=flipping) -> None:
            k = 0
            while not stop.is_set():
                master, _ = versions[k % 2]
                link = flipping.path.with_name(f".flip-{k}")
                os.link(master, link)
                os.replace(link, flipping.path)
                k += 1
                time.sleep(rng.uniform(0.001, 0.02))

        flipper = threading.Thread(target=flip)
        flipper.start()
        try:
            for attempt in range(3):
                report, error = cost_all(home)
                if report is None:
                    fault.trial([error], f"race {n} run {attempt} during flips")
                    continue
                got = {k: report["totals"]["tokens"][k] for k in KEYS}
                allowed = []
                for _, r in versions:
                    world.files[0] = r
                    allowed.append(world.expected())
                fault.trial([] if got in allowed else [f"tokens {got} match neither version: {allowed}"],
                            f"race {n} run {attempt} during flips")
        finally:
            stop.set()
            flipper.join()
        final = next(r for master, r in versions if master.stat().st_ino == flipping.path.stat().st_ino)
        world.files[0] = final
        final.path = flipping.path
        fault.trial(check(world, *cost_all(home)), f"race {n}: settled read after the flips")
    fault.assert_passed()
