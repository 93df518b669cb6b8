"""JSON text as the stdlib `json` module writes and reads it, through the C accelerators `json` itself
uses (`_json`), without importing `json`: its `re` and `enum` cost ~5 ms, which an answer served in
20-150 ms (`ao watch`'s client, a stored `ao cost` answer) should not spend. An interpreter without
CPython's accelerator falls back to `json`.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing costs 3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any


class _ScanContext:
    """What `_json.make_scanner` reads from a `json.JSONDecoder`: its defaults, NaN and Infinity refused."""

    strict = True
    object_hook = object_pairs_hook = parse_constant = array_hook = None
    parse_float, parse_int = float, int


def _unserializable(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: Any, sort_keys: bool = False, default: Any = None) -> str:
    """`json.dumps(obj, sort_keys=sort_keys, default=default)`."""
    try:
        from _json import encode_basestring_ascii, make_encoder

        encode = make_encoder(None, default or _unserializable, encode_basestring_ascii, None, ": ", ", ",
                              sort_keys, False, True)
    except (ImportError, AttributeError, TypeError):  # an interpreter without CPython's accelerator
        import json

        return json.dumps(obj, sort_keys=sort_keys, default=default)
    return "".join(encode(obj, 0))


def loads(text: bytes) -> Any:
    """`json.loads(text)` for one JSON value alone in `text` (UTF-8); None for anything else, NaN and
    Infinity included (nothing here writes them)."""
    try:
        from _json import make_scanner

        scan = make_scanner(_ScanContext())  # type: ignore[arg-type]  # it reads only the attributes
    except (ImportError, AttributeError, TypeError):
        import json

        try:
            return json.loads(text)
        except ValueError:
            return None
    try:
        doc = text.decode("utf-8")
        value, end = scan(doc, 0)
    except (ValueError, TypeError, StopIteration, RecursionError):
        return None
    return value if end == len(doc) else None


def framed(raw: bytes) -> tuple[dict[str, Any], memoryview] | None:
    """A JSON header line, then a body of the header's `body_len` bytes (an answer-cache entry, a
    watcher's answer): (header, a view of the body, not a copy of up to a few dozen MB); None when the
    header is not a JSON object or the body is not exactly that long."""
    nl = raw.find(b"\n")
    if nl < 0:
        return None
    header = loads(raw[:nl])
    body = memoryview(raw)[nl + 1:]
    if not isinstance(header, dict) or header.get("body_len") != len(body):
        return None
    return header, body
