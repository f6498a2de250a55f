"""The ring between two real processes: batches, wake-ups, a writer that dies."""

from __future__ import annotations

import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from coroipc import Ring, errors

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.multiprocess


def _child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.coroipc.ring_child", *args], cwd=ROOT)


def test_batches_cross_processes_intact():
    messages = [bytes([index % 251]) * (index % 700) for index in range(5000)]
    with Ring.create(1 << 16) as outbound, Ring.create(4096) as inbound:
        child = _child("echo", outbound.name, inbound.name, str(len(messages)))
        try:
            sent = 0
            deadline = time.monotonic() + 30
            while sent < len(messages) and time.monotonic() < deadline:
                written = outbound.write_batch(messages[sent:])
                if written == 0:
                    outbound.write(messages[sent], timeout=10.0)  # sleeps until the reader frees space
                    written = 1
                sent += written
            summary = inbound.read(timeout=20.0)
        finally:
            assert child.wait(timeout=20) == 0
    crc = 0
    for message in messages:
        crc = zlib.crc32(message, crc)
    assert summary == f"{len(messages)} {crc}".encode()


def test_dead_writer_wakes_blocked_reader_and_partial_record_is_invisible():
    with Ring.create(4096) as ring:
        child = _child("die", ring.name)
        try:
            assert ring.read(timeout=20.0) == b"complete"
            start = time.monotonic()
            with pytest.raises(errors.ConnectionLost, match="writer"):
                ring.read(timeout=20.0)
            assert time.monotonic() - start < 10.0
        finally:
            child.wait(timeout=20)
        assert child.returncode == -9


def test_a_forked_child_closing_inherited_handles_leaves_the_parent_alone():
    import os

    with Ring.create(4096) as ring:
        reader = Ring.attach(ring.name)
        ring.write(b"before")
        pid = os.fork()
        if pid == 0:  # the child: drop both inherited handles, then leave at once
            ring.close()
            reader.close()
            os._exit(0)
        _pid, status = os.waitpid(pid, 0)
        assert status == 0
        assert os.path.exists("/dev/shm" + ring.name)  # not unlinked by the child
        ring.write(b"after")  # the writer is not marked closed
        assert reader.read_batch() == [b"before", b"after"]
        reader.close()


def test_eventfd_doorbells_inherited_over_fork_carry_a_round_trip():
    import os

    # No spinning: every wait that finds nothing sleeps on an eventfd.
    with Ring.create(4096, eventfd_bells=True, spin_us=0) as out, \
            Ring.create(4096, eventfd_bells=True, spin_us=0) as back:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                source = Ring.attach(out.name, spin_us=0, bell_fds=tuple(os.dup(fd) for fd in out.bell_fds))
                sink = Ring.attach(back.name, spin_us=0, bell_fds=tuple(os.dup(fd) for fd in back.bell_fds))
                for _ in range(50):
                    sink.write(source.read(timeout=10.0) + b" back", timeout=10.0)
                source.close()
                sink.close()
                status = 0
            except BaseException as error:  # shown in the parent's failure output
                print(f"child failed: {error!r}", file=sys.stderr, flush=True)
            finally:
                os._exit(status)
        try:
            for index in range(50):
                out.write(b"ping %d" % index)
                assert back.read(timeout=10.0) == b"ping %d back" % index
        finally:
            _pid, status = os.waitpid(pid, 0)
        assert status == 0
