"""`make vendor`: fetch the dashboard's front-end libraries from npm at pinned versions and copy the
files the page loads into `static/vendor/`, with a VERSIONS file naming each package@version and sha256.

The copies are committed, so the dashboard needs neither npm nor a network at run time and the page
loads nothing from a CDN. Run: `python -m supervisor.dashboard.vendor [--build-dir build/vendor]`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"


class Pinned(NamedTuple):
    package: str
    version: str
    files: tuple[tuple[str, str], ...]  # (path inside the package, name under static/vendor/)


# Exact versions: a new release changes what users run only when someone bumps it here and re-runs this.
PINNED = (
    Pinned("htmx.org", "2.0.4", (("dist/htmx.min.js", "htmx.min.js"),)),
    Pinned("htmx-ext-sse", "2.2.2", (("sse.js", "htmx-sse.js"),)),
    Pinned("@xterm/xterm", "5.5.0", (("lib/xterm.js", "xterm.js"), ("css/xterm.css", "xterm.css"))),
)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install(build_dir: Path) -> Path:
    """`npm install` the pinned packages into BUILD_DIR (its own package.json, no lockfile games)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "package.json").write_text(json.dumps({"name": "ao-dashboard-vendor", "private": True,
                                                        "version": "0.0.0"}) + "\n")
    specs = [f"{p.package}@{p.version}" for p in PINNED]
    proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--save-exact", *specs],
                          cwd=build_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"npm install {' '.join(specs)} failed: {proc.stderr.strip()[-400:]}")
    return build_dir / "node_modules"


def copy(modules: Path, vendor: Path = VENDOR) -> list[str]:
    """Copy each pinned file into VENDOR, checking npm gave the pinned version; returns the VERSIONS lines."""
    vendor.mkdir(parents=True, exist_ok=True)
    lines = []
    for pinned in PINNED:
        root = modules / pinned.package
        got = json.loads((root / "package.json").read_text())["version"]
        if got != pinned.version:
            raise SystemExit(f"npm installed {pinned.package}@{got}, not the pinned {pinned.version}")
        for inside, name in pinned.files:
            target = vendor / name
            shutil.copyfile(root / inside, target)
            lines.append(f"{name} {pinned.package}@{pinned.version} {inside} sha256:{sha256_of(target)}")
    (vendor / "VERSIONS").write_text("# file package@version path-in-package sha256 (written by "
                                     "supervisor/dashboard/vendor.py)\n" + "\n".join(lines) + "\n")
    return lines


def check(vendor: Path = VENDOR) -> list[str]:
    """Files whose sha256 no longer matches VERSIONS (an edited or truncated copy); empty when all match."""
    bad = []
    for line in (vendor / "VERSIONS").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, _, digest = line.split()
        path = vendor / name
        if not path.is_file() or f"sha256:{sha256_of(path)}" != digest:
            bad.append(name)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--build-dir", type=Path, default=Path("build/vendor"))
    args = parser.parse_args(argv)
    for line in copy(install(args.build_dir)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
