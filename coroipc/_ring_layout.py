"""The byte layout of a coroipc ring segment, and the constants that implement it.

Byte layout of a segment (all integers little-endian; the module refuses to
load on a big-endian host, so the native 8-byte loads and stores used for the
shared words below are also little-endian)::

    header, 4096 bytes (one page, so the data area is page aligned)
      0  u32  magic            0x474E5243 (b"CRNG")
      4  u16  layout version   1
      6  u16  header size      4096
      8  u64  capacity         bytes in the data area, multiple of 64, >= 4096
     16  u32  creator pid
     20  u32  header check     magic ^ version ^ capacity (low 32 bits) ^ 0x5A5A5A5A
      -- writer-owned words (only the writer stores them), own cache line --
     64  u64  write position   bytes ever written (monotonic; offset = pos % capacity)
     72  u64  writer pid       set when a handle first writes
     80  u64  writer flags     bit 0 SLEEPING (waits for space), bit 1 CLOSED
     88  u64  writer epoch     +1 each time the writer goes to sleep
     96  u64  writer wants     free bytes the sleeping writer waits for (the
                               reader rings it only once that much is free)
      -- reader-owned words, own cache line --
    128  u64  read position    bytes ever consumed (read <= write <= read + capacity)
    136  u64  reader pid
    144  u64  reader flags     bit 0 SLEEPING (waits for data), bit 1 CLOSED
    152  u64  reader epoch
    data area, capacity bytes, starting at offset 4096

    frame (starts 16-byte aligned in the data area; never crosses its end)
      0  u32  kind             0x41544144 DATA or 0x44444150 PAD
      4  u32  count            messages in the frame (0 for PAD)
      8  u32  payload bytes    sum of the message lengths
     12  u32  check            kind ^ count ^ payload bytes ^ 0xC0C0C0C0
     16  u32  length[count]    padded with zeros to a multiple of 8 bytes
      .   payloads back to back (the first is 8-byte aligned)
      .   zero padding to a multiple of 16 bytes
    A PAD frame fills the rest of the data area when the next frame does not
    fit before its end; the reader skips to offset 0.

Python's mmap cannot map a segment twice back to back, so a frame never wraps:
a frame is at most capacity / 2, which guarantees that it fits either before
the end or, after a PAD, at the start. A batch write puts many messages in one
frame (one header, one lengths array, one copy), which is where the
throughput comes from; a single write is a frame of one message.

Publication: the writer fills a frame, then stores the write position; the
reader reads the write position, then the frame. Positions are 8-byte aligned
words stored with one native store (memoryview 'Q' items), so a reader never
sees a torn position. Wake-ups: see :mod:`coroipc._doorbell`.

Both sides check this layout: the creator writes the header, every attacher
validates magic, version, header size, check word and capacity against the
segment size (:func:`validate_header`), and the server re-checks it before
each batch of requests.
"""

from __future__ import annotations

import struct
import sys

from coroipc.errors import RingCorrupted

__all__ = [
    "MAGIC", "LAYOUT_VERSION", "HEADER_SIZE", "HEADER_CHECK", "STATIC", "W_POS", "W_PID", "W_FLAGS", "W_EPOCH", "W_WANT",
    "R_POS", "R_PID", "R_FLAGS", "R_EPOCH", "SLEEPING", "CLOSED", "KIND_DATA", "KIND_PAD", "FRAME_CHECK", "FRAME",
    "FRAME_ONE", "ONE_OVERHEAD", "MIN_CAPACITY", "frame_size", "validate_header",
]

if sys.byteorder != "little":  # pragma: no cover - the layout promises little-endian words
    raise ImportError("coroipc rings need a little-endian host")

MAGIC = 0x474E5243
LAYOUT_VERSION = 1
HEADER_SIZE = 4096
HEADER_CHECK = 0x5A5A5A5A
STATIC = struct.Struct("<IHHQII")
# Indices of the shared u64 words (byte offset / 8).
W_POS, W_PID, W_FLAGS, W_EPOCH, W_WANT = 8, 9, 10, 11, 12
R_POS, R_PID, R_FLAGS, R_EPOCH = 16, 17, 18, 19
SLEEPING = 1
CLOSED = 2

KIND_DATA = 0x41544144
KIND_PAD = 0x44444150
FRAME_CHECK = 0xC0C0C0C0
FRAME = struct.Struct("<IIII")
FRAME_ONE = struct.Struct("<IIIII")  # header plus the single length
ONE_OVERHEAD = 24  # header 16 + one length padded to 8
MIN_CAPACITY = 4096


def frame_size(count: int, payload_bytes: int) -> int:
    """Bytes a DATA frame of ``count`` messages totalling ``payload_bytes`` takes."""
    return (16 + ((4 * count + 7) & ~7) + payload_bytes + 15) & ~15


def validate_header(mapping) -> int:
    """Check a mapped segment's static header; returns its capacity.

    Raises:
        RingCorrupted: too small, bad magic, other layout version, bad check
        word, or a capacity that does not match the segment's size.
    """
    if len(mapping) < HEADER_SIZE + MIN_CAPACITY:
        raise RingCorrupted(f"segment of {len(mapping)} bytes is too small to be a ring")
    magic, version, header_size, capacity, _pid, check = STATIC.unpack_from(mapping, 0)
    if magic != MAGIC:
        raise RingCorrupted(f"bad ring magic 0x{magic:08x}")
    if version != LAYOUT_VERSION or header_size != HEADER_SIZE:
        raise RingCorrupted(f"unsupported ring layout version {version} (header {header_size} bytes)")
    if check != MAGIC ^ version ^ (capacity & 0xFFFFFFFF) ^ HEADER_CHECK:
        raise RingCorrupted("ring header check word does not match")
    if capacity % 64 or capacity < MIN_CAPACITY or HEADER_SIZE + capacity != len(mapping):
        raise RingCorrupted(f"ring capacity {capacity} does not match a {len(mapping)}-byte segment")
    return capacity
