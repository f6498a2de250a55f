"""The namespace and iptables plumbing (scripts.netns) with plain sockets:
no daemon needed. Root only (namespaces, iptables)."""

from __future__ import annotations

import os
import time

import pytest

from scripts.netns import (Firewall, FaultRules, Lan, Namespace, NamespaceWorker, NetnsError,
                           lan_address, loopback_address)

pytestmark = [
    pytest.mark.root,
    pytest.mark.multiprocess,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and iptables need root"),
]

PROBE = "scripts.netns:udp_probe"
A, B, C = loopback_address(1), loopback_address(2), loopback_address(3)


@pytest.fixture
def namespace():
    ns = Namespace().create()
    try:
        yield ns
    finally:
        ns.destroy()


@pytest.fixture
def worker(namespace):
    with NamespaceWorker(namespace) as running:
        yield running


def test_create_and_destroy_leave_nothing():
    ns = Namespace()
    ns.create()
    try:
        assert ns.exists()
        addresses = ns.run(["ip", "-o", "addr", "show", "dev", "lo"]).stdout
        assert "127.0.0.1/8" in addresses
        links = ns.run(["ip", "-o", "link", "show"]).stdout.splitlines()
        # Only loopback: nothing in the namespace reaches another network.
        assert [line.split(":")[1].strip() for line in links] == ["lo"]
    finally:
        killed = ns.destroy()
    assert killed == []
    assert not ns.exists()
    assert ns.destroy() == []  # idempotent


def test_destroy_kills_what_still_runs_inside(namespace):
    sleeper = namespace.popen(["sleep", "60"])
    # ip netns exec enters the namespace and execs in place: the child's pid
    # is the command's, and it shows up inside once the setns is done.
    deadline = time.monotonic() + 5
    while sleeper.pid not in namespace.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sleeper.pid in namespace.pids()
    killed = namespace.destroy()
    assert sleeper.pid in killed
    assert sleeper.wait(5) == -9


def test_udp_flows_between_loopback_addresses_without_faults(worker):
    assert worker.call(PROBE, A, B, 40) == 40
    assert worker.call(PROBE, B, A, 40) == 40


def test_partition_blocks_both_directions_and_heal_restores(namespace, worker):
    firewall = Firewall(namespace).install()
    firewall.partition([[A], [B, C]])
    assert worker.call(PROBE, A, B, 30) == 0
    assert worker.call(PROBE, B, A, 30) == 0
    assert worker.call(PROBE, A, C, 30) == 0
    assert worker.call(PROBE, B, C, 30) == 30  # inside one side the link stays
    assert firewall.dropped_packets() >= 90
    firewall.heal()
    assert firewall.listing() == [f"-N {'CORO-FAULTS'}"]
    assert worker.call(PROBE, A, B, 30) == 30
    assert worker.call(PROBE, B, A, 30) == 30


def test_one_way_block_drops_one_direction_only(namespace, worker):
    firewall = Firewall(namespace).install()
    firewall.block(A, B)
    assert worker.call(PROBE, A, B, 30) == 0
    assert worker.call(PROBE, B, A, 30) == 30
    assert worker.call(PROBE, A, C, 30) == 30


def test_random_loss_drops_about_the_asked_share(namespace, worker):
    firewall = Firewall(namespace).install()
    firewall.random_loss(50)
    arrived = worker.call(PROBE, A, B, 2000)
    # Binomial(2000, 0.5): 1000 +- 22 (1 sigma); 850..1150 is > 6 sigma wide.
    assert 850 <= arrived <= 1150
    firewall.random_loss(0)
    assert worker.call(PROBE, A, B, 200) == 200


def test_rules_replace_atomically_and_keep_loss_over_partition(namespace):
    firewall = Firewall(namespace).install()
    firewall.random_loss(20)
    firewall.partition([[A], [B]])
    listing = "\n".join(firewall.listing())
    assert "statistic" in listing and "0.200000" in listing
    assert listing.count("-j DROP") == 3  # A->B, B->A and the loss rule
    firewall.partition([[A, B], [C]])
    assert "\n".join(firewall.listing()).count("-j DROP") == 5
    assert firewall.rules.loss_percent == 20


def test_fault_rules_render_is_one_restore_block():
    text = FaultRules(blocked=frozenset({(B, A)}), loss_percent=5).render()
    assert text.splitlines()[0] == "*filter" and text.splitlines()[-1] == "COMMIT"
    assert f"-s {B}/32 -d {A}/32 -p udp -j DROP" in text
    assert "--probability 0.050000" in text


def test_worker_reports_errors_and_keeps_serving(worker):
    with pytest.raises(NetnsError, match="ModuleNotFoundError"):
        worker.call("no_such_module_here:f")
    with pytest.raises(NetnsError, match="ValueError"):
        worker.call("scripts.netns:loopback_address", 999)
    assert worker.call("scripts.netns:loopback_address", 7) == "127.0.0.7"


def test_worker_on_the_host_without_a_namespace():
    with NamespaceWorker(None) as host_worker:
        assert host_worker.call("scripts.netns:loopback_address", 3) == "127.0.0.3"


# -- a namespace per node (Lan) ----------------------------------------------------------

GROUP = "239.192.77.9"


def _mcast_counts(lan, workers, sender, port, count=40):
    """Datagrams each other node got of ``count`` multicast by ``sender``."""
    others = [i for i in workers if i != sender]
    for i in others:
        workers[i].call("scripts.netns:udp_open", lan.address(i), port, GROUP)
    workers[sender].call("scripts.netns:udp_send", lan.address(sender), GROUP, port, count)
    return {i: workers[i].call("scripts.netns:udp_drain", port) for i in others}


def test_lan_carries_unicast_and_multicast_and_cuts_multicast_per_receiver():
    lan = Lan(3).create()
    workers = {}
    try:
        workers = {i: NamespaceWorker(ns) for i, ns in lan.nodes.items()}
        workers[3].call("scripts.netns:udp_open", lan.address(3), 6100)
        workers[1].call("scripts.netns:udp_send", lan.address(1), lan.address(3), 6100, 40)
        assert workers[3].call("scripts.netns:udp_drain", 6100) == 40
        assert _mcast_counts(lan, workers, 1, 6101) == {2: 40, 3: 40}
        # What one shared namespace cannot do: node 2 hears node 1's multicast, node 3 not.
        lan.partition([[1, 2], [3]])
        assert _mcast_counts(lan, workers, 1, 6102) == {2: 40, 3: 0}
        assert _mcast_counts(lan, workers, 3, 6103) == {1: 0, 2: 0}
        assert lan.dropped_packets() >= 120
        lan.heal()
        lan.block(2, 1)  # one way: 2 -> 1 only
        assert _mcast_counts(lan, workers, 2, 6104) == {1: 0, 3: 40}
        assert _mcast_counts(lan, workers, 1, 6105) == {2: 40, 3: 40}
        lan.heal()
        assert _mcast_counts(lan, workers, 3, 6106) == {1: 40, 2: 40}
    finally:
        for worker in workers.values():
            worker.close()
        killed = lan.destroy()
    assert killed == []
    assert not lan.exists()


def test_lan_rejects_bad_sizes_and_addresses():
    with pytest.raises(ValueError):
        Lan(0)
    with pytest.raises(ValueError):
        Lan(2).address(3)
    assert lan_address(4) == "192.0.2.4"
