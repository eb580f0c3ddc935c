"""The package's shape: imports only run down the pipeline's floors; modules and functions stay short.

Floors, bottom to top (a module may import its own floor or lower ones, never a higher one):

    files, log, _runtime, config, metrics -> data, augment, presets -> features, models
    -> distill -> training -> compress -> evaluate -> stages -> orchestration -> cli
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "asc_keras"
FLOORS = [
    {"files", "log", "_runtime", "config", "metrics", "__init__"},
    {"data", "augment", "presets"},
    {"features", "models"},
    {"distill"},
    {"training"},
    {"compress"},
    {"evaluate"},
    {"stages"},
    {"orchestration"},
    {"cli"},
]
FLOOR_OF = {name: i for i, names in enumerate(FLOORS) for name in names}


def _part(module: str) -> str:
    """'asc_keras.training.student' -> 'training'; 'asc_keras' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        yield ".".join(rel.parts).removesuffix(".__init__"), path


def _imports(path: Path) -> set[str]:
    """Every asc_keras module ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asc_keras"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("asc_keras"))
    return out


def test_every_part_of_the_package_has_a_floor():
    parts = {_part(m) for m, _ in _modules()}
    assert parts <= set(FLOOR_OF), f"give {sorted(parts - set(FLOOR_OF))} a floor in FLOORS"


def test_no_import_runs_back_up_the_pipeline():
    wrong = []
    for module, path in _modules():
        mine = FLOOR_OF[_part(module)]
        for imported in _imports(path):
            if FLOOR_OF[_part(imported)] > mine:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("low", "high"), [("evaluate", "stages"), ("evaluate", "orchestration"),
                                           ("training", "evaluate")])  # fmt: skip
def test_named_layers_stay_apart(low, high):
    found = [f"{m} imports {i}" for m, p in _modules() if _part(m) == low
             for i in _imports(p) if _part(i) == high]  # fmt: skip
    assert not found


def test_no_module_over_350_lines_and_no_function_over_80():
    long_modules, long_functions = [], []
    for module, path in _modules():
        text = path.read_text()
        if text.count("\n") > 350:
            long_modules.append(f"{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long_functions.append(f"{module}.{node.name}: {n} lines")
    assert not long_modules and not long_functions, long_modules + long_functions
