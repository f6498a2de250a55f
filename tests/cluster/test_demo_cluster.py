"""The cluster story of ``coro demo`` (clients.demo_cluster): it tells every
step, exits 0, and leaves nothing behind, in a namespace (root) and on the
host's loopback."""

from __future__ import annotations

import io
import os
import subprocess

import pytest

from clients.demo_cluster import run_cluster_demo

STEPS = [
    "Starting a 3-node cluster",
    "crypto_cipher aes256 and crypto_hash sha256",
    "The cluster formed: ring",
    "Node 3 reports ring",
    "Killing node 3 with SIGKILL.",
    "formed ring",
    "`coro cfgtool -s`",
    "nodeid:    3:    disconnected",
    "Starting node 3 again",
    "the rings merged into ring",
    "All 3 nodes delivered the 9 messages in the same total order.",
    "Everything is stopped",
]


def _namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}


def _check_story(text: str) -> None:
    positions = [text.find(step) for step in STEPS]
    assert all(p >= 0 for p in positions), (STEPS, text)
    assert positions == sorted(positions), text
    # Each node prints the same delivery order (the demo's own claim, checked here).
    orders = [line.split(":", 1)[1] for line in text.splitlines() if " delivered 9:" in line]
    assert len(orders) == 3 and len(set(orders)) == 1, text


@pytest.mark.multiprocess
@pytest.mark.slow
def test_cluster_demo_on_the_host_loopback(tmp_path):
    out = io.StringIO()
    status = run_cluster_demo(out, base_dir=str(tmp_path / "demo"), namespace=False)
    text = out.getvalue()
    assert status == 0, text
    _check_story(text)
    assert "on the host's loopback" in text
    assert not [p for p in (tmp_path / "demo").rglob("*") if p.is_socket()]


@pytest.mark.root
@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: private network namespace")
def test_cluster_demo_in_a_namespace(tmp_path):
    before = _namespaces()
    out = io.StringIO()
    status = run_cluster_demo(out, base_dir=str(tmp_path / "demo"))
    text = out.getvalue()
    assert status == 0, text
    _check_story(text)
    assert "inside the private network namespace" in text
    assert "the namespace is deleted" in text
    assert _namespaces() <= before  # ours is gone (others' may come and go)
