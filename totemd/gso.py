"""Linux UDP segmentation offload for the transport: planning GSO sends and
cutting GRO reads back into datagrams (pure functions), and probing the
kernel for both.

- Sending: a run of frames of one length, optionally closed by one shorter
  frame, goes in ONE ``sendmsg`` with the ``UDP_SEGMENT`` control message
  (the frames as its iovec, the length as the segment size): the kernel cuts
  it into datagrams of exactly those frames, each on the wire as if sent
  alone (never larger than netmtu). A run holds at most
  ``GSO_MAX_SEGMENTS`` frames and ``GSO_MAX_BYTES`` bytes (see their
  comments). ``plan_batches`` cuts a visit's frames into such runs.
- Receiving: a socket with ``UDP_GRO`` on is handed a GSO batch (or
  datagrams a NIC coalesced) as one buffer with a control message giving the
  segment size; ``split_coalesced`` cuts it back into the datagrams, or
  refuses a buffer that cannot be cut safely (bad or missing segment size,
  truncated, too many segments).
- Probing: ``gso_supported`` (Linux 4.18) and ``enable_gro`` (Linux 5.0).

Nothing here knows Totem; ``totemd.transport`` uses it and re-exports the
names its importers use.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Sequence

__all__ = ["GRO_MAX_SEGMENTS", "GSO_MAX_BYTES", "GSO_MAX_SEGMENTS", "SOL_UDP", "UDP_GRO", "UDP_SEGMENT",
           "enable_gro", "gso_supported", "plan_batches", "plan_runs", "segment_ancillary", "split_coalesced",
           "token_joins"]

# Linux UDP segmentation offload (linux/udp.h); Python 3.11 names neither option.
SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
# Frames per GSO send: the kernel's UDP_MAX_SEGMENTS is 64 from 4.18 (128
# in recent kernels); 64 works on every kernel with GSO.
GSO_MAX_SEGMENTS = 64
# Payload bytes per GSO send. The kernel refuses more than 65507 (IPv4:
# 65535 minus IP and UDP headers; EMSGSIZE), and on loopback a GSO packet
# above 65493 (IPv4) / 65473 (IPv6) bytes reaches a GRO socket cut into
# datagrams again (measured on 6.18): the IPv6 bound keeps every batch one
# read on both families.
GSO_MAX_BYTES = 65473
# A coalesced read with more segments than this is not something the kernel
# makes (at most UDP_MAX_SEGMENTS per GSO packet, 64 per NIC GRO batch).
GRO_MAX_SEGMENTS = 128
GRO_ANCILLARY_BYTES = socket.CMSG_SPACE(4)  # one int: the segment size
# A GSO send refused with one of these means "not here": send one by one.
GSO_UNSUPPORTED_ERRNOS = frozenset((errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP,
                                    errno.EMSGSIZE))
TRUNCATED_FLAGS = getattr(socket, "MSG_TRUNC", 0x20) | getattr(socket, "MSG_CTRUNC", 0x08)
_SEGMENT_SIZE = struct.Struct("=H")  # UDP_SEGMENT's value: a native u16
_GRO_SEGMENT_SIZE = struct.Struct("=i")  # UDP_GRO's value on a read: a native int

# Built once per size and reused (a sendmsg only reads them): the control
# message of a GSO send of segment_size, and the struct that cuts a
# coalesced read of so many whole segments in one C call.
_SEGMENT_ANCILLARY: dict[int, list[tuple[int, int, bytes]]] = {}
_CUTTERS: dict[tuple[int, int], struct.Struct] = {}
_CACHE_LIMIT = 4096  # sizes seen; bounded against a peer that varies them


def segment_ancillary(segment_size: int) -> list[tuple[int, int, bytes]]:
    """The ``sendmsg`` control data of a GSO send cut at segment_size bytes.

    The same list object is returned for a size every time: callers pass it
    to ``sendmsg`` and never change it.

    Raises:
        struct.error: segment_size is not 0..65535.
    """
    ancillary = _SEGMENT_ANCILLARY.get(segment_size)
    if ancillary is None:
        ancillary = [(SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(segment_size))]
        if len(_SEGMENT_ANCILLARY) < _CACHE_LIMIT:
            _SEGMENT_ANCILLARY[segment_size] = ancillary
    return ancillary


def plan_batches(frames: Sequence[bytes], max_segments: int = GSO_MAX_SEGMENTS,
                 max_bytes: int = GSO_MAX_BYTES) -> list[tuple[int, int, int]]:
    """Cut a list of frames into GSO sends, in order.

    A batch is a run of frames of one length, optionally closed by one
    shorter (non-empty) frame, of at most max_segments frames and max_bytes
    bytes; the kernel cuts it back into exactly those frames.

    Args:
        frames: the frames to send, in order.
        max_segments, max_bytes: limits of one batch.

    Returns:
        (start, stop, segment size) per batch, covering frames in order; a
        batch with stop - start == 1 is a frame to send alone.
    """
    return [(start, stop, size) for start, stop, size, _bytes in plan_runs(frames, max_segments, max_bytes)]


def plan_runs(frames: Sequence[bytes], max_segments: int = GSO_MAX_SEGMENTS,
              max_bytes: int = GSO_MAX_BYTES) -> list[tuple[int, int, int, int]]:
    """``plan_batches`` with each batch's byte count as a fourth field (the
    sender needs it for its counters and ``token_joins``)."""
    count = len(frames)
    if not count:
        return []
    lengths = list(map(len, frames))
    size = lengths[0]
    # The usual visit (full frames, maybe a shorter last one) is one batch:
    # decided by C-level list operations instead of the loop below.
    if 1 < count <= max_segments and 0 < size and size * count <= max_bytes:
        same = lengths.count(size)
        if same == count or (same == count - 1 and 0 < lengths[-1] < size):
            return [(0, count, size, sum(lengths))]
    runs: list[tuple[int, int, int, int]] = []
    start = 0
    while start < count:
        size = lengths[start]
        stop = start + 1
        total = size
        if 0 < size <= max_bytes:
            limit = min(count, start + max_segments)
            while stop < limit:
                length = lengths[stop]
                if length > size or length == 0 or total + length > max_bytes:
                    break
                total += length
                stop += 1
                if length < size:
                    break  # only the last segment may be shorter
        runs.append((start, stop, size, total))
        start = stop
    return runs


def token_joins(frames: Sequence[bytes], last_run: tuple[int, int, int, int], token_bytes: int,
                max_segments: int = GSO_MAX_SEGMENTS, max_bytes: int = GSO_MAX_BYTES) -> bool:
    """True if a datagram of token_bytes may close ``last_run``, the last
    run ``plan_runs(frames)`` made: then ``plan_runs(frames + [it])`` is the
    same plan with it in that run, else the same plan and it alone (the
    planner is greedy from the left: a datagram added at the end can only
    extend the last run)."""
    start, stop, size, run_bytes = last_run
    return (0 < token_bytes <= size <= max_bytes and stop - start < max_segments
            and len(frames[stop - 1]) == size  # not closed by a shorter frame already
            and run_bytes + token_bytes <= max_bytes)


def split_coalesced(data: bytes, ancillary: Sequence[tuple[int, int, bytes]], flags: int) -> list[bytes] | None:
    """Cut one read of a UDP_GRO socket back into the datagrams it holds.

    Args:
        data: the bytes read.
        ancillary: the read's control messages; (SOL_UDP, UDP_GRO, native
            int) gives the segment size of a coalesced read.
        flags: the read's message flags.

    Returns:
        The datagrams in order (one when nothing was coalesced), or None if
        the read cannot be cut safely: truncated data or control data, a
        segment size that is not one positive native int, or more than
        GRO_MAX_SEGMENTS segments.
    """
    if flags & TRUNCATED_FLAGS:
        return None
    segment = 0
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO:
            if len(value) != _GRO_SEGMENT_SIZE.size:
                return None
            (segment,) = _GRO_SEGMENT_SIZE.unpack(value)
            if segment <= 0:
                return None
    length = len(data)
    if not segment or segment >= length:
        return [data]
    whole, rest = divmod(length, segment)
    if whole + (rest > 0) > GRO_MAX_SEGMENTS:
        return None
    # One struct of ``whole`` fields of segment bytes cuts them in C (about
    # half the cost of slicing in a comprehension).
    cutter = _CUTTERS.get((segment, whole))
    if cutter is None:
        cutter = struct.Struct(f"{segment}s" * whole)
        if len(_CUTTERS) < _CACHE_LIMIT:
            _CUTTERS[segment, whole] = cutter
    pieces = list(cutter.unpack_from(data))
    if rest:
        pieces.append(data[length - rest:])
    return pieces


def gso_supported(sock: socket.socket) -> bool:
    """True if the kernel knows UDP_SEGMENT (Linux 4.18 and later)."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def enable_gro(sock: socket.socket) -> bool:
    """Ask for coalesced reads (Linux 5.0 and later); False if refused."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True
