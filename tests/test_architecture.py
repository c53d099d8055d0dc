"""The architecture's rules that import-linter cannot see (docs/architecture.md).

`lint-imports` holds the layers and forbids cycles between modules. These tests hold the other
rule: a module uses another module's public names only -- never ``from ._x import _private`` and
never ``_x._private`` -- so each layer's seam is what it documents.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import modelkit

PACKAGE = Path(modelkit.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])]) if level else module or ""


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _private_uses(path: Path) -> list[str]:
    importer = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()  # local names bound to modelkit modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(importer, is_package, node.level, node.module)
            if not source.startswith("modelkit"):
                continue
            for alias in node.names:
                if _is_module(f"{source}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {source}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("modelkit"):
                    modules.add(alias.asname or alias.name.partition(".")[0])
    found += [
        f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in modules
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_modules_use_only_public_names_of_other_modules(path: Path) -> None:
    assert _private_uses(path) == []


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    # The rule must be able to fail: a module written like the ones it forbids.
    offender = PACKAGE / "_architecture_probe.py"
    offender.write_text(
        "from ._model import _type_adapter\nfrom . import _spec\n\nX = _spec._Spec\n",
        encoding="utf-8",
    )
    try:
        found = _private_uses(offender)
    finally:
        offender.unlink()
    assert found == [
        "_architecture_probe.py:1 imports modelkit._model._type_adapter",
        "_architecture_probe.py:4 uses _spec._Spec",
    ]
