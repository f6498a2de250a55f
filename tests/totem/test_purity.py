"""Convention 1 and 2 of style.md: the protocol core imports no I/O, clock,
randomness or concurrency module (time and randomness are injected)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import totemd.srp

FORBIDDEN = {"socket", "time", "random", "threading", "asyncio", "mmap", "selectors", "os"}
CORE_FILES = sorted(Path(totemd.srp.__file__).parent.glob("*.py")) + [
    Path(totemd.srp.__file__).parent.parent / "codec.py"]


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_module_imports_nothing_ambient(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    # A typing-only import (under TYPE_CHECKING) is allowed.
    guarded = {alias.name for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", "") == "TYPE_CHECKING"
               for stmt in node.body if isinstance(stmt, ast.Import) for alias in stmt.names}
    assert not (imported - guarded) & FORBIDDEN


def test_core_modules_stay_small():
    for path in CORE_FILES:
        assert len(path.read_text().splitlines()) <= 700, path.name
