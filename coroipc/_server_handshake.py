"""The server's half of the coroipc handshake (a mixin of IpcServer).

accept -> HELLO (within handshake_timeout_s) -> version, service and uid/gid
checks -> three rings (0600, chowned to the client when root) -> ACCEPT with
the segment descriptors -> READY -> IpcServer._establish unlinks the
segments. Every failure on the way closes the rings, which unlinks them, and
answers with a REFUSE carrying the reason when the socket still works.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Callable

from coroipc import codec
from coroipc._wire import HandshakeBuffer, peer_credentials, send_handshake
from coroipc.errors import IpcError, ProtocolError
from coroipc.ring import Ring

if TYPE_CHECKING:
    from coroipc._poller import Poller
    from coroipc.server import Service

__all__ = ["HandshakeMixin", "PendingHandshake", "MIN_RING", "MAX_RING"]

log = logging.getLogger("coroipc.server")
RefuseCode = codec.RefuseCode
MIN_RING = 4096
MAX_RING = 1 << 28


class PendingHandshake:
    """A connection between accept and READY."""

    def __init__(self, sock: socket.socket, credentials: tuple[int, int, int], deadline: float) -> None:
        self.sock = sock
        self.credentials = credentials
        self.deadline = deadline
        self.buffer = HandshakeBuffer()
        self.rings: tuple[Ring, Ring, Ring] | None = None
        self.service: "Service | None" = None
        self.max_message_size = 0


class HandshakeMixin:
    """Handshake steps of IpcServer (they rely on its fields, declared here)."""

    services: dict[str, "Service"]
    allowed_uids: frozenset[int]
    allowed_gids: frozenset[int]
    ring_size: int
    event_ring_size: int
    max_ring_size: int
    max_message_size: int | None
    max_connections: int
    handshake_timeout_s: float
    _selector: "Poller | None"
    _handshakes: dict[int, PendingHandshake]
    _connections: dict[int, object]
    _counts: "collections.Counter[str]"
    _ids: "itertools.count[int]"
    _establish: Callable[[PendingHandshake], None]

    def _accept(self, listener: socket.socket, service_name: str) -> int:
        try:
            sock, _address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as error:  # EMFILE and friends: keep serving the others
            log.warning("accept on %s failed: %s", service_name, error)
            return 0
        sock.setblocking(False)
        if len(self._handshakes) >= self.max_connections:  # a connect storm must not eat our descriptors
            log.warning("dropping a connection to %s: %d handshakes already pending", service_name,
                        len(self._handshakes))
            self._counts["handshakes_failed"] += 1
            sock.close()
            return 1
        try:
            credentials = peer_credentials(sock)
        except OSError as error:
            log.warning("no peer credentials on %s: %s", service_name, error)
            sock.close()
            return 0
        pending = PendingHandshake(sock, credentials, time.monotonic() + self.handshake_timeout_s)
        self._handshakes[sock.fileno()] = pending
        self._selector.register(sock, ("handshake", pending))
        return 1

    def _handshake_readable(self, pending: PendingHandshake) -> int:
        if pending.sock.fileno() < 0:
            return 0  # failed earlier in this batch of events
        try:
            data = pending.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as error:
            self._fail_handshake(pending, f"socket error {error}")
            return 1
        if not data:
            self._fail_handshake(pending, "the client closed the socket during the handshake")
            return 1
        try:
            pending.buffer.feed(data)
            found = pending.buffer.next_message()
            while found is not None:
                self._handshake_step(pending, *found)
                if pending.sock.fileno() < 0 or pending.sock.fileno() not in self._handshakes:
                    break
                found = pending.buffer.next_message()
        except ProtocolError as error:
            self._fail_handshake(pending, f"bad handshake: {error}", refuse=RefuseCode.BAD_HANDSHAKE)
        return 1

    def _handshake_step(self, pending: PendingHandshake, version: int, message: codec.Handshake) -> None:
        if pending.rings is None:
            if not isinstance(message, codec.Hello):
                raise ProtocolError(f"expected HELLO, got {type(message).__name__}")
            self._hello(pending, version, message)
        elif isinstance(message, codec.Ready):
            self._establish(pending)
        else:
            raise ProtocolError(f"expected READY, got {type(message).__name__}")

    def _refusal(self, pending: PendingHandshake, version: int, hello: codec.Hello) -> tuple[RefuseCode, str] | None:
        pid, uid, gid = pending.credentials
        if version != codec.PROTOCOL_VERSION:
            return RefuseCode.VERSION_MISMATCH, (f"client speaks coroipc protocol version {version}, "
                                                 f"this server speaks {codec.PROTOCOL_VERSION}")
        if hello.service not in self.services:
            return RefuseCode.UNKNOWN_SERVICE, f"no service {hello.service!r} here"
        if uid not in self.allowed_uids and gid not in self.allowed_gids:
            return RefuseCode.NOT_ALLOWED, f"uid {uid} gid {gid} (pid {pid}) may not connect to {hello.service!r}"
        if len(self._connections) >= self.max_connections:
            return RefuseCode.TOO_MANY_CONNECTIONS, f"the server has its maximum of {self.max_connections} clients"
        return None

    def _ring_sizes(self, hello: codec.Hello) -> tuple[int, int, int, int]:
        def pick(requested: int, default: int) -> int:
            if not requested:
                return default
            return min(self.max_ring_size, max(MIN_RING, (requested + 63) & ~63))

        request = pick(hello.request_ring_bytes, self.ring_size)
        response = pick(hello.response_ring_bytes, self.ring_size)
        event = pick(hello.event_ring_bytes, self.event_ring_size)
        limit = min(request, response, event) // 2 - 24 - 16  # ring limit minus our header
        for bound in (self.max_message_size, hello.max_message_bytes):
            if bound:
                limit = min(limit, bound)
        return request, response, event, limit

    def _hello(self, pending: PendingHandshake, version: int, hello: codec.Hello) -> None:
        refusal = self._refusal(pending, version, hello)
        if refusal is not None:
            self._counts["refused"] += 1
            self._fail_handshake(pending, refusal[1], refuse=refusal[0])
            return
        pid, uid, gid = pending.credentials
        request, response, event, max_message = self._ring_sizes(hello)
        rings: list[Ring] = []
        try:
            for size in (request, response, event):
                rings.append(Ring.create(size, owner=(uid, gid), keep_fd=True, eventfd_bells=True))
            rings[0].become_reader()
            rings[1].become_writer()
            rings[2].become_writer()
            pending.rings = (rings[0], rings[1], rings[2])
            pending.service = self.services[hello.service]
            pending.max_message_size = max_message
            accept = codec.Accept(connection_id=next(self._ids), server_pid=os.getpid(),
                                  request_ring_bytes=request, response_ring_bytes=response,
                                  event_ring_bytes=event, max_message_bytes=max_message,
                                  ring_names=(rings[0].name, rings[1].name, rings[2].name))
            send_handshake(pending.sock, accept, tuple(fd for ring in rings for fd in (ring.fd, *ring.bell_fds)))
        except (OSError, IpcError) as error:
            for ring in rings:
                ring.close()
            pending.rings = None
            self._fail_handshake(pending, f"could not set up rings: {error}", refuse=RefuseCode.RESOURCES)

    def _fail_handshake(self, pending: PendingHandshake, reason: str, refuse: RefuseCode | None = None) -> None:
        # Count and free first, tell the client last: whoever sees the socket
        # close must find the stats and /dev/shm already settled.
        if pending.sock.fileno() >= 0:
            self._handshakes.pop(pending.sock.fileno(), None)
        if refuse in (None, RefuseCode.BAD_HANDSHAKE, RefuseCode.RESOURCES, RefuseCode.SHUTTING_DOWN):
            self._counts["handshakes_failed"] += 1
        for ring in pending.rings or ():
            ring.close()  # the owner's close unlinks the segment
        pending.rings = None
        if pending.sock.fileno() >= 0:
            try:
                self._selector.unregister(pending.sock)
            except (KeyError, ValueError):
                pass
            if refuse is not None:
                try:
                    send_handshake(pending.sock, codec.Refuse(code=refuse, reason=reason))
                except OSError:
                    pass
            pending.sock.close()
        log.info("handshake from pid %d uid %d failed: %s", pending.credentials[0], pending.credentials[1], reason)
