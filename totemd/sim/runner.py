"""One seed end to end: start, faults, heal, quiet window, EVS check.

The phases of a run (virtual time, T = effective token timeout):

1. all nodes start at 0; the workload runs at every node;
2. faults from the schedule during [0, fault_ms);
3. at fault_ms the network heals, pauses end, crashed nodes restart, and
   the workload pauses;
4. converge for T_conv = 3 x (T + consensus) + 30 x join;
5. quiet window [S, E] of quiet_ms: the workload resumes until E - drain,
   then every node stops cleanly and the logs go to the EVS checker
   (S1-S16, and L1-L3 over the quiet window).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from totemd.evs import check_records
from totemd.evs.report import Report
from totemd.evslog import write_quiet
from totemd.sim.cluster import Cluster, SimConfig, sim_params
from totemd.sim.faults import FAULT_KINDS, FaultSchedule, random_schedule

__all__ = ["SeedResult", "run_seed", "run_schedule", "shrink_schedule", "seed_config",
           "NETWORK_KINDS"]

NETWORK_KINDS = ("partition", "heal_partition", "oneway", "heal_oneway", "loss", "duplicate",
                 "reorder", "token_loss")
_NS = 1_000_000


@dataclass(frozen=True)
class SeedResult:
    """The outcome of one seed."""

    seed: int
    nodes: int
    schedule: FaultSchedule
    report: Report
    events: int
    virtual_ms: float
    trace: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.report.ok

    def witness(self, trace_lines: int = 0) -> str:
        """The violated rules with their first witnesses, the schedule, and
        the last ``trace_lines`` state changes of the run."""
        lines = [f"seed {self.seed} nodes {self.nodes}: violated {', '.join(self.report.violated)}"]
        for name in self.report.violated:
            lines.append(f"  {name}: {self.report.result(name).witness}")
        lines.append("  schedule:")
        lines.extend(f"    {fault}" for fault in self.schedule)
        if trace_lines and self.trace:
            lines.append(f"  last {min(trace_lines, len(self.trace))} state changes:")
            lines.extend(f"    {line}" for line in self.trace[-trace_lines:])
        return "\n".join(lines)


def run_schedule(config: SimConfig, schedule: FaultSchedule, fault_ms: float = 1500.0,
                 quiet_ms: float = 1200.0, core_factory=None) -> SeedResult:
    """Run one cluster through a given fault schedule and check it.

    Args:
        config: the cluster (seed, size, timers, log_dir).
        schedule: faults within [0, fault_ms).
        fault_ms: length of the fault phase.
        quiet_ms: length of the quiet window.
        core_factory: replaces SrpCore (tests use it to plant a bug).

    Returns:
        The SeedResult with the checker's report.
    """
    params = config.params or sim_params(config.nodes)
    config = replace(config, params=params)
    cluster = Cluster(config)
    if core_factory is not None:
        import totemd.sim.cluster as cluster_module
        original = cluster_module.SrpCore
        cluster_module.SrpCore = core_factory
    try:
        return _run(cluster, config, schedule, fault_ms, quiet_ms)
    finally:
        if core_factory is not None:
            cluster_module.SrpCore = original


def _run(cluster: Cluster, config: SimConfig, schedule: FaultSchedule, fault_ms: float,
         quiet_ms: float) -> SeedResult:
    params = cluster.params
    for node_id in cluster.nodes:
        cluster.start_node(node_id)
    cluster.schedule(schedule)
    cluster.run_until(fault_ms)
    cluster.heal()
    cluster.submitting = False  # no load while the cluster converges
    paused_until = max(node.paused_until for node in cluster.nodes.values())
    for node_id, node in cluster.nodes.items():
        if node.core is None:
            cluster.start_node(node_id)
    token = params.effective_token_ms
    converge = 3 * (token + params.consensus_ms) + 30 * params.join_ms
    start = max(fault_ms, paused_until) + converge
    end = start + quiet_ms
    drain = quiet_ms * 0.6
    cluster.call_at(start, lambda c: setattr(c, "submitting", True))
    cluster.call_at(end - drain, lambda c: setattr(c, "submitting", False))
    cluster.run_until(end)
    cluster.stop_all()
    quiet = [{"ev": "quiet", "start": int(start * _NS), "end": int(end * _NS),
              "drain": int(drain * _NS)}]
    if config.log_dir is not None:
        write_quiet(config.log_dir, quiet[0]["start"], quiet[0]["end"], quiet[0]["drain"])
        records = {key: _read_back(log) for key, log in cluster.logs.items()}
    else:
        records = {key: log.records for key, log in cluster.logs.items()}
    report = check_records(records, quiet=quiet, nodes=list(cluster.nodes),
                           ring_seq_persisted=not cluster.ring_seq_lost)
    return SeedResult(config.seed, config.nodes, schedule, report, cluster.events, end,
                      tuple(cluster.state_changes))


def _read_back(log) -> list[dict]:
    import json
    with open(log.path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def seed_config(seed: int, nodes: int, log_dir: Path | None = None,
                initial_seq: int | None = None, cluster_rate_per_s: float = 120.0,
                fault_ms: float = 1000.0,
                faults: tuple[str, ...] = FAULT_KINDS) -> tuple[SimConfig, FaultSchedule]:
    """The cluster configuration and the random fault schedule of one seed.

    Args:
        seed: the seed (schedule, network, workload, cores).
        nodes: cluster size.
        log_dir: write the JSONL logs there (None: in memory).
        initial_seq: first frame seq of every ring (None: 30% of seeds start
            within 400 of 2**32, to cross the wrap).
        cluster_rate_per_s: messages per virtual second, summed over nodes.
        fault_ms: length of the fault phase (virtual).
        faults: fault kinds to draw from (empty: no faults).

    Returns:
        (config, schedule).
    """
    rng = random.Random(f"schedule-{seed}")
    params = sim_params(nodes)
    schedule = random_schedule(rng, nodes, fault_ms, params.effective_token_ms, faults) \
        if faults else ()
    if initial_seq is None:
        initial_seq = 0xFFFFFFFF - rng.randrange(0, 400) if rng.random() < 0.3 else 0
    config = SimConfig(nodes=nodes, seed=seed, params=params, initial_seq=initial_seq,
                       log_dir=log_dir, submit_interval_ms=1000.0 * nodes / cluster_rate_per_s)
    return config, schedule


def shrink_schedule(config: SimConfig, schedule: FaultSchedule, fault_ms: float = 1000.0,
                    quiet_ms: float = 800.0, core_factory=None) -> SeedResult:
    """Greedily drop faults while the run still fails (a minimal witness).

    Args:
        config: the failing run's configuration (log_dir should be None).
        schedule: its failing schedule.
        fault_ms: length of the fault phase.
        quiet_ms: length of the quiet window.
        core_factory: as for run_schedule.

    Returns:
        The failing result with the smallest schedule found (or the passing
        result if the schedule does not fail).
    """
    best = run_schedule(config, schedule, fault_ms, quiet_ms, core_factory)
    if best.ok:
        return best
    changed = True
    while changed:
        changed = False
        for index in range(len(best.schedule)):
            candidate = best.schedule[:index] + best.schedule[index + 1:]
            result = run_schedule(config, candidate, fault_ms, quiet_ms, core_factory)
            if not result.ok:
                best = result
                changed = True
                break
    return best


def run_seed(seed: int, nodes: int, faults: tuple[str, ...] = FAULT_KINDS,
             log_dir: Path | None = None, initial_seq: int | None = None,
             fault_ms: float = 1000.0, quiet_ms: float = 800.0,
             cluster_rate_per_s: float = 120.0) -> SeedResult:
    """Run one seed with a random schedule drawn from ``faults`` (see
    ``seed_config`` for the arguments) and check it."""
    config, schedule = seed_config(seed, nodes, log_dir, initial_seq, cluster_rate_per_s,
                                   fault_ms, faults)
    return run_schedule(config, schedule, fault_ms, quiet_ms)
