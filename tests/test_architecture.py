"""The import graph reads one way: plugins are leaves, the recipe is data, no cycles.

A generator or writer module imported in a fresh interpreter must not load the engine
(synthesizer, recipe, run); and no defectsynth module may import, directly or through
others, a module that imports it back. The cycle check reads the source (``ast``), so it
sees imports inside functions too, which a run-time check would miss until they run;
imports under ``if TYPE_CHECKING:`` are not imports at run time and are left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from defectsynth.plugins import BUILTIN_PLUGINS

PACKAGE = Path(__file__).resolve().parent.parent / "defectsynth"
# the engine: what a plugin must not load. The run's package face and its manifest
# records (run/__init__.py, run/manifest.py) import nothing of it, so writers may use them
ENGINE = (
    "defectsynth.synthesizer",
    "defectsynth.recipe",
    "defectsynth.build",
    "defectsynth.run.driver",
    "defectsynth.run.worker",
    "defectsynth.run.plan",
    "defectsynth.run.preview",
)

# Imports against the flow, kept on purpose: none any more (``Recipe.check`` and
# ``Recipe.synthesizer`` are gone; callers use the builder and ``Synthesizer.from_recipe``).
COMPAT_EDGES: set[tuple[str, str]] = set()


def _engine_loaded_by(module: str) -> list[str]:
    code = (
        f"import sys, {module}\n"
        f"print(','.join(m for m in {ENGINE!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return [m for m in done.stdout.strip().split(",") if m]


@pytest.mark.parametrize(
    "module", [*BUILTIN_PLUGINS, "defectsynth.api", "defectsynth.defects._steel"]
)
def test_plugin_module_does_not_load_the_engine(module: str) -> None:
    assert _engine_loaded_by(module) == [], f"{module} imports the engine"


def test_package_face_is_lazy() -> None:
    import defectsynth

    assert _engine_loaded_by("defectsynth") == []
    assert set(defectsynth.__all__) == {*defectsynth._FACE, "__version__"}
    for name in defectsynth.__all__:
        assert getattr(defectsynth, name) is not None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The defectsynth modules ``path`` imports anywhere in its body (not for typing)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # ``from . import textures`` imports a module; ``from .generator import Layer``
            # a name of a module (whose package, run first, is no edge of its own)
            submodules = {f"{target}.{a.name}" for a in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    """Module -> the defectsynth modules it imports, without :data:`COMPAT_EDGES`."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {name: _imports(path, modules) for name, path in files.items()}
    for a, b in COMPAT_EDGES:
        graph[a].discard(b)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                cycle = walk(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = walk(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    # a package's __init__ runs before any of its modules, but it is only an edge when
    # it imports them; the package face imports lazily (``__getattr__``)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_recipe_is_data() -> None:
    """recipe.py builds nothing: it imports neither the Synthesizer, the builder nor the
    run; the builder sits above the recipe (it reads files: load_recipe) and hands the
    Synthesizer class it is given its prepared entries, without importing it."""
    graph = import_graph()
    engine = {"defectsynth.synthesizer", "defectsynth.build", *ENGINE[3:]}
    assert not graph["defectsynth.recipe"] & engine
    assert "defectsynth.synthesizer" not in graph["defectsynth.build"]


def test_textures_all_is_its_public_helpers_and_each_is_documented() -> None:
    import inspect

    from defectsynth import textures

    public = {
        name for name, obj in vars(textures).items()
        if not name.startswith("_") and getattr(obj, "__module__", None) == textures.__name__
    }
    assert set(textures.__all__) == public
    guide = (PACKAGE.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
    missing = [n for n in textures.__all__ if f"`{n}" not in guide and f" {n}(" not in guide]
    assert not missing, f"not in docs/plugins.md: {missing}"
    assert all(inspect.getdoc(getattr(textures, n)) for n in textures.__all__)
