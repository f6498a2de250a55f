"""The reading half of :class:`coroipc.ring.Ring`: frame parsing and validation,
copy-out (``read``, ``read_batch``) and zero-copy (``peek``, ``peek_batch``).

Everything read from the ring is checked before it is used (check word,
kind, count, sizes against the fill level and the end of the data area,
lengths that add up to the frame's payload) and a violation raises
:class:`~coroipc.errors.RingCorrupted`: a peer's bytes are never trusted.
"""

from __future__ import annotations

import os
import sys
import time
from bisect import bisect_right
from contextlib import contextmanager
from itertools import accumulate, pairwise
from typing import Callable, Iterator

from coroipc._doorbell import fence
from coroipc._ring_layout import (CLOSED, FRAME, FRAME_CHECK, FRAME_ONE, HEADER_SIZE, KIND_DATA, KIND_PAD,
                                  ONE_OVERHEAD, R_PID, R_POS, SLEEPING, W_EPOCH, W_FLAGS, W_POS, W_WANT, frame_size)
from coroipc.errors import ConnectionLost, NotConnected, RingCorrupted, WouldBlock

__all__ = ["ReadMixin", "PeekedBatch", "READ_BATCH_BYTES"]

#: Default payload budget of one read_batch() (see there).
READ_BATCH_BYTES = 32 * 1024


class ReadMixin:
    """The reading half of Ring (it relies on Ring's fields, declared here)."""

    name: str
    capacity: int
    _mmap: object
    _view: memoryview | None
    _u32: memoryview | None
    _words: memoryview | None
    _rpos: int
    _pending: list[int] | None
    _pending_index: int
    _pending_next: int
    _is_reader: bool
    _writer_bell: object
    _count: dict[str, int]
    _require_open: Callable[[], memoryview]
    _wake: Callable[[int, object], None]
    wait_readable: Callable[..., None]

    def become_reader(self) -> None:
        """Claim the reader role (records our pid for the writer's liveness checks)."""
        words = self._require_open()
        self._is_reader = True
        words[R_PID] = os.getpid()
        self._rpos = words[R_POS]

    def _next_frame(self, written: int) -> list[int] | None:
        """Parse the next DATA frame at the read position (skipping PAD).

        Args:
            written: the writer's position, loaded once by the caller.

        Returns:
            the absolute mmap offsets [start0, end0 = start1, ..., endN], or
            None when nothing is available. ``self._pending_next`` is set to
            the read position after the frame.

        Raises:
            RingCorrupted: a header, length or position that cannot be valid.
        """
        capacity = self.capacity
        while True:
            rpos = self._rpos
            available = written - rpos
            if available <= 0:
                if available < 0:
                    raise RingCorrupted(f"ring {self.name}: write position is behind the read position")
                return None
            if available > capacity or available & 15:
                raise RingCorrupted(f"ring {self.name}: impossible fill of {available} bytes")
            offset = rpos % capacity
            start = HEADER_SIZE + offset
            kind, count, payload, check = FRAME.unpack_from(self._mmap, start)
            if check != kind ^ count ^ payload ^ FRAME_CHECK:
                raise RingCorrupted(f"ring {self.name}: bad frame check at offset {offset}")
            if kind == KIND_PAD and count == 0 and payload == 0 and capacity - offset <= available:
                self._rpos = rpos + capacity - offset
                continue
            size = frame_size(count, payload)
            if kind != KIND_DATA or count == 0 or size > available or offset + size > capacity:
                raise RingCorrupted(f"ring {self.name}: impossible frame (kind 0x{kind:08x}, {count} "
                                    f"messages, {payload} bytes) at offset {offset}")
            lengths_start = (start + 16) >> 2
            ends = list(accumulate(self._u32[lengths_start:lengths_start + count],
                                   initial=start + 16 + ((4 * count + 7) & ~7)))
            if ends[-1] - ends[0] != payload:
                raise RingCorrupted(f"ring {self.name}: message lengths do not add up to the frame's "
                                    f"{payload} bytes at offset {offset}")
            self._pending_next = rpos + size
            return ends

    def _take(self, max_count: int | None, max_bytes: int = sys.maxsize, at_least_one: bool = True,
              one_frame: bool = False) -> list[tuple[int, int, list[int]]]:
        """Claim up to ``max_count`` messages and about ``max_bytes`` payload
        (the messages whose running total stays within it, and at least one
        message when any is waiting unless ``at_least_one`` is false), with
        the general frame parser; from one frame only if ``one_frame``.

        Returns:
            (first index, stop index, frame ends) per frame touched; message i
            of a frame spans ends[i]:ends[i + 1]. Read positions are advanced
            locally; :meth:`_publish_read` makes them visible. The messages
            handed out are counted here (not when a frame is parsed), so the
            counters never include the unread rest of a partly read frame.
        """
        if not self._is_reader:
            self.become_reader()
        spans: list[tuple[int, int, list[int]]] = []
        budget = sys.maxsize if max_count is None else max_count
        written = self._words[W_POS]
        counters = self._count
        while budget > 0 and max_bytes > 0:
            ends = self._pending
            if ends is None:
                if self._rpos == written:
                    break
                ends = self._next_frame(written)
                if ends is None:
                    break
                self._pending, self._pending_index = ends, 0
            index = self._pending_index
            stop = min(len(ends) - 1, index + budget)
            if ends[stop] - ends[index] > max_bytes:
                stop = bisect_right(ends, ends[index] + max_bytes, index, stop) - 1
                if stop == index:
                    if spans or not at_least_one:
                        break  # the next message would overrun the budget
                    stop = index + 1  # but a batch always has at least one
            spans.append((index, stop, ends))
            budget -= stop - index
            taken = ends[stop] - ends[index]
            max_bytes -= taken
            counters["messages_read"] += stop - index
            counters["bytes_read"] += taken
            if stop == len(ends) - 1:
                self._pending = None
                self._rpos = self._pending_next
            else:
                self._pending_index = stop
            if one_frame:
                break
        return spans

    def _publish_read(self) -> None:
        words = self._words
        if words is None:
            return
        words[R_POS] = self._rpos
        fence()
        if words[W_FLAGS] & SLEEPING and self.capacity - (words[W_POS] - self._rpos) >= words[W_WANT]:
            self._wake(W_EPOCH, self._writer_bell)

    def read_batch(self, max_count: int | None = None, max_bytes: int = READ_BATCH_BYTES) -> list[bytes]:
        """Copy out the available messages; never blocks.

        Args:
            max_count: at most this many messages (None: no count limit).
            max_bytes: stop before the message that would take the payload
                past this (at least one message). The default keeps a
                batch's copies small enough that the C allocator reuses
                their memory instead of returning it to the kernel and
                faulting it back in for the next batch, which costs more
                than the copying itself.

        Returns:
            the messages in order; an empty list when the ring is empty.

        Raises:
            RingCorrupted, NotConnected.
        """
        out = self._claim_batch(self._mmap, max_count, max_bytes)
        if out or self._words[R_POS] != self._rpos:  # (a skipped PAD frame: hand the space back)
            self._publish_read()
        return out

    def _claim_batch(self, source, max_count: int | None, max_bytes: int) -> list:
        """Claim up to ``max_count`` messages and about ``max_bytes`` payload
        (as :meth:`_take`); ``source[start:end]`` of each, in order.

        ``source`` is the mapping (copies: bytes) or its memoryview (views).
        The frames of one message (what ``write`` makes, and every event and
        request of a connection) are taken by :meth:`_claim_ones` without
        the frame parser; a frame it cannot take (a batch frame, a partly
        read frame, something invalid) goes to :meth:`_take`, one frame at a
        time. The read position advances locally; the caller publishes.
        """
        budget = sys.maxsize if max_count is None else max_count
        out: list = []
        taken, blocked = self._claim_ones(source, out, budget, max_bytes)
        while blocked and len(out) < budget and max_bytes > taken:
            spans = self._take(budget - len(out), max_bytes - taken, not out, True)
            if not spans:
                break
            for index, stop, ends in spans:
                out += [source[a:b] for a, b in pairwise(ends[index:stop + 1])]
                taken += ends[stop] - ends[index]
            if self._pending is not None:
                break  # a budget ended inside the frame
            more, blocked = self._claim_ones(source, out, budget - len(out), max_bytes - taken)
            taken += more
        return out

    def _claim_ones(self, source, out: list, budget: int, max_bytes: int) -> tuple[int, bool]:
        """Append ``source[start:end]`` for each of the next frames of one
        message (skipping PAD frames), with the checks of :meth:`_claim_one`
        and of the frame parser for a PAD, inline: one header unpack per
        message, counters and position stored once.

        Stops at ``budget`` more messages, before a message that would take
        the payload past ``max_bytes`` (unless ``out`` is empty), when the ring
        is empty, and at the first frame that is not a valid frame of one
        message (or when a frame is partly read): that one is left for the
        general parser, which reports it if it is invalid.

        Returns:
            (payload bytes taken, whether it stopped at a frame it left for
            the general parser).
        """
        if not self._is_reader:
            self.become_reader()
        words = self._words
        if words is None:
            raise NotConnected(f"ring {self.name} is closed")
        if self._pending is not None:
            return 0, True
        rpos = self._rpos
        available = words[W_POS] - rpos
        capacity = self.capacity
        if available > capacity:
            return 0, True  # impossible: the parser says so
        mapping = self._mmap
        unpack = FRAME_ONE.unpack_from
        first = len(out)
        limit = first + budget
        taken = 0
        blocked = False
        one_check = KIND_DATA ^ 1 ^ FRAME_CHECK
        while len(out) < limit:
            if available < 32:  # (the smallest frame of one message)
                blocked = available != 0  # a PAD or something invalid: the parser decides
                break
            offset = rpos % capacity
            start = HEADER_SIZE + offset
            if offset + 24 > capacity:
                blocked = True
                break
            kind, count, payload, check, length = unpack(mapping, start)
            size = (payload + ONE_OVERHEAD + 15) & ~15
            if not (kind == KIND_DATA and count == 1 and length == payload and size <= available
                    and offset + size <= capacity and check == one_check ^ payload):
                if (kind == KIND_PAD and count == 0 and payload == 0 and capacity - offset <= available
                        and check == KIND_PAD ^ FRAME_CHECK and not available & 15):
                    rpos += capacity - offset
                    available -= capacity - offset
                    continue
                blocked = True
                break
            if taken + payload > max_bytes and out:
                break  # (a batch has at least one message)
            start += ONE_OVERHEAD
            out.append(source[start:start + payload])
            taken += payload
            rpos += size
            available -= size
        self._rpos = rpos
        if len(out) > first:
            counters = self._count
            counters["messages_read"] += len(out) - first
            counters["bytes_read"] += taken
        return taken, blocked

    def _claim_one(self) -> tuple[int, int] | None:
        """Claim the next message if it is a frame of one (what ``write`` makes).

        The fast path of the per-message reads: one header unpack, no frame
        parser. The read position advances locally; the caller copies or
        views ``mmap[start:end]`` and then calls :meth:`_publish_read`.

        Returns:
            (start, end) offsets in the mapping, or None when the ring is
            empty or the next frame needs the general parser (a batch frame,
            a PAD, a partly read frame, or something invalid, which the
            general parser then reports).
        """
        if not self._is_reader:
            self.become_reader()
        rpos = self._rpos
        available = self._words[W_POS] - rpos
        if available < 32 or self._pending is not None:
            return None
        capacity = self.capacity
        offset = rpos % capacity
        if available > capacity or offset + 24 > capacity:
            return None
        start = HEADER_SIZE + offset
        kind, count, payload, check, length = FRAME_ONE.unpack_from(self._mmap, start)
        size = (payload + ONE_OVERHEAD + 15) & ~15
        if (kind == KIND_DATA and count == 1 and length == payload and size <= available
                and offset + size <= capacity and check == KIND_DATA ^ 1 ^ payload ^ FRAME_CHECK):
            self._rpos = rpos + size
            counters = self._count
            counters["messages_read"] += 1
            counters["bytes_read"] += payload
            start += ONE_OVERHEAD
            return start, start + payload
        return None

    def _read_one(self) -> bytes | None:
        """The next message, copied out; None when the ring is empty."""
        span = self._claim_one()
        if span is not None:
            data = self._mmap[span[0]:span[1]]
            self._publish_read()
            return data
        if self._rpos == self._words[W_POS] and self._pending is None:
            return None  # empty (the common miss): no need for the general parser
        out = self.read_batch(1)
        return out[0] if out else None

    def read_nowait(self) -> bytes:
        """Copy out the next message or raise WouldBlock (or ConnectionLost when
        the writer closed the ring and nothing is left)."""
        out = self._read_one()
        if out is None:
            if self._words[W_FLAGS] & CLOSED:
                raise ConnectionLost(f"ring {self.name}: the writer closed its end")
            raise WouldBlock(f"ring {self.name} is empty")
        return out

    def read(self, timeout: float | None = None) -> bytes:
        """Copy out the next message, waiting up to ``timeout`` seconds.

        Raises:
            Timeout, ConnectionLost (writer gone and ring drained), RingCorrupted.
        """
        out = self._read_one()
        if out is not None:
            return out
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.wait_readable(deadline=deadline)
            out = self._read_one()
            if out is not None:
                return out

    @contextmanager
    def peek(self, timeout: float | None = None) -> Iterator[memoryview]:
        """Zero-copy read of one message: a view valid inside the ``with`` block.

        The message is consumed when the block exits (also on an exception).
        ``timeout=0`` makes it non-blocking (raises WouldBlock).
        """
        with self.peek_batch(1, timeout=timeout) as views:
            yield views[0]

    def peek_batch(self, max_count: int | None = None, timeout: float | None = 0.0) -> "PeekedBatch":
        """Zero-copy read of every available message (at most ``max_count``).

        Use as ``with ring.peek_batch() as views:``; the messages are taken
        when the block is entered and handed back (consumed) when it exits,
        also on an exception.

        Returns:
            a context manager whose block sees a list of views, valid inside
            the ``with`` block and released after. With the default
            ``timeout=0`` an empty ring raises WouldBlock when entered.
        """
        return PeekedBatch(self, max_count, timeout)


class PeekedBatch:
    """The context manager :meth:`ReadMixin.peek_batch` returns (a class: a
    generator-based one costs about a microsecond more per peek, as much as
    taking a message)."""

    __slots__ = ("_ring", "_max_count", "_timeout", "_views")

    def __init__(self, ring: ReadMixin, max_count: int | None, timeout: float | None) -> None:
        self._ring = ring
        self._max_count = max_count
        self._timeout = timeout
        self._views: list[memoryview] = []

    def __enter__(self) -> list[memoryview]:
        ring = self._ring
        views = ring._claim_batch(ring._view, self._max_count, sys.maxsize)
        if not views and self._timeout != 0:
            ring.wait_readable(timeout=self._timeout)
            views = ring._claim_batch(ring._view, self._max_count, sys.maxsize)
        if not views:
            ring._count["would_block"] += 1
            if ring._words[R_POS] != ring._rpos:
                ring._publish_read()  # a skipped PAD frame: hand the space back
            raise WouldBlock(f"ring {ring.name} is empty")
        self._views = views
        return views

    def __exit__(self, *exc_info: object) -> None:
        views, self._views = self._views, []
        for item in views:
            item.release()
        self._ring._publish_read()
