"""``coro sim``: run the deterministic Totem simulator over many seeds.

    coro sim --nodes 5 --seeds 200 --faults all [--log-dir DIR]

Every seed runs faults, heals, waits for convergence, keeps a quiet window
and checks the EVS rules (S1-S16, L1-L3). The first violation stops the run
with exit status 1, printing the seed, the violated rules with their
witnesses, and a fault schedule shrunk to a minimal one that still fails.
With ``--log-dir`` each seed writes ``DIR/seed-<n>/n<node>.<inc>.jsonl``
(and ``harness.jsonl`` with its quiet window) for ``coro check-evs``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from totemd.sim.faults import FAULT_KINDS
from totemd.sim.runner import run_schedule, seed_config, shrink_schedule

__all__ = ["add_arguments", "run", "parse_faults"]


def parse_faults(text: str) -> tuple[str, ...]:
    """``all``, ``none`` or a comma-separated list of fault kinds."""
    if text == "all":
        return FAULT_KINDS
    if text in ("none", ""):
        return ()
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault kind(s) {', '.join(unknown)}; choose from {', '.join(FAULT_KINDS)}")
    return kinds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument("--seeds", type=int, default=100, help="number of seeds (default 100)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--faults", type=parse_faults, default=FAULT_KINDS,
                        help="all, none, or kinds: " + ",".join(FAULT_KINDS))
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="write one subdirectory of JSONL logs per seed")
    parser.add_argument("--fault-ms", type=float, default=1000.0,
                        help="virtual length of the fault phase (default 1000)")
    parser.add_argument("--quiet-ms", type=float, default=800.0,
                        help="virtual length of the quiet window (default 800)")
    parser.add_argument("--initial-seq", type=lambda v: int(v, 0), default=None,
                        help="first frame seq of every ring (default: near 2**32 for 30%% of seeds)")
    parser.add_argument("--no-shrink", action="store_true", help="do not shrink a failing schedule")
    parser.add_argument("--json", action="store_true", help="one JSON object per seed")


def run(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.seeds < 1:
        print("coro sim: --nodes and --seeds must be at least 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    events = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        log_dir = None
        if args.log_dir is not None:
            log_dir = args.log_dir / f"seed-{seed}"
            log_dir.mkdir(parents=True, exist_ok=True)
        config, schedule = seed_config(seed, args.nodes, log_dir, args.initial_seq,
                                       fault_ms=args.fault_ms, faults=args.faults)
        result = run_schedule(config, schedule, args.fault_ms, args.quiet_ms)
        events += result.events
        if args.json:
            print(json.dumps({"seed": seed, "nodes": args.nodes, "ok": result.ok,
                              "violated": list(result.report.violated),
                              "faults": len(schedule), "events": result.events}))
        if not result.ok:
            print(result.witness(), file=sys.stderr)
            if not args.no_shrink and len(schedule) > 1:
                from dataclasses import replace
                shrunk = shrink_schedule(replace(config, log_dir=None), schedule,
                                         args.fault_ms, args.quiet_ms)
                print("shrunk to a minimal failing schedule:", file=sys.stderr)
                print(shrunk.witness(trace_lines=20), file=sys.stderr)
            print(f"coro sim: seed {seed} failed (replay: coro sim --nodes {args.nodes} "
                  f"--first-seed {seed} --seeds 1)", file=sys.stderr)
            return 1
    elapsed = time.monotonic() - started
    if not args.json:
        print(f"{args.seeds} seeds x {args.nodes} nodes, faults "
              f"{','.join(args.faults) or 'none'}: all EVS rules hold "
              f"({events} events, {elapsed:.1f} s)")
    return 0
