"""The layout, the entry point and the leak audit itself."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import conftest

ROOT = Path(__file__).resolve().parent.parent


def test_required_layout_exists():
    for name in ("setup.cfg", "Makefile", "README.md", "docs/architecture.md", ".ci/run"):
        assert (ROOT / name).is_file(), name
    for name in ("coroipc", "totemd", "objdb", "clients", "tests", "scripts"):
        assert (ROOT / name).is_dir(), name


def test_coro_help_lists_subcommands():
    result = subprocess.run(
        [sys.executable, "-m", "clients.cli", "--help"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: coro" in result.stdout
    assert "bench" in result.stdout


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_coro_version(flag):
    result = subprocess.run([sys.executable, "-m", "clients.cli", flag], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"coro cluster engine, version [0-9][^ ]* \(.*\)\n", result.stdout), result.stdout


def test_coro_without_command_prints_help_and_fails():
    result = subprocess.run(
        [sys.executable, "-m", "clients.cli"], capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 2
    assert "usage: coro" in result.stdout


def test_leak_audit_sees_tagged_segment(resource_tag):
    path = f"/dev/shm/coro-audit-{resource_tag}-{os.getpid()}"
    with open(path, "wb"):
        pass
    try:
        assert any(line.endswith(os.path.basename(path)) for line in conftest.leftovers(None))
    finally:
        os.unlink(path)
    assert not any(os.path.basename(path) in line for line in conftest.leftovers(None))


def test_leak_audit_sees_tagged_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert any(str(proc.pid) in line for line in conftest.leftovers(None))
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert not any(f"process: {proc.pid} " in line for line in conftest.leftovers(None))


def test_leak_audit_sees_socket_file(tmp_path):
    path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        assert any(str(path) in line for line in conftest.leftovers(tmp_path))
    finally:
        sock.close()
        path.unlink()
    assert not any(str(path) in line for line in conftest.leftovers(tmp_path))


def _present_commands() -> list[str]:
    from clients.cli import COMMANDS, _available
    return [name for name, (module, _help) in COMMANDS.items() if _available(module)]


@pytest.mark.parametrize("command", _present_commands())
def test_every_present_subcommand_loads_and_has_help(command):
    """A tool whose module is in the tree must load: a broken one fails here, not silently."""
    result = subprocess.run(
        [sys.executable, "-m", "clients.cli", command, "--help"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert f"usage: coro {command}" in result.stdout


def test_broken_subcommand_is_reported_not_fatal(monkeypatch):
    from clients import cli
    monkeypatch.setitem(cli.COMMANDS, "broken", ("tests.no_such_module_for_coro", "x"))
    original_available = cli._available
    monkeypatch.setattr(cli, "_available",
                        lambda module: module == "tests.no_such_module_for_coro" or original_available(module))
    real_import = cli.importlib.import_module

    def fake_import(name):
        if name == "tests.no_such_module_for_coro":
            raise ImportError("missing dependency xyz")
        return real_import(name)

    monkeypatch.setattr(cli.importlib, "import_module", fake_import)
    assert cli.main(["broken"]) == 1
