"""The built wheel ships wrappers/ and templates/ and gives the `ao` command."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_data_and_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for folder in ("wrappers", "templates"):
        shipped = sorted(p.name for p in (ROOT / folder).iterdir() if p.is_file())
        assert shipped, f"{folder}/ is empty"
        for name in shipped:
            assert f"supervisor/{folder}/{name}" in names, f"{folder}/{name} missing from the wheel"
    assert "supervisor/observe/pricing.json" in names
    entry = [n for n in names if n.endswith("entry_points.txt")][0]
    assert "ao = supervisor.entry:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_wheel_reads_templates_with_importlib_resources(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path / "w"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next((tmp_path / "w").glob("*.whl"))
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = ("import importlib.resources as r, supervisor.resources as s;"
            "print(r.files('supervisor.templates').joinpath('demo-script.yaml').read_text()[:1]);"
            "print(type(s.data_dir('templates')).__name__)")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "#"
