"""Wake `ao status --watch` when a rollout or an events file changes, via watchdog, not polling."""
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
