"""Protocol cores are sans-I/O (style convention 1): no sockets, clocks,
threads, event loops, mmaps or ambient randomness in them. Time comes in as an
argument and randomness as an injected random.Random."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_MODULES = sorted(
    [*ROOT.glob("totemd/srp/*.py"), ROOT / "totemd/codec.py", ROOT / "totemd/pg.py",
     ROOT / "totemd/pg_codec.py", ROOT / "totemd/pg_unpack.py",
     ROOT / "totemd/pg_cut.py",
     *ROOT.glob("totemd/evs/*.py"), ROOT / "objdb/store.py", ROOT / "objdb/codec.py",
     ROOT / "objdb/codec_fields.py", ROOT / "objdb/codec_responses.py"]
)
FORBIDDEN = {"socket", "time", "threading", "asyncio", "mmap", "selectors", "subprocess", "signal",
             "multiprocessing"}


def _violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module.split(".")[0]]
            if names == ["random"] and any(alias.name != "Random" for alias in node.names):
                found.append(f"line {node.lineno}: from random import anything but Random")
        else:
            names = []
        found += [f"line {node.lineno}: imports {name}" for name in names if name in FORBIDDEN]
        # Ambient randomness: random.<function>() rather than an injected Random.
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "random" and node.attr != "Random"):
            found.append(f"line {node.lineno}: uses random.{node.attr} (inject a random.Random)")
    return sorted(found, key=lambda line: int(line.split(':')[0].split()[1]))


def test_the_checker_flags_ambient_io_and_randomness():
    bad = "import time\nimport random\nx = random.random()\nfrom socket import socket\n"
    assert _violations(bad) == [
        "line 1: imports time", "line 3: uses random.random (inject a random.Random)",
        "line 4: imports socket",
    ]
    assert _violations("import random\nrng: random.Random = random.Random(3)\n") == []


@pytest.mark.parametrize("path", [p for p in CORE_MODULES if p.exists()], ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_is_sans_io(path):
    assert _violations(path.read_text()) == []
