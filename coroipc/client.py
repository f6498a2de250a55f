"""The coroipc client: connect to a service, make requests, receive events.

    with IpcClient.connect("cmap", run_dir="/run/coro") as client:
        reply = client.request(1, b"payload", timeout=5.0)
        poller.register(client.fileno(), select.POLLIN)   # events waiting
        client.dispatch(lambda function, payload: ...)

A client is not thread-safe: use one per thread (as with libqb).
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from coroipc import codec
from coroipc._wire import (FDS_PER_RING, HandshakeBuffer, parse_message, peer_credentials, put_message,
                           put_message_parts, recv_handshake, send_handshake)
from coroipc.errors import (ConnectionLost, MessageTooLarge, NotConnected, ProtocolError, Refused,
                            ServiceError, Timeout, WouldBlock)
from coroipc.ring import Ring
from coroipc.server import socket_path

__all__ = ["IpcClient", "ClientStats", "DEFAULT_RUN_DIR"]

DEFAULT_RUN_DIR = os.environ.get("CORO_RUN_DIR", "/run/coro")
_unpack_header = codec.MESSAGE_HEADER.unpack_from


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStats:
    service: str
    connection_id: int
    requests: int
    posts: int
    events: int
    stale_responses: int
    max_message_size: int


class IpcClient:
    """One connection to one service. Create with :meth:`connect`."""

    _closed = True
    _sock: socket.socket | None = None
    _epoll = None
    _rings: tuple[Ring, ...] = ()

    def __init__(self, service: str, sock: socket.socket, accept: codec.Accept, rings: tuple[Ring, Ring, Ring]) -> None:
        """Use :meth:`connect`."""
        self.service = service
        self._sock = sock
        self._rings = rings
        self.request_ring, self.response_ring, self.event_ring = rings
        self.connection_id = accept.connection_id
        self.max_message_size = accept.max_message_bytes
        self.server_pid, self.server_uid, self.server_gid = peer_credentials(sock)
        self._ids = itertools.count(1)
        self._counts = dict.fromkeys(("requests", "posts", "stale_responses"), 0)
        self._lost_reason: str | None = None
        self.request_ring.become_writer()
        self.response_ring.become_reader()
        self.event_ring.become_reader()
        for ring in rings:
            ring.watch_fds = [sock.fileno()]
        self._epoll = select.epoll()
        self._epoll.register(self.event_ring.fileno(), select.EPOLLIN)
        self._epoll.register(sock.fileno(), select.EPOLLIN)
        sock.setblocking(False)
        self._closed = False
        self.rearm_events()

    @classmethod
    def connect(cls, service: str, run_dir: str | os.PathLike | None = None, timeout: float = 5.0, *,
                ring_size: int = 0, event_ring_size: int = 0, max_message_size: int = 0) -> "IpcClient":
        """Connect and handshake.

        Args:
            service: the service name.
            run_dir: where the server's sockets are (default $CORO_RUN_DIR or /run/coro).
            timeout: seconds for the whole handshake.
            ring_size, event_ring_size, max_message_size: requests to the server
                (0 = its defaults); the agreed values are on the client.

        Raises:
            NotConnected: no server listens for ``service``.
            Refused: the server refused (reason in the message).
            Timeout: the handshake did not complete in time.
            ProtocolError: the server's reply was malformed.
        """
        path = socket_path(run_dir if run_dir is not None else DEFAULT_RUN_DIR, service)
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        buffer = HandshakeBuffer()
        rings: list[Ring] = []
        try:
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except (FileNotFoundError, ConnectionRefusedError) as error:
                raise NotConnected(f"no coroipc server for {service!r} at {path}: {error.strerror}") from None
            except socket.timeout:
                raise Timeout(f"the server for {service!r} at {path} did not accept within {timeout} s") from None
            send_handshake(sock, codec.Hello(service=service, request_ring_bytes=ring_size,
                                             response_ring_bytes=ring_size, event_ring_bytes=event_ring_size,
                                             max_message_bytes=max_message_size))
            reply = recv_handshake(sock, buffer, deadline)
            if isinstance(reply, codec.Refuse):
                raise Refused(f"{service}: {reply.reason}", code=int(reply.code))
            if not isinstance(reply, codec.Accept) or len(buffer.fds) != 3 * FDS_PER_RING:
                raise ProtocolError(f"expected ACCEPT with {3 * FDS_PER_RING} descriptors, got "
                                    f"{type(reply).__name__} with {len(buffer.fds)}")
            for index, name in enumerate(reply.ring_names):
                segment, reader_bell, writer_bell = buffer.fds[index * FDS_PER_RING:(index + 1) * FDS_PER_RING]
                buffer.fds[index * FDS_PER_RING + 1:(index + 1) * FDS_PER_RING] = [-1, -1]  # the ring owns them now
                rings.append(Ring.attach_fd(segment, name, bell_fds=(reader_bell, writer_bell)))
            buffer.close_fds()
            send_handshake(sock, codec.Ready())
            return cls(service, sock, reply, (rings[0], rings[1], rings[2]))
        except BaseException:
            buffer.close_fds()
            for ring in rings:
                ring.close()
            sock.close()
            raise

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the connection (the server frees its side). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for ring in self._rings:
            ring.close()
        if self._epoll is not None:
            self._epoll.close()
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> "IpcClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        """Readable when events are waiting or the connection is gone (then dispatch raises)."""
        self._check_open()
        return self._epoll.fileno()

    def stats(self) -> ClientStats:
        """This connection's counters.

        ``events`` is every event handed out by the event ring, whatever
        read it (:meth:`dispatch`, :meth:`events`, or a zero-copy
        ``event_ring.peek_batch`` as ``clients.totem`` does): the ring
        counts its messages once per read, so nothing is counted per event
        here.
        """
        counts = self._counts
        return ClientStats(service=self.service, connection_id=self.connection_id,
                           requests=counts["requests"], posts=counts["posts"],
                           events=self.event_ring._count["messages_read"],
                           stale_responses=counts["stale_responses"],
                           max_message_size=self.max_message_size)

    def _check_open(self) -> None:
        if self._closed:
            raise NotConnected(f"client for {self.service!r} is closed")
        if self._lost_reason is not None:
            raise ConnectionLost(self._lost_reason)

    def _lost(self, detail: str = "") -> ConnectionLost:
        """Work out why the connection is gone (GOODBYE or EOF), remember it."""
        if self._lost_reason is None:
            reason = "the server closed the connection (it exited or died)"
            buffer = HandshakeBuffer()
            try:
                data = self._sock.recv(4096)
                if data:
                    buffer.feed(data)
                    found = buffer.next_message()
                    if found is not None and isinstance(found[1], codec.Goodbye):
                        reason = f"the server disconnected us: {found[1].reason}"
            except (BlockingIOError, InterruptedError):
                reason = detail or reason
            except (OSError, ProtocolError):
                pass
            self._lost_reason = f"{self.service}: {reason}"
        return ConnectionLost(self._lost_reason)

    def _socket_alive(self) -> bool:
        return not select.select([self._sock], [], [], 0)[0]

    # ------------------------------------------------------------ requests
    def _send(self, function: int, status: int, request_id: int, payload, deadline: float | None,
              parts_size: int | None = None) -> None:
        """Write one request; ``payload`` is the buffers to write back to back
        when ``parts_size`` (their total) is given."""
        size = len(payload) if parts_size is None else parts_size
        if size > self.max_message_size:
            raise MessageTooLarge(f"request of {size} bytes exceeds the agreed maximum of "
                                  f"{self.max_message_size} for {self.service!r}")
        while True:
            try:
                if parts_size is None:
                    return put_message(self.request_ring, function, status, request_id, payload)
                return put_message_parts(self.request_ring, function, status, request_id, payload, parts_size)
            except WouldBlock:
                remaining = None if deadline is None else deadline - time.monotonic()
                self.request_ring.wait_writable(16 + size, remaining)

    def request_parts(self, function: int, parts: Sequence, timeout: float | None = None) -> bytes:
        """Like :meth:`request` for a payload given as the byte buffers
        ``parts``, each copied straight into the request ring after the
        message header (no joined copy first; the server's counterpart is
        ``Connection.send_event_parts``). Worth it for parts of many KiB;
        for many small parts ``b"".join`` and :meth:`request` cost less.

        Args:
            function: the service's function number.
            parts: bytes-like objects of bytes (``len`` is their size), the
                payload in order.
            timeout: as :meth:`request`.

        Returns:
            the response's payload.

        Raises:
            As :meth:`request` (MessageTooLarge for the parts' total).
        """
        return self._request(function, parts, sum(map(len, parts)), timeout)

    def request(self, function: int, payload=b"", timeout: float | None = None) -> bytes:
        """Send a request and wait for its response.

        Raises:
            MessageTooLarge: before anything is sent.
            Timeout: no response in time (a late one is discarded).
            ServiceError: the service failed on this request.
            ConnectionLost: the server went away or disconnected us.
            NotConnected: this client is closed.
        """
        return self._request(function, payload, None, timeout)

    def _request(self, function: int, payload, parts_size: int | None, timeout: float | None) -> bytes:
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        request_id = next(self._ids)
        ring = self.response_ring
        try:
            self._send(function, 0, request_id, payload, deadline, parts_size)
            self._counts["requests"] += 1
            while True:
                span = ring._claim_one()  # the usual case: one response, read in place
                if span is not None:
                    start, end = span
                    if end - start < 16:
                        ring._publish_read()
                        raise ProtocolError(f"ring message of {end - start} bytes is shorter than its "
                                            "16-byte header")
                    mapping = ring._mmap
                    _function, status, ident = _unpack_header(mapping, start)
                    body = mapping[start + 16:end]
                    ring._publish_read()
                    messages = ((status, ident, body),)
                else:
                    messages = [(*parse_message(message)[1:], message[16:]) for message in ring.read_batch()]
                for status, ident, body in messages:
                    if ident != request_id:
                        self._counts["stale_responses"] += 1  # answer to a request that timed out
                        continue
                    if status:
                        raise ServiceError(body.decode("utf-8", "replace"), status)
                    return body
                if span is None:
                    ring.wait_readable(deadline=deadline)
        except ConnectionLost as error:
            raise self._lost(str(error)) from None

    def post(self, function: int, payload=b"", timeout: float | None = None) -> None:
        """Send a one-way message (no response); waits only while the ring is full."""
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._send(function, codec.REQUEST_NO_REPLY, next(self._ids), payload, deadline)
        except ConnectionLost as error:
            raise self._lost(str(error)) from None
        self._counts["posts"] += 1

    # ------------------------------------------------------------ events
    def rearm_events(self) -> None:
        """Ask the server to ring :meth:`fileno` for the next event.

        :meth:`dispatch` and :meth:`events` do this after every read. A
        caller that reads the event ring itself (``event_ring.peek_batch``,
        as ``clients.totem`` does) and polls :meth:`fileno` calls it after
        each read; one that never polls need not (the server would ring a
        doorbell nobody waits on). When an event is already waiting,
        :meth:`fileno` is made readable at once, so no event is missed
        between the read and the re-arm.

        Raises:
            NotConnected: the client is closed.
        """
        if self._closed:
            raise NotConnected(f"client for {self.service!r} is closed")
        if self.event_ring.arm_reader():
            self.event_ring._reader_bell.ring()  # already waiting: make fileno() readable

    def _read_events(self, max_count: int | None, timeout: float | None) -> list[bytes]:
        self._check_open()
        try:
            messages = self.event_ring.read_batch(max_count)
            if not messages and timeout != 0:
                try:
                    self.event_ring.wait_readable(timeout)
                except Timeout:
                    return []
                messages = self.event_ring.read_batch(max_count)
        except ConnectionLost as error:
            raise self._lost(str(error)) from None
        if not messages and not self._socket_alive():
            raise self._lost()
        return messages

    def dispatch(self, callback: Callable[[int, memoryview], object], max_count: int | None = None,
                 timeout: float | None = 0.0) -> int:
        """Call ``callback(function, payload)`` for waiting events.

        Args:
            max_count: at most this many (None: all waiting).
            timeout: wait this long for the first one (0: don't wait, None: forever).

        Returns:
            how many events were dispatched.

        Raises:
            ConnectionLost: the server is gone and no event is left.
        """
        messages = self._read_events(max_count, timeout)
        try:
            for message in messages:
                function, _status, _sequence = parse_message(message)
                callback(function, memoryview(message)[16:])
        finally:
            self.rearm_events()
        return len(messages)

    def events(self, timeout: float | None = None) -> Iterator[tuple[int, bytes]]:
        """Iterate over events as (function, payload); ends after ``timeout``
        seconds without one (None: never ends until the connection is lost)."""
        try:
            while True:
                messages = self._read_events(None, timeout)
                if not messages:
                    return
                for message in messages:
                    function, _status, _sequence = parse_message(message)
                    yield function, message[16:]
        finally:
            if not self._closed:
                self.rearm_events()
