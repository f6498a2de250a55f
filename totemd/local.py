"""The local interface: the coroipc service ``totem`` inside totemd.

Processes of the node (the service engine, ``coro load``, tests) connect
with ``clients.totem.TotemClient``. The wire format is in
``totemd.local_codec``; this module holds the per-connection state and the
policies:

- Submits go straight into the core's send queue (``Daemon.local_submit``).
  The queue is bounded in bytes (``TotemParams.max_queued_bytes``); when it is
  full the reply is ``TRY_AGAIN`` and nothing is queued, so a fast client is
  slowed down instead of growing the daemon without bound (corosync's
  CS_ERR_TRY_AGAIN from ``corosync_sending_allowed``).
- Deliveries and configuration changes go to every *subscribed* connection
  (HELLO with the subscribe flag) as events. A client that asked for batches
  (HELLO flag BATCH; ``TotemClient`` does) gets the deliveries of one loop
  turn as DELIVER_BATCH events of up to ``BATCH_EVENT_BYTES`` each: one
  event-ring write (and at most one wake-up) for many deliveries. Others get
  one DELIVER event per delivery. Either payload is built once per turn and
  written into each subscriber's event ring: a batch of large deliveries
  (``wire.deliver_batch_payload``: a ``GatherPayload``) is copied part by
  part straight from the delivered messages into each ring (one copy per
  subscriber, none besides); a batch of small ones is joined once first
  (one C loop costs less than a Python step per delivery).
- A subscriber that reads its events slower than they come fills its event
  ring, then the server's bounded backlog, then a per-connection overflow
  queue here (bounded by ``overflow_limit_bytes``, default 32 MiB; the event
  payloads are shared between subscribers, not copied). While a connection
  has overflow, its own submits get ``TRY_AGAIN``: a client that is behind
  on its deliveries is slowed down first. When the overflow bound is hit we
  disconnect it (it gets ConnectionLost with the reason). A client never
  misses a delivery silently: it gets them all, in order, or loses its
  connection.
- A malformed request gets ``INVALID`` (or a ServiceError) and is counted;
  the connection and every other client are unaffected.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from coroipc import Connection, Service
from coroipc import errors as ipc_errors
from totemd import local_codec as wire

if TYPE_CHECKING:
    from totemd.daemon import Daemon

__all__ = ["TotemService", "SERVICE_NAME"]

SERVICE_NAME = "totem"
OVERFLOW_LIMIT_BYTES = 32 << 20
# Plain ints for the comparisons made per request and per event.
_SUBMIT = int(wire.Function.SUBMIT)
_SUBMIT_MANY = int(wire.Function.SUBMIT_MANY)
_DELIVER = wire.EventKind.DELIVER
_OK = wire.Status.OK
_TRY_AGAIN = wire.Status.TRY_AGAIN
_TOO_LARGE = wire.Status.TOO_LARGE
_decode_submit_many = wire.decode_submit_many
_encode_submit_many_reply = wire.encode_submit_many_reply
_DELIVER_BATCH = wire.EventKind.DELIVER_BATCH
log = logging.getLogger("totemd.local")


class TotemService(Service):
    """The ``totem`` coroipc service; one per daemon."""

    name = SERVICE_NAME

    def __init__(self, daemon: "Daemon", overflow_limit_bytes: int = OVERFLOW_LIMIT_BYTES) -> None:
        self._daemon = daemon
        self._overflow_limit = overflow_limit_bytes
        self._subscribers: dict[int, Connection] = {}
        # Subscribers that take DELIVER_BATCH events (the others get one DELIVER each).
        self._batched: set[int] = set()
        # Events a subscriber could not take yet, in order: conn id -> (queue, bytes).
        self._overflow: dict[int, tuple[deque[tuple[int, Any]], list[int]]] = {}
        self.overflow_peak_bytes = 0
        self.counts = dict.fromkeys(("connections_total", "requests", "bad_requests", "submitted",
                                     "try_again", "try_again_reader_behind", "too_large",
                                     "events_sent", "events_overflowed",
                                     "slow_clients_disconnected", "events_too_large"), 0)

    # -- coroipc callbacks ---------------------------------------------------------------

    def on_connect(self, conn: Connection) -> None:
        self.counts["connections_total"] += 1

    def on_disconnect(self, conn: Connection) -> None:
        self._subscribers.pop(conn.id, None)
        self._batched.discard(conn.id)
        self._overflow.pop(conn.id, None)

    def on_request(self, conn: Connection, function: int, payload: memoryview) -> bytes | None:
        self.counts["requests"] += 1
        try:
            if function == _SUBMIT_MANY:  # the bulk of the requests: first
                if conn.id in self._overflow:
                    return self._behind(wire.encode_submit_many_reply(_TRY_AGAIN, 0, 0))
                return self._submit_many(payload)
            if function == _SUBMIT:
                if conn.id in self._overflow:
                    return self._behind(wire.encode_submit_reply(_TRY_AGAIN, 0))
                return self._submit(payload)
            if function == wire.Function.HELLO:
                return self._hello(conn, payload)
            if function == wire.Function.STATS:
                return json.dumps(self._daemon.stats().as_dict(), separators=(",", ":")).encode()
        except wire.LocalDecodeError as error:
            self.counts["bad_requests"] += 1
            log.debug("bad request from pid %d: %s", conn.pid, error)
            if function == _SUBMIT_MANY:
                return wire.encode_submit_many_reply(wire.Status.INVALID, 0, 0)
            if function == _SUBMIT:
                return wire.encode_submit_reply(wire.Status.INVALID, 0)
            raise ValueError(f"malformed request: {error}") from None
        self.counts["bad_requests"] += 1
        raise ValueError(f"unknown function {function}")

    # -- requests ------------------------------------------------------------------------

    def _hello(self, conn: Connection, payload: memoryview) -> bytes:
        flags = wire.decode_hello_flags(payload)
        subscribe = bool(flags & wire.SUBSCRIBE)
        batched = subscribe and bool(flags & wire.BATCH)
        if subscribe:
            self._subscribers[conn.id] = conn
        else:
            self._subscribers.pop(conn.id, None)
        if batched:
            self._batched.add(conn.id)
        else:
            self._batched.discard(conn.id)
        daemon = self._daemon
        return wire.encode_hello_reply(wire.Hello(
            version=wire.VERSION, subscribed=subscribe, node_id=daemon.node_id, inc=daemon.inc,
            ring_id=daemon.current_ring_id(), members=daemon.current_members(), batched=batched))

    def _behind(self, reply: bytes) -> bytes:
        """The client has deliveries waiting for it here: it reads first, then sends."""
        self.counts["try_again_reader_behind"] += 1
        return reply

    def _count(self, status: wire.Status) -> None:
        if status is _OK:
            self.counts["submitted"] += 1
        elif status is _TRY_AGAIN:
            self.counts["try_again"] += 1
        elif status is _TOO_LARGE:
            self.counts["too_large"] += 1

    def _submit(self, payload: memoryview) -> bytes:
        data, safe = wire.decode_submit(payload)
        status, sseq = self._daemon.local_submit(data, safe)
        self._count(status)
        return wire.encode_submit_reply(status, sseq)

    def _submit_many(self, payload: memoryview) -> bytes:
        daemon = self._daemon
        # One more than there is room for, so a full queue still answers
        # TRY_AGAIN with the status of the first refused message.
        items, count = _decode_submit_many(payload, daemon.submit_room() + 1)
        status, accepted, first = daemon.local_submit_many(items)
        counts = self.counts
        counts["submitted"] += accepted
        if accepted < count:
            # The refused rest: counted once, by the status of the first refused one.
            if status is _OK or status is _TRY_AGAIN:
                status = _TRY_AGAIN
                counts["try_again"] += 1
            elif status is _TOO_LARGE:
                counts["too_large"] += 1
        return _encode_submit_many_reply(status, accepted, first)

    # -- events --------------------------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    @property
    def wants_single_deliveries(self) -> bool:
        """True if a subscriber takes one DELIVER event per delivery (no BATCH flag)."""
        return len(self._batched) < len(self._subscribers)

    def broadcast(self, kind: wire.EventKind, payload: Any) -> None:
        """Send one event to every subscriber, in order behind any overflow it has."""
        if not self._subscribers:
            return
        for conn in list(self._subscribers.values()):
            self._send(conn, kind, payload)

    def broadcast_deliveries(self, batches: list[bytes | wire.GatherPayload],
                             singles: list[bytes] | None) -> None:
        """Send one turn's deliveries: the DELIVER_BATCH payloads ``batches``
        (bytes, or what ``wire.deliver_batch_payload`` makes: a GatherPayload
        is copied part by part straight into each event ring) to the
        subscribers that asked for them, the DELIVER payloads ``singles``
        (None when no subscriber needs them) to the others."""
        batched = self._batched
        send = self._send
        for conn in list(self._subscribers.values()):
            if conn.id in batched:
                for payload in batches:
                    if not send(conn, _DELIVER_BATCH, payload):
                        break
            elif singles is not None:
                for payload in singles:
                    if not send(conn, _DELIVER, payload):
                        break

    def _send(self, conn: Connection, kind: int, payload: Any) -> bool:
        """One event to one subscriber, behind its overflow; False if it is gone."""
        overflow = self._overflow.get(conn.id) if self._overflow else None
        if overflow is None:
            try:
                if type(payload) is wire.GatherPayload:
                    conn.send_event_parts(kind, payload.parts, payload.size)
                else:
                    conn.send_event(kind, payload)
                self.counts["events_sent"] += 1
                return True
            except ipc_errors.WouldBlock:
                overflow = self._overflow[conn.id] = (deque(), [0])
            except ipc_errors.NotConnected:
                self._subscribers.pop(conn.id, None)
                self._batched.discard(conn.id)
                return False
            except ipc_errors.MessageTooLarge:
                # Its rings are too small for this delivery: it cannot have
                # them all, so it loses its connection (never a silent gap).
                reason = (f"a delivery event of {len(payload)} bytes exceeds the connection's "
                          f"maximum of {conn.max_message_size}")
                self.counts["events_too_large"] += 1
                log.warning("disconnecting local client pid %d: %s", conn.pid, reason)
                self._drop(conn, reason)
                return False
        if type(payload) is wire.GatherPayload:
            payload = payload.join()  # it waits: its parts may not outlive this call
        queue, size = overflow
        queue.append((kind, payload))
        size[0] += len(payload)
        self.counts["events_overflowed"] += 1
        self.overflow_peak_bytes = max(self.overflow_peak_bytes, size[0])
        if size[0] > self._overflow_limit:
            self._drop_slow(conn)
            return False
        return True

    def flush(self) -> None:
        """Move overflowed events into the event rings as room appears (each loop turn)."""
        if not self._overflow:
            return
        for conn_id, (queue, size) in list(self._overflow.items()):
            conn = self._subscribers.get(conn_id)
            if conn is None:
                del self._overflow[conn_id]
                continue
            try:
                while queue:
                    kind, payload = queue[0]
                    conn.send_event(kind, payload)
                    queue.popleft()
                    size[0] -= len(payload)
                    self.counts["events_sent"] += 1
            except ipc_errors.WouldBlock:
                continue
            except ipc_errors.NotConnected:
                self._subscribers.pop(conn_id, None)
                self._batched.discard(conn_id)
            del self._overflow[conn_id]

    def _drop_slow(self, conn: Connection) -> None:
        self.counts["slow_clients_disconnected"] += 1
        log.warning("disconnecting local client pid %d: it does not read its deliveries "
                    "(%d bytes of events waiting)", conn.pid, self._overflow_limit)
        self._drop(conn, "the client did not read its deliveries (event queue full)")

    def _drop(self, conn: Connection, reason: str) -> None:
        """Forget a subscriber and close its connection with ``reason``."""
        self._subscribers.pop(conn.id, None)
        self._batched.discard(conn.id)
        self._overflow.pop(conn.id, None)
        try:
            conn.close(reason)
        except ipc_errors.IpcError:
            pass

    def stats(self) -> dict[str, int]:
        return {**self.counts, "subscribers": len(self._subscribers),
                "batch_subscribers": len(self._batched),
                "overflow_bytes": sum(size[0] for _queue, size in self._overflow.values()),
                "overflow_peak_bytes": self.overflow_peak_bytes}
