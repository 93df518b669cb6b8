"""`ao dashboard` without a browser: the token, CSRF and Host checks, static files, rendering and the
numbers against `ao status --json` / `ao cost --json`. Starlette's TestClient drives the app in-process;
the last tests run the real `ao dashboard` and speak raw HTTP to it."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

from supervisor import config, store
from supervisor.dashboard import security, vendor
from supervisor.dashboard.app import make_app, static_files
from supervisor.errors import FatalError

TOKEN = "t" * 20 + "-dashboard-test-token"
PORT = 8787
BASE = f"http://127.0.0.1:{PORT}"
HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# `ao dashboard` as the CLI runs it; the command is registered here too, so this works before and after
# report/cli.py's COMMANDS table lists it
AO_DASHBOARD = [sys.executable, "-c", "from supervisor.report import cli; cli.COMMANDS.setdefault('dashboard', "
                "('supervisor.dashboard.cmd', 'dashboard')); cli.main()", "dashboard"]


def add_session(session: str, status: str, **extra: Any) -> None:
    """An ended session record (no process: conftest would kill a recorded pid)."""
    now = time.time()
    store.insert({"session": session, "workspace": "/nonexistent", "runtime": "headless", "status": status,
                  "started_at": now - 120, "updated_at": now, "ended_at": now, "launch": {}, **extra})


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = make_app(config.load(None), TOKEN, PORT)
    with TestClient(app, base_url=BASE) as c:
        yield c


def signed_in(c: TestClient) -> str:
    """Visit with ?token= as the printed URL does; returns the CSRF value the page carries."""
    first = c.get("/?token=" + TOKEN, follow_redirects=False)
    assert first.status_code == 303
    page = c.get("/")
    assert page.status_code == 200
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found
    return found.group(1)


# --- the token --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/cost"), ("GET", "/events/board"),
                                          ("GET", "/static/app.js"), ("GET", "/session/ao-x"),
                                          ("POST", "/session/ao-x/kill"), ("POST", "/approval/a1/approve")])
def test_without_the_token_every_endpoint_is_403_and_says_nothing_else(client: TestClient, method: str, path: str):
    add_session("ao-secret-one", "done", name="secret-name")
    out = client.request(method, path)
    assert out.status_code == 403
    assert out.text == security.FORBIDDEN.decode()
    assert "set-cookie" not in out.headers


def test_a_wrong_token_is_refused_in_the_url_the_cookie_and_the_header(client: TestClient):
    assert client.get("/?token=" + TOKEN[:-1] + "X", follow_redirects=False).status_code == 403
    assert client.get("/", headers={"Authorization": "Bearer " + TOKEN + "x"}).status_code == 403
    assert client.get("/", headers={"Authorization": "Basic " + TOKEN}).status_code == 403
    client.cookies.set(f"ao_dashboard_{PORT}", TOKEN.upper())
    assert client.get("/").status_code == 403


def test_the_first_visit_sets_httponly_strict_cookies_and_drops_the_token_from_the_url(client: TestClient):
    out = client.get("/cost?token=" + TOKEN + "&x=1", follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/cost?x=1"
    cookies = out.headers.get_list("set-cookie")
    assert len(cookies) == 2
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert any(c.startswith(f"ao_dashboard_{PORT}={TOKEN};") for c in cookies)
    assert client.get("/cost").status_code == 200


def test_the_redirect_never_leaves_the_dashboard(client: TestClient):
    out = client.get("//evil.example/x?token=" + TOKEN, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"].startswith("/") and not out.headers["location"].startswith("//")


def test_a_bearer_token_reads_and_posts_without_cookies(client: TestClient):
    auth = {"Authorization": "Bearer " + TOKEN}
    assert client.get("/", headers=auth).status_code == 200
    out = client.post("/approval/nope/approve", headers=auth)
    assert out.status_code == 409 and "unknown approval" in out.text


def test_a_foreign_host_header_is_refused_on_loopback(client: TestClient):
    """DNS rebinding: evil.example resolving to 127.0.0.1 reaches the socket but not the app."""
    auth = {"Authorization": "Bearer " + TOKEN}
    assert client.get("/", headers={**auth, "Host": "evil.example:8787"}).status_code == 403
    assert client.get("/", headers={**auth, "Host": f"localhost:{PORT}"}).status_code == 200


# --- CSRF -------------------------------------------------------------------------------------------

def test_a_post_with_the_cookie_but_no_csrf_token_is_refused(client: TestClient):
    csrf = signed_in(client)
    out = client.post("/approval/a1/approve")
    assert out.status_code == 403 and "CSRF" in out.text
    out = client.post("/approval/a1/approve", headers={"X-CSRF-Token": csrf + "x"})
    assert out.status_code == 403
    out = client.post("/approval/a1/approve", data={"csrf": csrf[:-1]})
    assert out.status_code == 403


def test_a_post_with_the_csrf_token_reaches_the_action(client: TestClient):
    csrf = signed_in(client)
    by_header = client.post("/approval/a1/approve", headers={"X-CSRF-Token": csrf})
    by_field = client.post("/approval/a1/deny", data={"csrf": csrf, "reason": "no"})
    for out in (by_header, by_field):
        assert out.status_code == 409 and "unknown approval" in out.text  # the action ran, and said why


def test_a_cross_site_post_is_refused_even_with_every_token(client: TestClient):
    csrf = signed_in(client)
    headers = {"X-CSRF-Token": csrf, "Authorization": "Bearer " + TOKEN}
    assert client.post("/approval/a1/approve", headers={**headers, "Origin": "http://evil.example"}).status_code == 403
    assert client.post("/approval/a1/approve",
                       headers={**headers, "Origin": f"http://127.0.0.1:{PORT + 1}"}).status_code == 403
    assert client.post("/approval/a1/approve", headers={**headers, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    same = client.post("/approval/a1/approve", headers={**headers, "Origin": BASE, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 409


def test_an_approval_is_resolved_through_the_page_as_ao_approve_does(client: TestClient, isolated_home: Path):
    from supervisor import paths
    from supervisor.govern import guard

    approvals = paths.ao_home() / "approvals"
    approvals.mkdir(parents=True, mode=0o700)
    record = {"id": "ap-test-1", "session": "ao-gated", "status": "pending", "created": time.time(),
              "command": "echo deployed > deployed.txt  # deploy", "reason": "deploys need a human"}
    guard.write_json_atomic(str(approvals / "ap-test-1.json"), record)
    csrf = signed_in(client)
    page = client.get("/").text
    assert "echo deployed &gt; deployed.txt  # deploy" in page and 'data-approval="ap-test-1"' in page
    out = client.post("/approval/ap-test-1/approve", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 200 and "approved ap-test-1" in out.text
    assert guard.read_approval(str(paths.ao_home()), "ap-test-1")["status"] == "approved"
    again = client.post("/approval/ap-test-1/deny", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and "already approved" in again.text
    bad = client.post("/approval/..%2f..%2fetc%2fpasswd/approve", headers={"X-CSRF-Token": csrf})
    assert bad.status_code in (404, 409) and "root:" not in bad.text


# --- static files and pages --------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
                                  "/static/..%2f..%2f..%2fetc%2fpasswd", "/static/%252e%252e/etc/passwd",
                                  "/static//etc/passwd", "/static/vendor/../../app.py", "/static/../app.py",
                                  "/static/VERSIONS", "/static/vendor/VERSIONS"])
def test_static_serves_only_the_packaged_assets(client: TestClient, path: str):
    out = client.get(path, headers={"Authorization": "Bearer " + TOKEN})
    assert out.status_code == 404
    assert "root:" not in out.text and "import" not in out.text


def test_every_script_and_stylesheet_is_local_and_matches_versions(client: TestClient):
    add_session("ao-page-1", "done", name="page-one")
    csrf = signed_in(client)
    assert csrf
    assert vendor.check() == []
    for path in ("/", "/cost", "/session/ao-page-1"):
        page = client.get(path)
        assert page.status_code == 200, path
        refs = LinkFinder.of(page.text)
        assert refs, path
        for ref in refs:
            assert ref.startswith("/static/"), (path, ref)
            assert client.get(ref).status_code == 200, ref
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # no inline script: the CSP would block it anyway
    versions = (vendor.VENDOR / "VERSIONS").read_text()
    for name in ("htmx.org@", "htmx-ext-sse@", "@xterm/xterm@"):
        assert name in versions
    assert set(static_files()) >= {"app.js", "app.css", "vendor/htmx.min.js", "vendor/xterm.js"}


class LinkFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.refs.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.refs.append(str(found["href"]))

    @classmethod
    def of(cls, text: str) -> list[str]:
        finder = cls()
        finder.feed(text)
        return finder.refs


def test_the_board_escapes_what_agents_write_and_puts_attention_first(client: TestClient, ao):
    add_session("ao-calm", "done", name="calm", project="web", branch="ao/calm", input=1200, output=300,
                model="gpt-5.1-codex")
    add_session("ao-broken", "failed", name=HOSTILE, project="api", error=HOSTILE + " exploded")
    signed_in(client)
    page = client.get("/").text
    assert "<script>alert" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    order = re.findall(r'<tr id="row-([^"]+)"', page)
    assert order == ["ao-broken", "ao-calm"]  # failed needs a human: first, although started together
    rows = json.loads(ao("status", "--json").stdout)
    calm = next(r for r in rows if r["session"] == "ao-calm")
    row_html = re.search(r'<tr id="row-ao-calm".*?</tr>', page).group(0)  # type: ignore[union-attr]
    assert f"${calm['cost_usd']:.4f}" in row_html and str(calm["tokens"]["total"]) in row_html
    assert ">web<" in row_html and ">ao/calm<" in row_html and 'data-status="done"' in row_html
    session = client.get("/session/ao-broken").text
    assert "<script>alert" not in session and "exploded" in session


def test_filters_keep_only_matching_rows(client: TestClient):
    add_session("ao-f-web", "done", name="f-web", project="web")
    add_session("ao-f-api", "failed", name="f-api", project="api")
    signed_in(client)
    assert re.findall(r'<tr id="row-([^"]+)"', client.get("/?project=web").text) == ["ao-f-web"]
    assert re.findall(r'<tr id="row-([^"]+)"', client.get("/?attention=1").text) == ["ao-f-api"]
    assert re.findall(r'<tr id="row-([^"]+)"', client.get("/?active=1").text) == []


def test_session_pages_exist_only_for_sessions_in_the_store(client: TestClient):
    add_session("ao-real", "done", name="real")
    signed_in(client)
    assert client.get("/session/ao-real").status_code == 200
    assert client.get("/session/real").status_code == 200  # by name, as the CLI finds it
    for bad in ("ao-missing", "%2e%2e", "%2e%2e%2fetc%2fpasswd", "..%2F..%2Fao.db"):
        out = client.get("/session/" + bad)
        assert out.status_code == 404, bad
    csrf = client.get("/").text.split('name="csrf-token" content="')[1].split('"')[0]
    out = client.post("/session/ao-missing/kill", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 409 and "unknown session" in out.text


def test_cost_page_shows_the_numbers_ao_cost_prints(client: TestClient, ao):
    add_session("ao-c1", "done", name="c1", model="gpt-5.1-codex", input=250000, cached_input=50000, output=40000)
    add_session("ao-c2", "done", name="c2", model="gpt-5.1-codex-mini", input=90000, output=7000)
    signed_in(client)
    page = client.get("/cost").text
    by_model = json.loads(ao("cost", "--by", "model", "--json").stdout)
    by_day = json.loads(ao("cost", "--by", "day", "--json").stdout)
    assert by_model["rows"] and by_model["totals"]["cost_usd"] > 0
    assert f'<b class=total>${by_model["totals"]["cost_usd"]:.4f}</b>' in page
    for row in by_model["rows"]:
        assert re.search(rf'<tr data-model="{re.escape(row["key"])}">.*?\${row["cost_usd"]:.4f}</td></tr>', page)
    for row in by_day["rows"]:
        assert f'data-key="{row["key"]}" data-cost="{row["cost_usd"]}"' in page


# --- the token file and the host ---------------------------------------------------------------------

def test_a_reachable_host_needs_a_private_token_file(tmp_path: Path):
    with pytest.raises(FatalError, match=r"--host 0\.0\.0\.0 .* needs --token-file") as err:
        security.choose_token("0.0.0.0", None)
    assert "\n" not in str(err.value)
    assert len(security.choose_token("127.0.0.1", None)) >= 40
    made = tmp_path / "token"
    token = security.choose_token("0.0.0.0", str(made))
    assert made.stat().st_mode & 0o777 == 0o600 and made.read_text().strip() == token
    assert security.choose_token("0.0.0.0", str(made)) == token
    made.chmod(0o644)
    with pytest.raises(FatalError, match="readable by others.*chmod 600"):
        security.choose_token("0.0.0.0", str(made))
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(FatalError, match="not a regular file"):
        security.read_token_file(link)


def test_ao_dashboard_on_another_host_without_a_token_file_refuses_in_one_line():
    out = subprocess.run([*AO_DASHBOARD, "--host", "0.0.0.0", "--port", "0", "--no-browser"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "token-file" in out.stderr
    assert out.stdout == ""


def _raw_get(port: int, target: str, extra: str = "") -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def test_ao_dashboard_prints_a_token_url_and_guards_raw_requests(isolated_home: Path):
    proc = subprocess.Popen([*AO_DASHBOARD, "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.match(r"ao dashboard: http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{40,})$", line.strip())
        assert found, line
        port, token = int(found.group(1)), found.group(2)
        assert token not in "".join(p.read_text(errors="replace") for p in isolated_home.rglob("*")
                                    if p.is_file() and p.stat().st_size < 1_000_000)
        auth = f"Authorization: Bearer {token}\r\n"
        assert _raw_get(port, "/").startswith("HTTP/1.1 403")
        for target in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                       "/static/..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/..\\..\\etc\\passwd"):
            answer = _raw_get(port, target, auth)
            assert answer.split(" ")[1] in ("400", "404"), (target, answer[:100])
            assert "root:" not in answer
        ok = _raw_get(port, "/", auth)
        assert ok.startswith("HTTP/1.1 200") and "sse-connect" in ok
        events = _first_event(port, token)
        assert "event: board" in events
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode in (0, -15)


def _first_event(port: int, token: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /events/board HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
                     .encode())
        got = b""
        deadline = time.monotonic() + 10
        while b"event: approvals" not in got and time.monotonic() < deadline:
            got += sock.recv(65536)
    return got.decode()


def test_without_starlette_the_command_says_how_to_install_in_one_line(tmp_path: Path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass B:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('starlette', 'uvicorn'):\n            raise ImportError(name)\n"
        "sys.meta_path.insert(0, B())\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    out = subprocess.run([*AO_DASHBOARD, "--no-browser", "--port", "0"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 1
    assert out.stderr.strip() == "ao: error: " + "the dashboard needs starlette and uvicorn: " \
                                                  "pip install 'ao-supervisor[dashboard]'"
