"""`ao cost` reads the config's pricing through a stored answer: the same value or error as
config.load, without the YAML parser, until anything it was read from changes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import config, paths
from supervisor.errors import FatalError
from supervisor.observe import answer_cache
from supervisor.report import cost_view

PRICED = "pricing:\n  gpt-5.1-codex: {input: 100, cached_input: 10, output: 1000}\n"


def here() -> Path:
    return Path.cwd() / config.CONFIG_NAME


def stored() -> list[str]:
    folder = answer_cache.cache_dir()
    return sorted(p.name for p in folder.glob("config-pricing-*.json")) if folder.exists() else []


def served_without_yaml() -> str:
    """pricing_overrides() in a fresh interpreter here; what it returned, and whether ruamel loaded."""
    code = ("import sys\n"
            "from supervisor.report import cost_view\n"
            "try:\n"
            "    print(repr(cost_view.pricing_overrides()))\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n"
            "print('ruamel' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout


def test_a_trusted_repository_config_is_read_once(isolated_home: Path) -> None:
    here().write_text(PRICED)
    config.trust_config(here())
    expected = config.load().data["pricing"]
    assert cost_view.pricing_overrides() == expected and len(stored()) == 1
    assert served_without_yaml() == f"{expected!r}\nFalse\n"  # the stored answer: no YAML parser


def same_error_as_load() -> None:
    with pytest.raises(FatalError) as expected:
        config.load()
    with pytest.raises(FatalError) as got:
        cost_view.pricing_overrides()
    assert str(got.value) == str(expected.value) and got.value.exit_code == expected.value.exit_code


def test_an_edit_or_a_new_trust_record_is_read_again(isolated_home: Path) -> None:
    here().write_text(PRICED)
    config.trust_config(here())
    cost_view.pricing_overrides()
    here().write_text(PRICED.replace("input: 100", "input: 300"))  # edited: untrusted again, so refused
    same_error_as_load()
    config.trust_config(here())
    assert cost_view.pricing_overrides()["gpt-5.1-codex"]["input"] == 300
    # the same length written in place with its mtime put back: the stat's ctime, or the racy hash, tells
    st = here().stat()
    with here().open("r+b") as fh:
        fh.write(PRICED.replace("input: 100", "input: 700").encode())
    os.utime(here(), ns=(st.st_atime_ns, st.st_mtime_ns))
    same_error_as_load()
    config.trust_config(here())
    assert cost_view.pricing_overrides()["gpt-5.1-codex"]["input"] == 700


def test_a_refused_repository_config_is_refused_every_time_until_trusted(isolated_home: Path) -> None:
    here().write_text(PRICED + "agent:\n  approval: skip\n")  # loosens the defaults: refused untrusted
    with pytest.raises(FatalError) as first:
        config.load()
    for _ in range(2):
        with pytest.raises(FatalError) as again:
            cost_view.pricing_overrides()
        assert str(again.value) == str(first.value) and again.value.exit_code == first.value.exit_code
    assert served_without_yaml().startswith("FatalError ")
    config.trust_config(here())  # the trust records changed: read again, now accepted
    assert cost_view.pricing_overrides() == config.load().data["pricing"]


def test_the_users_config_is_an_input_of_a_repository_configs_review(isolated_home: Path) -> None:
    user = paths.ao_home() / config.CONFIG_NAME
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text("agent:\n  approval: skip\n")  # the user allows skip: the repository may ask for it
    here().write_text("agent:\n  approval: skip\n")
    assert cost_view.pricing_overrides() == config.load().data["pricing"] == {}
    user.write_text("agent:\n  approval: suggest\n")  # now the repository's skip would loosen the user's
    same_error_as_load()


def test_with_no_config_file_nothing_is_stored(isolated_home: Path) -> None:
    assert cost_view.pricing_overrides() == {} and stored() == []


def test_a_config_swapped_for_a_link_to_another_file_is_read_again(isolated_home: Path, tmp_path: Path) -> None:
    """An agent that replaces a trusted config with a link to its own file does not get the stored answer."""
    here().write_text(PRICED)
    config.trust_config(here())
    assert cost_view.pricing_overrides()["gpt-5.1-codex"]["input"] == 100
    planted = tmp_path / "elsewhere.yaml"
    planted.write_text(PRICED.replace("input: 100", "input: 0"))  # cheaper prices, never trusted
    os.utime(planted, ns=(here().stat().st_atime_ns, here().stat().st_mtime_ns))
    here().unlink()
    here().symlink_to(planted)
    same_error_as_load()
