"""Secret redaction for everything ao stores, cheap enough for the hook guard's hot path.

The patterns compile on first need: most commands contain none of the trigger substrings, so the
guard usually pays nothing for compiling them.
"""
from __future__ import annotations

MASK = "[REDACTED]"
_TRIGGERS_UPPER = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "BEARER", "AKIA")
_TRIGGERS = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox")
_compiled: dict = {}


def _patterns() -> dict:
    if not _compiled:
        import re  # only when a string looks like it may hold a secret

        # Names of env-like keys whose values are secrets: *_KEY, *_TOKEN, *SECRET*, *PASSWORD*.
        _compiled["name"] = re.compile(r"(?i)(?:^|_)(?:KEY|TOKEN)$|SECRET|PASSWORD|PASSWD|^AUTHORIZATION$")
        # NAME=value or NAME: value inside free text (commands, outputs).
        _compiled["assignment"] = re.compile(
            r"(?i)\b([A-Z0-9_]*(?:_KEY|_TOKEN|SECRET[A-Z0-9_]*|PASSWORD[A-Z0-9_]*|PASSWD))"
            r"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s\"';&|,}]+)")  # NAME=v, NAME: v, "NAME": "v"
        _compiled["token"] = re.compile(
            r"\bsk-[A-Za-z0-9_\-]{16,}"            # OpenAI-style keys, sk-proj-...
            r"|\bgh[pousr]_[A-Za-z0-9]{20,}"        # GitHub classic tokens
            r"|\bgithub_pat_[A-Za-z0-9_]{20,}"      # GitHub fine-grained tokens
            r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"     # Slack
            r"|\bAKIA[0-9A-Z]{16}\b"                # AWS access key ids
            r"|(?i:\bbearer\s+)[A-Za-z0-9._\-]{16,}")
    return _compiled


def _suspicious(text: str) -> bool:
    upper = text.upper()
    return any(t in upper for t in _TRIGGERS_UPPER) or any(t in text for t in _TRIGGERS)


def _mask_assignment(match: "object") -> str:
    name, sep, value = match.group(1), match.group(2), match.group(3)  # type: ignore[attr-defined]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{name}{sep}{quote}{MASK}{quote}"  # a quoted value stays quoted, so JSON stays JSON


def redact_text(text: str) -> str:
    if not text or not _suspicious(text):
        return text
    p = _patterns()
    text = p["assignment"].sub(_mask_assignment, text)
    return p["token"].sub(MASK, text)


def is_secret_key(key: object) -> bool:
    """*_KEY, *_TOKEN, anything with SECRET or PASSWORD (any case)."""
    return isinstance(key, str) and _suspicious(key) and _patterns()["name"].search(key) is not None


def redact(value: object) -> object:
    """Return a copy of a JSON-like value with secret-named keys and secret-shaped strings masked."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
