"""The typed records that cross rooms: a session's stored record and its status."""
from __future__ import annotations

from enum import Enum
from typing import Any, TypedDict


class Status(str, Enum):
    """A session's lifecycle status. The value is what the store and `--json` carry."""

    QUEUED = "queued"
    SPAWNING = "spawning"
    WORKING = "working"
    STALLED = "stalled"  # codex is alive but not getting on (model unreachable, login screen, silence)
    DONE = "done"
    FAILED = "failed"
    KILLED = "killed"
    BLOCKED = "blocked"
    LOST = "lost"  # the Ray node (or its agent) died mid-run; `ao resume` continues the thread elsewhere
    PR_OPEN = "pr_open"
    MERGED = "merged"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


# A run that ended with one of these did not do what was asked.
FAILED_STATUSES = frozenset({Status.FAILED, Status.KILLED, Status.BLOCKED, Status.LOST})
# Set by the wrappers' PR events; a run that ends well keeps them instead of `done`.
PR_STATUSES = frozenset({Status.PR_OPEN, Status.MERGED, Status.CLOSED})
# Wrapper events never overwrite these: the runner (or `ao kill`) decided them.
RUNNER_OWNED = frozenset({Status.FAILED, Status.KILLED, Status.QUEUED, Status.SPAWNING, Status.LOST})


class Attention(str, Enum):
    """Why a session needs a human now; `ao status` shows these first."""

    APPROVAL = "approval"  # a tool call waits for `ao approve`
    INPUT = "input"  # an interactive turn ended: the agent waits for the user
    STALLED = "stalled"
    FAILED = "failed"
    BUDGET = "budget"  # the budget stopped the agent
    LOST = "lost"  # its Ray node died: `ao resume` continues the thread on another node

    def __str__(self) -> str:
        return self.value


class LaunchRecord(TypedDict, total=False):
    """How a session's codex was started; stored as JSON in the `launch` column."""

    argv: list[str]
    env: dict[str, str]
    unset: list[str]
    codex: str
    overrides: list[str]
    policy_file: str | None
    approval: str
    sandbox: str
    max_concurrent: int
    budget_usd: float | None  # the compiled policy's ceiling at launch (`ao budget` overrides it live)
    provider: dict[str, Any] | None  # the provider the thread began on
    slots: str  # active: an interactive agent waiting for its user frees its slot | alive
    prompt_file: str | None
    prompt: str | None  # only for runtimes that cannot take it on stdin (the TUI)
    spec: dict[str, Any]  # LaunchSpec fields without the guard's hooks
    resume_thread: str | None
    approval_timeout_s: float
    stall_after_s: float  # codex alive mid-turn with no progress this long is `stalled`
    jail: dict[str, Any] | None
    unjailed: bool
    plan_first: bool  # `ao spawn --plan-first`: kept so a resume enforces the plan too
    plan: str  # the compiled policy's plan mode (enforce|off); enforce serves ao's plan MCP server to codex
    ray: dict[str, Any]  # the Ray runtime's placement: address, node_root, resources
    node: str  # the Ray node id the agent runs on, while the store has no column for it
    warnings: list[str]  # said once by `ao spawn`, kept for `ao status SESSION --json` readers


class SessionRecord(TypedDict):
    """One row of the session store, as `store.get` returns it."""

    session: str
    name: str | None
    project: str | None
    issue: str | None
    repo: str | None
    workspace: str
    runtime: str
    status: str
    activity: str | None
    branch: str | None
    pr_url: str | None
    pr_number: int | None
    thread_id: str | None
    model: str | None
    input: int
    cached_input: int
    output: int
    reasoning: int
    pid: int | None
    codex_pid: int | None
    exit_code: int | None
    error: str | None
    rollout_path: str | None
    prompt: str | None
    launch: LaunchRecord
    started_at: float
    updated_at: float
    ended_at: float | None
    kept_status: str | None  # the outcome `ao kill` keeps for a session whose work had finished
    node: str | None  # the Ray node a remote runtime placed the agent on; None for local runtimes
