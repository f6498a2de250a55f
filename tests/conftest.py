"""Suite-wide fixtures: the leak audit.

Everything a test starts it must stop. At the start of the session we give
this run a resource tag (``CORO_RESOURCE_TAG``); every shared-memory segment
and semaphore the project creates carries the tag in its name, and every child
process inherits it in its environment. When the session ends, anything that
still carries the tag (a segment in /dev/shm, a live process) or any socket
file left under pytest's temporary directory fails the run.

The tag keeps concurrent test runs on one machine (two developers, CI and a
benchmark) from blaming each other for their leftovers.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import psutil
import pytest
from hypothesis import settings

# Property tests check behaviour, not speed: hypothesis's default 200 ms
# deadline per example fails them on a loaded 2-core box (seen in CI-like runs).
settings.register_profile("coro", deadline=None)
settings.load_profile("coro")

TAG_ENV = "CORO_RESOURCE_TAG"
SESSION_TAG = f"t{os.getpid()}x"
os.environ[TAG_ENV] = SESSION_TAG


def _tagged_shm() -> list[str]:
    try:
        return sorted(name for name in os.listdir("/dev/shm") if SESSION_TAG in name)
    except FileNotFoundError:
        return []


def _tagged_processes() -> list[str]:
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] == me:
            continue
        try:
            if proc.environ().get(TAG_ENV) == SESSION_TAG and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.info['pid']} {' '.join(proc.info['cmdline'] or [])}")
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _socket_files(root: Path) -> list[str]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    found.append(path)
            except FileNotFoundError:
                continue
    return found


def leftovers(tmp_root: Path | None) -> list[str]:
    """Everything this session started and has not stopped, one line each."""
    lines = [f"shared memory: /dev/shm/{name}" for name in _tagged_shm()]
    lines += [f"process: {line}" for line in _tagged_processes()]
    if tmp_root is not None:
        lines += [f"socket file: {path}" for path in _socket_files(tmp_root)]
    return lines


@pytest.fixture(scope="session", autouse=True)
def leak_audit(tmp_path_factory: pytest.TempPathFactory):
    """Fail the session if tests leave processes, segments or sockets behind."""
    tmp_root = tmp_path_factory.getbasetemp()
    yield
    # Give processes that were just signalled a moment to be reaped.
    deadline = time.monotonic() + 5.0
    found = leftovers(tmp_root)
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = leftovers(tmp_root)
    if found:
        pytest.fail("left behind by the test session:\n  " + "\n  ".join(found), pytrace=False)


@pytest.fixture
def resource_tag() -> str:
    """The tag every segment and process of this session carries."""
    return SESSION_TAG
