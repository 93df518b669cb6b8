"""The outer jail: a bubblewrap mount list around every codex launch, as plain data.

The agent (codex and all it runs) has the user's uid, may run with codex's own sandbox off, and
knows every path, so ao confines it itself. Read the list top to bottom; a later mount wins over an
earlier one at the same or a deeper path:

| what                                            | inside the jail                                  |
|-------------------------------------------------|--------------------------------------------------|
| `/` (the whole tree)                            | read-only                                        |
| `/dev`, `/proc`                                 | fresh: minimal devices; own pid namespace, so ao's |
|                                                 | processes can't be seen, signalled or traced     |
| `/tmp`, `/var/tmp`, `/dev/shm`                  | private, writable, empty: hides tmux sockets     |
|                                                 | (`/tmp/tmux-<uid>`), other agents' temp files,   |
|                                                 | X11 and ssh-agent sockets                        |
| `/run/user`, `$TMUX_TMPDIR/tmux-<uid>`          | invisible (the user's dbus/systemd socket would  |
|                                                 | run commands outside the jail)                   |
| ao's package dir, `sys.prefix`, the codex       | read-only (re-bound because they may sit under   |
| package dir, `readonly` (forbidden_paths)       | `/tmp`)                                          |
| `$CODEX_HOME`                                   | read-only: config.toml, hooks.json, AGENTS.md,   |
|                                                 | rules/, skills/ can't be planted for later runs  |
| `$AO_HOME`                                      | invisible (a read-only tmpfs), then re-bound     |
|                                                 | read-only: `bin/`, `cache/`, `worktrees/`        |
|   so: `keys/`, `approvals/`, `locks/`, `ao.db*`,| invisible; an allow-list, so files ao adds later |
|   `index.db`, other sessions, the config        | (and the -wal/-shm files) are hidden too         |
| `bin/.ao-wrappers.lock`, `$CODEX_HOME/.ao-trust.lock` | `/dev/null` over them: flock needs only a   |
|                                                 | read-only open, so read-only is not enough       |
| `guard_dir` (the guard's socket)                | read-only (a socket on it still connects)        |
| the workspace, `extra_writable`                 | writable                                         |
| `events_file`                                   | writable: the one file ao owns that the agent   |
|                                                 | writes (the wrappers' events)                    |
| `CODEX_WRITABLE` under `$CODEX_HOME`, and the   | writable: what codex 0.169.0 was measured to     |
| session's codex sqlite dir                      | write (see below)                                |
| network                                         | kept: codex must reach the model                 |

Measured on codex 0.169.0 (`codex exec --json` and the TUI, fresh CODEX_HOME): codex writes
`sessions/`, `.tmp/`, `tmp/` (its sandbox helper `tmp/arg0-linux`, made only when CODEX_HOME is
not under /tmp; with Debian's bwrap on PATH codex's own sandbox needs it), `shell_snapshots/`,
`thread-writer-locks/`, `installation_id`,
`tui-thread-reference-capabilities/` and `history.jsonl` (TUI), `.sandbox_migration`, `skills/.system/`,
`config.toml` (TUI: `[tui]` notices) and six sqlite files with -wal/-shm (`state_5`, `logs_2`,
`goals_1`, `memories_1`, `queue_1`, `thread_history_1`) at the top of CODEX_HOME. The sqlite files
need a writable directory, so the jail points codex at a per-session one (`CODEX_SQLITE_HOME`);
it refuses to start without a writable state db. `.sandbox_migration`, `skills/.system/` and the
TUI's config.toml notices fail and codex carries on (measured).

Limits: a read-only bind inside a writable tree (a forbidden path inside the workspace, say) only
stops writes through that path: the agent can rename a parent directory and put a new file in its
place. Git metadata in a writable workspace (`.git/config`, `.git/hooks`, a worktree's `.git` file)
is the agent's to write, so ao must run git there with hooks and fsmonitor off.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.errors import FatalError

# What codex 0.169.0 must be able to write in CODEX_HOME (dirs first, then files); measured, see above.
CODEX_WRITABLE_DIRS = ("sessions", ".tmp", "tmp", "shell_snapshots", "thread-writer-locks",
                       "tui-thread-reference-capabilities")
CODEX_WRITABLE_FILES = ("installation_id", "history.jsonl")
AO_VISIBLE = ("bin", "cache")  # read-only under the hidden $AO_HOME; worktrees/ is added on its own
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
# Lock files ao takes in dirs the agent can read. flock needs only a read-only open, so a read-only
# mount does not stop an agent from holding one; /dev/null is bound over them instead.
LOCKS_IN_VISIBLE_DIRS = (("ao_home", "bin/.ao-wrappers.lock"), ("codex_home", ".ao-trust.lock"))
HIDDEN_SYSTEM = ("/run/user",)


@dataclass(frozen=True)
class Mount:
    """One bubblewrap operation: `op` is ro-bind, bind, dev-bind, tmpfs, proc, dev or remount-ro."""
    op: str
    source: str | None
    dest: str


@dataclass(frozen=True)
class JailSpec:
    ao_home: Path
    session_dir: Path
    workspace: Path
    codex_home: Path
    codex_binary: Path
    extra_writable: tuple[Path, ...] = ()
    readonly: tuple[Path, ...] = ()
    guard_dir: Path | None = None
    events_file: Path | None = None
    package_dirs: tuple[Path, ...] = ()
    codex_sqlite_dir: Path | None = None   # default: <session_dir>/codex-sqlite
    extra_hidden: tuple[Path, ...] = field(default=())  # more dirs to hide (e.g. a custom tmux dir)

    @property
    def sqlite_dir(self) -> Path:
        return self.codex_sqlite_dir or self.session_dir / "codex-sqlite"


def _real(path: Path | str) -> str:
    return os.path.realpath(path)


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def default_package_dirs() -> tuple[Path, ...]:
    """ao's own package root and the interpreter's prefixes (the hook client runs inside)."""
    root = Path(__file__).resolve().parents[2]
    return tuple(dict.fromkeys([root, Path(sys.prefix), Path(sys.base_prefix)]))


def codex_package_dir(codex_binary: Path) -> Path:
    """The npm vendor dir (bin/, codex-path/, codex-resources/) or, for any other install, the binary's dir."""
    binary = Path(_real(codex_binary))
    if binary.parent.name == "bin" and (binary.parent.parent / "codex-resources").is_dir():
        return binary.parent.parent
    return binary.parent


def tmux_dirs() -> list[Path]:
    """Where tmux keeps its sockets for this uid (ao's server and the user's)."""
    base = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return [Path(base) / f"tmux-{os.getuid()}"]


def worktree_git_paths(workspace: Path) -> tuple[list[Path], list[Path]]:
    """(read-only, writable) git paths a worktree's commits need, read from its `.git` file.

    A commit in a worktree writes objects, refs and logs in the main repository's git dir, and its
    own `worktrees/<name>/`. The rest (config, hooks, other worktrees' HEADs) stays read-only, so an
    agent cannot plant a hook or `core.fsmonitor` that the user's next git command would run.
    """
    dotgit = workspace / ".git"
    if not dotgit.is_file():
        return [], []
    text = dotgit.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return [], []
    own = Path(text.split(":", 1)[1].strip())
    own = own if own.is_absolute() else (workspace / own)
    try:
        common_rel = (own / "commondir").read_text().strip()
    except OSError:
        return [own], []
    common = Path(_real(own / common_rel))
    writable = [common / name for name in ("objects", "refs", "logs")] + [own]
    return [common], [p for p in writable if p.exists()]


def prepare(spec: JailSpec) -> None:
    """Create what the mount list binds but may not exist yet (what codex would create itself)."""
    spec.sqlite_dir.mkdir(parents=True, exist_ok=True)
    if spec.events_file is not None:
        spec.events_file.parent.mkdir(parents=True, exist_ok=True)
        spec.events_file.touch(exist_ok=True)
    for name in CODEX_WRITABLE_DIRS:
        (spec.codex_home / name).mkdir(parents=True, exist_ok=True)
    installation = spec.codex_home / "installation_id"
    if not installation.exists():
        installation.write_text(str(uuid.uuid4()))  # what codex writes on its first run
    (spec.codex_home / "history.jsonl").touch(exist_ok=True)


def _check(spec: JailSpec) -> None:
    ao_home, worktrees = _real(spec.ao_home), _real(spec.ao_home / "worktrees")
    for path in (spec.workspace, *spec.extra_writable):
        real = _real(path)
        if real == "/" or _inside(ao_home, real) or _inside(_real(spec.codex_home), real):
            raise FatalError(f"cannot jail an agent whose writable dir {path} contains $AO_HOME or $CODEX_HOME; "
                             "use a workspace that holds neither")
        if _inside(real, ao_home) and not _inside(real, worktrees):
            raise FatalError(f"writable dir {path} is inside $AO_HOME ({spec.ao_home}) but not under its "
                             "worktrees/; ao's own files cannot be given to an agent")


def mounts(spec: JailSpec) -> list[Mount]:
    """The whole tree, then read-only binds, then tmpfs over what must be invisible, then the writable binds."""
    _check(spec)
    ao_home = _real(spec.ao_home)
    tree = [Mount("ro-bind", "/", "/"), Mount("dev", None, "/dev"), Mount("proc", None, "/proc")]
    readonly = [codex_package_dir(spec.codex_binary), *(spec.package_dirs or default_package_dirs()),
                spec.codex_home, *spec.readonly, spec.ao_home / "worktrees", *(spec.ao_home / n for n in AO_VISIBLE)]
    if spec.guard_dir is not None:
        readonly.append(spec.guard_dir)
    ro = [Mount("ro-bind", _real(p), _real(p)) for p in readonly if os.path.exists(p)]
    hidden = [*PRIVATE_TMP, *HIDDEN_SYSTEM, *map(str, tmux_dirs()), *map(str, spec.extra_hidden)]
    tmpfs = [Mount("tmpfs", None, _real(p)) for p in [*hidden, ao_home] if os.path.isdir(p)]
    nulled = [getattr(spec, base) / rel for base, rel in LOCKS_IN_VISIBLE_DIRS]
    ro += [Mount("ro-bind", "/dev/null", _real(p)) for p in nulled if os.path.isfile(p)]
    writable = [spec.workspace, *spec.extra_writable, spec.sqlite_dir,
                *(spec.codex_home / n for n in CODEX_WRITABLE_DIRS + CODEX_WRITABLE_FILES)]
    if spec.events_file is not None:
        writable.append(spec.events_file)
    rw = [Mount("bind", _real(p), _real(p)) for p in writable if os.path.exists(p)]
    # Depth order (stable) so a parent never hides a child bound before it; the hidden $AO_HOME is
    # made read-only last, once bwrap has made the mount points of its re-bound children in it.
    ordered = sorted(dict.fromkeys(tree + ro + tmpfs + rw), key=lambda m: 0 if m.dest == "/" else m.dest.count("/"))
    return ordered + ([Mount("remount-ro", None, ao_home)] if os.path.isdir(ao_home) else [])


def argv(spec: JailSpec, bwrap: Path, command: list[str]) -> list[str]:
    """The bwrap command line that runs `command` inside the jail."""
    out = [str(bwrap), "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"]
    for m in mounts(spec):
        if m.op in ("tmpfs", "proc", "dev", "remount-ro"):
            out += [f"--{m.op}", m.dest]
        else:
            out += [f"--{m.op}", str(m.source), m.dest]
    out += ["--setenv", "CODEX_SQLITE_HOME", _real(spec.sqlite_dir), "--chdir", _real(spec.workspace)]
    return out + ["--", *command]


def find_bwrap(codex_binary: Path | None) -> Path | None:
    """Debian's `bwrap` on PATH first, else the one the codex npm package ships next to its binary,
    else one in a codex that ao provisioned (a user's own codex build may come without one)."""
    found = shutil.which("bwrap")
    if found:
        return Path(found)
    candidates = [Path(_real(codex_binary)).parent.parent / "codex-resources" / "bwrap"] if codex_binary else []
    from supervisor import paths

    shipped = "*/node_modules/@openai/codex-linux-*/vendor/*/codex-resources/bwrap"
    candidates += sorted(paths.codex_cache_dir().glob(shipped))
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def probe(bwrap: Path) -> str | None:
    """Run a trivial command in a jail like the real one, with a nested bwrap inside; None if it works.

    The nested one is shaped like codex's own sandbox (user and pid namespaces, no fresh /proc: the
    outer jail's /proc carries locked overmounts, so a nested `--proc` is refused by the kernel).
    """
    true = shutil.which("true") or "/bin/true"
    inner = [str(bwrap), "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "--dev", "/dev", "--", true]
    outer = [str(bwrap), "--unshare-pid", "--die-with-parent", "--new-session", "--ro-bind", "/", "/",
             "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
             "--ro-bind", _real(bwrap), _real(bwrap), "--", *inner]
    try:
        proc = subprocess.run(outer, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except OSError as exc:
        return f"cannot run {bwrap}: {exc.strerror}"
    except subprocess.TimeoutExpired:
        return f"{bwrap} did not finish a trivial jailed command in 20 s"
    if proc.returncode == 0:
        return None
    message = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    if any(word in message for word in ("namespace", "uid map", "setting up uid", "Operation not permitted")):
        return f"user namespaces are disabled: {message}"
    return f"bwrap failed: {message}"


PROBE_FRESH_S = 600.0


def probe_recent(bwrap: Path, cache_dir: Path) -> str | None:
    """probe(), skipped when the same bwrap passed it on this boot less than PROBE_FRESH_S ago.

    Every spawn probed, and fifty agents starting at once on a 2-core Ray node made the trivial jailed
    command outlast its 20 s, failing an agent whose jail would have run. Only a pass is remembered, as a
    marker in `cache_dir` ($AO_HOME or the node's private folder, read-only or hidden inside the jail).
    A marker that lies buys nothing: the launch still runs codex inside bwrap, and a jail that cannot
    start fails the session there instead of here, with bwrap's own message.
    """
    from supervisor.digest import sha256

    try:
        st = os.stat(bwrap)
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        return probe(bwrap)
    key = sha256(f"{_real(bwrap)}\0{st.st_ino}\0{st.st_mtime_ns}\0{boot}".encode()).hexdigest()[:24]
    marker = cache_dir / f"bwrap-ok-{key}"
    try:
        if 0 <= time.time() - marker.stat().st_mtime < PROBE_FRESH_S:
            return None
    except OSError:
        pass
    reason = probe(bwrap)
    if reason is None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            marker.touch()
        except OSError:
            pass  # not remembered: the next spawn probes again
    return reason


def doctor_check(codex_binary: Path | None) -> dict[str, object]:
    """The `ao doctor` line for the jail: found, and able to run a nested jail here."""
    bwrap = find_bwrap(codex_binary)
    if bwrap is None:
        return {"name": "bubblewrap", "ok": False, "detail": "no bwrap on PATH and none next to codex",
                "hint": "apt-get install bubblewrap (or let ao provision codex, which ships one)"}
    reason = probe(bwrap)
    if reason is None:
        return {"name": "bubblewrap", "ok": True, "detail": f"{bwrap}: a nested jail runs", "hint": ""}
    hint = ("enable unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1 "
            "(Debian) or kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04), and "
            "user.max_user_namespaces > 0" if reason.startswith("user namespaces") else
            "run `bwrap --ro-bind / / true` by hand to see why it fails")
    return {"name": "bubblewrap", "ok": False, "detail": f"{bwrap}: {reason}", "hint": hint}
