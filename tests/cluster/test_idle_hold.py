"""Sparse traffic on a real 3-node cluster: the idle token is held at the
representative between messages, and a message from any node gets it back
at once (token_hold_cancel, or the representative's own visit of the held
token) instead of waiting for the hold timer to release it."""

from __future__ import annotations

import os
import statistics
from dataclasses import replace

import pytest

from scripts.localcluster import ClusterSettings, LocalCluster
from scripts.netns import NamespaceWorker
from totemd.srp import TotemParams

SETTINGS = ClusterSettings(nodes=3, token_ms=1000, consensus_ms=1200, join_ms=50, evs_log=False)
SAMPLES = 8
GAP_MS = 40.0  # far more than seqno_unchanged_const quiet rotations: held each time


@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.parametrize("transport", ["udpu", "udp"])
def test_a_message_on_an_idle_ring_does_not_wait_for_the_hold_timer(tmp_path_factory, transport):
    if transport == "udp" and os.geteuid() != 0:
        pytest.skip("udp (multicast) needs root: the namespace's loopback carries the group")
    hold_ms = TotemParams(token_ms=SETTINGS.token_ms, nodes=SETTINGS.nodes).hold_ms
    cluster = LocalCluster(tmp_path_factory.mktemp("ih"),
                           replace(_host_or_namespace(), transport=transport))
    worker = None
    try:
        cluster.setup()
        cluster.start()
        assert cluster.wait_converged()[0] == 1  # node 1 is the representative
        worker = NamespaceWorker(cluster.namespace)
        for node_id in (2, 3, 1):
            before = cluster.views([node_id])[node_id].raw["srp"]
            result = worker.call("scripts.bench_totem:latency", str(cluster.nodes[node_id].run_dir),
                                 64, SAMPLES, GAP_MS, timeout_s=60.0)
            after = cluster.views([node_id])[node_id].raw["srp"]
            median_ms = statistics.median(result["values_us"]) / 1000.0
            # The hold timer would make it a good share of hold_ms (before the
            # fix: about half of it from nodes 2 and 3).
            assert median_ms < hold_ms / 8, (node_id, median_ms, hold_ms, result)
            if node_id == 1:  # the holder carries its own message on the held token
                assert after["token_hold_originations"] > before["token_hold_originations"]
            else:  # the others ask for the token
                assert after["hold_cancel_tx"] > before["hold_cancel_tx"]
    finally:
        if worker is not None:
            worker.close()
        cluster.close()


def _host_or_namespace() -> ClusterSettings:
    """A private namespace as root, the host's loopback otherwise."""
    return SETTINGS if os.geteuid() == 0 else replace(SETTINGS, use_namespace=False)
