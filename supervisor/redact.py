"""Secret redaction for everything ao stores, cheap enough for the hook guard's hot path.

The patterns compile on first need: most commands contain none of the trigger substrings, so the
guard usually pays nothing for compiling them.

What is masked, and the heuristics that keep ordinary text intact:
- NAME=value, NAME: value, "NAME": "value", --NAME=value where NAME ends in TOKEN, KEY after a
  separator or api/access/private (`x-api-key`, `apiKey`; not `monkey`), or holds SECRET/PASSWORD;
- `--password X`, `--token X`, `--api-key X`, `--client-secret X` (a value starting with `-`, `<`,
  `>` or `|` is the next flag or a redirection, so it stays);
- `-pSECRET` only inside a mysql*/mariadb* command segment (mysql's password flag takes its value
  attached); everywhere else `-p` is a flag (`git log -p`, `mkdir -p`, `ssh -p 22`). `sshpass -p X`
  and `curl -u user:X` / `--user user:X` likewise only in their own segment;
- `scheme://user:password@host` (the password only), `Basic <base64>` and `Bearer <token>`;
- PEM private-key blocks (certificates and public keys stay);
- token shapes: sk-…, gh?_…, github_pat_…, xox?-…, AKIA/ASIA key ids, and, in text that mentions
  AWS or a key id, 40-character AWS secret keys (mixed case, so a lowercase git SHA never matches).
"""
from __future__ import annotations

MASK = "[REDACTED]"
_NAMED = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD")  # upper-cased text
_CLIENTS = ("MYSQL", "MARIADB", "SSHPASS", "CURL")
_SHAPES = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox")
_compiled: dict = {}


def _patterns() -> dict:
    if not _compiled:
        import re  # only when a string looks like it may hold a secret

        # Names of env-like keys whose values are secrets: *_KEY, *_TOKEN, apiKey, accessToken, *SECRET*, ...
        _compiled["name"] = re.compile(
            r"(?i:(?:^|[_-])(?:KEY|TOKEN)$|SECRET|PASSWORD|PASSWD|^AUTHORIZATION$|(?:API|ACCESS|PRIVATE)[_-]?KEY$"
            r")|[a-z0-9]Token$")
        # NAME=value or NAME: value inside free text (commands, outputs, headers, JSON).
        _compiled["assignment"] = re.compile(
            r"(?i)(?<![A-Z0-9_-])([A-Z0-9_-]*?(?:TOKEN|SECRET[A-Z0-9_-]*|PASSWORD[A-Z0-9_-]*|PASSWD"
            r"|(?:[_-]|API|ACCESS|PRIVATE)KEY))"
            r"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s\"';&|,}]+)")
        # --password VALUE (the `=` form is an assignment above)
        _compiled["flag"] = re.compile(
            r"(?i)(?<![\w-])(--?(?:[\w-]*-)?(?:password|passwd|token|secret|api-?key|access-key))"
            r"(\s+)(?![-<>|])(\"[^\"]*\"|'[^']*'|[^\s;&|]+)")
        _compiled["userinfo"] = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*):([^\s/@'\"]+)@")
        _compiled["pem"] = re.compile(
            r"(-----BEGIN ([A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*)-----)(.*?)(-----END \2-----|\Z)", re.S)
        # A command segment (up to ; & | or a newline) run by a client that takes a password in argv.
        _compiled["segment"] = re.compile(
            r"(?<![\w./-])(mysql[\w-]*|mariadb[\w-]*|sshpass|curl)(?![\w-])[^\n;&|]*")
        _compiled["mysql"] = re.compile(r"(?<=\s)-p(?=\S)(\"[^\"]*\"|'[^']*'|\S+)")
        _compiled["sshpass"] = re.compile(r"(?<=\s)-p(\s*)(?=[^\s-])(\"[^\"]*\"|'[^']*'|\S+)")
        _compiled["curl"] = re.compile(r"(?<=\s)(-u\s*|--user[=\s]\s*)([^\s:'\"]+):(\"[^\"]*\"|'[^']*'|[^\s'\"]+)")
        _compiled["basic"] = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])")
        _compiled["aws_secret"] = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
        _compiled["token"] = re.compile(
            r"\bsk-[A-Za-z0-9_\-]{16,}"            # OpenAI-style keys, sk-proj-...
            r"|\bgh[pousr]_[A-Za-z0-9]{20,}"        # GitHub classic tokens
            r"|\bgithub_pat_[A-Za-z0-9_]{20,}"      # GitHub fine-grained tokens
            r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"     # Slack
            r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"       # AWS access key ids
            r"|(?i:\bbearer\s+)[A-Za-z0-9._\-]{16,}")
    return _compiled


def _quoted(value: str) -> str:
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{quote}{MASK}{quote}"  # a quoted value stays quoted, so JSON stays JSON


def _mask_assignment(match: object) -> str:
    name, sep, value = match.group(1), match.group(2), match.group(3)  # type: ignore[attr-defined]
    return f"{name}{sep}{_quoted(value)}"


def _mask_segment(match: object) -> str:
    p = _compiled
    segment, client = match.group(0), match.group(1)  # type: ignore[attr-defined]
    if client == "sshpass":
        return p["sshpass"].sub(lambda m: f"-p{m.group(1)}{_quoted(m.group(2))}", segment)
    if client == "curl":
        return p["curl"].sub(lambda m: f"{m.group(1)}{m.group(2)}:{_quoted(m.group(3))}", segment)
    return p["mysql"].sub(lambda m: f"-p{_quoted(m.group(1))}", segment)


def _mask_basic(match: object) -> str:
    value = match.group(2)  # type: ignore[attr-defined]
    # base64 of "user:password" is mixed case or has digits; "Basic Authentication" is a word
    if value.endswith("=") or any(c.isdigit() for c in value) or any(c.isupper() for c in value[1:]):
        return match.group(1) + MASK  # type: ignore[attr-defined]
    return match.group(0)  # type: ignore[attr-defined]


def _mask_aws_secret(match: object) -> str:
    value = match.group(0)  # type: ignore[attr-defined]
    if any(c.isupper() for c in value) and any(c.islower() for c in value):
        return MASK
    return value


def redact_text(text: str) -> str:
    if not text:
        return text
    upper = text.upper()
    # each pattern runs only when its own trigger is present: most text pays for a few scans
    named = any(t in upper for t in _NAMED)
    clients = any(t in upper for t in _CLIENTS)
    pem = "-----BEGIN" in text
    url = "://" in text and "@" in text
    basic = "BASIC" in upper
    aws = "AWS" in upper or "AKIA" in upper or "ASIA" in upper
    shaped = aws or "BEARER" in upper or any(t in text for t in _SHAPES)
    if not (named or clients or pem or url or basic or shaped):
        return text
    p = _patterns()
    if pem:
        text = p["pem"].sub(lambda m: f"{m.group(1)}\n{MASK}\n{m.group(4)}", text)
    if clients:
        text = p["segment"].sub(_mask_segment, text)
    if named:
        text = p["assignment"].sub(_mask_assignment, text)
        text = p["flag"].sub(lambda m: f"{m.group(1)}{m.group(2)}{_quoted(m.group(3))}", text)
    if url:
        text = p["userinfo"].sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    if basic:
        text = p["basic"].sub(_mask_basic, text)
    if aws:
        text = p["aws_secret"].sub(_mask_aws_secret, text)
    return p["token"].sub(MASK, text) if shaped else text


def is_secret_key(key: object) -> bool:
    """*_KEY, *_TOKEN, apiKey, accessToken, anything with SECRET or PASSWORD (any case)."""
    if not isinstance(key, str):
        return False
    upper = key.upper()
    return any(t in upper for t in _NAMED) and _patterns()["name"].search(key) is not None


def redact(value: object) -> object:
    """Return a copy of a JSON-like value with secret-named keys and secret-shaped strings masked."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
