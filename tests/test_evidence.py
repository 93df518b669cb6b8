"""Signed evidence that holds up on its own: strict decoding, the ao.db anchor, claims, trusted keys."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.govern import anchor, bundle, ledger, trust
from supervisor.report import cmd_govern
from supervisor.report.cli import cli

LONG = "echo " + "x" * (ledger.TEXT_LIMIT + 10)


def _session(name: str, count: int = 3, thread_id: str | None = None) -> Path:
    store.insert({"session": name, "name": f"{name}-name", "workspace": "/tmp", "runtime": "headless",
                  "status": "working", "thread_id": thread_id})
    sdir = paths.session_dir(name)
    sdir.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        ledger.append(sdir, "tool_call", {"n": n, "command": f"echo {n}"}, prompt_hash="sha256:" + "ab" * 32)
    return sdir


def _export(session: str, out: Path) -> Path:
    result = CliRunner().invoke(cli, ["receipts", "export", session, "-o", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def _own_fingerprint() -> str:
    return ledger.fingerprint(ledger.public_key_raw())


def _second_home(tmp_path: Path) -> Path:
    """Another installation, with its own key: what an attacker holding some other key has."""
    return tmp_path / "other-ao-home"


# --- strict decoding ------------------------------------------------------------------------------

def test_every_single_bit_flip_of_a_real_bundle_is_rejected(tmp_path):
    sdir = _session("ao-bits", 2)
    writer = ledger.LedgerWriter(sdir)
    writer.append("guard_decision", {"decision": "deny", "reason": "no", "command": "rm -rf /"})
    writer.append_claims("wrappers", [b'{"event":"pr","number":7}'])
    original = _export("ao-bits", tmp_path / "bundle.jsonl").read_bytes()
    fingerprint = _own_fingerprint()
    assert bundle.verify_bytes(original, fingerprint)[0]
    undetected = []
    for pos in range(len(original)):
        for bit in range(8):
            data = bytearray(original)
            data[pos] ^= 1 << bit
            if bundle.verify_bytes(bytes(data), fingerprint)[0]:
                undetected.append((pos, bit))
    assert len(original) > 2000 and undetected == [], undetected[:20]


def test_a_spare_base64_bit_is_caught_although_lenient_decoding_ignores_it(tmp_path):
    sdir = _session("ao-b64", 1)
    line = ledger.raw_lines(sdir)[0]
    sig = json.loads(line)["sig"]
    assert sig.endswith("==")
    last = sig[-3]
    twin = next(c for c in "AEIMQUYcgkosw048" if c != last and
                base64.b64decode(sig[:-3] + c + "==") == base64.b64decode(sig))  # same bytes, other text
    forged = line.replace(sig.encode(), (sig[:-3] + twin + "==").encode())
    assert base64.b64decode(json.loads(forged)["sig"]) == base64.b64decode(sig)
    assert ledger.check_lines([forged], ledger.public_key_raw()) == (False, 1, "bad signature")
    with pytest.raises(ValueError, match="canonical"):
        ledger.b64_strict(sig[:-3] + twin + "==", ledger.SIG_BYTES)


@pytest.mark.parametrize("text, why", [
    ('{"a":1,"a":2}', "duplicate key"),
    ('{"a":NaN}', "NaN"),
    ('{"a":-Infinity}', "Infinity"),
    ('{"a":1e999}', "out of range"),
    ('[1,2]', "not a JSON object"),
])
def test_strict_json_rejects_what_lenient_json_accepts(text, why):
    json.loads(text)  # the standard library takes every one of these
    with pytest.raises(ValueError, match=why):
        ledger.strict_object(text)


def test_a_signed_line_with_a_duplicate_key_fails(tmp_path):
    sdir = _session("ao-dup", 1)
    line = ledger.raw_lines(sdir)[0]
    doubled = line.replace(b'"kind":"tool_call"', b'"kind":"approval","kind":"tool_call"')
    ok, bad, reason = ledger.check_lines([doubled], ledger.public_key_raw())
    assert (ok, bad) == (False, 1) and "duplicate key" in reason


# --- the anchor in ao.db --------------------------------------------------------------------------

def test_every_append_anchors_the_head_in_ao_db():
    sdir = _session("ao-anchor", 4)
    lines = ledger.raw_lines(sdir)
    assert anchor.get(paths.ao_home(), "ao-anchor") == (4, ledger.line_hash(lines[-1]))
    con = sqlite3.connect(paths.db_path())
    assert con.execute("SELECT seq FROM ledger_heads WHERE session = 'ao-anchor'").fetchone() == (4,)
    assert con.execute("SELECT session FROM sessions").fetchall() == [("ao-anchor",)]  # the store's table intact
    assert ledger.verify_session(sdir)[0]


def test_truncated_ledger_fails_verify_export_and_further_writes(tmp_path):
    sdir = _session("ao-cut", 5)
    lines = ledger.raw_lines(sdir)
    (sdir / ledger.LEDGER).write_bytes(b"".join(line + b"\n" for line in lines[:3]))
    assert ledger.check_lines(ledger.raw_lines(sdir), ledger.public_key_raw())[0]  # still a valid chain
    ok, _, reason = ledger.verify_session(sdir)
    assert not ok and "3 lines" in reason and "anchored head is seq 5" in reason
    result = CliRunner().invoke(cli, ["receipts", "verify", "--session", "ao-cut"])
    assert result.exit_code == 1 and "seq 5" in result.output
    with pytest.raises(FatalError, match="anchored head is seq 5"):
        bundle.export("ao-cut", tmp_path / "b.jsonl")
    with pytest.raises(ledger.LedgerError, match="anchored at seq 5"):
        ledger.append(sdir, "lifecycle", {"event": "after the cut"})
    assert len(ledger.raw_lines(sdir)) == 3 and anchor.get(paths.ao_home(), "ao-cut")[0] == 5


def test_ledger_rolled_back_in_place_fails(tmp_path):
    sdir = _session("ao-roll", 3)
    saved = (sdir / ledger.LEDGER).read_bytes()
    ledger.LedgerWriter(sdir).append("guard_decision", {"decision": "deny", "reason": "forbidden"})
    ledger.append(sdir, "lifecycle", {"event": "later"})
    (sdir / ledger.LEDGER).write_bytes(saved)  # the old copy, denial and all gone
    ok, _, reason = ledger.verify_session(sdir)
    assert not ok and "seq 5" in reason
    with pytest.raises(FatalError, match="seq 5"):
        cmd_govern.export_receipts("ao-roll", tmp_path / "b.jsonl")
    # regrown to the same length with other content (this needs the key) still does not match the head
    (sdir / ledger.LEDGER).write_bytes(saved)
    key = ledger.load_or_create_key()
    seq, prev, offset = 3, ledger.line_hash(ledger.raw_lines(sdir)[-1]), 0
    extra = []
    for n in range(2):
        seq += 1
        line = ledger.sign_entry(key, ledger._entry(seq, time.time(), "lifecycle", {"n": n}, None, prev, offset))
        extra.append(line)
        prev = ledger.line_hash(line)
    (sdir / ledger.LEDGER).write_bytes(saved + b"".join(line + b"\n" for line in extra))
    ok, _, reason = ledger.verify_session(sdir)
    assert not ok and "line 5 does not hash to the anchored head" in reason


def test_a_ledger_ahead_of_its_anchor_is_fine_and_the_anchor_catches_up():
    """kill -9 between the ledger write and the anchor leaves the ledger ahead: that is not an attack."""
    sdir = _session("ao-ahead", 3)
    con = sqlite3.connect(paths.db_path())
    con.execute("UPDATE ledger_heads SET seq = 2, head = ? WHERE session = 'ao-ahead'",
                (ledger.line_hash(ledger.raw_lines(sdir)[1]),))
    con.commit()
    assert ledger.verify_session(sdir)[0]
    ledger.append(sdir, "lifecycle", {"event": "next"})
    assert anchor.get(paths.ao_home(), "ao-ahead")[0] == 4


def test_anchor_never_moves_backwards():
    anchor.record(paths.ao_home(), "ao-mono", 9, "h9")
    anchor.record(paths.ao_home(), "ao-mono", 4, "h4")
    assert anchor.get(paths.ao_home(), "ao-mono") == (9, "h9")


def test_a_full_disk_leaves_no_torn_line(tmp_path):
    """A write cut short (here by RLIMIT_FSIZE, as a full disk would) is undone; the ledger stays valid."""
    sdir = _session("ao-full", 1)
    ledger.append(sdir, "lifecycle", {"pad": "p" * 200_000})  # the ledger, not ao.db, is the biggest file
    size = (sdir / ledger.LEDGER).stat().st_size
    code = ("import resource, signal, sys; from pathlib import Path; from supervisor.govern import ledger\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 200}, {size + 200}))\n"
            "try:\n    ledger.append(Path(sys.argv[1]), 'lifecycle', {'pad': 'y' * 5000})\n"
            "except OSError as exc:\n    print('failed', exc.errno)\n")
    out = subprocess.run([sys.executable, "-c", code, str(sdir)], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("failed"), out.stdout + out.stderr
    assert (sdir / ledger.LEDGER).stat().st_size == size
    assert ledger.verify_session(sdir)[0]
    ledger.append(sdir, "lifecycle", {"event": "disk freed"})
    assert ledger.verify_session(sdir) == (True, None, f"3 lines verified, anchored in {paths.db_path()}")


# --- the spool is not trusted ---------------------------------------------------------------------

def _spool_raw(sdir: Path, *events: dict) -> None:
    with open(sdir / ledger.SPOOL, "a") as fh:
        for event in events:
            fh.write(json.dumps(event) + "\n")


def test_spooled_guard_kinds_are_sealed_as_forgeries(tmp_path):
    sdir = _session("ao-forge", 1)
    _spool_raw(sdir,
               {"ts": time.time(), "kind": "guard_decision", "body": {"decision": "allow", "command": "rm -rf /"}},
               {"ts": time.time(), "kind": "approval", "body": {"id": "ap-1", "status": "approved"}},
               {"ts": time.time(), "kind": "budget_stop", "body": {"spent_usd": 0.0}},
               {"ts": time.time(), "kind": "wrapper_event", "body": {"event": "pr", "spent_usd": 123.0,
                                                                     "thread_id": "t-forged"}})
    entries = ledger.read(sdir)
    forged = [e for e in entries if e["kind"] == "lifecycle" and e["body"].get("event") == "forged_spool_line"]
    assert [e["body"]["claimed_kind"] for e in forged] == ["guard_decision", "approval", "budget_stop"]
    assert all(e.get("from_spool") is True for e in entries[1:])
    assert not any(e["kind"] in ledger.GUARD_KINDS for e in entries)
    claim = entries[-1]
    assert claim["kind"] == "wrapper_event" and claim["body"]["claim"] is True and claim["body"]["source"] == "spool"
    summary = bundle.summarize(entries, "ao-forge")
    assert summary["tool_calls_allowed"] == 0 and summary["budget_stops"] == 0
    assert summary["spent_usd"] is None and summary["thread_ids"] == []
    assert summary["forged_spool_lines"] == 3 and summary["claims"] == 1
    with pytest.raises(ValueError, match="only by the guard side"):
        ledger.spool(sdir, "guard_decision", {"decision": "deny"})


def test_only_the_writer_records_guard_decisions_and_claims_stay_claims():
    sdir = _session("ao-writer", 0)
    writer = ledger.LedgerWriter(sdir)
    key_file = ledger.key_path()
    key_file.rename(key_file.with_name("moved"))  # the writer holds its key in memory
    writer.append("guard_decision", {"decision": "deny", "reason": "forbidden", "command": LONG})
    writer.append_claims("wrappers", [b'{"event":"branch","name":"b","decision":"deny"}', b"{torn", "",
                                      {"event": "pr", "number": 3}])
    entries = ledger.read(sdir, seal_first=False)
    assert [e["kind"] for e in entries] == ["guard_decision"] + ["wrapper_event"] * 3
    decision = entries[0]["body"]
    assert "command" not in decision and decision["command_len"] == len(LONG)
    assert decision["command_sha256"] == hashlib.sha256(LONG.encode()).hexdigest()
    assert decision["command_head"] == LONG[:ledger.TEXT_LIMIT]
    assert all(e["body"]["claim"] is True and e["body"]["source"] == "wrappers" for e in entries[1:])
    assert entries[2]["body"]["unreadable"] == "{torn"
    assert bundle.summarize(entries, "ao-writer")["tool_calls_denied"] == 1  # the claim's "deny" is not counted
    key_file.with_name("moved").rename(key_file)
    assert ledger.verify_session(sdir)[0]


def test_wrapper_events_from_events_jsonl_become_claims():
    sdir = _session("ao-wrap", 0)
    (sdir / "events.jsonl").write_text(json.dumps({"ts": 1.0, "event": "branch", "name": "feature/x"}) + "\n")
    assert ledger.ingest_wrapper_events(sdir) == 1
    entry = ledger.read(sdir)[-1]
    assert entry["kind"] == "wrapper_event" and entry["body"]["claim"] is True
    assert entry["body"]["source"] == "wrappers" and entry["body"]["event"] == "branch"


# --- trusted keys ---------------------------------------------------------------------------------

def test_a_bundle_by_another_key_fails_until_trusted(tmp_path, monkeypatch):
    other = _second_home(tmp_path)
    monkeypatch.setenv("AO_HOME", str(other))
    _session("ao-foreign", 2)
    foreign = _export("ao-foreign", tmp_path / "foreign.jsonl")
    foreign_fp = ledger.fingerprint(ledger.public_key_raw())
    monkeypatch.setenv("AO_HOME", str(tmp_path / "home" / ".agent-orchestrator"))
    _session("ao-mine", 1)
    ok, bad, reason = bundle.verify(foreign)
    assert (ok, bad) == (False, 1)
    assert f"ao receipts trust {foreign_fp}" in reason and f"--key {foreign_fp}" in reason
    result = CliRunner().invoke(cli, ["receipts", "verify", str(foreign)])
    assert result.exit_code == 1 and "not trusted" in result.output
    assert CliRunner().invoke(cli, ["receipts", "verify", str(foreign), "--key", foreign_fp]).exit_code == 0
    assert CliRunner().invoke(cli, ["receipts", "verify", str(foreign), "--key", _own_fingerprint()]
                              ).exit_code == 1  # --key pins the signer
    result = CliRunner().invoke(cli, ["receipts", "trust", foreign_fp.upper().replace("SHA256:", "sha256:"),
                                                            "--comment", "the CI runner"])
    assert result.exit_code == 0 and f"trusted {foreign_fp}" in result.output, result.output
    assert trust.trust_path().read_text().splitlines()[-1] == f"{foreign_fp} the CI runner"
    assert "already trusted" in CliRunner().invoke(cli, ["receipts", "trust", foreign_fp]).output
    assert bundle.verify(foreign)[0]
    bad_fp = CliRunner().invoke(cli, ["receipts", "trust", "SHA256:1234"])
    assert bad_fp.exit_code != 0 and "32 hex digits" in bad_fp.output


def test_verify_needs_only_the_public_key_or_the_trust_file(tmp_path, monkeypatch):
    _session("ao-pub", 2)
    out = _export("ao-pub", tmp_path / "b.jsonl")
    fingerprint = _own_fingerprint()
    home = paths.ao_home()
    private = ledger.key_path().read_bytes()
    ledger.key_path().unlink()
    assert bundle.verify(out)[0]  # the .pub alone
    assert not ledger.key_path().exists()  # and verifying created no key
    verifier = tmp_path / "auditor-home"
    verifier.mkdir()
    (verifier / "trusted-keys").write_text(f"# keys\n\n{fingerprint}  release signing key\n")
    assert bundle.verify(out, ao_home=verifier)[0]
    assert not (verifier / "keys").exists()
    empty = tmp_path / "empty-home"
    ok, _, reason = bundle.verify(out, ao_home=empty)
    assert not ok and "not trusted" in reason
    (verifier / "trusted-keys").write_text("SHA256:nothex\n")
    with pytest.raises(FatalError, match="trusted-keys:1"):
        bundle.verify(out, ao_home=verifier)
    # an install from before .pub files: the public key is derived and written on first use
    ledger.key_path().write_bytes(private)
    ledger.public_key_path().unlink()
    assert bundle.verify(out, ao_home=home)[0] and ledger.public_key_path().exists()


# --- truncation -----------------------------------------------------------------------------------

def test_truncated_reordered_or_re_trailered_bundles_fail(tmp_path, monkeypatch):
    _session("ao-trunc", 4)
    original = _export("ao-trunc", tmp_path / "b.jsonl").read_bytes()
    lines = original.split(b"\n")[:-1]
    trailer = json.loads(lines[-1])
    assert trailer["anchor"] == {"seq": 4, "head": ledger.line_hash(lines[-2])}

    def check(parts: list[bytes]) -> tuple[bool, int | None, str]:
        return bundle.verify_bytes(b"".join(p + b"\n" for p in parts))

    assert check(lines)[0]
    assert not check(lines[:-2] + lines[-1:])[0]  # last ledger line gone
    assert not check(lines[:-1])[0]  # trailer gone
    assert not check(lines[:2] + [lines[3], lines[2]] + lines[4:])[0]  # reordered
    assert not bundle.verify_bytes(original[:-40])[0]  # cut mid-line
    # cut and re-trailered: a different key fails on trust, the same key fails on the anchor
    other = ledger.load_or_create_key(_second_home(tmp_path))
    own = ledger.load_or_create_key()
    for key, why in ((other, "not trusted"), (own, "anchored at seq 4")):
        public_raw = key.public_raw()
        header = ledger.strict_object(lines[0])
        header.pop("sig")
        header.update(public_key=base64.b64encode(public_raw).decode(), key_fingerprint=ledger.fingerprint(public_raw))
        new_header = ledger.sign_entry(key, header)
        body = lines[1:-2]
        new_trailer = {k: v for k, v in trailer.items() if k != "sig"}
        new_trailer.update(lines=len(body), head=ledger.line_hash(body[-1]), header_sha256=ledger.line_hash(new_header))
        ok, bad, reason = check([new_header, *body, ledger.sign_entry(key, new_trailer)])
        assert not ok and why in reason, reason


# --- export by name, thread id; full commands ---------------------------------------------------------

def test_export_accepts_name_and_thread_id_and_refuses_unknown(tmp_path):
    _session("ao-named", 2, thread_id="019a-thread")
    for ref in ("ao-named", "ao-named-name", "019a-thread"):
        out = _export(ref, tmp_path / f"{ref}.jsonl")
        assert bundle.verify(out)[0] and b'"session":"ao-named"' in out.read_bytes().split(b"\n")[0]
    paths.session_dir("ao-stray").mkdir(parents=True)  # a directory alone is not a session
    for ref in ("ao-stray", "../ao-named", "nope"):
        result = CliRunner().invoke(cli, ["receipts", "export", ref, "-o", str(tmp_path / "x.jsonl")])
        assert result.exit_code != 0 and "unknown session" in result.output
    assert not (tmp_path / "x.jsonl").exists()


def _approval_file(approval_id: str, **fields: object) -> None:
    record = {"id": approval_id, "session": "ao-ap", "status": "pending", "created": time.time(),
              "timeout_at": time.time() + 300, "reason": "needs a human", "pattern": "deploy", **fields}
    folder = paths.ao_home() / "approvals"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{approval_id}.json").write_text(json.dumps(record))


def test_approve_and_deny_print_the_whole_command():
    long_command = "deploy " + " ".join(f"--flag-{n}" for n in range(600))
    digest = hashlib.sha256(long_command.encode()).hexdigest()
    _approval_file("ap-long", command=long_command, command_len=len(long_command), command_sha256=digest)
    result = CliRunner().invoke(cli, ["approve", "ap-long"])
    assert result.exit_code == 0, result.output
    assert long_command in result.output and f"{len(long_command)} chars, sha256 {digest}" in result.output
    _approval_file("ap-huge", command=None, command_truncated=True, command_head="deploy --everything",
                   command_len=99999, command_sha256="ab" * 32)
    result = CliRunner().invoke(cli, ["deny", "ap-huge"])
    assert result.exit_code == 0, result.output
    assert "too long to show whole" in result.output and "deploy --everything" in result.output
    assert f"99999 chars, sha256 {'ab' * 32}" in result.output and "None" not in result.output


# --- the real codex: the agent forges and rolls back ---------------------------------------------------

def _attack_script(sdir: Path) -> str:
    forge = ("python3 -c \"import json,time;open('%s','a').write(json.dumps({'ts':time.time(),"
             "'kind':'guard_decision','body':{'decision':'allow','forged':'by-agent'}})+chr(10))\""
             % (sdir / ledger.SPOOL))
    cut = "python3 -c \"p='%s';d=open(p,'rb').read().splitlines(True);open(p,'wb').write(b''.join(d[:2]))\"" % (
        sdir / ledger.LEDGER)
    return ("tasks:\n"
            f"  forge:\n    steps:\n      - run: {json.dumps(forge)}\n      - say: done\n"
            f"  cut:\n    steps:\n      - run: {json.dumps(cut)}\n      - say: done\n")


def _run_agent(codex: Path, base_url: str, workspace: Path, task: str) -> subprocess.CompletedProcess[str]:
    """codex exec with approvals and its sandbox off (`skip`), the agent as the user's own uid."""
    from supervisor.launch.command import LaunchSpec, build_overrides, exec_argv

    cfg = {"agent": {"reasoning_effort": None}, "codex": {"overrides": {}},
           "provider": {"id": "scripted", "base_url": base_url}}
    spec = LaunchSpec(str(workspace), "gpt-5.1-codex", "skip", "workspace-write",
                      build_overrides(cfg, "gpt-5.1-codex", [], "", None))
    return subprocess.run(exec_argv(str(codex), spec, f"[ao-task:{task}] go"), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180, cwd=workspace, env=dict(os.environ))


@pytest.mark.codex
def test_real_agent_forgeries_are_labelled_and_rollbacks_refused(codex, scripted_model, sample_repo, tmp_path):
    sdir = _session("ao-attacked", 2)
    ledger.LedgerWriter(sdir).append("guard_decision", {"decision": "deny", "reason": "no force pushes"})
    server = scripted_model(_attack_script(sdir))
    proc = _run_agent(codex, server.base_url, sample_repo, "forge")
    assert proc.returncode == 0, proc.stderr
    assert b"by-agent" in (sdir / ledger.SPOOL).read_bytes()  # the agent did write into the spool
    out = _export("ao-attacked", tmp_path / "forge.jsonl")
    assert bundle.verify(out)[0]
    entries = [json.loads(line) for line in out.read_bytes().split(b"\n")[1:-2]]
    forged = [e for e in entries if e["kind"] == "lifecycle" and e["body"].get("event") == "forged_spool_line"]
    assert len(forged) == 1 and forged[0]["body"]["claimed_body"]["forged"] == "by-agent"
    decisions = [e["body"] for e in entries if e["kind"] == "guard_decision"]
    assert decisions == [{"decision": "deny", "reason": "no force pushes"}]
    summary = json.loads(out.read_bytes().split(b"\n")[-2])["summary"]
    assert summary["tool_calls_allowed"] == 0 and summary["forged_spool_lines"] == 1

    anchored = anchor.get(paths.ao_home(), "ao-attacked")
    proc = _run_agent(codex, server.base_url, sample_repo, "cut")
    assert proc.returncode == 0, proc.stderr
    assert len(ledger.raw_lines(sdir)) == 2  # the denial is gone from the file, the chain still valid
    with pytest.raises(FatalError, match=f"(anchored at|anchored head is) seq {anchored[0]}"):
        cmd_govern.export_receipts("ao-attacked", tmp_path / "cut.jsonl")
    result = CliRunner().invoke(cli, ["receipts", "verify", "--session", "ao-attacked"])
    assert result.exit_code == 1 and "truncated or rolled back" in result.output


def test_unconfirmed_hook_requests_are_counted_apart_and_named_by_verify(tmp_path):
    sdir = _session("ao-unconfirmed", 0)
    writer = ledger.LedgerWriter(sdir)
    writer.append("guard_decision", {"decision": "allow", "command": "ls", "provenance": "rollout"})
    writer.append("tool_call", {"command": "ls", "provenance": "rollout"})
    writer.append("guard_decision", {"decision": "deny", "command": "old", "rule": "forbidden_commands[0]"})
    # what the guard records for a request codex's rollout does not list (the agent's, or a replay)
    forged = {"command": "touch x", "provenance": "unconfirmed", "provenance_reason": "not in the rollout",
              "thread_id": "x"}
    writer.append("guard_decision", {**forged, "decision": "allow"})
    writer.append("tool_call", ledger.as_claim(forged, "guard_socket"))
    writer.append("tool_call", {"command": "echo provenance unconfirmed"})  # the words in a command count for nothing
    summary = bundle.summarize(ledger.read(sdir), "ao-unconfirmed")
    assert (summary["tool_calls_allowed"], summary["tool_calls_denied"]) == (1, 1)  # the pre-provenance denial counts
    assert (summary["tool_calls"], summary["unconfirmed_requests"], summary["claims"]) == (2, 2, 1)
    assert "x" not in summary["thread_ids"]
    out = _export("ao-unconfirmed", tmp_path / "bundle.jsonl")
    ok, _, reason = bundle.verify(out)
    assert ok and "2 hook requests not confirmed by codex's rollout" in reason
    result = CliRunner().invoke(cli, ["receipts", "verify", "--session", "ao-unconfirmed"])
    assert result.exit_code == 0 and "2 hook requests not confirmed" in result.output
    clean = _session("ao-confirmed", 1)
    assert "not confirmed" not in bundle.verify(_export("ao-confirmed", tmp_path / "clean.jsonl"))[2]
    assert "not confirmed" not in ledger.verify_session(clean)[2]
