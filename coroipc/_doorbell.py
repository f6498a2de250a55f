"""Wake-ups between the two ends of a ring: abstract-namespace datagram doorbells.

A sleeping side binds a non-blocking ``AF_UNIX``/``SOCK_DGRAM`` socket to an
abstract address derived from the ring's name (``\\0<ring name>.r`` for the
reader, ``.w`` for a writer waiting for space). The other side "rings" by
sending one byte to that address from a process-wide unbound socket. Why this
and not an eventfd or a semaphore (docs/architecture.md has the long form):

* it is a file descriptor, so ``select``/``poll``/``epoll``/asyncio can wait on
  it together with the connection socket (a semaphore cannot);
* the address follows from the ring name, so ``Ring.attach(name)`` works in any
  process without passing descriptors (an eventfd needs SCM_RIGHTS or fork);
* the kernel removes an abstract address when its socket closes, so a crash
  leaves nothing behind, and ringing a dead peer fails harmlessly.

Ringing is rare by design: the writer rings only when the reader's "sleeping"
flag is set in the ring header, once per sleep (the epoch check), so a busy
stream costs no system call per message.
"""

from __future__ import annotations

import atexit
import os
import select
import socket
import threading

__all__ = ["Doorbell", "ring_address", "fence", "wait_readable"]

_sender: socket.socket | None = None
_sender_lock = threading.Lock()
_fence_lock = threading.Lock()
_fence_acquire = _fence_lock.acquire
_fence_release = _fence_lock.release


def fence() -> None:
    """A full memory barrier.

    The sleep protocol is Dekker-shaped: the writer stores its position then
    loads the reader's flag, the reader stores its flag then loads the
    position. Even x86 may reorder a store with a later load, which would lose
    a wake-up. Acquiring a lock executes a locked instruction, a full fence on
    x86; that is the cheapest fence Python offers. On weakly ordered CPUs
    (ARM) glibc's acquire/release pair does not order a store before a later
    load, so there a wake-up can be lost; sleeps are sliced (0.25 s) so that
    costs latency, never liveness.
    """
    _fence_acquire()
    _fence_release()


def _get_sender() -> socket.socket:
    global _sender
    sender = _sender
    if sender is None:
        with _sender_lock:
            if _sender is None:
                sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sender.setblocking(False)
                _sender = sender
            sender = _sender
    return sender


def _forget_sender_after_fork() -> None:
    """A forked child gets its own sender (the inherited copy is closed)."""
    global _sender
    if _sender is not None:
        _sender.close()
        _sender = None


os.register_at_fork(after_in_child=_forget_sender_after_fork)


@atexit.register
def _close_sender() -> None:
    global _sender
    if _sender is not None:
        _sender.close()
        _sender = None


def ring_address(address: bytes) -> bool:
    """Send one wake-up byte to ``address``.

    Returns:
        True if it was queued; False if nobody listens there (the peer closed
        or died: its own liveness checks report that) or wake-ups are already
        pending (the queue is full, so the peer will wake anyway).
    """
    try:
        _get_sender().sendto(b"\x01", address)
    except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
        return False
    return True


class Doorbell:
    """The receiving end: a bound, non-blocking datagram socket."""

    _socket: socket.socket | None = None

    def __init__(self, address: bytes) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(address)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        self.address = address

    def fileno(self) -> int:
        if self._socket is None:
            return -1
        return self._socket.fileno()

    def drain(self, limit: int = 64) -> int:
        """Consume pending wake-ups (at most ``limit``); returns how many."""
        sock = self._socket
        count = 0
        if sock is None:
            return 0
        while count < limit:
            try:
                sock.recv(16)
            except (BlockingIOError, InterruptedError):
                break
            count += 1
        return count

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()


def wait_readable(fds: list[int], timeout_s: float | None) -> list[int]:
    """Poll ``fds`` for readability (or hang-up); returns the ready ones."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    timeout_ms = None if timeout_s is None else max(0, int(timeout_s * 1000 + 0.999))
    try:
        return [fd for fd, _mask in poller.poll(timeout_ms)]
    except InterruptedError:
        return []
