"""The package's imports follow the data: read from the source, no server needed.

Two rules, both over *runtime* imports (an import under ``if TYPE_CHECKING:`` names a type
and runs nothing, so it does not count):

- a pipeline stage never imports a later stage (source → decode → transform → partition →
  batch → sink): each stage hands its output to the next through what the wiring gives it;
- no two parts of the package import each other, directly or round a longer loop (a part
  is a subpackage, or a module at the top of ``processor/``);
- the roles keep their places: the shared core (``core/``) imports no other part; nothing
  but the command line imports the commands (``commands/``) or the runtime (``runtime/``;
  a worker process is a runtime too); and a command reaches a stage only through its entry
  points (the decoder and what it raises), never its internals.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "processor"
STAGES = ("source", "decode", "transform", "partition", "batch", "sink")
# The stages' modules a command may import: check-event runs the decoder as the decode
# stage does, and waits for a schema as it does; cdc-contract reads back the newest change
# events of a topic as the mirrors of cdc.mirrors do.
STAGE_ENTRY_POINTS = frozenset({"processor.decode.decoder", "processor.decode.framed",
                                "processor.decode.change_topics"})


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    found: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _exists(module: str) -> bool:
    base = PACKAGE.parent / module.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def runtime_imports() -> dict[str, set[str]]:
    """Module → the ``processor`` modules it imports when it runs."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("processor")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if not base.startswith("processor"):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if _exists(sub) else base)
        targets.discard(module)
        targets.discard("processor")  # the package's own __init__ holds only its version
        graph[module] = targets
    return graph


def part(module: str) -> str:
    """The subpackage or top-level module a module belongs to."""
    return module.split(".")[1] if "." in module else module


def stage_of(module: str) -> int | None:
    name = part(module)
    return STAGES.index(name) if name in STAGES else None


def later_stage_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every stage module ``a`` importing a module of a later stage ``b``."""
    bad = []
    for module, targets in graph.items():
        mine = stage_of(module)
        if mine is None:
            continue
        for target in sorted(targets):
            theirs = stage_of(target)
            if theirs is not None and theirs > mine:
                bad.append(f"{module} -> {target}")
    return bad


def part_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of parts that import each other (Tarjan's strongly connected components)."""
    parts: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            if part(target) != part(module):
                parts[part(module)].add(part(target))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(parts.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted({part(m) for m in graph}):
        if node not in index:
            visit(node)
    return cycles


def _cycle_evidence(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                  if part(m) in group and part(t) in group and part(m) != part(t))


def test_no_stage_imports_a_later_stage() -> None:
    assert later_stage_imports(runtime_imports()) == []


def test_no_two_parts_import_each_other() -> None:
    graph = runtime_imports()
    cycles = part_cycles(graph)
    assert cycles == [], [_cycle_evidence(graph, g) for g in cycles]


def role_violations(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import that crosses a role's boundary the wrong way."""
    bad = []
    for module, targets in graph.items():
        mine = part(module)
        for target in sorted(targets):
            theirs = part(target)
            if theirs == mine:
                continue
            if mine == "core" or (theirs == "commands" and mine != "cli") or (
                    theirs == "runtime" and mine not in ("cli", "workers")) or (
                    mine == "commands" and theirs in STAGES
                    and target not in STAGE_ENTRY_POINTS):
                bad.append(f"{module} -> {target}")
    return bad


def test_the_roles_keep_their_places() -> None:
    assert role_violations(runtime_imports()) == []


def test_the_role_check_sees_a_violation() -> None:
    graph = {
        "processor.core.retry": {"processor.sink.lane"},
        "processor.sink.lane": {"processor.commands.lag", "processor.runtime.app"},
        "processor.commands.lag": {"processor.source.consumer", "processor.decode.decoder"},
        "processor.cli": {"processor.commands.lag", "processor.runtime.app"},
    }
    assert role_violations(graph) == [
        "processor.core.retry -> processor.sink.lane",
        "processor.sink.lane -> processor.commands.lag",
        "processor.sink.lane -> processor.runtime.app",
        "processor.commands.lag -> processor.source.consumer",
    ]


def test_the_checks_see_a_violation() -> None:
    # The rules on a made-up graph: a decode module importing the sink, and a loop.
    graph = {
        "processor.decode.stage": {"processor.sink.writer", "processor.core.records"},
        "processor.sink.writer": {"processor.core.records"},
        "processor.core.records": set(),
        "processor.observe.wiring": {"processor.core.stalls"},
        "processor.core.stalls": {"processor.observe.health"},
    }
    assert later_stage_imports(graph) == ["processor.decode.stage -> processor.sink.writer"]
    assert part_cycles(graph) == [["core", "observe"]]


@pytest.mark.parametrize("module", ["processor.sink.writer", "processor.decode.stage",
                                    "processor.source.consumer"])
def test_the_reader_finds_the_imports(module: str) -> None:
    # A reader that found nothing would pass both rules vacuously.
    assert runtime_imports()[module]
