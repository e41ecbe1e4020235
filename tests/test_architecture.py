"""The package structure: imports run one way, at the top of the file, and modules stay small.

Layers, lowest first. A module may import its own package, any package of a lower layer and,
within one layer, a peer package as long as the package graph has no cycle:

    core (config, errors, utils, markdown, mlflow_store, profiles) -> data, inference -> validation
    -> features -> models, generators -> tuning, calibration -> tracking -> export -> serving
    -> reporting -> stages, cluster, workspace -> cli

and no module imports itself back through others (no circle of modules, within a package or
across). Every way of naming a module counts: ``import lusaug.a.b``, ``from lusaug.a import b``,
``from lusaug import a``, relative imports (``from ..serving import app``),
``importlib.import_module("lusaug.a")`` and imports under ``if TYPE_CHECKING:``.

``lusaug`` imports sit at the top of a module. The exceptions are the CLI command modules
(``cli.py`` and ``<pkg>/commands.py``), which defer library imports so that ``lusaug --help``
does not pay for torch, mlflow and Great Expectations.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from lusaug.core.config import PROJ_ROOT

SRC = PROJ_ROOT / "src" / "lusaug"
LAYERS = [
    {"__init__", "core"},
    {"data", "inference"},
    {"validation"},
    {"features"},
    {"models", "generators"},
    {"tuning", "calibration"},
    {"tracking"},
    {"export"},
    {"serving"},
    {"reporting"},
    {"stages", "cluster", "workspace"},
    {"cli"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
DEFERRED_OK = {"cli.py", "commands.py"}  # CLI entry points: fast `lusaug --help`
MAX_LINES = 600  # a module this long needs a very good reason; none has one today
IMPORTLIB_CALLS = {"import_module", "__import__"}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _module_name(path: Path) -> str:
    """``lusaug.a.b`` of ``src/lusaug/a/b.py`` (``lusaug.a`` of ``a/__init__.py``)."""
    parts = ("lusaug", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_file(name: str) -> Path | None:
    """The source file of ``lusaug.a.b`` (a module or a package's __init__), None if absent."""
    rel = Path(*name.split(".")[1:])
    for candidate in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _absolute(module: str | None, level: int, importer: Path) -> str:
    """The absolute name a (possibly relative) import names, seen from ``importer``."""
    if level == 0:
        return module or ""
    package = _module_name(importer).split(".")
    if importer.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _targets(name: str, imported: list[str]) -> list[str]:
    """The lusaug modules ``from name import a, b`` loads: each ``name.a`` that is a module
    (``from lusaug import data``), and ``name`` itself when it gives anything else."""
    if not name.startswith("lusaug"):
        return []
    found = [f"{name}.{a}" for a in imported if _module_file(f"{name}.{a}") is not None]
    return found if len(found) == len(imported) else [*found, name]


@dataclass(frozen=True)
class Import:
    module: str  # the lusaug module it loads (``lusaug.a.b``)
    at_top: bool  # at module level (``if TYPE_CHECKING:`` blocks count as top level)
    line: int


def _importlib_target(node: ast.AST, path: Path) -> str | None:
    """The module an ``importlib.import_module("...")`` / ``__import__("...")`` call names."""
    if not (isinstance(node, ast.Call) and node.args):
        return None
    func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    arg = node.args[0]
    if func not in IMPORTLIB_CALLS or not isinstance(arg, ast.Constant):
        return None
    if not isinstance(arg.value, str):
        return None
    level = len(arg.value) - len(arg.value.lstrip("."))
    return _absolute(arg.value.lstrip(".") or None, level, path)


def _imports(path: Path) -> list[Import]:
    """Every lusaug module ``path`` imports, whichever way it names it."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, ast.If):
            top |= {id(n) for n in node.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("lusaug")]
        elif isinstance(node, ast.ImportFrom):
            absolute = _absolute(node.module, node.level, path)
            names = _targets(absolute, [a.name for a in node.names])
        elif (target := _importlib_target(node, path)) is not None:
            names = [target] if target.startswith("lusaug") else []
        found += [Import(n, id(node) in top, node.lineno) for n in names if n != "lusaug"]
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the lusaug modules it imports."""
    return {
        _module_name(path): {i.module for i in _imports(path) if _module_file(i.module)}
        for path in _modules()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles of a graph: its strongly connected components of more than one node, and
    nodes that point at themselves (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_reader_sees_every_way_of_naming_a_module():
    """Relative imports, ``from lusaug import x`` and importlib are imports like any other."""
    probe = SRC / "serving" / "routes" / "_probe_of_test_architecture.py"
    probe.write_text(
        "import importlib\n"
        "from ..app import build\n"
        "from ... import export\n"
        "from lusaug import reporting\n"
        "from lusaug.core.config import load_params\n"
        "def f():\n"
        "    importlib.import_module('lusaug.stages.train')\n"
    )
    try:
        found = {i.module: i.at_top for i in _imports(probe)}
    finally:
        probe.unlink()
    assert found == {
        "lusaug.serving.app": True,
        "lusaug.export": True,
        "lusaug.reporting": True,
        "lusaug.core.config": True,
        "lusaug.stages.train": False,
    }
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_one_way_and_sit_at_the_top(path):
    own = _package(path)
    assert own in LAYER, f"{own} has no layer in tests/test_architecture.py"
    for imp in _imports(path):
        package = imp.module.split(".")[1]
        where = f"{path.relative_to(SRC)}:{imp.line}"
        assert package in LAYER, f"{where} imports unknown package lusaug.{package}"
        assert LAYER[package] <= LAYER[own], (
            f"{where} ({own}, layer {LAYER[own]}) imports {imp.module} "
            f"(layer {LAYER[package]}): imports must run from higher layers to lower ones"
        )
        if path.name not in DEFERRED_OK:
            assert imp.at_top, f"{where} imports {imp.module} inside a function"


def test_no_circle_of_modules():
    """No module imports itself back through others, inside a package or across packages (a
    circle means they share a type or helper that belongs below all of them)."""
    circles = _cycles(_graph())
    assert not circles, f"import circles: {circles}"


def test_packages_do_not_import_each_other_in_a_circle():
    edges: dict[str, set[str]] = {}
    for path in _modules():
        own = _package(path)
        for imp in _imports(path):
            package = imp.module.split(".")[1]
            if package != own:
                edges.setdefault(own, set()).add(package)
    circles = _cycles(edges)
    assert not circles, f"package import circles: {circles}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines; split it by concern"


def test_every_stage_script_has_one_shape():
    """pipelines/<stage>.py: a docstring, parse_args(argv) with argparse, main(argv)."""
    for script in sorted((PROJ_ROOT / "pipelines").glob("*.py")):
        tree = ast.parse(script.read_text())
        assert ast.get_docstring(tree), f"{script.name} has no docstring"
        funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert {"parse_args", "main"} <= set(funcs), f"{script.name}: needs parse_args and main"
        src = script.read_text()
        assert "argparse" in src and "sys.argv" not in src.replace("sys.argv[1:]", ""), script
        assert "stage_errors(" in src, f"{script.name}: errors go through stage_errors()"


def _code_free(path: Path) -> bool:
    """A package __init__ with nothing but its docstring: nothing in it can change a stage."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _imported_files(script: Path) -> set[Path]:
    """Every lusaug source file ``script`` imports, transitively (function-level imports too),
    plus the package __init__ files Python runs on the way."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for imp in _imports(path):
            parts = imp.module.split(".")
            for i in range(2, len(parts) + 1):  # parent packages run their __init__
                f = _module_file(".".join(parts[:i]))
                if f is not None and f not in seen:
                    seen.add(f)
                    todo.append(f)
    return seen


def test_every_stage_depends_on_all_the_code_it_runs():
    """dvc.yaml names package folders; a module a stage imports but does not list would let
    `dvc repro` skip the stage after that module changed, and code it lists but never runs
    would re-run it for nothing."""
    import yaml

    stages = yaml.safe_load((PROJ_ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        spec = stage.get("do", stage)
        script = PROJ_ROOT / spec["cmd"].split()[1]
        deps = [d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]]
        assert script.relative_to(PROJ_ROOT).as_posix() in deps, f"{name}: its script"
        covered = [PROJ_ROOT / d for d in deps]
        missing = sorted(
            f.relative_to(PROJ_ROOT).as_posix()
            for f in _imported_files(script)
            if not (f.name == "__init__.py" and _code_free(f))
            and not any(f == c or c in f.parents for c in covered)
        )
        assert not missing, f"stage {name} runs code its deps do not list: {missing}"
        imported = _imported_files(script)
        unused = [
            d
            for d in deps
            if d.startswith("src/")
            and not any(PROJ_ROOT / d == f or PROJ_ROOT / d in f.parents for f in imported)
        ]
        assert not unused, f"stage {name} lists code it never runs (re-runs for nothing): {unused}"
