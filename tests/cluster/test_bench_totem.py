"""``coro bench totem`` runs a real cluster, prints one JSON row per size
with positive throughput and ordered latency figures, and leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"impl", "nodes", "size", "msgs_per_s", "mb_per_s", "p50_us", "p99_us", "sparse_p50_us",
          "sparse_p99_us", "sparse_p50_by_node", "crypto"}


@pytest.fixture
def short_tmp(tmp_path_factory) -> Path:
    # Node sockets live under the bench's directory: keep the path short.
    return tmp_path_factory.mktemp("bt")


def _bench(tmp_path: Path, *extra: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "clients.cli", "bench", "totem", "--json", "--duration", "0.3",
         "--sizes", "64,1024", "--latency-samples", "30", "--sparse-samples", "5", *extra],
        cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)}, capture_output=True, text=True,
        timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [row["size"] for row in rows] == [64, 1024]
    for row in rows:
        assert FIELDS <= row.keys()
        assert row["impl"] == "coro-totem"
        assert row["msgs_per_s"] > 0 and row["mb_per_s"] > 0
        assert row["mb_per_s"] == pytest.approx(row["msgs_per_s"] * row["size"] / 1e6, rel=0.01)
        assert 0 < row["p50_us"] <= row["p99_us"]
        # Sparse traffic: every node's client took its turn.
        assert 0 < row["sparse_p50_us"] <= row["sparse_p99_us"]
        assert sorted(row["sparse_p50_by_node"]) == [str(n) for n in range(1, row["nodes"] + 1)]
        assert all(p50 > 0 for p50 in row["sparse_p50_by_node"].values())
    assert not list(tmp_path.glob("coro-bt-*"))  # its directory is removed
    return rows


@pytest.mark.multiprocess
@pytest.mark.slow
def test_bench_totem_one_node_on_the_host_loopback(short_tmp):
    rows = _bench(short_tmp, "--nodes", "1", "--no-namespace", "--crypto-cipher", "aes128")
    assert all(row["nodes"] == 1 and row["crypto"] == "aes128/sha256" for row in rows)


@pytest.mark.root
@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: private network namespace")
def test_bench_totem_three_nodes_in_a_namespace(short_tmp):
    rows = _bench(short_tmp, "--nodes", "3")
    assert all(row["nodes"] == 3 and row["senders"] == 3 and row["crypto"] == "none" for row in rows)


def test_guest_halt_poll_setting_is_read_when_there_is_one(tmp_path):
    from scripts.bench_totem import _guest_halt_poll_ns

    setting = tmp_path / "guest_halt_poll_ns"
    setting.write_text("200000\n")
    assert _guest_halt_poll_ns(str(setting)) == 200000
    setting.write_text("not a number\n")
    assert _guest_halt_poll_ns(str(setting)) is None
    assert _guest_halt_poll_ns(str(tmp_path / "absent")) is None
