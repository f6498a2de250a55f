"""Wire format of the local interface (the coroipc service ``totem``) and of
the origin header the daemon puts in front of every ordered message.

Pure: no I/O. Network byte order everywhere. ``decode_*`` validate every
length and value and raise one ``LocalDecodeError``.

Requests (client -> daemon; coroipc function id, payload -> reply payload)::

    1 HELLO        u16 version, u16 flags (bit 0: subscribe to events,
                   bit 1: take deliveries in DELIVER_BATCH events)
                   -> u16 version, u16 flags (the granted bits), u32 node_id, u32 inc,
                      u32 ring_rep, u64 ring_seq, u16 n, n x u32 members
    2 SUBMIT       u8 flags (bit 0: safe), payload bytes
                   -> u8 status, 3 pad, u64 sseq (0 unless status is OK)
    3 SUBMIT_MANY  u32 count, count x (u8 flags, u32 length, bytes)
                   -> u8 status, 3 pad, u32 accepted, u64 first_sseq
                   (the first ``accepted`` messages were queued, in order,
                   with sseqs first_sseq, first_sseq+1, ...)
    4 STATS        (empty) -> UTF-8 JSON object (see totemd.stats)

Status: 0 OK, 1 TRY_AGAIN (the send queue is full: retry after some
deliveries), 2 TOO_LARGE (larger than the node's maximum message), 3 INVALID
(malformed request), 4 SHUTTING_DOWN (the node is leaving the ring).

Events (daemon -> subscribed client)::

    1 DELIVER   u32 sender, u32 sinc, u64 sseq, u32 ring_rep, u64 ring_seq,
                u32 seq, u8 flags (bit 0: safe), 3 pad, then the payload
    2 CONFCHG   u8 kind (0 REG, 1 TRANS), 3 pad, u32 ring_rep, u64 ring_seq,
                u32 old_rep, u64 old_seq (0/0 when none), u16 n_members,
                u16 n_left, u16 n_joined, 2 pad, then the u32 node ids
    3 DELIVER_BATCH  u32 count, then a table of count x DELIVER_ITEM
                (u32 payload length, then the fields of a DELIVER header:
                40 bytes each), then the count payloads back to back in the
                table's order: consecutive deliveries, sent only to a client
                whose HELLO asked for them (one event-ring write and at most
                one wake-up for many deliveries). The fixed-width table lets
                a client see every delivery's origin as one array (numpy,
                ``deliver_batch_table``) without walking the payloads.

Origin header (in front of every message the daemon submits to the core)::

    u8 magic 0xC7, u8 version 2 (ORIGIN_VERSION), u16 flags (bit 0: safe), u32 inc, u64 sseq

It lets every node name a delivered message ``"<sender>.<sinc>.<sseq>"`` (the
EVS log's mid) and give it to clients with its origin, whatever the payload.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

__all__ = ["VERSION", "Function", "EventKind", "Status", "LocalDecodeError", "Hello",
           "DeliverEvent", "ConfEvent", "ORIGIN", "encode_origin", "decode_origin",
           "encode_hello", "decode_hello", "encode_hello_reply", "decode_hello_reply",
           "encode_submit", "decode_submit", "encode_submit_reply", "decode_submit_reply",
           "encode_submit_many_parts",
           "encode_submit_many", "decode_submit_many", "encode_submit_many_reply",
           "decode_submit_many_reply", "deliver_header", "decode_deliver", "encode_conf",
           "decode_conf", "SAFE", "SUBSCRIBE", "BATCH", "DELIVER_ITEM", "decode_hello_flags",
           "encode_deliver_batch", "decode_deliver_batch", "iter_deliver_batch",
           "deliver_batch_table", "DELIVER_ITEM_FIELDS", "GatherPayload", "deliver_batch_payload",
           "GATHER_MIN_AVERAGE_BYTES"]

VERSION = 2
SAFE = 0x1
SUBSCRIBE = 0x1
BATCH = 0x2
ORIGIN_MAGIC = 0xC7
ORIGIN_VERSION = 2

ORIGIN = struct.Struct("!BBHIQ")
_HELLO = struct.Struct("!HH")
_HELLO_REPLY = struct.Struct("!HHIIIQH")
_SUBMIT = struct.Struct("!B")
_SUBMIT_REPLY = struct.Struct("!B3xQ")
_MANY_COUNT = struct.Struct("!I")
_MANY_ITEM = struct.Struct("!BI")
_VALID_FLAGS = bytes((0, SAFE))  # the flags bytes a SUBMIT_MANY message may have
_IS_SAFE = SAFE.__eq__
# The message slices of uniform SUBMIT_MANY requests by (length, count): a
# client sends the same shape again and again. Bounded: cleared when full.
_UNIFORM_SLICES: dict[tuple[int, int], list[slice]] = {}
_UNIFORM_SHAPES = 64
_MANY_REPLY = struct.Struct("!B3xIQ")
_DELIVER = struct.Struct("!IIQIQIB3x")
_CONF = struct.Struct("!B3xIQIQHHH2x")
_ID = struct.Struct("!I")
# One DELIVER_BATCH table row: u32 payload length, then the DELIVER header.
DELIVER_ITEM = struct.Struct("!IIIQIQIB3x")
#: The same row as a numpy dtype (names as ``iter_deliver_batch``'s tuples).
DELIVER_ITEM_FIELDS = (("length", ">u4"), ("sender", ">u4"), ("sinc", ">u4"), ("sseq", ">u8"),
                       ("ring_rep", ">u4"), ("ring_seq", ">u8"), ("seq", ">u4"), ("flags", "u1"),
                       ("pad", "V3"))
_DELIVER_SIZE = _DELIVER.size
_TABLE_DTYPE = None  # the numpy dtype of DELIVER_ITEM_FIELDS, made on first use


class Function(enum.IntEnum):
    """Request function ids."""

    HELLO = 1
    SUBMIT = 2
    SUBMIT_MANY = 3
    STATS = 4


class EventKind(enum.IntEnum):
    """Event function ids."""

    DELIVER = 1
    CONFCHG = 2
    DELIVER_BATCH = 3


class Status(enum.IntEnum):
    """Reply status of SUBMIT and SUBMIT_MANY."""

    OK = 0
    TRY_AGAIN = 1
    TOO_LARGE = 2
    INVALID = 3
    SHUTTING_DOWN = 4


class LocalDecodeError(ValueError):
    """A request, reply, event or origin header is malformed (too short, bad
    magic/version, a count that does not match the length, an unknown value)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """The daemon's answer to HELLO."""

    version: int
    subscribed: bool
    node_id: int
    inc: int
    ring_id: tuple[int, int]
    members: tuple[int, ...]
    batched: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverEvent:
    """One message delivered in total order (``mid`` is its cluster-wide name)."""

    sender: int
    sinc: int
    sseq: int
    ring_id: tuple[int, int]
    seq: int
    safe: bool
    data: bytes

    @property
    def mid(self) -> str:
        return f"{self.sender}.{self.sinc}.{self.sseq}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfEvent:
    """A configuration change: REG (a new ring: members, joined) or TRANS
    (the members that come from the old ring, and those that left)."""

    kind: str
    ring_id: tuple[int, int]
    old_ring_id: tuple[int, int] | None
    members: tuple[int, ...]
    left: tuple[int, ...] = ()
    joined: tuple[int, ...] = ()


def _need(data: memoryview | bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise LocalDecodeError(f"{what} of {len(data)} bytes is shorter than {size}")


# -- origin header -------------------------------------------------------------------------

def encode_origin(inc: int, sseq: int, safe: bool) -> bytes:
    """The 16-byte origin header."""
    return ORIGIN.pack(ORIGIN_MAGIC, ORIGIN_VERSION, SAFE if safe else 0, inc, sseq)


def decode_origin(message: bytes | memoryview) -> tuple[int, int, bool]:
    """(inc, sseq, safe) of a delivered message. Raises LocalDecodeError."""
    _need(message, ORIGIN.size, "ordered message")
    magic, version, flags, inc, sseq = ORIGIN.unpack_from(message)
    if magic != ORIGIN_MAGIC or version != ORIGIN_VERSION:
        raise LocalDecodeError(f"origin header magic/version {magic:#x}/{version} is not ours")
    return inc, sseq, bool(flags & SAFE)


# -- HELLO ----------------------------------------------------------------------------------

def encode_hello(subscribe: bool, batch: bool = False) -> bytes:
    return _HELLO.pack(VERSION, (SUBSCRIBE if subscribe else 0) | (BATCH if batch else 0))


def decode_hello_flags(payload: memoryview | bytes) -> int:
    """The HELLO flags (SUBSCRIBE, BATCH; unknown bits are ignored for
    forward compatibility). Raises LocalDecodeError (also on a version mismatch)."""
    _need(payload, _HELLO.size, "HELLO")
    version, flags = _HELLO.unpack_from(payload)
    if version != VERSION:
        raise LocalDecodeError(f"local interface version {version} is not {VERSION}")
    return flags & (SUBSCRIBE | BATCH)


def decode_hello(payload: memoryview | bytes) -> bool:
    """The subscribe flag. Raises LocalDecodeError (also on a version mismatch)."""
    _need(payload, _HELLO.size, "HELLO")
    version, flags = _HELLO.unpack_from(payload)
    if version != VERSION:
        raise LocalDecodeError(f"local interface version {version} is not {VERSION}")
    return bool(flags & SUBSCRIBE)


def encode_hello_reply(hello: Hello) -> bytes:
    members = hello.members
    flags = (SUBSCRIBE if hello.subscribed else 0) | (BATCH if hello.batched else 0)
    return _HELLO_REPLY.pack(VERSION, flags, hello.node_id,
                             hello.inc, hello.ring_id[0], hello.ring_id[1],
                             len(members)) + b"".join(_ID.pack(m) for m in members)


def decode_hello_reply(payload: memoryview | bytes) -> Hello:
    _need(payload, _HELLO_REPLY.size, "HELLO reply")
    version, flags, node, inc, rep, seq, count = _HELLO_REPLY.unpack_from(payload)
    if len(payload) != _HELLO_REPLY.size + 4 * count:
        raise LocalDecodeError(f"HELLO reply of {len(payload)} bytes does not hold {count} members")
    members = struct.unpack_from(f"!{count}I", payload, _HELLO_REPLY.size)
    return Hello(version=version, subscribed=bool(flags & SUBSCRIBE), node_id=node, inc=inc,
                 ring_id=(rep, seq), members=tuple(members), batched=bool(flags & BATCH))


# -- SUBMIT ---------------------------------------------------------------------------------

def encode_submit(data: bytes | memoryview, safe: bool) -> bytes:
    return _SUBMIT.pack(SAFE if safe else 0) + bytes(data)


def decode_submit(payload: memoryview) -> tuple[memoryview, bool]:
    """(data view, safe). The view points into the caller's buffer."""
    _need(payload, _SUBMIT.size, "SUBMIT")
    (flags,) = _SUBMIT.unpack_from(payload)
    if flags & ~SAFE:
        raise LocalDecodeError(f"SUBMIT flags {flags:#x} has unknown bits")
    return payload[_SUBMIT.size:], bool(flags & SAFE)


def encode_submit_reply(status: Status, sseq: int) -> bytes:
    return _SUBMIT_REPLY.pack(status, sseq)


def decode_submit_reply(payload: memoryview | bytes) -> tuple[Status, int]:
    _need(payload, _SUBMIT_REPLY.size, "SUBMIT reply")
    status, sseq = _SUBMIT_REPLY.unpack_from(payload)
    try:
        return Status(status), sseq
    except ValueError:
        raise LocalDecodeError(f"unknown status {status}") from None


def encode_submit_many_parts(messages: list[tuple[bytes | memoryview, bool]]) -> list[Any]:
    """A SUBMIT_MANY request as the list of its parts (the count, then each
    message's header and data), for a writer that copies them one by one."""
    parts: list[Any] = [_MANY_COUNT.pack(len(messages))]
    append = parts.append
    pack_item = _MANY_ITEM.pack
    for data, safe in messages:
        append(pack_item(SAFE if safe else 0, len(data)))
        append(data)
    return parts


def encode_submit_many(messages: list[tuple[bytes | memoryview, bool]]) -> bytes:
    return b"".join(encode_submit_many_parts(messages))


def decode_submit_many(payload: memoryview, max_items: int | None = None
                       ) -> tuple[list[tuple[memoryview, bool]], int]:
    """The (data view, safe) of a SUBMIT_MANY's first ``max_items`` messages
    (all when None) and the request's message count.

    A sender whose queue has room for only a few messages decodes only those:
    a client that offers a big batch to a full queue costs a header read, not
    a walk over every message. What is decoded is validated before any of it
    is used; the rest is neither used nor looked at (the client resubmits it).
    With ``max_items`` None the whole request must be well formed, to its end.

    Raises:
        LocalDecodeError: a decoded message's header or body overruns the
            request, has unknown flag bits, or (whole decode) bytes follow the
            last message.
    """
    _need(payload, _MANY_COUNT.size, "SUBMIT_MANY")
    (count,) = _MANY_COUNT.unpack_from(payload)
    take = count if max_items is None else min(count, max(0, max_items))
    if take > 1:
        items = _uniform_items(payload, take, take == count)
        if items is not None:
            return items, count
    offset = _MANY_COUNT.size
    end = len(payload)
    items = []
    append = items.append
    unpack = _MANY_ITEM.unpack_from
    head = _MANY_ITEM.size
    for index in range(take):
        if offset + head > end:
            raise LocalDecodeError(f"SUBMIT_MANY ends inside the header of message {index}")
        flags, length = unpack(payload, offset)
        offset += head
        if flags & ~SAFE:
            raise LocalDecodeError(f"SUBMIT_MANY message {index} flags {flags:#x} has unknown bits")
        stop = offset + length
        if stop > end:
            raise LocalDecodeError(f"SUBMIT_MANY message {index} of {length} bytes overruns the request")
        append((payload[offset:stop], flags == SAFE))
        offset = stop
    if take == count and offset != end:
        raise LocalDecodeError(f"SUBMIT_MANY has {end - offset} bytes after {count} messages")
    return items, count


def _uniform_items(payload: memoryview | bytes, take: int, whole: bool
                   ) -> list[tuple[memoryview, bool]] | None:
    """The first ``take`` messages of a SUBMIT_MANY whose messages all have
    the first one's length (what a client batching one size sends), checked
    as columns: every header's length bytes and flags byte are read with
    one strided copy per byte position instead of one unpack per message.

    Returns:
        The (data view, safe) pairs; None when the messages are not uniform
        or something is wrong (the general decoder then decodes them, and
        names the fault).
    """
    end = len(payload)
    head = _MANY_ITEM.size
    if end < _MANY_COUNT.size + head:
        return None
    view = memoryview(payload)
    first = view[_MANY_COUNT.size:_MANY_COUNT.size + head].tobytes()
    length = int.from_bytes(first[1:], "big")
    stride = head + length
    stop = _MANY_COUNT.size + take * stride
    if stop > end or (whole and stop != end):
        return None
    region = view[_MANY_COUNT.size:stop]
    for position in range(1, head):
        # A strided view compared in place (no copy): this byte of every header.
        if region[position::stride] != first[position:position + 1] * take:
            return None
    flags = region[::stride].tobytes()
    if flags.translate(None, _VALID_FLAGS):
        return None  # a flags byte with unknown bits
    slices = _UNIFORM_SLICES.get((length, take))
    if slices is None:
        if len(_UNIFORM_SLICES) >= _UNIFORM_SHAPES:
            _UNIFORM_SLICES.clear()
        start = _MANY_COUNT.size + head
        slices = _UNIFORM_SLICES[length, take] = [slice(offset, offset + length)
                                                  for offset in range(start, start + take * stride, stride)]
    return list(zip(map(view.__getitem__, slices), map(_IS_SAFE, flags)))


def encode_submit_many_reply(status: Status, accepted: int, first_sseq: int) -> bytes:
    return _MANY_REPLY.pack(status, accepted, first_sseq)


def decode_submit_many_reply(payload: memoryview | bytes) -> tuple[Status, int, int]:
    _need(payload, _MANY_REPLY.size, "SUBMIT_MANY reply")
    status, accepted, first = _MANY_REPLY.unpack_from(payload)
    try:
        return Status(status), accepted, first
    except ValueError:
        raise LocalDecodeError(f"unknown status {status}") from None


# -- events ---------------------------------------------------------------------------------

def deliver_header(sender: int, sinc: int, sseq: int, ring_id: tuple[int, int], seq: int,
                   safe: bool) -> bytes:
    """The fixed part of a DELIVER event; the payload follows it."""
    return _DELIVER.pack(sender, sinc, sseq, ring_id[0], ring_id[1], seq, SAFE if safe else 0)


def decode_deliver(payload: memoryview | bytes) -> DeliverEvent:
    _need(payload, _DELIVER.size, "DELIVER event")
    sender, sinc, sseq, rep, ring_seq, seq, flags = _DELIVER.unpack_from(payload)
    return DeliverEvent(sender=sender, sinc=sinc, sseq=sseq, ring_id=(rep, ring_seq), seq=seq,
                        safe=bool(flags & SAFE), data=bytes(payload[_DELIVER.size:]))


def encode_deliver_batch(rows: list[bytes], payloads: list[bytes | memoryview]) -> bytes:
    """A DELIVER_BATCH payload from its table ``rows`` (each a packed
    ``DELIVER_ITEM`` whose length field is its payload's size) and the payloads."""
    return b"".join((_MANY_COUNT.pack(len(rows)), *rows, *payloads))


class GatherPayload:
    """An event payload as the buffers ``parts`` to write back to back
    (``size`` bytes in all), for ``Connection.send_event_parts``: each part
    is copied once, straight into the event ring.

    A slotted class rather than a frozen dataclass: one is made per turn on
    the delivery path, and a frozen dataclass's constructor costs a few
    times more. Treat it as immutable.
    """

    __slots__ = ("parts", "size")

    def __init__(self, parts: list, size: int) -> None:
        self.parts = parts
        self.size = size

    def __repr__(self) -> str:
        return f"GatherPayload({len(self.parts)} parts, {self.size} bytes)"

    def __len__(self) -> int:
        return self.size

    def join(self) -> bytes:
        """The payload as one bytes object (for an event that must wait in a queue)."""
        return b"".join(self.parts)


#: Payloads at least this large on average are written into the event ring
#: one by one (GatherPayload); smaller ones are joined first (one C loop
#: beats a Python step per payload). Measured on 3.11: 6 x 8 KiB copied one
#: by one cost less than a join and a copy, 40 x 1 KiB more.
GATHER_MIN_AVERAGE_BYTES = 4096


def deliver_batch_payload(rows: list[bytes], payloads: list[bytes | memoryview],
                          payload_bytes: int | None = None) -> bytes | GatherPayload:
    """A DELIVER_BATCH payload (the same bytes as :func:`encode_deliver_batch`)
    in the form that costs the fewest copies to write: a GatherPayload of the
    table and the payloads when they are large, else one joined bytes object.

    Args:
        rows: the table rows (each a packed ``DELIVER_ITEM`` whose length
            field is its payload's size).
        payloads: the payloads, in the rows' order (kept, not copied, in a
            GatherPayload: they must not change until it is written).
        payload_bytes: the sum of the payloads' lengths, if the caller has it.
    """
    count = len(rows)
    if payload_bytes is None:
        payload_bytes = sum(map(len, payloads))
    if payload_bytes < GATHER_MIN_AVERAGE_BYTES * count:
        return b"".join((_MANY_COUNT.pack(count), *rows, *payloads))
    table = b"".join((_MANY_COUNT.pack(count), *rows))
    return GatherPayload([table, *payloads], len(table) + payload_bytes)


def _batch_layout(view: memoryview) -> tuple[int, int]:
    """(count, offset of the first payload) of a DELIVER_BATCH whose table fits."""
    _need(view, _MANY_COUNT.size, "DELIVER_BATCH event")
    (count,) = _MANY_COUNT.unpack_from(view)
    first = _MANY_COUNT.size + count * DELIVER_ITEM.size
    if first > len(view):
        raise LocalDecodeError(f"DELIVER_BATCH of {len(view)} bytes is shorter than the table of "
                               f"its {count} deliveries")
    return count, first


def iter_deliver_batch(payload: memoryview | bytes):
    """Yield the tuples (sender, sinc, sseq, ring_rep, ring_seq, seq, flags,
    data view) of a DELIVER_BATCH, checking each length before it is used.

    Raises:
        LocalDecodeError: the table or a payload overruns the event, or
            bytes are left over.
    """
    view = memoryview(payload)
    count, offset = _batch_layout(view)
    end = len(view)
    unpack = DELIVER_ITEM.unpack_from
    row = _MANY_COUNT.size
    head = DELIVER_ITEM.size
    for index in range(count):
        length, sender, sinc, sseq, rep, ring_seq, seq, flags = unpack(view, row)
        row += head
        stop = offset + length
        if stop > end:
            raise LocalDecodeError(f"DELIVER_BATCH delivery {index} of {length} bytes overruns the event")
        yield sender, sinc, sseq, rep, ring_seq, seq, flags, view[offset:stop]
        offset = stop
    if offset != end:
        raise LocalDecodeError(f"DELIVER_BATCH has {end - offset} bytes after {count} deliveries")


def deliver_batch_table(payload: memoryview | bytes):
    """The table of a DELIVER_BATCH as a read-only numpy structured array
    (fields ``DELIVER_ITEM_FIELDS``; a view of ``payload``, no copy) and the
    int64 array of each payload's offset in ``payload``. The payload lengths
    are checked against the event's size as a whole before anything is returned.

    Raises:
        LocalDecodeError: the table or the payloads do not fill the event exactly.
    """
    global _TABLE_DTYPE
    import numpy  # only clients that ask for arrays pay for the import

    if _TABLE_DTYPE is None:
        _TABLE_DTYPE = numpy.dtype(list(DELIVER_ITEM_FIELDS))  # built once: a few µs each time
    view = memoryview(payload)
    count, first = _batch_layout(view)
    table = numpy.frombuffer(view, dtype=_TABLE_DTYPE, count=count, offset=_MANY_COUNT.size)
    table.flags.writeable = False
    lengths = table["length"].astype(numpy.int64)
    ends = numpy.cumsum(lengths)
    ends += first
    total = int(ends[-1]) if count else first
    if total != len(view):
        raise LocalDecodeError(f"DELIVER_BATCH payload lengths add up to {total - first} bytes, "
                               f"the event holds {len(view) - first}")
    return table, ends - lengths


def decode_deliver_batch(payload: memoryview | bytes) -> list[DeliverEvent]:
    """Every delivery of a DELIVER_BATCH, in order. Raises LocalDecodeError."""
    return [DeliverEvent(sender=sender, sinc=sinc, sseq=sseq, ring_id=(rep, ring_seq), seq=seq,
                         safe=bool(flags & SAFE), data=bytes(data))
            for sender, sinc, sseq, rep, ring_seq, seq, flags, data in iter_deliver_batch(payload)]


def encode_conf(event: ConfEvent) -> bytes:
    old = event.old_ring_id or (0, 0)
    head = _CONF.pack(0 if event.kind == "REG" else 1, event.ring_id[0], event.ring_id[1],
                      old[0], old[1], len(event.members), len(event.left), len(event.joined))
    ids = (*event.members, *event.left, *event.joined)
    return head + struct.pack(f"!{len(ids)}I", *ids)


def decode_conf(payload: memoryview | bytes) -> ConfEvent:
    _need(payload, _CONF.size, "CONFCHG event")
    kind, rep, seq, old_rep, old_seq, n_members, n_left, n_joined = _CONF.unpack_from(payload)
    if kind not in (0, 1):
        raise LocalDecodeError(f"CONFCHG kind {kind} is neither REG (0) nor TRANS (1)")
    total = n_members + n_left + n_joined
    if len(payload) != _CONF.size + 4 * total:
        raise LocalDecodeError(f"CONFCHG of {len(payload)} bytes does not hold {total} node ids")
    ids = struct.unpack_from(f"!{total}I", payload, _CONF.size)
    old = None if (old_rep, old_seq) == (0, 0) else (old_rep, old_seq)
    return ConfEvent(kind="REG" if kind == 0 else "TRANS", ring_id=(rep, seq), old_ring_id=old,
                     members=ids[:n_members], left=ids[n_members:n_members + n_left],
                     joined=ids[n_members + n_left:])
