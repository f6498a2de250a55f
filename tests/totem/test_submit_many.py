"""SrpCore.submit_many: several messages queued with one wake-up of the ring;
the local interface's SUBMIT_MANY decoding and DELIVER_BATCH building."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from tests.totem.helpers import Net
from totemd import local_codec as wire
from totemd.srp import Timer, TotemParams


def _idle_ring() -> Net:
    """A formed 3-node ring left idle until the representative holds the token."""
    net = Net(3, TotemParams(token_ms=1000.0, token_coefficient_ms=0.0, nodes=3))
    net.form_ring()
    net.run_timers(net.now + 100)
    assert net.cores[1].stats().token_holds >= 1, "the idle token was never held"
    return net


def test_submit_many_queues_in_order_and_stops_at_the_first_refusal():
    net = _idle_ring()
    core = net.cores[2]
    too_large = b"x" * (core.params.max_message_size + 1)
    items = [(b"a", False, "ha"), (b"b", True, "hb"), (b"c", False, "hc"),
             (too_large, False, "big"), (b"d", False, "hd")]
    accepted, refused = core.submit_many(items)
    assert accepted == 3
    assert refused is not None and "larger than the maximum" in refused
    assert core.stats().submit_rejected == 1
    net.collect(2)
    net.run_timers(net.now + 100)
    for node in (1, 2, 3):
        assert [d.message for d in net.delivered[node]] == [b"a", b"b", b"c"]
    handles = [h for action in net.originated[2] for h in action.handles]
    assert handles == ["ha", "hb", "hc"]


def test_submit_many_wakes_a_held_token():
    net = _idle_ring()
    rep = net.cores[1]
    before = rep.stats()
    accepted, refused = rep.submit_many([(b"%d" % i, False, None) for i in range(20)])
    assert (accepted, refused) == (20, None)
    net.collect(1)
    # The release waits for the driver's clock: the hold timer, due now.
    assert rep.stats().token_hold_releases == before.token_hold_releases
    assert net.timers[1][Timer.TOKEN_HOLD] <= net.now
    net.fire(1, Timer.TOKEN_HOLD)
    after = rep.stats()
    assert after.token_hold_releases == before.token_hold_releases + 1
    assert after.token_hold_originations == before.token_hold_originations + 1
    # The held token carried them at once: sent, and delivered here, with
    # one token sent and no hop of the token in between.
    assert after.orf_token_tx == before.orf_token_tx + 1
    assert after.orf_token_rx == before.orf_token_rx
    assert after.mcast_tx > before.mcast_tx
    assert [d.message for d in net.delivered[1]] == [b"%d" % i for i in range(20)]
    net.run_timers(net.now + 100)
    for node in (2, 3):
        assert [d.message for d in net.delivered[node]] == [b"%d" % i for i in range(20)]


def test_a_hold_cancel_from_another_node_releases_the_held_token_as_it_is():
    net = _idle_ring()
    rep, other = net.cores[1], net.cores[3]
    before = rep.stats()
    other.submit(b"from 3", False, None)
    net.collect(3)
    assert other.stats().hold_cancel_tx == 1
    net.settle()
    after = rep.stats()
    assert after.hold_cancel_rx == before.hold_cancel_rx + 1
    assert after.token_hold_releases == before.token_hold_releases + 1
    assert after.token_hold_originations == before.token_hold_originations  # nothing of its own
    net.run_timers(net.now + 100)
    for node in (1, 2, 3):
        assert [d.message for d in net.delivered[node]] == [b"from 3"]


def test_submit_many_with_nothing_accepted_does_not_wake_the_ring():
    net = _idle_ring()
    rep = net.cores[1]
    before = rep.stats().token_hold_releases
    too_large = b"x" * (rep.params.max_message_size + 1)
    assert rep.submit_many([(too_large, False, None)])[0] == 0
    assert rep.submit_many([]) == (0, None)
    assert rep.stats().token_hold_releases == before


# -- the local interface's SUBMIT_MANY decoding (totemd.local_codec) --------------------

def _reference_decode(payload: bytes, max_items: int | None = None):
    """The format read the plain way: one header at a time."""
    (count,) = struct.unpack_from("!I", payload)
    take = count if max_items is None else min(count, max(0, max_items))
    offset, items = 4, []
    for _ in range(take):
        if offset + 5 > len(payload):
            raise wire.LocalDecodeError("header")
        flags, length = struct.unpack_from("!BI", payload, offset)
        offset += 5
        if flags > 1 or offset + length > len(payload):
            raise wire.LocalDecodeError("flags or length")
        items.append((payload[offset:offset + length], flags == 1))
        offset += length
    if take == count and offset != len(payload):
        raise wire.LocalDecodeError("tail")
    return items, count


def _decoded_or_error(payload: bytes, max_items: int | None):
    try:
        items, count = wire.decode_submit_many(memoryview(payload), max_items)
    except wire.LocalDecodeError:
        return "error"
    return [(bytes(data), safe) for data, safe in items], count


@settings(max_examples=200, deadline=None)
@given(length=st.integers(0, 40), flags=st.lists(st.booleans(), min_size=2, max_size=12),
       max_items=st.none() | st.integers(0, 14), tail=st.sampled_from([b"", b"x"]),
       flip=st.none() | st.tuples(st.integers(0, 10_000), st.integers(1, 255)))
def test_uniform_submit_many_decodes_as_the_plain_reading(length, flags, max_items, tail, flip):
    """Requests whose messages share one length (decoded column-wise), intact
    or with one byte changed, decode as reading header by header does."""
    messages = [(bytes([index]) * length, safe) for index, safe in enumerate(flags)]
    payload = bytearray(wire.encode_submit_many(messages) + tail)
    if flip is not None:
        position = flip[0] % len(payload)
        payload[position] ^= flip[1]
    payload = bytes(payload)
    try:
        expected = _reference_decode(payload, max_items)
    except (wire.LocalDecodeError, struct.error):
        expected = "error"
    else:
        expected = ([(data, safe) for data, safe in expected[0]], expected[1])
    assert _decoded_or_error(payload, max_items) == expected


def test_uniform_submit_many_reports_the_faulty_message():
    messages = [(b"abcd", False)] * 4
    payload = bytearray(wire.encode_submit_many(messages))
    payload[4 + 2 * 9] = 4  # message 2's flags
    with pytest.raises(wire.LocalDecodeError, match=r"^SUBMIT_MANY message 2 flags 0x4 has unknown bits$"):
        wire.decode_submit_many(memoryview(bytes(payload)))
    decoded, count = wire.decode_submit_many(memoryview(bytes(payload)), 2)  # the bad one is not looked at
    assert (count, [(bytes(d), s) for d, s in decoded]) == (4, [(b"abcd", False)] * 2)


def test_deliver_batch_payload_is_the_encoded_batch_in_either_form():
    for count, size in ((6, 8192), (40, 1024), (1, 0)):
        rows = [wire.DELIVER_ITEM.pack(size, 1, 7, index, 1, 4, 10 + index, index & 1)
                for index in range(count)]
        bodies = [memoryview(bytes([index]) * (size + 16))[16:] for index in range(count)]
        expected = wire.encode_deliver_batch(rows, bodies)
        for known in (None, count * size):
            payload = wire.deliver_batch_payload(rows, bodies, known)
            if size >= wire.GATHER_MIN_AVERAGE_BYTES:
                assert isinstance(payload, wire.GatherPayload) and len(payload) == len(expected)
                assert payload.join() == expected
            else:
                assert payload == expected
        assert len(wire.decode_deliver_batch(expected)) == count


def _one_rotation(net: Net, node: int) -> None:
    """Step packets until ``node`` has seen the token once more."""
    seen = net.cores[node].stats().orf_token_rx
    for _ in range(1000):
        if net.cores[node].stats().orf_token_rx > seen or not net.step():
            break
    assert net.cores[node].stats().orf_token_rx > seen, "the token stopped"


def test_the_representative_does_not_hold_while_another_node_sends():
    """corosync's rule: a rotation is unchanged only if nobody sent in it.
    A ring where only node 3 sends, one message per rotation, is not idle."""
    net = _idle_ring()
    rep = net.cores[1]
    net.submit(3, b"wake")
    net.settle()
    net.run_timers(net.now)
    holds = rep.stats().token_holds
    const = net.params.seqno_unchanged_const
    for i in range(3 * const):
        net.submit(3, b"%d" % i)
        _one_rotation(net, 3)
    assert rep.stats().token_holds == holds
    net.run_timers(net.now + 100)
    assert [d.message for d in net.delivered[1]][-3 * const:] == [b"%d" % i for i in range(3 * const)]


def test_every_node_that_may_find_the_token_held_asks_for_it():
    """The representative holds one rotation after the others start to count
    the token as held: whenever it holds, a submit elsewhere sends a cancel."""
    for asker in (2, 3):
        net = Net(3, TotemParams(token_ms=1000.0, token_coefficient_ms=0.0, nodes=3))
        net.form_ring()
        rep, other = net.cores[1], net.cores[asker]
        # Step until the representative holds, then submit elsewhere at once.
        for _ in range(100_000):
            if rep._held_token is not None or not net.step():
                break
        assert rep._held_token is not None
        released = rep.stats().token_hold_releases
        other.submit(b"late", False, None)
        net.collect(asker)
        assert other.stats().hold_cancel_tx == 1
        net.settle()  # packets only: no timer fires, the clock stands still
        assert rep.stats().token_hold_releases == released + 1
        for node in (1, 2, 3):
            assert [d.message for d in net.delivered[node]] == [b"late"]
