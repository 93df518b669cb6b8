"""Secret redaction: each shape is masked, and the ordinary text that looks like it is not."""
from __future__ import annotations

import json
import time

import pytest

from supervisor.redact import MASK, redact, redact_text

M = MASK

MASKED = [
    # PEM private keys, whole or cut off by an output excerpt
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----\nnext",
     f"-----BEGIN RSA PRIVATE KEY-----\n{M}\n-----END RSA PRIVATE KEY-----\nnext"),
    ("key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",
     f"key:\n-----BEGIN OPENSSH PRIVATE KEY-----\n{M}\n"),
    # mysql-style -pPASSWORD, attached, in a mysql/mariadb command
    ("mysql -u root -phunter2 shop", f"mysql -u root -p{M} shop"),
    ("cd /srv && mysqldump -ps3cr3t --all-databases > all.sql", f"cd /srv && mysqldump -p{M} --all-databases > all.sql"),
    ("mariadb -h db -p'pa ss' -e 'select 1'", f"mariadb -h db -p'{M}' -e 'select 1'"),
    ("sshpass -p hunter2 ssh deploy@host", f"sshpass -p {M} ssh deploy@host"),
    # --password X and --password=X
    ("psql --password hunter2 -h db", f"psql --password {M} -h db"),
    ("tool --password=hunter2", f"tool --password={M}"),
    ("vault login --token s.abcdef123", f"vault login --token {M}"),
    ("cli --api-key abc123 --client-secret 'x y'", f"cli --api-key {M} --client-secret '{M}'"),
    # credentials in a URL
    ("git clone https://ada:pw123@github.com/acme/repo.git", f"git clone https://ada:{M}@github.com/acme/repo.git"),
    ("DATABASE_URL=postgres://app:Secr3t@db:5432/app", f"DATABASE_URL=postgres://app:{M}@db:5432/app"),
    # JSON keys: apiKey, token, secret, password
    ('{"apiKey": "abc", "token": "t1", "secret": "s", "password": "p", "name": "n"}',
     f'{{"apiKey": "{M}", "token": "{M}", "secret": "{M}", "password": "{M}", "name": "n"}}'),
    ('{"accessToken":"zzz","client_secret":"yyy"}', f'{{"accessToken":"{M}","client_secret":"{M}"}}'),
    # headers and HTTP Basic
    ('curl -H "x-api-key: abcdef12" https://api', f'curl -H "x-api-key: {M}" https://api'),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", f"Authorization: Basic {M}"),
    ("curl -u alice:wonderland https://api", f"curl -u alice:{M} https://api"),
    ("curl --user alice:wonderland https://api", f"curl --user alice:{M} https://api"),
    ("Authorization: Bearer abcdefghijklmnopqrstu", f"Authorization: {M}"),
    # AWS
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", f"aws_secret_access_key = {M}"),
    ("AKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", f"{M},{M}"),
    # token=
    ("https://example.com/callback?token=abc123&state=x", f"https://example.com/callback?token={M}&state=x"),
    ("token=abc123", f"token={M}"),
]

KEPT = [
    "git log -p --stat",
    "mkdir -p src/a/b && mkdir -pv x",
    "ssh -p 22 deploy@host",
    "scp -P 2222 file host:",
    "mysql -p shop",                      # asks for the password on the terminal: nothing to mask
    "mysql -P 3306 -h db shop",
    "python -m pytest -p no:cacheprovider",
    "psql --no-password -h db",
    "gh auth login --with-token < token.txt",
    "cat --token-file /run/token",
    "docker run -u 1000:1000 img",
    "git push -u origin main",
    "commit 3de6625a1b2c3d4e5f60718293a4b5c6d7e8f901 on AWS",   # a git SHA is not an AWS secret
    "AWS path: src/components/header/navigation/bar.tsx",
    "Basic usage and Basic Authentication",
    "http://localhost:8080/path@anchor",
    "ssh://git@github.com:22/acme/repo.git",
    "git@github.com:acme/repo.git",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
    '{"tokens": 5, "cache_key_count": 3, "key": "session-1", "max_tokens": 10}',
    "cache_key_count=3 monkey=2 max_tokens=100",
    "Fix token counting for cached input",
]


@pytest.mark.parametrize("text,expected", MASKED)
def test_secret_shapes_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact_text(text) == text


def test_masked_json_stays_json() -> None:
    text = json.dumps({"apiKey": "abc", "nested": {"token": "t", "count": 3}, "url": "https://a:b@c/d"})
    assert json.loads(redact_text(text)) == {"apiKey": M, "nested": {"token": M, "count": 3}, "url": f"https://a:{M}@c/d"}


def test_structured_values_mask_camel_case_keys_but_not_lookalikes() -> None:
    assert redact({"apiKey": "x", "accessToken": "y", "token": "z", "monkey": "m", "cacheKey": "k", "tokens": 3}) == \
        {"apiKey": M, "accessToken": M, "token": M, "monkey": "m", "cacheKey": "k", "tokens": 3}


def test_stays_cheap_on_text_with_no_secret() -> None:
    """It runs on every receipt and in the hook guard: ordinary commands cost microseconds."""
    plain = ["ls -la src/", "cargo build --release 2>&1 | tail -n 40", "line of output text\n" * 50]
    start = time.perf_counter()
    for _ in range(2000):
        for text in plain:
            redact_text(text)
    per_call = (time.perf_counter() - start) / 6000
    assert per_call < 200e-6, f"{per_call * 1e6:.1f} us per call"
