"""``coro bench ipc``: coroipc against the Python IPC peers, on this machine.

Measures, between two processes, one-way throughput (messages and megabytes
per second, MB = 10^6 bytes) at each message size, and request/response
round-trip latency (p50, p99) at 64 bytes, for coroipc and for the peers in
scripts/bench_ipc_peers.py, all in one run so the numbers share the
machine's conditions. How a case is run and checked is in
scripts/bench_ipc_harness.py.

Prints a table; with ``--json`` one JSON object per line::

    {"impl": "coroipc-batch", "mode": "throughput", "size": 64,
     "msgs_per_s": 2100000.0, "mb_per_s": 134.4}
    {"impl": "coroipc-request", "mode": "latency", "size": 64,
     "msgs_per_s": 52000.0, "mb_per_s": 3.3, "p50_us": 18.1, "p99_us": 30.2}

A case that cannot run here has ``"skipped"`` with the reason and null
numbers; a case that failed has ``"error"``, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Iterable, TextIO

from scripts import bench_ipc_peers
from scripts.bench_ipc_harness import CaseFailed, CorruptDelivery, CaseResult, Impl, run_case

DEFAULT_SIZES = (64, 1024, 65536)
LATENCY_SIZE = 64
DEFAULT_DURATION_S = 1.0
QUICK_DURATION_S = 0.2


def all_impls() -> dict[str, Impl]:
    """Every implementation, coroipc's first, in table order."""
    impls: list[Impl] = []
    try:
        from scripts import bench_ipc_coroipc
    except ImportError as error:  # coroipc itself missing: show the peers anyway
        impls.append(_Missing("coroipc", f"coroipc cannot be imported: {error}"))
    else:
        impls.extend(bench_ipc_coroipc.IMPLS)
    from scripts import bench_ipc_mq

    impls += [
        bench_ipc_peers.MultiprocessingQueue(),
        bench_ipc_peers.MultiprocessingPipe(),
        bench_ipc_peers.OsPipe(),
        bench_ipc_mq.PosixMessageQueue(),
        bench_ipc_peers.Zmq(),
        bench_ipc_peers.FasterFifo(),
    ]
    return {impl.name: impl for impl in impls}


class _Missing:
    """Stands in for an implementation that cannot be loaded, so the table says why."""

    modes = frozenset({"throughput", "latency"})
    batched = False
    note = None

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason

    def unavailable(self, size: int, mode: str) -> str | None:
        return self.reason


@dataclass(frozen=True, slots=True)
class Row:
    """One line of output: a measurement, a skip or a failure."""

    impl: str
    mode: str
    size: int
    result: CaseResult | None = None
    skipped: str | None = None
    error: str | None = None
    note: str | None = None
    runs: int = 1

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"impl": self.impl, "mode": self.mode, "size": self.size,
                               "msgs_per_s": None, "mb_per_s": None}
        if self.result is not None:
            row["msgs_per_s"] = _significant(self.result.msgs_per_s)
            row["mb_per_s"] = _significant(self.result.mb_per_s)
            if self.mode == "latency":
                row["p50_us"] = _significant(self.result.percentile_us(0.50))
                row["p99_us"] = _significant(self.result.percentile_us(0.99))
        for key in ("skipped", "error", "note"):
            if getattr(self, key):
                row[key] = getattr(self, key)
        if self.runs > 1:
            row["runs"] = self.runs
        return row


def _significant(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits (JSON stays short, small values stay non-zero)."""
    return float(f"{value:.{digits}g}")


def _parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = 1
    if text.endswith("k"):
        text, factor = text[:-1], 1024
    elif text.endswith("m"):
        text, factor = text[:-1], 1024 * 1024
    try:
        size = int(text) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 64, 1K, 64K)") from None
    if not 16 <= size <= 1024 * 1024:
        raise argparse.ArgumentTypeError(f"size {size} is outside 16 B .. 1 MiB")
    return size


def _parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(_parse_size(part) for part in text.split(",") if part.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help=f"how long each case runs (default {DEFAULT_DURATION_S}, "
                             f"{QUICK_DURATION_S} with --quick)")
    parser.add_argument("--sizes", type=_parse_sizes, default=DEFAULT_SIZES, metavar="LIST",
                        help="one-way message sizes, e.g. 64,1K,64K (the default)")
    parser.add_argument("--impls", default=None, metavar="LIST",
                        help="comma-separated implementations (default: all); "
                             "see --list")
    parser.add_argument("--list", action="store_true", help="list the implementations and exit")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip the round-trip latency cases")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run each case N times and report the median run (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DURATION_S} s per case: a smoke run, not a measurement")


def run(args: argparse.Namespace) -> int:
    impls = all_impls()
    if args.list:
        for name, impl in impls.items():
            print(f"{name:24} {', '.join(sorted(impl.modes))}")
        return 0
    try:
        chosen = _choose(impls, args.impls)
    except ValueError as error:
        print(f"coro bench ipc: {error}", file=sys.stderr)
        return 2
    duration_s = args.duration or (QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S)
    if duration_s <= 0 or args.repeat < 1:
        print("coro bench ipc: --duration and --repeat must be positive", file=sys.stderr)
        return 2
    cases = plan(chosen, args.sizes, not args.no_latency)
    printer = JsonPrinter(sys.stdout) if args.json else TablePrinter(sys.stdout, duration_s, args.repeat)
    rows = []
    with _InterruptLatch() as interrupted:
        for impl, size, mode in cases:
            row = measure(impl, size, mode, duration_s, args.repeat)
            if interrupted:
                # Ctrl-C whose KeyboardInterrupt was swallowed (raised inside a
                # finalizer run by the garbage collector): stop all the same.
                raise KeyboardInterrupt
            rows.append(row)
            printer.row(row)
    printer.finish(rows)
    return 1 if any(row.error for row in rows) else 0


class _InterruptLatch(list):
    """Remembers a SIGINT even if its KeyboardInterrupt is swallowed.

    Python prints and drops an exception raised in a ``__del__`` or a weakref
    callback, and a KeyboardInterrupt can land there; the latch (a list that
    is true once a SIGINT came) lets the run stop anyway. Main thread only.
    """

    def __enter__(self) -> "_InterruptLatch":
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.append(signum)
        raise KeyboardInterrupt

    def __exit__(self, *exc_info: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _choose(impls: dict[str, Impl], names: str | None) -> list[Impl]:
    if not names:
        return list(impls.values())
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in impls]
    if unknown:
        raise ValueError(f"unknown implementation {', '.join(unknown)}; "
                         f"known: {', '.join(impls)}")
    return [impls[name] for name in wanted]


def plan(impls: Iterable[Impl], sizes: Iterable[int], latency: bool) -> list[tuple[Impl, int, str]]:
    """The cases in run order: throughput by size, then latency at 64 B."""
    impls = list(impls)
    cases = [(impl, size, "throughput") for size in sizes for impl in impls
             if "throughput" in impl.modes]
    if latency:
        cases += [(impl, LATENCY_SIZE, "latency") for impl in impls if "latency" in impl.modes]
    return cases


def measure(impl: Impl, size: int, mode: str, duration_s: float, repeat: int = 1) -> Row:
    """Run one case ``repeat`` times and keep the median run (never raises but for Ctrl-C).

    The median is by rate in throughput and by p50 in latency; any failed
    run makes the row a failure.
    """
    reason = impl.unavailable(size, mode)
    if reason:
        return Row(impl.name, mode, size, skipped=reason)
    # An implementation may run its cases its own way (posix_ipc-mq: in a namespace).
    runner = getattr(impl, "run_case", None)
    results = []
    try:
        for _ in range(repeat):
            if runner is not None:
                results.append(runner(size, mode, duration_s))
            else:
                results.append(run_case(impl, size, mode, duration_s))
    except (CaseFailed, CorruptDelivery, OSError) as error:
        return Row(impl.name, mode, size, error=f"{type(error).__name__}: {error}")
    if mode == "throughput":
        results.sort(key=lambda result: result.msgs_per_s)
    else:
        results.sort(key=lambda result: result.percentile_us(0.5))
    result = results[len(results) // 2]
    note = getattr(impl, "note", None)
    if callable(note):
        note = note(size, mode)
    return Row(impl.name, mode, size, result=result, note=note, runs=repeat)


class JsonPrinter:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def row(self, row: Row) -> None:
        self.out.write(json.dumps(row.as_json()) + "\n")
        self.out.flush()

    def finish(self, rows: list[Row]) -> None:
        pass


class TablePrinter:
    """A table printed a row at a time, so a long run shows progress."""

    def __init__(self, out: TextIO, duration_s: float, repeat: int = 1) -> None:
        self.out = out
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
        runs = f" (the median of {repeat} runs)" if repeat > 1 else ""
        out.write(f"coro bench ipc: {os.cpu_count()} CPUs ({platform.machine()}), "
                  f"load average {load}, Python {platform.python_version()}, "
                  f"{duration_s:g} s per case{runs}, MB = 10^6 bytes\n\n")
        out.write(f"{'impl':<22} {'mode':<10} {'size':>7} {'msgs/s':>12} {'MB/s':>10}"
                  f" {'p50 us':>8} {'p99 us':>8}  note\n")
        out.flush()

    def row(self, row: Row) -> None:
        size = _size_text(row.size)
        if row.result is None:
            text = f"{'-':>12} {'-':>10} {'':>8} {'':>8}  "
            text += f"skipped: {row.skipped}" if row.skipped else f"FAILED: {row.error}"
        else:
            result = row.result
            text = f"{result.msgs_per_s:>12,.0f} {result.mb_per_s:>10,.1f}"
            if row.mode == "latency":
                text += f" {result.percentile_us(0.5):>8.1f} {result.percentile_us(0.99):>8.1f}"
            else:
                text += f" {'':>8} {'':>8}"
            text += f"  {row.note}" if row.note else ""
        mode = "one-way" if row.mode == "throughput" else "round-trip"
        self.out.write(f"{row.impl:<22} {mode:<10} {size:>7} {text}".rstrip() + "\n")
        self.out.flush()

    def finish(self, rows: list[Row]) -> None:
        lines = summary(rows)
        if lines:
            self.out.write("\n" + "\n".join(lines) + "\n")
        self.out.flush()


def _size_text(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


# The targets for coroipc: (impl, mode, size, what, at least / below, goal);
# impl None means the best coroipc row.
TARGETS = (
    ("coroipc-batch", "throughput", 64, "msgs/s", ">=", 2_000_000),
    ("coroipc-batch", "throughput", 1024, "msgs/s", ">=", 1_500_000),
    (None, "throughput", 65536, "MB/s", ">=", 5_000),
    ("coroipc-request", "latency", 64, "p50 us", "<", 25),
)


def _value(row: Row, what: str) -> float:
    result = row.result
    if what == "msgs/s":
        return result.msgs_per_s
    if what == "MB/s":
        return result.mb_per_s
    return result.percentile_us(0.5)


def summary(rows: list[Row]) -> list[str]:
    """Sentences under the table: coroipc against the best peer, and the targets."""
    lines = []
    measured = [row for row in rows if row.result is not None]
    for mode, size in dict.fromkeys((row.mode, row.size) for row in measured):
        group = [row for row in measured if (row.mode, row.size) == (mode, size)]
        theirs = [row for row in group if not row.impl.startswith("coroipc")]
        if not theirs:
            continue
        for ours in (row for row in group if row.impl.startswith("coroipc")):
            if mode == "throughput":
                peer = max(theirs, key=lambda row: row.result.msgs_per_s)
                ratio = ours.result.msgs_per_s / peer.result.msgs_per_s
                lines.append(f"{_size_text(size)} one-way: {ours.impl} {ratio:.2f}x the best peer"
                             f" ({peer.impl}, {peer.result.msgs_per_s:,.0f} msgs/s)")
            else:
                peer = min(theirs, key=lambda row: row.result.percentile_us(0.5))
                lines.append(f"{_size_text(size)} round trip: {ours.impl} p50"
                             f" {ours.result.percentile_us(0.5):.1f} us, best peer {peer.impl}"
                             f" {peer.result.percentile_us(0.5):.1f} us")
    for impl, mode, size, what, relation, goal in TARGETS:
        candidates = [row for row in measured if (row.mode, row.size) == (mode, size)
                      and (row.impl == impl or impl is None and row.impl.startswith("coroipc"))]
        if not candidates:
            continue
        row = max(candidates, key=lambda row: _value(row, what))
        value = _value(row, what)
        met = value >= goal if relation == ">=" else value < goal
        shown = f"{value:,.0f}" if goal >= 1000 else f"{value:.1f}"
        lines.append(f"target: {row.impl} {_size_text(size)} {what} {relation} {goal:,}:"
                     f" {shown} ({'met' if met else 'NOT met'})")
    return lines


def main(argv: list[str] | None = None) -> int:
    from scripts._standalone import standalone

    return standalone(__doc__, add_arguments, run, argv, prog="bench_ipc")


if __name__ == "__main__":
    sys.exit(main())
