"""Which signing keys a bundle may be signed by: this installation's, and those the user trusts.

`$AO_HOME/keys/ledger_ed25519.pub` holds the installation's public key (base64, one line), so a
verifier never needs the private key. `$AO_HOME/trusted-keys` lists other keys, one
`SHA256:<32 hex>` fingerprint per line with an optional comment after it; `#` starts a comment line.
"""
from __future__ import annotations

import re
from pathlib import Path

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.locking import file_lock

TRUST_FILE = "trusted-keys"
FINGERPRINT = re.compile(r"SHA256:[0-9a-f]{32}")


def trust_path(ao_home: Path | None = None) -> Path:
    return Path(ao_home or paths.ao_home()) / TRUST_FILE


def parse_fingerprint(text: str) -> str:
    """A fingerprint as `ledger.fingerprint()` writes it; hex may be given in either case."""
    value = text.strip()
    if value[:7].upper() == "SHA256:":
        value = "SHA256:" + value[7:].lower()
    if not FINGERPRINT.fullmatch(value):
        raise FatalError(f"{text!r} is not a key fingerprint: expected SHA256: and 32 hex digits, as "
                         f"`ao receipts verify` prints after `signed by`")
    return value


def installation_public_key(ao_home: Path | None = None) -> bytes | None:
    """This installation's public key from its .pub file (derived from the private key if missing)."""
    from supervisor.govern import ledger

    pub = ledger.public_key_path(ao_home)
    try:
        return ledger.b64_strict(pub.read_text().strip(), ledger.PUBLIC_KEY_BYTES)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise FatalError(f"{pub} is not an ao public key ({exc}); delete it and ao writes it again "
                         f"from the private key") from None
    if ledger.key_path(ao_home).exists():  # an install from before .pub files existed
        return ledger.public_key_raw(ao_home)
    return None


def trusted_fingerprints(ao_home: Path | None = None) -> dict[str, str]:
    """{fingerprint: where it is trusted from}, never creating a key."""
    from supervisor.govern import ledger

    trusted: dict[str, str] = {}
    own = installation_public_key(ao_home)
    if own is not None:
        trusted[ledger.fingerprint(own)] = str(ledger.public_key_path(ao_home))
    path = trust_path(ao_home)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return trusted
    except (OSError, UnicodeDecodeError) as exc:
        raise FatalError(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        if not FINGERPRINT.fullmatch(words[0]):
            raise FatalError(f"{path}:{number}: {words[0]!r} is not a key fingerprint (SHA256: and 32 "
                             f"lowercase hex digits); fix or delete the line")
        trusted.setdefault(words[0], f"{path}:{number}")
    return trusted


def add(fingerprint_text: str, comment: str | None = None, ao_home: Path | None = None) -> tuple[str, bool]:
    """Trust a key; returns (fingerprint, whether it was added now rather than already trusted)."""
    fingerprint = parse_fingerprint(fingerprint_text)
    path = trust_path(ao_home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_name("." + TRUST_FILE + ".lock")):
        if fingerprint in trusted_fingerprints(ao_home):
            return fingerprint, False
        try:
            current = path.read_text()
        except FileNotFoundError:
            current = "# keys whose evidence bundles `ao receipts verify` accepts: SHA256:... [comment]\n"
        if current and not current.endswith("\n"):
            current += "\n"
        note = " ".join((comment or "").split())
        paths.atomic_write(path, current + fingerprint + (f" {note}" if note else "") + "\n", mode=0o600)
    return fingerprint, True
