"""The ledger's signing key: libsodium signs, cryptography checks, and the key file stays the same.

The runner (one per agent) signs through PyNaCl and hashes through CPython's built-in sha256, so
neither cryptography's Rust library nor OpenSSL's libcrypto is resident in it. These tests hold the
two signers to the same bytes, keep keys written before the change readable, and refuse keys that
are not ed25519 with an error naming the file.
"""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from supervisor import digest, paths
from supervisor.govern import ledger

REPO = Path(__file__).resolve().parents[1]


def _write_key(pem: bytes) -> Path:
    path = ledger.key_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    return path


def _pkcs8(key: Ed25519PrivateKey | X25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.mark.parametrize("data", [b"", b"abc", "ünïcode ✓".encode(), os.urandom(1 << 20)])
def test_the_built_in_sha256_gives_hashlibs_digest(data):
    assert digest.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    h = digest.sha256()
    h.update(data[:7])
    h.update(data[7:])
    assert h.digest() == hashlib.sha256(data).digest()


def test_a_new_key_is_one_cryptography_reads_and_both_sign_alike():
    key = ledger.load_or_create_key()
    path = ledger.key_path()
    assert path.stat().st_mode & 0o777 == 0o600
    theirs = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(theirs, Ed25519PrivateKey)
    assert key.public_raw() == theirs.public_key().public_bytes(serialization.Encoding.Raw,
                                                                 serialization.PublicFormat.Raw)
    message = ledger.canonical({"kind": "tool_call", "n": 1})
    signature = key.sign(message)
    assert len(signature) == ledger.SIG_BYTES  # the signature alone, not PyNaCl's signature + message
    assert signature == theirs.sign(message)  # ed25519 is deterministic: the same key signs the same bytes
    assert (paths.ao_home() / "keys" / (ledger.KEY_NAME + ".pub")).read_text().strip() == \
        base64.b64encode(key.public_raw()).decode()


def test_a_key_written_before_the_change_keeps_signing_a_chain_that_checks(tmp_path):
    old = Ed25519PrivateKey.generate()
    path = _write_key(_pkcs8(old))
    before = path.read_bytes()
    sdir = paths.session_dir("ao-key-old")
    for n in range(3):
        ledger.append(sdir, "tool_call", {"n": n, "command": f"echo {n}"})
    public_raw = ledger.public_key_raw()
    assert public_raw == old.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert ledger.check_lines(ledger.raw_lines(sdir), public_raw) == (True, None, "3 lines verified")
    assert path.read_bytes() == before  # read, never rewritten


def test_a_key_spelt_otherwise_is_read_through_cryptography():
    """CRLF line ends (a key copied through another system's editor) miss the exact-form path."""
    old = Ed25519PrivateKey.generate()
    _write_key(_pkcs8(old).replace(b"\n", b"\r\n"))
    key = ledger.load_or_create_key()
    public = old.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.public_raw() == public
    Ed25519PublicKey.from_public_bytes(public).verify(key.sign(b"x"), b"x")


@pytest.mark.parametrize("make, why", [
    (lambda: _pkcs8(X25519PrivateKey.generate()), "not an ed25519 private key"),
    (lambda: _pkcs8(ec.generate_private_key(ec.SECP256R1())), "not an ed25519 private key"),
    (lambda: _pkcs8(Ed25519PrivateKey.generate())[:60], "not a readable private key"),
    (lambda: b"", "not a readable private key"),
])
def test_a_key_file_that_is_not_an_ed25519_key_is_refused_by_name(make, why):
    path = _write_key(make())
    before = path.read_bytes()
    with pytest.raises(ValueError, match=why) as caught:
        ledger.load_or_create_key()
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before  # nothing replaced: the user's file is left to look at
    assert not (path.parent / (ledger.KEY_NAME + ".pub")).exists()


def test_signing_in_a_runner_loads_neither_cryptography_nor_openssl(tmp_path):
    """What the runner imports to sign is resident in every agent's supervisor for its whole life."""
    code = (
        "import sys\n"
        "from supervisor import paths\n"
        "import supervisor.sessions.runner\n"
        "from supervisor.govern import guard, hooks, ledger, plans\n"
        "from supervisor.govern.guard_server import GuardServer\n"
        "from supervisor.launch import plan\n"
        "sdir = paths.session_dir('ao-key-runner')\n"
        "ledger.append(sdir, 'lifecycle', {'event': 'started'})\n"
        "w = ledger.LedgerWriter(sdir)\n"
        "w.append('guard_decision', {'decision': 'allow', 'command': 'ls'})\n"
        "w.close()\n"
        "hashed = [plans.plan_hash({'steps': ['a']}), guard.digest('ls')]\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'hashlib', '_hashlib'))\n"
        "print(len(ledger.raw_lines(sdir)), loaded)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(None, 1) == ["2", "[]\n"]


def test_a_key_cut_short_by_a_full_disk_is_never_put_in_place(tmp_path):
    """A write stopped at the file size limit (as a full disk would stop it) leaves no key and no temp
    file; the next start, with room, makes a whole key. A truncated key would refuse every later run."""
    keys = ledger.key_path().parent
    code = ("import resource, signal\n"
            "from supervisor.govern import ledger\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (50, 50))\n"  # the PEM is 119 bytes
            "try:\n    ledger.load_or_create_key()\n"
            "except OSError as exc:\n    print('failed', exc.errno)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("failed"), out.stdout + out.stderr
    assert [p.name for p in keys.iterdir()] == []
    key = ledger.load_or_create_key()
    assert len(key.sign(b"x")) == ledger.SIG_BYTES
    assert sorted(p.name for p in keys.iterdir()) == [ledger.KEY_NAME, ledger.KEY_NAME + ".pub"]


def test_two_processes_creating_the_key_at_once_end_with_one_key(tmp_path):
    code = ("from supervisor.govern import ledger\n"
            "print(ledger.load_or_create_key().public_raw().hex())\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    publics = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert publics == {ledger.load_or_create_key().public_raw().hex()}
    assert sorted(p.name for p in ledger.key_path().parent.iterdir()) == [ledger.KEY_NAME, ledger.KEY_NAME + ".pub"]
