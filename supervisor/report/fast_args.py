"""The arguments the click-free fast paths (`ao status`, `ao cost`) accept, split the one way both need.

Anything a fast path does not fully understand gives None, so click parses it and words the error:
an unknown or repeated option, a missing value, a value that looks like an option.
"""
from __future__ import annotations

# Set by a fast path whose answer is written whole (from `ao watch`, a stored answer, or computed with
# every database closed and every worker reaped): the process then holds no database, thread or temp
# file, and entry.py ends it without the teardown.
served = False


def split(argv: list[str], flags: tuple[str, ...],
          valued: tuple[str, ...]) -> tuple[dict[str, str | bool], list[str]] | None:
    """({option: True or its value}, positional arguments), or None to leave ARGV to click."""
    options: dict[str, str | bool] = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in options:
            return None
        if name in flags and not eq:
            options[name] = True
        elif name in valued:
            if not eq:
                if i >= len(argv):
                    return None
                value = argv[i]
                i += 1
                if value.startswith("-"):  # `--project --json`: how click reads it is click's to say
                    return None
            options[name] = value
        else:
            return None
    return options, positional
