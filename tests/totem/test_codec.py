"""The Totem wire codec: round trips, and garbage is counted and dropped."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from totemd import codec
from totemd.srp import DecodeError, SrpCore, TotemParams
from totemd.srp.messages import (CommitEntry, CommitToken, Join, Mcast, MergeDetect, OrfToken,
                                 RingId, RtrEntry, TokenHoldCancel)
from totemd.srp.params import RTR_LIST_MAX, TOTEM_HEADER_BYTES

node_ids = st.integers(min_value=1, max_value=0xFFFFFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
ring_ids = st.builds(RingId, node_ids, st.integers(min_value=0, max_value=2**64 - 1))


@st.composite
def mcasts(draw, inner_allowed=True):
    inner = draw(mcasts(inner_allowed=False)) if inner_allowed and draw(st.booleans()) else None
    return Mcast(sender=draw(node_ids), ring_id=draw(ring_ids), seq=draw(u32),
                 safe=draw(st.booleans()),
                 payload=b"" if inner is not None else draw(st.binary(max_size=300)), inner=inner)


tokens = st.builds(
    OrfToken, sender=node_ids, ring_id=ring_ids, seq=u32, token_seq=u32, aru=u32, aru_addr=u32,
    fcc=u32, backlog=u32, retrans_pending=st.integers(0, 384),
    rtr=st.lists(st.builds(RtrEntry, ring_ids, u32), max_size=RTR_LIST_MAX).map(tuple))


@st.composite
def joins(draw):
    sender = draw(node_ids)
    proc = draw(st.frozensets(node_ids, max_size=20)) | {sender}
    failed = draw(st.frozensets(node_ids, max_size=20)) - proc
    return Join(sender=sender, ring_seq=draw(st.integers(0, 2**64 - 1)), proc=proc, failed=failed)


@st.composite
def commit_tokens(draw):
    members = tuple(sorted(draw(st.sets(node_ids, min_size=1, max_size=16))))
    index = draw(st.integers(0, len(members)))
    entries = tuple(CommitEntry(draw(ring_ids), draw(u32), draw(u32), draw(u32), draw(st.booleans()),
                                draw(u32)) for _ in range(index))
    return CommitToken(sender=draw(node_ids), ring_id=RingId(members[0], draw(u32)),
                       token_seq=draw(u32), memb_index=index, members=members, entries=entries)


packets = st.one_of(
    mcasts(), tokens, joins(), commit_tokens(),
    st.builds(MergeDetect, sender=node_ids, ring_id=ring_ids),
    st.builds(TokenHoldCancel, sender=node_ids, ring_id=ring_ids))


@given(packets)
@settings(max_examples=400, deadline=None)
def test_every_packet_round_trips(packet):
    data = codec.encode(packet)
    assert codec.decode(data) == packet
    assert codec.packet_type(data) is not None


@given(mcasts(inner_allowed=False))
@settings(max_examples=200, deadline=None)
def test_frame_prefix_and_tail_make_the_encoded_frame(frame):
    """The origination hot path packs a frame as prefix + tail + payload."""
    data = (codec.frame_prefix(frame.sender, frame.ring_id)
            + codec.pack_frame_tail(frame.seq, frame.safe) + frame.payload)
    assert data == codec.encode_mcast(frame)
    assert codec.decode(data) == frame


@given(tokens, ring_ids)
@settings(max_examples=200, deadline=None)
def test_decode_token_shares_the_running_ring_id(token, other):
    data = codec.encode(token)
    running = RingId(token.ring_id.rep, token.ring_id.seq)  # equal, not the same object
    shared = codec.decode_token(data, running)
    assert shared == token and shared.ring_id is running
    assert codec.decode_token(data) == token
    decoded = codec.decode_token(data, other)
    assert decoded == token and (decoded.ring_id is other) == (other == token.ring_id)


def test_mcast_header_fits_the_room_left_by_params():
    # frame_payload_max leaves room for two headers (a recovery frame wraps one).
    assert codec.MCAST_OVERHEAD <= TOTEM_HEADER_BYTES


@given(packets, st.data())
@settings(max_examples=300, deadline=None)
def test_truncated_packet_raises_decode_error(packet, data):
    encoded = codec.encode(packet)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    if isinstance(packet, Mcast):
        headers = 1 if packet.inner is None else 2
        if cut >= headers * codec.MCAST_OVERHEAD:
            return  # a shorter payload is still a valid frame
    with pytest.raises(DecodeError):
        codec.decode(encoded[:cut])


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_random_bytes_raise_only_decode_error(blob):
    try:
        codec.decode(blob)
    except DecodeError:
        pass


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x00\x00" + b[2:], r"^bad magic 0x0000$"),
    (lambda b: b[:2] + b"\x09" + b[3:], r"^unsupported version 9$"),
    (lambda b: b[:3] + b"\x07" + b[4:], r"^unknown packet type 7$"),
    (lambda b: b[:5] + b"\x00\x00\x00\x00" + b[9:], r"^sender node id 0$"),
])
def test_header_errors_are_named(mutate, message):
    join = Join(sender=3, ring_seq=4, proc=frozenset({1, 3}), failed=frozenset())
    with pytest.raises(DecodeError, match=message):
        codec.decode(mutate(codec.encode(join)))


def test_join_with_unsorted_or_inconsistent_lists_is_rejected():
    good = codec.encode(Join(sender=2, ring_seq=1, proc=frozenset({1, 2}), failed=frozenset()))
    swapped = good[:-8] + good[-4:] + good[-8:-4]  # proc = [2, 1]
    with pytest.raises(DecodeError, match="not sorted"):
        codec.decode(swapped)


def test_fuzzed_packets_are_counted_and_dropped_by_the_core():
    """Mutated real packets never raise out of receive; each bad one is counted."""
    rng = random.Random(7)
    core = SrpCore(1, TotemParams(nodes=3))
    core.start(0.0, None)
    core.take_actions()
    samples = [
        codec.encode(Join(sender=2, ring_seq=9, proc=frozenset({1, 2}), failed=frozenset())),
        codec.encode(OrfToken(sender=2, ring_id=RingId(2, 8), seq=5, token_seq=3, aru=5,
                              aru_addr=0, fcc=1, backlog=0, retrans_pending=0,
                              rtr=(RtrEntry(RingId(2, 8), 4),))),
        codec.encode(Mcast(sender=3, ring_id=RingId(2, 8), seq=4, safe=False, payload=b"abc")),
    ]
    malformed = 0
    for _ in range(3000):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data))]
        try:
            codec.decode(bytes(data))
        except DecodeError:
            malformed += 1
        core.receive(bytes(data), 1.0)
        core.take_actions()
    assert malformed > 0
    assert core.stats().rx_malformed == malformed
