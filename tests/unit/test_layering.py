"""Dependencies run one way: core/ and store/ know nothing of Airflow (read from the source, so
an import hidden inside a function counts too). tests/integration/test_import_cost.py checks the
same by importing them in a fresh interpreter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "etlops_airflow"


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _closure(start: str) -> tuple[set[str], set[str]]:
    """(our modules reached from ``start``, every outside module they import)."""
    ours: set[str] = set()
    outside: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in ours:
            continue
        path = _module_file(name)
        if path is None:
            continue
        ours.add(name)
        for imported in _imports(path, name):
            if imported == "etlops_airflow" or imported.startswith("etlops_airflow."):
                todo.append(imported)
            else:
                outside.add(imported.split(".")[0])
    return ours, outside


def _modules_under(sub: str) -> list[str]:
    root = PACKAGE / sub
    return sorted(
        "etlops_airflow." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in root.rglob("*.py")
    )


@pytest.mark.parametrize("module", _modules_under("core") + _modules_under("store"))
def test_core_and_store_never_import_airflow(module: str) -> None:
    ours, outside = _closure(module)
    assert "airflow" not in outside, f"{module} reaches Airflow"
    allowed = ("etlops_airflow.core", "etlops_airflow.store", "etlops_airflow.exceptions")
    strays = sorted(m for m in ours if m != "etlops_airflow" and not m.startswith(allowed))
    assert strays == [], f"{module} reaches adapter modules {strays}"


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from airflow.sdk import conf\n    return conf\n")
    assert "airflow.sdk" in _imports(probe, "etlops_airflow.probe")
