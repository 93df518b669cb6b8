"""ao's section in the workspace's AGENTS.md: between versioned markers, replaced in place, never doubled."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from supervisor import paths
from supervisor.resources import read_text

SECTION_VERSION = 1
BEGIN = f"<!-- ao:begin v{SECTION_VERSION} -->"
END = "<!-- ao:end -->"
_ANY_SECTION = re.compile(r"<!-- ao:begin v\d+ -->.*?<!-- ao:end -->\n?", re.DOTALL)


def render(session: str, rules: str | None) -> str:
    body = read_text("templates", "agents-section.md").format(
        session=session, rules=f"\nProject rules:\n\n{rules.strip()}\n" if rules and rules.strip() else "")
    return f"{BEGIN}\n{body.rstrip()}\n{END}\n"


def install(workspace: Path, session: str, rules: str | None) -> bool:
    """Write or refresh the section; returns True when ao created the file."""
    path = workspace / "AGENTS.md"
    section = render(session, rules)
    created = not path.exists()
    text = "" if created else path.read_text()
    first = _ANY_SECTION.search(text)
    if first:  # replace the first section where it stands and drop any stray copies after it
        new = text[:first.start()] + section + _ANY_SECTION.sub("", text[first.end():])
    else:
        new = text + ("\n" if text and not text.endswith("\n") else "") + ("\n" if text else "") + section
    if new != text:
        paths.atomic_write(path, new, mode=0o644)  # a file of the repository, not of ao
    if created:
        _exclude(workspace, "AGENTS.md")
    return created


def _exclude(workspace: Path, name: str) -> None:
    """Keep a file ao created out of the agent's commits, via the repo's info/exclude."""
    proc = subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=workspace,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return
    exclude = Path(proc.stdout.strip())
    if not exclude.is_absolute():
        exclude = workspace / exclude
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if f"/{name}" not in lines:
        with open(exclude, "a") as fh:
            fh.write(f"/{name}\n")
