"""Failure tests on real nodes: ``coro start`` processes on 127.0.0.x inside
a private network namespace, under load, with process faults (SIGKILL and
restart, SIGSTOP/SIGCONT, graceful leave) and network faults (iptables:
partition, one-way loss, random loss).

After every fault: the running nodes converge on one ring within the L1
budget (token + consensus + 4 x join + rotations + slack), and the EVS
checker finds no violation of S1-S16 in a consistent cut of every
incarnation's log. The last test of each cluster holds a quiet window, stops
all nodes and checks every rule, L1-L3 included.

One cluster is shared by the scenarios of a module (they run in file order
and each starts by restoring a whole, converged cluster), so the suite fits
in a few minutes on a 2-core machine. ``CORO_SOAK=1`` (``make soak``) repeats
each scenario and lengthens the faults.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from tests.cluster.harness import TEST_SETTINGS, Harness, soak_factor

pytestmark = [
    pytest.mark.root,
    pytest.mark.multiprocess,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root: private network namespace and iptables faults"),
]

SOAK = soak_factor()
TOKEN_S = TEST_SETTINGS.token_ms / 1000.0
LOAD_RATE = 100  # messages/s per node: steady traffic without starving 2 cores


def _hold(harness: Harness, seconds: float) -> None:
    """Let a fault act for ``seconds`` (a bounded wait, with the load running)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _restore(harness: Harness) -> None:
    """Heal the network, restart what is down, resume what is paused, load all."""
    cluster = harness.cluster
    cluster.heal()
    for node_id, node in cluster.nodes.items():
        if node.paused:
            cluster.resume(node_id)
    down = [n for n in cluster.nodes if n not in cluster.running()]
    for node_id in down:
        harness.restart(node_id)
    harness.converge()
    harness.start_load(rate=LOAD_RATE)


def _make_cluster(tmp_path_factory: pytest.TempPathFactory, nodes: int) -> Harness:
    settings = replace(TEST_SETTINGS, nodes=nodes)
    harness = Harness(tmp_path_factory.mktemp(f"cluster{nodes}"), settings)
    harness.__enter__()
    try:
        harness.start()
        harness.converge()
        harness.start_load(rate=LOAD_RATE)
    except BaseException:
        harness.close()
        raise
    return harness


# -- three nodes ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three(tmp_path_factory):
    harness = _make_cluster(tmp_path_factory, 3)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def cluster3(three):
    _restore(three)
    return three


@pytest.mark.parametrize("victim", [3, 1], ids=["member", "representative"])
def test_sigkill_and_restart(cluster3, victim):
    for _ in range(SOAK):
        cluster3.kill(victim)
        survivors = [n for n in cluster3.cluster.nodes if n != victim]
        ring = cluster3.converge()
        # A ring of the survivors only, led by the lowest surviving id.
        assert ring[0] == min(survivors)
        cluster3.assert_safe()
        cluster3.restart(victim)
        merged = cluster3.converge()
        assert merged[1] > ring[1]  # ring seqs only grow
        cluster3.start_load([victim], rate=LOAD_RATE)
        cluster3.assert_safe()


@pytest.mark.parametrize("factor", [0.5, 1.5, 3.0])
def test_pause_for_a_multiple_of_the_token_timeout(cluster3, factor):
    for _ in range(SOAK):
        before = cluster3.converge()
        cluster3.pause(2, factor * TOKEN_S)
        after = cluster3.converge()
        if factor >= 3.0:
            # Three token timeouts: the others must have formed a ring without
            # node 2, and it must have merged back: a newer ring.
            assert after[1] > before[1]
        cluster3.assert_safe()


# One namespace's loopback hands one multicast datagram to every node, so
# iptables (which sees it once, before it is handed out) cannot cut it for
# some receivers only: a partition needs udpu, or a namespace per node
# (CORO_CLUSTER_TOPOLOGY=lan, as make soak runs udp; tests/cluster/
# test_udp_multicast.py has a partition over multicast in make test).
_PARTITION_NEEDS_UNICAST = pytest.mark.skipif(
    TEST_SETTINGS.transport == "udp" and TEST_SETTINGS.topology != "lan",
    reason="CORO_CLUSTER_TRANSPORT=udp in one namespace: iptables there cannot partition "
           "multicast (CORO_CLUSTER_TOPOLOGY=lan can)")


@_PARTITION_NEEDS_UNICAST
def test_symmetric_partition_and_heal(cluster3):
    for _ in range(SOAK):
        cluster3.partition([[1], [2, 3]])
        lone, pair = cluster3.sides([[1], [2, 3]])
        assert lone[0] == 1 and pair[0] == 2
        _hold(cluster3, 1.0 * SOAK)  # both sides keep running, under load
        cluster3.cluster.heal()
        cluster3.note("healed")
        merged = cluster3.converge()
        assert merged[1] > max(lone[1], pair[1])
        cluster3.assert_safe()


def test_one_way_loss(cluster3):
    for _ in range(SOAK):
        cluster3.cluster.one_way_loss(1, 2)
        cluster3.note("one-way loss 1 -> 2")
        _hold(cluster3, 2 * TOKEN_S + TEST_SETTINGS.consensus_ms / 1000.0)
        assert cluster3.cluster.dropped_packets() > 0
        cluster3.cluster.heal()
        cluster3.note("healed")
        cluster3.converge()
        cluster3.assert_safe()


def test_random_loss_of_20_percent(cluster3):
    for _ in range(SOAK):
        cluster3.cluster.random_loss(20)
        cluster3.note("20% random loss")
        _hold(cluster3, 3.0 * SOAK)
        dropped = cluster3.cluster.dropped_packets()
        assert dropped > 0
        cluster3.cluster.heal()
        cluster3.note(f"healed after {dropped} drops")
        cluster3.converge()
        cluster3.assert_safe()


def test_graceful_leave_of_two_nodes_at_once(cluster3):
    for _ in range(SOAK):
        before = cluster3.converge()
        cluster3.leave([2, 3])
        alone = cluster3.converge()
        assert alone[0] == 1 and alone[1] > before[1]
        cluster3.assert_safe()
        cluster3.restart(2)
        cluster3.restart(3)
        cluster3.converge()
        cluster3.start_load([2, 3], rate=LOAD_RATE)
        cluster3.assert_safe()


def test_kill_everyone_then_restart_all(cluster3):
    for _ in range(SOAK):
        before = cluster3.converge()
        for node_id in (1, 2, 3):
            cluster3.kill(node_id)
        for node_id in (1, 2, 3):
            cluster3.restart(node_id)
        after = cluster3.converge()
        # Ring seqs are persisted: a cluster that restarts as a whole must not
        # reuse a ring id (S4 checks it per node across incarnations too).
        assert after[1] > before[1]
        cluster3.start_load(rate=LOAD_RATE)
        cluster3.assert_safe()


def test_three_nodes_quiet_window_and_every_rule(cluster3):
    cluster3.quiet(3.0 * SOAK)
    cluster3.finish()


# -- five nodes ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def five(tmp_path_factory):
    harness = _make_cluster(tmp_path_factory, 5)
    try:
        yield harness
    finally:
        harness.close()


def test_five_nodes_kill_two_with_the_representative_then_restart(five):
    _restore(five)
    for _ in range(SOAK):
        five.kill(1)
        five.kill(4)
        ring = five.converge()
        assert ring[0] == 2
        five.assert_safe()
        five.restart(1)
        five.restart(4)
        five.converge()
        five.start_load([1, 4], rate=LOAD_RATE)
        five.assert_safe()


@_PARTITION_NEEDS_UNICAST
def test_five_nodes_partition_pause_and_loss(five):
    _restore(five)
    for _ in range(SOAK):
        five.partition([[1, 2], [3, 4, 5]])
        five.sides([[1, 2], [3, 4, 5]])
        five.cluster.heal()
        five.note("healed")
        five.converge()
        five.assert_safe()
        five.pause(3, 1.5 * TOKEN_S)
        five.converge()
        five.cluster.random_loss(20)
        five.note("20% random loss")
        _hold(five, 2.0 * SOAK)
        five.cluster.heal()
        five.converge()
        five.assert_safe()


def test_five_nodes_quiet_window_and_every_rule(five):
    _restore(five)
    five.quiet(3.0 * SOAK)
    five.finish()
