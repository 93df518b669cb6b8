"""`ao status --watch`: wake when a rollout or an events file changes (watchdog, not polling), and draw
each frame so it fits the pane."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def changes(folders: list[Path]) -> Iterator[threading.Event]:
    """An event set whenever a file under any existing folder is created or modified."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    changed = threading.Event()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("created", "modified", "moved"):
                changed.set()

    observer = Observer()
    for folder in folders:
        if folder.is_dir():
            observer.schedule(Handler(), str(folder), recursive=True)
    observer.start()
    try:
        yield changed
    finally:
        observer.stop()
        observer.join(timeout=2)


CLEAR = "\x1b[H\x1b[2J"


def frame(title: str, body: str, width: int | None, height: int | None) -> str:
    """Pure: one screen, cleared first, title on top, no line wider than `width` and at most `height - 1` lines.

    One line is left free because the final newline would otherwise scroll the title off a full pane.
    """
    from supervisor.report.views import clip

    lines = [title, *body.splitlines()]
    if height is not None and len(lines) > height - 1:
        keep = max(1, height - 2)
        lines = [*lines[:keep], f"… {len(lines) - keep} more lines"]
    return CLEAR + "\n".join(clip(line, width) for line in lines) + "\n"
