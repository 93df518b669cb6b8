"""The `ao` program's first code: ^C or SIGTERM while ao is still starting ends it with one line.

Nothing has been made yet at that point, so exiting at once is safe; once the CLI is loaded, ^C
raises KeyboardInterrupt again and every command unwinds (a spawn takes back what it made).

`ao status` and `ao cost` with arguments the fast path fully understands run without click (P4, P2:
they are run on every glance at the fleet), asking `ao watch` first when one runs; everything else,
and every error click must word, goes through click.
"""
from __future__ import annotations

import _signal  # `signal` builds its enums at import (~4.5 ms of every start); the handlers need none
import os
import sys


def _while_starting(_signum: int, _frame: object) -> None:
    os.write(2, b"ao: interrupted\n")
    os._exit(130)


def _finish(code: int) -> None:
    """Exit with `code`. An answer written whole (see fast_args.served) skips the interpreter's teardown:
    about 3 ms of a 20 ms stored answer, 15-20 ms of a cold one; anything else exits the usual way."""
    from supervisor.report import fast_args

    if fast_args.served:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            raise SystemExit(code) from None  # the usual way reports it
        os._exit(code)
    raise SystemExit(code)


def main() -> None:
    _signal.signal(_signal.SIGINT, _while_starting)
    _signal.signal(_signal.SIGTERM, _while_starting)
    if sys.argv[1:2] == ["status"]:
        from supervisor.report.status_view import fast_status

        code = fast_status(sys.argv[2:])  # sets ^C and SIGTERM to unwind once it handles them
        if code is not None:
            _finish(code)
    elif sys.argv[1:2] == ["cost"]:
        from supervisor.report.cost_view import fast_cost

        code = fast_cost(sys.argv[2:])
        if code is not None:
            _finish(code)
    from supervisor.report.cli import main as cli_main  # the imports are most of ao's start-up

    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    cli_main()  # sets its own SIGTERM handler
