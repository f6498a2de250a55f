"""Regression tests for the pitfalls of totem.md §2.5 (named by number)."""

from __future__ import annotations

import pytest

from totemd import codec
from totemd.sim.cluster import Cluster, SimConfig, sim_params
from totemd.sim.faults import Fault
from totemd.sim.runner import run_schedule, seed_config
from totemd.srp import GatherReason, SendUnicast, SrpCore, State, TotemParams
from totemd.srp.messages import CommitToken, Mcast, OrfToken, RingId, RtrEntry
from totemd.srp.params import SORT_QUEUE_MAX

from tests.totem.helpers import Net


def _formed(nodes=3, **params):
    net = Net(nodes, TotemParams(token_ms=1000.0, token_coefficient_ms=0.0, nodes=nodes, **params))
    net.form_ring()
    return net


def test_pitfall_01_duplicate_token_resets_no_timer_and_moves_no_aru():
    net = _formed()
    captured = []
    net.filter = lambda src, dest, packet: (captured.append((dest, packet)) or True) \
        if isinstance(packet, OrfToken) else True
    net.submit(1, b"wake up")
    net.run_timers(net.now)  # the held token goes on when the driver next fires timers
    dest, token = next((d, p) for d, p in captured if d == 2)
    core = net.cores[2]
    timers_before = dict(net.timers[2])
    aru_before = core._previous_token_aru
    core.receive(codec.encode(token), net.now + 500)
    assert core.take_actions() == []
    assert core.stats().token_duplicate == 1
    assert net.timers[2] == timers_before and core._previous_token_aru == aru_before


def test_pitfall_02_duplicate_commit_token_starts_no_second_regular_token():
    net = Net(3, TotemParams(token_ms=1000.0, token_coefficient_ms=0.0, nodes=3), start=False)
    original = net._enqueue

    def twice(src, dest, data):
        original(src, dest, data)
        if isinstance(codec.decode(data), CommitToken):
            original(src, dest, data)
    net._enqueue = twice
    for core in net.cores.values():
        core.start(0.0, None)
        net.collect(core.node_id)
    net.form_ring()
    assert all(core.state is State.OPERATIONAL for core in net.cores.values())
    first_tokens = [codec.decode(data) for src, _dest, data in net.sent
                    if codec.packet_type(data) == 0]
    assert sum(1 for t in first_tokens if t.token_seq == 1) == 1
    assert sum(core.stats().token_duplicate for core in net.cores.values()) > 0


def test_pitfall_03_restart_bumps_the_persisted_ring_seq():
    core = SrpCore(1, TotemParams())
    core.start(0.0, 8)
    assert core.ring_id == RingId(1, 9)
    assert [a.ring_seq for a in core.take_actions() if type(a).__name__ == "PersistRingSeq"] == [9]


def test_pitfall_03_representative_restarts_inside_the_token_timeout():
    config, _ = seed_config(3, 3)
    schedule = (Fault(at_ms=400.0, kind="crash", node=1),
                Fault(at_ms=450.0, kind="restart", node=1, value=1.0),
                Fault(at_ms=700.0, kind="crash", node=1),
                Fault(at_ms=705.0, kind="restart", node=1, value=1.0))
    result = run_schedule(config, schedule)
    assert result.ok, result.witness()


def test_pitfall_04_stale_join_ignored_but_new_join_processed():
    net = _formed()
    core = net.cores[1]
    from totemd.srp.messages import Join
    stale = Join(sender=3, ring_seq=core.ring_id.seq - 4, proc=frozenset({1, 2, 3}),
                 failed=frozenset())
    core.receive(codec.encode(stale), net.now)
    assert core.state is State.OPERATIONAL
    fresh = Join(sender=9, ring_seq=0, proc=frozenset({9}), failed=frozenset())
    core.receive(codec.encode(fresh), net.now)
    assert core.state is State.GATHER


def test_pitfall_05_leave_reforms_the_ring_without_a_token_timeout():
    net = _formed()
    start = net.now
    net.cores[3].leave(net.now)
    net.collect(3)
    net.down.add(3)
    net.run_timers(start + 300)
    for node in (1, 2):
        core = net.cores[node]
        assert core.state is State.OPERATIONAL and core.members == (1, 2)
        assert any(c.reason is GatherReason.MEMBER_LEFT for c in net.states[node])
        assert not any(c.reason is GatherReason.TOKEN_LOST_OPERATIONAL for c in net.states[node])
    assert net.now - start < net.params.effective_token_ms


def test_pitfall_06_ring_order_is_by_node_id_whatever_the_join_order():
    net = Net(5, TotemParams(token_ms=1000.0, token_coefficient_ms=0.0, nodes=5), start=False)
    for node in (4, 2, 5, 1, 3):
        net.cores[node].start(0.0, None)
        net.collect(node)
    net.form_ring()
    assert {core.members for core in net.cores.values()} == {(1, 2, 3, 4, 5)}


def test_pitfall_07_aru_advances_across_a_gap_wider_than_1024():
    from totemd.srp.ringstate import RingState
    ring = RingState(RingId(1, 4), (1, 2), 0xFFFFFFF0)
    for offset in range(2, 5000):
        ring.insert(Mcast(sender=2, ring_id=ring.ring_id, seq=(0xFFFFFFF0 + offset) & 0xFFFFFFFF,
                          safe=False, payload=b""))
    ring.insert(Mcast(sender=2, ring_id=ring.ring_id, seq=0xFFFFFFF1, safe=False, payload=b""))
    assert ring.aru == (0xFFFFFFF0 + 4999) & 0xFFFFFFFF


def test_pitfall_08_messages_after_a_recovery_gap():
    """A crash with frames in flight under loss: after the gap only messages
    from transitional members are delivered (checked by S9, S10, S14)."""
    failures = []
    for seed in range(3):
        config, _ = seed_config(seed, 4, cluster_rate_per_s=300.0)
        schedule = (Fault(at_ms=100.0, kind="loss", value=0.2),
                    Fault(at_ms=400.0, kind="crash", node=2),
                    Fault(at_ms=400.0, kind="crash", node=4))
        result = run_schedule(config, schedule)
        if not result.ok:
            failures.append(result.witness())
    assert failures == []


def test_pitfall_09_fragmented_message_crossing_a_configuration_change():
    """A 70 KB message is half sent when the ring breaks: it is sent again
    whole in the next ring and delivered exactly once, intact (S1, S2)."""
    params = sim_params(3)
    cluster = Cluster(SimConfig(nodes=3, seed=11, params=params, submit_interval_ms=1e9))
    for node in (1, 2, 3):
        cluster.start_node(node)
    cluster.run_until(100.0)
    node = cluster.nodes[1]
    from totemd.sim.workload import AppMessage, encode_message
    import zlib
    message = AppMessage(1, 1, 1, False, ())
    data = encode_message(message, 70_000)
    node.sseq = 1
    node.log.submit(message.mid, 1, False, zlib.crc32(data), None, t=int(cluster.now * 1e6))
    node.core.submit(data, False, handle=(message.mid, 1))
    node.core._ask_hold_release()
    cluster._execute(node)
    for _ in range(10_000):
        cluster.run_until(cluster.now + 0.05)
        if node.core._packer._partial is not None:
            break
    assert node.core._packer._partial is not None, "the message never got half sent"
    cluster.apply(Fault(at_ms=0.0, kind="crash", node=3))
    cluster.run_until(cluster.now + 3000.0)
    assert node.core._packer.stats().requeued_on_configuration_change == 1
    cluster.stop_all()
    from totemd.evs import check_records
    report = check_records({key: log.records for key, log in cluster.logs.items()})
    assert report.ok, report.format()
    for key in ((1, 1), (2, 1)):
        delivered = [r for r in cluster.logs[key].records if r["ev"] == "deliver"]
        assert [r["mid"] for r in delivered] == ["1.1.1"]
        assert delivered[0]["crc"] == zlib.crc32(data)


def test_pitfall_10_a_hole_is_requested_only_after_miss_count_const_sightings():
    net = _formed()
    core = net.cores[2]
    ring = core._installed
    base = ring.aru
    ring.insert(Mcast(sender=3, ring_id=ring.ring_id, seq=(base + 2) & 0xFFFFFFFF, safe=False,
                      payload=b""))
    token_seq = core._token_seq_seen
    for visit in range(1, 6):
        token_seq += 3
        token = OrfToken(sender=1, ring_id=ring.ring_id, seq=(base + 2) & 0xFFFFFFFF,
                         token_seq=token_seq, aru=base, aru_addr=0, fcc=0, backlog=0,
                         retrans_pending=0, rtr=())
        core.receive(codec.encode(token), net.now)
        sent = [a for a in core.take_actions() if isinstance(a, SendUnicast)]
        rtr = codec.decode(sent[-1].data).rtr
        expected = (RtrEntry(ring.ring_id, (base + 1) & 0xFFFFFFFF),) if visit >= 5 else ()
        assert rtr == expected, visit


def test_a_token_claiming_a_far_seq_costs_a_bounded_scan():
    # corosync asserts the hole range is below its queue size; we must not
    # trust it either: a token whose seq is 2**31 - 1 past our aru (corrupt,
    # or from a buggy peer) once made the hole scan walk 2**31 seqs.
    net = _formed()
    core = net.cores[2]
    ring = core._installed
    far = (ring.aru + 0x7FFFFFFF) & 0xFFFFFFFF
    token = OrfToken(sender=1, ring_id=ring.ring_id, seq=far, token_seq=core._token_seq_seen + 3,
                     aru=ring.aru, aru_addr=0, fcc=0, backlog=0, retrans_pending=0, rtr=())
    core.receive(codec.encode(token), net.now)
    assert any(isinstance(a, SendUnicast) for a in core.take_actions())  # forwarded
    assert 0 < len(ring.miss_counts) <= SORT_QUEUE_MAX


@pytest.mark.parametrize("cancel, held", [(False, True), (True, False)])
def test_pitfall_11_hold_while_retransmissions_are_pending(cancel, held):
    net = _formed(cancel_token_hold_on_retransmit=cancel)
    rep = net.cores[1]
    ring = rep._installed
    rep._unchanged_rotations = 100
    token = OrfToken(sender=3, ring_id=ring.ring_id, seq=ring.aru, token_seq=rep._token_seq_seen + 3,
                     aru=ring.aru, aru_addr=0, fcc=0, backlog=0, retrans_pending=0,
                     rtr=(RtrEntry(ring.ring_id, ring.freed),))  # a request nobody serves
    rep.receive(codec.encode(token), net.now)
    assert (rep._held_token is not None) is held


def test_pitfall_12_pauses_keep_every_rule():
    for seed in range(8):
        config, _ = seed_config(seed, 3)
        schedule = (Fault(at_ms=200.0, kind="pause", node=1 + seed % 3, value=150.0 * (1 + seed)),
                    Fault(at_ms=500.0, kind="pause", node=1 + (seed + 1) % 3, value=250.0))
        result = run_schedule(config, schedule)
        assert result.ok, result.witness()


def test_pitfall_13_one_way_loss_is_safe_and_heals():
    for seed in range(6):
        config, _ = seed_config(seed, 4)
        schedule = (Fault(at_ms=100.0, kind="oneway", node=1, other=3),
                    Fault(at_ms=150.0, kind="oneway", node=4, other=2))
        result = run_schedule(config, schedule)
        assert result.ok, result.witness()


def test_pitfall_15_recovery_with_a_big_backlog():
    config, _ = seed_config(21, 3, cluster_rate_per_s=3000.0)
    schedule = (Fault(at_ms=300.0, kind="partition", other=0b100),
                Fault(at_ms=700.0, kind="heal_partition"))
    result = run_schedule(config, schedule)
    assert result.ok, result.witness()


def test_pitfall_16_a_recovery_frame_fits_in_netmtu():
    params = TotemParams()
    inner = Mcast(sender=1, ring_id=RingId(1, 4), seq=7, safe=True,
                  payload=b"x" * params.frame_payload_max)
    outer = Mcast(sender=2, ring_id=RingId(1, 8), seq=1, safe=False, payload=b"", inner=inner)
    assert len(codec.encode(outer)) <= params.netmtu - 28


def test_pitfall_07_failed_to_receive_with_a_small_fail_recv_const():
    """csts failed-to-receive-crash.sh: a node that gets the token but no
    frames accuses itself after fail_recv_const rotations (corosync's way)."""
    net = _formed(fail_recv_const=5)
    net.filter = lambda src, dest, packet: not (dest == 3 and isinstance(packet, Mcast))
    for index in range(30):
        net.submit(1, bytes([index]) * 1200)
    net.run_timers(net.now + 200)
    reasons = [change.reason for change in net.states[3]]
    assert GatherReason.FAILED_TO_RECEIVE in reasons
    assert net.cores[3].stats().failed_to_receive == 1
    assert not any(GatherReason.FAILED_TO_RECEIVE in [c.reason for c in net.states[node]]
                   for node in (1, 2))
