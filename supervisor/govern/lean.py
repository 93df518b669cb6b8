"""json and regex for the guard's hot path without importing the `json` and `re` modules.

`import json` pulls in `re`, `enum`, `functools` and `collections`: measured here that is about as
long as the interpreter's own start-up. The C accelerators behind both (`_json`, `_sre`) load in
well under a millisecond, so the guard uses them directly:
- loads/dumps drive `_json`'s scanner and encoder, the same code `json` itself runs;
- regexes are compiled by `re` at launch (policy.compile_policy) into `_sre` programs stored in the
  session policy. They are only used when the interpreter's `_sre.MAGIC` and version match;
  otherwise, and for anything unusual, this falls back to the real modules.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
    import _sre  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other Python implementations
    _json = _sre = None  # type: ignore[assignment]


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
    memo: dict[str, str] = {}


_scanner = _json.make_scanner(_ScanContext()) if _json else None  # type: ignore[arg-type]
_WHITESPACE = " \t\n\r"


def loads(text: str | bytes) -> Any:
    if _scanner is None:
        import json

        return json.loads(text)
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    start, end = 0, len(text)
    while start < end and text[start] in _WHITESPACE:
        start += 1
    try:
        value, stop = _scanner(text, start)
    except (StopIteration, ValueError, SystemError):
        stop = -1  # the C scanner reports errors through json.decoder; let json word them
    while 0 <= stop < end and text[stop] in _WHITESPACE:
        stop += 1
    if stop != end:
        import json

        return json.loads(text)  # raises json.JSONDecodeError (a ValueError) with the position
    return value


def _unserializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encoder = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii, None, ":", ",",
                              False, False, True) if _json else None


def dumps(value: Any) -> str:
    """Compact JSON (separators ',' and ':'), ASCII only."""
    if _encoder is None or isinstance(value, str):
        import json

        return json.dumps(value, separators=(",", ":"))
    return "".join(_encoder(value, 0))


def regex_program(pattern: str) -> dict[str, Any]:
    """Compile at launch, with `re`, what `compiled_regex` turns back into a pattern in the guard."""
    from re import _compiler, _parser  # type: ignore[attr-defined]

    parsed = _parser.parse(pattern, 0)
    code = _compiler._code(parsed, 0)
    groupindex = dict(parsed.state.groupdict)
    indexgroup = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    return {"pattern": pattern, "flags": parsed.state.flags, "code": list(code),
            "groups": parsed.state.groups - 1, "groupindex": groupindex, "indexgroup": indexgroup,
            "magic": _sre.MAGIC, "python": list(sys.version_info[:3])}


_cache: dict[str, Any] = {}


def compiled_regex(pattern: str, program: dict[str, Any] | None = None) -> Any:
    """A compiled pattern; from the stored `_sre` program when it fits this interpreter, else via `re`."""
    found = _cache.get(pattern)
    if found is not None:
        return found
    if program and _sre is not None and program.get("pattern") == pattern \
            and program.get("magic") == _sre.MAGIC and program.get("python") == list(sys.version_info[:3]):
        found = _sre.compile(pattern, program["flags"], program["code"], program["groups"],
                             program["groupindex"], tuple(program["indexgroup"]))
    else:
        import re

        found = re.compile(pattern)
    _cache[pattern] = found
    return found
