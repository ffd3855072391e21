"""The imports point one way in every service: domain <- application <- adapters <-
entrypoints (and the one wiring module), with no cycle; the shared runtime package imports
neither service, and neither service imports the other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

SERVICES = ROOT / "services"
#: A module may import from its own layer and the layers listed after it.
ORDER = ("entrypoints", "cli", "bootstrap", "adapters", "application", "domain")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


@pytest.mark.parametrize("package", ["ledger", "notifier"])
def test_imports_point_inwards(package: str) -> None:
    """No module imports a layer outside its own (domain imports no application, adapters
    no entrypoints or wiring), and no service imports the other."""
    other = {"ledger": "notifier", "notifier": "ledger"}[package]
    root = SERVICES / package / package
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        own = _layer(module)
        for imported in _imports(path):
            if imported.split(".")[0] == other:
                problems.append(f"{module} imports {imported} (the other service)")
            if imported.split(".")[0] != package or own is None:
                continue
            target = _layer(imported)
            if target is not None and ORDER.index(target) < ORDER.index(own):
                problems.append(f"{module} ({own}) imports {imported} ({target})")
    assert not problems, "\n".join(problems)


def test_the_runtime_package_belongs_to_neither_service() -> None:
    """coop_runtime imports nothing from the ledger or the notifier."""
    root = SERVICES / "runtime" / "coop_runtime"
    bad = [
        (path.name, imported)
        for path in root.rglob("*.py")
        for imported in _imports(path)
        if imported.split(".")[0] in {"ledger", "notifier"}
    ]
    assert not bad, bad
