"""coro cfgtool against a real 3-node cluster, run as an operator runs it:
every node connected, a killed node disconnected (and -b failing), the node
back after its restart, and -H stopping a node cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from scripts.localcluster import ClusterSettings, LocalCluster

SETTINGS = ClusterSettings(nodes=3, token_ms=1000, consensus_ms=1200, join_ms=50, evs_log=False)


def _cfgtool(cluster: LocalCluster, node_id: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clients.cli", "cfgtool", "--run-dir",
                           str(cluster.nodes[node_id].run_dir), *argv],
                          capture_output=True, text=True, timeout=60)


def _statuses(cluster: LocalCluster, node_id: int) -> list[str]:
    done = _cfgtool(cluster, node_id, "-s")
    assert done.returncode == 0, done.stderr
    return [line.split(":\t")[1] for line in done.stdout.splitlines() if "nodeid:" in line]


@pytest.mark.multiprocess
@pytest.mark.slow
def test_status_follows_the_membership_and_H_stops_a_node(tmp_path_factory):
    settings = SETTINGS if os.geteuid() == 0 else replace(SETTINGS, use_namespace=False)
    cluster = LocalCluster(tmp_path_factory.mktemp("cfgtool"), settings)
    try:
        cluster.setup()
        cluster.start()
        cluster.wait_converged()
        assert _statuses(cluster, 1) == ["localhost", "connected", "connected"]
        assert _statuses(cluster, 3) == ["connected", "connected", "localhost"]
        brief = _cfgtool(cluster, 2, "-s", "-b")
        assert (brief.returncode, brief.stdout.splitlines()[-1]) == (0, "\tstatus\t= 3n3")

        cluster.kill(3)
        cluster.wait_rings([[1, 2]])
        assert _statuses(cluster, 1) == ["localhost", "connected", "disconnected"]
        brief = _cfgtool(cluster, 1, "-s", "-b")
        assert (brief.returncode, brief.stdout.splitlines()[-1]) == (1, "\tstatus\t= n31")
        nodes = _cfgtool(cluster, 1, "-n").stdout
        assert "nodeid: 3 not reachable" in nodes and "nodeid: 2 reachable" in nodes

        cluster.restart(3)
        cluster.wait_converged()
        assert _statuses(cluster, 1) == ["localhost", "connected", "connected"]

        stop = _cfgtool(cluster, 2, "-H")
        assert stop.returncode == 0, stop.stderr
        assert 2 not in cluster.running()
        cluster.wait_rings([[1, 3]])
        assert _statuses(cluster, 1) == ["localhost", "disconnected", "connected"]
    finally:
        cluster.close()
