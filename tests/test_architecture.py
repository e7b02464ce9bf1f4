"""The package's floors: no import cycle, no import running up a floor, no module over 400 lines.

The rooms of ``mini_llm`` (its subpackages and top-level modules) stand on floors; a module may import its own room
and the rooms of lower floors, never a room of its own floor or above. Every import counts, also those inside
functions and under TYPE_CHECKING: they are arrows of the design even when Python runs them late. README.md's
package map says the same thing in words.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mini_llm

PACKAGE = Path(mini_llm.__file__).parent
# Lowest floor first. A new room must be given a floor here (and a line in README.md's package map).
FLOORS: list[set[str]] = [
    {"mini_llm", "helpers", "atomic", "jsonfiles", "viz"},  # the root (__version__) and shared helpers
    {"data", "kernels"},  # corpora and tokenizer; compute kernels
    {"nn", "numpy_nn", "embeddings"},  # models
    {"train", "quant", "generation", "evaluation"},  # what works on any model or its outputs
    {"interop"},  # other libraries' and file formats' models, quantized ones (GGUF) included
    {"tasks"},  # the book's applications
    {"scaling"},  # experiments over many task runs
    {"trends"},  # chapter 8's experiments, which read the zoo and the sweep
    {"cli"},  # the command line
    {"__main__"},  # python -m mini_llm
]
FLOOR_OF = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}
MAX_LINES = 400
LONG_MODULES_ALLOWED = ("kernels",)  # hand-written kernels may be long


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mini_llm"


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The mini_llm modules that ``module`` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "mini_llm"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "mini_llm":
                continue
            for alias in node.names:  # from mini_llm.x import y: y may be a submodule
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return {name for name in found if name != module}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_every_room_has_a_floor():
    rooms = {room(name) for name in modules()}
    assert rooms - set(FLOOR_OF) == set(), "give the new room a floor in FLOORS and a line in README.md"


def test_no_import_runs_up_or_across_a_floor():
    upward = [
        f"{name} (floor {FLOOR_OF[room(name)]}) imports {target} (floor {FLOOR_OF[room(target)]})"
        for name, targets in import_graph().items()
        for target in sorted(targets)
        if room(target) != room(name) and FLOOR_OF[room(target)] >= FLOOR_OF[room(name)]
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_no_module_outside_kernels_exceeds_400_lines():
    long = {
        name: n_lines
        for name, path in modules().items()
        if room(name) not in LONG_MODULES_ALLOWED
        and (n_lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
