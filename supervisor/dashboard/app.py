"""The Starlette app: pages, live streams (Server-Sent Events) and the POST actions.

Reads go through `data` (the CLI's own functions); actions call the sessions and report rooms exactly as
`ao send|kill|resume|approve|deny` do. Every request has passed `security.Guard` before it gets here.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from supervisor.config import Config
from supervisor.dashboard import data, render
from supervisor.dashboard.security import MAX_FORM, Guard, is_loopback
from supervisor.errors import FatalError

STATIC = Path(__file__).resolve().parent / "static"
TICK_S = 0.5
TERMINAL_TICK_S = 0.5
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}


def static_files(root: Path = STATIC) -> dict[str, Path]:
    """Every servable file, by its path under static/: the only paths /static/ answers for."""
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and p.suffix in TYPES}


class Board:
    """The latest snapshot of the fleet, refreshed by one task, awaited by every live stream."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.snapshot = data.Snapshot()
        self.changed = asyncio.Event()
        self.lock = asyncio.Lock()

    async def refresh(self) -> data.Snapshot:
        """A fresh snapshot when a file it depends on changed (a few stat calls when nothing did)."""
        async with self.lock:
            last = self.snapshot
            fresh = await run_in_threadpool(data.refresh, self.cfg, last)
            self.snapshot = fresh
            if fresh.version != last.version:
                self.changed.set()
                self.changed = asyncio.Event()
            return fresh

    async def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:  # one bad read must not end the live board; the next tick tries again
                pass
            await asyncio.sleep(TICK_S)

    async def current(self) -> data.Snapshot:
        return self.snapshot if self.snapshot.version else await self.refresh()


def make_app(cfg: Config, token: str, port: int, host: str = "127.0.0.1",
             stop: threading.Event | None = None) -> Guard:
    """The app behind its guard. STOP (set by `ao watch` or ^C) ends the live streams and the refresher."""
    stop = stop or threading.Event()
    board = Board(cfg)
    files = static_files()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(board.run(stop))
        try:
            yield
        finally:
            stop.set()
            task.cancel()

    def html(text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status, headers={"content-security-policy": CSP, "cache-control": "no-store",
                                                   "x-content-type-options": "nosniff",
                                                   "referrer-policy": "no-referrer"})

    async def index(request: Request) -> Response:
        filters = data.Filters.of(request.query_params)
        snap = await board.refresh()
        rows = [r for r in snap.rows if filters.keep(r)]
        body = render.board(rows, snap.approvals, filters, [r["project"] for r in snap.rows if r.get("project")],
                            filters.query(), snap.error)
        return html(render.page("board", body, request.state.csrf))

    async def stream(request: Request, events: Callable[[], AsyncIterator[bytes]]) -> StreamingResponse:
        async def guarded() -> AsyncIterator[bytes]:
            async for chunk in events():
                if stop.is_set() or await request.is_disconnected():
                    return
                yield chunk

        return StreamingResponse(guarded(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def board_events(request: Request) -> Response:
        filters = data.Filters.of(request.query_params)

        async def events() -> AsyncIterator[bytes]:
            sent = None
            while not stop.is_set():
                snap = await board.current()
                if snap.version != sent:
                    sent = snap.version
                    rows = [r for r in snap.rows if filters.keep(r)]
                    yield render.sse("board", render.board_body(rows, snap.error))
                    yield render.sse("approvals", render.approvals_block(snap.approvals))
                else:
                    yield b": tick\n\n"  # finds a closed connection
                try:
                    await asyncio.wait_for(board.changed.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass

        return await stream(request, events)

    def session_or_404(request: Request) -> Any:
        record = data.find_session(request.path_params["sid"])
        if record is None:
            return None
        return record

    def live_parts(record: Any) -> tuple[dict[str, Any], dict[str, str]]:
        row = data.session_row(cfg, record)
        approvals = [a for a in data.pending_approvals() if a.get("session") == record["session"]]
        receipts, warnings = data.receipts(record)
        return row, render.session_live(row, approvals, receipts, warnings)

    async def session_page(request: Request) -> Response:
        record = await run_in_threadpool(session_or_404, request)
        if record is None:
            return html(render.page("unknown", "<p>unknown session</p>", request.state.csrf), 404)
        row, live = await run_in_threadpool(live_parts, record)
        points = await run_in_threadpool(data.cost_over_time, cfg, record)
        terminal = await run_in_threadpool(_has_terminal, record)
        live_ok = row.get("status") not in data.TERMINAL_STATUSES and row.get("activity") != "exited"
        head = ('<link rel=stylesheet href="/static/vendor/xterm.css">'
                '<script src="/static/vendor/xterm.js" defer></script>') if terminal else ""
        return html(render.page(str(row.get("name") or row["session"]),
                                render.session_page(row, live, points, terminal, live_ok), request.state.csrf, head))

    async def session_live(request: Request) -> Response:
        record = await run_in_threadpool(session_or_404, request)
        if record is None:
            return PlainTextResponse("unknown session\n", 404)

        async def events() -> AsyncIterator[bytes]:
            sent: dict[str, str] = {}
            while not stop.is_set():
                fresh = await run_in_threadpool(data.find_session, record["session"])
                if fresh is None:
                    return
                _, parts = await run_in_threadpool(live_parts, fresh)
                changed = False
                for name, text in parts.items():
                    if sent.get(name) != text:
                        sent[name] = text
                        changed = True
                        yield render.sse(name, text)
                if not changed:
                    yield b": tick\n\n"
                try:
                    await asyncio.wait_for(board.changed.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass

        return await stream(request, events)

    async def terminal_events(request: Request) -> Response:
        record = await run_in_threadpool(session_or_404, request)
        if record is None:
            return PlainTextResponse("unknown session\n", 404)

        async def events() -> AsyncIterator[bytes]:
            last = None
            while not stop.is_set():
                screen = await run_in_threadpool(data.terminal_screen, record)
                if screen is None:
                    return
                if screen != last:
                    last = screen
                    # JSON keeps escapes and newlines on one `data:` line; xterm wants \r\n
                    yield render.sse("screen", json.dumps("\x1b[H\x1b[2J" + screen.rstrip("\n").replace("\n", "\r\n")))
                else:
                    yield b": tick\n\n"
                await asyncio.sleep(TERMINAL_TICK_S)

        return await stream(request, events)

    async def exec_events(request: Request) -> Response:
        record = await run_in_threadpool(session_or_404, request)
        if record is None:
            return PlainTextResponse("unknown session\n", 404)

        async def events() -> AsyncIterator[bytes]:
            offset = 0
            while not stop.is_set():
                lines, offset = await run_in_threadpool(data.exec_lines, record, offset)
                for line in lines:
                    yield render.sse("line", json.dumps(line))
                if not lines:
                    yield b": tick\n\n"
                await asyncio.sleep(TICK_S)

        return await stream(request, events)

    async def cost(request: Request) -> Response:
        by_day, by_model = await run_in_threadpool(data.cost_reports, cfg)
        return html(render.page("cost", render.cost_page(by_day, by_model), request.state.csrf))

    async def static(request: Request) -> Response:
        path = files.get(request.path_params["path"])
        if path is None:
            return PlainTextResponse("not found\n", 404)
        return FileResponse(path, media_type=TYPES[path.suffix], headers={"cache-control": "no-cache",
                                                                          "x-content-type-options": "nosniff"})

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM:
            raise FatalError(f"the form is larger than {MAX_FORM // 1024} KB")
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    async def act(request: Request, work: Callable[[dict[str, str]], str]) -> Response:
        """Run a blocking action in a worker thread; the answer is a flash message (htmx swaps it in)."""
        try:
            fields = await form(request)
            text = await run_in_threadpool(work, fields)
        except FatalError as exc:
            return html(render.flash(str(exc), ok=False), 409)
        await board.refresh()
        return html(render.flash(text))

    def record_of(request: Request) -> Any:
        record = data.find_session(request.path_params["sid"])
        if record is None:
            raise FatalError(f"unknown session {request.path_params['sid']!r}")
        return record

    async def send(request: Request) -> Response:
        def work(fields: dict[str, str]) -> str:
            from supervisor.sessions import control

            message = fields.get("message", "").strip()
            if not message:
                raise FatalError("the message is empty; type what the agent should do")
            record, live = control.send(cfg, record_of(request)["session"], message)
            return f"delivered to {record['session']}" if live else f"{record['session']} resumed with the message"

        return await act(request, work)

    async def kill(request: Request) -> Response:
        def work(_fields: dict[str, str]) -> str:
            from supervisor.sessions import control

            record = control.kill(record_of(request)["session"])
            return f"{record['session']} killed ({record['status']})"

        return await act(request, work)

    async def resume(request: Request) -> Response:
        def work(fields: dict[str, str]) -> str:
            from supervisor.sessions import spawn

            record = spawn.resume(cfg, record_of(request)["session"], fields.get("message") or None, None)
            return f"{record['session']} resuming thread {record['thread_id']} ({record['runtime']})"

        return await act(request, work)

    def approval_id(request: Request) -> str:
        aid = str(request.path_params["aid"])
        if not data.APPROVAL_ID.fullmatch(aid):
            raise FatalError(f"unknown approval {aid!r}")
        return aid

    async def approve(request: Request) -> Response:
        def work(_fields: dict[str, str]) -> str:
            from supervisor.report import cmd_govern

            record = cmd_govern.approve(approval_id(request))
            return f"approved {record['id']}: {cmd_govern.describe_command(record)}"

        return await act(request, work)

    async def deny(request: Request) -> Response:
        def work(fields: dict[str, str]) -> str:
            from supervisor.report import cmd_govern

            record = cmd_govern.deny(approval_id(request), fields.get("reason") or None)
            return f"denied {record['id']}: {cmd_govern.describe_command(record)}"

        return await act(request, work)

    routes = [
        Route("/", index), Route("/cost", cost), Route("/events/board", board_events),
        Route("/session/{sid}", session_page), Route("/session/{sid}/live", session_live),
        Route("/session/{sid}/terminal", terminal_events), Route("/session/{sid}/events", exec_events),
        Route("/session/{sid}/send", send, methods=["POST"]), Route("/session/{sid}/kill", kill, methods=["POST"]),
        Route("/session/{sid}/resume", resume, methods=["POST"]),
        Route("/approval/{aid}/approve", approve, methods=["POST"]),
        Route("/approval/{aid}/deny", deny, methods=["POST"]),
        Route("/static/{path:path}", static),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return Guard(app, token, port, loopback=is_loopback(host))


def _has_terminal(record: Any) -> bool:
    from supervisor.launch import runtimes
    from supervisor.launch.runtimes import tmux

    try:
        return isinstance(runtimes.of(record), tmux.TmuxRuntime)
    except FatalError:
        return False
