"""Packing and fragmentation of application messages into Totem frames.

This is our counterpart of corosync's totempg. Totem pays per *frame* (one
sequence number, one sort-queue slot, one retransmit entry, one unit of flow
control credit, a syscall pair), so many small application messages are
packed into one frame payload, and a message larger than a frame is cut into
fragments that the receivers reassemble, one assembly per sender.

The package is pure: bytes in, bytes out, no I/O, no clock. It is four
modules, all importable from here:

* ``totemd.pg_codec``: the frame payload format (version 1, documented
  there), the errors, and the strict ``decode_payload``;
* ``totemd.pg`` (this module): ``Packer``, the sending side: its queue
  (``submit``, ``submit_many``), its bounds and its counters;
* ``totemd.pg_cut``: ``FrameCuttingMixin``, the Packer's methods that cut
  frames off the queue (``take_frame``, ``take_frames``,
  ``on_configuration_change``), and ``Frame``;
* ``totemd.pg_unpack``: ``Unpacker``, the receiving side.

How the two sides use it:

* ``Packer.take_frame`` must be called only when the frame is about to be
  stamped with a ring sequence number (on the token). A frame taken counts as
  sent: its completed handles are reported and a fragmented message moves on.
  ``Packer.take_frames(n)`` is the same for up to n frames in one call (a
  token visit's budget): the middle fragments of a large message are cut
  in one loop there.
* At every configuration change the sender calls
  ``Packer.on_configuration_change``: a message of which only a part was taken
  is put back at the head of the queue and is sent again whole (with a new
  fragment id) in the next ring. The receivers call ``Unpacker.reset``: every
  partial assembly is dropped and counted. So a message is never stitched
  together from parts sent in two rings (totem.md §2.5 #9).
* A continuation whose head was not seen puts the sender's assembly in
  throw-away mode, and ``Unpacker.feed`` never raises on peer data: see
  ``totemd.pg_unpack``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from itertools import accumulate, compress, count as count_from
from operator import add
from typing import Any, Iterable

# FLAG_* are not used here: re-exported (see __all__) for callers that name
# the format's bits through this module.
from totemd.pg_codec import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUED_BYTES,
    FLAG_FIRST_IS_CONTINUATION,
    FLAG_LAST_CONTINUES,
    HEADER_SIZE,
    LENGTH_SIZE,
    MAX_ENTRY,
    VERSION,
    DecodedPayload,
    DecodeError,
    MessageTooLarge,
    PgError,
    QueueFull,
    decode_payload,
)
from totemd.pg_cut import MIN_FRAGMENT, Frame, FrameCuttingMixin
from totemd.pg_unpack import Unpacker, UnpackerStats, unpack_all

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUED_BYTES",
    "FLAG_FIRST_IS_CONTINUATION",
    "FLAG_LAST_CONTINUES",
    "HEADER_SIZE",
    "MIN_FRAGMENT",
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
    "pack_all",
    "unpack_all",
]

_BYTES_ONLY = frozenset((bytes,))


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


class Packer(FrameCuttingMixin):
    """Packs submitted messages into frame payloads (one per sending node).

    Messages leave in submit order. Each frame is filled as far as it goes: a
    message that does not fit in the rest of a frame is split if at least
    MIN_FRAGMENT of its bytes fit, and a message longer than a frame always
    is.

    The queue of whole messages is kept as parallel lists (data, size,
    handle, and the running total of ``size + LENGTH_SIZE``) from index
    ``_head`` on, so that take_frame finds how many whole messages fit with
    one bisect and takes them with slices: no per-message Python work on the
    token (about a third of the CPU of the loop it replaces at 64 B).

    The methods that cut frames off the queue (``take_frame``,
    ``take_frames``, ``pending_frames``, ``on_configuration_change``) are
    inherited from ``FrameCuttingMixin`` (totemd/pg_cut.py).
    """

    __slots__ = (
        "_frame_payload_max",
        "_capacity",
        "_usable",
        "_max_message_size",
        "_max_queued_bytes",
        "_datas",
        "_sizes",
        "_handles",
        "_ends",
        "_head",
        "_base",
        "_end",
        "_safe_positions",
        "_none_handles",
        "_partial",
        "_next_fragment_id",
        "_queued_bytes",
        "_dropped",
        "_frames_taken",
        "_payload_bytes_taken",
        "_fragments_taken",
        "_middle_frames",
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
        smallest = HEADER_SIZE + LENGTH_SIZE + MIN_FRAGMENT
        if not smallest <= frame_payload_max <= HEADER_SIZE + MAX_ENTRY:
            raise ValueError(
                f"frame_payload_max must be between {smallest} and "
                f"{HEADER_SIZE + MAX_ENTRY} bytes, got {frame_payload_max}"
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
        # What pending_frames counts on per frame (see there).
        self._usable = self._capacity - MIN_FRAGMENT - 2 * LENGTH_SIZE
        self._max_message_size = max_message_size
        self._max_queued_bytes = max_queued_bytes
        # Whole messages waiting are those at index _head and after of:
        self._datas: list[bytes] = []
        self._sizes: list[int] = []
        self._handles: list[Any] = []
        # Stream positions: _ends[i] is where message i ends if the queue
        # were one stream of (length, data) entries; _base is where message
        # _head starts, _end where the last one ends. Only differences count.
        self._ends: list[int] = []
        self._head = 0
        self._base = 0
        self._end = 0
        # Indexes (in _datas) of the queued safe messages, in order.
        self._safe_positions: deque[int] = deque()
        # How many queued handles are None (not reported in Frame.completed).
        self._none_handles = 0
        # The message split at the end of the last frame, its parts after the
        # first still to send: [its data (bytes, or a memoryview of them when
        # middle fragments follow), offset, safe, handle, fragment_id,
        # next_index].
        self._partial: list[Any] | None = None
        self._next_fragment_id = 1
        self._queued_bytes = 0
        # Entries dropped from the lists' front (taken, or put back by a
        # configuration change): with _requeued and the lists' length, the
        # count of messages submitted (see _submitted), kept out of submit.
        self._dropped = 0
        self._frames_taken = 0
        self._payload_bytes_taken = 0
        self._fragments_taken = 0
        # Middle fragments taken: each is one frame of frame_payload_max
        # bytes and one fragment (counted once, not in the three counters).
        self._middle_frames = 0
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
        queued = self._queued_bytes + size
        if size > self._max_message_size or queued > self._max_queued_bytes:
            if size > self._max_message_size:
                self._rejected_too_large += 1
                raise self._too_large(size)
            self._rejected_queue_full += 1
            raise self._queue_full(size)
        if type(message) is not bytes:
            message = bytes(message)
        if safe:
            self._safe_positions.append(len(self._datas))
        if handle is None:
            self._none_handles += 1
        self._datas.append(message)
        self._sizes.append(size)
        self._handles.append(handle)
        end = self._end = self._end + size + LENGTH_SIZE
        self._ends.append(end)
        self._queued_bytes = queued
        if queued > self._peak_queued_bytes:
            self._peak_queued_bytes = queued

    def submit_many(self, items: Iterable[tuple[bytes, bool, Any]]) -> tuple[int, PgError | None]:
        """Queue ``(message, safe, handle)`` items in order until one is
        refused: the same as ``submit`` for each, with the per-message work
        done in C (list extends, one accumulate) rather than per call.

        Args:
            items: ``(message, safe, handle)`` in submission order, as for
                ``submit`` (a message may be any bytes-like object).

        Returns:
            (how many were queued, the MessageTooLarge or QueueFull that
            refused the next one, or None when all were queued). The refused
            one is counted in stats like a refused submit.
        """
        columns = list(zip(*items))
        if not columns:
            return 0, None
        messages, safes, handles = columns
        sizes = list(map(len, messages))
        queued = self._queued_bytes
        totals = list(accumulate(sizes, initial=queued))
        # The totals never decrease: the first one over the bound is found
        # by bisection. totals[i + 1] is the queue with message i in it.
        accepted = bisect_right(totals, self._max_queued_bytes, 1) - 1
        limit = self._max_message_size
        # No size can pass the limit if their sum does not (the usual case).
        if totals[-1] - queued > limit and max(sizes) > limit:
            accepted = min(accepted, next(i for i, size in enumerate(sizes) if size > limit))
        if accepted:
            self._append_many(messages, safes, handles, sizes, totals, accepted)
        if accepted == len(sizes):
            return accepted, None
        size = sizes[accepted]
        if size > limit:
            self._rejected_too_large += 1
            return accepted, self._too_large(size)
        self._rejected_queue_full += 1
        return accepted, self._queue_full(size)

    def _append_many(self, messages: tuple[bytes, ...], safes: tuple[bool, ...],
                     handles: tuple[Any, ...], sizes: list[int], totals: list[int],
                     accepted: int) -> None:
        """Queue the first ``accepted`` of submit_many's columns; totals[i] is
        the queued bytes before message i."""
        if accepted < len(sizes):
            messages, safes, handles = (messages[:accepted], safes[:accepted],
                                        handles[:accepted])
            sizes = sizes[:accepted]
        if not _BYTES_ONLY.issuperset(map(type, messages)):
            messages = tuple(bytes(message) for message in messages)
        datas = self._datas
        self._safe_positions.extend(compress(count_from(len(datas)), safes))
        self._none_handles += handles.count(None)
        datas.extend(messages)
        self._sizes.extend(sizes)
        self._handles.extend(handles)
        # Message i ends LENGTH_SIZE * (i + 1) bytes of lengths further into
        # the stream than its running total of sizes.
        shift = self._end - totals[0] + LENGTH_SIZE
        self._ends.extend(map(add, totals[1:accepted + 1],
                              range(shift, shift + LENGTH_SIZE * accepted, LENGTH_SIZE)))
        self._end = self._ends[-1]
        queued = self._queued_bytes = totals[accepted]
        if queued > self._peak_queued_bytes:
            self._peak_queued_bytes = queued

    def stats(self) -> PackerStats:
        """A snapshot of the counters."""
        queued_messages = len(self._datas) - self._head + (self._partial is not None)
        middle = self._middle_frames
        # Every entry ever appended is a message submitted, except the one a
        # configuration change put back (appended again).
        submitted = self._dropped + len(self._datas) - self._requeued
        return PackerStats(
            messages_submitted=submitted,
            # Each message moved the stream's end by its size and its length.
            bytes_submitted=self._end - LENGTH_SIZE * submitted,
            # A message leaves the queue exactly when its last part is taken.
            messages_completed=submitted - queued_messages,
            frames_taken=self._frames_taken + middle,
            payload_bytes_taken=self._payload_bytes_taken + middle * self._frame_payload_max,
            fragments_taken=self._fragments_taken + middle,
            requeued_on_configuration_change=self._requeued,
            rejected_too_large=self._rejected_too_large,
            rejected_queue_full=self._rejected_queue_full,
            queued_messages=queued_messages,
            queued_bytes=self._queued_bytes,
            peak_queued_bytes=self._peak_queued_bytes,
        )

    def _too_large(self, size: int) -> MessageTooLarge:
        return MessageTooLarge(
            f"message of {size} bytes is larger than the maximum of "
            f"{self._max_message_size} bytes"
        )

    def _queue_full(self, size: int) -> QueueFull:
        return QueueFull(
            f"send queue full: {self._queued_bytes} bytes queued, a message of "
            f"{size} bytes would pass the limit of {self._max_queued_bytes}"
        )


def pack_all(packer: Packer) -> list[Frame]:
    """Take every frame the packer has queued (a convenience for tests and
    the simulator)."""
    frames = []
    while (frame := packer.take_frame()) is not None:
        frames.append(frame)
    return frames
