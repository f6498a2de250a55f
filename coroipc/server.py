"""The coroipc server: Unix-socket handshakes, per-connection rings, dispatch.

One :class:`IpcServer` listens on ``<run_dir>/<service>.sock`` for each of its
services and runs single-threaded: :meth:`IpcServer.process` does one turn
of work (accept, handshakes, requests, event backlogs, time-outs), and
:meth:`IpcServer.fileno` (an epoll descriptor) becomes readable when there
is work, so the server fits any event loop (``attach`` wires it to asyncio).

Connection life: accept -> read HELLO (deadline) -> check version, service,
uid/gid -> create three rings (0600, chowned to the client when root) ->
ACCEPT with the segment descriptors -> READY -> unlink the segments ->
established. Any failure on the way closes the rings, which unlinks them.

Event flow control (the policy, see docs/architecture.md): ``send_event``
never blocks. When the event ring is full, events wait in a per-connection
backlog bounded in messages and bytes; when that is full too, ``send_event``
raises WouldBlock to the service. A client whose backlog makes no progress
for ``event_stall_timeout_s``, or that had ``event_refusal_limit`` events
refused in a row, is disconnected with a GOODBYE saying why.

The cost of a pass (a daemon calls ``process(0.0)`` several times per loop
turn): the connections are walked as a tuple rebuilt only when one comes or
goes; only request rings left unarmed are armed again; the time-outs are
looked at only while handshakes or backlogs exist, and the backlogs only
once the earliest moment one can have stalled has passed; ``poll=False``
skips the epoll system call for a caller that knows the set is quiet. An
event can be written as gathered parts (``send_event_parts``) with no
joined copy, and held wake-ups are rung once per doorbell (``flush_wakes``).
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from coroipc import _shm, codec
from coroipc._connection import Connection, ConnectionStats
from coroipc._doorbell import Bell, fence
from coroipc._poller import Poller
from coroipc._ring_layout import R_EPOCH, R_FLAGS, SLEEPING, W_POS
from coroipc._server_backlog import BacklogMixin
from coroipc._server_handshake import MAX_RING, MIN_RING, HandshakeMixin, PendingHandshake
from coroipc._ring_wait import SpinPolicy
from coroipc._wire import pack_header, put_message, send_handshake
from coroipc.errors import (ConnectionLost, IpcError, MessageTooLarge, NotConnected, ProtocolError,
                            RingCorrupted, WouldBlock)

__all__ = ["Service", "Connection", "IpcServer", "ServerStats", "ConnectionStats", "socket_path"]

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("coroipc.server")
#: While requests keep coming, poll the selector only every this many turns.
_SELECT_EVERY_BUSY_TURNS = 16
RefuseCode = codec.RefuseCode
_unpack_header = codec.MESSAGE_HEADER.unpack_from
_pack_header = codec.MESSAGE_HEADER.pack
_NO_REPLY = codec.REQUEST_NO_REPLY


def socket_path(run_dir: str | os.PathLike, service: str) -> str:
    """Where the server for ``service`` listens inside ``run_dir``."""
    return os.path.join(os.fspath(run_dir), f"{service}.sock")


class Service:
    """Subclass to offer a service; the server calls these on its own thread.

    Attributes:
        name: the service name clients connect to (also the socket name).
    """

    name: str = "service"

    def on_connect(self, conn: "Connection") -> None:
        """A client finished its handshake."""

    def on_request(self, conn: "Connection", function: int, payload: memoryview) -> bytes | None:
        """Handle one request.

        ``payload`` is a view into the request ring, valid only during this
        call (copy it to keep it). Return the response payload, or None to
        answer later with ``conn.respond(conn.current_request_id, ...)``
        (or not at all, for one-way messages). An exception becomes a
        ServiceError at the client; the connection stays up.
        """
        return None

    def on_disconnect(self, conn: "Connection") -> None:
        """The connection is gone (client closed or died, or the server ended it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStats:
    connections: int
    connections_total: int
    handshakes_pending: int
    refused: int
    handshakes_failed: int
    disconnects: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    events_sent: int = 0
    events_refused: int = 0


class IpcServer(HandshakeMixin, BacklogMixin):
    """Serve one or more :class:`Service` objects over coroipc.

    Args:
        run_dir: directory for the sockets (created if missing).
        services: the services offered; names must be unique.
        allowed_uids, allowed_gids: who may connect. When both are None,
            root and the server's own effective uid may.
        ring_size: default bytes per ring (request, response, event).
        max_message_size: largest payload in either direction (default: what
            the rings allow).
        event_backlog_messages, event_backlog_bytes: per-connection bound on
            events waiting for room in the event ring.
        event_stall_timeout_s: disconnect a client whose full backlog makes no
            progress for this long.
        event_refusal_limit: ... or that had this many events refused in a row.
        handshake_timeout_s: drop a client that does not finish the handshake.
        max_connections: refuse beyond this many (and hold at most this many
            unfinished handshakes).
        max_ring_size: the largest ring a client may ask for.
        requests_per_turn: fairness: requests taken from one client per turn.
        spin_us: how long ``process(timeout>0)`` polls the rings before sleeping.
        defer_wakes: hold the wake-ups of clients (a response or an event
            for a client asleep on its ring) until ``flush_wakes``: a server
            with a loop of its own rings them once at the end of its turn
            instead of handing the CPU to a client in the middle of it.
    """

    def __init__(self, run_dir: str | os.PathLike, services: list[Service], *,
                 allowed_uids: set[int] | None = None, allowed_gids: set[int] | None = None,
                 ring_size: int = 1 << 20, max_message_size: int | None = None,
                 event_ring_size: int | None = None, event_backlog_messages: int = 1024,
                 event_backlog_bytes: int = 4 << 20, event_stall_timeout_s: float = 10.0,
                 event_refusal_limit: int = 10_000, handshake_timeout_s: float = 5.0,
                 max_connections: int = 1024, max_ring_size: int = 16 << 20, requests_per_turn: int = 256,
                 spin_us: float = 50.0, defer_wakes: bool = False) -> None:
        names = [service.name for service in services]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"services must be a non-empty list with unique names, got {names}")
        for size in (ring_size, event_ring_size or ring_size):
            if not MIN_RING <= size <= MAX_RING or size % 64:
                raise ValueError(f"ring size {size} must be a multiple of 64 in {MIN_RING}..{MAX_RING}")
        self.run_dir = os.fspath(run_dir)
        self.services = {service.name: service for service in services}
        if allowed_uids is None and allowed_gids is None:
            allowed_uids = {0, os.geteuid()}
        self.allowed_uids = frozenset(allowed_uids or ())
        self.allowed_gids = frozenset(allowed_gids or ())
        self.ring_size = ring_size
        self.event_ring_size = event_ring_size or ring_size
        self.max_message_size = max_message_size
        self.event_backlog_messages = event_backlog_messages
        self.event_backlog_bytes = event_backlog_bytes
        self.event_stall_timeout_s = event_stall_timeout_s
        self.event_refusal_limit = event_refusal_limit
        self.handshake_timeout_s = handshake_timeout_s
        self.max_connections = max_connections
        self.max_ring_size = max(max_ring_size, ring_size, self.event_ring_size)
        self.requests_per_turn = requests_per_turn
        self._spinner = SpinPolicy(int(spin_us * 1000))
        self._busy_turns = 0
        self._pending_wakes: list[Bell] | None = [] if defer_wakes else None
        self._selector: Poller | None = None
        self._pid = os.getpid()
        self._listeners: dict[str, socket.socket] = {}
        self._handshakes: dict[int, PendingHandshake] = {}
        self._connections: dict[int, Connection] = {}
        # The connections as a tuple (rebuilt when one comes or goes): what
        # each pass walks, without copying the dict every time.
        self._serving: tuple[Connection, ...] = ()
        # Connections whose request ring is not armed (see _arm_idle).
        self._unarmed: set[Connection] = set()
        self._backlogged: set[Connection] = set()
        # No backlogged client can have stalled for event_stall_timeout_s
        # before this monotonic time (see _check_deadlines).
        self._stall_check_at = math.inf
        self._ids = itertools.count(1)
        self._counts: collections.Counter[str] = collections.Counter()
        self._disconnects: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Clean up after a dead predecessor, then listen.

        Raises:
            IpcError: another live server already listens on a socket.
            OSError: the run directory or a socket cannot be set up.
        """
        os.makedirs(self.run_dir, mode=0o755, exist_ok=True)
        removed = _shm.sweep_dead(tag=_shm.resource_tag())
        if removed:
            log.warning("removed %d shared-memory segments left by dead processes: %s", len(removed),
                        ", ".join(removed))
        self._selector = Poller()
        try:
            for name in self.services:
                path = socket_path(self.run_dir, name)
                _remove_stale_socket(path)
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                try:
                    listener.bind(path)
                except BaseException:
                    listener.close()
                    raise
                self._listeners[name] = listener  # from here on close() removes the path
                os.chmod(path, 0o666)  # the uid/gid policy at the handshake is the gate
                listener.listen(128)
                listener.setblocking(False)
                self._selector.register(listener, ("listen", (listener, name)))
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        """An epoll descriptor, readable when :meth:`process` has work."""
        if self._selector is None:
            raise NotConnected("the server is not started")
        return self._selector.fileno()

    def close(self) -> None:
        """Disconnect everyone, stop listening, remove sockets and segments. Idempotent.

        In a forked child that inherited a running server, only the child's
        descriptors are dropped: the parent keeps serving.
        """
        if self._pid != os.getpid():
            self._forget_inherited()
            return
        for conn in list(self._connections.values()):
            self._disconnect(conn, RefuseCode.SHUTTING_DOWN, "the server is shutting down")
        for pending in list(self._handshakes.values()):
            self._fail_handshake(pending, "the server is shutting down", refuse=RefuseCode.SHUTTING_DOWN)
        for name, listener in self._listeners.items():
            path = socket_path(self.run_dir, name)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            listener.close()
        self._listeners.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def _forget_inherited(self) -> None:
        for conn in self._connections.values():
            conn.closed = True
            for ring in (conn.request_ring, conn.response_ring, conn.event_ring):
                ring.close()  # a no-op on the shared state in a child (see Ring.close)
            conn.sock.close()
        for pending in self._handshakes.values():
            pending.sock.close()
        for listener in self._listeners.values():
            listener.close()
        self._connections.clear()
        self._serving = ()
        self._unarmed.clear()
        self._handshakes.clear()
        self._listeners.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None

    def __enter__(self) -> "IpcServer":
        if self._selector is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def connections(self) -> list[Connection]:
        return list(self._connections.values())

    def stats(self) -> ServerStats:
        counts = self._counts
        return ServerStats(connections=len(self._connections), connections_total=counts["connections_total"],
                           handshakes_pending=len(self._handshakes), refused=counts["refused"],
                           handshakes_failed=counts["handshakes_failed"], disconnects=dict(self._disconnects),
                           requests=counts["requests"], events_sent=counts["events_sent"],
                           events_refused=counts["events_refused"])

    # ------------------------------------------------------------ main loop
    def serve_forever(self, stop_event=None, poll_interval_s: float = 0.1) -> None:
        """Run :meth:`process` until ``stop_event`` (anything with ``is_set()``) is set."""
        if self._selector is None:
            self.start()
        while stop_event is None or not stop_event.is_set():
            self.process(timeout=poll_interval_s)

    def attach(self, loop: "asyncio.AbstractEventLoop") -> Callable[[], None]:
        """Drive this server from an asyncio loop; returns a function that detaches it."""
        if self._selector is None:
            self.start()
        fd = self.fileno()
        timer = None

        def tick() -> None:
            nonlocal timer
            self.process(0.0)
            timer = loop.call_later(0.1, tick)  # deadlines: handshakes, stalled clients

        loop.add_reader(fd, self.process, 0.0)
        timer = loop.call_later(0.1, tick)

        def detach() -> None:
            loop.remove_reader(fd)
            if timer is not None:
                timer.cancel()

        return detach

    def flush_wakes(self) -> int:
        """Ring the wake-ups held since the last call (``defer_wakes``).

        Returns:
            How many clients were woken.
        """
        held = self._pending_wakes
        if not held:
            return 0
        if len(held) == 1:
            bell = held.pop()
            bell.ring()
            return 1
        # A bell held twice (its client woke and slept again within the
        # turn) is rung once: one wake-up reaches the latest sleep.
        pending = dict.fromkeys(held)
        held.clear()  # the list the rings append to: emptied in place
        for bell in pending:
            bell.ring()
        return len(pending)

    def process(self, timeout: float = 0.0, *, poll: bool = True) -> int:
        """One turn of work, waiting up to ``timeout`` seconds for some.

        Args:
            timeout: seconds to wait for work (0: do not wait).
            poll: with ``timeout`` 0, False serves the rings (requests,
                backlogs, time-outs) without polling :meth:`fileno` (accepts,
                handshakes, hang-ups, doorbells): for a caller whose own
                poll just found it quiet, or that polled it earlier in the
                same turn. Whatever is left there keeps the descriptor
                readable for the caller's next poll.

        Returns:
            how many units of work (accepts, handshake steps, requests,
            flushed events) were done.
        """
        if self._selector is None:
            raise NotConnected("the server is not started")
        if timeout <= 0:
            if poll:
                done = self._turn(0.0)
            else:
                done = self._serve_connections()
                if self._handshakes or self._backlogged:
                    self._check_deadlines()
            if self._unarmed:
                self._arm_idle()  # the caller polls fileno() next: wake-ups must reach it
            return done
        # Busy: serve the rings without a system call; look at the selector
        # (accepts, hang-ups, deadlines) only every few busy turns.
        done = self._serve_connections()
        if done:
            self._busy_turns += 1
            if self._busy_turns % _SELECT_EVERY_BUSY_TURNS:
                return done
            return done + self._turn(0.0)
        self._busy_turns = 0
        if self._connections and self._spinner.spin(self._request_waiting):
            return self._serve_connections()
        if self._arm_idle():
            return self._turn(0.0)
        self.flush_wakes()  # never sleep on held wake-ups
        return self._turn(timeout)  # sleeps; returns at once if the selector has events

    def _request_waiting(self) -> bool:
        for conn in self._serving:
            ring = conn.request_ring
            if not conn.response_backlog and not conn.closed and (
                    ring._pending is not None or ring._words[W_POS] != ring._rpos):
                return True
        return False

    def _arm_idle(self) -> bool:
        """Arm the request rings that are not armed; True if one has data already.

        ``Ring.arm_reader(drain=False)`` written out (a new sleep epoch, our
        SLEEPING flag, a fence, the re-check): a busy client's ring is
        disarmed and armed again once per request. Its doorbell is drained
        when it fires (``_turn``).
        """
        ready = False
        unarmed = self._unarmed
        while unarmed:
            conn = unarmed.pop()
            if conn.armed or conn.closed:
                continue
            ring = conn.request_ring
            words = ring._words
            if words is None or not ring._is_reader:  # not read yet, or closed: the ring's own way
                try:
                    conn.armed = True
                    if ring.arm_reader(drain=False):
                        ready = True
                except IpcError as error:
                    self._disconnect(conn, RefuseCode.CORRUPTED, f"request ring failed: {error}")
                continue
            conn.armed = True
            words[R_EPOCH] += 1
            words[R_FLAGS] = SLEEPING
            fence()  # the flag is visible before we look at the writer's position
            if ring._pending is not None or words[W_POS] != ring._rpos:
                ready = True
        return ready

    def _turn(self, timeout: float) -> int:
        done = 0
        for kind, target in self._selector.poll(timeout):
            if kind == "listen":
                done += self._accept(*target)
            elif kind == "handshake":
                done += self._handshake_readable(target)
            elif target.closed:
                continue  # disconnected earlier in this batch of events
            elif kind == "socket":
                self._socket_readable(target)
            elif kind == "request":
                target.request_ring._reader_bell.drain(1)
                target.armed = False  # its doorbell rang: re-arm before the next sleep
                self._unarmed.add(target)
            elif kind == "space":
                for ring in (target.response_ring, target.event_ring):
                    ring._get_writer_bell().drain()
        done += self._serve_connections()
        if self._handshakes or self._backlogged:
            self._check_deadlines()
        return done

    def _serve_connections(self) -> int:
        """Flush backlogs and take requests from every connection that has some."""
        done = 0
        backlogged = self._backlogged
        for conn in self._serving:
            if conn.closed:
                continue
            if conn.response_backlog or (backlogged and conn in backlogged):
                done += self._flush(conn)
                if conn.closed or conn.response_backlog:
                    continue
            ring = conn.request_ring
            # ring.readable(), inlined: this runs for every client on every pass.
            if ring._pending is not None or ring._words[W_POS] != ring._rpos:
                if conn.armed:
                    # ring.disarm_reader(), inlined (an armed ring has been
                    # armed by its reader): we are awake, no wake-ups until
                    # we arm again.
                    ring._words[R_FLAGS] = 0
                    conn.armed = False
                    self._unarmed.add(conn)
                done += self._serve_requests(conn)
        return done

    # ------------------------------------------------------------ established
    def _establish(self, pending: PendingHandshake) -> None:
        rings = pending.rings
        for ring in rings:
            ring.unlink()  # both sides have it mapped: nothing is left if either dies now
            os.close(ring.fd)
            ring.fd = -1
        sock = pending.sock
        self._handshakes.pop(sock.fileno(), None)
        conn = Connection(self, next(self._ids), pending.service, sock, pending.credentials, rings,
                          pending.max_message_size)
        for ring in rings:
            ring.wake_sink = self._pending_wakes
        self._selector.modify(sock, ("socket", conn))
        self._selector.register(rings[0].fileno(), ("request", conn))
        conn.selector_fds += [sock.fileno(), rings[0].fileno()]
        self._connections[conn.id] = conn
        self._serving = tuple(self._connections.values())
        self._unarmed.add(conn)
        self._counts["connections_total"] += 1
        log.debug("%r connected", conn)
        try:
            conn.service.on_connect(conn)
        except Exception:
            log.exception("%s.on_connect failed for %r", type(conn.service).__name__, conn)
            self._disconnect(conn, RefuseCode.SHUTTING_DOWN, "the service failed to accept the connection")

    # ------------------------------------------------------------ requests
    def _serve_requests(self, conn: Connection) -> int:
        ring = conn.request_ring
        done = 0
        try:
            ring.check_header()
            span = ring._claim_one()
            if span is not None:  # the usual case: one request in a frame of its own, served in place
                try:
                    self._request(conn, ring._view, span[0], span[1])
                finally:
                    ring._publish_read()
                done = 1
                # ring.readable(), inlined (a closed connection's ring is closed too).
                if conn.closed or (ring._pending is None and ring._words[W_POS] == ring._rpos):
                    return done
            with ring.peek_batch(max_count=self.requests_per_turn - done) as views:
                for view in views:
                    if conn.closed:
                        break
                    self._request(conn, view, 0, len(view))
                    done += 1
        except WouldBlock:
            pass
        except RingCorrupted as error:
            self._disconnect(conn, RefuseCode.CORRUPTED, f"request ring corrupted: {error}")
        except ProtocolError as error:
            self._disconnect(conn, RefuseCode.PROTOCOL, f"bad request: {error}")
        except NotConnected:
            pass  # the service closed the connection in a callback
        return done

    def _request(self, conn: Connection, source: memoryview, start: int, end: int) -> None:
        """Serve the request ``source[start:end]`` (header and payload) and answer it.

        The payload is handed to the service as one view into ``source``
        (released after the call); the answer goes straight into the
        response ring when nothing is backlogged there (see _respond).

        Raises:
            ProtocolError: the message is shorter than its header or longer
                than the agreed maximum (the caller disconnects the client).
        """
        size = end - start - 16
        if size < 0:
            raise ProtocolError(f"ring message of {size + 16} bytes is shorter than its 16-byte header")
        if size > conn.max_message_size:
            raise ProtocolError(f"request of {size} bytes exceeds the agreed {conn.max_message_size}")
        function, status, request_id = _unpack_header(source, start)
        conn.counts["requests"] += 1
        self._counts["requests"] += 1
        conn.current_request_id = request_id
        payload = source[start + 16:end]
        try:
            result = conn.service.on_request(conn, function, payload)
            response_status = 0
        except Exception as error:  # the service's bug must not take the server down
            log.exception("%s.on_request(function %d) failed", type(conn.service).__name__, function)
            result, response_status = f"{type(error).__name__}: {error}".encode()[:1024], 1
        finally:
            payload.release()
        if result is None or status & _NO_REPLY or conn.closed:
            return
        try:
            if conn.response_backlog or len(result) > conn.max_message_size:
                self._respond(conn, function, response_status, request_id, result)
                return
            try:  # _respond's usual case, written out: once per request
                conn.response_ring.write_prefixed_nowait(_pack_header(function, response_status, request_id),
                                                         result)
                conn.counts["responses"] += 1
            except WouldBlock:
                self._respond(conn, function, response_status, request_id, result)
        except (MessageTooLarge, TypeError, ValueError) as error:  # the service returned something unusable
            log.error("%s.on_request(function %d) returned a bad response: %s", type(conn.service).__name__,
                      function, error)
            self._respond(conn, function, 1, request_id, f"bad response from the service: {error}".encode()[:1024])
        except ConnectionLost as error:
            self._disconnect(conn, RefuseCode.PROTOCOL, f"client closed its response ring: {error}")

    def _respond(self, conn: Connection, function: int, status: int, request_id: int, payload) -> None:
        if len(payload) > conn.max_message_size:
            raise MessageTooLarge(f"response of {len(payload)} bytes exceeds the agreed {conn.max_message_size}")
        if not conn.response_backlog:
            try:
                put_message(conn.response_ring, function, status, request_id, payload)
                conn.counts["responses"] += 1
                return
            except WouldBlock:
                pass
        # The client is not reading its responses: hold this one and stop
        # taking its requests until it does (back-pressure, bounded by one turn).
        conn.response_backlog.append(pack_header(function, status, request_id) + bytes(payload))
        self._watch_space(conn)

    # ------------------------------------------------------------ teardown
    def _socket_readable(self, conn: Connection) -> None:
        """After the handshake the client sends nothing: readable means gone."""
        try:
            data = conn.sock.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            data = b""
            log.debug("socket error on %r: %s", conn, error)
        reason = "the client closed the connection" if not data else "the client sent data after the handshake"
        self._disconnect(conn, RefuseCode.PROTOCOL, reason, notify=bool(data))

    def _disconnect(self, conn: Connection, code: RefuseCode, reason: str, notify: bool = True) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._backlogged.discard(conn)
        self._unarmed.discard(conn)
        self._disconnects[code.name.lower()] += 1
        log.debug("%r disconnected: %s", conn, reason)
        if notify:
            try:
                send_handshake(conn.sock, codec.Goodbye(code=code, reason=reason))
            except OSError:
                pass
        if self._selector is not None:
            for fd in conn.selector_fds:
                self._selector.unregister(fd)
        conn.selector_fds.clear()
        for ring in (conn.request_ring, conn.response_ring, conn.event_ring):
            ring.close()
        conn.sock.close()
        conn.event_backlog.clear()
        conn.response_backlog.clear()
        self._connections.pop(conn.id, None)  # last: stats() counts it until all is freed
        self._serving = tuple(self._connections.values())
        try:
            conn.service.on_disconnect(conn)
        except Exception:
            log.exception("%s.on_disconnect failed for %r", type(conn.service).__name__, conn)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a dead server; refuse if a live one answers."""
    if not os.path.lexists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.warning("removing stale socket %s left by a dead server", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    except OSError as error:
        raise IpcError(f"{path} exists and cannot be probed: {error}") from None
    finally:
        probe.close()
    raise IpcError(f"another server is already listening on {path}")
