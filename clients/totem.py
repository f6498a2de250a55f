"""The client library of the local Totem interface (the coroipc service ``totem``).

::

    from clients.totem import TotemClient, TryAgain

    with TotemClient.connect(run_dir="/run/corosync") as totem:
        sseq = totem.submit(b"hello", safe=False)          # queued for total order
        for event in totem.events(timeout=1.0):            # DeliverEvent / ConfEvent
            if isinstance(event, DeliverEvent):
                print(event.mid, event.sender, event.ring_id, event.seq, event.data)
        print(totem.stats()["ring_id"], totem.stats()["members"])

Every subscribed client sees every delivery of the node (its own messages
included) in the one total order, and every configuration change (TRANS then
REG) in place among them. ``fileno()`` is readable when events wait, so the
client fits any poll loop or asyncio (``loop.add_reader(totem.fileno(),
totem.dispatch, callback)``); it is not thread-safe.

Back-pressure: the node's send queue is bounded. ``submit`` raises
:class:`TryAgain` when it is full (nothing was queued: retry after some
deliveries); ``submit_many`` queues as many as fit, in order, and raises
TryAgain with ``accepted`` set when not all did; ``offer_many`` does the
same and returns ``(accepted, first_sseq)`` instead of raising (for a sender
that keeps the queue full and so hears "full" on most calls).

Cost: events are read in place from the shared-memory event ring (no copy;
``dispatch_deliveries`` and ``dispatch_batches`` hand out views valid during
the callback), the ring space is handed back once per dispatch, and a
client that never asked for ``fileno()`` is not re-armed after each
dispatch (so the daemon rings its doorbell only while it really sleeps in a
dispatch). A bulk consumer counts its own deliveries with
``DeliveryBatch.count_from`` without touching the payloads.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import time
from typing import Any, Callable, Iterator, Sequence

from coroipc import IpcClient
from coroipc import codec as ipc_codec
from coroipc import errors as ipc_errors
from totemd import local_codec as wire
from totemd.local_codec import ConfEvent, DeliverEvent, Hello, Status

__all__ = ["TotemClient", "TotemError", "TryAgain", "MessageTooLarge", "NotConnected",
           "ConnectionLost", "ShuttingDown", "DeliverEvent", "ConfEvent", "Hello", "DeliveryBatch"]

SERVICE_NAME = "totem"
#: A dispatch(timeout=0) that finds nothing checks that totemd is alive at
#: most this often (a system call; a lost daemon is reported that much later).
_LIVENESS_CHECK_S = 0.01
_EVENT_HEADER = ipc_codec.MESSAGE_HEADER
_EVENT_HEADER_SIZE = _EVENT_HEADER.size
Event = DeliverEvent | ConfEvent
#: submit_many/offer_many write a request whose first message is at least
#: this big part by part into the request ring (IpcClient.request_parts)
#: instead of joining it first. Measured (CPU per request written, joined
#: vs parts): 8 KiB x 6 5.3 vs 5.4 us, x 32 18.2 vs 19.1; 16 KiB x 8 9.2
#: vs 8.1; 64 KiB x 4 15.3 vs 9.7. The first message stands for the batch:
#: a look at every size would cost more than it saves for small messages.
_GATHER_FROM_BYTES = 16 * 1024


class TotemError(Exception):
    """Base of the errors this client raises."""


class TryAgain(TotemError):
    """The node's send queue is full; nothing (or only ``accepted`` messages
    of a batch) was queued. Retry after deliveries have drained it."""

    def __init__(self, message: str, accepted: int = 0, first_sseq: int = 0) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.first_sseq = first_sseq


class MessageTooLarge(TotemError, ValueError):
    """The message exceeds the node's maximum message size; nothing was queued."""


class ShuttingDown(TotemError):
    """The node is leaving the ring and takes no more messages."""


class NotConnected(TotemError):
    """No totemd answers in the run directory, or this client is closed."""


class ConnectionLost(TotemError):
    """totemd went away or disconnected this client (e.g. it did not read its events)."""


class DeliveryBatch:
    """Consecutive deliveries of one DELIVER_BATCH event, seen in place in the
    event ring (no copy): valid only during the callback that receives it.

    ``table`` is a read-only numpy structured array, one row per delivery in
    order, with the fields ``sender``, ``sinc``, ``sseq``, ``ring_rep``,
    ``ring_seq``, ``seq``, ``flags`` (bit 0: safe) and ``length``, so a
    consumer can select or count deliveries without a Python step per
    message (``numpy.count_nonzero(batch.table["sender"] == me)``);
    :meth:`count_from` counts one origin's deliveries (one's own);
    ``payload(i)`` is the i-th message as a memoryview; iterating yields the
    tuples of :meth:`TotemClient.dispatch_deliveries`.

    Making one reads the event's count and checks that the table fits (no
    numpy): the table is made when first asked for, and the payload offsets
    (with the check that the payload lengths fill the event exactly) when a
    payload is first asked for (``offsets``, ``payload``, iteration). A
    consumer that only counts pays for neither.

    Raises (when made, or at the first payload access):
        LocalDecodeError: the table or the payloads do not fit the event.
    """

    __slots__ = ("_view", "_count", "_first", "_table", "_offsets")

    def __init__(self, payload: memoryview | bytes) -> None:
        view = memoryview(payload)
        if len(view) < _COUNT.size:
            raise wire.LocalDecodeError("DELIVER_BATCH event shorter than its count")
        (count,) = _COUNT.unpack_from(view)
        first = _COUNT.size + count * _ITEM_SIZE
        if first > len(view):
            raise wire.LocalDecodeError(f"DELIVER_BATCH of {len(view)} bytes is shorter than the "
                                        f"table of its {count} deliveries")
        self._view = view
        self._count = count
        self._first = first
        self._table: Any = None
        self._offsets: Any = None

    @classmethod
    def of_event(cls, event: DeliverEvent) -> "DeliveryBatch":
        """A one-delivery batch holding a DELIVER event (connections without BATCH)."""
        row = wire.DELIVER_ITEM.pack(len(event.data), event.sender, event.sinc, event.sseq,
                                     *event.ring_id, event.seq, wire.SAFE if event.safe else 0)
        return cls(memoryview(wire.encode_deliver_batch([row], [event.data])))

    def __len__(self) -> int:
        return self._count

    @property
    def table(self) -> Any:
        """The deliveries' origins as a read-only numpy structured array (a view, no copy)."""
        if self._table is None:
            numpy, table_dtype, _origin = _numpy()
            table = numpy.frombuffer(self._view, dtype=table_dtype, count=self._count,
                                     offset=_COUNT.size)
            table.flags.writeable = False
            self._table = table
        return self._table

    @property
    def offsets(self) -> Any:
        """The int64 array of each payload's offset in the event (checked on first use)."""
        if self._offsets is None:
            numpy = _numpy()[0]
            lengths = self.table["length"].astype(numpy.int64)
            ends = numpy.cumsum(lengths) + self._first
            total = int(ends[-1]) if len(ends) else self._first
            if total != len(self._view):
                raise wire.LocalDecodeError(
                    f"DELIVER_BATCH payload lengths add up to {total - self._first} bytes, "
                    f"the event holds {len(self._view) - self._first}")
            self._offsets = ends - lengths
        return self._offsets

    def payload(self, index: int) -> memoryview:
        start = int(self.offsets[index])
        return self._view[start:start + int(self.table["length"][index])]

    def count_from(self, sender: int, sinc: int) -> int:
        """How many of these deliveries node ``sender`` sent in its
        incarnation ``sinc`` (one's own: ``hello.node_id``, ``hello.inc``).

        A row's sender and sinc are adjacent big-endian u32s, read as one
        u64. Up to ``_STRUCT_ROWS`` rows one cached struct unpacks them all
        (measured: 0.4 µs for 6 rows, 2.7 for 64, against 5-6 µs for the
        numpy comparison, whose fixed cost is several times higher still
        with cold caches on a busy machine); bigger batches use numpy.
        """
        key = (sender << 32) | sinc
        count = self._count
        if count <= _STRUCT_ROWS:
            return _origins_struct(count).unpack_from(self._view, _COUNT.size).count(key)
        numpy, _table, origin_dtype = _numpy()
        origins = numpy.frombuffer(self._view, dtype=origin_dtype, count=count,
                                   offset=_COUNT.size)["origin"]
        return int(numpy.count_nonzero(origins == key))

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return wire.iter_deliver_batch(self._view)


_COUNT = struct.Struct("!I")
_ITEM_SIZE = wire.DELIVER_ITEM.size
_ITEM_ITER = wire.DELIVER_ITEM.iter_unpack
#: count_from unpacks batches of up to this many rows with struct, bigger ones with numpy.
_STRUCT_ROWS = 128
_numpy_cache: list[Any] = []


@functools.lru_cache(maxsize=_STRUCT_ROWS)
def _origins_struct(rows: int) -> struct.Struct:
    """A struct reading the (sender << 32 | sinc) u64 of ``rows`` table rows."""
    skip_before = 4  # the length
    skip_after = _ITEM_SIZE - skip_before - 8
    return struct.Struct("!" + f"{skip_before}xQ{skip_after}x" * rows)


def _numpy() -> tuple[Any, Any, Any]:
    """numpy, the DELIVER_ITEM table dtype and a dtype that sees a row's
    sender and sinc as one big-endian u64 ``origin``, made once (building a
    structured dtype costs more than viewing a whole batch). Imported on
    first use: only clients that look at tables pay for numpy."""
    if not _numpy_cache:
        import numpy

        table = numpy.dtype(list(wire.DELIVER_ITEM_FIELDS))
        origin = numpy.dtype({"names": ["origin"], "formats": [">u8"],
                              "offsets": [table.fields["sender"][1]], "itemsize": table.itemsize})
        _numpy_cache.extend((numpy, table, origin))
    return _numpy_cache[0], _numpy_cache[1], _numpy_cache[2]


def _each_delivery(payload: memoryview, on_deliver: Callable[..., object]) -> int:
    """Call ``on_deliver(sender, sinc, sseq, ring_rep, ring_seq, seq, flags,
    data view)`` for each delivery of a DELIVER_BATCH, checking each length
    before its payload is handed out; how many.

    The table is read with one ``iter_unpack`` over its rows (measured:
    290 ns a row against 580 for a per-row ``unpack_from`` generator, 6
    rows of 8 KiB; 335 against 405 for 300 rows of 64 B).

    Raises:
        LocalDecodeError: the table or a payload overruns the event, or
            bytes are left over (the deliveries before it were handed out).
    """
    view = memoryview(payload)
    end = len(view)
    if end < _COUNT.size:
        raise wire.LocalDecodeError("DELIVER_BATCH event shorter than its count")
    (count,) = _COUNT.unpack_from(view)
    offset = _COUNT.size + count * _ITEM_SIZE
    if offset > end:
        raise wire.LocalDecodeError(f"DELIVER_BATCH of {end} bytes is shorter than the table of "
                                    f"its {count} deliveries")
    index = 0
    for length, sender, sinc, sseq, rep, ring_seq, seq, flags in \
            _ITEM_ITER(view[_COUNT.size:offset]):
        stop = offset + length
        if stop > end:
            raise wire.LocalDecodeError(f"DELIVER_BATCH delivery {index} of {length} bytes "
                                        "overruns the event")
        on_deliver(sender, sinc, sseq, rep, ring_seq, seq, flags, view[offset:stop])
        offset = stop
        index += 1
    if offset != end:
        raise wire.LocalDecodeError(f"DELIVER_BATCH has {end - offset} bytes after {count} deliveries")
    return count


def _decode_events(function: int, payload: Any) -> list[Event] | None:
    """The events of one event message (a DELIVER_BATCH holds many); None if unknown."""
    if function == wire.EventKind.DELIVER_BATCH:
        return wire.decode_deliver_batch(payload)
    if function == wire.EventKind.DELIVER:
        return [wire.decode_deliver(payload)]
    if function == wire.EventKind.CONFCHG:
        return [wire.decode_conf(payload)]
    return None


class TotemClient:
    """A connection to the node's totemd. Make one with :meth:`connect`."""

    def __init__(self, ipc: IpcClient, hello: Hello) -> None:
        self._ipc: IpcClient | None = ipc
        self.hello = hello
        self.unknown_events = 0
        self._polled = False  # fileno() was asked for: keep it armed
        self._next_liveness_check = 0.0

    @classmethod
    def connect(cls, run_dir: str | os.PathLike[str] | None = None, *, subscribe: bool = True,
                timeout: float = 5.0, batch: bool = True) -> "TotemClient":
        """Connect to totemd.

        Args:
            run_dir: the node's run directory (default: env ``CORO_RUN_DIR``).
            subscribe: receive deliveries and configuration changes as events.
            timeout: seconds for the connection handshake.
            batch: take the deliveries in DELIVER_BATCH events (fewer
                event-ring writes and wake-ups; the events seen through
                :meth:`dispatch`/:meth:`events` are the same).

        Raises:
            NotConnected: nothing serves ``totem`` in ``run_dir``.
        """
        directory = run_dir if run_dir is not None else os.environ.get("CORO_RUN_DIR")
        if directory is None:
            raise NotConnected("no run directory: pass run_dir or set CORO_RUN_DIR")
        try:
            ipc = IpcClient.connect(SERVICE_NAME, run_dir=os.fspath(directory), timeout=timeout)
        except (ipc_errors.IpcError, OSError) as error:
            raise NotConnected(f"cannot reach totemd in {os.fspath(directory)}: {error}") from error
        try:
            hello = wire.decode_hello_reply(ipc.request(wire.Function.HELLO,
                                                        wire.encode_hello(subscribe, batch)))
        except BaseException:
            ipc.close()
            raise
        return cls(ipc, hello)

    # -- plumbing ------------------------------------------------------------------------

    def _request(self, function: int, payload: Any, timeout: float | None = None,
                 parts: bool = False) -> bytes:
        """One request; ``payload`` is a list of buffers to write back to back
        when ``parts`` (``IpcClient.request_parts``)."""
        if self._ipc is None:
            raise NotConnected("the totem client is closed")
        try:
            if parts:
                return self._ipc.request_parts(function, payload, timeout=timeout)
            return self._ipc.request(function, payload, timeout=timeout)
        except ipc_errors.MessageTooLarge as error:
            raise MessageTooLarge(str(error)) from error
        except ipc_errors.NotConnected as error:
            raise NotConnected(str(error)) from error
        except ipc_errors.IpcError as error:
            raise ConnectionLost(f"totemd connection lost: {error}") from error

    def close(self) -> None:
        """Disconnect (idempotent)."""
        ipc, self._ipc = self._ipc, None
        if ipc is not None:
            ipc.close()

    def __enter__(self) -> "TotemClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def node_id(self) -> int:
        return self.hello.node_id

    # -- submitting ----------------------------------------------------------------------

    def submit(self, data: bytes | memoryview, safe: bool = False, timeout: float | None = None) -> int:
        """Queue ``data`` for totally ordered delivery to every node.

        Args:
            data: the message.
            safe: deliver only once every member has it (EVS safe delivery).
            timeout: seconds to wait for the daemon's answer (None: no limit).

        Returns:
            The message's sseq (its mid is ``"<node>.<inc>.<sseq>"``).

        Raises:
            TryAgain: the send queue is full; nothing was queued.
            MessageTooLarge: larger than the node's maximum message size.
            ShuttingDown: the node is leaving.
            ConnectionLost, NotConnected: see the classes.
        """
        status, sseq = wire.decode_submit_reply(
            self._request(wire.Function.SUBMIT, wire.encode_submit(data, safe), timeout))
        self._raise_for(status, 0, sseq)
        return sseq

    def submit_many(self, messages: Sequence[tuple[bytes | memoryview, bool]],
                    timeout: float | None = None) -> int:
        """Queue several (data, safe) messages in one round trip, in order.

        Returns:
            The sseq of the first message (the others follow by one).

        Raises:
            TryAgain: the queue filled up; ``error.accepted`` messages (the
                first ones) were queued, from ``error.first_sseq``.
            MessageTooLarge, ShuttingDown, ConnectionLost, NotConnected: as ``submit``
                (``MessageTooLarge`` after the messages before it were queued).
        """
        if not messages:
            return 0
        status, accepted, first = self._submit_many(messages, timeout)
        self._raise_for(status, accepted, first)
        return first

    def offer_many(self, messages: Sequence[tuple[bytes | memoryview, bool]],
                   timeout: float | None = None) -> tuple[int, int]:
        """Queue as many of the (data, safe) ``messages`` as the node takes
        now, in order, in one round trip; a full queue is an answer, not an
        error (what a sender that keeps the queue full gets on most calls:
        no exception raised and caught per round trip).

        Returns:
            (accepted, first_sseq): the first ``accepted`` messages were
            queued, with sseqs ``first_sseq``, ``first_sseq + 1``, ...
            (0, 0) when the queue was full.

        Raises:
            MessageTooLarge, ShuttingDown, ConnectionLost, NotConnected: as
                :meth:`submit_many`.
        """
        if not messages:
            return 0, 0
        status, accepted, first = self._submit_many(messages, timeout)
        if status is not Status.TRY_AGAIN:
            self._raise_for(status, accepted, first)
        return accepted, first

    def _submit_many(self, messages: Sequence[tuple[bytes | memoryview, bool]],
                     timeout: float | None) -> tuple[Status, int, int]:
        batch = messages if isinstance(messages, list) else list(messages)
        if len(batch[0][0]) < _GATHER_FROM_BYTES:
            reply = self._request(wire.Function.SUBMIT_MANY, wire.encode_submit_many(batch), timeout)
        else:  # large messages: each copied once, straight into the request ring
            reply = self._request(wire.Function.SUBMIT_MANY, wire.encode_submit_many_parts(batch),
                                  timeout, parts=True)
        return wire.decode_submit_many_reply(reply)

    @staticmethod
    def _raise_for(status: Status, accepted: int, first: int) -> None:
        if status is Status.OK:
            return
        if status is Status.TRY_AGAIN:
            raise TryAgain("the node's send queue is full; retry later", accepted, first)
        if status is Status.TOO_LARGE:
            raise MessageTooLarge("the message exceeds the node's maximum message size")
        if status is Status.SHUTTING_DOWN:
            raise ShuttingDown("the node is leaving the ring")
        raise TotemError(f"the daemon refused the request as malformed ({status.name})")

    # -- events --------------------------------------------------------------------------

    def fileno(self) -> int:
        """Readable when events are waiting (from the first call on, every
        dispatch re-arms the daemon's wake-up for it)."""
        ipc = self._ipc
        if ipc is None:
            raise NotConnected("the totem client is closed")
        if not self._polled:
            self._polled = True
            ipc.rearm_events()  # a dispatch without a poller left it unarmed
        return ipc.fileno()

    def dispatch(self, callback: Callable[[Event], object], max_count: int | None = None,
                 timeout: float | None = 0.0) -> int:
        """Call ``callback(event)`` for the waiting events.

        Args:
            max_count: at most this many event messages (None: all waiting);
                a DELIVER_BATCH message counts once and is dispatched whole.
            timeout: wait this long for the first one (0: do not wait; None: forever).

        Returns:
            How many events were dispatched.

        Raises:
            ConnectionLost: the daemon is gone or dropped us (a ``timeout=0``
                poll that finds nothing looks at most every 10 ms).
        """
        dispatched = 0

        def on_event(function: int, payload: memoryview) -> None:
            nonlocal dispatched
            events = _decode_events(function, payload)
            if events is None:
                self.unknown_events += 1
                return
            for event in events:
                callback(event)
            dispatched += len(events)

        self._dispatch_raw(on_event, max_count, timeout)
        return dispatched

    def _dispatch_raw(self, on_event: Callable[[int, memoryview], None], max_count: int | None,
                      timeout: float | None) -> None:
        """Call ``on_event(function, payload)`` for the waiting event messages,
        mapping coroipc's errors to ours.

        The usual case reads in place: the payloads are views of the event
        ring (no copy), valid during ``on_event``; the ring space is handed
        back once after the last one. Nothing is re-armed for ``fileno()``
        unless this client asked for it (the wake-up flag would make the
        daemon ring a doorbell nobody polls, a system call on both sides per
        batch). A blocking wait sleeps on the ring's doorbell. coroipc's own
        dispatch (copies, liveness check, re-arming) runs only when nothing
        is waiting: after a timeout, when the daemon went away (it reports
        why), and for a ``timeout=0`` poll at most every
        ``_LIVENESS_CHECK_S`` (the check is a system call).
        """
        ipc = self._ipc
        if ipc is None:
            raise NotConnected("the totem client is closed")
        ring = ipc.event_ring
        try:
            if not ring.readable():
                if timeout == 0:
                    now = time.monotonic()
                    if now < self._next_liveness_check:
                        return
                    self._next_liveness_check = now + _LIVENESS_CHECK_S
                    return self._dispatch_copied(on_event, max_count, 0.0)
                try:
                    ring.wait_readable(timeout)
                except (ipc_errors.Timeout, ipc_errors.ConnectionLost):
                    # Nothing came, or the daemon is gone: coroipc reads
                    # what is left and says why the connection ended.
                    return self._dispatch_copied(on_event, max_count, 0.0)
            try:
                with ring.peek_batch(max_count) as views:
                    for view in views:
                        if len(view) < _EVENT_HEADER_SIZE:
                            raise ipc_errors.ProtocolError(
                                f"event of {len(view)} bytes is shorter than its header")
                        on_event(_EVENT_HEADER.unpack_from(view)[0], view[_EVENT_HEADER_SIZE:])
            except ipc_errors.WouldBlock:
                pass  # only a PAD frame was waiting (skipped)
            if self._polled:
                ipc.rearm_events()  # fileno() readable for the next event
        except ipc_errors.IpcError as error:
            raise ConnectionLost(f"totemd connection lost: {error}") from error

    def _dispatch_copied(self, on_event: Callable[[int, memoryview], None], max_count: int | None,
                         timeout: float | None) -> None:
        """coroipc's dispatch (copies out, checks the daemon, re-arms fileno())."""
        ipc = self._ipc
        if ipc is None:
            raise NotConnected("the totem client is closed")
        try:
            ipc.dispatch(on_event, max_count=max_count, timeout=timeout)
        except ipc_errors.IpcError as error:
            raise ConnectionLost(f"totemd connection lost: {error}") from error

    def dispatch_deliveries(self, on_deliver: Callable[..., object],
                            on_other: Callable[[Event], object], max_count: int | None = None,
                            timeout: float | None = 0.0) -> int:
        """Like :meth:`dispatch`, without building a :class:`DeliverEvent` per
        delivery (for consumers of many small messages, e.g. ``coro load``).

        Args:
            on_deliver: called as ``on_deliver(sender, sinc, sseq, ring_rep,
                ring_seq, seq, flags, data)`` for each delivery, in order;
                ``data`` is a memoryview valid only during the call, ``flags``
                bit 0 is safe.
            on_other: called with every other event (``ConfEvent``).
            max_count, timeout: as :meth:`dispatch`.

        Returns:
            How many events (deliveries included) were dispatched.

        Raises:
            ConnectionLost: the daemon is gone or dropped us.
        """
        dispatched = 0

        def on_event(function: int, payload: memoryview) -> None:
            nonlocal dispatched
            if function == wire.EventKind.DELIVER_BATCH:
                dispatched += _each_delivery(payload, on_deliver)
                return
            dispatched += self._each_event(function, payload, lambda event: on_deliver(
                event.sender, event.sinc, event.sseq, event.ring_id[0], event.ring_id[1],
                event.seq, wire.SAFE if event.safe else 0, memoryview(event.data)), on_other)

        self._dispatch_raw(on_event, max_count, timeout)
        return dispatched

    def dispatch_batches(self, on_batch: Callable[[DeliveryBatch], object],
                         on_other: Callable[[Event], object], max_count: int | None = None,
                         timeout: float | None = 0.0) -> int:
        """Like :meth:`dispatch_deliveries`, one call per DELIVER_BATCH event
        with a :class:`DeliveryBatch` (a numpy table of the deliveries' origins
        and zero-copy payload views), for consumers that handle deliveries in
        bulk. A connection made with ``batch=False`` gets one-delivery
        batches built from its DELIVER events.

        Returns:
            How many deliveries and other events were dispatched.

        Raises:
            ConnectionLost: the daemon is gone or dropped us.
            LocalDecodeError: a malformed event (as :meth:`dispatch`).
        """
        dispatched = 0

        def on_event(function: int, payload: memoryview) -> None:
            nonlocal dispatched
            if function == wire.EventKind.DELIVER_BATCH:
                batch = DeliveryBatch(payload)
                on_batch(batch)
                dispatched += len(batch)
                return
            dispatched += self._each_event(function, payload, lambda event: on_batch(
                DeliveryBatch.of_event(event)), on_other)

        self._dispatch_raw(on_event, max_count, timeout)
        return dispatched

    def _each_event(self, function: int, payload: memoryview,
                    on_deliver_event: Callable[[DeliverEvent], object],
                    on_other: Callable[[Event], object]) -> int:
        """Decode a non-batch event message and hand each event on; how many."""
        events = _decode_events(function, payload)
        if events is None:
            self.unknown_events += 1
            return 0
        for event in events:
            if isinstance(event, DeliverEvent):
                on_deliver_event(event)
            else:
                on_other(event)
        return len(events)

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Iterate over events; ends after ``timeout`` seconds without one.

        Raises:
            ConnectionLost: the daemon is gone or dropped us.
        """
        if self._ipc is None:
            raise NotConnected("the totem client is closed")
        try:
            for function, payload in self._ipc.events(timeout=timeout):
                events = _decode_events(function, payload)
                if events is None:
                    self.unknown_events += 1
                    continue
                yield from events
        except ipc_errors.IpcError as error:
            raise ConnectionLost(f"totemd connection lost: {error}") from error

    # -- statistics ----------------------------------------------------------------------

    def stats(self, timeout: float | None = 5.0) -> dict[str, Any]:
        """The daemon's runtime statistics (``totemd.stats.DaemonStats.as_dict``):
        node_id, inc, state, ring_id, members, token_rotation_ms, and the
        srp/transport/local/daemon counter groups."""
        return json.loads(self._request(wire.Function.STATS, b"", timeout))
