"""Config lookup, validation with file:line errors, and in-place get/set."""
from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import config
from supervisor.errors import FatalError

ROOT = Path(__file__).resolve().parents[1]


def test_no_file_means_defaults():
    cfg = config.load()
    assert cfg.path is None
    assert cfg.data["agent"]["approval"] == "auto-edit"
    assert cfg.data["codex"]["version"] == "0.169.0"


def test_sample_config_is_valid_and_documents_every_key():
    cfg = config.load(str(ROOT / "agent-orchestrator.yaml"))
    text = (ROOT / "agent-orchestrator.yaml").read_text()
    for key, node in config.SCHEMA["keys"].items():
        assert f"{key}:" in text, f"sample config does not document {key}"
        if isinstance(node, dict) and "keys" in node:
            for sub in node["keys"]:
                assert f"{sub}:" in text, f"sample config does not document {key}.{sub}"
    assert cfg.data == config.DEFAULTS


def test_lookup_order(tmp_path, monkeypatch):
    home_cfg = Path(monkeypatch_env_home(monkeypatch, tmp_path)) / "agent-orchestrator.yaml"
    home_cfg.write_text("max_concurrent: 3\n")
    assert config.load().data["max_concurrent"] == 3
    Path("agent-orchestrator.yaml").write_text("max_concurrent: 4\n")
    assert config.load().data["max_concurrent"] == 4
    env_cfg = tmp_path / "env.yaml"
    env_cfg.write_text("max_concurrent: 5\n")
    monkeypatch.setenv("AO_CONFIG", str(env_cfg))
    assert config.load().data["max_concurrent"] == 5
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("max_concurrent: 6\n")
    assert config.load(str(explicit)).data["max_concurrent"] == 6


def monkeypatch_env_home(monkeypatch, tmp_path) -> Path:
    home = tmp_path / "aohome"
    home.mkdir()
    monkeypatch.setenv("AO_HOME", str(home))
    return home


@pytest.mark.parametrize("text, expected", [
    ("agent:\n  model: x\n  colour: blue\n", "agent-orchestrator.yaml:3: unknown key agent.colour; allowed keys: model"),
    ("runtime: docker\n", "agent-orchestrator.yaml:1: runtime must be one of headless, tmux, ray, got 'docker'"),
    ("agent:\n  approval: yolo\n", "agent.approval must be one of skip, auto-edit, suggest"),
    ("max_concurrent: many\n", "max_concurrent must be an integer"),
    ("flavour: 1\n", "agent-orchestrator.yaml:1: unknown key flavour; allowed keys: codex, agent"),
    ("projects:\n  web:\n    repo: 3\n", "agent-orchestrator.yaml:3: projects.web.repo must be a string"),
    ("- a\n- b\n", "the config must be a mapping"),
])
def test_validation_names_file_line_and_allowed(text, expected):
    Path("agent-orchestrator.yaml").write_text(text)
    with pytest.raises(FatalError) as err:
        config.load()
    assert expected in str(err.value)


def test_broken_yaml_names_the_line_and_keeps_the_file():
    broken = "agent:\n  model: [unclosed\nruntime: tmux\n"
    Path("agent-orchestrator.yaml").write_text(broken)
    with pytest.raises(FatalError) as err:
        config.load()
    assert "agent-orchestrator.yaml:" in str(err.value) and "invalid YAML" in str(err.value)
    assert Path("agent-orchestrator.yaml").read_text() == broken


def test_set_keeps_comments_and_order():
    original = "# top comment\nagent:\n  model: gpt-5  # the model\n  approval: suggest\nruntime: tmux\n"
    path = Path("agent-orchestrator.yaml")
    path.write_text(original)
    config.set_value(path, "agent.model", "o3")
    config.set_value(path, "max_concurrent", "12")
    lines = path.read_text().splitlines()
    assert lines[0] == "# top comment"
    assert lines[2].startswith("  model: o3") and lines[2].endswith("# the model")  # comment column is kept
    assert [line.split(":")[0] for line in lines[1:]] == ["agent", "  model", "  approval", "runtime", "max_concurrent"]
    assert config.load().data["max_concurrent"] == 12
    assert config.load().data["agent"]["model"] == "o3"


def test_set_rejects_bad_values_without_touching_the_file():
    path = Path("agent-orchestrator.yaml")
    path.write_text("runtime: tmux\n")
    with pytest.raises(FatalError, match="runtime must be one of"):
        config.set_value(path, "runtime", "docker")
    with pytest.raises(FatalError, match="unknown config key"):
        config.set_value(path, "agent.colour", "blue")
    assert path.read_text() == "runtime: tmux\n"


def test_cli_config_get_set(ao):
    Path("agent-orchestrator.yaml").write_text("agent:\n  model: gpt-5  # keep me\n")
    config.trust_config(Path("agent-orchestrator.yaml"))  # the user's file; `config set` keeps it trusted
    assert ao("config", "set", "agent.approval", "skip").returncode == 0
    assert ao("config", "get", "agent.approval").stdout.strip() == "skip"
    assert "# keep me" in Path("agent-orchestrator.yaml").read_text()
    bad = ao("config", "get", "nope.key")
    assert bad.returncode == 1 and "unknown config key 'nope.key'" in bad.stderr
    assert "Traceback" not in bad.stderr
