"""The frame payload codec of the packing layer (totemd.pg): the format, its
errors, and the strict decoder.

Frame payload format, version 1 (network byte order)::

    offset size field
    0      1    version         1
    1      1    flags           bit 0 LAST_CONTINUES: the last entry is the
                                      first or a middle part of a message whose
                                      next part is the first entry of this
                                      sender's next frame
                                bit 1 FIRST_IS_CONTINUATION: the first entry
                                      continues the message left open by this
                                      sender's previous frame
                                other bits must be zero
    2      2    entry_count     >= 1
    4      4    continued_id    fragment id of the message the first entry
                                continues (0 unless FIRST_IS_CONTINUATION)
    8      2    continued_index index of that fragment, 1 for the second part
                                of a message (0 unless FIRST_IS_CONTINUATION)
    10     4    open_id         fragment id of the message the last entry
                                leaves open (0 unless LAST_CONTINUES)
    14     2*n lengths         u16 length of each entry
    ..     ..   data            the entries, back to back; the lengths add up
                                to exactly the rest of the payload

A fragment id is a per-Packer rolling non-zero u32 given to each message that
needs more than one frame. A frame with a single entry and both flags is a
middle fragment and then ``continued_id == open_id``.

The module is pure: bytes in, bytes out, no I/O, no clock. Its one piece of
state is a bounded memo of entry-splitting structs keyed by a frame's lengths
table (``split_entries``), a function of its key only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUED_BYTES",
    "FLAG_FIRST_IS_CONTINUATION",
    "FLAG_LAST_CONTINUES",
    "HEADER_SIZE",
    "VERSION",
    "DecodeError",
    "DecodedPayload",
    "MessageTooLarge",
    "PgError",
    "QueueFull",
    "decode_payload",
    "split_entries",
]

VERSION = 1
FLAG_LAST_CONTINUES = 0x01
FLAG_FIRST_IS_CONTINUATION = 0x02
KNOWN_FLAGS = FLAG_LAST_CONTINUES | FLAG_FIRST_IS_CONTINUATION
MIDDLE = FLAG_LAST_CONTINUES | FLAG_FIRST_IS_CONTINUATION

HEADER = struct.Struct("!BBHIHI")
HEADER_SIZE = HEADER.size  # 14
LENGTH_SIZE = 2
MAX_ENTRY = 0xFFFF
# The header and the first entry's length, unpacked or packed in one call.
ONE_ENTRY = struct.Struct("!BBHIHIH")
ONE_ENTRY_SIZE = ONE_ENTRY.size  # 16

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
DEFAULT_MAX_QUEUED_BYTES = 16 << 20

_lengths_structs: dict[int, struct.Struct] = {}
# count -> the header-and-lengths struct (see frame_struct); the packer reads
# it directly on its hot path.
FRAME_STRUCTS: dict[int, struct.Struct] = {}


def lengths_struct(count: int) -> struct.Struct:
    """The struct of a lengths table of ``count`` entries."""
    found = _lengths_structs.get(count)
    if found is None:
        found = _lengths_structs[count] = struct.Struct(f"!{count}H")
    return found


def frame_struct(count: int) -> struct.Struct:
    """The struct of a header followed by a lengths table of ``count``
    entries (the packer writes both in one call)."""
    found = FRAME_STRUCTS.get(count)
    if found is None:
        found = FRAME_STRUCTS[count] = struct.Struct(f"!BBHIHI{count}H")
    return found


class PgError(Exception):
    """Base class of the errors of the packing layer."""


class MessageTooLarge(PgError, ValueError):
    """Raised by ``Packer.submit`` when a message is longer than
    ``max_message_size``. Nothing is queued."""


class QueueFull(PgError):
    """Raised by ``Packer.submit`` when queueing the message would take the
    queued bytes over ``max_queued_bytes``. Nothing is queued; the caller
    should push back on its client and try again after frames were taken."""


class DecodeError(PgError, ValueError):
    """Raised by ``decode_payload`` when a frame payload is malformed
    (truncated, wrong version, unknown flags, lengths that do not add up).
    ``Unpacker.feed`` counts these instead of raising."""


@dataclass(frozen=True, slots=True)
class DecodedPayload:
    """A frame payload taken apart by ``decode_payload``."""

    flags: int
    continued_id: int
    continued_index: int
    open_id: int
    entries: list[bytes]

    @property
    def first_is_continuation(self) -> bool:
        return bool(self.flags & FLAG_FIRST_IS_CONTINUATION)

    @property
    def last_continues(self) -> bool:
        return bool(self.flags & FLAG_LAST_CONTINUES)


def decode_payload(payload: bytes) -> DecodedPayload:
    """Validate a frame payload and split it into its entries.

    Args:
        payload: one frame payload as produced by ``Packer.take_frame``.

    Returns:
        The header fields and the entries (bytes), in order.

    Raises:
        DecodeError: the payload is malformed; the message says how.
    """
    return DecodedPayload(*decode(payload))


def decode(payload: bytes) -> tuple[int, int, int, int, list[bytes]]:
    """decode_payload without the wrapper object: (flags, continued_id,
    continued_index, open_id, entries). The Unpacker's checks on its fast
    paths accept exactly what this accepts.

    Raises:
        DecodeError: the payload is malformed.
    """
    if type(payload) is not bytes:
        payload = bytes(payload)
    total = len(payload)
    if total < HEADER_SIZE:
        raise DecodeError(f"payload of {total} bytes is shorter than the {HEADER_SIZE}-byte header")
    version, flags, count, continued_id, continued_index, open_id = HEADER.unpack_from(payload)
    if version != VERSION:
        raise DecodeError(f"unsupported payload version {version} (expected {VERSION})")
    if flags & ~KNOWN_FLAGS:
        raise DecodeError(f"unknown flag bits 0x{flags & ~KNOWN_FLAGS:02x}")
    if count == 0:
        raise DecodeError("payload with no entries")
    if flags & FLAG_FIRST_IS_CONTINUATION:
        if continued_id == 0 or continued_index == 0:
            raise DecodeError("continuation without a fragment id or index")
    elif continued_id or continued_index:
        raise DecodeError("continued_id/continued_index set without the continuation flag")
    if flags & FLAG_LAST_CONTINUES:
        if open_id == 0:
            raise DecodeError("open fragment without a fragment id")
        middle = count == 1 and flags & FLAG_FIRST_IS_CONTINUATION
        if middle and open_id != continued_id:
            raise DecodeError(
                f"middle fragment continues id {continued_id} but leaves id {open_id} open"
            )
        if not middle and flags & FLAG_FIRST_IS_CONTINUATION and open_id == continued_id:
            raise DecodeError(f"fragment id {open_id} both continued and opened in one frame")
    elif open_id:
        raise DecodeError("open_id set without the last-continues flag")
    entries = split_entries(payload, count, total)
    if entries is None:
        data_start = HEADER_SIZE + LENGTH_SIZE * count
        if data_start > total:
            raise DecodeError(f"{count} entries need a {data_start}-byte header but the "
                              f"payload has {total} bytes")
        length = sum(lengths_struct(count).unpack_from(payload, HEADER_SIZE))
        raise DecodeError(
            f"entry lengths add up to {length} bytes but {total - data_start} follow"
        )
    return flags, continued_id, continued_index, open_id, entries


# split_entries memo: a frame's lengths table (its raw bytes) -> a struct
# "!<data_start>x<l1>s<l2>s..." that cuts every entry out of the payload in
# one C call. Frames of equal-sized messages repeat the same table, so most
# lookups hit; a table is compiled the second time it is seen, so traffic
# whose tables never repeat pays a set lookup, not a compile, per frame.
# Both are bounded (cleared when full: a memo, not a record). Frames of a
# few entries (large messages, whose tables rarely repeat) skip the memo: a
# short loop costs less than a compile.
_MEMO_FROM_COUNT = 4
_entry_structs: dict[bytes, struct.Struct] = {}
_tables_seen: set[bytes] = set()
_ENTRY_STRUCTS_MAX = 512
_TABLES_SEEN_MAX = 4096


def split_entries(payload: bytes, count: int, total: int) -> list[bytes] | None:
    """The ``count`` entries of a payload of ``total`` bytes, or None when
    its lengths table does not fit or does not add up to the data.

    Args:
        payload: the frame payload (bytes).
        count: its entry_count (>= 1).
        total: ``len(payload)``.
    """
    data_start = HEADER_SIZE + LENGTH_SIZE * count
    if data_start > total:
        return None
    if count == 1:
        # One entry (every large message): no lengths table to walk.
        if data_start + ((payload[HEADER_SIZE] << 8) | payload[HEADER_SIZE + 1]) != total:
            return None
        return [payload[data_start:]]
    if count < _MEMO_FROM_COUNT:
        return _split_by_loop(payload, lengths_struct(count).unpack_from(payload, HEADER_SIZE),
                              data_start, total)
    table = payload[HEADER_SIZE:data_start]
    found = _entry_structs.get(table)
    if found is not None:
        # Its size is data_start plus the sum of the lengths.
        return list(found.unpack_from(payload)) if found.size == total else None
    lengths = lengths_struct(count).unpack_from(table)
    if data_start + sum(lengths) != total:
        return None
    if table in _tables_seen:
        if len(_entry_structs) >= _ENTRY_STRUCTS_MAX:
            _entry_structs.clear()
        found = _entry_structs[table] = struct.Struct(
            f"!{data_start}x" + "s".join(map(str, lengths)) + "s")
        return list(found.unpack_from(payload))
    if len(_tables_seen) >= _TABLES_SEEN_MAX:
        _tables_seen.clear()
    _tables_seen.add(table)
    return _split_by_loop(payload, lengths, data_start, total)


def _split_by_loop(payload: bytes, lengths: tuple[int, ...], data_start: int,
                   total: int) -> list[bytes] | None:
    """split_entries one slice at a time (None: the lengths do not add up)."""
    if data_start + sum(lengths) != total:
        return None
    entries = []
    append = entries.append
    position = data_start
    for length in lengths:
        end = position + length
        append(payload[position:end])
        position = end
    return entries
