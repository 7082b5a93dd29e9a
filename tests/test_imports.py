"""The package's layers stay layers: a module imports only from its own layer and the layers
below it (study/__init__.py lists them), counting imports inside functions too, and no module
takes part in an import cycle."""

import ast
from pathlib import Path

import study

PACKAGE = Path(study.__file__).parent
# each layer and the layers it may import from (besides itself)
BASE = {"study.errors", "study.outcomes", "study.paths"}
LAYERS: dict[str, set[str]] = {
    "base": set(),
    "training": {"base"},
    "design": {"base", "training"},
    "runs": {"base", "training", "design"},
    "stats": {"base", "design"},  # statistics never train and never touch a storage
    "reporting": {"base", "design", "stats"},
    "api": {"base", "design", "runs", "stats", "reporting"},
    "commands": {"base", "training", "design", "runs", "stats", "reporting", "api"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    """The layer of a module of the package (its sub-package, or base, api, commands)."""
    if module in BASE:
        return "base"
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS and parts[1] != "base"):
        return parts[1]
    return "commands"  # study.sweep, study.train, study.report, study.bench, study.cli


def _violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} ({layer(module)}) imports {imported} ({layer(imported)})"
            for module, imports in sorted(graph.items()) for imported in sorted(imports)
            if layer(imported) != layer(module) and layer(imported) not in LAYERS[layer(module)]]


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


def test_every_module_imports_only_from_its_layer_and_those_below() -> None:
    graph = _graph()
    assert {layer(m) for m in graph} == set(LAYERS)  # every layer exists, and no other
    assert graph["study.sweep"] >= {"study.runs.workers", "study.runs.storage"}
    assert _violations(graph) == []


def test_the_layer_check_finds_an_import_up_the_layers() -> None:
    upward = {"study.stats.fit": {"study.reporting.plots", "study.design.spec"},
              "study.training.engine": {"study.runs.queue"}, "study.api": {"study.sweep"}}
    assert _violations(upward) == [
        "study.api (api) imports study.sweep (commands)",
        "study.stats.fit (stats) imports study.reporting.plots (reporting)",
        "study.training.engine (training) imports study.runs.queue (runs)"]
    assert layer("study.errors") == "base" and layer("study.cli") == "commands"
    assert layer("study.stats") == "stats" and layer("study.api") == "api"


def test_no_module_of_the_package_takes_part_in_an_import_cycle() -> None:
    graph = _graph()
    assert len(graph) > 30
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
