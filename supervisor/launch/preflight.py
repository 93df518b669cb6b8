"""Can codex reach a model at all? Asked before a spawn and by `ao doctor`.

codex 0.169.0 never gives up on a dead endpoint (it retries "Reconnecting..." forever) and, with no
provider and no login, its TUI waits on a sign-in screen; so ao asks first and refuses at once.
"""
from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE_TIMEOUT_S = 3.0
# what `codex login` writes (0600): {"auth_mode": "apikey", "OPENAI_API_KEY": ...} or ChatGPT tokens
AUTH_FILE = "auth.json"


@dataclass(frozen=True)
class Readiness:
    """One answer: ok or not, what was seen, and what to do next."""

    name: str  # "provider" or "login"
    ok: bool
    detail: str
    hint: str = ""


def provider_reachable(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> Readiness:
    """GET {base_url}/models: any HTTP answer (401 and 404 too) means something listens there."""
    url = base_url.rstrip("/") + "/models"
    hint = (f"start the model server at {base_url} or fix `provider.base_url` in the config; "
            "`ao spawn --no-check` spawns anyway")
    if not url.startswith(("http://", "https://")):
        return Readiness("provider", False, f"{base_url} is not an http(s) URL", hint)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as reply:
            return Readiness("provider", True, f"{url} answered HTTP {reply.status}")
    except urllib.error.HTTPError as exc:
        return Readiness("provider", True, f"{url} answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Readiness("provider", False, f"{url} does not answer ({reason})", hint)


def logged_in(codex_home: Path) -> Readiness:
    """codex's own login: `$CODEX_HOME/auth.json`, written by `codex login` (API key or ChatGPT)."""
    auth = codex_home / AUTH_FILE
    if auth.is_file():
        return Readiness("login", True, f"{auth} exists")
    return Readiness("login", False, f"no provider is configured and codex is not logged in ({auth} is missing)",
                     "run `codex login` (or `codex login --with-api-key`), or set `provider` in the config; "
                     "`ao spawn --no-check` spawns anyway")


def model_access(provider: dict[str, Any] | None, codex_home: Path,
                 timeout: float = PROBE_TIMEOUT_S) -> Readiness:
    """The provider answers, or, with none configured, codex is logged in."""
    if provider and provider.get("base_url"):
        return provider_reachable(str(provider["base_url"]), timeout)
    return logged_in(codex_home)
