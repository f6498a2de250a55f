"""``SrpCore.receive_many`` and ``deliver_frames`` change the cost, never the
behaviour: a core fed a burst at once does what a core fed the same packets
one by one does (the same actions at every ``take_actions``, the same end
state), with ``DeliverFrame`` standing for its messages' ``Deliver``s.

The inputs are real: every call the cores got in simulated runs with faults
(even nodes read bursts), with garbage, truncated, corrupted and repeated
packets mixed into the bursts."""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest

from totemd.sim.bench import RecordingCore
from totemd.sim.cluster import Cluster
from totemd.sim.runner import seed_config
from totemd.srp import Deliver, DeliverFrame, SubmitRejected


def _recorded_cores(seed: int) -> list[RecordingCore]:
    config, schedule = seed_config(seed, nodes=4, cluster_rate_per_s=2000.0)
    cores: list[RecordingCore] = []

    def factory(*args, **kwargs):
        core = RecordingCore(*args, **kwargs)
        cores.append(core)
        return core

    cluster = Cluster(config, core_factory=factory)
    for node in cluster.nodes:
        cluster.start_node(node)
    cluster.schedule(schedule)
    cluster.run_until(1000.0)
    cluster.heal()
    for node in cluster.nodes:
        cluster.start_node(node)  # the crashed ones
    cluster.run_until(2500.0)
    return [core for core in cores
            if any(name == "receive_many" for name, _args in core.calls)]


def _merge_reads(calls: list, rng: random.Random) -> list:
    """Merge some runs of reads (with the take_actions between them) into one
    burst, so that tokens and joins come in the middle of bursts."""
    merged: list = []
    for name, args in calls:
        if name in ("receive", "receive_many") and len(merged) >= 2 \
                and merged[-1][0] == "take_actions" and merged[-2][0] == "receive_many" \
                and rng.random() < 0.5:
            packets = [args[0]] if name == "receive" else list(args[0])
            merged.pop()
            _name, (earlier, _now, deliver) = merged.pop()
            merged.append(("receive_many", (earlier + packets, args[1], deliver)))
            continue
        if name == "receive":
            name, args = "receive_many", ([args[0]], args[1], True)
        merged.append((name, args))
    return merged


def _spoil(calls: list, rng: random.Random) -> list:
    """The same calls with reads merged and bad and repeated packets mixed
    into the bursts."""
    spoiled = []
    for name, args in _merge_reads(calls, rng):
        if name == "receive_many" and rng.random() < 0.3:
            packets, now_ms, deliver = args
            packets = list(packets)
            victim = rng.choice(packets)
            corrupt = bytearray(victim)
            corrupt[rng.randrange(len(corrupt))] ^= 0xFF
            extra = [victim, victim[:rng.randrange(len(victim))], bytes(corrupt),
                     rng.randbytes(rng.randrange(60))]
            for packet in rng.sample(extra, rng.randint(1, len(extra))):
                packets.insert(rng.randrange(len(packets) + 1), packet)
            args = (packets, now_ms, deliver)
        spoiled.append((name, args))
    return spoiled


def _replay(recorded: RecordingCore, calls: list, bursts: bool,
            after_token: bool = False) -> tuple[list, object]:
    """Run ``calls`` on a fresh core: bursts handed over whole with
    DeliverFrame actions, or packet by packet with Deliver actions."""
    core = recorded.fresh(deliver_frames=bursts, deliver_after_token=after_token)
    seen = []
    for name, args in calls:
        if name == "take_actions":
            actions = []
            for action in core.take_actions():
                if type(action) is DeliverFrame:
                    assert action.messages, "a DeliverFrame without messages"
                    actions.extend(Deliver(action.sender, action.ring_id, action.seq,
                                           action.safe, message)
                                   for message in action.messages)
                else:
                    actions.append(action)
            seen.append(actions)
        elif name == "receive_many" and not bursts:
            packets, now_ms, _deliver = args
            for packet in packets:
                core.receive(packet, now_ms)
        else:
            try:
                getattr(core, name)(*args)
            except SubmitRejected:
                pass
    if after_token:
        core.deliver_pending()
        seen.append(core.take_actions())
        seen[-1] = [a for action in seen[-1] for a in
                    ([Deliver(action.sender, action.ring_id, action.seq, action.safe, m)
                      for m in action.messages] if type(action) is DeliverFrame else [action])]
    return seen, core.stats()


@pytest.mark.parametrize("seed", [3, 11, 17])
def test_bursts_and_frame_deliveries_behave_like_packets_one_by_one(seed):
    cores = _recorded_cores(seed)
    assert cores, "no node read a burst"
    rng = random.Random(seed)
    delivered = 0
    for recorded in cores:
        for calls in (recorded.calls, _spoil(recorded.calls, rng)):
            whole, whole_stats = _replay(recorded, calls, bursts=True)
            one_by_one, one_stats = _replay(recorded, calls, bursts=False)
            assert whole == one_by_one
            assert whole_stats == one_stats
            delivered += whole_stats.messages_delivered
    assert delivered > 0


def _split(seen: list) -> tuple[list, list]:
    """(the other actions of each take_actions, every Deliver in order)."""
    others = [[a for a in actions if type(a) is not Deliver] for actions in seen]
    deliveries = [a for actions in seen for a in actions if type(a) is Deliver]
    return others, deliveries


@pytest.mark.parametrize("seed", [3, 11])
def test_deliveries_after_the_token_change_when_not_what(seed):
    # deliver_after_token (what totemd runs): the same deliveries in the same
    # order and every other action where it was (the token goes out first
    # and stored bursts wait for a visit), whether bursts are stored without
    # delivery (deliver=False, as recorded) or not.
    cores = _recorded_cores(seed)
    rng = random.Random(seed)
    deferred = 0
    for recorded in cores:
        for calls in (recorded.calls, _spoil(recorded.calls, rng)):
            plain, plain_stats = _replay(recorded, calls, bursts=True)
            later, later_stats = _replay(recorded, calls, bursts=True, after_token=True)
            assert _split(later)[1] == _split(plain)[1]
            assert _split(later)[0][:len(plain)] == _split(plain)[0]
            skip = {"frames_freed"}  # freed a visit later when deliveries are later
            assert {k: v for k, v in asdict(later_stats).items() if k not in skip} == \
                {k: v for k, v in asdict(plain_stats).items() if k not in skip}
            deferred += sum(1 for name, args in calls if name == "receive_many" and not args[2])
    assert deferred > 0, "no burst was stored without delivery"


def _as_totemd(calls: list) -> tuple[list, list[int]]:
    """The calls as totemd makes them: every read (a lone token too) handed
    over with deliver=False, and deliver_pending once its actions ran.

    Returns:
        the calls, and for each take_actions of ``calls`` the index of the
        take_actions of the new calls by which the same messages must have
        been delivered (the one after deliver_pending, for a read).
    """
    out: list = []
    marks: list[int] = []
    takes = 0
    for name, args in calls:
        if name == "receive":
            name, args = "receive_many", ([args[0]], args[1], False)
        elif name == "receive_many":
            name, args = "receive_many", (list(args[0]), args[1], False)
        out.append((name, args))
        if name == "take_actions":
            takes += 1
            if len(out) >= 2 and out[-2][0] == "receive_many":
                out.append(("deliver_pending", ()))
                out.append(("take_actions", ()))
                takes += 1
            marks.append(takes - 1)
    return out, marks


@pytest.mark.parametrize("seed", [5, 11])
def test_reads_handed_over_as_totemd_does_deliver_the_same(seed):
    # Lone tokens go through receive_many([token], now, False) (its fast
    # path), bursts too, and deliver_pending follows each read's actions:
    # the same deliveries in the same order, and each one done by the end of
    # the read that makes it deliverable (as delivering at once would).
    cores = _recorded_cores(seed)
    rng = random.Random(seed)
    lone_tokens = 0
    for recorded in cores:
        for calls in (recorded.calls, _spoil(recorded.calls, rng)):
            plain, plain_stats = _replay(recorded, calls, bursts=True)
            totemd_calls, marks = _as_totemd(calls)
            later, later_stats = _replay(recorded, totemd_calls, bursts=True, after_token=True)
            assert _split(later)[1] == _split(plain)[1]
            done_plain = done_later = 0
            cumulative = [0]
            for actions in later:
                cumulative.append(cumulative[-1] + sum(type(a) is Deliver for a in actions))
            for index, actions in enumerate(plain):
                done_plain += sum(type(a) is Deliver for a in actions)
                done_later = cumulative[marks[index] + 1]
                assert done_later == done_plain, index
            skip = {"frames_freed"}
            assert {k: v for k, v in asdict(later_stats).items() if k not in skip} == \
                {k: v for k, v in asdict(plain_stats).items() if k not in skip}
            lone_tokens += sum(1 for name, args in totemd_calls if name == "receive_many"
                               and len(args[0]) == 1 and args[0][0][3:4] == b"\x00")
    assert lone_tokens > 0, "no token came alone"
