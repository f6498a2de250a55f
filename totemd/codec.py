"""The Totem wire codec, version 1 (network byte order throughout).

Every packet starts with a 9-byte header::

    offset size field
    0      2    magic      0xC071
    2      1    version    1
    3      1    type       PacketType (0..5)
    4      1    flags      bit 0 ENCAPSULATED (MCAST only); other bits zero
    5      4    sender     node id, 1 .. 2**32-1

then, by type (RING = u32 rep + u64 ring seq)::

    MCAST         RING | u32 seq | u8 safe | payload (to the end);
                  encapsulated: payload is a whole non-encapsulated MCAST packet
    ORF_TOKEN     RING | u32 seq | u32 token_seq | u32 aru | u32 aru_addr |
                  u32 fcc | u32 backlog | u16 retrans_pending | u16 n | n x (RING | u32 seq)
    JOIN          u64 ring_seq | u16 n_proc | u16 n_failed | u32 proc[] | u32 failed[]
    COMMIT_TOKEN  RING | u32 token_seq | u16 memb_index | u16 n | u32 members[] |
                  memb_index x (RING | u32 aru | u32 high_seq | u32 high_delivered |
                  u32 safe_line | u8 received)
    MERGE_DETECT  RING
    TOKEN_HOLD_CANCEL RING

``decode`` validates every field and raises only ``DecodeError``; nothing in a
packet is trusted (sorted unique member lists, counts within bounds, no
trailing bytes).
"""

from __future__ import annotations

import struct

from totemd.srp.errors import DecodeError
from totemd.srp.messages import (CommitEntry, CommitToken, Join, Mcast, MergeDetect, OrfToken,
                                 Packet, PacketType, RingId, RtrEntry, TokenHoldCancel)
from totemd.srp.params import RTR_LIST_MAX

__all__ = ["MAGIC", "VERSION", "HEADER_SIZE", "MCAST_OVERHEAD", "MAX_NODES", "encode", "decode",
           "packet_type", "encode_mcast", "encode_token", "decode_token", "decode_ring_frame",
           "frame_prefix", "pack_frame_tail", "DecodeError"]

MAGIC = 0xC071
VERSION = 1
MAX_NODES = 384  # corosync's processor limit
FLAG_ENCAPSULATED = 0x01

_HEADER = struct.Struct("!HBBBI")
HEADER_SIZE = _HEADER.size
_RING = struct.Struct("!IQ")
_MCAST = struct.Struct("!HBBBIIQIB")  # header + ring + seq + safe in one call
MCAST_OVERHEAD = _MCAST.size
# The same layout with magic, version and type read as one u32 (decode_ring_frame).
_FRAME = struct.Struct("!IBIIQIB")
_FRAME_HEAD = (MAGIC << 16) | (VERSION << 8) | int(PacketType.MCAST)
_TOKEN = struct.Struct("!HBBBIIQIIIIIIHH")
_RTR = struct.Struct("!IQI")
_JOIN = struct.Struct("!HBBBIQHH")
_COMMIT = struct.Struct("!HBBBIIQIHH")
_ENTRY = struct.Struct("!IQIIIIB")
_RING_ONLY = struct.Struct("!HBBBIIQ")
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__
_MCAST_TYPE = int(PacketType.MCAST)  # a plain int compares faster than the enum
_MCAST_TAIL = struct.Struct("!IB")  # seq, safe: the end of the MCAST header (frame_prefix)
#: ``pack_frame_tail(seq, safe)``: the last bytes of a frame's header (see frame_prefix).
pack_frame_tail = _MCAST_TAIL.pack
_ORF_TOKEN_TYPE = int(PacketType.ORF_TOKEN)
_TOKEN_SIZE = _TOKEN.size
_RTR_SIZE = _RTR.size
_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF


def packet_type(data: bytes) -> PacketType | None:
    """The type of a packet from its header alone, or None if the header is bad.

    Cheap enough for the simulator's token-only loss filter.
    """
    if len(data) < HEADER_SIZE or data[0] != 0xC0 or data[1] != 0x71 or data[2] != VERSION:
        return None
    try:
        return PacketType(data[3])
    except ValueError:
        return None


def encode_mcast(message: Mcast) -> bytes:
    """Encode a frame (the hot path, so it skips the generic dispatch)."""
    sender, (rep, ring_seq), seq, safe, payload, inner = message
    if inner is not None:
        return _MCAST.pack(MAGIC, VERSION, _MCAST_TYPE, FLAG_ENCAPSULATED, sender, rep, ring_seq,
                           seq, 1 if safe else 0) + encode_mcast(inner)
    return _MCAST.pack(MAGIC, VERSION, _MCAST_TYPE, 0, sender, rep, ring_seq, seq,
                       1 if safe else 0) + payload


def frame_prefix(sender: int, ring_id: RingId) -> bytes:
    """The bytes every plain (not encapsulated) frame ``sender`` sends on
    ``ring_id`` starts with: ``frame_prefix(...) + pack_frame_tail(seq, safe)
    + payload`` is ``encode_mcast`` of that frame, without packing the
    fields that do not change per frame (the origination hot path).
    """
    return _MCAST.pack(MAGIC, VERSION, _MCAST_TYPE, 0, sender, ring_id[0], ring_id[1], 0,
                       0)[:-_MCAST_TAIL.size]


def encode(message: Packet) -> bytes:
    """Encode any Totem packet.

    Args:
        message: the packet value.

    Returns:
        The bytes to send.

    Raises:
        ValueError: a field does not fit its wire width (a local bug).
    """
    try:
        return _ENCODERS[type(message)](message)
    except struct.error as error:
        raise ValueError(f"cannot encode {type(message).__name__}: {error}") from error


def encode_token(t: OrfToken) -> bytes:
    """Encode a regular token (once per visit, so it skips the dispatch)."""
    sender, (rep, ring_seq), seq, token_seq, aru, aru_addr, fcc, backlog, retrans, rtr = t
    head = _TOKEN.pack(MAGIC, VERSION, _ORF_TOKEN_TYPE, 0, sender, rep, ring_seq, seq, token_seq,
                       aru, aru_addr, fcc, backlog, retrans, len(rtr))
    if not rtr:
        return head
    pack = _RTR.pack
    return head + b"".join([pack(ring_id[0], ring_id[1], entry_seq) for ring_id, entry_seq in rtr])


def _encode_join(j: Join) -> bytes:
    proc = sorted(j.proc)
    failed = sorted(j.failed)
    head = _JOIN.pack(MAGIC, VERSION, PacketType.JOIN, 0, j.sender, j.ring_seq, len(proc),
                      len(failed))
    ids = proc + failed
    return head + struct.pack(f"!{len(ids)}I", *ids)


def _encode_commit(c: CommitToken) -> bytes:
    head = _COMMIT.pack(MAGIC, VERSION, PacketType.COMMIT_TOKEN, 0, c.sender, c.ring_id[0],
                        c.ring_id[1], c.token_seq, c.memb_index, len(c.members))
    parts = [head, struct.pack(f"!{len(c.members)}I", *c.members)]
    for e in c.entries:
        parts.append(_ENTRY.pack(e.old_ring_id[0], e.old_ring_id[1], e.aru, e.high_seq,
                                 e.high_delivered, e.safe_line, 1 if e.received else 0))
    return b"".join(parts)


def _encode_ring_only(kind: PacketType):
    def encode_one(m: MergeDetect | TokenHoldCancel) -> bytes:
        return _RING_ONLY.pack(MAGIC, VERSION, kind, 0, m.sender, m.ring_id[0], m.ring_id[1])
    return encode_one


_ENCODERS = {
    Mcast: encode_mcast,
    OrfToken: encode_token,
    Join: _encode_join,
    CommitToken: _encode_commit,
    MergeDetect: _encode_ring_only(PacketType.MERGE_DETECT),
    TokenHoldCancel: _encode_ring_only(PacketType.TOKEN_HOLD_CANCEL),
}


def decode(data: bytes) -> Packet:
    """Decode and validate one packet.

    Args:
        data: the bytes received.

    Returns:
        The packet value.

    Raises:
        DecodeError: anything is wrong with it (the caller counts and drops).
    """
    if len(data) >= MCAST_OVERHEAD:
        # The hot paths, one unpack each: a frame, a token.
        kind = data[3]
        if kind == _MCAST_TYPE:
            return _decode_mcast(data, allow_inner=True)
        if kind == _ORF_TOKEN_TYPE:
            return decode_token(data)
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"packet of {len(data)} bytes is shorter than the header")
    magic, version, kind, flags, sender = _HEADER.unpack_from(data)
    _check_header(magic, version, sender)
    if kind == _MCAST_TYPE:
        return _decode_mcast(data, allow_inner=True)
    if flags:
        raise DecodeError(f"flags 0x{flags:02x} on a packet of type {kind}")
    try:
        decoder = _DECODERS[kind]
    except KeyError:
        raise DecodeError(f"unknown packet type {kind}") from None
    try:
        return decoder(data, sender)
    except struct.error as error:
        raise DecodeError(f"truncated {PacketType(kind).name}: {error}") from None


def _check_header(magic: int, version: int, sender: int) -> None:
    """The checks every packet's common header gets."""
    if magic != MAGIC:
        raise DecodeError(f"bad magic 0x{magic:04x}")
    if version != VERSION:
        raise DecodeError(f"unsupported version {version}")
    if sender == 0:
        raise DecodeError("sender node id 0")


def _decode_mcast(data: bytes, allow_inner: bool) -> Mcast:
    if len(data) < MCAST_OVERHEAD:
        raise DecodeError(f"MCAST of {len(data)} bytes is shorter than its header")
    magic, version, _k, flags, sender, rep, ring_seq, seq, safe = _MCAST.unpack_from(data)
    _check_header(magic, version, sender)
    if flags & ~FLAG_ENCAPSULATED:
        raise DecodeError(f"unknown MCAST flags 0x{flags:02x}")
    if safe > 1:
        raise DecodeError(f"safe flag {safe} is not 0 or 1")
    if rep == 0:
        raise DecodeError("ring representative 0")
    ring_id = RingId(rep, ring_seq)
    if flags & FLAG_ENCAPSULATED:
        if not allow_inner:
            raise DecodeError("nested encapsulation")
        body = data[MCAST_OVERHEAD:]
        if len(body) < MCAST_OVERHEAD or packet_type(body) != PacketType.MCAST:
            raise DecodeError("encapsulated MCAST does not carry an MCAST")
        inner = _decode_mcast(body, allow_inner=False)
        return Mcast(sender, ring_id, seq, safe == 1, b"", inner)
    # Positional: the receive hot path (fields: sender, ring_id, seq, safe, payload).
    return Mcast(sender, ring_id, seq, safe == 1, data[MCAST_OVERHEAD:])


def decode_ring_frame(data: bytes, ring_id: RingId, me: int) -> Mcast | None:
    """The receive hot path: ``data`` as a plain frame of ring ``ring_id``
    from another node, or None for anything else.

    None is not an error: the caller hands such a packet to ``decode``, which
    validates it in full (a token, an encapsulated or foreign-ring frame, our
    own frame looped back, garbage). A frame returned here passed the same
    checks ``decode`` makes. It shares ``ring_id`` (no new RingId per frame).

    Args:
        data: the bytes received.
        ring_id: the ring the node is running.
        me: this node's id.
    """
    if len(data) < MCAST_OVERHEAD or data[3] != _MCAST_TYPE:  # (a token: no unpack)
        return None
    head, flags, sender, rep, ring_seq, seq, safe = _FRAME.unpack_from(data)
    # head is magic, version and type at once; rep == ring_id's rep also
    # rules out rep 0; sender 0 and flags go to decode.
    if (head != _FRAME_HEAD or flags or safe > 1 or sender == me or not sender
            or rep != ring_id[0] or ring_seq != ring_id[1]):
        return None
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (once per frame).
    return _new_tuple(Mcast, (sender, ring_id, seq, safe == 1, data[MCAST_OVERHEAD:], None))


def _check_ids(ids: tuple[int, ...], what: str, strictly_sorted: bool) -> None:
    if 0 in ids:
        raise DecodeError(f"node id 0 in {what}")
    if strictly_sorted and any(a >= b for a, b in zip(ids, ids[1:])):
        raise DecodeError(f"{what} is not sorted without duplicates")


def decode_token(data: bytes, ring_id: RingId | None = None) -> OrfToken:
    """Decode and validate a packet whose type byte says ORF_TOKEN: what
    ``decode`` returns or raises for it, in one unpack for a whole token.

    Args:
        data: the bytes received (``data[3]`` is the ORF_TOKEN type).
        ring_id: the ring the node is running, if any: a token of that ring
            shares it (no new RingId per visit).

    Raises:
        DecodeError: anything is wrong with it.
    """
    if len(data) < _TOKEN_SIZE:
        return _decode_short_token(data)
    (magic, version, kind, flags, sender, rep, ring_seq, seq, token_seq, aru, aru_addr, fcc,
     backlog, retrans, count) = _TOKEN.unpack_from(data)
    if magic != MAGIC or version != VERSION or not sender:
        _check_header(magic, version, sender)
    if kind != _ORF_TOKEN_TYPE:
        raise DecodeError(f"packet of type {kind} is not a token")
    if flags:
        raise DecodeError(f"flags 0x{flags:02x} on a packet of type {kind}")
    if ring_id is None or rep != ring_id[0] or ring_seq != ring_id[1]:
        if rep == 0:
            raise DecodeError("ring representative 0")
        ring_id = _new_tuple(RingId, (rep, ring_seq))
    if retrans > MAX_NODES:
        raise DecodeError(f"retrans_pending {retrans} exceeds {MAX_NODES} nodes")
    if count > RTR_LIST_MAX:
        raise DecodeError(f"rtr list of {count} entries exceeds {RTR_LIST_MAX}")
    if len(data) != _TOKEN_SIZE + count * _RTR_SIZE:
        raise DecodeError(f"token length {len(data)} does not match {count} rtr entries")
    rtr = tuple([_new_tuple(RtrEntry, (_new_tuple(RingId, (r, s)), q))
                 for r, s, q in _RTR.iter_unpack(data[_TOKEN_SIZE:])]) if count else ()
    # Positional, without the NamedTuples' Python-level __new__ (once per visit).
    return _new_tuple(OrfToken, (sender, ring_id, seq, token_seq, aru, aru_addr, fcc, backlog,
                                 retrans, rtr))


def _decode_short_token(data: bytes) -> OrfToken:
    """A token shorter than its fixed part: the header's errors first, as
    for any packet, then the truncation."""
    if len(data) < HEADER_SIZE:
        raise DecodeError(f"packet of {len(data)} bytes is shorter than the header")
    magic, version, kind, flags, sender = _HEADER.unpack_from(data)
    _check_header(magic, version, sender)
    if flags:
        raise DecodeError(f"flags 0x{flags:02x} on a packet of type {kind}")
    raise DecodeError(f"truncated ORF_TOKEN: {len(data)} bytes, the token needs {_TOKEN_SIZE}")


def _decode_join(data: bytes, sender: int) -> Join:
    _m, _v, _k, _f, _s, ring_seq, n_proc, n_failed = _JOIN.unpack_from(data)
    if n_proc > MAX_NODES or n_failed > MAX_NODES:
        raise DecodeError(f"join lists of {n_proc}/{n_failed} entries exceed {MAX_NODES}")
    if len(data) != _JOIN.size + 4 * (n_proc + n_failed):
        raise DecodeError(f"join length {len(data)} does not match its lists")
    ids = struct.unpack_from(f"!{n_proc + n_failed}I", data, _JOIN.size)
    proc, failed = ids[:n_proc], ids[n_proc:]
    _check_ids(proc, "join proc list", True)
    _check_ids(failed, "join failed list", True)
    if sender not in proc and sender not in failed:
        raise DecodeError("join sender is neither in its proc nor its failed list")
    return Join(sender=sender, ring_seq=ring_seq, proc=frozenset(proc), failed=frozenset(failed))


def _decode_commit(data: bytes, sender: int) -> CommitToken:
    fields = _COMMIT.unpack_from(data)
    rep, ring_seq, token_seq, memb_index, count = fields[5:]
    if count == 0 or count > MAX_NODES:
        raise DecodeError(f"commit token with {count} members")
    if memb_index > count:
        raise DecodeError(f"commit memb_index {memb_index} beyond {count} members")
    if len(data) != _COMMIT.size + 4 * count + memb_index * _ENTRY.size:
        raise DecodeError(f"commit token length {len(data)} does not match its counts")
    members = struct.unpack_from(f"!{count}I", data, _COMMIT.size)
    _check_ids(members, "commit member list", True)
    if rep not in members:
        raise DecodeError("commit ring representative is not a member")
    entries = []
    for old_rep, old_seq, aru, high, delivered, safe_line, received in _ENTRY.iter_unpack(
            data[_COMMIT.size + 4 * count:]):
        if received > 1 or old_rep == 0:
            raise DecodeError("bad commit token entry")
        entries.append(CommitEntry(RingId(old_rep, old_seq), aru, high, delivered,
                                   bool(received), safe_line))
    return CommitToken(sender=sender, ring_id=RingId(rep, ring_seq), token_seq=token_seq,
                       memb_index=memb_index, members=members, entries=tuple(entries))


def _decode_ring_only(kind: type[MergeDetect] | type[TokenHoldCancel]):
    def decode_one(data: bytes, sender: int) -> MergeDetect | TokenHoldCancel:
        if len(data) != _RING_ONLY.size:
            raise DecodeError(f"{kind.__name__} of {len(data)} bytes, expected {_RING_ONLY.size}")
        rep, ring_seq = _RING_ONLY.unpack_from(data)[5:]
        if rep == 0:
            raise DecodeError("ring representative 0")
        return kind(sender=sender, ring_id=RingId(rep, ring_seq))
    return decode_one


_DECODERS = {
    PacketType.ORF_TOKEN: lambda data, _sender: decode_token(data),
    PacketType.JOIN: _decode_join,
    PacketType.COMMIT_TOKEN: _decode_commit,
    PacketType.MERGE_DETECT: _decode_ring_only(MergeDetect),
    PacketType.TOKEN_HOLD_CANCEL: _decode_ring_only(TokenHoldCancel),
}
