"""SrpCore.submit_many: several messages queued with one wake-up of the ring."""

from __future__ import annotations

from tests.totem.helpers import Net
from totemd.srp import TotemParams


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
    before = rep.stats().token_hold_releases
    accepted, refused = rep.submit_many([(b"%d" % i, False, None) for i in range(20)])
    assert (accepted, refused) == (20, None)
    assert rep.stats().token_hold_releases == before + 1
    net.collect(1)
    net.run_timers(net.now + 100)
    assert [d.message for d in net.delivered[3]] == [b"%d" % i for i in range(20)]


def test_submit_many_with_nothing_accepted_does_not_wake_the_ring():
    net = _idle_ring()
    rep = net.cores[1]
    before = rep.stats().token_hold_releases
    too_large = b"x" * (rep.params.max_message_size + 1)
    assert rep.submit_many([(too_large, False, None)])[0] == 0
    assert rep.submit_many([]) == (0, None)
    assert rep.stats().token_hold_releases == before
