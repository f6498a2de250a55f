"""Processes that die: clients killed mid-write or mid-handshake, a killed
server, and the restart that cleans up after it."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coroipc import IpcClient, IpcServer, errors
from coroipc.server import socket_path
from tests.coroipc.services import ECHO, NO_REPLY, ServerThread, TestService, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.multiprocess


def _tagged_segments(resource_tag: str) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if resource_tag in name]


def _run_child(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.coroipc.client_child", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def served(tmp_path):
    service = TestService()
    server = IpcServer(tmp_path, [service], handshake_timeout_s=2.0)
    with ServerThread(server):
        yield server, service


def test_client_killed_mid_write_is_cleaned_up(served, tmp_path, resource_tag):
    server, service = served
    with IpcClient.connect("test", run_dir=tmp_path) as survivor:
        child = _run_child("write", str(tmp_path))
        assert child.returncode == -signal.SIGKILL and "writing" in child.stdout
        assert wait_for(lambda: len(service.disconnected) == 1)
        assert service.disconnected[0].pid != os.getpid()
        assert server.stats().connections == 1
        assert survivor.request(ECHO, b"still served", timeout=5.0) == b"still served"
    assert _tagged_segments(resource_tag) == []


@pytest.mark.parametrize("stage", ["hello", "ready"])
def test_client_killed_mid_handshake_is_cleaned_up(served, tmp_path, resource_tag, stage):
    server, _service = served
    child = _run_child("handshake", str(tmp_path), stage)
    assert child.returncode == -signal.SIGKILL and "handshaking" in child.stdout
    assert wait_for(lambda: server.stats().handshakes_failed == 1)
    assert server.stats().handshakes_pending == 0
    assert wait_for(lambda: _tagged_segments(resource_tag) == [])
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        assert client.request(ECHO, b"next", timeout=5.0) == b"next"


def _start_server_child(run_dir: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-m", "tests.coroipc.services", str(run_dir)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        child.wait()
        pytest.fail(f"server child did not start: {line!r}")
    return child


def test_server_killed_wakes_blocked_clients_then_restart_cleans_up(tmp_path, resource_tag):
    child = _start_server_child(tmp_path)
    try:
        requester = IpcClient.connect("test", run_dir=tmp_path)
        listener = IpcClient.connect("test", run_dir=tmp_path)
        outcomes: dict[str, object] = {}

        def wait_for_events() -> None:
            try:
                outcomes["events"] = list(listener.events(timeout=30.0))
            except errors.ConnectionLost as error:
                outcomes["events"] = error

        watcher = IpcClient.connect("test", run_dir=tmp_path)
        poller = select.poll()
        poller.register(watcher.fileno(), select.POLLIN)
        assert poller.poll(0) == []
        waiter = threading.Thread(target=wait_for_events)
        waiter.start()
        killer = threading.Timer(0.3, child.send_signal, (signal.SIGKILL,))
        killer.start()
        start = time.monotonic()
        with pytest.raises(errors.ConnectionLost, match="the server closed the connection"):
            requester.request(NO_REPLY, timeout=30.0)
        assert time.monotonic() - start < 5.0
        waiter.join(timeout=10)
        assert isinstance(outcomes["events"], errors.ConnectionLost)
        with pytest.raises(errors.ConnectionLost):
            requester.request(ECHO, b"again", timeout=1.0)
        assert poller.poll(5000) != []  # a poll()ing client sees the death too
        with pytest.raises(errors.ConnectionLost, match="the server closed the connection"):
            watcher.dispatch(lambda function, payload: None)
        for client in (requester, listener, watcher):
            client.close()
    finally:
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()
        child.stdin.close()
    assert os.path.exists(socket_path(tmp_path, "test"))  # the dead server's stale socket

    # A leftover segment of a dead owner (as if the server died mid-handshake).
    corpse = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                            text=True, check=True)
    leftover = f"/dev/shm/coro-{resource_tag}-{corpse.stdout.strip()}-0123456789abcdef"
    with open(leftover, "wb") as handle:
        handle.write(b"\0" * 4096)
    server = IpcServer(tmp_path, [TestService()])
    with ServerThread(server):
        assert not os.path.exists(leftover)
        with IpcClient.connect("test", run_dir=tmp_path) as client:
            assert client.request(ECHO, b"reborn", timeout=5.0) == b"reborn"
    assert not os.path.exists(socket_path(tmp_path, "test"))
    assert _tagged_segments(resource_tag) == []
