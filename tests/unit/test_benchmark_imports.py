"""Benchmarks import the installed package, never `tests/`, and never edit `sys.path`.

What the tests and the benchmarks share lives in `mailmanager.testing`; a benchmark that
reached into `tests/` (or into another benchmark) would only run from the repository root
with the path patched. The benchmarks are scripts outside mypy and pytest, so this reads
their source.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
ALLOWED = ("mailmanager", "connectors")


def imported_modules(tree: ast.AST) -> list[str]:
    """Every module an `import` or `from ... import` names, at any depth."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def test_benchmarks_import_only_the_package_and_libraries() -> None:
    scripts = sorted(BENCHMARKS.glob("*.py"))
    assert scripts
    bad = [
        f"{path.name}: {module}"
        for path in scripts
        for module in imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if module.split(".")[0] in ("tests", "benchmarks")
    ]
    assert not bad, "benchmarks import from tests/ or benchmarks/:\n" + "\n".join(bad)


def test_benchmarks_leave_sys_path_alone() -> None:
    bad = [
        f"{path.name}: {text}"
        for path in sorted(BENCHMARKS.glob("*.py"))
        for text in path.read_text(encoding="utf-8").splitlines()
        if "sys.path" in text or '"PYTHONPATH"' in text
    ]
    assert not bad, "benchmarks patch the import path:\n" + "\n".join(bad)


def test_child_processes_run_package_modules() -> None:
    """`python -m X` children name modules of the package (the fakes run that way)."""
    for path in sorted(BENCHMARKS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.List):
                continue
            items = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for flag, module in itertools.pairwise(items):
                if flag == "-m" and isinstance(module, str):
                    assert module.split(".")[0] in ALLOWED, f"{path.name}: -m {module}"
