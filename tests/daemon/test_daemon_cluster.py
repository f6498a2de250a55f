"""Three real nodes on 127.0.0.1-3: one ring, one order, a crash and a merge
back, and the EVS checker over every node's log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients.totem import ConfEvent, DeliverEvent, TryAgain
from tests.daemon.daemon_helpers import REPO, Node, free_udp_port, wait_for, write_config

pytestmark = pytest.mark.multiprocess

ADDRESSES = {1: "127.0.0.1", 2: "127.0.0.2", 3: "127.0.0.3"}


def _submit(client, messages) -> None:
    for data in messages:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                client.submit(data, safe=data.endswith(b"!"))
                break
            except TryAgain:
                if time.monotonic() > deadline:
                    raise
                client.dispatch(lambda _event: None, timeout=0.05)


class Collector:
    """Every event one subscribed client sees."""

    def __init__(self, client) -> None:
        self.client = client
        self.events: list[object] = []

    def pump(self) -> None:
        self.client.dispatch(self.events.append, timeout=0.0)

    def deliveries(self) -> list[DeliverEvent]:
        return [e for e in self.events if isinstance(e, DeliverEvent)]

    def wait_count(self, count: int, timeout_s: float = 20.0) -> list[DeliverEvent]:
        def enough():
            self.client.dispatch(self.events.append, timeout=0.1)
            return len(self.deliveries()) >= count
        wait_for(enough, timeout_s, f"{count} deliveries", interval_s=0.0)
        return self.deliveries()


@pytest.fixture
def cluster(tmp_path: Path):
    port = free_udp_port(list(ADDRESSES.values()))
    config = write_config(tmp_path / "corosync.conf", port, ADDRESSES)
    evs = tmp_path / "evs"
    evs.mkdir()
    nodes = {n: Node(tmp_path, config, n, evs_dir=evs) for n in ADDRESSES}
    yield nodes, evs
    for node in nodes.values():
        node.stop()


def test_three_nodes_one_order_crash_and_merge_back_evs_ok(cluster):
    nodes, evs = cluster
    for node in nodes.values():
        node.start()
    first = {n: node.wait_members([1, 2, 3], timeout_s=30.0) for n, node in nodes.items()}
    assert len({tuple(s["ring_id"]) for s in first.values()}) == 1

    clients = {n: node.client() for n, node in nodes.items()}
    try:
        collectors = {n: Collector(c) for n, c in clients.items()}
        for n, client in clients.items():
            _submit(client, [f"n{n} m{i}".encode() + (b"!" if i % 4 == 0 else b"") for i in range(20)])
        orders = {n: [e.mid for e in c.wait_count(60)] for n, c in collectors.items()}
        assert orders[1] == orders[2] == orders[3]
        for n in ADDRESSES:  # per-sender FIFO and payload integrity
            mine = [e for e in collectors[1].deliveries() if e.sender == n]
            assert [e.data for e in mine] == [f"n{n} m{i}".encode() + (b"!" if i % 4 == 0 else b"")
                                             for i in range(20)]
            assert [e.safe for e in mine] == [i % 4 == 0 for i in range(20)]
    finally:
        clients[3].close()

    loaders = [subprocess.Popen([sys.executable, "-m", "clients.cli", "load", "--run-dir",
                                 str(nodes[n].run_dir), "--size", "300", "--rate", "300",
                                 "--duration", "1.5", "--safe-fraction", "0.2", "--json"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n in (1, 2)]
    reports = []
    for loader in loaders:
        out, err = loader.communicate(timeout=60)
        assert loader.returncode == 0, out + err
        reports.append(json.loads(out))
    for report in reports:
        assert report["result"] == "OK" and report["sent"] > 100
        assert report["own_delivered"] == report["sent"]
        assert report["delivered"] > report["own_delivered"]   # it saw the other loader's too
        assert report["corrupt"] == report["reordered"] == 0

    nodes[3].kill()
    two = {n: nodes[n].wait_members([1, 2], timeout_s=20.0) for n in (1, 2)}
    assert two[1]["ring_id"] == two[2]["ring_id"]
    assert two[1]["ring_id"][1] > first[1]["ring_id"][1]
    assert two[1]["members_detail"]["3"]["status"] == "left"
    for n in (1, 2):
        wait_for(lambda n=n: any(isinstance(e, ConfEvent) and e.kind == "REG" and e.members == (1, 2)
                                 for e in collectors[n].events) or collectors[n].pump(),
                 10.0, f"node {n}'s client to see the ring of 1 and 2")
        trans = [e for e in collectors[n].events if isinstance(e, ConfEvent) and e.kind == "TRANS"]
        assert trans and trans[-1].left == (3,)

    nodes[3].start()
    three = {n: node.wait_members([1, 2, 3], timeout_s=30.0) for n, node in nodes.items()}
    assert len({tuple(s["ring_id"]) for s in three.values()}) == 1
    assert three[1]["ring_id"][1] > two[1]["ring_id"][1]
    assert three[3]["inc"] == first[3]["inc"] + 1
    assert three[1]["members_detail"]["3"]["join_count"] == 2

    clients[3] = nodes[3].client()
    collectors[3] = Collector(clients[3])
    try:
        before = {n: len(collectors[n].deliveries()) for n in (1, 2)}
        for n, client in clients.items():
            _submit(client, [f"after n{n} m{i}".encode() for i in range(10)])
        tails = {n: [e.mid for e in collectors[n].wait_count(before.get(n, 0) + 30)][before.get(n, 0):]
                 for n in ADDRESSES}
        assert tails[1] == tails[2] == tails[3]
    finally:
        for client in clients.values():
            client.close()

    for node in nodes.values():
        assert node.stop() == 0
    names = sorted(p.name for p in evs.iterdir())
    assert names == ["n1.1.jsonl", "n2.1.jsonl", "n3.1.jsonl", "n3.2.jsonl"]
    check = subprocess.run([sys.executable, "-m", "clients.cli", "check-evs", str(evs)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "EVS check of 4 incarnations" in check.stdout and "RESULT: OK" in check.stdout
