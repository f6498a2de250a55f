"""Single-producer single-consumer ring of variable-length messages in POSIX shm.

The byte layout (header words, frames, PAD) is documented at the top of
:mod:`coroipc._ring_layout`, next to the constants that implement it. This
module holds the lifecycle and the writing half; the reading half is
:mod:`coroipc._ring_read`, the sleep/wake protocol :mod:`coroipc._ring_wait`
and :mod:`coroipc._doorbell`.

A batch write puts many messages in one frame (one header, one lengths
array, one copy), which is where the throughput comes from; a single write
is a frame of one message. A frame never wraps (Python's mmap cannot map a
segment twice back to back): it is at most capacity / 2 and is preceded by a
PAD frame when it does not fit before the end of the data area.
"""

from __future__ import annotations

import os
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence

from coroipc import _shm
from coroipc._doorbell import Bell, DatagramBell, EventfdBell, fence
from coroipc._ring_layout import (CLOSED, FRAME, FRAME_CHECK, FRAME_ONE, HEADER_CHECK, HEADER_SIZE, KIND_DATA,
                                  KIND_PAD, LAYOUT_VERSION, MAGIC, MIN_CAPACITY, ONE_OVERHEAD, R_EPOCH, R_FLAGS,
                                  R_POS, SLEEPING, STATIC, W_FLAGS, W_PID, W_POS, frame_size, validate_header)
from coroipc._ring_read import READ_BATCH_BYTES, ReadMixin
from coroipc._ring_wait import SpinPolicy, WaitMixin
from coroipc.errors import ConnectionLost, MessageTooLarge, NotConnected, RingCorrupted, WouldBlock

__all__ = ["Ring", "RingStats", "HEADER_SIZE", "MAGIC", "LAYOUT_VERSION", "frame_size", "READ_BATCH_BYTES"]

#: Below this average message size a batch is joined into one copy; above it
#: each message is copied straight into the ring (the join would double copy).
_JOIN_BELOW = 4096
#: Largest frame a batch write builds (a single larger message gets its own).
_BATCH_FRAME_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class RingStats:
    """Counters of one ring handle (this process's view) plus shared positions."""

    name: str
    capacity: int
    used_bytes: int
    peak_used_bytes: int
    messages_written: int
    messages_read: int
    bytes_written: int
    bytes_read: int
    would_block: int
    wakeups_sent: int
    sleeps: int


class Ring(ReadMixin, WaitMixin):
    """One end (or both ends) of a shared SPSC message ring.

    Create with :meth:`create` (owner, chooses the name) or :meth:`attach`
    (by name) / :meth:`attach_fd` (by a descriptor received over a socket).
    A handle becomes the writer when it first writes and the reader when it
    first reads; at most one writer and one reader may use a ring at a time.
    A handle is not thread-safe.
    """

    _mmap = None
    _view: memoryview | None = None
    _words: memoryview | None = None
    _u32: memoryview | None = None
    _reader_bell: Bell | None = None
    _writer_bell: Bell | None = None
    _closed = True
    _owner = False
    _is_writer = False
    _is_reader = False
    _pid = 0
    fd = -1

    def __init__(self, name: str, mapping, *, owner: bool, spin_us: float = 50.0,
                 bells: tuple[Bell, Bell] | None = None) -> None:
        """Use :meth:`create`, :meth:`attach` or :meth:`attach_fd` instead.

        ``bells`` (reader's, writer's) default to datagram doorbells named
        after the ring; the ring owns and closes them.
        """
        self.name = name
        if bells is None:
            address = b"\0" + name.lstrip("/").encode()
            bells = (DatagramBell(address + b".r"), DatagramBell(address + b".w"))
        self._reader_bell, self._writer_bell = bells
        self._mmap = mapping
        self._owner = owner
        self._pid = os.getpid()  # the process this handle belongs to (see close)
        self._spinner = SpinPolicy(int(spin_us * 1000))
        try:
            self.capacity = validate_header(mapping)
            self._static_header = mapping[:STATIC.size]
            self._view = memoryview(mapping)
            self._words = self._view[:HEADER_SIZE].cast("Q")
            self._u32 = self._view.cast("I")
        except BaseException:
            self._release_views()
            self._close_bells()
            raise
        self.max_message_size = self.capacity // 2 - ONE_OVERHEAD
        self.batch_frame_limit = min(_BATCH_FRAME_BYTES, self.capacity // 8)
        self.watch_fds: list[int] = []  # readable/hung-up => the peer is gone
        self._is_writer = self._is_reader = False
        self._wpos = self._words[W_POS]
        self._rpos = self._words[R_POS]
        self._read_cache = self._rpos
        self._reserved: tuple[int, int] | None = None
        self._pending: list[int] | None = None  # ends of a partly read frame
        self._pending_index = 0
        self._pending_next = 0
        self._rung_epochs: dict[int, int] = {}  # epoch word -> the epoch we last rang
        # When a list, wake-ups are appended to it instead of rung (the owner
        # rings them later, e.g. at the end of its loop turn: IpcServer.defer_wakes).
        self.wake_sink: list[Bell] | None = None
        self._pidfds: dict[int, int] = {}
        self._sleepers: dict = {}  # doorbell fd -> WaitMixin's epoll set
        self._count = dict.fromkeys(
            ("messages_written", "messages_read", "bytes_written",
             "bytes_read", "would_block", "wakeups_sent", "sleeps", "peak_used_bytes"), 0)
        self._closed = False

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, capacity: int = 1 << 20, *, owner: tuple[int, int] | None = None,
               spin_us: float = 50.0, keep_fd: bool = False, eventfd_bells: bool = False) -> "Ring":
        """Create a new ring in a fresh segment (mode 0600, unguessable tagged name).

        Args:
            capacity: data bytes; a multiple of 64, at least 4096.
            owner: (uid, gid) the segment is chowned to when running as root.
            spin_us: how long a blocking wait polls the ring before sleeping.
            keep_fd: keep the segment's descriptor (``ring.fd``) open, e.g. to
                pass it over a Unix socket; closed by :meth:`close`.
            eventfd_bells: wake the other side through two eventfds
                (``ring.bell_fds``, to pass with the segment to
                :meth:`attach_fd`) instead of datagram doorbells found by
                name; faster, but the peer needs the descriptors.

        Raises:
            ValueError: bad capacity. OSError: the segment could not be made.
        """
        if capacity < MIN_CAPACITY or capacity % 64:
            raise ValueError(f"ring capacity {capacity} must be a multiple of 64 and at least {MIN_CAPACITY}")
        name = _shm.new_name()
        fd, mapping = _shm.create_segment(name, HEADER_SIZE + capacity, owner)
        try:
            check = MAGIC ^ LAYOUT_VERSION ^ (capacity & 0xFFFFFFFF) ^ HEADER_CHECK
            STATIC.pack_into(mapping, 0, MAGIC, LAYOUT_VERSION, HEADER_SIZE, capacity, os.getpid(), check)
            bells = (EventfdBell.new(), EventfdBell.new()) if eventfd_bells else None
            ring = cls(name, mapping, owner=True, spin_us=spin_us, bells=bells)
        except BaseException:
            mapping.close()
            os.close(fd)
            _shm.unlink(name)
            raise
        ring.fd = fd if keep_fd else -1
        if not keep_fd:
            os.close(fd)
        return ring

    @classmethod
    def attach(cls, name: str, *, spin_us: float = 50.0, bell_fds: tuple[int, int] | None = None) -> "Ring":
        """Map an existing ring by name. Raises RingCorrupted on a bad header.

        Args:
            bell_fds: the creator's eventfd doorbells (``ring.bell_fds``), if
                this process has them (received, or inherited over fork); the
                ring takes them over. Without them the ring must have been
                created with datagram doorbells (the default).
        """
        fd, mapping = _shm.open_segment(name)
        os.close(fd)
        bells = None if bell_fds is None else (EventfdBell(bell_fds[0]), EventfdBell(bell_fds[1]))
        return cls._from_mapping(name, mapping, spin_us, bells)

    @classmethod
    def attach_fd(cls, fd: int, name: str, *, spin_us: float = 50.0,
                  bell_fds: tuple[int, int] | None = None) -> "Ring":
        """Map a ring from a descriptor (the caller keeps and closes ``fd``).

        Args:
            bell_fds: the creator's ``bell_fds`` (reader's, writer's eventfd),
                received with the segment; the ring takes them over.
        """
        bells = None if bell_fds is None else (EventfdBell(bell_fds[0]), EventfdBell(bell_fds[1]))
        try:
            mapping = _shm.map_fd(fd)
        except BaseException:
            for bell in bells or ():
                bell.close()
            raise
        return cls._from_mapping(name, mapping, spin_us, bells)

    @property
    def bell_fds(self) -> tuple[int, int]:
        """The (reader's, writer's) doorbell descriptors, to pass to a peer."""
        return self._reader_bell.fileno(), self._writer_bell.fileno()

    @classmethod
    def _from_mapping(cls, name: str, mapping, spin_us: float, bells: tuple[Bell, Bell] | None = None) -> "Ring":
        try:
            ring = cls(name, mapping, owner=False, spin_us=spin_us, bells=bells)
        except BaseException:
            mapping.close()
            raise
        ring.fd = -1
        return ring

    def unlink(self) -> None:
        """Remove the segment's name (idempotent). Existing mappings stay valid."""
        _shm.unlink(self.name)

    def close(self) -> None:
        """Mark our end closed (waking the peer), then unmap. Idempotent.

        The owner also unlinks the name, so a forgotten ``unlink`` leaks nothing.
        In a forked child, closing a handle inherited from the parent only
        drops the child's mapping: the parent's roles and segment stay intact.
        """
        if self._closed:
            return
        self._closed = True
        inherited = os.getpid() != self._pid
        words = self._words
        if words is not None and not inherited:
            # Same protocol as a publish: flag, fence, then ring a sleeping peer.
            if self._is_writer:
                words[W_FLAGS] = CLOSED
            if self._is_reader:
                words[R_FLAGS] = CLOSED
            fence()
            if self._is_writer and words[R_FLAGS] & SLEEPING:
                self._reader_bell.ring()
            if self._is_reader and words[W_FLAGS] & SLEEPING:
                self._writer_bell.ring()
        self._close_bells()
        self._close_sleepers()
        for pidfd in self._pidfds.values():
            if pidfd >= 0:
                os.close(pidfd)
        self._pidfds.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._release_views()
        if self._owner and not inherited:
            self.unlink()

    def _close_bells(self) -> None:
        for bell in (self._reader_bell, self._writer_bell):
            if bell is not None:
                bell.close()

    def _release_views(self) -> None:
        for attribute in ("_u32", "_words", "_view"):
            view = getattr(self, attribute)
            if view is not None:
                try:
                    view.release()
                except BufferError:  # a caller still holds a sub-buffer; the mmap keeps it alive
                    pass
                setattr(self, attribute, None)
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass
            self._mmap = None

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed:
            self.close()

    def __repr__(self) -> str:
        return f"Ring(name={self.name!r}, capacity={getattr(self, 'capacity', 0)}, closed={self._closed})"

    @property
    def closed(self) -> bool:
        return self._closed

    def _require_open(self) -> memoryview:
        if self._closed or self._words is None:
            raise NotConnected(f"ring {self.name} is closed")
        return self._words

    # -------------------------------------------------------------- writing
    def become_writer(self) -> None:
        """Claim the writer role (records our pid for the reader's liveness checks)."""
        words = self._require_open()
        self._is_writer = True
        words[W_PID] = os.getpid()
        self._wpos = words[W_POS]
        self._read_cache = words[R_POS]

    def _claim(self, size: int) -> int:
        """Data offset of ``size`` contiguous free bytes (PAD written if needed); -1 if full."""
        capacity = self.capacity
        wpos = self._wpos
        offset = wpos % capacity
        tail = capacity - offset
        need = size if size <= tail else tail + size
        if capacity - (wpos - self._read_cache) < need:
            self._refresh_read_position()
            if capacity - (wpos - self._read_cache) < need:
                return -1
        if size > tail:
            FRAME.pack_into(self._mmap, HEADER_SIZE + offset, KIND_PAD, 0, 0, KIND_PAD ^ FRAME_CHECK)
            self._wpos = wpos + tail
            return 0
        return offset

    def _refresh_read_position(self) -> None:
        read = self._words[R_POS]
        if not self._read_cache <= read <= self._wpos:
            raise RingCorrupted(f"ring {self.name}: read position moved from {self._read_cache} to {read}")
        self._read_cache = read
        used = self._wpos - read  # sampled here, off the fast path
        if used > self._count["peak_used_bytes"]:
            self._count["peak_used_bytes"] = used

    def _publish_write(self) -> None:
        words = self._words
        words[W_POS] = self._wpos
        fence()
        if words[R_FLAGS] & SLEEPING:
            self._wake(R_EPOCH, self._reader_bell)

    def write_nowait(self, data) -> None:
        """Write one message (a bytes-like object) or raise WouldBlock.

        Raises:
            MessageTooLarge: larger than ``max_message_size`` (nothing written).
            WouldBlock: not enough free space now.
            ConnectionLost: the reader closed the ring and it is full.
            NotConnected: this handle is closed.
        """
        self.write_prefixed_nowait(b"", data)

    def write_prefixed_nowait(self, prefix: bytes, data) -> None:
        """Write one message made of ``prefix`` + ``data`` (e.g. a header and a
        payload) with one copy of each, without joining them first.

        Raises:
            As :meth:`write_nowait`.
        """
        if not self._is_writer:
            self.become_writer()
        prefix_length = len(prefix)
        length = prefix_length + len(data)
        if length > self.max_message_size:
            raise MessageTooLarge(f"message of {length} bytes exceeds this ring's limit of {self.max_message_size}")
        if not self._write_one(prefix, prefix_length, data, length):
            self._full()
        self._publish_write()

    def write_gather_nowait(self, prefix: bytes, parts: Sequence, parts_size: int) -> None:
        """Write one message made of ``prefix`` and then the buffers ``parts``
        back to back (``parts_size`` bytes in all), each copied straight into
        the ring: no joined copy first. Worth it for parts of a few KiB and
        more; for many small ones a ``b"".join`` (one C loop) and
        :meth:`write_prefixed_nowait` cost less.

        Raises:
            ValueError: the parts do not add up to ``parts_size`` (nothing
                is written: the frame is not published).
            As :meth:`write_nowait` otherwise.
        """
        if not self._is_writer:
            self.become_writer()
        prefix_length = len(prefix)
        length = prefix_length + parts_size
        if length > self.max_message_size:
            raise MessageTooLarge(f"message of {length} bytes exceeds this ring's limit of {self.max_message_size}")
        size = (length + ONE_OVERHEAD + 15) & ~15
        wpos = self._wpos
        capacity = self.capacity
        offset = wpos % capacity
        if size > capacity - offset or capacity - (wpos - self._read_cache) < size:
            offset = self._claim(size)  # slow path: refresh the reader's position, or pad
            if offset < 0:
                self._full()
        start = HEADER_SIZE + offset + ONE_OVERHEAD
        end = start + length
        view = self._view
        position = start + prefix_length
        view[start:position] = prefix
        for part in parts:
            stop = position + len(part)
            if stop > end:
                raise ValueError(f"the parts exceed the {parts_size} bytes announced")
            view[position:stop] = part
            position = stop
        if position != end:
            raise ValueError(f"the parts hold {position - start - prefix_length} bytes, not {parts_size}")
        # The frame header last: a frame that failed above is never described.
        FRAME_ONE.pack_into(self._mmap, start - ONE_OVERHEAD, KIND_DATA, 1, length,
                            KIND_DATA ^ 1 ^ length ^ FRAME_CHECK, length)
        self._wpos += size
        counters = self._count
        counters["messages_written"] += 1
        counters["bytes_written"] += length
        self._publish_write()

    def _write_one(self, prefix, prefix_length: int, data, length: int) -> bool:
        """Write a frame of one message (not yet published); False if it does not fit now."""
        size = (length + ONE_OVERHEAD + 15) & ~15
        wpos = self._wpos
        capacity = self.capacity
        offset = wpos % capacity
        if size > capacity - offset or capacity - (wpos - self._read_cache) < size:
            offset = self._claim(size)  # slow path: refresh the reader's position, or pad
            if offset < 0:
                return False
        start = HEADER_SIZE + offset + ONE_OVERHEAD
        FRAME_ONE.pack_into(self._mmap, start - ONE_OVERHEAD, KIND_DATA, 1, length,
                            KIND_DATA ^ 1 ^ length ^ FRAME_CHECK, length)
        view = self._view
        if prefix_length:
            view[start:start + prefix_length] = prefix
        view[start + prefix_length:start + length] = data
        self._wpos += size
        counters = self._count
        counters["messages_written"] += 1
        counters["bytes_written"] += length
        return True

    def _full(self):
        self._count["would_block"] += 1
        if self._words[R_FLAGS] & CLOSED:
            raise ConnectionLost(f"ring {self.name}: the reader closed its end")
        raise WouldBlock(f"ring {self.name} is full")

    def write(self, data, timeout: float | None = None) -> None:
        """Write one message, waiting up to ``timeout`` seconds for space.

        Raises:
            Timeout: no space in time. Others as :meth:`write_nowait`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.write_nowait(data)
            except WouldBlock:
                self._wait_writable(frame_size(1, len(data)), deadline)

    def reserve_nowait(self, size: int) -> memoryview:
        """Reserve room for one message of up to ``size`` bytes; fill it, then :meth:`commit`.

        Returns:
            a writable view into the ring, valid until :meth:`commit`.

        Raises:
            MessageTooLarge, WouldBlock, ConnectionLost, NotConnected.
        """
        if not self._is_writer:
            self.become_writer()
        if size > self.max_message_size:
            raise MessageTooLarge(f"message of {size} bytes exceeds this ring's limit of {self.max_message_size}")
        offset = self._claim((size + ONE_OVERHEAD + 15) & ~15)
        if offset < 0:
            self._full()
        start = HEADER_SIZE + offset + ONE_OVERHEAD
        self._reserved = (offset, size)
        return self._view[start:start + size]

    def reserve(self, size: int, timeout: float | None = None) -> memoryview:
        """Blocking form of :meth:`reserve_nowait` (raises Timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.reserve_nowait(size)
            except WouldBlock:
                self._wait_writable(frame_size(1, size), deadline)

    def commit(self, size: int) -> None:
        """Publish the reserved message with its final length (<= reserved size)."""
        reserved = self._reserved
        if reserved is None:
            raise RuntimeError("commit() without a reserve()")
        offset, reserved_size = reserved
        if not 0 <= size <= reserved_size:
            raise ValueError(f"commit({size}) outside the reserved 0..{reserved_size} bytes")
        self._reserved = None
        FRAME_ONE.pack_into(self._mmap, HEADER_SIZE + offset, KIND_DATA, 1, size,
                             KIND_DATA ^ 1 ^ size ^ FRAME_CHECK, size)
        self._wpos += (size + ONE_OVERHEAD + 15) & ~15
        self._count["messages_written"] += 1
        self._count["bytes_written"] += size
        self._publish_write()

    def write_batch(self, buffers: Sequence) -> int:
        """Write as many leading messages of ``buffers`` as fit now (never blocks).

        Returns:
            how many were written (0 when the ring is full).

        Raises:
            MessageTooLarge: one of them exceeds ``max_message_size`` (nothing written).
            ConnectionLost: the reader closed the ring and it is full.
        """
        if not self._is_writer:
            self.become_writer()
        total = len(buffers)
        if total == 0:
            return 0
        lengths = list(map(len, buffers))
        if max(lengths) > self.max_message_size:
            raise MessageTooLarge(f"a message of {max(lengths)} bytes exceeds this ring's limit "
                                  f"of {self.max_message_size}")
        sums = list(accumulate(lengths, initial=0))
        done = 0
        big = self.batch_frame_limit // 2
        while done < total:
            length = lengths[done]
            if length >= big:  # a frame of its own anyway: the one-message path, no lengths array or bisect
                if not self._write_one(b"", 0, buffers[done], length):
                    break
                done += 1
                continue
            count = self._write_frame(buffers, lengths, sums, done)
            if count == 0:
                break
            done += count
        if done:
            self._publish_write()
        elif self._words[R_FLAGS] & CLOSED:
            raise ConnectionLost(f"ring {self.name}: the reader closed its end")
        else:
            self._count["would_block"] += 1
        return done

    def _write_frame(self, buffers: Sequence, lengths: list[int], sums: list[int], first: int) -> int:
        """Write one frame of messages starting at ``first``; returns how many went in."""
        capacity = self.capacity
        wpos = self._wpos
        offset = wpos % capacity
        tail = capacity - offset
        free = capacity - (wpos - self._read_cache)
        one = frame_size(1, lengths[first])
        wanted = tail + one if one > tail else min(tail, max(one, self.batch_frame_limit))
        if free < wanted:
            self._refresh_read_position()
            free = capacity - (wpos - self._read_cache)
        if one > tail:  # the next message does not fit before the end: pad, retry at 0
            if free < tail + one:
                return 0
            self._claim(one)
            return self._write_frame(buffers, lengths, sums, first)
        limit = min(free, tail, max(one, self.batch_frame_limit))
        base = sums[first]
        count = bisect_right(range(1, len(lengths) - first + 1), limit,
                             key=lambda k: (16 + ((4 * k + 7) & ~7) + sums[first + k] - base + 15) & ~15)
        if count == 0:
            return 0
        last = first + count
        payload = sums[last] - base
        start = HEADER_SIZE + offset
        FRAME.pack_into(self._mmap, start, KIND_DATA, count, payload, KIND_DATA ^ count ^ payload ^ FRAME_CHECK)
        lengths_start = (start + 16) >> 2
        self._u32[lengths_start:lengths_start + count] = array("I", lengths[first:last])
        if count & 1:
            self._u32[lengths_start + count] = 0
        position = start + 16 + ((4 * count + 7) & ~7)
        view = self._view
        if payload < _JOIN_BELOW * count:
            view[position:position + payload] = b"".join(buffers[first:last])
        else:
            for index in range(first, last):
                end = position + lengths[index]
                view[position:end] = buffers[index]
                position = end
        self._wpos = wpos + frame_size(count, payload)
        counters = self._count
        counters["messages_written"] += count
        counters["bytes_written"] += payload
        return count

    def _wake(self, epoch_word: int, bell: Bell) -> None:
        """Ring the sleeping peer's doorbell, once per sleep epoch."""
        epoch = self._words[epoch_word]
        if self._rung_epochs.get(epoch_word) != epoch:
            self._rung_epochs[epoch_word] = epoch
            self._count["wakeups_sent"] += 1
            if self.wake_sink is None:
                bell.ring()
            else:
                self.wake_sink.append(bell)

    def stats(self) -> RingStats:
        """A snapshot of this handle's counters and the shared fill level."""
        words = self._require_open()
        return RingStats(name=self.name, capacity=self.capacity, used_bytes=words[W_POS] - words[R_POS],
                         **self._count)

    def check_header(self) -> None:
        """Re-validate the static header (magic, version, capacity).

        A peer with write access could overwrite it at any time; a server
        calls this before trusting a ring for another batch.

        Raises:
            RingCorrupted: the header no longer matches what was attached.
        """
        mapping = self._mmap
        if mapping is None:
            raise NotConnected(f"ring {self.name} is closed")
        if mapping[:STATIC.size] == self._static_header:
            return  # unchanged since attach (one compare instead of a full validation)
        if validate_header(mapping) != self.capacity:
            raise RingCorrupted(f"ring {self.name}: capacity changed under us")
