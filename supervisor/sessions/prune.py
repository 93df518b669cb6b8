"""`ao prune`: take back the worktrees and branches of sessions that are over, and their records if asked.

Only ended sessions are ever touched. A worktree goes through `control.remove`, which removes nothing
ao did not make under $AO_HOME/worktrees and git does not list; a branch is only ever `ao/<session>`,
never the branch a record names (wrapper events, which the agent can write, set that one).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from supervisor import paths, store
from supervisor.errors import FatalError
from supervisor.records import SessionRecord, Status

# Over, one way or another: nothing will run in their worktree again unless someone resumes them.
FINISHED = frozenset({Status.DONE, Status.FAILED, Status.KILLED, Status.BLOCKED, Status.MERGED, Status.LOST})
# ao's own session ids; anything else in the id column is not a name to build paths or refs from.
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class PruneAction:
    """What prune does (or, under --dry-run, would do) for one session."""

    session: str
    name: str | None
    status: str
    worktree: str | None = None  # the worktree to remove; None when there is none left
    branch: str | None = None  # `ao/<session>` to delete; None when absent or kept
    records: bool = False  # the store row and the session dir go too
    skipped: str | None = None  # why the worktree (and so everything else) is left alone
    notes: list[str] = field(default_factory=list)  # what is kept and why, e.g. an unmerged branch
    done: bool = False  # carried out; always False under --dry-run

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=120)


def dirty_reason(workspace: Path) -> str | None:
    """Why removing `workspace` would lose work (uncommitted changes, or git cannot tell), or None."""
    # the same test `control.remove` applies, asked ahead so --dry-run can say what it would skip
    status = _git(["status", "--porcelain"], workspace)
    if status.returncode != 0:
        return f"cannot tell whether {workspace} is clean (git status: {status.stderr.strip()})"
    if status.stdout.strip():
        return f"{workspace} has uncommitted changes"
    return None


def _branch_plan(record: SessionRecord, repo: Path, force: bool) -> tuple[str | None, str | None]:
    """(branch to delete, note on a branch kept): ao's own `ao/<session>` only, and only when no commit is lost."""
    branch = f"ao/{record['session']}"
    ref = f"refs/heads/{branch}"
    if _git(["rev-parse", "--verify", "--quiet", ref], repo).returncode != 0:
        return None, None
    if force or record["status"] == Status.MERGED:
        return branch, None
    if _git(["merge-base", "--is-ancestor", ref, "HEAD"], repo).returncode == 0:
        return branch, None  # everything on it is already in the repository's HEAD
    return None, f"branch {branch} kept: it has commits HEAD does not (--force deletes it)"


def candidates(records: list[SessionRecord], merged_only: bool, older_than: float | None) -> list[SessionRecord]:
    """Ended sessions that are finished, merged or already removed; `older_than` is an epoch cutoff."""
    out = []
    for record in records:
        if store.is_live(record) or not _SESSION_ID.match(record["session"]):
            continue
        removed = not Path(record["workspace"]).exists()
        if merged_only and record["status"] != Status.MERGED:
            continue
        if not merged_only and record["status"] not in FINISHED and not removed:
            continue
        ended = record.get("ended_at") or record.get("updated_at") or record["started_at"]
        if older_than is not None and float(ended) > older_than:
            continue
        out.append(record)
    return out


def plan_one(record: SessionRecord, records_too: bool, force: bool) -> PruneAction | None:
    """What pruning this ended session means; None when there is nothing to take back."""
    from supervisor.sessions import control

    base = PruneAction(record["session"], record.get("name"), record["status"])
    repo_text, workspace = record.get("repo"), Path(record["workspace"])
    own_worktree = bool(repo_text) and Path(repo_text or "") != workspace
    if not own_worktree:  # ran in a directory ao did not make: only its records are ao's to drop
        return replace(base, records=True) if records_too else None
    repo = Path(repo_text or "")
    worktree = None
    if workspace.exists():
        try:
            worktree = str(control._ao_worktree(record))
        except FatalError as exc:
            return replace(base, skipped=str(exc))
        reason = None if force else dirty_reason(workspace)
        if reason:
            return replace(base, worktree=worktree, skipped=f"{reason}; commit them or pass --force")
    if not repo.is_dir():
        notes = [f"repository {repo} is gone, so no branch to delete"]
        if worktree is None and not records_too:
            return None
        return replace(base, worktree=worktree, records=records_too, notes=notes)
    branch, note = _branch_plan(record, repo, force)
    if worktree is None and branch is None and not records_too:
        return None  # removed before, branch gone or kept: nothing to do
    return replace(base, worktree=worktree, branch=branch, records=records_too, notes=[note] if note else [])


def _delete_branch(repo: Path, branch: str) -> str | None:
    from supervisor.launch import workspace as ws

    with ws._repo_lock(repo):  # the same lock `git worktree add/remove` take
        deleted = _git(["branch", "-D", branch], repo)
    return None if deleted.returncode == 0 else f"branch {branch} kept: {deleted.stderr.strip()}"


def _forget(session: str) -> None:
    """Drop an ended session's store row and its private dir (ledger, events, policy)."""
    with store.connect() as con:  # ended only: a session resumed since the plan keeps its record
        gone = con.execute("DELETE FROM sessions WHERE session = ? AND ended_at IS NOT NULL", (session,)).rowcount
    if gone:
        shutil.rmtree(paths.session_dir(session), ignore_errors=True)


def apply(action: PruneAction, force: bool) -> PruneAction:
    """Carry out one planned action; a step that fails leaves the later ones undone and says why."""
    from supervisor.sessions import control

    if action.skipped:
        return action
    record = store.find(action.session)
    if record is None or store.is_live(record):
        return replace(action, skipped="it started again since the plan was made")
    notes = list(action.notes)
    if action.worktree:
        try:
            control.remove(action.session, force)  # re-checks liveness, ownership and cleanliness itself
        except FatalError as exc:
            return replace(action, skipped=str(exc))
    if action.branch and record.get("repo"):
        failed = _delete_branch(Path(record["repo"] or ""), action.branch)
        if failed:
            notes.append(failed)
            action = replace(action, branch=None)
    if action.records:
        _forget(action.session)
    return replace(action, notes=notes, done=True)


def prune(merged_only: bool = False, older_than: float | None = None, records_too: bool = False,
          dry_run: bool = False, force: bool = False) -> list[PruneAction]:
    """Plan for every ended session that qualifies, and carry it out unless `dry_run`."""
    from supervisor.sessions import reconcile

    # a session whose supervisor died is still `working` in the store until reconciled: it is over
    records = reconcile.reconcile_all(store.all_sessions())
    planned = [a for a in (plan_one(r, records_too, force)
                           for r in candidates(records, merged_only, older_than)) if a is not None]
    if dry_run:
        return planned
    return [apply(a, force) for a in planned]
