"""The package's modules import each other without a cycle, counting imports inside functions
too: each module imports on its own, in any order, and layers stay layers."""

import ast
from pathlib import Path

import study

PACKAGE = Path(study.__file__).parent


def _imports(path: Path) -> set[str]:
    """The study.* modules a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("study"):
            found |= ({f"study.{a.name}" for a in node.names} if node.module == "study"
                      else {node.module})
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("study.")}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in the graph, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            if cycle := visit(imported, [*path, module]):
                return cycle
        done.add(module)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, []))), None)


def test_no_module_of_the_package_takes_part_in_an_import_cycle() -> None:
    graph = {f"study.{p.stem}": _imports(p) for p in PACKAGE.glob("*.py")}
    assert len(graph) > 15 and graph["study.sweep"] >= {"study.storage", "study.engine"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
