"""`ao dashboard` in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright,
real codex 0.169.0 agents on the scripted model, the dashboard served on a real socket.

What is asserted: a fleet of agents appears on the board and their statuses change to `done` while the
page stays loaded (no reload); an approval clicked in the page lets the waiting call run; a POST without
the token, or from another origin, is refused."""
from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.codex,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"{CHROMIUM} is missing: `make browser-deps` installs Debian's chromium")]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

FLEET = """
tasks:
  quick:
    steps:
      - run: echo quick
      - say: quick done
  nap:
    steps:
      - run: sleep 3
      - say: rested
"""
GATED = """
tasks:
  deploy:
    steps:
      - run: "echo deployed > deployed.txt  # deploy"
      - say: finished
"""


# every status each row showed, in order, recorded in the page as the live stream replaces the rows
HISTORY = """() => {
  window.__history = {};
  const record = () => document.querySelectorAll('#board tr[data-session]').forEach(r => {
    const seen = window.__history[r.dataset.session] = window.__history[r.dataset.session] || [];
    if (seen[seen.length - 1] !== r.dataset.status) seen.push(r.dataset.status);
  });
  new MutationObserver(record).observe(document.getElementById('board'), {childList: true, subtree: true});
  record();
}"""


class Dashboard:
    def __init__(self, url: str, token: str, stop: threading.Event, thread: threading.Thread) -> None:
        self.url, self.token, self.stop, self.thread = url, token, stop, thread

    @property
    def base(self) -> str:
        return self.url.split("/?token=")[0]


@pytest.fixture
def dashboard() -> Iterator[Callable[[], Dashboard]]:
    """Serve the dashboard for this test's AO_HOME on a free port, in a thread, as `ao watch` would."""
    from supervisor import config
    from supervisor.dashboard import server

    started: list[Dashboard] = []

    def start() -> Dashboard:
        cfg = config.load(None)
        sock, listening = server.prepare(cfg, "127.0.0.1", 0, None, lambda _line: None)
        stop = threading.Event()
        thread = threading.Thread(target=server.run_on, args=(cfg, sock, listening, stop), daemon=True)
        thread.start()
        board = Dashboard(listening.url, listening.token, stop, thread)
        started.append(board)
        return board

    yield start
    for board in started:
        board.stop.set()
        board.thread.join(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    profile = tmp_path / "chromium-profile"
    with sync_api.sync_playwright() as pw:
        # a persistent context is how Playwright takes a --user-data-dir of our own
        context = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS,
                                                        headless=True)
        try:
            yield context
        finally:
            context.close()


def spawn(ao: Callable[..., Any], repo: Path, prompt: str, name: str) -> str:
    out = ao("spawn", "--headless", "--repo", str(repo), "--name", name, "--json", prompt)
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["session"])


def statuses(page: Any) -> dict[str, str]:
    return dict(page.eval_on_selector_all(
        "#board tr[data-session]", "rows => rows.map(r => [r.dataset.session, r.dataset.status])"))


def test_a_fleet_appears_and_finishes_live_without_a_reload(codex, scripted_model, config_for, sample_repo, ao,
                                                            dashboard, browser):
    server = scripted_model(FLEET)
    config_for(server)
    board = dashboard()
    page = browser.new_page()
    page.goto(board.url)
    assert page.url == board.base + "/"  # the token left the address bar
    page.wait_for_function("() => window.htmx !== undefined")
    page.evaluate("() => { window.__sameDocument = 'kept'; }")  # a reload would drop this
    page.evaluate(HISTORY)
    page.wait_for_selector("#board td.empty")
    sessions = [spawn(ao, sample_repo, "[ao-task:quick] say hi", "quick-1"),
                spawn(ao, sample_repo, "[ao-task:nap] take a nap", "nap-1"),
                spawn(ao, sample_repo, "[ao-task:quick] say hi again", "quick-2")]
    page.wait_for_function("n => document.querySelectorAll('#board tr[data-session]').length === n",
                           arg=len(sessions), timeout=15000)
    assert set(statuses(page)) == set(sessions)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#board tr[data-session]')].every(r => r.dataset.status === 'done')",
        timeout=60000)
    assert page.evaluate("() => window.__sameDocument") == "kept"
    history = page.evaluate("() => window.__history")
    nap = history[sessions[1]]
    assert nap[-1] == "done" and len(nap) >= 2 and set(nap[:-1]) <= {"queued", "spawning", "working"}, history
    rows: dict[str, Any] = {}

    def board_matches() -> bool:
        rows.update({r["session"]: r for r in json.loads(ao("status", "--json").stdout)})
        for sid in sessions:
            cells = page.eval_on_selector(f"#row-{sid}", "r => [...r.cells].map(c => c.textContent)")
            if cells[0] != rows[sid]["name"] or cells[2] != "done" or cells[8] != f"${rows[sid]['cost_usd']:.4f}":
                return False
        return True

    wait_for(board_matches, 15, step=0.5, what="the board's cost cells to equal `ao status --json`")
    assert all(rows[sid]["cost_usd"] > 0 for sid in sessions)
    page.click(f"#row-{sessions[1]} a")
    page.wait_for_selector("#events .line", timeout=10000)  # the headless agent's live event stream
    assert "sleep 3" in page.inner_text("#receipts")
    assert page.locator("svg.chart.line").count() == 1


def test_an_approval_clicked_in_the_page_lets_the_call_run(codex, scripted_model, config_for, sample_repo, ao,
                                                           dashboard, browser):
    server = scripted_model(GATED)
    config_for(server, "policy:\n  approval_required:\n"
                       "    - {pattern: '# deploy', reason: deploys need a human}\n  approval_timeout_s: 120\n")
    board = dashboard()
    page = browser.new_page()
    page.goto(board.url)
    session = spawn(ao, sample_repo, "[ao-task:deploy] ship it", "gated")
    page.wait_for_selector(".approval", timeout=45000)
    # a locator, not an element handle: the live updates swap the approvals list in anew each time
    card = page.locator(".approval").first
    assert "echo deployed > deployed.txt  # deploy" in card.inner_text()
    page.wait_for_selector(f"#row-{session}[data-attention=approval]", timeout=10000)
    workspace = Path(json.loads(ao("status", session, "--json").stdout)[0]["workspace"])
    assert not (workspace / "deployed.txt").exists()  # it waits for the human
    card.locator("button.approve").click()
    page.wait_for_selector(".flash.ok", timeout=10000)
    assert "approved" in page.inner_text("#flash")
    page.wait_for_selector(f"#row-{session}[data-status=done]", timeout=45000)
    assert (workspace / "deployed.txt").read_text().strip() == "deployed"
    assert page.locator(".approval").count() == 0


class _Evil(http.server.BaseHTTPRequestHandler):
    """Another local web server (an agent's dev server, say) whose page posts to the dashboard."""

    target = ""

    def do_GET(self) -> None:
        body = (f'<form id=f method=post action="{self.target}/approval/x/approve">'
                '<input name=csrf value=guess></form>'
                '<script>document.getElementById("f").submit()</script>').encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def test_a_post_without_the_token_is_refused(dashboard, browser):
    board = dashboard()
    page = browser.new_page()
    # no token yet: the page and a POST from it are refused, and say nothing else
    answer = page.goto(board.base + "/")
    assert answer is not None and answer.status == 403
    assert "forbidden" in page.inner_text("body") and "sessions" not in page.inner_text("body")
    status = page.evaluate("url => fetch(url, {method: 'POST', body: 'csrf=x'}).then(r => r.status)",
                           board.base + "/approval/x/approve")
    assert status == 403
    # signed in (cookies set), a POST from the page's own script without the CSRF token is still refused
    page.goto(board.url)
    page.wait_for_function("() => window.htmx !== undefined")
    status = page.evaluate("url => fetch(url, {method: 'POST'}).then(r => r.status)",
                           board.base + "/approval/x/approve")
    assert status == 403
    with_csrf = page.evaluate(
        "url => fetch(url, {method: 'POST', headers: {'X-CSRF-Token': "
        "document.querySelector('meta[name=csrf-token]').content}}).then(r => r.status)",
        board.base + "/approval/x/approve")
    assert with_csrf == 409  # through the checks; the approval does not exist
    # another local site (same host, other port: the browser sends it our cookies) cannot post here
    _Evil.target = board.base
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        responses: list[int] = []
        page.on("response", lambda r: responses.append(r.status) if "/approval/" in r.url else None)
        page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        page.wait_for_url(board.base + "/approval/x/approve", timeout=10000)
        assert responses == [403]
        assert "forbidden" in page.inner_text("body")
    finally:
        evil.shutdown()
        evil.server_close()



TUI = """
tasks:
  greet:
    steps:
      - say: "ao-dashboard-terminal-check: hello from the TUI"
"""


def test_a_tmux_agent_shows_its_terminal_read_only(codex, scripted_model, config_for, sample_repo, ao, dashboard,
                                                   browser):
    from supervisor.launch.runtimes import tmux

    server = scripted_model(TUI)
    config_for(server)
    board = dashboard()
    out = ao("spawn", "--tmux", "--repo", str(sample_repo), "--name", "tui", "--json", "[ao-task:greet] greet me")
    assert out.returncode == 0, out.stderr
    session = json.loads(out.stdout)["session"]
    try:
        assert ao("wait", session, "--timeout", "60").returncode == 0
        page = browser.new_page()
        page.goto(board.url)
        page.goto(f"{board.base}/session/{session}")
        page.locator("#terminal").scroll_into_view_if_needed()  # xterm draws only what is in view
        page.wait_for_function("() => (document.querySelector('#terminal .xterm-rows') || {}).textContent"
                               "?.includes('ao-dashboard-terminal-check')", timeout=15000)
        shown = page.inner_text("#terminal .xterm-rows")
        assert "ao-dashboard-terminal-check" in tmux.screen(session)  # the pane itself says it
        assert "hello from the TUI" in shown
        # read-only: typing into the page reaches neither the pane nor the server
        page.click("#terminal")
        page.keyboard.type("typed-into-the-dashboard")
        page.keyboard.press("Enter")
        page.wait_for_timeout(1000)
        assert "typed-into-the-dashboard" not in tmux.screen(session)
        assert "typed-into-the-dashboard" not in page.inner_text("#terminal .xterm-rows")
    finally:
        ao("kill", session)
