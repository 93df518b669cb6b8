"""Pre-trust workspaces in codex's config.toml so the TUI's "Trust this folder?" screen never blocks a spawn.

codex ignores `-c projects."<dir>".trust_level=...` for git repositories (measured on 0.169.0) and
applies trust to a worktree's main repository, so ao writes the entries codex itself would write.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.locking import file_lock


def pre_trust(codex_home: Path, dirs: list[str]) -> list[str]:
    """Append `[projects."<dir>"] trust_level = "trusted"` for each dir not yet listed; returns those added."""
    config = codex_home / "config.toml"
    try:
        codex_home.mkdir(parents=True, exist_ok=True)
        locks = paths.locks_dir()  # not in CODEX_HOME, where a jailed agent could hold it
        digest = hashlib.sha256(str(codex_home.resolve()).encode()).hexdigest()[:16]
        with file_lock(locks / f"codex-trust-{digest}.lock"):
            text = config.read_text() if config.exists() else ""
            added = [d for d in dirs if f"[projects.{json.dumps(d)}]" not in text]
            if added:
                block = "".join(f'\n[projects.{json.dumps(d)}]\ntrust_level = "trusted"\n' for d in added)
                paths.atomic_write(config, text + ("\n" if text and not text.endswith("\n") else "") + block)
    except OSError as exc:
        raise FatalError(f"cannot pre-trust the workspace in {config}: {exc.strerror}") from None
    return added
