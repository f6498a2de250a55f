"""The hot-path values (Mcast and the per-frame/per-message actions) are
NamedTuples: immutable, with the field names and order drivers rely on."""

from __future__ import annotations

import pytest

from totemd import codec
from totemd.srp import Deliver, DeliverFrame, SendMulticast, SendUnicast, SetTimer, Timer
from totemd.srp.actions import CancelTimer, Originated
from totemd.srp.messages import Mcast, RingId

FIELDS = {
    Mcast: ("sender", "ring_id", "seq", "safe", "payload", "inner"),
    Deliver: ("sender", "ring_id", "seq", "safe", "message"),
    DeliverFrame: ("sender", "ring_id", "seq", "safe", "messages"),
    SendUnicast: ("dest", "data"),
    SendMulticast: ("data",),
    SetTimer: ("timer", "deadline_ms"),
    CancelTimer: ("timer",),
    Originated: ("ring_id", "seq", "handles"),
}


@pytest.mark.parametrize("kind", list(FIELDS), ids=lambda kind: kind.__name__)
def test_fields_keep_their_names_and_order(kind):
    assert kind._fields == FIELDS[kind]


def test_values_are_immutable():
    deliver = Deliver(2, RingId(1, 4), 7, False, b"m")
    with pytest.raises(AttributeError):
        deliver.message = b"other"  # type: ignore[misc]
    frame = Mcast(sender=1, ring_id=RingId(1, 4), seq=3, safe=True, payload=b"p")
    with pytest.raises(AttributeError):
        frame.seq = 4  # type: ignore[misc]


def test_a_decoded_frame_equals_the_one_encoded_inner_included():
    inner = Mcast(sender=3, ring_id=RingId(1, 4), seq=9, safe=True, payload=b"old")
    outer = Mcast(sender=2, ring_id=RingId(2, 8), seq=1, safe=False, payload=b"", inner=inner)
    assert codec.decode(codec.encode(outer)) == outer
    plain = Mcast(sender=2, ring_id=RingId(2, 8), seq=2, safe=True, payload=b"abc")
    decoded = codec.decode(codec.encode(plain))
    assert decoded == plain and decoded.inner is None and decoded.safe is True
    assert type(decoded) is Mcast


def test_a_timer_action_reads_by_name():
    action = SetTimer(Timer.TOKEN_LOSS, 12.5)
    assert (action.timer, action.deadline_ms) == (Timer.TOKEN_LOSS, 12.5)
