"""Hide secrets before anything is shown or stored: env-like keys and well-known token shapes."""
from __future__ import annotations

import re
from typing import Any

MASK = "[REDACTED]"
_SECRET_NAME = r"[A-Za-z0-9_]*(?:_KEY|_TOKEN|SECRET|PASSWORD)[A-Za-z0-9_]*"
SECRET_KEY = re.compile(rf"^(?:{_SECRET_NAME})$", re.IGNORECASE)
# NAME=value / NAME: value / "NAME": "value" inside free text such as a shell command
_ASSIGNMENT = re.compile(rf"""\b({_SECRET_NAME})(["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s"',;&|]+)""",
                         re.IGNORECASE)
_TOKENS = re.compile(r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}|ghp_[A-Za-z0-9]{20,}|gho_[A-Za-z0-9]{20,}"
                     r"|github_pat_[A-Za-z0-9_]{20,})")


def is_secret_key(name: str) -> bool:
    """PASSWORD, *_KEY, *_TOKEN and anything containing SECRET (any case)."""
    upper = name.upper()
    return "SECRET" in upper or "PASSWORD" in upper or upper.endswith("_KEY") or upper.endswith("_TOKEN") \
        or upper in ("KEY", "TOKEN")


def redact_text(text: str) -> str:
    text = _TOKENS.sub(MASK, text)

    def keep_name(match: re.Match[str]) -> str:
        return match.group(1) + match.group(2) + (MASK if is_secret_key(match.group(1)) else match.group(3))

    return _ASSIGNMENT.sub(keep_name, text)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secret-named keys masked and token shapes removed from strings."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and is_secret_key(k) and v not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
