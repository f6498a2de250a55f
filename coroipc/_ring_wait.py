"""Blocking waits for :class:`coroipc.ring.Ring`: spin, arm, sleep, notice a dead peer.

Sleep protocol (Dekker-shaped, hence the fences): a reader that finds the
ring empty bumps its epoch, sets SLEEPING, fences, re-checks the write
position, and only then sleeps on its doorbell; a writer stores its position,
fences, and rings the doorbell if it sees SLEEPING with an epoch it has not
rung yet. Writers waiting for space mirror this with their own words.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from coroipc._doorbell import Doorbell, fence, wait_readable
from coroipc._shm import pid_alive
from coroipc._ring_layout import (CLOSED, R_EPOCH, R_FLAGS, R_PID, R_POS, SLEEPING, W_EPOCH, W_FLAGS, W_PID, W_POS, W_WANT,
                                  frame_size)
from coroipc.errors import ConnectionLost, Timeout

__all__ = ["WaitMixin", "SpinPolicy"]

#: The longest single sleep: then re-check the ring and the peer. A pidfd or
#: watch descriptor reports a dead peer sooner; the slice bounds the cost of a
#: wake-up lost to memory reordering on a CPU where our fence is weaker than
#: x86's (see _doorbell.fence).
_SLEEP_SLICE_S = 0.25
#: A sleeping writer is woken once 1/this of the ring is free.
_WAKE_WRITER_FRACTION = 4
#: Checks of the ring between two looks at the clock while spinning.
_TIGHT_SPINS = 8
#: A spin budget below this is not worth a loop: sleep at once.
_MIN_SPIN_NS = 2_000


class SpinPolicy:
    """Adaptive spin-then-sleep: spin only as long as spinning pays.

    On an idle machine the peer answers within microseconds on the other
    core, and spinning saves a wake-up (two system calls and a context
    switch). On a loaded machine the peer is often not running at all, and
    every microsecond of spinning is stolen from it or from others. So the
    budget halves after each spin that found nothing, and after a sleep that
    ended sooner than the maximum it becomes twice that sleep (the peer's
    actual answer time), up to ``max_ns``.
    """

    __slots__ = ("max_ns", "budget_ns")

    def __init__(self, max_ns: int) -> None:
        self.max_ns = max(0, max_ns)
        self.budget_ns = self.max_ns

    def spin(self, ready) -> bool:
        """Poll ``ready()`` within the budget; True once it returns true.

        A few tight checks catch a peer on the other core; after that each
        check yields the CPU, so a peer that shares our core can run.
        """
        budget = self.budget_ns
        if budget < _MIN_SPIN_NS:
            return ready()
        clock = time.perf_counter_ns
        end = clock() + budget
        while True:
            for _ in range(_TIGHT_SPINS):
                if ready():
                    return True
            if clock() >= end:
                break
        self.budget_ns = budget >> 1
        return False

    def slept(self, elapsed_ns: int) -> None:
        """A sleep ended after ``elapsed_ns`` with the peer's answer: adapt."""
        if elapsed_ns < self.max_ns:
            self.budget_ns = min(self.max_ns, max(2 * elapsed_ns, 2 * _MIN_SPIN_NS))


class WaitMixin:
    """The waiting half of Ring (it relies on Ring's fields, declared here)."""

    name: str
    capacity: int
    watch_fds: list[int]
    _words: memoryview | None
    _wpos: int
    _rpos: int
    _pending: list[int] | None
    _is_reader: bool
    _is_writer: bool
    _spinner: SpinPolicy
    _pidfds: dict[int, int]
    _reader_bell: Doorbell | None
    _writer_bell: Doorbell | None
    _reader_address: bytes
    _writer_address: bytes
    _count: dict[str, int]
    _require_open: Callable[[], memoryview]
    become_reader: Callable[[], None]
    become_writer: Callable[[], None]
    _refresh_read_position: Callable[[], None]

    def readable(self) -> bool:
        """True when a message is waiting (cheap: one shared load)."""
        words = self._require_open()
        return self._pending is not None or words[W_POS] != self._rpos

    def fileno(self) -> int:
        """The reader's doorbell: pollable, readable after a wake-up.

        Wake-ups are sent only while the reader is armed: call
        :meth:`arm_reader` before waiting on this descriptor yourself.
        """
        return self._get_reader_bell().fileno()

    def writer_fileno(self) -> int:
        """The writer's doorbell (space freed), armed with :meth:`arm_writer`."""
        return self._get_writer_bell().fileno()

    def _get_reader_bell(self) -> Doorbell:
        self._require_open()
        if self._reader_bell is None:
            self._reader_bell = Doorbell(self._reader_address)
        return self._reader_bell

    def _get_writer_bell(self) -> Doorbell:
        self._require_open()
        if self._writer_bell is None:
            self._writer_bell = Doorbell(self._writer_address)
        return self._writer_bell

    def _arm(self, flags_word: int, epoch_word: int, bell: Doorbell, drain: bool) -> None:
        """Set our SLEEPING flag for a new epoch, then fence (before the re-check)."""
        if drain:
            bell.drain()
        words = self._words
        words[epoch_word] += 1
        words[flags_word] = SLEEPING
        fence()

    def arm_reader(self, drain: bool = True) -> bool:
        """Ask the writer to ring our doorbell on the next write.

        Args:
            drain: first consume wake-ups already queued, so that a poll on
                :meth:`fileno` blocks until the next one (internal waits
                drain after they wake instead).

        Returns:
            True if data is already waiting (then do not sleep: read it).
        """
        if not self._is_reader:
            self.become_reader()
        self._arm(R_FLAGS, R_EPOCH, self._get_reader_bell(), drain)
        return self._pending is not None or self._words[W_POS] != self._rpos

    def disarm_reader(self) -> None:
        if self._words is not None and self._is_reader:
            self._words[R_FLAGS] = 0

    def arm_writer(self, needed: int = 1, drain: bool = True, want: int | None = None) -> bool:
        """Ask the reader to ring our writer doorbell when it frees space.

        Args:
            needed: bytes (a frame's size) we need now.
            drain: as for :meth:`arm_reader`.
            want: be woken only once this much is free (default ``needed``).

        Returns:
            True if ``needed`` bytes are already free.
        """
        if not self._is_writer:
            self.become_writer()
        self._words[W_WANT] = needed if want is None else want
        self._arm(W_FLAGS, W_EPOCH, self._get_writer_bell(), drain)
        self._refresh_read_position()
        return self.capacity - (self._wpos - self._read_cache) >= needed

    def disarm_writer(self) -> None:
        if self._words is not None and self._is_writer:
            self._words[W_FLAGS] = 0

    def wait_readable(self, timeout: float | None = None, *, deadline: float | None = None) -> None:
        """Return once a message is waiting; spin briefly, then sleep on the doorbell.

        Raises:
            Timeout: nothing arrived in time.
            ConnectionLost: the writer closed, died, or a watch fd fired.
        """
        if deadline is None and timeout is not None:
            deadline = time.monotonic() + timeout
        if not self._spinner.spin(self.readable):
            self._wait(lambda: self.arm_reader(drain=False), self.disarm_reader, W_FLAGS, W_PID, deadline, "writer")

    def wait_writable(self, size: int, timeout: float | None = None) -> None:
        """Return once a message of ``size`` payload bytes would fit.

        Raises:
            Timeout, ConnectionLost (reader closed or died, or a watch fd fired).
        """
        self._wait_writable(frame_size(1, size), None if timeout is None else time.monotonic() + timeout)

    def _wait_writable(self, size: int, deadline: float | None) -> None:
        capacity = self.capacity
        tail = capacity - self._wpos % capacity
        needed = size if size <= tail else tail + size  # a PAD first when it does not fit
        # Sleep until a good share of the ring is free, not just this frame:
        # each wake-up then buys many writes (fewer sleep/wake round trips
        # when the reader is slower). The sleep slice bounds the wait if the
        # reader stops short of that.
        want = min(capacity, max(needed, capacity // _WAKE_WRITER_FRACTION))

        def has_room() -> bool:
            return capacity - (self._wpos - self._words[R_POS]) >= needed

        if not self._spinner.spin(has_room):
            self._wait(lambda: self.arm_writer(needed, drain=False, want=want), self.disarm_writer, R_FLAGS, R_PID,
                       deadline, "reader")

    def _wait(self, arm, disarm, peer_flags_word: int, peer_pid_word: int, deadline: float | None,
              peer: str) -> None:
        """Arm, re-check, sleep until ``arm()`` reports the condition (then disarm)."""
        started = time.perf_counter_ns()
        try:
            while not arm():
                if self._words[peer_flags_word] & CLOSED:
                    raise ConnectionLost(f"ring {self.name}: the {peer} closed its end")
                self._sleep(self._reader_bell if peer == "writer" else self._writer_bell, peer_pid_word,
                            deadline, peer)
        finally:
            disarm()
        self._spinner.slept(time.perf_counter_ns() - started)

    def _sleep(self, bell: Doorbell, peer_pid_word: int, deadline: float | None, peer: str) -> None:
        """One sleep on ``bell`` plus the peer's pidfd and watch fds."""
        self._count["sleeps"] += 1
        fds = [bell.fileno(), *self.watch_fds]
        pidfd = self._peer_pidfd(self._words[peer_pid_word])
        if pidfd >= 0:
            fds.append(pidfd)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise Timeout(f"ring {self.name}: timed out waiting for the {peer}")
        remaining = _SLEEP_SLICE_S if remaining is None else min(remaining, _SLEEP_SLICE_S)
        ready = wait_readable(fds, remaining)
        if ready:
            if bell.fileno() in ready:
                bell.drain(1)  # one wake-up per sleep epoch: one datagram
            if any(fd in ready for fd in self.watch_fds) or pidfd in ready:
                raise ConnectionLost(f"ring {self.name}: the {peer} went away")
        if pidfd < 0 and not self._peer_alive(self._words[peer_pid_word]):
            raise ConnectionLost(f"ring {self.name}: the {peer} process died")

    def _peer_pidfd(self, pid: int) -> int:
        if pid <= 0 or pid == os.getpid():
            return -1
        pidfd = self._pidfds.get(pid)
        if pidfd is None:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return -1  # dead: _peer_alive reports it
            except OSError:
                pidfd = -1  # other pid namespace or old kernel: fall back to polling
            self._pidfds[pid] = pidfd
        return pidfd

    @staticmethod
    def _peer_alive(pid: int) -> bool:
        return pid <= 0 or pid == os.getpid() or pid_alive(pid)
