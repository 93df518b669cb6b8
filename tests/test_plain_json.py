"""supervisor.plain_json writes and reads what the stdlib json module does, without importing it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import plain_json

VALUES = [
    {}, [], "", 0, -1, 2**70, 1.5, -0.0, 1e300, True, False, None, "é ☃ \u0000 \x1b \ud83d\ude00 \"\\/",
    {"b": 1, "a": [1, {"d": None, "c": "x"}], "é": {"z": [], "y": {}}},
    [[[[[["deep"]]]]]], {"hint": {"db": [["/a/ao.db", 2049, 12, 4096, 1764800000000000000, 1764800000000000001]]}},
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("sort_keys", [False, True])
def test_the_same_text_as_json_dumps(value: object, sort_keys: bool) -> None:
    assert plain_json.dumps(value, sort_keys=sort_keys) == json.dumps(value, sort_keys=sort_keys)
    assert plain_json.loads(plain_json.dumps(value).encode()) == json.loads(json.dumps(value))


def test_a_watch_message_and_its_headers_read_as_json_does() -> None:
    odd = "caf\u00e9 \u2603 \U0001f600 \\ \" \n\t\x00\x1b \udcff"  # a lone surrogate: a surrogateescape'd path
    message = {"env": {"HOME": odd, "TZ": None}, "args": {"all_rollouts": True, "width": 120, "by": "day"},
               "config": [None, True], "list": [1, -2, 3.5, [], {}]}
    assert plain_json.dumps(message) == json.dumps(message)
    for header in ({"code": 0, "direct": True, "out_len": 0, "body_len": 0, "error": ""},
                   {"declined": odd}, {"code": 1, "out_len": 3, "body_len": 7}):
        assert plain_json.loads(json.dumps(header).encode()) == header


def test_default_is_asked_for_what_json_cannot_write() -> None:
    value = {"path": Path("/tmp/x"), "set": {1}}
    assert plain_json.dumps(value, sort_keys=True, default=str) == json.dumps(value, sort_keys=True, default=str)
    with pytest.raises(TypeError, match="not JSON serializable"):
        plain_json.dumps({"path": Path("/tmp/x")})


@pytest.mark.parametrize("text", [b"", b"{", b'{"a":1} x', b"{}{}", b"NaN", b"[Infinity]", b'{"a":-Infinity}',
                                  b"\xff\xfe", b'"\\ud800', b" {}", b"[1,]", b'{"a" 1}', b"01"])
def test_anything_but_one_plain_json_value_is_none(text: bytes) -> None:
    assert plain_json.loads(text) is None


def test_a_stored_answer_is_served_without_importing_json(tmp_path: Path) -> None:
    """The warm `ao cost` path: the answer cache's key and header go through plain_json, not json (re, enum)."""
    code = ("import sys\n"
            "from supervisor import plain_json\n"
            "from supervisor.observe import answer_cache\n"
            "answer_cache.key_of('cost-all', {'by': 'session', 'pricing': {'m': 1}})\n"
            "plain_json.framed(b'{\"body_len\": 2}\\nhi')\n"
            "print(sorted(m for m in ('json', 're', 'enum') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_frame_is_a_json_object_line_and_exactly_its_body() -> None:
    header, body = plain_json.framed(b'{"body_len": 3, "code": 0}\nabc')  # type: ignore[misc]
    assert header == {"body_len": 3, "code": 0} and bytes(body) == b"abc"
    for raw in (b'{"body_len": 3}\nab', b'{"body_len": 3}\nabcd', b'{"body_len": 3}abc', b'[3]\nabc',
                b'{"body_len": "3"}\nabc', b"\nabc", b""):
        assert plain_json.framed(raw) is None, raw
