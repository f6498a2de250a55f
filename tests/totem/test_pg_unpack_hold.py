"""Unpacker's held middle fragments and its fast path for the frame between
two large messages (totemd.pg_unpack: _arm, _settle, _between), held to the
plain reference model of tests/totem/test_pg.py on long fragmented messages
from several senders with damage aimed at their middle fragments, budgets
that run out (_HOLD_MAX, max_message_size), resets and stats() while
fragments are held."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.totem.helpers import indexed_message as _message
from tests.totem.test_pg_reference import _damage, _ReferenceUnpacker, _unpacker_stats
from totemd import pg_unpack
from totemd.pg import Packer, Unpacker, pack_all, unpack_all


def _streams(sizes: list[int], frame_payload_max: int, senders: int) -> list[list[bytes]]:
    """Each sender's frame payloads for ``sizes`` (sent back to back, so
    most frames end one message and open the next)."""
    streams = []
    for sender in range(senders):
        packer = Packer(frame_payload_max)
        for index, size in enumerate(sizes):
            packer.submit(_message(index * 7 + sender, size + sender))
        streams.append([bytes(frame.payload) for frame in pack_all(packer)])
    return streams


def _middle_positions(stream: list[bytes]) -> list[int]:
    """Positions of the middle fragments (one entry, both flags)."""
    return [i for i, p in enumerate(stream) if len(p) >= 4 and p[1] == 3 and p[2:4] == b"\0\1"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.one_of(st.integers(0, 200), st.integers(300, 4000), st.integers(5000, 20000)),
                   min_size=1, max_size=12),
    frame_payload_max=st.integers(40, 400),
    max_message_size=st.sampled_from([3000, 6000, 12000, 1 << 20]),
    damage=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 1 << 16), st.integers(0, 1 << 16)),
                    max_size=12),
    senders=st.integers(1, 3),
    stats_every=st.integers(0, 40),
)
def test_held_fragments_match_the_reference_model(sizes, frame_payload_max, max_message_size,
                                                  damage, senders, stats_every) -> None:
    streams = _streams(sizes, frame_payload_max, senders)
    # Damage aimed at middle fragments (what feed holds): (how, which, where).
    plans: list[dict[int, tuple[int, int]]] = [{} for _ in range(senders)]
    for how, which, where in damage:
        sender = which % senders
        middles = _middle_positions(streams[sender])
        if middles:
            plans[sender][middles[which % len(middles)]] = (how, where)
    unpacker = Unpacker(max_message_size)
    reference = _ReferenceUnpacker(max_message_size)
    position = [0] * senders
    fed = 0
    while any(position[s] < len(streams[s]) for s in range(senders)):
        for sender in range(senders):
            index = position[sender]
            if index >= len(streams[sender]):
                continue
            position[sender] += 1
            how, where = plans[sender].get(index, (0, 0))
            payload = streams[sender][index]
            if how == 5:
                continue  # lost
            if how == 6:
                unpacker.reset()
                reference.reset()
            payloads = [payload, payload] if how == 7 else [_damage(payload, how, where)]
            for one in payloads:
                assert unpacker.feed(sender, one) == reference.feed(sender, one)
                fed += 1
                if stats_every and fed % stats_every == 0:
                    assert _unpacker_stats(unpacker) == reference.stats()
    assert _unpacker_stats(unpacker) == reference.stats()


def test_long_messages_are_whole_across_many_hold_budgets() -> None:
    """Messages of several _HOLD_MAX frames each, from two interleaved
    senders, come out whole, and their middle fragments were held (not
    checked one by one: the fast path was taken)."""
    sizes = [pg_unpack._HOLD_MAX * 3 * 100 + 17, 5, pg_unpack._HOLD_MAX * 100, 250]
    streams = _streams(sizes, 120, 2)
    unpacker = Unpacker()
    arms = 0
    original = pg_unpack._arm

    def counting(*args):
        nonlocal arms
        arms += 1
        return original(*args)

    # Each middle fragment not held goes through the checks and _arm.
    pg_unpack._arm = counting
    try:
        out: dict[int, list[bytes]] = {0: [], 1: []}
        for frames in zip(*streams):
            for sender, payload in enumerate(frames):
                out[sender].extend(unpacker.feed(sender, payload))
    finally:
        pg_unpack._arm = original
    for sender in (0, 1):
        assert out[sender] == [_message(i * 7 + sender, size + sender) for i, size in enumerate(sizes)]
    frames = sum(map(len, streams))
    assert arms < frames // 16
    stats = unpacker.stats()
    assert stats.open_assemblies == 0 and stats.messages_delivered == 8 and stats.malformed_frames == 0


def test_held_fragments_count_in_stats_and_are_dropped_by_reset() -> None:
    streams = _streams([5000], 100, 1)
    unpacker = Unpacker()
    for payload in streams[0][:20]:
        assert unpacker.feed(1, payload) == []
    stats = unpacker.stats()
    assert stats.open_assemblies == 1 and stats.frames == 20
    unpacker.reset()
    assert unpacker.stats().assemblies_dropped_on_reset == 1
    # The rest continues a message this side dropped: thrown away, each part counted.
    assert unpack_all(unpacker, 1, streams[0][20:]) == []
    stats = unpacker.stats()
    assert stats.orphan_fragments == len(streams[0]) - 20
    assert stats.messages_delivered == 0 and stats.open_assemblies == 0


@pytest.mark.parametrize("max_message_size", [4000, 4100, 4199, 4200, 4300])
def test_the_size_limit_is_met_at_the_same_fragment_when_held(max_message_size: int) -> None:
    """A message around max_message_size: dropped and counted, or delivered,
    exactly as the reference model does, whatever the hold budget."""
    streams = _streams([4200, 10, 4200], 90, 1)
    unpacker = Unpacker(max_message_size)
    reference = _ReferenceUnpacker(max_message_size)
    for payload in streams[0]:
        assert unpacker.feed(1, payload) == reference.feed(1, payload)
    assert _unpacker_stats(unpacker) == reference.stats()


def test_views_are_held_as_bytes() -> None:
    """A memoryview payload is copied when held: reusing the caller's buffer
    afterwards does not change the message."""
    streams = _streams([3000], 100, 1)
    unpacker = Unpacker()
    out = []
    for payload in streams[0]:
        buffer = bytearray(payload)
        out.extend(unpacker.feed(1, memoryview(buffer)))
        buffer[:] = bytes(len(buffer))
    assert out == [_message(0, 3000)]
