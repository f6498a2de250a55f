"""Link-level fragmentation: what knet does for corosync 3 under its default netmtu.

With ``transport: knet`` corosync lets Totem pack frames of up to netmtu
65536 bytes and has knet cut each one into datagrams that fit the link's MTU,
joining them again on the far side; a frame with a lost piece is lost whole,
and Totem's retransmission requests it again (knet itself never re-sends).
A visit's ``max_messages`` frames then carry ~45 times what they carry at
netmtu 1500. totemd's knet mode does the same over its udpu sockets:
``split`` cuts a frame longer than a datagram may be, ``Reassembler`` joins
the pieces. Frames that fit (every token, small frames) travel whole and
unchanged, so nothing about them differs from udpu.

A piece is a datagram of its own kind, versioned like every Totem packet:
the Totem header (magic, version, type ``FRAGMENT_TYPE``, flags 0, sender)
so that the transport's checks and udp's peer learning read it as any
packet, then the frame's serial (per sender, wrapping), the piece's index
and the number of pieces, all network order, then the bytes. All pieces of
a frame but the last are the same length, so a frame leaves in one GSO send
(``totemd.gso.plan_runs`` makes it one run).

The Totem core never sees a piece: the transport hands it whole frames. What
is malformed (bad header, index out of range, a piece count that disagrees
with earlier pieces, a frame that would exceed ``FRAME_MAX_BYTES``) is
counted and dropped, as are duplicates of a piece of a frame still being
joined (a copy that comes after its frame was joined starts a partial frame
that never completes: Totem drops the duplicate frame it would have been);
partial frames are bounded in number (``PARTIAL_MAX``, the oldest evicted
and counted): a sender that dies mid-frame or a lost piece costs at most
that much memory.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

from totemd.codec import MAGIC, VERSION

__all__ = ["FRAGMENT_TYPE", "HEADER_SIZE", "FRAME_MAX_BYTES", "PARTIAL_MAX", "PIECES_MAX",
           "FragmentStats", "Reassembler", "Splitter", "split"]

#: The Totem type byte of a piece (the core's types are 0-5).
FRAGMENT_TYPE = 0x10
_HEADER = struct.Struct("!HBBBIIHH")  # magic, version, type, flags, sender, serial, index, count
HEADER_SIZE = _HEADER.size
#: Largest frame joined: corosync's knet packet bound (KNET_MAX_PACKET_SIZE).
FRAME_MAX_BYTES = 65536
#: Most pieces of one frame (a 64 KiB frame over a 576-byte IPv4 link needs ~120).
PIECES_MAX = 1024
#: Frames being joined at once, over all senders; beyond it the oldest goes.
PARTIAL_MAX = 64
_SERIAL_MASK = 0xFFFFFFFF


def split(frame: bytes, sender: int, serial: int, piece_bytes: int) -> list[bytes]:
    """Cut ``frame`` into pieces of at most ``piece_bytes`` payload each.

    Args:
        frame: a Totem frame longer than a datagram may be.
        sender: our node id (in each piece's header).
        serial: this frame's serial (the caller's counter, masked to u32).
        piece_bytes: payload per piece: the datagram bound minus HEADER_SIZE.

    Returns:
        The pieces in order; all but the last are ``HEADER_SIZE + piece_bytes`` long.

    Raises:
        ValueError: piece_bytes < 1, or more than PIECES_MAX pieces needed.
    """
    if piece_bytes < 1:
        raise ValueError(f"piece size {piece_bytes} must be positive")
    length = len(frame)
    count = -(-length // piece_bytes)
    if count > PIECES_MAX or length > FRAME_MAX_BYTES:
        raise ValueError(f"a frame of {length} bytes in pieces of {piece_bytes} does not fit "
                         f"{PIECES_MAX} pieces of at most {FRAME_MAX_BYTES} bytes in all")
    pack = _HEADER.pack
    serial &= _SERIAL_MASK
    view = memoryview(frame)
    return [pack(MAGIC, VERSION, FRAGMENT_TYPE, 0, sender, serial, index, count)
            + view[index * piece_bytes:(index + 1) * piece_bytes]
            for index in range(count)]


@dataclass(slots=True)
class FragmentStats:
    """Counters of link fragmentation (``TransportStats`` extends them:
    published as ``stats.transport.*``)."""

    frames_split: int = 0
    fragments_sent: int = 0
    fragments_received: int = 0
    frames_joined: int = 0
    fragments_malformed: int = 0
    fragments_duplicate: int = 0
    fragment_partials_evicted: int = 0


class _Partial:
    """The pieces of one frame received so far."""

    __slots__ = ("count", "pieces", "have", "size")

    def __init__(self, count: int) -> None:
        self.count = count
        self.pieces: list[bytes | None] = [None] * count
        self.have = 0
        self.size = 0


class Reassembler:
    """Joins pieces back into frames, per (source address, sender, serial).

    ``feed`` takes every datagram a read returned, in order: datagrams that
    are not pieces pass through in place; a piece that completes its frame
    puts the frame there; other pieces are held (bounded, see the module
    docstring).
    """

    __slots__ = ("stats", "_partials", "_partial_max")

    def __init__(self, stats: FragmentStats | None = None, partial_max: int = PARTIAL_MAX) -> None:
        if partial_max < 1:
            raise ValueError(f"partial_max ({partial_max}) must be at least 1")
        self.stats = stats if stats is not None else FragmentStats()
        self._partials: dict[tuple[str, int, int], _Partial] = {}
        self._partial_max = partial_max

    @property
    def partial_frames(self) -> int:
        """Frames with some but not all pieces held."""
        return len(self._partials)

    def feed(self, datagrams: list[bytes], source: str, out: list[bytes]) -> None:
        """Append to ``out`` what ``datagrams`` (from ``source``) yield, in order."""
        append = out.append
        for data in datagrams:
            if len(data) > 3 and data[3] == FRAGMENT_TYPE:
                frame = self._piece(data, source)
                if frame is not None:
                    append(frame)
            else:
                append(data)

    def _piece(self, data: bytes, source: str) -> bytes | None:
        stats = self.stats
        stats.fragments_received += 1
        if len(data) <= HEADER_SIZE:
            stats.fragments_malformed += 1
            return None
        magic, version, _kind, flags, sender, serial, index, count = _HEADER.unpack_from(data)
        if (magic != MAGIC or version != VERSION or flags or not sender or not 1 <= count <= PIECES_MAX
                or index >= count):
            stats.fragments_malformed += 1
            return None
        payload = data[HEADER_SIZE:]
        if count == 1:
            stats.frames_joined += 1
            return payload
        key = (source, sender, serial)
        partials = self._partials
        partial = partials.get(key)
        if partial is None:
            if len(payload) > FRAME_MAX_BYTES:
                stats.fragments_malformed += 1
                return None
            if len(partials) >= self._partial_max:
                # The oldest partial frame is the one least likely to complete.
                del partials[next(iter(partials))]
                stats.fragment_partials_evicted += 1
            partial = partials[key] = _Partial(count)
        elif partial.count != count:
            stats.fragments_malformed += 1
            return None
        if partial.pieces[index] is not None:
            stats.fragments_duplicate += 1
            return None
        size = partial.size + len(payload)
        if size > FRAME_MAX_BYTES:
            del partials[key]
            stats.fragments_malformed += 1
            return None
        partial.pieces[index] = payload
        partial.size = size
        partial.have += 1
        if partial.have < count:
            return None
        del partials[key]
        stats.frames_joined += 1
        return b"".join(partial.pieces)  # type: ignore[arg-type]


class Splitter:
    """The sending side: cuts what is longer than ``datagram_bytes``, numbering
    frames with this node's serial counter (from a random start, or ``serial``)."""

    __slots__ = ("sender", "datagram_bytes", "piece_bytes", "stats", "_serial")

    def __init__(self, sender: int, datagram_bytes: int, stats: FragmentStats | None = None,
                 serial: int | None = None) -> None:
        if datagram_bytes <= HEADER_SIZE:
            raise ValueError(f"a datagram of {datagram_bytes} bytes leaves no room for a piece")
        self.sender = sender
        self.datagram_bytes = datagram_bytes
        self.piece_bytes = datagram_bytes - HEADER_SIZE
        self.stats = stats if stats is not None else FragmentStats()
        # A random start (unless given): a restarted node must not number its
        # frames as its last incarnation did, or a partial frame left from
        # then (a lost piece) would take pieces of a new frame into it.
        self._serial = (random.getrandbits(32) if serial is None else serial) & _SERIAL_MASK

    def needed(self, frames: list[bytes] | tuple[bytes, ...]) -> bool:
        """True if any of ``frames`` is too long for one datagram."""
        limit = self.datagram_bytes
        for data in frames:
            if len(data) > limit:
                return True
        return False

    def expand(self, frames: list[bytes] | tuple[bytes, ...]) -> list[bytes]:
        """``frames`` as datagrams, in order: long ones as their pieces."""
        limit = self.datagram_bytes
        out: list[bytes] = []
        stats = self.stats
        for data in frames:
            if len(data) <= limit:
                out.append(data)
                continue
            serial = (self._serial + 1) & _SERIAL_MASK
            pieces = split(data, self.sender, serial, self.piece_bytes)
            self._serial = serial
            stats.frames_split += 1
            stats.fragments_sent += len(pieces)
            out.extend(pieces)
        return out
