"""Runtimes by name, from the one registry (`supervisor.registry.RUNTIMES`) that config validation, the
CLI, spawn, the runner, kill and send all read.

A new runtime is one module defining a `Runtime` subclass as `RUNTIME`, plus one line in the registry.
Modules load only when a runtime is used, so `ao status` does not import tmux or Ray support.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from supervisor.errors import FatalError
from supervisor.registry import RUNTIMES

if TYPE_CHECKING:
    from supervisor.launch.runtimes.base import Runtime
    from supervisor.records import SessionRecord


def names() -> list[str]:
    return list(RUNTIMES)


def get(name: str) -> Runtime:
    module = RUNTIMES.get(name)
    if module is None:
        raise FatalError(f"unknown runtime {name!r} (known: {', '.join(RUNTIMES)})")
    runtime: Runtime = importlib.import_module(module).RUNTIME
    return runtime


def of(record: SessionRecord) -> Runtime:
    return get(record["runtime"])
