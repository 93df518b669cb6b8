"""The Ray runtime's command line, without a cluster: choosing it, --resources, and a machine without Ray."""
from __future__ import annotations

import json
import subprocess
import sys

from supervisor.sessions.spawn import parse_resources

SCRIPT = "tasks:\n  say:\n    steps:\n      - say: hi\n"
NO_RAY = ("import sys, runpy; sys.modules['ray'] = None; sys.argv[0] = 'ao'; "
          "runpy.run_module('supervisor', run_name='__main__')")


def test_resources_json_is_checked_in_one_line(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    for bad in ("{big_box: 1}", "[1]", '{"big_box": -1}', '{"big_box": "one"}'):
        out = ao("spawn", "--runtime", "ray", "--repo", str(sample_repo), "--resources", bad, "go")
        assert out.returncode == 1, (bad, out.stdout, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "--resources" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    local = ao("spawn", "--headless", "--repo", str(sample_repo), "--resources", '{"big_box": 1}', "go")
    assert local.returncode == 1 and "--runtime ray" in local.stderr, local.stderr
    listed = ao("status", "--json")
    assert json.loads(listed.stdout) == []  # nothing was made by the refused spawns


def test_parse_resources_adds_floats():
    assert parse_resources('{"big_box": 1, "CPU": 0.5}') == {"big_box": 1.0, "CPU": 0.5}
    assert parse_resources(None) is None


def test_without_ray_spawn_says_how_to_install_it(codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    out = subprocess.run([sys.executable, "-c", NO_RAY, "spawn", "--runtime", "ray", "--repo", str(sample_repo),
                          "go"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "pip install 'ao-supervisor[ray]'" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_runtime_ray_with_headless_stays_on_ray(ao, codex, scripted_model, config_for, sample_repo):
    """`--runtime ray --headless`: ray is headless already. With no cluster reachable the run fails, and the
    record says it was the ray runtime that tried."""
    config_for(scripted_model(SCRIPT), "ray:\n  address: 127.0.0.1:1\n")
    out = ao("spawn", "--runtime", "ray", "--headless", "--repo", str(sample_repo), "--json", "go")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    ao("wait", session, "--timeout", "60", timeout=90)
    row = json.loads(ao("status", session, "--json").stdout)[0]
    assert row["runtime"] == "ray" and row["status"] == "failed", row
    assert "Ray cluster at 127.0.0.1:1" in row["error"], row


def test_plan_enforcement_is_refused_on_ray_and_leaves_nothing(ao, codex, scripted_model, config_for, sample_repo):
    config_for(scripted_model(SCRIPT))
    out = ao("spawn", "--runtime", "ray", "--plan-first", "--repo", str(sample_repo), "go")
    assert out.returncode == 1 and "not available on the ray runtime" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert json.loads(ao("status", "--json").stdout) == []
