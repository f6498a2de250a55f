"""LocalCluster's own promises: kill writes the crash record, close leaves no
process, socket file or namespace, and network faults need a namespace."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace

import pytest

from scripts.localcluster import ClusterError, ClusterSettings, LocalCluster

SMALL = ClusterSettings(nodes=2, token_ms=1000, consensus_ms=1200, join_ms=50)


def _namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}


@pytest.mark.root
@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: private network namespace")
def test_kill_logs_crash_and_close_leaves_nothing(tmp_path_factory):
    base = tmp_path_factory.mktemp("lc")
    cluster = LocalCluster(base, SMALL)
    try:
        cluster.setup()
        name = cluster.namespace.name
        assert name in _namespaces()
        cluster.start()
        ring = cluster.wait_converged()
        assert ring[0] == 1
        pids = cluster.namespace.pids()
        assert len(pids) >= 3  # supervisors, totemds, objdbs, and the worker
        cluster.kill(2)
        assert 2 not in cluster.running()
        last = (base / "evs" / "n2.1.jsonl").read_text().splitlines()[-1]
        assert json.loads(last)["ev"] == "crash"
        assert list((base / "node2" / "run").glob("*.sock"))  # a SIGKILLed node leaves them
        assert cluster.wait_converged() != ring
    finally:
        forced = cluster.close()
    assert forced == []
    assert name not in _namespaces()
    assert not [p for p in base.rglob("*") if p.is_socket()]
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


@pytest.mark.multiprocess
def test_network_faults_need_a_namespace(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("lh"), replace(SMALL, use_namespace=False))
    try:
        cluster.setup()
        assert not cluster.namespaced
        with pytest.raises(ClusterError, match="need root"):
            cluster.partition([[1], [2]])
        cluster.heal()  # nothing to heal: no error
    finally:
        cluster.close()


def test_run_dirs_too_long_for_sockets_are_refused(tmp_path):
    deep = tmp_path / ("d" * 100)
    with pytest.raises(ClusterError, match="sockaddr_un"):
        LocalCluster(deep, SMALL).setup()
