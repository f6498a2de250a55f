"""Fixtures for objdb tests that need a running daemon."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from objdb.process import ObjdbProcess

CONFIG = """\
totem {
    version: 2
    cluster_name: objdbtest
    token: 3000
    transport: udpu
    secauth: off
}
nodelist {
    node {
        ring0_addr: 127.0.0.1
        nodeid: 1
    }
    node {
        ring0_addr: 127.0.0.2
        nodeid: 2
    }
}
quorum {
    provider: corosync_votequorum
}
system {
    run_dir: %(run_dir)s
}
"""


class Node:
    """A running objdb with its run directory and config file."""

    def __init__(self, process: ObjdbProcess, run_dir: Path, config_path: Path) -> None:
        self.process = process
        self.run_dir = run_dir
        self.config_path = config_path

    def coro(self, *args: str) -> list[str]:
        """argv for `coro ARGS` with this node's run dir."""
        return [sys.executable, "-m", "clients.cli", *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CORO_RUN_DIR"] = str(self.run_dir)
        return env


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """objdb started from a two-node corosync.conf, in a fresh run directory.

    One daemon per test module (starting one costs a Python start-up): tests
    use their own keys under ``app.``/``conc.``, and leave the configuration
    keys as they found them.
    """
    base = tmp_path_factory.mktemp("ob")
    run_dir = base / "run"
    config_path = base / "corosync.conf"
    config_path.write_text(CONFIG % {"run_dir": run_dir})
    process = ObjdbProcess.start(config_path=config_path, run_dir=None,
                                 local_addresses=["127.0.0.1"])
    try:
        yield Node(process, run_dir, config_path)
    finally:
        status = process.stop()
        stderr = process.stderr_text()
        process.close()
        assert status == 0, f"objdb exited with {status}: {stderr}"
