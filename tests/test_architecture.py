"""The package structure: imports run one way, at the top of the file, and modules stay small.

Layers, lowest first. A module may import its own package, any package of a lower layer and,
within one layer, a peer package as long as the package graph has no cycle:

    base (config, errors, utils, markdown, mlflow_store, profiles) -> data -> validation -> models, generators
    -> tuning -> final -> tracking -> export -> serving -> reporting -> cluster -> cli

``lusaug`` imports sit at the top of a module. The exceptions are the CLI command modules
(``cli.py`` and ``<pkg>/commands.py``), which defer library imports so that ``lusaug --help``
does not pay for torch, mlflow and Great Expectations.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lusaug.config import PROJ_ROOT

SRC = PROJ_ROOT / "src" / "lusaug"
LAYERS = [
    {"__init__", "config", "errors", "utils", "markdown", "mlflow_store", "profiles"},
    {"data"},
    {"validation"},
    {"models", "generators"},
    {"tuning"},
    {"final"},
    {"tracking"},
    {"export"},
    {"serving"},
    {"reporting"},
    {"cluster"},
    {"cli"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
DEFERRED_OK = {"cli.py", "commands.py"}  # CLI entry points: fast `lusaug --help`
MAX_LINES = 600  # a module this long needs a very good reason; none has one today


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported lusaug package, at module top level?) for every lusaug import in the tree."""
    top = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks count as top level
        if isinstance(node, ast.If):
            top |= {id(n) for n in node.body}
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "lusaug" and len(parts) > 1:
                found.append((parts[1], id(node) in top))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_one_way_and_sit_at_the_top(path):
    own = _package(path)
    assert own in LAYER, f"{own} has no layer in tests/test_architecture.py"
    tree = ast.parse(path.read_text())
    for package, at_top in _imports(tree):
        assert package in LAYER, f"{path.name} imports unknown package lusaug.{package}"
        assert LAYER[package] <= LAYER[own], (
            f"{path.relative_to(SRC)} ({own}, layer {LAYER[own]}) imports lusaug.{package} "
            f"(layer {LAYER[package]}): imports must run from higher layers to lower ones"
        )
        if path.name not in DEFERRED_OK:
            assert at_top, f"{path.relative_to(SRC)} imports lusaug.{package} inside a function"


def test_packages_of_one_layer_do_not_import_each_other_both_ways():
    edges: dict[str, set[str]] = {}
    for path in _modules():
        own = _package(path)
        for package, _ in _imports(ast.parse(path.read_text())):
            if package != own:
                edges.setdefault(own, set()).add(package)
    cycles = sorted(
        f"{a} <-> {b}" for a, targets in edges.items() for b in targets if a in edges.get(b, ())
    )
    assert not cycles, f"package import cycles: {cycles}"


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


def _module_file(name: str) -> Path | None:
    """The source file of ``lusaug.a.b`` (a module or a package's __init__), None if absent."""
    rel = Path(*name.split(".")[1:])
    for candidate in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(script: Path) -> set[Path]:
    """Every lusaug source file ``script`` imports, transitively (function-level imports too),
    plus the package __init__ files Python runs on the way."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if not name.startswith("lusaug."):
                    continue
                parts = name.split(".")
                for i in range(2, len(parts) + 1):  # parent packages run their __init__
                    f = _module_file(".".join(parts[:i]))
                    if f is not None and f not in seen:
                        seen.add(f)
                        todo.append(f)
    return seen


def test_every_stage_depends_on_all_the_code_it_runs():
    """dvc.yaml names package folders; a module a stage imports but does not list would let
    `dvc repro` skip the stage after that module changed."""
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
            if f != SRC / "__init__.py" and not any(f == c or c in f.parents for c in covered)
        )
        assert not missing, f"stage {name} runs code its deps do not list: {missing}"
