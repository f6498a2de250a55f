"""``coro bench core``: frames and messages per second one Totem core
processes, measured in the simulator (no network, no clock: pure core CPU).

Three nodes, no faults, a saturating workload: 64-byte messages (packed many
to a frame) and 8 KiB messages (fragmented over several frames). The time is
the thread CPU time spent inside one node's core calls (receive, timer_expired,
submit, take_actions); the counts are the frames and messages that node
delivered. ``--profile`` prints the hottest functions (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time

from totemd.sim.cluster import Cluster, SimConfig, sim_params

__all__ = ["add_arguments", "run", "measure"]

CASES = (("64 B packed", 64, 20_000.0), ("8 KiB fragmented", 8192, 1_500.0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--virtual-ms", type=float, default=2000.0,
                        help="virtual time to simulate per case (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case, best kept (default 3)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    parser.add_argument("--json", action="store_true", help="one JSON object per case")


def _timed(function, box):
    # Thread CPU time, not wall time: on a shared box a preempted call would
    # otherwise be charged for other processes' time slices.
    perf = time.thread_time

    def wrapper(*args, **kwargs):
        start = perf()
        try:
            return function(*args, **kwargs)
        finally:
            box[0] += perf() - start
    return wrapper


def measure(size: int, rate_per_s: float, virtual_ms: float, seed: int = 1) -> dict:
    """Run one case and return the measured numbers for node 2."""
    config = SimConfig(nodes=3, seed=seed, params=sim_params(3), sizes=(size,),
                       size_weights=(1,), safe_fraction=0.0,
                       submit_interval_ms=3000.0 / rate_per_s)
    cluster = Cluster(config)
    for node in (1, 2, 3):
        cluster.start_node(node)
    cluster.run_until(200.0)  # the ring is formed
    core = cluster.nodes[2].core
    box = [0.0]
    for name in ("receive", "timer_expired", "submit", "take_actions"):
        setattr(core, name, _timed(getattr(core, name), box))
    before = core.stats()
    wall = time.perf_counter()
    cluster.run_until(200.0 + virtual_ms)
    wall = time.perf_counter() - wall
    after = core.stats()
    frames = after.frames_delivered - before.frames_delivered
    messages = after.messages_delivered - before.messages_delivered
    cpu = box[0]
    return {"size": size, "frames": frames, "messages": messages, "core_seconds": cpu,
            "frames_per_s": frames / cpu if cpu else 0.0,
            "messages_per_s": messages / cpu if cpu else 0.0,
            "sim_wall_seconds": wall,
            "virtual_messages_per_s": messages / (virtual_ms / 1000.0)}


def run(args: argparse.Namespace) -> int:
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        measure(64, 20_000.0, args.virtual_ms)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return 0
    rows = []
    for label, size, rate in CASES:
        best = max((measure(size, rate, args.virtual_ms, seed) for seed in range(args.repeat)),
                   key=lambda row: row["frames_per_s"])
        best["case"] = label
        rows.append(best)
        if args.json:
            print(json.dumps(best))
    if not args.json:
        print(f"{'case':<18} {'frames/s':>10} {'msgs/s':>10} {'frames':>8} {'msgs':>8} "
              f"{'core s':>7}  (one core of 3, CPU inside the core)")
        for row in rows:
            print(f"{row['case']:<18} {row['frames_per_s']:>10.0f} {row['messages_per_s']:>10.0f} "
                  f"{row['frames']:>8} {row['messages']:>8} {row['core_seconds']:>7.2f}")
    return 0
