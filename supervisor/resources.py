"""Shipped data files: wrappers/ and templates/ live at the repository top and inside the wheel."""
from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path


def data_dir(name: str) -> Traversable:
    """`supervisor.<name>` in an installed wheel; the top-level folder in a source checkout."""
    try:
        return resources.files(f"supervisor.{name}")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / name


def read_text(folder: str, filename: str) -> str:
    return data_dir(folder).joinpath(filename).read_text()
