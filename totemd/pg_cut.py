"""Cutting frames for the packing layer's sending side (totemd.pg).

``FrameCuttingMixin`` holds the ``Packer`` methods that take frames off the
queue (``take_frame``, ``take_frames`` and their helpers), the estimate of
how many frames are queued, and ``on_configuration_change``, which puts the
partly taken message back. It is a mixin over ``Packer``'s state (set up and
documented in ``Packer.__init__``), kept apart only to keep each module
readable: ``Packer`` inherits the methods, so a call costs what it did.
``Frame`` (what a take returns) and ``MIN_FRAGMENT`` (where messages are
split) live here too; ``totemd.pg`` re-exports both.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Any, NamedTuple

from totemd.pg_codec import (
    FLAG_FIRST_IS_CONTINUATION,
    FLAG_LAST_CONTINUES,
    FRAME_STRUCTS,
    HEADER_SIZE,
    LENGTH_SIZE,
    MIDDLE,
    ONE_ENTRY,
    VERSION,
    frame_struct,
)

__all__ = ["MIN_FRAGMENT", "Frame", "FrameCuttingMixin"]

# A message that does not fit in what is left of a frame is split if at least
# this many of its bytes fit; otherwise the frame is closed. 1: every frame but
# a visit's last is full, so the frames of a visit have one size and leave in
# one UDP GSO send per peer (transport.multicast_many). Measured, 3 nodes of
# 1 KiB messages: 58-63 -> 51-54 us of totemd CPU per message, 3.8k -> 1.0k
# sendmsg calls per second per node (the price, an assembly for a few bytes
# more often: 7.4 -> 8.0 us at 64 B, far above its target).
MIN_FRAGMENT = 1
_MAX_FRAGMENT_ID = 0xFFFFFFFF
# The queue lists drop their taken prefix when everything was taken, or once
# it is this long and at least half of them (amortized O(1) per message).
_COMPACT_AFTER = 64
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__
# The frame between two large messages: the last part of one, the head of the next.
_TWO_ENTRIES = frame_struct(2)
_TAIL_AND_HEAD = FLAG_FIRST_IS_CONTINUATION | FLAG_LAST_CONTINUES


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


class FrameCuttingMixin:
    """Frames out of a ``Packer``'s queue (see the module docstring)."""

    __slots__ = ()  # Packer declares the slots; this keeps instances without a __dict__

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
        count = len(self._datas) - self._head + (self._partial is not None)
        if count == 0:
            return 0
        return -(-(self._queued_bytes + LENGTH_SIZE * count) // self._usable)

    def take_frame(self) -> Frame | None:
        """Build the next frame payload from the head of the queue.

        Call it only when the frame is about to be originated: the parts it
        carries count as sent.

        Returns:
            The frame, or None when nothing is queued.
        """
        partial = self._partial
        if partial is None:
            if self._head == len(self._datas):
                return None
            return self._take_packed(None)
        view, offset, safe, _handle, fragment_id, index = partial
        room = self._capacity - LENGTH_SIZE
        if len(view) - offset <= room:
            return self._take_tail(partial, room)
        # The next part of the partly sent head message fills the frame and
        # more follows (most frames of a large message): one entry, built
        # directly; its counters are derived from _middle_frames in stats().
        end = offset + room
        partial[1] = end
        partial[5] = index + 1
        self._queued_bytes -= room
        self._middle_frames += 1
        return _new_tuple(Frame, (ONE_ENTRY.pack(VERSION, MIDDLE, 1, fragment_id, index,
                                                 fragment_id, room) + view[offset:end],
                                  safe, ()))

    def take_frames(self, limit: int) -> list[Frame]:
        """Up to ``limit`` frames: the same frames, in the same order and with
        the same effects, as ``take_frame`` called until it returns None or
        ``limit`` times, for a caller that knows its budget (a token visit).
        The middle fragments of a large message are cut in one loop here,
        with the partial message's state updated once per run of them rather
        than once per frame.

        Args:
            limit: the most frames to take (0 or less: none).

        Returns:
            The frames taken (empty when nothing is queued).
        """
        frames: list[Frame] = []
        append = frames.append
        left = limit
        while left > 0:
            partial = self._partial
            if partial is None:
                if self._head == len(self._datas):
                    break
                append(self._take_packed(None))
                left -= 1
                continue
            view, offset, safe, _handle, fragment_id, index = partial
            room = self._capacity - LENGTH_SIZE
            rest = len(view) - offset
            if rest <= room:
                append(self._take_tail(partial, room))
                left -= 1
                continue
            # Middle fragments: each fills a frame, and the last part follows them.
            count = min(left, (rest - 1) // room)
            pack = ONE_ENTRY.pack
            for index in range(index, index + count):
                end = offset + room
                append(_new_tuple(Frame, (pack(VERSION, MIDDLE, 1, fragment_id, index, fragment_id,
                                               room) + view[offset:end], safe, ())))
                offset = end
            partial[1] = offset
            partial[5] = index + 1
            self._queued_bytes -= room * count
            self._middle_frames += count
            left -= count
        return frames

    def _take_tail(self, partial: list[Any], room: int) -> Frame:
        """take_frame when the rest of the partial message fits in this frame
        (``room``: the frame's capacity less one length): the frames between
        two large messages. Built directly when no whole message fits after
        it (the head of the next one, if any, is split into it: the frame
        every large message starts in); anything else goes to _take_packed.
        """
        view, offset, safe, handle, continued_id, continued_index = partial
        remaining = len(view) - offset
        head = self._head
        datas = self._datas
        base = self._base
        fits = room - LENGTH_SIZE - remaining  # for the next one's head, after its length
        if head < len(datas):
            if self._ends[head] - base <= room - remaining or fits < MIN_FRAGMENT:
                return self._take_packed(partial)  # whole messages fit (or no head does)
            # The next message opens here: its head, the rest in the next frames.
            self._partial = None
            open_id, message_safe, piece = self._split(head, fits)
            self._base = self._ends[head]
            if head + 1 == len(datas) or (head + 1 >= _COMPACT_AFTER
                                          and 2 * head + 2 >= len(datas)):
                self._compact(head + 1)
            else:
                self._head = head + 1
            payload = b"".join((_TWO_ENTRIES.pack(VERSION, _TAIL_AND_HEAD, 2, continued_id,
                                                  continued_index, open_id, remaining, fits),
                                view[offset:], piece))
            safe = safe or message_safe
            taken = remaining + fits
        else:
            self._partial = None
            payload = ONE_ENTRY.pack(VERSION, FLAG_FIRST_IS_CONTINUATION, 1, continued_id,
                                     continued_index, 0, remaining) + view[offset:]
            taken = remaining
        self._fragments_taken += 1
        self._queued_bytes -= taken
        self._frames_taken += 1
        self._payload_bytes_taken += len(payload)
        return _new_tuple(Frame, (payload, safe, () if handle is None else (handle,)))

    def _take_packed(self, partial: list[Any] | None) -> Frame:
        """take_frame's general case: the last part of the partial message
        if any, the whole messages that fit, the head of the next one."""
        head = self._head
        datas = self._datas
        if partial is None:
            room = self._capacity
            pieces: list[Any] = [b""]  # [0]: the header and lengths, below
            lengths: list[int] = []
            completed: tuple[Any, ...] = ()
            safe = False
            flags = continued_id = continued_index = 0
        else:
            view, offset, safe, handle, continued_id, continued_index = partial
            remaining = len(view) - offset
            self._partial = None
            self._fragments_taken += 1
            flags = FLAG_FIRST_IS_CONTINUATION
            pieces = [b"", view[offset:]]
            lengths = [remaining]
            completed = () if handle is None else (handle,)
            room = self._capacity - LENGTH_SIZE - remaining
        ends = self._ends
        base = self._base
        # Whole messages [head, end_index) fit: each one's end within room.
        end_index = bisect_right(ends, base + room, head)
        if end_index > head:
            pieces += datas[head:end_index]
            lengths += self._sizes[head:end_index]
            handles = self._handles[head:end_index]
            if self._none_handles:
                handles = self._drop_none(handles)
            completed = (*completed, *handles) if completed else tuple(handles)
            positions = self._safe_positions
            while positions and positions[0] < end_index:
                positions.popleft()
                safe = True
            room -= ends[end_index - 1] - base
            base = ends[end_index - 1]
        open_id = 0
        fits = room - LENGTH_SIZE
        if end_index < len(datas) and fits >= MIN_FRAGMENT:
            # Split the next one: its head goes here, the rest in the next frames.
            open_id, message_safe, piece = self._split(end_index, fits)
            pieces.append(piece)
            lengths.append(fits)
            flags |= FLAG_LAST_CONTINUES
            safe = safe or message_safe
            base = ends[end_index]
            end_index += 1
        if end_index != head:
            self._base = base
            if end_index == len(datas) or (end_index >= _COMPACT_AFTER
                                           and 2 * end_index >= len(datas)):
                self._compact(end_index)
            else:
                self._head = end_index
        count = len(lengths)
        header = FRAME_STRUCTS.get(count) or frame_struct(count)
        pieces[0] = header.pack(VERSION, flags, count, continued_id, continued_index, open_id,
                                *lengths)
        payload = b"".join(pieces)
        # Every data byte of the frame was taken from the queue.
        self._queued_bytes -= len(payload) - HEADER_SIZE - LENGTH_SIZE * count
        self._frames_taken += 1
        self._payload_bytes_taken += len(payload)
        return _new_tuple(Frame, (payload, safe, completed))

    def _split(self, index: int, fits: int) -> tuple[int, bool, bytes]:
        """Make queued message ``index`` the partial one, ``fits`` bytes of
        it taken. Returns (its fragment id, whether it is safe, its first
        ``fits`` bytes)."""
        positions = self._safe_positions
        safe = bool(positions) and positions[0] == index
        if safe:
            positions.popleft()
        handle = self._handles[index]
        if handle is None:
            self._none_handles -= 1
        fragment_id = self._next_fragment_id
        self._next_fragment_id = 1 if fragment_id == _MAX_FRAGMENT_ID else fragment_id + 1
        data = self._datas[index]
        # The partial holds it from now on; the list must not keep a large
        # message alive until the next compaction.
        self._datas[index] = b""
        if len(data) - fits > self._capacity - LENGTH_SIZE:
            # Middle fragments follow: every part, this head too, is cut from
            # a view, without a copy before the payload's (not worth a view
            # for one more part).
            data = memoryview(data)
        piece = data[:fits]
        self._partial = [data, fits, safe, handle, fragment_id, 1]
        self._fragments_taken += 1
        return fragment_id, safe, piece

    def _drop_none(self, handles: list[Any]) -> list[Any]:
        """``handles`` without the None ones (which are not reported)."""
        kept = [handle for handle in handles if handle is not None]
        self._none_handles -= len(handles) - len(kept)
        return kept

    def _compact(self, head: int) -> None:
        """Drop the taken messages before ``head`` from the lists (amortized
        O(1) per message: called when nothing is left after them, or once the
        taken prefix is at least as long as the rest)."""
        del self._datas[:head], self._sizes[:head], self._handles[:head], self._ends[:head]
        self._dropped += head
        if self._safe_positions:
            self._safe_positions = deque(p - head for p in self._safe_positions)
        self._head = 0

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
        if type(data) is memoryview:
            data = data.obj
        self._partial = None
        head = self._head
        # The lists again from the head, with the message in front: it ends
        # where the first queued one starts (the stream positions after it
        # stay as they are).
        size = len(data)
        self._datas = [data, *self._datas[head:]]
        self._sizes = [size, *self._sizes[head:]]
        self._handles = [handle, *self._handles[head:]]
        self._ends = [self._base, *self._ends[head:]]
        self._dropped += head
        self._base -= size + LENGTH_SIZE
        self._head = 0
        positions = deque(p - head + 1 for p in self._safe_positions)
        if safe:
            positions.appendleft(0)
        self._safe_positions = positions
        if handle is None:
            self._none_handles += 1
        self._queued_bytes += offset
        if self._queued_bytes > self._peak_queued_bytes:
            self._peak_queued_bytes = self._queued_bytes
        self._requeued += 1
