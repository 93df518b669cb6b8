"""The one error type ao raises for problems a user can fix, and the one place errors become output.

Every command returns or raises `FatalError`. `error_handler()` turns that into one line and its exit
code; any other exception is a bug: its traceback goes to `$AO_HOME/logs/ao.log` and the user sees one
line saying where (as pre-commit does). ^C prints one line and exits 130.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED_EXIT = 130


class FatalError(RuntimeError):
    """A clear, user-facing failure: the CLI prints it and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def log_path() -> str:
    from supervisor import paths

    return str(paths.ao_home() / "logs" / "ao.log")


def _log_traceback(exc: BaseException) -> str | None:
    """Append the traceback with the command line to ao.log; returns the log's path, or None."""
    import os
    import time
    import traceback

    path = log_path()
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} ao {' '.join(sys.argv[1:])}\n{text}").encode())
        finally:
            os.close(fd)
    except OSError:
        return None
    return path


@contextmanager
def error_handler(passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Exit with one line for every failure; never a traceback on the terminal.

    `passthrough` names exceptions that are control flow for the caller (click's exit and usage errors).
    """
    try:
        yield
    except passthrough:
        raise
    except FatalError as exc:
        sys.stderr.write(f"ao: error: {exc}\n")
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("ao: interrupted\n")
        raise SystemExit(INTERRUPTED_EXIT) from None
    except SystemExit:
        raise
    except Exception as exc:
        where = _log_traceback(exc)
        detail = f"; the traceback is in {where}" if where else ""
        sys.stderr.write(f"ao: unexpected error: {type(exc).__name__}: {exc}{detail}\n")
        raise SystemExit(3) from None
