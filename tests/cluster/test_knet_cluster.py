"""A real cluster with ``transport: knet`` (netmtu 65536, frames cut to the
link MTU: totemd/linkfrag.py): with messages larger than a datagram it
orders through 20% random loss (a frame with a lost piece is lost whole and
asked for again) and through a node's SIGKILL and restart, with every EVS
rule holding, and the pieces really crossed the link."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from tests.cluster.harness import TEST_SETTINGS, Harness

pytestmark = [
    pytest.mark.root,
    pytest.mark.multiprocess,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root: a namespace per node (veth links of MTU 1500) and iptables"),
]

# Messages of 6 KiB at 40/s per node: most frames are cut in pieces (a veth's
# datagrams carry ~1.4 KiB), and the load leaves the 2 cores room.
SIZE = 6000
RATE = 40


def _views(harness: Harness) -> dict:
    return {node_id: view.raw["transport"] for node_id, view in harness.cluster.views().items()}


def test_a_knet_cluster_orders_large_messages_through_loss_and_a_restart(tmp_path):
    settings = replace(TEST_SETTINGS, transport="knet", topology="lan")
    with Harness(tmp_path, settings) as harness:
        harness.start()
        harness.converge()
        transport = _views(harness)
        # netmtu left to corosync's knet default; the link is a veth of MTU 1500.
        assert [transport[n]["link_mtu"] for n in (1, 2, 3)] == [1500] * 3
        harness.start_load(rate=RATE, size=SIZE)
        time.sleep(1.5)
        harness.cluster.random_loss(20)
        harness.note("20% random loss")
        time.sleep(3.0)
        dropped = harness.cluster.dropped_packets()
        harness.cluster.heal()
        harness.note(f"healed after {dropped} drops")
        assert dropped > 0
        harness.converge()
        harness.kill(2)
        harness.converge()
        harness.restart(2)
        harness.converge()
        harness.start_load([2], rate=RATE, size=SIZE)
        harness.quiet(2.0)
        transport = _views(harness)
        for node_id in (1, 2, 3):
            counters = transport[node_id]
            assert counters["frames_split"] > 0 and counters["frames_joined"] > 0, counters
            assert counters["fragments_malformed"] == 0, counters
        harness.finish()  # every EVS rule over all logs, liveness included
