"""The server's side of one client connection (:class:`Connection`), given to
the service: events (``send_event``, ``send_event_parts``), late answers
(``respond``), ``close``. Its rings and backlogs are run by
:class:`coroipc.server.IpcServer`.
"""

from __future__ import annotations

import collections
import itertools
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coroipc import codec
from coroipc._wire import pack_header, put_message
from coroipc.errors import ConnectionLost, MessageTooLarge, NotConnected, RingCorrupted, WouldBlock
from coroipc.ring import Ring

if TYPE_CHECKING:
    from coroipc.server import IpcServer, Service

__all__ = ["Connection", "ConnectionStats"]

RefuseCode = codec.RefuseCode


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionStats:
    connection_id: int
    service: str
    pid: int
    uid: int
    gid: int
    requests: int
    responses: int
    events_sent: int
    event_backlog: int
    event_backlog_peak: int
    events_refused: int
    response_backlog: int


class Connection:
    """The server's side of one client connection (given to the service)."""

    current_request_id = 0

    def __init__(self, server: "IpcServer", connection_id: int, service: Service, sock: socket.socket,
                 credentials: tuple[int, int, int], rings: tuple[Ring, Ring, Ring], max_message_size: int) -> None:
        self._server = server
        self.id = connection_id
        self.service = service
        self.sock = sock
        self.pid, self.uid, self.gid = credentials
        self.request_ring, self.response_ring, self.event_ring = rings
        self.max_message_size = max_message_size
        self.closed = False
        self.event_backlog: collections.deque[bytes] = collections.deque()
        self.event_backlog_bytes = 0
        self.response_backlog: collections.deque[bytes] = collections.deque()
        self.stalled_since: float | None = None
        self.refused_in_a_row = 0
        self.armed = False
        self.selector_fds: list[int] = []  # registered with the server's selector
        self._event_sequence = itertools.count(1)
        self.counts = dict.fromkeys(("requests", "responses", "events_sent", "events_refused",
                                     "event_backlog_peak"), 0)

    def __repr__(self) -> str:
        return f"Connection(id={self.id}, service={self.service.name!r}, pid={self.pid}, uid={self.uid})"

    def send_event(self, function: int, payload=b"") -> None:
        """Queue an event for the client; never blocks.

        Raises:
            WouldBlock: the event ring and the bounded backlog are both full.
            MessageTooLarge: larger than the agreed maximum.
            NotConnected: the connection is closed.
        """
        if self.closed:
            raise NotConnected(f"connection {self.id} is closed")
        if len(payload) > self.max_message_size:
            raise MessageTooLarge(f"event of {len(payload)} bytes exceeds the agreed {self.max_message_size}")
        sequence = next(self._event_sequence)
        if not self.event_backlog and self._write_event(put_message, self.event_ring, function, 0,
                                                         sequence, payload):
            return
        self._server._backlog_event(self, pack_header(function, 0, sequence) + bytes(payload))

    def send_event_parts(self, function: int, parts, size: int) -> None:
        """Like :meth:`send_event` for a payload given as the buffers
        ``parts`` (``size`` bytes in all), written into the event ring one
        after the other without being joined first (one copy of each). Only
        an event that must wait in the backlog is joined.

        Raises:
            ValueError: the parts do not add up to ``size`` (nothing sent).
            As :meth:`send_event` otherwise.
        """
        if self.closed:
            raise NotConnected(f"connection {self.id} is closed")
        if size > self.max_message_size:
            raise MessageTooLarge(f"event of {size} bytes exceeds the agreed {self.max_message_size}")
        sequence = next(self._event_sequence)
        header = pack_header(function, 0, sequence)
        if not self.event_backlog and self._write_event(self.event_ring.write_gather_nowait,
                                                         header, parts, size):
            return
        message = b"".join((header, *parts))
        if len(message) != 16 + size:
            raise ValueError(f"the parts hold {len(message) - 16} bytes, not {size}")
        self._server._backlog_event(self, message)

    def _write_event(self, write, *args) -> bool:
        """``write(*args)`` into the event ring: True if written (counted),
        False if the ring is full (the caller backlogs the event).

        Raises:
            NotConnected: the client broke its event ring (disconnected).
        """
        try:
            write(*args)
        except WouldBlock:
            return False
        except (ConnectionLost, RingCorrupted) as error:  # the client broke its event ring
            self._server._disconnect(self, RefuseCode.CORRUPTED, f"event ring unusable: {error}")
            raise NotConnected(f"connection {self.id} was closed: {error}") from None
        self.counts["events_sent"] += 1
        return True

    def respond(self, request_id: int, payload=b"", status: int = 0, function: int = 0) -> None:
        """Answer a request later (after ``on_request`` returned None)."""
        if self.closed:
            raise NotConnected(f"connection {self.id} is closed")
        self._server._respond(self, function, status, request_id, payload)

    def close(self, reason: str = "closed by the service") -> None:
        """Disconnect this client (it gets ConnectionLost with ``reason``)."""
        self._server._disconnect(self, RefuseCode.SHUTTING_DOWN, reason)

    def stats(self) -> ConnectionStats:
        return ConnectionStats(connection_id=self.id, service=self.service.name, pid=self.pid, uid=self.uid,
                               gid=self.gid, event_backlog=len(self.event_backlog),
                               response_backlog=len(self.response_backlog), **self.counts)
