"""Who may use the dashboard, and how that is checked on every request.

The security model (the README's Dashboard section says the same):

- **Loopback by default.** The server binds 127.0.0.1. Another `--host` warns on stderr and needs a
  token file (`--token-file` or `dashboard.token_file`): a 0600 file owned by the user that holds the
  token, so a reachable server never runs with a token nobody chose to keep. Anything else is refused.
- **A token on every request.** A random `secrets.token_urlsafe(32)` (or the token file's) is in the URL
  `ao dashboard` prints, as Jupyter does. The first visit with `?token=` sets an HttpOnly,
  SameSite=Strict cookie and redirects to the same URL without the token, so it leaves the address bar
  and the history. Every request must carry the token, in that cookie or as `Authorization: Bearer`,
  compared in constant time; without it the answer is 403 with one line and nothing else.
- **CSRF.** Every POST also needs: an Origin, when the browser sends one, naming this server; a
  `Sec-Fetch-Site` that is not cross-site; and, when the token came as a cookie, a CSRF token (a form
  field `csrf` or header `X-CSRF-Token`) equal to a second HttpOnly SameSite=Strict cookie. Pages carry
  that value; another site can neither read it nor make a browser send a Bearer header.
- **DNS rebinding.** On loopback the Host header must be 127.0.0.1, localhost or [::1] with our port.
- **Only ao's data.** Static files come from a list made at start-up of the package's `static/` dir
  (a path not on that list is 404, so `..` and its encodings lead nowhere); session pages and actions
  only for sessions in the store; approvals only by a well-formed id.
- **Not for the agent.** The agent runs with the user's uid and can reach 127.0.0.1:PORT, but it has no
  token: the token lives in this process's memory (and the token file, which is the user's and belongs
  outside what the jail shows: not under $AO_HOME/bin, cache or worktrees, nor in a workspace). It is
  never written under $AO_HOME. A page from the agent's own web server cannot post here (Origin, CSRF).
- **Known limit.** Browsers do not scope cookies by port: another server on 127.0.0.1 that the browser
  visits is sent the cookie. The token changes on every start (unless a token file is used), and the
  cookie lasts only as long as the browser session.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http import cookies
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from supervisor.errors import FatalError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FORBIDDEN = b"403 forbidden: this needs the dashboard's token; open the URL `ao dashboard` printed\n"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> str:
    """The token in PATH, which must be a regular 0600 (or stricter) file of ours; created with a new token
    when missing, so `--token-file F` works on the first run."""
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise FatalError(f"cannot create token file {path}: {exc.strerror}; pick a writable path") from None
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(new_token() + "\n")
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError as exc:
        raise FatalError(f"cannot read token file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FatalError(f"token file {path} is not a regular file; point --token-file at a 0600 file")
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise FatalError(f"token file {path} is readable by others (mode {st.st_mode & 0o777:o}); "
                         f"run `chmod 600 {path}`")
    token = path.read_text().strip()
    if len(token) < 16 or any(c.isspace() for c in token):
        raise FatalError(f"token file {path} must hold one token of 16 or more characters and no spaces")
    return token


def choose_token(host: str, token_file: str | None) -> str:
    """The token for a server on HOST: the token file's, else (loopback only) a fresh one."""
    if token_file:
        return read_token_file(Path(token_file))
    if not is_loopback(host):
        raise FatalError(f"--host {host} is reachable from other machines; it needs --token-file F "
                         "(or dashboard.token_file), a 0600 file holding the token")
    return new_token()


def same(a: str | None, b: str) -> bool:
    """Constant-time equality; a missing value never matches."""
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Guard:
    """The token, CSRF and Host checks as ASGI middleware around the app."""

    app: ASGIApp
    token: str
    port: int
    loopback: bool = True
    cookie: str = field(init=False)
    csrf_cookie: str = field(init=False)

    def __post_init__(self) -> None:
        # browsers share cookies across ports: the port in the name keeps two dashboards apart
        self.cookie = f"ao_dashboard_{self.port}"
        self.csrf_cookie = f"ao_csrf_{self.port}"

    def allowed_hosts(self) -> set[str]:
        return {f"{h}:{self.port}" for h in ("127.0.0.1", "localhost", "[::1]")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        jar = _cookies(headers.get("cookie", ""))
        if self.loopback and headers.get("host", "") not in self.allowed_hosts():
            await _plain(send, 403, FORBIDDEN)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if "token" in query and scope["method"] in ("GET", "HEAD"):
            await self._first_visit(scope, send, query)
            return
        bearer = headers.get("authorization", "")
        by_bearer = bearer.startswith("Bearer ") and same(bearer[len("Bearer "):].strip(), self.token)
        if not (by_bearer or same(jar.get(self.cookie), self.token)):
            await _plain(send, 403, FORBIDDEN)
            return
        csrf = jar.get(self.csrf_cookie)
        if scope["method"] not in ("GET", "HEAD"):
            if not self._same_origin(headers):
                await _plain(send, 403, b"403 forbidden: cross-site request\n")
                return
            if not by_bearer:
                sent = headers.get(CSRF_HEADER) or await _form_field(scope, receive, CSRF_FIELD)
                if csrf is None or not same(sent, csrf):
                    await _plain(send, 403, b"403 forbidden: missing or wrong CSRF token; reload the page\n")
                    return
        fresh = None
        if csrf is None:  # a Bearer client, or a cookie jar that lost the second cookie: pages need one
            csrf = fresh = secrets.token_urlsafe(24)
        scope.setdefault("state", {})["csrf"] = csrf

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self._set_cookie(self.csrf_cookie, fresh)]
            await send(message)

        read = scope["state"].get("body")
        await self.app(scope, receive if read is None else _replay(read, receive), send_with_cookie)

    async def _first_visit(self, scope: Scope, send: Send, query: dict[str, str]) -> None:
        if not same(query.pop("token"), self.token):
            await _plain(send, 403, FORBIDDEN)
            return
        # only our own path: `//evil.example/?token=` must not become an open redirect
        path = "/" + scope.get("path", "/").lstrip("/")
        location = path + ("?" + urlencode(query) if query else "")
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", location.encode("latin-1", "replace")), (b"cache-control", b"no-store"),
            (b"referrer-policy", b"no-referrer"),
            self._set_cookie(self.cookie, self.token), self._set_cookie(self.csrf_cookie, secrets.token_urlsafe(24))]})
        await send({"type": "http.response.body", "body": b""})

    def _same_origin(self, headers: dict[str, str]) -> bool:
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return False
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser's cross-site form (browsers send Origin on every POST)
        return origin in (f"http://{headers.get('host', '')}", f"https://{headers.get('host', '')}")

    @staticmethod
    def _set_cookie(name: str, value: str) -> tuple[bytes, bytes]:
        return b"set-cookie", f"{name}={value}; Path=/; HttpOnly; SameSite=Strict".encode()


def _cookies(header: str) -> dict[str, str]:
    jar: cookies.SimpleCookie = cookies.SimpleCookie()
    try:
        jar.load(header)
    except cookies.CookieError:
        return {}
    return {k: v.value for k, v in jar.items()}


MAX_FORM = 64 * 1024


async def _form_field(scope: Scope, receive: Receive, name: str) -> str | None:
    """One field of an urlencoded body; the body is kept so the app reads it again (`_replay`)."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_FORM:
            break
    scope.setdefault("state", {})["body"] = body
    if not scope_content_type(scope).startswith("application/x-www-form-urlencoded"):
        return None
    fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return fields.get(name)


def scope_content_type(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key.lower() == b"content-type":
            return str(value.decode("latin-1").lower())
    return ""


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that first hands the app the body the guard already read, then the real stream (disconnects)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
