"""``coro bench KIND``: dispatch to the benchmark that owns KIND.

Every benchmark prints a table and, with ``--json``, one JSON object per line.
Benchmark modules provide ``add_arguments(parser)`` and ``run(args) -> int``
like the top-level subcommands.
"""

from __future__ import annotations

import argparse
import importlib

from clients.cli import _available

BENCHMARKS: dict[str, tuple[str, str]] = {
    "ipc": ("scripts.bench_ipc", "coroipc against Python IPC peers: throughput and round trip"),
    "core": ("totemd.sim.bench", "Totem core frames and messages per second in the simulator"),
    "totem": ("scripts.bench_totem", "ordered throughput and latency on a local cluster"),
    "corosync": ("scripts.bench_corosync", "corosync 3 + CPG itself, measured like coro bench totem (the peer)"),
    "cmap": ("scripts.bench_cmap", "objdb get/set round trips and tracking fan-out"),
    "transport": ("scripts.bench_transport", "UDP transport: GSO/GRO frames per second and CPU per visit"),
    "pg": ("scripts.bench_pg", "packing layer: CPU per frame and per message"),
    "local": ("scripts.bench_local", "totemd's local interface: IPC passes, deliveries, submits"),
    "submit": ("scripts.bench_submit_path", "a client's submit path: SUBMIT_MANY to frames"),
    "deliver": ("scripts.bench_deliver", "totemd's delivery path for large messages: CPU per delivered message"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        if not _available(module):
            continue
        bench_parser = sub.add_parser(name, help=help_text, description=help_text)
        bench_parser.set_defaults(_bench_module=module)
        importlib.import_module(module).add_arguments(bench_parser)


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(args._bench_module).run(args) or 0)
