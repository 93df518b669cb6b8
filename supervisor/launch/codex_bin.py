"""Find the codex binary (config, PATH, usual places, ao's cache) or provision it with npm."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from supervisor import paths
from supervisor.errors import FatalError

DEFAULT_VERSION = "0.169.0"
COMMON_DIRS = ["/usr/local/bin", "/opt/homebrew/bin", "~/.cargo/bin", "~/.npm/bin"]
_TRIPLES = {
    ("Linux", "x86_64"): ("linux-x64", "x86_64-unknown-linux-musl"),
    ("Linux", "aarch64"): ("linux-arm64", "aarch64-unknown-linux-musl"),
    ("Darwin", "x86_64"): ("darwin-x64", "x86_64-apple-darwin"),
    ("Darwin", "arm64"): ("darwin-arm64", "aarch64-apple-darwin"),
}


@dataclass
class Candidate:
    source: str
    path: str
    taken: bool = False
    reason: str = ""
    version: str | None = None


def probe_version(path: str) -> tuple[str | None, str]:
    """Run `codex --version`; return (version, reason-if-unusable)."""
    if not os.path.isfile(path):
        return None, "not found"
    if not os.access(path, os.X_OK):
        return None, "not executable"
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`--version` failed: {exc}"
    if proc.returncode != 0:
        return None, f"`--version` exited {proc.returncode}"
    words = proc.stdout.strip().split()
    if len(words) < 2 or not words[0].startswith("codex"):
        return None, f"`--version` printed {proc.stdout.strip()[:60]!r}, not a codex version"
    return words[-1], ""


def _npm_prefix_bin() -> str | None:
    npm = shutil.which("npm")
    if not npm:
        return None
    try:
        out = subprocess.run([npm, "prefix", "-g"], capture_output=True, text=True, timeout=20,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return os.path.join(out.stdout.strip(), "bin") if out.returncode == 0 and out.stdout.strip() else None


def native_binary(install_dir: Path) -> Path:
    """The native codex binary inside an npm install of @openai/codex."""
    key = (platform.system(), platform.machine())
    if key not in _TRIPLES:
        raise FatalError(f"no codex build is known for {key[0]} {key[1]}")
    pkg, triple = _TRIPLES[key]
    return install_dir / "node_modules" / "@openai" / f"codex-{pkg}" / "vendor" / triple / "bin" / "codex"


def candidates(configured: str, version: str, with_npm: bool = True) -> list[Candidate]:
    """Every place codex may be, in resolution order."""
    out: list[Candidate] = []
    if configured and configured != "auto":
        out.append(Candidate("config", str(Path(configured).expanduser())))
    wrapper_dir = os.path.realpath(paths.bin_dir())
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry:
            continue
        path = os.path.join(entry, "codex")
        if os.path.realpath(entry) == wrapper_dir:
            out.append(Candidate("PATH", path, reason="skipped: ao's own wrapper dir"))
        elif os.path.isfile(path):
            out.append(Candidate("PATH", path))
    dirs = [os.path.expanduser(d) for d in COMMON_DIRS]
    if with_npm:
        prefix = _npm_prefix_bin()
        if prefix:
            dirs.append(prefix)
    for d in dirs:
        out.append(Candidate("common", os.path.join(d, "codex")))
    out.append(Candidate("cache", str(native_binary(paths.codex_cache_dir() / version))))
    return out


def _resolved_file(version: str) -> Path:
    return paths.codex_cache_dir() / f"resolved-{version}"


def resolve(configured: str = "auto", version: str = DEFAULT_VERSION, provision: bool = True,
            report: list[Candidate] | None = None) -> Path:
    """Return a working codex path. Caches the answer; provisions the pinned version if needed."""
    cached = _resolved_file(version)
    if report is None and cached.is_file():
        path = cached.read_text().strip()
        marker = f"{configured}\n"
        if path.startswith(marker):
            path = path[len(marker):]
            if os.access(path, os.X_OK):
                return Path(path)
    seen: set[str] = set()
    for cand in candidates(configured, version):
        if report is not None:
            report.append(cand)
        if cand.reason:
            continue
        real = os.path.realpath(cand.path)
        if real in seen:
            cand.reason = "skipped: same file as an earlier candidate"
            continue
        seen.add(real)
        found, why = probe_version(cand.path)
        if found is None:
            cand.reason = why
            if cand.source == "config":
                raise FatalError(f"codex.binary {cand.path}: {why}. Fix the path or set it to `auto`.")
            continue
        cand.version = found
        cand.taken = True
        cand.reason = f"codex {found}"
        _remember(configured, version, cand.path)
        return Path(cand.path)
    if not provision:
        raise FatalError("codex not found; run `ao doctor --provision` to install it with npm")
    provisioned = provision_codex(version)
    _remember(configured, version, str(provisioned))
    if report is not None:
        report.append(Candidate("provisioned", str(provisioned), True, f"installed codex {version} with npm"))
    return provisioned


def _remember(configured: str, version: str, path: str) -> None:
    try:
        paths.atomic_write(_resolved_file(version), f"{configured}\n{path}\n")
    except OSError:
        pass  # a cache we cannot write only costs a re-resolve next time


def ensure_cached(version: str, cache_dir: Path) -> Path:
    """The native binary of VERSION under cache_dir, installed there with npm if it is missing."""
    binary = native_binary(cache_dir / version)
    return binary if binary.exists() else provision_codex(version, cache_dir)


def provision_codex(version: str, cache_dir: Path | None = None) -> Path:
    """`npm install @openai/codex@VERSION` into ao's cache (or cache_dir) and return the native binary."""
    npm = shutil.which("npm")
    if not npm:
        raise FatalError(
            "codex is not installed and npm is missing, so ao cannot install it.\n"
            "Install Node.js and npm (e.g. `apt-get install nodejs npm`), or install codex yourself "
            "and set `codex.binary` in agent-orchestrator.yaml.")
    cache_dir = cache_dir or paths.codex_cache_dir()
    target = cache_dir / version
    staging = cache_dir / f".{version}.installing.{os.getpid()}"
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FatalError(f"cannot create {staging}: {exc.strerror}") from None
    _drop_abandoned_staging(cache_dir)
    (staging / "package.json").write_text('{"name": "ao-codex-cache", "private": true}\n')
    try:
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"@openai/codex@{version}"],
            cwd=staging, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FatalError(f"`npm install @openai/codex@{version}` failed: {exc}") from None
    except BaseException:  # ^C: npm got it too; a half install is not left behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise FatalError(f"`npm install @openai/codex@{version}` exited {proc.returncode}:\n{tail}")
    binary = native_binary(staging)
    found, why = probe_version(str(binary))
    if found is None:
        shutil.rmtree(staging, ignore_errors=True)
        raise FatalError(f"npm installed @openai/codex@{version} but its binary is unusable: {why}")
    return _settle(staging, target, version)


def _drop_abandoned_staging(cache_dir: Path) -> None:
    """Remove `.<version>.installing.<pid>` dirs whose ao is gone (killed mid-install)."""
    try:
        names = os.listdir(cache_dir)
    except OSError:
        return
    for name in names:
        head, _, pid = name.rpartition(".installing.")
        if not head.startswith(".") or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still installing (or the pid was reused: leave it)
        except ProcessLookupError:
            shutil.rmtree(cache_dir / name, ignore_errors=True)
        except OSError:
            continue


def _settle(staging: Path, target: Path, version: str) -> Path:
    """Move a checked install from `staging` to `target`; a half-done install never sits at the final path.

    Another ao may have installed the same version meanwhile: its copy is kept (it may be running)
    and this one dropped. Whatever else is at the target (a broken install, a file, a dangling
    link) is moved aside first, never followed.
    """
    def working() -> bool:
        return probe_version(str(native_binary(target)))[0] == version

    if working():
        shutil.rmtree(staging, ignore_errors=True)
        return native_binary(target)
    try:
        if os.path.lexists(target):
            aside = target.with_name(f".{target.name}.replaced.{os.getpid()}")
            os.replace(target, aside)
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                aside.unlink()
        os.replace(staging, target)
    except OSError as exc:
        if working():  # another ao won the race between the check and the move
            shutil.rmtree(staging, ignore_errors=True)
            return native_binary(target)
        shutil.rmtree(staging, ignore_errors=True)
        raise FatalError(f"cannot put codex {version} at {target}: {exc.strerror or exc}") from None
    return native_binary(target)


# What `codex --help` lists under --ask-for-approval, per measured version: the fallback when the help
# cannot be run or parsed. A version missing here falls back to the newest entry.
KNOWN_APPROVAL_VALUES: dict[str, tuple[str, ...]] = {
    "0.169.0": ("on-request", "never"),
}
_OPTION_LINE = re.compile(r"^\s{1,8}(?:-\w, )?--[a-z0-9-]+")
_BRACKET_VALUES = re.compile(r"\[possible\s+values:\s*([^\]]+)\]", re.IGNORECASE)
_LISTED_VALUE = re.compile(r"^\s*- ([a-z0-9][a-z0-9-]*):")
_HELP_CACHE_FORMAT = 1


@dataclass(frozen=True)
class ApprovalSupport:
    """What one codex binary accepts for approval, and where ao learned it."""
    version: str
    values: tuple[str, ...]  # the -a / approval_policy values
    bypass: bool             # has --dangerously-bypass-approvals-and-sandbox
    source: str              # "help" (parsed) or "table" (built-in fallback)


def parse_approval_values(help_text: str) -> tuple[str, ...] | None:
    """The values listed under --ask-for-approval in `codex --help` (long or short form), or None."""
    lines = help_text.splitlines()
    start = next((i for i, line in enumerate(lines) if "--ask-for-approval" in line), None)
    if start is None:
        return None
    block = [lines[start]]
    for line in lines[start + 1:]:
        if _OPTION_LINE.match(line):
            break
        block.append(line)
    bracket = _BRACKET_VALUES.search(" ".join(block))
    if bracket:
        values = tuple(v.strip() for v in bracket.group(1).split(",") if v.strip())
    else:
        values = tuple(m.group(1) for m in map(_LISTED_VALUE.match, block) if m)
    return values or None


def approval_support_from_help(help_text: str | None, version: str) -> ApprovalSupport:
    """Pure: the parsed help if it lists values, else the built-in table for VERSION (or the newest)."""
    parsed = parse_approval_values(help_text) if help_text else None
    if help_text and (parsed or "--ask-for-approval" not in help_text):
        # a help that lists no such option at all means this codex has none: () fails every asking mode
        return ApprovalSupport(version, parsed or (), "--dangerously-bypass-approvals-and-sandbox" in help_text,
                               "help")
    known = KNOWN_APPROVAL_VALUES.get(version) or KNOWN_APPROVAL_VALUES[max(KNOWN_APPROVAL_VALUES, key=_version_key)]
    return ApprovalSupport(version, known, True, "table")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _help_cache_file(real: str) -> Path:
    return paths.ao_home() / "cache" / "codex-help" / (hashlib.sha256(real.encode()).hexdigest()[:24] + ".json")


def approval_support(codex: str | os.PathLike[str]) -> ApprovalSupport:
    """What this codex accepts for approval: `codex --version` and `--help`, cached per binary on disk.

    The cache is keyed by the binary's real path, and its size, mtime and inode stand for its version, so
    an upgraded codex is probed again. The cache can only pick among ao's own constants, never add argv.
    """
    real = os.path.realpath(codex)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise FatalError(f"codex {real}: {exc.strerror}; run `ao doctor` to find a working codex") from None
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    cache = _help_cache_file(real)
    try:
        saved = json.loads(cache.read_text())
        if saved.get("format") == _HELP_CACHE_FORMAT and saved.get("path") == real and saved.get("stamp") == stamp:
            found = saved["support"]
            return ApprovalSupport(str(found["version"]), tuple(str(v) for v in found["values"]),
                                   bool(found["bypass"]), str(found["source"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing or damaged: probe again
    version, why = probe_version(real)
    if version is None:
        raise FatalError(f"codex {real}: {why}; run `ao doctor` to find a working codex")
    try:
        proc = subprocess.run([real, "--help"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        help_text = proc.stdout if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        help_text = None
    support = approval_support_from_help(help_text, version)
    try:
        paths.atomic_write(cache, json.dumps({"format": _HELP_CACHE_FORMAT, "path": real, "stamp": stamp,
                                              "support": asdict(support)}))
    except OSError:
        pass  # a cache we cannot write (full disk) only costs a probe next time
    return support


def check_approval(support: ApprovalSupport, approval: str) -> list[str]:
    """The -a values to launch with; FatalError naming the version, mode and values when none fits."""
    from supervisor.launch import command

    if approval == "skip":
        if not support.bypass:
            raise FatalError(f"codex {support.version} cannot run approval 'skip': its --help has no "
                             f"{command.BYPASS_FLAG}. Use approval auto-edit or suggest, or set codex.version "
                             "to one ao supports.")
    elif not support.values:
        raise FatalError(f"codex {support.version} cannot run approval {approval!r}: its --help has no "
                         "--ask-for-approval option. Use approval skip (ao's jail still applies), or set "
                         "codex.version to one ao supports.")
    else:
        command.codex_approval(approval, support.values, support.version)
    return list(support.values)


def approval_values(codex: str | os.PathLike[str], approval: str) -> list[str]:
    """At spawn and resume: what this codex accepts for -a, checked against ao's APPROVAL mode.

    Raises FatalError before any side effect when this codex cannot run the mode.
    """
    return check_approval(approval_support(codex), approval)
