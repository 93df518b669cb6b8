"""The strict line shapes of the usage scan (see scan.py), decoded by msgspec, and the record a worker returns.

Kept apart from scan.py so that a small read (a warm run's few appended lines) does not pay for importing
msgspec and building these decoders; a cold scan of many files does, once.
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from supervisor.observe import codex_format as cf

_CTX = 4  # scan._CTX: a turn_context line (else a thread_settings_applied event)


# --- strict shapes --------------------------------------------------------------------------------
# orjson reads an integer outside [-2**63, 2**64) as a float, which the fold counts as 0: a line with an
# int outside int64 (msgspec bounds go no further)
# takes the generic path.
_Int = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]


class _Usage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    input_tokens: _Int | None = None
    cached_input_tokens: _Int | None = None
    cache_write_input_tokens: _Int | None = None
    output_tokens: _Int | None = None
    reasoning_output_tokens: _Int | None = None
    total_tokens: _Int | None = None


class _RecordPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    thread_id: str | None = None
    turn_id: str | None = None
    session_id: str | None = None
    root_turn_id: str | None = None
    response_id: str | None = None
    usage: _Usage | None = None
    turn_token_usage: _Usage | None = None
    thread_token_usage: _Usage | None = None


class RecordLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    timestamp: str | None = None
    ordinal: _Int | None = None
    type: str | None = None
    payload: _RecordPayload | None = None


_NULL = msgspec.Raw(b"null")


class _Provenance(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    type: str | None = None
    model: str | None = None


class _Instructions(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    text: msgspec.Raw = _NULL   # skipped, not built: most of the line's bytes (a Raw cannot be in a union)
    provenance: _Provenance | None = None


class _Window(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    window_id: str | None = None


class _HistoryBase(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    thread_id: str | None = None
    end_ordinal_exclusive: _Int | None = None
    end_byte_offset: _Int | None = None


class _Git(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    commit_hash: str | None = None
    branch: str | None = None
    repository_url: str | None = None


class _MetaPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    account_scoped: bool | None = None
    session_id: str | None = None
    id: str | None = None
    timestamp: str | None = None
    cwd: str | None = None
    runtime_workspace_roots: list[str] | None = None
    originator: str | None = None
    cli_version: str | None = None
    source: str | None = None          # a subagent's is an object: the generic path reads it
    thread_source: str | None = None
    model_provider: str | None = None
    base_instructions: _Instructions | None = None
    history_mode: str | None = None
    context_window: _Window | None = None
    forked_from_id: str | None = None
    forked_from_ordinal_exclusive: _Int | None = None
    parent_thread_id: str | None = None
    subagent_history_start_ordinal: _Int | None = None
    history_base: _HistoryBase | None = None
    multi_agent_version: str | None = None
    git: _Git | None = None
    instructions: str | None = None


class _MetaLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    timestamp: str | None = None
    ordinal: _Int | None = None
    type: str | None = None
    payload: _MetaPayload | None = None


class _Kind(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    type: str | None = None


class _Sandbox(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    type: str | None = None
    writable_roots: list[str] | None = None
    network_access: bool | None = None
    exclude_tmpdir_env_var: bool | None = None
    exclude_slash_tmp: bool | None = None


class _ModeSettings(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    model: str | None = None
    reasoning_effort: str | None = None
    developer_instructions: str | None = None


class _Mode(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    mode: str | None = None
    settings: _ModeSettings | None = None


class _ContextPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    turn_id: str | None = None
    root_turn_id: str | None = None
    disabled_plugin_ids: list[str] | None = None
    cwd: str | None = None
    approval_policy: str | None = None
    approvals_reviewer: str | None = None
    permission_profile: _Kind | None = None
    model: str | None = None
    effort: str | None = None
    collaboration_mode: _Mode | None = None
    multi_agent_version: str | None = None
    realtime_active: bool | None = None
    summary: str | None = None
    sandbox_policy: _Sandbox | None = None


class _ContextLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    timestamp: str | None = None
    ordinal: _Int | None = None
    type: str | None = None
    payload: _ContextPayload | None = None


class _ThreadSettings(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    model: str | None = None
    model_provider_id: str | None = None
    approval_policy: str | None = None
    approvals_reviewer: str | None = None
    requested_approvals_reviewer: str | None = None
    permission_profile: _Kind | None = None
    cwd: str | None = None
    runtime_workspace_roots: list[str] | None = None
    collaboration_mode: _Mode | None = None
    disabled_plugin_ids: list[str] | None = None


class _SettingsPayload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    type: str | None = None
    thread_id: str | None = None
    thread_settings: _ThreadSettings | None = None


class _SettingsLine(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    timestamp: str | None = None
    ordinal: _Int | None = None
    type: str | None = None
    payload: _SettingsPayload | None = None


record_decode = msgspec.json.Decoder(RecordLine).decode
_context_decode = msgspec.json.Decoder(_ContextLine).decode
_settings_decode = msgspec.json.Decoder(_SettingsLine).decode
_meta_decode = msgspec.json.Decoder(_MetaLine).decode
DecodeError = (msgspec.DecodeError, msgspec.ValidationError)


def model_switch(raw: bytes, kind: int) -> tuple[bool, str | None]:
    """(True, the model) of a plain turn_context or thread_settings_applied line (cf.model_of), else (False, None)."""
    try:
        if kind == _CTX:
            ctx = _context_decode(raw)
            if ctx.type != cf.Line.TURN_CONTEXT or ctx.payload is None:
                return False, None
            return True, ctx.payload.model or None
        settings = _settings_decode(raw)
    except DecodeError:
        return False, None
    p = settings.payload
    if settings.type != cf.Line.EVENT_MSG or p is None or p.type != cf.Event.THREAD_SETTINGS_APPLIED:
        return False, None
    return True, p.thread_settings.model or None if p.thread_settings is not None else None


_TEXTS: dict[int, bytes] = {}   # length -> the last instructions text found valid (sessions share it)


def _plain_text(raw: msgspec.Raw) -> bool:
    """Whether a skipped instructions text is a JSON string (or null) of valid UTF-8, as orjson demands.

    msgspec checks neither in what it skips; everything else in a strict line it decodes, and checks.
    """
    text = memoryview(raw)
    if text[:1] != b'"':
        return text == b"null"
    body = bytes(text)  # a copy, then one memcmp: memoryview == bytes compares item by item (44 us for 22 KB)
    known = _TEXTS.get(len(body))
    if known is not None and body == known:  # instead of checking 20 KB of UTF-8 again
        return True
    if not body.isascii():
        try:
            body.decode()
        except UnicodeDecodeError:
            return False
    if len(_TEXTS) > 64:
        _TEXTS.clear()
    _TEXTS[len(body)] = body
    return True


def meta(raw: bytes) -> dict[str, Any] | None:
    """A plain session_meta line reduced to the fields `codex_format.session_meta` reads, else None."""
    try:
        line = _meta_decode(raw)
    except DecodeError:
        return None
    p = line.payload
    if line.type != cf.Line.SESSION_META or p is None:
        return None
    if p.base_instructions is not None and not _plain_text(p.base_instructions.text):
        return None
    base = p.history_base
    return {cf.TYPE: line.type, cf.TIMESTAMP: line.timestamp, cf.PAYLOAD: {
        "id": p.id, "cwd": p.cwd, cf.TIMESTAMP: p.timestamp, cf.FORKED_FROM_ID: p.forked_from_id,
        cf.PARENT_THREAD_ID: p.parent_thread_id, cf.SOURCE: p.source,
        cf.HISTORY_START_ORDINAL: p.subagent_history_start_ordinal,
        cf.HISTORY_BASE: None if base is None else {cf.END_BYTE_OFFSET: base.end_byte_offset}}}


class FileRead(msgspec.Struct, array_like=True, gc=False):
    """One whole new rollout folded on its own: what the index writes for it once dedup allows.

    A msgspec struct sent as an array: workers return thousands of these, and pickling dataclasses
    cost the parent a quarter of a second per gigabyte.
    """
    path: str
    created: str = ""
    failed: str | None = None       # the warning when it could not be opened; nothing is written
    deferred: bool = False          # the index reads it itself, in order (its fold needs other rollouts)
    stat: tuple[int, int, int, int] = (0, 0, 0, 0)   # size, mtime_ns, inode, dev of what was read
    offset: int = 0
    line_no: int = 0
    head: bytes = b""
    pending: int = 0
    fold: bytes = b""               # FileFold.state() as JSON
    thread_id: str | None = None
    cwd: str | None = None
    first_total: str | None = None
    warnings: list[str] = []
    duplicates: int = 0             # responses repeated within the file
    sums: list[tuple[str, str, int, int, int, int, int]] = []   # model, bucket, i, c, o, r, responses
    ids: list[str] = []             # response ids in file order, each once


encode_reads = msgspec.msgpack.Encoder().encode
encode_json = msgspec.json.Encoder().encode
decode_reads = msgspec.msgpack.Decoder(list[FileRead]).decode
