"""The house's shape: rooms import only downwards, no import cycles, no runtime picked by its name."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from supervisor import registry

PACKAGE = Path(__file__).resolve().parents[1] / "supervisor"
# Lowest first. A module may import its own room and any room before it, never one after it.
ROOMS = ["core", "model", "observe", "launch", "govern", "sessions", "report", "dashboard", "entry"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room_of(module: str) -> str:
    if module in ("supervisor.__main__", "supervisor.entry"):
        return "entry"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "core"


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("supervisor"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("supervisor"))
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_rooms_import_only_downwards() -> None:
    upward = []
    for module, path in MODULES.items():
        mine = ROOMS.index(room_of(module))
        for target in imports(path, top_level_only=False):
            if target in MODULES or target.rsplit(".", 1)[0] in MODULES:
                if ROOMS.index(room_of(target)) > mine:
                    upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycles_at_module_level() -> None:
    graph = {m: {t if t in MODULES else t.rsplit(".", 1)[0] for t in imports(p, top_level_only=True)} & set(MODULES)
             for m, p in MODULES.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt == node or nxt == "supervisor":
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def _names_compared(path: Path) -> list[str]:
    """Places where code compares something with a runtime's name, or keys a dict by it."""
    names = set(registry.RUNTIMES)
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        operands: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op in list(operands):
                if isinstance(op, (ast.Tuple, ast.List, ast.Set)):
                    operands.extend(op.elts)
        elif isinstance(node, ast.Dict):
            operands = [k for k in node.keys if k is not None]
        for op in operands:
            if isinstance(op, ast.Constant) and op.value in names:
                hits.append(f"{path.name}:{node.lineno}")
    return hits


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py")
                                        if "runtimes" not in p.parts and p.name != "registry.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_runtime_is_chosen_by_its_name(path: Path) -> None:
    assert _names_compared(path) == []


def test_every_registered_runtime_loads_and_says_what_it_is() -> None:
    from supervisor.launch import runtimes

    for name in registry.RUNTIMES:
        runtime = runtimes.get(name)
        assert runtime.name == name
        assert isinstance(runtime.interactive, bool) and runtime.description
