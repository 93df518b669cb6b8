"""The one error type ao raises for problems a user can fix."""
from __future__ import annotations


class FatalError(RuntimeError):
    """A clear, user-facing failure: the CLI prints it and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
