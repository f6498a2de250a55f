"""``coro demo`` (the IPC demonstration): it tells its story, exits 0, leaves nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tagged_shm() -> set[str]:
    tag = os.environ["CORO_RESOURCE_TAG"]
    return {name for name in os.listdir("/dev/shm") if tag in name}


@pytest.mark.multiprocess
def test_coro_demo_exits_zero_and_leaves_nothing_behind(tmp_path: Path) -> None:
    demo_tmp = tmp_path / "tmp"
    demo_tmp.mkdir()
    before = _tagged_shm()
    completed = subprocess.run(
        [sys.executable, "-m", "clients.cli", "demo", "--ipc", "--bench-duration", "0.1"],
        cwd=ROOT, env={**os.environ, "TMPDIR": str(demo_tmp), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    # The story, in order: request/response, credentials, events through poll(), bench, clean stop.
    steps = ["Starting a coroipc server", "got b'hello, coro' back",
             f"uid {os.getuid()}, gid {os.getgid()}; they are ours",
             "Event 1: poll()", "Event 3: poll()", "The client disconnected",
             "run directory is removed", "coroipc-batch", "Everything is stopped"]
    positions = [out.find(step) for step in steps]
    assert all(position >= 0 for position in positions), (steps, out)
    assert positions == sorted(positions), out
    assert "FAILED" not in out and "Left behind" not in out
    assert _tagged_shm() == before
    assert list(demo_tmp.iterdir()) == []  # run dir, zmq socket dirs: all removed


@pytest.mark.multiprocess
def test_ipc_demo_function_without_the_benchmark() -> None:
    from clients.demo import run_ipc_demo

    before = _tagged_shm()
    children_before = {child.pid for child in psutil.Process().children(recursive=True)}
    out = io.StringIO()
    assert run_ipc_demo(out, bench=False) == 0, out.getvalue()
    text = out.getvalue()
    assert "Event 3:" in text and "bench" not in text
    assert _tagged_shm() == before
    live = {child.pid for child in psutil.Process().children(recursive=True)
            if child.status() != psutil.STATUS_ZOMBIE}
    assert live <= children_before
