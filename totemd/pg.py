"""Packing and fragmentation of application messages into Totem frames.

This is our counterpart of corosync's totempg. Totem pays per *frame* (one
sequence number, one sort-queue slot, one retransmit entry, one unit of flow
control credit, a syscall pair), so many small application messages are
packed into one frame payload, and a message larger than a frame is cut into
fragments that the receivers reassemble, one assembly per sender.

The module is pure: bytes in, bytes out, no I/O, no clock.

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

How the two sides use it:

* ``Packer.take_frame`` must be called only when the frame is about to be
  stamped with a ring sequence number (on the token). A frame taken counts as
  sent: its completed handles are reported and a fragmented message moves on.
* At every configuration change the sender calls
  ``Packer.on_configuration_change``: a message of which only a part was taken
  is put back at the head of the queue and is sent again whole (with a new
  fragment id) in the next ring. The receivers call ``Unpacker.reset``: every
  partial assembly is dropped and counted. So a message is never stitched
  together from parts sent in two rings (totem.md §2.5 #9).
* A continuation whose head was not seen (or whose index is not the next one)
  puts the sender's assembly in throw-away mode: the parts of that message are
  dropped and counted until a frame that does not continue it. Complete entries
  of the same frame are still delivered: the lengths delimit them exactly, so
  they cannot be corrupted by the missing head.
* ``Unpacker.feed`` never raises on peer data. A malformed payload is counted,
  its text kept in ``stats().last_error``, and dropped whole (nothing from it is
  delivered), and the sender's open assembly is dropped as well, since the bad
  frame may have carried its next part. ``decode_payload`` is the strict,
  raising form for tools and tests.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUED_BYTES",
    "HEADER_SIZE",
    "VERSION",
    "DecodeError",
    "DecodedPayload",
    "Frame",
    "MessageTooLarge",
    "Packer",
    "PackerStats",
    "PgError",
    "QueueFull",
    "Unpacker",
    "UnpackerStats",
    "decode_payload",
]

VERSION = 1
FLAG_LAST_CONTINUES = 0x01
FLAG_FIRST_IS_CONTINUATION = 0x02
_KNOWN_FLAGS = FLAG_LAST_CONTINUES | FLAG_FIRST_IS_CONTINUATION

_HEADER = struct.Struct("!BBHIHI")
HEADER_SIZE = _HEADER.size  # 14
_LENGTH_SIZE = 2
_MAX_ENTRY = 0xFFFF
# A message that does not fit in what is left of a frame is split if at least
# this many of its bytes fit; otherwise the frame is closed. 1: every frame but
# a visit's last is full, so the frames of a visit have one size and leave in
# one UDP GSO send per peer (transport.multicast_many). Measured, 3 nodes of
# 1 KiB messages: 58-63 -> 51-54 us of totemd CPU per message, 3.8k -> 1.0k
# sendmsg calls per second per node (the price, an assembly for a few bytes
# more often: 7.4 -> 8.0 us at 64 B, far above its target).
MIN_FRAGMENT = 1
_MAX_FRAGMENT_ID = 0xFFFFFFFF

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
DEFAULT_MAX_QUEUED_BYTES = 16 << 20

_lengths_structs: dict[int, struct.Struct] = {}
_ONE_LENGTH = struct.Struct("!H")
# The header and the length of a one-entry frame, unpacked or packed in one call.
_ONE_ENTRY = struct.Struct("!BBHIHIH")
_ONE_ENTRY_SIZE = _ONE_ENTRY.size
_MIDDLE = FLAG_LAST_CONTINUES | FLAG_FIRST_IS_CONTINUATION
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__


def _lengths_struct(count: int) -> struct.Struct:
    found = _lengths_structs.get(count)
    if found is None:
        found = _lengths_structs[count] = struct.Struct(f"!{count}H")
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


class Frame(NamedTuple):
    """One frame payload ready to be originated (immutable; a NamedTuple
    rather than a frozen dataclass because one is built per frame on the hot
    path and tuple construction is several times cheaper).

    Attributes:
        payload: the encoded frame payload.
        safe: True if any message (or part of one) in it was submitted safe.
        completed: handles (not None) of the messages whose last part is in
            this frame, in submit order.
    """

    payload: bytes
    safe: bool
    completed: tuple[Any, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PackerStats:
    """Counters of a Packer (all counts since creation unless named queued_*).

    Attributes:
        messages_submitted: messages accepted by submit.
        bytes_submitted: their total size.
        messages_completed: messages whose last part was taken in a frame.
        frames_taken: frames returned by take_frame.
        payload_bytes_taken: total size of those frame payloads.
        fragments_taken: entries that were a part of a message, not a whole one.
        requeued_on_configuration_change: partly sent messages put back whole.
        rejected_too_large: submits refused with MessageTooLarge.
        rejected_queue_full: submits refused with QueueFull.
        queued_messages: messages waiting (including one partly sent).
        queued_bytes: bytes of those messages not yet taken.
        peak_queued_bytes: highest queued_bytes seen.
    """

    messages_submitted: int
    bytes_submitted: int
    messages_completed: int
    frames_taken: int
    payload_bytes_taken: int
    fragments_taken: int
    requeued_on_configuration_change: int
    rejected_too_large: int
    rejected_queue_full: int
    queued_messages: int
    queued_bytes: int
    peak_queued_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackerStats:
    """Counters of an Unpacker.

    Attributes:
        frames: payloads fed.
        messages_delivered: complete messages returned by feed.
        bytes_delivered: their total size.
        malformed_frames: payloads dropped whole because they did not decode.
        orphan_fragments: continuation entries dropped because their head was
            not seen or their index was not the next one (throw-away mode).
        assemblies_dropped_on_reset: partial messages dropped by reset().
        assemblies_abandoned: partial messages dropped because the sender
            started something else without finishing them, or a malformed
            frame from that sender may have carried their next part.
        oversized_dropped: partial messages dropped for growing past
            max_message_size.
        open_assemblies: partial messages held now.
        last_error: text of the last malformed payload error, or "".
    """

    frames: int
    messages_delivered: int
    bytes_delivered: int
    malformed_frames: int
    orphan_fragments: int
    assemblies_dropped_on_reset: int
    assemblies_abandoned: int
    oversized_dropped: int
    open_assemblies: int
    last_error: str


class Packer:
    """Packs submitted messages into frame payloads (one per sending node).

    Messages leave in submit order. Each frame is filled as far as it goes: a
    message that does not fit in the rest of a frame is split if at least
    MIN_FRAGMENT of its bytes fit, and a message longer than a frame always
    is.
    """

    __slots__ = (
        "_frame_payload_max",
        "_capacity",
        "_max_message_size",
        "_max_queued_bytes",
        "_queue",
        "_partial",
        "_next_fragment_id",
        "_queued_bytes",
        "_messages_submitted",
        "_bytes_submitted",
        "_messages_completed",
        "_frames_taken",
        "_payload_bytes_taken",
        "_fragments_taken",
        "_requeued",
        "_rejected_too_large",
        "_rejected_queue_full",
        "_peak_queued_bytes",
    )

    def __init__(
        self,
        frame_payload_max: int,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    ) -> None:
        """Create an empty packer.

        Args:
            frame_payload_max: the largest frame payload to produce, in bytes
                (the Totem frame size minus the Totem header).
            max_message_size: the largest message submit accepts.
            max_queued_bytes: bound on the bytes waiting to be taken.

        Raises:
            ValueError: a limit is out of range.
        """
        smallest = HEADER_SIZE + _LENGTH_SIZE + MIN_FRAGMENT
        if not smallest <= frame_payload_max <= HEADER_SIZE + _MAX_ENTRY:
            raise ValueError(
                f"frame_payload_max must be between {smallest} and "
                f"{HEADER_SIZE + _MAX_ENTRY} bytes, got {frame_payload_max}"
            )
        if max_message_size < 0:
            raise ValueError(f"max_message_size must be >= 0, got {max_message_size}")
        if max_queued_bytes < max_message_size:
            raise ValueError(
                f"max_queued_bytes ({max_queued_bytes}) must be at least "
                f"max_message_size ({max_message_size})"
            )
        self._frame_payload_max = frame_payload_max
        self._capacity = frame_payload_max - HEADER_SIZE
        self._max_message_size = max_message_size
        self._max_queued_bytes = max_queued_bytes
        # Whole messages waiting: (data, safe, handle).
        self._queue: deque[tuple[bytes, bool, Any]] = deque()
        # The head message when part of it was taken:
        # [data, offset, safe, handle, fragment_id, next_index].
        self._partial: list[Any] | None = None
        self._next_fragment_id = 1
        self._queued_bytes = 0
        self._messages_submitted = 0
        self._bytes_submitted = 0
        self._messages_completed = 0
        self._frames_taken = 0
        self._payload_bytes_taken = 0
        self._fragments_taken = 0
        self._requeued = 0
        self._rejected_too_large = 0
        self._rejected_queue_full = 0
        self._peak_queued_bytes = 0

    @property
    def frame_payload_max(self) -> int:
        """The largest frame payload this packer produces, in bytes."""
        return self._frame_payload_max

    def can_submit(self, size: int) -> bool:
        """Whether a message of ``size`` bytes would be accepted now."""
        return (
            size <= self._max_message_size
            and self._queued_bytes + size <= self._max_queued_bytes
        )

    def submit(self, message: bytes, safe: bool = False, handle: object = None) -> None:
        """Queue one application message.

        Args:
            message: the message bytes (0 .. max_message_size).
            safe: request safe delivery for it; frames carrying any part of
                it are marked safe.
            handle: an opaque object reported in ``Frame.completed`` of the
                frame that carries its last part (None: not reported).

        Raises:
            MessageTooLarge: the message is longer than max_message_size.
            QueueFull: the queue has no room for it now.
        """
        size = len(message)
        if size > self._max_message_size:
            self._rejected_too_large += 1
            raise MessageTooLarge(
                f"message of {size} bytes is larger than the maximum of "
                f"{self._max_message_size} bytes"
            )
        queued = self._queued_bytes + size
        if queued > self._max_queued_bytes:
            self._rejected_queue_full += 1
            raise QueueFull(
                f"send queue full: {self._queued_bytes} bytes queued, a message of "
                f"{size} bytes would pass the limit of {self._max_queued_bytes}"
            )
        if type(message) is not bytes:
            message = bytes(message)
        self._queue.append((message, safe, handle))
        self._queued_bytes = queued
        if queued > self._peak_queued_bytes:
            self._peak_queued_bytes = queued
        self._messages_submitted += 1
        self._bytes_submitted += size

    def pending_frames(self) -> int:
        """Frames needed for what is queued.

        Returns:
            0 exactly when nothing is queued; otherwise an O(1) estimate that
            is never below the true count. It assumes every frame may leave
            MIN_FRAGMENT + 3 bytes unused, so it is at most a factor
            capacity / (capacity - MIN_FRAGMENT - 4), plus one, above it
            (capacity = frame_payload_max - HEADER_SIZE): about 2.6% at
            1400 bytes, 24% at 200.
        """
        count = len(self._queue) + (self._partial is not None)
        if count == 0:
            return 0
        stream = self._queued_bytes + _LENGTH_SIZE * count
        usable = self._capacity - MIN_FRAGMENT - 2 * _LENGTH_SIZE
        return -(-stream // usable)

    def take_frame(self) -> Frame | None:
        """Build the next frame payload from the head of the queue.

        Call it only when the frame is about to be originated: the parts it
        carries count as sent.

        Returns:
            The frame, or None when nothing is queued.
        """
        queue = self._queue
        partial = self._partial
        if partial is None:
            if not queue:
                return None
        elif len(partial[0]) - partial[1] > self._capacity - _LENGTH_SIZE:
            return self._take_middle_fragment(partial)
        room = self._capacity
        lengths: list[int] = []
        parts: list[bytes] = []
        completed: list[Any] = []
        safe = False
        flags = 0
        continued_id = continued_index = open_id = 0
        taken = 0
        if partial is not None:
            # The head message is partly sent and its last part fits (the
            # other case went to _take_middle_fragment): it opens the frame.
            data, offset, safe, handle, fragment_id, index = partial
            flags = FLAG_FIRST_IS_CONTINUATION
            continued_id, continued_index = fragment_id, index
            remaining = len(data) - offset
            self._fragments_taken += 1
            parts.append(data[offset:])
            lengths.append(remaining)
            room -= _LENGTH_SIZE + remaining
            taken += remaining
            self._partial = None
            self._messages_completed += 1
            if handle is not None:
                completed.append(handle)
        if room >= _LENGTH_SIZE and queue:
            more_taken, more_safe, open_id = self._pack_queue(room, parts, lengths, completed)
            taken += more_taken
            safe = safe or more_safe
            if open_id:
                flags |= FLAG_LAST_CONTINUES
        count = len(lengths)
        header = _HEADER.pack(VERSION, flags, count, continued_id, continued_index, open_id)
        payload = b"".join((header, _lengths_struct(count).pack(*lengths), *parts))
        self._queued_bytes -= taken
        self._frames_taken += 1
        self._payload_bytes_taken += len(payload)
        return _new_tuple(Frame, (payload, safe, tuple(completed)))

    def _take_middle_fragment(self, partial: list[Any]) -> Frame:
        """The next part of the partly sent head message when it fills the
        frame and more follows (most frames of a large message): take_frame's
        general case with one entry, built directly."""
        data, offset, safe, _handle, fragment_id, index = partial
        fits = self._capacity - _LENGTH_SIZE
        payload = _ONE_ENTRY.pack(VERSION, _MIDDLE, 1, fragment_id, index, fragment_id,
                                  fits) + data[offset:offset + fits]
        partial[1] = offset + fits
        partial[5] = index + 1
        self._fragments_taken += 1
        self._queued_bytes -= fits
        self._frames_taken += 1
        self._payload_bytes_taken += len(payload)
        return _new_tuple(Frame, (payload, safe, ()))

    def _pack_queue(self, room: int, parts: list[bytes], lengths: list[int],
                    completed: list[Any]) -> tuple[int, bool, int]:
        """Fill ``room`` bytes of a frame from the queue of whole messages.

        Returns:
            (bytes taken, whether any of them is safe, the fragment id of a
            message split at the end of the frame or 0).
        """
        queue = self._queue
        popleft = queue.popleft
        add_part, add_length, add_handle = parts.append, lengths.append, completed.append
        start_room = room
        count = 0
        safe = False
        # Whole messages while they fit (once per message: kept lean; the
        # bytes taken are worked out from the room used afterwards).
        while queue:
            data, message_safe, handle = queue[0]
            size = len(data)
            if size + _LENGTH_SIZE > room:
                break
            popleft()
            add_part(data)
            add_length(size)
            room -= _LENGTH_SIZE + size
            if message_safe:
                safe = True
            if handle is not None:
                add_handle(handle)
            count += 1
        self._messages_completed += count
        taken = start_room - room - _LENGTH_SIZE * count
        fits = room - _LENGTH_SIZE
        if not queue or fits < MIN_FRAGMENT:
            return taken, safe, 0
        # Split the next one: its head goes here, the rest in the next frames.
        data, message_safe, handle = popleft()
        fragment_id = self._new_fragment_id()
        add_part(data[:fits])
        add_length(fits)
        self._fragments_taken += 1
        self._partial = [data, fits, message_safe, handle, fragment_id, 1]
        return taken + fits, safe or message_safe, fragment_id

    def on_configuration_change(self) -> None:
        """Put a partly sent message back, to be sent whole in the next ring.

        The receivers drop their partial assemblies at the same boundary
        (``Unpacker.reset``), so the parts already sent are never joined to
        parts sent in the new ring.
        """
        partial = self._partial
        if partial is None:
            return
        data, offset, safe, handle = partial[0], partial[1], partial[2], partial[3]
        self._partial = None
        self._queue.appendleft((data, safe, handle))
        self._queued_bytes += offset
        if self._queued_bytes > self._peak_queued_bytes:
            self._peak_queued_bytes = self._queued_bytes
        self._requeued += 1

    def stats(self) -> PackerStats:
        """A snapshot of the counters."""
        return PackerStats(
            messages_submitted=self._messages_submitted,
            bytes_submitted=self._bytes_submitted,
            messages_completed=self._messages_completed,
            frames_taken=self._frames_taken,
            payload_bytes_taken=self._payload_bytes_taken,
            fragments_taken=self._fragments_taken,
            requeued_on_configuration_change=self._requeued,
            rejected_too_large=self._rejected_too_large,
            rejected_queue_full=self._rejected_queue_full,
            queued_messages=len(self._queue) + (self._partial is not None),
            queued_bytes=self._queued_bytes,
            peak_queued_bytes=self._peak_queued_bytes,
        )

    def _new_fragment_id(self) -> int:
        fragment_id = self._next_fragment_id
        self._next_fragment_id = 1 if fragment_id == _MAX_FRAGMENT_ID else fragment_id + 1
        return fragment_id


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
    return DecodedPayload(*_decode(payload))


def _decode(payload: bytes) -> tuple[int, int, int, int, list[bytes]]:
    """decode_payload without the wrapper object (the receive hot path)."""
    if type(payload) is not bytes:
        payload = bytes(payload)
    total = len(payload)
    if total < HEADER_SIZE:
        raise DecodeError(f"payload of {total} bytes is shorter than the {HEADER_SIZE}-byte header")
    version, flags, count, continued_id, continued_index, open_id = _HEADER.unpack_from(payload)
    if version != VERSION:
        raise DecodeError(f"unsupported payload version {version} (expected {VERSION})")
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError(f"unknown flag bits 0x{flags & ~_KNOWN_FLAGS:02x}")
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
    entries = _split_entries(payload, count, total)
    if entries is None:
        data_start = HEADER_SIZE + _LENGTH_SIZE * count
        if data_start > total:
            raise DecodeError(f"{count} entries need a {data_start}-byte header but the "
                              f"payload has {total} bytes")
        length = sum(_lengths_struct(count).unpack_from(payload, HEADER_SIZE))
        raise DecodeError(
            f"entry lengths add up to {length} bytes but {total - data_start} follow"
        )
    return flags, continued_id, continued_index, open_id, entries


def _split_entries(payload: bytes, count: int, total: int) -> list[bytes] | None:
    """The ``count`` entries of a payload of ``total`` bytes, or None when
    its lengths table does not fit or does not add up to the data."""
    data_start = HEADER_SIZE + _LENGTH_SIZE * count
    if data_start > total:
        return None
    if count == 1:
        # One entry (every large message): no lengths table to walk.
        if data_start + _ONE_LENGTH.unpack_from(payload, HEADER_SIZE)[0] != total:
            return None
        return [payload[data_start:]]
    lengths = _lengths_struct(count).unpack_from(payload, HEADER_SIZE)
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


class _Assembly:
    """A message being reassembled from one sender's fragments."""

    __slots__ = ("fragment_id", "next_index", "parts", "size")

    def __init__(self, fragment_id: int, first: bytes) -> None:
        self.fragment_id = fragment_id
        self.next_index = 1
        self.parts = [first]
        self.size = len(first)


class Unpacker:
    """Unpacks frame payloads into application messages, one assembly per
    sender. Feed it the frames in delivery order; call ``reset`` at every
    configuration change."""

    __slots__ = (
        "_max_message_size",
        "_assemblies",
        "_frames",
        "_messages_delivered",
        "_bytes_delivered",
        "_malformed",
        "_orphans",
        "_dropped_on_reset",
        "_abandoned",
        "_oversized",
        "_last_error",
    )

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """Create an unpacker with no assemblies.

        Args:
            max_message_size: a partial message that grows past this is
                dropped (counted) and its remaining parts thrown away.
        """
        if max_message_size < 0:
            raise ValueError(f"max_message_size must be >= 0, got {max_message_size}")
        self._max_message_size = max_message_size
        self._assemblies: dict[int, _Assembly] = {}
        self._frames = 0
        self._messages_delivered = 0
        self._bytes_delivered = 0
        self._malformed = 0
        self._orphans = 0
        self._dropped_on_reset = 0
        self._abandoned = 0
        self._oversized = 0
        self._last_error = ""

    def feed(self, sender: int, payload: bytes) -> list[bytes]:
        """Take one delivered frame payload from ``sender``.

        Args:
            sender: the sending node id (the key of the assembly).
            payload: the frame payload.

        Returns:
            The messages completed by this frame, in order (possibly none).
            Never raises on bad payloads: they are counted and dropped (see
            the module docstring).
        """
        self._frames += 1
        total = len(payload)
        if total >= _ONE_ENTRY_SIZE:
            # The next part of a fragmented message alone in its frame (most
            # frames of a large message): one unpack, no entry list. The
            # checks are those of _decode for a one-entry frame.
            version, flags, count, continued_id, continued_index, open_id, length = \
                _ONE_ENTRY.unpack_from(payload)
            if (count == 1 and version == VERSION and _ONE_ENTRY_SIZE + length == total
                    and continued_id and continued_index):
                if flags == _MIDDLE and open_id == continued_id:
                    assembly = self._assemblies.get(sender)
                    if (assembly is not None and assembly.fragment_id == continued_id
                            and assembly.next_index == continued_index
                            and assembly.size + length <= self._max_message_size):
                        # _continue's common case, written out (once per frame).
                        assembly.parts.append(payload[_ONE_ENTRY_SIZE:])
                        assembly.size += length
                        assembly.next_index = continued_index + 1
                    else:
                        self._continue(sender, continued_id, continued_index,
                                       payload[_ONE_ENTRY_SIZE:], True)
                    return []
                if flags == FLAG_FIRST_IS_CONTINUATION and not open_id:
                    message = self._continue(sender, continued_id, continued_index,
                                             payload[_ONE_ENTRY_SIZE:], False)
                    if message is None:
                        return []
                    self._messages_delivered += 1
                    self._bytes_delivered += len(message)
                    return [message]
            if (flags == 0 and count and version == VERSION
                    and not (continued_id or continued_index or open_id)):
                # Whole messages only (every frame of small messages): the
                # checks of _decode for flags 0, then the entries.
                entries = _split_entries(payload, count, total)
                if entries is not None:
                    return self._whole(sender, entries, total)
        try:
            flags, continued_id, continued_index, open_id, entries = _decode(payload)
        except DecodeError as error:
            self._malformed += 1
            self._last_error = f"from node {sender}: {error}"
            if self._assemblies.pop(sender, None) is not None:
                self._abandoned += 1
            return []
        if not flags:
            return self._whole(sender, entries, len(payload))
        out: list[bytes] = []
        first = 0
        if flags & FLAG_FIRST_IS_CONTINUATION:
            first = 1
            middle = len(entries) == 1 and flags & FLAG_LAST_CONTINUES
            message = self._continue(sender, continued_id, continued_index, entries[0], middle)
            if message is not None:
                out.append(message)
        elif self._assemblies.pop(sender, None) is not None:
            self._abandoned += 1
        last = len(entries) - 1 if flags & FLAG_LAST_CONTINUES else len(entries)
        if first < last:
            out.extend(entries[first:last])
        if flags & FLAG_LAST_CONTINUES and last >= first:
            head = entries[last]
            if len(head) > self._max_message_size:
                self._oversized += 1
            else:
                self._assemblies[sender] = _Assembly(open_id, head)
        if out:
            self._messages_delivered += len(out)
            self._bytes_delivered += sum(map(len, out))
        return out

    def _whole(self, sender: int, entries: list[bytes], total: int) -> list[bytes]:
        """Deliver the entries of a frame of whole messages (flags 0)."""
        if self._assemblies and self._assemblies.pop(sender, None) is not None:
            # The sender started afresh without finishing: it gave up on
            # that message (its own configuration change). Never join
            # across that.
            self._abandoned += 1
        self._messages_delivered += len(entries)
        self._bytes_delivered += total - HEADER_SIZE - _LENGTH_SIZE * len(entries)
        return entries

    def _continue(self, sender: int, continued_id: int, continued_index: int, part: bytes,
                  middle: bool) -> bytes | None:
        """Add the first entry of a continuing frame to the sender's assembly.

        Returns the completed message, or None (middle part, or thrown away).
        """
        assembly = self._assemblies.get(sender)
        if (
            assembly is None
            or assembly.fragment_id != continued_id
            or assembly.next_index != continued_index
        ):
            # Throw-away mode: the head (or a middle part) of this message was
            # not seen here; drop its parts until the sender starts afresh.
            self._orphans += 1
            if assembly is not None:
                del self._assemblies[sender]
                self._abandoned += 1
            return None
        assembly.size += len(part)
        if assembly.size > self._max_message_size:
            del self._assemblies[sender]
            self._oversized += 1
            return None
        assembly.parts.append(part)
        if middle:
            assembly.next_index += 1
            return None
        del self._assemblies[sender]
        return b"".join(assembly.parts)

    def reset(self) -> None:
        """Drop every partial assembly (at a configuration change), counted."""
        self._dropped_on_reset += len(self._assemblies)
        self._assemblies.clear()

    def stats(self) -> UnpackerStats:
        """A snapshot of the counters."""
        return UnpackerStats(
            frames=self._frames,
            messages_delivered=self._messages_delivered,
            bytes_delivered=self._bytes_delivered,
            malformed_frames=self._malformed,
            orphan_fragments=self._orphans,
            assemblies_dropped_on_reset=self._dropped_on_reset,
            assemblies_abandoned=self._abandoned,
            oversized_dropped=self._oversized,
            open_assemblies=len(self._assemblies),
            last_error=self._last_error,
        )


def pack_all(packer: Packer) -> list[Frame]:
    """Take every frame the packer has queued (a convenience for tests and
    the simulator)."""
    frames = []
    while (frame := packer.take_frame()) is not None:
        frames.append(frame)
    return frames


def unpack_all(unpacker: Unpacker, sender: int, payloads: Sequence[bytes]) -> list[bytes]:
    """Feed payloads from one sender in order and collect the messages."""
    out: list[bytes] = []
    for payload in payloads:
        out.extend(unpacker.feed(sender, payload))
    return out
