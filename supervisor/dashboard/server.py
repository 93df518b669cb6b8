"""Serving the dashboard: `serve` for `ao dashboard`, `run` for the resident `ao watch --dashboard`.

The socket is bound before the URL is printed, so `--port 0` prints the port the kernel picked. The
token stays in this process's memory (see `security` for the whole model).
"""
from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from supervisor.config import Config
from supervisor.errors import FatalError

INSTALL_HINT = "the dashboard needs starlette and uvicorn: pip install 'ao-supervisor[dashboard]'"


@dataclass(frozen=True)
class Listening:
    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"


def check_installed() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise FatalError(INSTALL_HINT) from None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FatalError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port (0 picks a free one)"
                         ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def settings(cfg: Config, host: str | None = None, port: int | None = None,
             token_file: str | None = None) -> tuple[str, int, str | None]:
    """Host, port and token file: the arguments, else the config's `dashboard:` keys."""
    section = cfg.data.get("dashboard") or {}
    return (host or section.get("host") or "127.0.0.1", int(section.get("port", 8787) if port is None else port),
            token_file or section.get("token_file"))


def run_on(cfg: Config, sock: socket.socket, listening: Listening, stop: threading.Event) -> None:
    """Serve on SOCK until STOP is set (in any thread: uvicorn installs no signal handlers off the main one)."""
    import uvicorn

    from supervisor.dashboard.app import make_app

    app = make_app(cfg, listening.token, listening.port, listening.host, stop)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=1, ws="none")
    server = uvicorn.Server(config)

    def watch_stop() -> None:
        stop.wait()
        server.should_exit = True

    threading.Thread(target=watch_stop, name="dashboard-stop", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        sock.close()


def warn_if_exposed(host: str, echo: Callable[[str], None]) -> None:
    from supervisor.dashboard.security import is_loopback

    if not is_loopback(host):
        echo(f"warning: the dashboard listens on {host}, reachable from other machines; anyone with the "
             "token controls your agents, and the traffic is plain HTTP")


def prepare(cfg: Config, host: str | None, port: int | None, token_file: str | None,
            echo: Callable[[str], None]) -> tuple[socket.socket, Listening]:
    from supervisor.dashboard.security import choose_token

    check_installed()
    host, port, token_file = settings(cfg, host, port, token_file)
    token = choose_token(host, token_file)  # refuses a reachable host without a token file, before binding
    warn_if_exposed(host, echo)
    sock = bind(host, port)
    return sock, Listening(host, sock.getsockname()[1], token)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run(cfg: Config, stop: threading.Event, echo: Callable[[str], None] = _stderr) -> None:
    """The resident process's dashboard (`ao watch --dashboard`): serve until STOP is set; the URL goes to ECHO."""
    sock, listening = prepare(cfg, None, None, None, echo)
    echo(f"dashboard: {listening.url}")
    run_on(cfg, sock, listening, stop)


def serve(cfg: Config, host: str | None, port: int | None, open_browser: bool, token_file: str | None,
          echo: Callable[[str], None] = print) -> int:
    """`ao dashboard`: print the URL with its token, open a browser unless told not to, serve until ^C."""
    sock, listening = prepare(cfg, host, port, token_file, _stderr)
    echo(f"ao dashboard: {listening.url}")
    echo("(^C stops it; the token works until then)")
    if open_browser:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(listening.url,), daemon=True).start()
    stop = threading.Event()
    try:
        run_on(cfg, sock, listening, stop)
    except KeyboardInterrupt:
        stop.set()
    return 0
