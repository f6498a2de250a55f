"""Blocking waits for :class:`coroipc.ring.Ring`: spin, arm, sleep, notice a dead peer.

Sleep protocol (Dekker-shaped, hence the fences): a reader that finds the
ring empty bumps its epoch, sets SLEEPING, fences, re-checks the write
position, and only then sleeps on its doorbell; a writer stores its position,
fences, and rings the doorbell if it sees SLEEPING with an epoch it has not
rung yet. Writers waiting for space mirror this with their own words.
"""

from __future__ import annotations

import os
import select
import time
from typing import Callable

from coroipc._doorbell import Bell, EventfdBell, fence
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
#: At most this many waits sleep at once after failed spins before one tries again.
_MAX_SPIN_BACKOFF = 256


#: Bumped in a forked child: epoll sets made before the fork are the parent's.
_fork_generation = [0]


def _forked() -> None:
    _fork_generation[0] += 1


os.register_at_fork(after_in_child=_forked)


class _Sleeper:
    """An epoll set a ring sleeps in: its doorbell, the peer's pidfd, watch fds."""

    __slots__ = ("epoll", "bell_fd", "pidfd", "pid", "watch_fds", "generation", "drain")

    def __init__(self, bell: Bell, pidfd: int, pid: int, watch_fds: list[int]) -> None:
        self.bell_fd = bell.fileno()
        self.pidfd, self.pid, self.watch_fds = pidfd, pid, watch_fds
        self.generation = _fork_generation[0]
        self.drain = not isinstance(bell, EventfdBell)
        self.epoll = select.epoll()
        try:
            trigger = 0 if self.drain else select.EPOLLET
            self.epoll.register(self.bell_fd, select.EPOLLIN | trigger)
            for fd in (pidfd, *watch_fds):
                if fd >= 0:
                    self.epoll.register(fd, select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR)
        except BaseException:
            self.epoll.close()
            raise


class SpinPolicy:
    """Spin before sleeping only while spinning pays.

    Spinning wins when the peer runs on another core and answers within
    microseconds: it saves a wake-up (two system calls and a context
    switch). It loses badly when the peer shares our core (a loaded
    machine): the peer cannot run while we spin, so the spin always fails
    and adds its whole length to the latency (measured: p50 round trip 85 µs
    with a 50 µs spin, 26 µs without, at load 5 on two cores). So after a
    spin that found nothing, the next 1, 2, 4, ... up to 256 waits sleep at
    once; one successful spin resets that.
    """

    __slots__ = ("max_ns", "skip", "backoff")

    def __init__(self, max_ns: int) -> None:
        self.max_ns = max(0, max_ns)
        self.skip = 0
        self.backoff = 1

    def spin(self, ready: Callable[[], bool]) -> bool:
        """Poll ``ready()`` for up to ``max_ns`` (unless backing off); True once it is."""
        if self.max_ns < _MIN_SPIN_NS or self.skip > 0:
            self.skip = max(0, self.skip - 1)
            return ready()
        clock = time.perf_counter_ns
        end = clock() + self.max_ns
        while True:
            for _ in range(_TIGHT_SPINS):
                if ready():
                    self.backoff = 1
                    return True
            if clock() >= end:
                break
        self.skip = self.backoff
        self.backoff = min(self.backoff * 2, _MAX_SPIN_BACKOFF)
        return False


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
    _sleepers: dict[int, _Sleeper]
    _reader_bell: Bell | None
    _writer_bell: Bell | None
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

    def _get_reader_bell(self) -> Bell:
        self._require_open()
        return self._reader_bell

    def _get_writer_bell(self) -> Bell:
        self._require_open()
        return self._writer_bell

    def _arm(self, flags_word: int, epoch_word: int, bell: Bell, drain: bool) -> None:
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
            if not self._is_reader:
                self.become_reader()
            self._wait(R_FLAGS, R_EPOCH, self._get_reader_bell(), self.readable, W_FLAGS, W_PID, deadline,
                       "writer")

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
            if not self._is_writer:
                self.become_writer()
            self._words[W_WANT] = want
            self._wait(W_FLAGS, W_EPOCH, self._get_writer_bell(), has_room, R_FLAGS, R_PID, deadline, "reader")
            self._refresh_read_position()  # validates the position has_room() trusted

    def _wait(self, flags_word: int, epoch_word: int, bell: Bell, ready: Callable[[], bool],
              peer_flags_word: int, peer_pid_word: int, deadline: float | None, peer: str) -> None:
        """Arm, re-check, sleep until ``ready()`` (then disarm).

        After a wake-up the condition is checked before arming again: the
        wake-up usually means it holds, and arming (a new epoch, a fence)
        would only invite a second, useless ring from the peer. A peer that
        is gone is reported only once the condition is still false after it
        went: what it wrote before dying is delivered first.
        """
        words = self._words
        bell.fileno()  # a datagram doorbell binds its address now, before the peer can see us armed
        try:
            while True:
                words[epoch_word] += 1
                words[flags_word] = SLEEPING
                fence()  # our flag before the re-check (Dekker, see _doorbell.fence)
                if ready():
                    return
                if words[peer_flags_word] & CLOSED:
                    raise ConnectionLost(f"ring {self.name}: the {peer} closed its end")
                gone = self._sleep(bell, peer_pid_word, deadline, peer)
                if ready():
                    return
                if gone:
                    raise ConnectionLost(f"ring {self.name}: {gone}")
        finally:
            if self._words is not None:
                self._words[flags_word] = 0

    def _sleep(self, bell: Bell, peer_pid_word: int, deadline: float | None, peer: str) -> str:
        """One sleep on ``bell`` plus the peer's pidfd and watch fds.

        Returns:
            why the peer is gone, or "" while it is alive.
        """
        self._count["sleeps"] += 1
        if deadline is None:
            remaining = _SLEEP_SLICE_S
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"ring {self.name}: timed out waiting for the {peer}")
            remaining = min(remaining, _SLEEP_SLICE_S)
        pid = self._words[peer_pid_word]
        sleeper = self._sleepers.get(bell.fileno())
        if sleeper is None or sleeper.pid != pid or sleeper.generation != _fork_generation[0] \
                or sleeper.watch_fds != self.watch_fds:
            sleeper = self._new_sleeper(bell, pid)
        ready = sleeper.epoll.poll(remaining)
        if ready:
            if sleeper.drain:
                bell.drain(1)  # a datagram doorbell: one datagram per sleep epoch
            if len(ready) > 1 or ready[0][0] != sleeper.bell_fd:
                return f"the {peer} went away"
        if sleeper.pidfd < 0 and not self._peer_alive(pid):
            return f"the {peer} process died"
        return ""

    def _new_sleeper(self, bell: Bell, pid: int) -> "_Sleeper":
        """An epoll set of the bell, the peer's pidfd and the watch fds (cached per bell).

        An eventfd doorbell is registered edge-triggered: every ring is a new
        edge, so the sleeper need not read the counter back to zero (one
        system call less per wake-up). A datagram doorbell is level-triggered
        and drained (its socket buffer would fill up otherwise).
        """
        old = self._sleepers.pop(bell.fileno(), None)
        if old is not None:
            old.epoll.close()  # after a fork this drops only our copy of the parent's
        sleeper = _Sleeper(bell, self._peer_pidfd(pid), pid, list(self.watch_fds))
        self._sleepers[bell.fileno()] = sleeper
        return sleeper

    def _close_sleepers(self) -> None:
        for sleeper in self._sleepers.values():
            sleeper.epoll.close()
        self._sleepers.clear()

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
