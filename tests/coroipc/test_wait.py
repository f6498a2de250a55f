"""The sleep/wake path of a ring: no lost wake-up at the edges, dead peers seen.

The sleep slice (normally 0.25 s, which would hide a lost wake-up as mere
latency) is raised to a minute here, so a lost wake-up keeps the waiter
asleep until its deadline (a wait that returns only then counts as lost:
LOST_S is far beyond any scheduling delay) and a missed dead peer shows up
as a Timeout instead of ConnectionLost.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from coroipc import Ring, errors
from coroipc import _ring_wait


#: A wait that takes this long was not woken by its doorbell.
LOST_S = 10.0


def _timed(call):
    started = time.monotonic()
    result = call()
    assert time.monotonic() - started < LOST_S, "the doorbell did not wake the sleeper"
    return result


@pytest.fixture
def long_slices(monkeypatch):
    monkeypatch.setattr(_ring_wait, "_SLEEP_SLICE_S", 60.0)


@pytest.fixture(params=["eventfd", "datagram"])
def pair(request, long_slices):
    writer = Ring.create(8192, spin_us=0, eventfd_bells=request.param == "eventfd")
    bells = None
    if request.param == "eventfd":
        bells = (os.dup(writer.bell_fds[0]), os.dup(writer.bell_fds[1]))
    reader = Ring.attach(writer.name, spin_us=0, bell_fds=bells)
    yield writer, reader
    reader.close()
    writer.close()


def test_message_written_between_the_recheck_and_the_sleep_wakes_the_reader(pair, monkeypatch):
    writer, reader = pair
    writer.write(b"first")
    assert reader.read(timeout=1.0) == b"first"
    original = type(reader)._sleep

    def write_then_sleep(self, *args):
        if self is reader and not self.readable():
            writer.write(b"late")  # the reader has armed and re-checked: only the doorbell can wake it
        return original(self, *args)

    monkeypatch.setattr(type(reader), "_sleep", write_then_sleep)
    assert _timed(lambda: reader.read(timeout=2 * LOST_S)) == b"late"
    assert writer.stats().wakeups_sent == 1


def test_stale_wakeups_do_not_confuse_the_next_wait(pair):
    writer, reader = pair
    reader._get_reader_bell().ring()  # a ring from an earlier epoch that nobody consumed
    reader._get_reader_bell().ring()
    with pytest.raises(errors.Timeout):
        reader.read(timeout=0.05)  # woken spuriously, finds nothing, sleeps again until the deadline
    writer.write(b"after")
    assert _timed(lambda: reader.read(timeout=2 * LOST_S)) == b"after"


def test_many_sleeps_in_a_row_each_woken(pair):
    writer, reader = pair
    original = type(reader)._sleep
    count = 0

    def write_then_sleep(self, *args):
        nonlocal count
        if self is reader and not self.readable():
            count += 1
            writer.write(count.to_bytes(4, "little"))
        return original(self, *args)

    type(reader)._sleep = write_then_sleep
    try:
        received = [int.from_bytes(_timed(lambda: reader.read(timeout=2 * LOST_S)), "little") for _ in range(50)]
    finally:
        type(reader)._sleep = original
    assert received == list(range(1, 51))


def test_writer_waiting_for_space_is_woken_when_the_reader_frees_it(pair, monkeypatch):
    writer, reader = pair
    while True:
        try:
            writer.write_nowait(b"x" * 1000)
        except errors.WouldBlock:
            break
    original = type(writer)._sleep

    def read_then_sleep(self, *args):
        if self is writer:
            while reader.read_batch():
                pass
        return original(self, *args)

    monkeypatch.setattr(type(writer), "_sleep", read_then_sleep)
    _timed(lambda: writer.write(b"y" * 1000, timeout=2 * LOST_S))
    assert writer.stats().sleeps == 1


@pytest.mark.multiprocess
def test_writer_killed_during_a_blocking_read_raises_connection_lost(long_slices):
    with Ring.create(8192, spin_us=0, eventfd_bells=True) as ring:
        ready_read, ready_write = os.pipe()
        bells = ring.bell_fds
        pid = os.fork()
        if pid == 0:  # the writer: attach, claim the role, say so, then wait to be killed
            try:
                os.close(ready_read)
                writer = Ring.attach(ring.name, bell_fds=(os.dup(bells[0]), os.dup(bells[1])))
                writer.become_writer()
                os.write(ready_write, b"1")
                signal.pause()
            finally:
                os._exit(1)
        os.close(ready_write)
        try:
            assert os.read(ready_read, 1) == b"1"
            original = type(ring)._sleep
            killed = False

            def kill_then_sleep(self, *args):
                nonlocal killed
                if not killed:
                    killed = True
                    os.kill(pid, signal.SIGKILL)
                return original(self, *args)

            type(ring)._sleep = kill_then_sleep
            try:
                with pytest.raises(errors.ConnectionLost):
                    ring.read(timeout=20.0)
            finally:
                type(ring)._sleep = original
            assert killed
        finally:
            os.close(ready_read)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
