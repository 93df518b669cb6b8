"""Workspaces: a git worktree per session on its own branch, or an existing directory."""
from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.locking import file_lock


def _git(args: list[str], cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
    except FileNotFoundError:
        if cwd is not None and not Path(cwd).is_dir():
            raise FatalError(f"working directory {cwd} does not exist (removed by `ao rm`?)") from None
        raise FatalError("git is not installed; ao needs git for worktrees (apt-get install git)") from None


def repo_root(path: Path) -> Path:
    if not path.exists():
        raise FatalError(f"repository not found: {path}")
    if not path.is_dir():
        raise FatalError(f"repository path is not a directory: {path}")
    proc = _git(["rev-parse", "--show-toplevel"], cwd=path)
    if proc.returncode != 0:
        raise FatalError(f"{path} is not a git repository (git says: {proc.stderr.strip()})")
    return Path(proc.stdout.strip())


@contextmanager
def _repo_lock(root: Path) -> Iterator[None]:
    locks = paths.locks_dir()
    name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    with file_lock(locks / f"worktree-{name}.lock"):
        yield


def create_worktree(repo: Path, session: str, base: str | None = None) -> tuple[Path, str]:
    """`git worktree add -b ao/<session>` under $AO_HOME/worktrees; returns (dir, branch)."""
    root = repo_root(repo)
    target = paths.worktrees_dir() / session
    branch = f"ao/{session}"
    target.parent.mkdir(parents=True, exist_ok=True)
    args = ["worktree", "add", "-b", branch, str(target)]
    if base:
        args.append(base)
    with _repo_lock(root):  # git's worktree bookkeeping is not safe against parallel `worktree add`
        proc = _git(args, cwd=root)
    if proc.returncode != 0:
        raise FatalError(f"cannot create a worktree of {root}: {proc.stderr.strip()}")
    return target, branch


def current_branch(workspace: Path) -> str | None:
    proc = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=workspace)
    name = proc.stdout.strip()
    return name if proc.returncode == 0 and name and name != "HEAD" else None


def trust_roots(workspace: Path) -> list[str]:
    """codex applies folder trust to a worktree's main repository, so trust both."""
    roots = [str(workspace)]
    proc = _git(["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd=workspace)
    if proc.returncode == 0 and proc.stdout.strip():
        main = str(Path(proc.stdout.strip()).parent)
        if main not in roots:
            roots.append(main)
    return roots


def discard_worktree(repo: Path, target: Path, branch: str) -> None:
    """Take back a worktree a spawn was making, in whatever state git left it: the directory under
    $AO_HOME/worktrees, git's admin entry for it, and its `ao/` branch."""
    import shutil

    with _repo_lock(repo):
        _git(["worktree", "remove", "--force", str(target)], cwd=repo)
        if target.parent == paths.worktrees_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        _git(["worktree", "prune"], cwd=repo)
        if branch.startswith("ao/"):
            _git(["branch", "-D", branch], cwd=repo)


def remove_worktree(repo: Path, workspace: Path, delete_branch: bool = False) -> None:
    """Remove a worktree ao made; its branch is kept (it may hold the agent's commits) unless asked."""
    branch = current_branch(workspace)
    with _repo_lock(repo):
        _git(["worktree", "remove", "--force", str(workspace)], cwd=repo)
        if delete_branch and branch and branch.startswith("ao/"):
            _git(["branch", "-D", branch], cwd=repo)
