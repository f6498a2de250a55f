"""The epoll set of :class:`coroipc.server.IpcServer`.

Only the part of ``selectors`` the server uses, without its cost per call
(no key objects, no timeout arithmetic): a daemon polls the set several
times per loop turn of its own.
"""

from __future__ import annotations

import select

__all__ = ["Poller"]


def _descriptor(fileobj) -> int:
    fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
    if fd < 0:
        raise ValueError(f"invalid file descriptor {fd}")
    return fd


class Poller:
    """An epoll set whose ready descriptors come back as the data registered with them."""

    __slots__ = ("_epoll", "_data")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._data: dict[int, tuple] = {}

    def register(self, fileobj, data: tuple) -> None:
        """Watch ``fileobj`` (or a descriptor) for reading. Raises KeyError if it is watched."""
        fd = _descriptor(fileobj)
        if fd in self._data:
            raise KeyError(f"descriptor {fd} is already registered")
        self._epoll.register(fd, select.EPOLLIN)
        self._data[fd] = data

    def modify(self, fileobj, data: tuple) -> None:
        """Replace the data of a watched descriptor. Raises KeyError if it is not watched."""
        fd = _descriptor(fileobj)
        if fd not in self._data:
            raise KeyError(f"descriptor {fd} is not registered")
        self._data[fd] = data

    def unregister(self, fileobj) -> None:
        """Stop watching. Raises KeyError if not watched, ValueError if closed."""
        fd = _descriptor(fileobj)
        del self._data[fd]
        try:
            self._epoll.unregister(fd)
        except OSError:  # closed already: the kernel dropped it from the set
            pass

    def poll(self, timeout: float) -> list[tuple]:
        """The data of the ready descriptors, waiting up to ``timeout`` seconds."""
        ready = self._epoll.poll(timeout if timeout > 0 else 0)
        if not ready:
            return ready
        data = self._data
        return [data[fd] for fd, _mask in ready if fd in data]

    def fileno(self) -> int:
        return self._epoll.fileno()

    def close(self) -> None:
        self._epoll.close()
        self._data.clear()
