"""A socket pair that turns signals into something a select loop can wait on.

Python runs signal handlers between bytecodes of the main thread, so a loop
blocked in select() would not notice a SIGTERM until its timeout. With
``signal.set_wakeup_fd`` the interpreter writes a byte to our socket for every
signal, which makes the read end readable and the select return at once.
The supervisor and totemd both use one.
"""

from __future__ import annotations

import signal
import socket

__all__ = ["SignalWakeup"]


class SignalWakeup:
    """Owns the socket pair; ``arm()`` makes signals write to it."""

    def __init__(self) -> None:
        self._read_end, self._write_end = socket.socketpair()
        self._read_end.setblocking(False)
        self._write_end.setblocking(False)
        self._closed = False

    @property
    def read_end(self) -> socket.socket:
        """The end to register with a selector or pass to select()."""
        return self._read_end

    def fileno(self) -> int:
        return self._read_end.fileno()

    def arm(self) -> None:
        """From now on every signal writes a byte to the pair (main thread only)."""
        signal.set_wakeup_fd(self._write_end.fileno(), warn_on_full_buffer=False)

    def drain(self) -> None:
        """Read away the bytes of the signals that arrived."""
        try:
            while self._read_end.recv(512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Stop signals writing to the pair and close it; idempotent."""
        if self._closed:
            return
        self._closed = True
        signal.set_wakeup_fd(-1)
        self._read_end.close()
        self._write_end.close()
