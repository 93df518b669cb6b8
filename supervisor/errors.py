"""The one error type ao raises for problems a user can fix, and the one place errors become output.

Every command returns or raises `FatalError`. `error_handler()` turns that into one line and its exit
code; any other exception is a bug: its traceback goes to `$AO_HOME/logs/ao.log` and the user sees one
line saying where (as pre-commit does). ^C prints one line and exits 130.
"""
from __future__ import annotations

import sys

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


class error_handler:  # lower case: used as `with error_handler():`, like the function it was
    """Exit with one line for every failure; never a traceback on the terminal.

    `passthrough` names exceptions that are control flow for the caller (click's exit and usage errors).
    A class rather than a contextlib generator: contextlib, and the collections and functools it
    imports, were ~3 ms of every warm `ao cost` and `ao status`.
    """

    __slots__ = ("passthrough",)

    def __init__(self, passthrough: tuple[type[BaseException], ...] = ()) -> None:
        self.passthrough = passthrough

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if exc is None or isinstance(exc, self.passthrough) or isinstance(exc, SystemExit):
            return  # nothing raised, or raised on as it is
        if isinstance(exc, FatalError):
            sys.stderr.write(f"ao: error: {exc}\n")
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.write("ao: interrupted\n")
            raise SystemExit(INTERRUPTED_EXIT) from None
        if isinstance(exc, Exception):
            where = _log_traceback(exc)
            detail = f"; the traceback is in {where}" if where else ""
            sys.stderr.write(f"ao: unexpected error: {type(exc).__name__}: {exc}{detail}\n")
            raise SystemExit(3) from None
        # another BaseException (GeneratorExit, ...) is raised on, as the generator let it through
