"""``coro bench corosync`` runs corosync 3 with CPG in three namespaces, prints
a JSON row measured like bench totem's, and leaves nothing behind: no
corosync, no namespace, no libqb file in /dev/shm, no directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench_corosync import corosync_pids

ROOT = Path(__file__).resolve().parents[2]


def _namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             timeout=20, check=False).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def _orphaned_libqb_shm() -> set[str]:
    """libqb's /dev/shm files whose processes are all gone (leftovers). Its
    names carry the pids of the two ends (qb-<server>-<client>-...) or of the
    daemon (qb-corosync-<pid>-blackbox-...); a corosync of another run on the
    machine keeps its files, and they name live pids."""
    orphans = set()
    for name in os.listdir("/dev/shm"):
        if not name.startswith("qb-"):
            continue
        pids = [int(number) for number in re.findall(r"-(\d+)", name)][:2]
        if pids and not any(os.path.exists(f"/proc/{pid}") for pid in pids):
            orphans.add(name)
    return orphans


@pytest.mark.root
@pytest.mark.multiprocess
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a network namespace per corosync node")
def test_bench_corosync_three_nodes_measures_and_leaves_nothing(tmp_path):
    orphans = _orphaned_libqb_shm()
    bench = subprocess.Popen(
        [sys.executable, "-m", "clients.cli", "bench", "corosync", "--nodes", "3", "--sizes", "1024",
         "--duration", "1", "--latency-samples", "50", "--sparse-samples", "3", "--json"],
        cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        # corosync may be installed first (apt-get): a generous bound.
        out, err = bench.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        bench.kill()
        bench.communicate()
        raise
    assert bench.returncode == 0, out + err
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(rows) == 1, out
    row = rows[0]
    assert row["impl"] == "corosync-cpg" and row["nodes"] == 3 and row["size"] == 1024
    assert row["senders"] == 3 and row["crypto"] == "none" and row["transport"] == "knet"
    assert row["msgs_per_s"] > 0 and row["mb_per_s"] > 0
    assert 0 < row["p50_us"] <= row["p99_us"]
    assert 0 < row["sparse_p50_us"] <= row["sparse_p99_us"]
    assert sorted(row["sparse_p50_by_node"]) == ["1", "2", "3"]
    assert "left" not in err and "removed" not in err, err  # teardown found nothing to clean
    # Nothing of the run is left: its Lan's namespaces are coro-<bench pid>-*.
    assert not corosync_pids(under=str(tmp_path))
    assert not {name for name in _namespaces() if name.startswith(f"coro-{bench.pid}-")}
    assert not _orphaned_libqb_shm() - orphans
    assert not list(tmp_path.glob("coro-bc-*"))


def test_config_puts_each_node_on_the_lan_with_its_own_state_and_log(tmp_path):
    from scripts.bench_corosync import render_config

    text = render_config(2, 3, "udpu", tmp_path)
    assert "transport: udpu" in text and "token: 3000" in text
    assert [f"ring0_addr: 192.0.2.{n}" in text for n in (1, 2, 3)] == [True] * 3
    assert f"state_dir: {tmp_path / 'state'}" in text
    assert f"logfile: {tmp_path / 'corosync.log'}" in text and "to_stderr: no" in text
    assert "sched_rr" not in text  # corosync's default SCHED_RR stays


def test_missing_corosync_without_root_says_what_to_install(monkeypatch):
    import scripts.bench_corosync as bench

    monkeypatch.setattr(bench, "_missing", lambda: ["corosync", "libcpg-dev"])
    monkeypatch.setattr(bench.os, "geteuid", lambda: 1000)
    with pytest.raises(bench.BenchError, match="apt-get install corosync libcpg-dev"):
        bench.ensure_corosync()
