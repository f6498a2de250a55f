"""The deterministic simulator: reproducibility, and many seeds with every
fault checked by the EVS checker (S1-S16, L1-L3).

CI runs 200 seeds with all faults on each of 1, 2, 3, 5 and 7 nodes (the slow
tests). ``make soak`` sets CORO_SOAK=1, which raises that to 10,000 seeds.
"""

from __future__ import annotations

import os

import pytest

from totemd.evs import check_directory
from totemd.sim import run_seed
from totemd.sim.cluster import Cluster, SimConfig
from totemd.sim.faults import Fault
from totemd.sim.runner import run_schedule, seed_config

SEEDS = 10_000 if os.environ.get("CORO_SOAK") == "1" else 200


def _first_failure(nodes: int, seeds: range, **kwargs) -> str | None:
    for seed in seeds:
        result = run_seed(seed, nodes, **kwargs)
        if not result.ok:
            return result.witness()
    return None


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [1, 2, 3, 5, 7])
def test_seeds_with_all_faults_keep_every_evs_rule(nodes):
    assert _first_failure(nodes, range(SEEDS)) is None


def test_a_few_seeds_with_all_faults_on_three_nodes():
    assert _first_failure(3, range(1000, 1012)) is None


def test_fault_free_run_keeps_every_rule_and_is_checked_for_liveness():
    result = run_seed(5, 3, faults=())
    assert result.ok, result.witness()
    for rule in ("L1", "L2", "L3"):
        assert result.report.result(rule).ok


def test_seqs_near_the_wrap_point():
    """Every ring starts 40 below 2**32, so each one crosses the wrap."""
    failure = None
    for seed in range(20):
        result = run_seed(seed, 3, initial_seq=0xFFFFFFFF - 40)
        if not result.ok:
            failure = result.witness()
            break
    assert failure is None


def test_one_seed_replays_exactly():
    first = run_seed(42, 5)
    second = run_seed(42, 5)
    assert first.trace == second.trace
    assert first.events == second.events
    assert first.report.records == second.report.records


def test_log_dir_holds_one_file_per_incarnation_and_checks_clean(tmp_path):
    config, schedule = seed_config(7, 3, log_dir=tmp_path)
    schedule = (Fault(at_ms=300.0, kind="crash", node=2),
                Fault(at_ms=500.0, kind="restart", node=2, value=1.0))
    result = run_schedule(config, schedule)
    assert result.ok, result.witness()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["harness.jsonl", "n1.1.jsonl", "n2.1.jsonl", "n2.2.jsonl", "n3.1.jsonl"]
    report = check_directory(tmp_path, nodes=[1, 2, 3])
    assert report.ok, report.format()


def test_network_faults_are_applied():
    cluster = Cluster(SimConfig(nodes=3, seed=1))
    cluster.apply(Fault(at_ms=0.0, kind="partition", other=0b001))
    assert cluster.side == {1: 1, 2: 0, 3: 0}
    cluster.apply(Fault(at_ms=0.0, kind="oneway", node=1, other=2))
    assert (1, 2) in cluster.oneway
    cluster.apply(Fault(at_ms=0.0, kind="token_loss", value=0.3))
    cluster.heal()
    assert cluster.side is None and not cluster.oneway and cluster.token_loss == 0.0
