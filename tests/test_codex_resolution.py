"""Codex resolution order with fake binaries, provisioning errors, and `ao doctor`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import paths
from supervisor.errors import FatalError
from supervisor.launch import codex_bin


def fake_codex(directory: Path, version: str = "0.169.0", code: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "codex"
    path.write_text(f"#!/bin/sh\necho 'codex-cli {version}'\nexit {code}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def bare_path(tmp_path, monkeypatch):
    """PATH with only the system dirs that hold git/sh, none with a codex; common places point nowhere."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(codex_bin, "COMMON_DIRS", [str(tmp_path / "common-a"), str(tmp_path / "common-b")])
    monkeypatch.setattr(codex_bin, "_npm_prefix_bin", lambda: None)


def test_config_path_wins(tmp_path, bare_path, monkeypatch):
    on_path = fake_codex(tmp_path / "onpath", "1.0.0")
    configured = fake_codex(tmp_path / "configured", "2.0.0")
    monkeypatch.setenv("PATH", f"{on_path.parent}:/usr/bin:/bin")
    assert codex_bin.resolve(str(configured), "0.169.0", provision=False) == configured


def test_bad_config_path_is_a_clear_error(tmp_path, bare_path):
    with pytest.raises(FatalError, match="codex.binary .*: not found"):
        codex_bin.resolve(str(tmp_path / "nope" / "codex"), "0.169.0", provision=False)


def test_path_skips_wrapper_dir_and_broken_binaries(tmp_path, bare_path, monkeypatch):
    wrapper = fake_codex(paths.bin_dir(), "9.9.9")
    broken = fake_codex(tmp_path / "broken", code=3)
    good = fake_codex(tmp_path / "good", "0.170.0")
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{broken.parent}:{good.parent}:/usr/bin")
    report: list[codex_bin.Candidate] = []
    assert codex_bin.resolve("auto", "0.169.0", provision=False, report=report) == good
    reasons = {c.path: c.reason for c in report}
    assert reasons[str(wrapper)] == "skipped: ao's own wrapper dir"
    assert reasons[str(broken)] == "`--version` exited 3"
    assert reasons[str(good)] == "codex 0.170.0"


def test_common_dirs_then_cache(tmp_path, bare_path):
    cached = codex_bin.native_binary(paths.codex_cache_dir() / "0.169.0")
    fake_codex(cached.parent)
    assert codex_bin.resolve("auto", "0.169.0", provision=False) == cached
    common = fake_codex(tmp_path / "common-b", "0.168.0")
    # the resolved path is cached; a fresh report walks the order again
    report: list[codex_bin.Candidate] = []
    assert codex_bin.resolve("auto", "0.169.0", provision=False, report=report) == common


def test_not_codex_output_is_skipped(tmp_path, bare_path, monkeypatch):
    impostor = tmp_path / "imp" / "codex"
    impostor.parent.mkdir()
    impostor.write_text("#!/bin/sh\necho hello\n")
    impostor.chmod(0o755)
    monkeypatch.setenv("PATH", f"{impostor.parent}:/usr/bin")
    report: list[codex_bin.Candidate] = []
    with pytest.raises(FatalError, match="ao doctor --provision"):
        codex_bin.resolve("auto", "0.169.0", provision=False, report=report)
    assert "not a codex version" in report[0].reason


def test_missing_npm_is_a_clear_error(bare_path, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FatalError) as err:
        codex_bin.resolve("auto", "0.169.0", provision=True)
    assert "npm is missing" in str(err.value) and "codex.binary" in str(err.value)


def _npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: str) -> None:
    """An `npm` first on PATH that runs `body` (sh) in the staging dir; the network side of npm."""
    npm_dir = tmp_path / "npmbin"
    npm_dir.mkdir(exist_ok=True)
    (npm_dir / "npm").write_text("#!/bin/sh\n" + body)
    (npm_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{npm_dir}:/usr/bin:/bin")


def test_failed_npm_install_is_a_clear_error_and_leaves_no_half_install(bare_path, monkeypatch, tmp_path):
    _npm(monkeypatch, tmp_path, "echo 'npm ERR! 404 Not Found - @openai/codex@0.0.0' >&2\nexit 1\n")
    with pytest.raises(FatalError) as err:
        codex_bin.resolve("auto", "0.0.0", provision=True)
    assert "exited 1" in str(err.value) and "404" in str(err.value)
    assert not (paths.codex_cache_dir() / "0.0.0").exists()
    assert not [p for p in paths.codex_cache_dir().iterdir() if p.name.startswith(".0.0.0")]


def test_doctor_lists_candidates_and_tools(ao, tmp_path):
    env = dict(os.environ, PATH="/usr/bin:/bin")
    out = ao("doctor", env=env)
    assert "codex candidates:" in out.stdout
    assert "[cache]" in out.stdout
    assert "git: ok" in out.stdout
    if out.returncode != 0:  # no codex anywhere reachable: says how to fix it, no traceback
        assert "codex: MISSING" in out.stdout and "ao doctor --provision" in out.stdout
    assert "Traceback" not in out.stderr


def test_doctor_says_whether_the_scan_loop_was_compiled(ao, monkeypatch):
    from supervisor.report import doctor

    out = ao("doctor", env=dict(os.environ, PATH="/usr/bin:/bin"))
    assert "scanner: ok (compiled: " in out.stdout  # `make` builds it, as a pip install with a compiler does
    import supervisor.observe

    # an install without a compiler: no module, and no attribute left on the package by an earlier import
    monkeypatch.setitem(sys.modules, "supervisor.observe._fastscan", None)
    monkeypatch.delattr(supervisor.observe, "_fastscan", raising=False)
    missing = doctor.scanner_check()
    assert not missing["ok"] and "pure-Python" in missing["detail"] and "C compiler" in missing["hint"]


def test_doctor_finds_provisioned_codex(ao, codex):
    out = ao("doctor", "--json")
    assert out.returncode == 0, out.stderr
    import json
    report = json.loads(out.stdout)
    assert report["codex"]["path"] == str(codex)
    assert any(c["taken"] and c["source"] == "cache" for c in report["codex"]["candidates"])


def _npm_linking(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_binary: Path,
                 also_install_at: Path | None = None) -> None:
    """An npm whose download is a link to the real codex binary; with `also_install_at`, another ao
    finishes the same install while this one's npm runs."""
    rel = codex_bin.native_binary(Path(".")).as_posix()
    script = f"mkdir -p \"$(dirname '{rel}')\" && ln -s '{real_binary}' '{rel}'\n"
    if also_install_at is not None:
        other = codex_bin.native_binary(also_install_at)
        script += (f"mkdir -p '{other.parent}' && ln -s '{real_binary}' '{other}'"
                   f" && touch '{also_install_at}/the-other-aos-copy'\n")
    _npm(monkeypatch, tmp_path, script)


@pytest.mark.parametrize("leftover", ["dangling link", "file", "directory without codex"])
def test_provisioning_replaces_whatever_broken_thing_holds_the_version_dir(
        leftover, bare_path, monkeypatch, tmp_path, shared_codex_cache):
    _npm_linking(monkeypatch, tmp_path, codex_bin.native_binary(shared_codex_cache))
    cache = paths.codex_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "0.169.0"
    if leftover == "dangling link":
        target.symlink_to(tmp_path / "gone", target_is_directory=True)
    elif leftover == "file":
        target.write_text("not an install\n")
    else:
        (target / "node_modules").mkdir(parents=True)
    binary = codex_bin.resolve("auto", "0.169.0", provision=True)
    assert binary == codex_bin.native_binary(target)
    assert target.is_dir() and not target.is_symlink()
    assert codex_bin.probe_version(str(binary)) == ("0.169.0", "")
    left = sorted(p.name for p in cache.iterdir() if not p.name.startswith("resolved-"))
    assert left == ["0.169.0"]  # no staging, nothing moved aside left


def test_an_install_another_ao_finished_first_is_kept(bare_path, monkeypatch, tmp_path, shared_codex_cache):
    target = paths.codex_cache_dir() / "0.169.0"
    _npm_linking(monkeypatch, tmp_path, codex_bin.native_binary(shared_codex_cache), also_install_at=target)
    binary = codex_bin.resolve("auto", "0.169.0", provision=True)
    assert binary == codex_bin.native_binary(target)
    assert (target / "the-other-aos-copy").exists()  # its copy, which may already be running, was not replaced
    left = sorted(p.name for p in paths.codex_cache_dir().iterdir() if not p.name.startswith("resolved-"))
    assert left == ["0.169.0"]


def test_a_staging_dir_whose_ao_was_killed_is_removed_by_the_next_install(
        bare_path, monkeypatch, tmp_path, shared_codex_cache):
    cache = paths.codex_cache_dir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = cache / f".0.169.0.installing.{dead.pid}"
    live = cache / f".0.169.0.installing.{os.getppid()}"  # an ao still installing: left alone
    for d in (abandoned, live):
        (d / "node_modules").mkdir(parents=True)
    _npm_linking(monkeypatch, tmp_path, codex_bin.native_binary(shared_codex_cache))
    codex_bin.resolve("auto", "0.169.0", provision=True)
    assert not abandoned.exists() and live.exists()


def test_an_interrupted_npm_install_leaves_no_staging_dir(bare_path, monkeypatch, tmp_path):
    _npm(monkeypatch, tmp_path, "kill -INT $PPID\nsleep 5\n")
    with pytest.raises(KeyboardInterrupt):
        codex_bin.resolve("auto", "0.169.0", provision=True)
    assert [p.name for p in paths.codex_cache_dir().iterdir() if "installing" in p.name] == []
