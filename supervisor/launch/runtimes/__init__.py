"""The runtime registry: the one list config validation, the CLI, launch, the runner, kill and send read.

A new runtime is one module defining a `Runtime` subclass as `RUNTIME`, plus one line here. Modules load
only when a runtime is used, so `ao status` does not import tmux or Ray support.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from supervisor.errors import FatalError

if TYPE_CHECKING:
    from supervisor.launch.runtimes.base import Runtime
    from supervisor.records import SessionRecord

# name -> module that defines RUNTIME; the first is the default for runs that need no terminal
REGISTRY: dict[str, str] = {
    "headless": "supervisor.launch.runtimes.headless",
    "tmux": "supervisor.launch.runtimes.tmux",
}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Runtime:
    module = REGISTRY.get(name)
    if module is None:
        raise FatalError(f"unknown runtime {name!r} (known: {', '.join(REGISTRY)})")
    runtime: Runtime = importlib.import_module(module).RUNTIME
    return runtime


def of(record: SessionRecord) -> Runtime:
    return get(record["runtime"])
