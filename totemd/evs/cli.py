"""``coro check-evs DIR``: check per-node event logs against the EVS rules.

Exit status: 0 when no rule is violated, 1 when one is, 2 when the input
cannot be read (the message names the file and line).
"""

from __future__ import annotations

import argparse
import sys

from . import QuietWindow, check_directory
from .errors import InputError


def _node_list(text: str) -> list[int]:
    try:
        nodes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected node ids like 1,2,3, got {text!r}") from None
    if not nodes or any(node < 1 for node in nodes):
        raise argparse.ArgumentTypeError(f"expected positive node ids like 1,2,3, got {text!r}")
    return nodes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="directory of n<node>.<inc>.jsonl logs (and harness.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--nodes", type=_node_list, metavar="1,2,3",
                        help="the configured nodelist for S16 (default: the nodes with logs)")
    parser.add_argument("--quiet-from", type=int, metavar="T_NS",
                        help="declare a quiet window from T_NS (records' clock) for L1-L3")
    parser.add_argument("--quiet-until", type=int, metavar="T_NS",
                        help="end of that window (default: the first clean stop at or after "
                             "its start, else the last record)")
    parser.add_argument("--quiet-drain", type=int, default=0, metavar="NS",
                        help="L2 ignores messages submitted in the last NS of the window")
    parser.add_argument("--ring-seq-not-persisted", action="store_true",
                        help="do not require ring seq to grow across a node's restarts (S4)")


def run(args: argparse.Namespace) -> int:
    quiet = []
    try:
        if args.quiet_from is not None:
            end = args.quiet_until
            if end is None:
                end = _default_end(args.directory, args.quiet_from)
            if end < args.quiet_from or not 0 <= args.quiet_drain <= end - args.quiet_from:
                print(f"coro check-evs: bad quiet window {args.quiet_from}..{end} "
                      f"(drain {args.quiet_drain})", file=sys.stderr)
                return 2
            quiet.append(QuietWindow(args.quiet_from, end, args.quiet_drain))
        report = check_directory(args.directory, nodes=args.nodes, quiet=quiet,
                                 ring_seq_persisted=not args.ring_seq_not_persisted)
    except InputError as error:
        print(f"coro check-evs: unreadable input: {error}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.format())
    return 0 if report.ok else 1


def _default_end(directory: str, start: int) -> int:
    """Where a window opened with --quiet-from ends by default: at the first
    clean stop at or after ``start`` (the harness starts shutting the cluster
    down there), else at the last record."""
    from .history import build_history, load_directory

    records, _windows, notes, sources = load_directory(directory)
    history = build_history(records, notes=notes, sources=sources)
    stops = [i.end_t for i in history.incarnations if i.stopped and i.end_t >= start]
    if stops:
        return min(stops)
    return max(i.end_t for i in history.incarnations)
