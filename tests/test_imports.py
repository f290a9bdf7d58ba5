"""Every module of the package imports, and every ``from softmask... import name`` in it (at
module level or inside a function) names something that exists: a lazy import in a path no other
test takes (``serve repo --graphs tensorrt`` building plans, a TensorRT host) fails here on CPU."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import softmask

PACKAGE = Path(softmask.__file__).resolve().parent


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="softmask."))


def test_every_module_imports():
    failures = {}
    for name in _modules():
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - reported per module below
            failures[name] = f"{type(error).__name__}: {error}"
    assert not failures, failures


def test_every_softmask_import_resolves():
    unresolved = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if node.module != "softmask" and not node.module.startswith("softmask."):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                    unresolved.append(f"{where}: from {node.module} import {alias.name}")
    assert not unresolved, unresolved
