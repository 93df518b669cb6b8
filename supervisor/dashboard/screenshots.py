"""`make demo-dashboard`: run the `ao demo` fleet on the scripted model under a temporary AO_HOME, serve
the dashboard, and save screenshots of the board and a session page (headless Chromium via Playwright).

Run: `python -m supervisor.dashboard.screenshots [--out tests/screenshots] [--codex-cache DIR]`, where
DIR holds provisioned codex versions (`make codex` puts them in .cache/test-home/cache/codex).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _isolate(root: Path, codex_cache: Path | None) -> None:
    """A throwaway AO_HOME and CODEX_HOME, with the provisioned codex linked in (no download)."""
    os.environ["AO_HOME"] = str(root / "ao-home")
    os.environ["CODEX_HOME"] = str(root / "codex-home")
    os.environ.pop("AO_CONFIG", None)
    (root / "codex-home").mkdir(parents=True)
    if codex_cache and codex_cache.is_dir():
        target = root / "ao-home" / "cache" / "codex"
        target.parent.mkdir(parents=True)
        target.symlink_to(codex_cache.resolve(), target_is_directory=True)


def _fleet(root: Path) -> list[str]:
    from supervisor import config
    from supervisor.sessions import demo
    from supervisor.sessions.wait import wait_sessions

    records, _ = demo.run_demo(config.load(None), root / "demo", wait_sessions, lambda line: print(line))
    return [r["session"] for r in records]


def shoot(out: Path, sessions: list[str]) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from supervisor import config
    from supervisor.dashboard import server

    cfg = config.load(None)
    sock, listening = server.prepare(cfg, "127.0.0.1", 0, None, print)
    stop = threading.Event()
    thread = threading.Thread(target=server.run_on, args=(cfg, sock, listening, stop), daemon=True)
    thread.start()
    out.mkdir(parents=True, exist_ok=True)
    saved = [out / "board.png", out / "session.png"]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.goto(listening.url)
            page.wait_for_selector("#board tr[data-session]")
            page.wait_for_timeout(500)
            page.screenshot(path=str(saved[0]), full_page=True)
            page.goto(f"{listening.url.split('/?')[0]}/session/{sessions[-1]}")
            page.wait_for_selector("#events .line", timeout=10000)
            page.wait_for_timeout(800)
            page.screenshot(path=str(saved[1]), full_page=True)
            browser.close()
    finally:
        stop.set()
        thread.join(10)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of the dashboard over the demo fleet.")
    parser.add_argument("--out", type=Path, default=Path("tests/screenshots"))
    parser.add_argument("--codex-cache", type=Path, default=Path(".cache/test-home/cache/codex"))
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing; `make browser-deps` installs Debian's chromium", file=sys.stderr)
        return 1
    out = args.out.resolve()
    root = Path(tempfile.mkdtemp(prefix="ao-dashboard-demo-"))
    try:
        _isolate(root, args.codex_cache)
        for path in shoot(out, _fleet(root)):
            print(f"saved {path}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
