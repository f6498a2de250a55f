"""``coro load``: put ordered messages through a running node and check what comes back.

::

    coro load -c corosync.conf --node-id 1 --size 200 --rate 2000 --duration 10 --safe-fraction 0.1
    coro load --run-dir /run/corosync --size 1000 --rate 500 --duration 5 --json

Every message carries a small header and a CRC of its body::

    b"CLD1" | u32 node | u32 loader pid | u64 counter | u64 submit time (ns) | u32 crc32(body) | body

The loader subscribes to the node's deliveries and checks every message it
sees, its own and other loaders' (run one per node for a cluster-wide
check): the CRC (corruption), the order of each loader's counter and of
each sender's sseq (reordering), and, at the end, that every message it
submitted came back (loss). It prints sent, delivered, throughput and the
submit-to-delivery latency of its own messages, and exits 1 on corruption,
reordering or a lost message, 0 otherwise.

The rate is held with a schedule: at time t it has tried to submit
``rate x t`` messages, in batches of up to ``--batch`` per round trip. A
full send queue (TryAgain) is counted and retried after reading deliveries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from clients.totem import ConfEvent, DeliverEvent, TotemClient, TotemError, TryAgain

__all__ = ["add_arguments", "run", "encode_payload", "check_payload", "LoadChecker"]

HEADER = struct.Struct("!4sIIQQI")
MAGIC = b"CLD1"
DRAIN_TIMEOUT_S = 10.0


def encode_payload(node: int, pid: int, counter: int, size: int, now_ns: int, body: bytes) -> bytes:
    """A loader message of ``size`` bytes (at least the header)."""
    body = body[:max(0, size - HEADER.size)]
    return HEADER.pack(MAGIC, node, pid, counter, now_ns, zlib.crc32(body)) + body


def check_payload(data: bytes) -> tuple[int, int, int, int] | None:
    """(node, pid, counter, submit ns) of an intact loader message; None if
    it is not one; raises ValueError if the CRC does not match (corruption)."""
    if len(data) < HEADER.size:
        return None
    magic, node, pid, counter, sent_ns, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        return None
    if zlib.crc32(memoryview(data)[HEADER.size:]) != crc:
        raise ValueError(f"CRC mismatch in message {node}/{pid}/{counter}")
    return node, pid, counter, sent_ns


@dataclass
class LoadChecker:
    """Checks every delivery; collects latencies of our own messages."""

    node: int
    pid: int
    delivered: int = 0
    delivered_bytes: int = 0
    foreign: int = 0
    corrupt: int = 0
    reordered: int = 0
    gaps: int = 0
    conf_changes: int = 0
    own_delivered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _last_counter: dict[tuple[int, int], int] = field(default_factory=dict)
    _last_sseq: dict[tuple[int, int], int] = field(default_factory=dict)
    _conf_since: set[tuple[int, int]] = field(default_factory=set)

    def on_event(self, event: Any) -> None:
        """Check one event (a ``DeliverEvent`` or ``ConfEvent``)."""
        if isinstance(event, ConfEvent):
            self.conf_changes += 1
            self._conf_since = set(self._last_counter)  # gaps across a change are not loss here
            return
        if isinstance(event, DeliverEvent):
            self.on_delivery(event.sender, event.sinc, event.sseq, 0, 0, event.seq,
                             1 if event.safe else 0, event.data)

    def on_delivery(self, sender: int, sinc: int, sseq: int, _ring_rep: int, _ring_seq: int,
                    _seq: int, _flags: int, data: Any) -> None:
        """Check one delivery (``TotemClient.dispatch_deliveries``'s callback)."""
        now = time.monotonic_ns()
        self.delivered += 1
        self.delivered_bytes += len(data)
        origin = (sender, sinc)
        last_sseq = self._last_sseq.get(origin)
        if last_sseq is not None and sseq <= last_sseq:
            self._problem(f"sender {sender}.{sinc}: sseq {sseq} after {last_sseq}")
            self.reordered += 1
        self._last_sseq[origin] = sseq
        try:
            identity = check_payload(data)
        except ValueError as error:
            self.corrupt += 1
            self._problem(f"{sender}.{sinc}.{sseq}: {error}")
            return
        if identity is None:
            self.foreign += 1
            return
        node, pid, counter, sent_ns = identity
        loader = (node, pid)
        last = self._last_counter.get(loader)
        if last is not None:
            if counter <= last:
                self.reordered += 1
                self._problem(f"loader {node}/{pid}: counter {counter} after {last}")
            elif counter != last + 1 and loader not in self._conf_since:
                self.gaps += 1
        self._conf_since.discard(loader)
        self._last_counter[loader] = counter
        if loader == (self.node, self.pid):
            self.own_delivered += 1
            self.latencies_ms.append((now - sent_ns) / 1e6)

    def _problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE", help="corosync.conf (to find the run dir)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--node-id", type=int, metavar="N", help="the node of the config to load")
    where.add_argument("--run-dir", metavar="DIR", help="the node's run directory")
    parser.add_argument("--size", type=int, default=200, metavar="BYTES", help="message size")
    parser.add_argument("--rate", type=float, default=1000.0, metavar="MSGS_PER_S")
    parser.add_argument("--duration", type=float, default=5.0, metavar="S")
    parser.add_argument("--safe-fraction", type=float, default=0.0, metavar="F",
                        help="share of messages submitted safe (0..1)")
    parser.add_argument("--batch", type=int, default=64, help="messages per submit round trip")
    parser.add_argument("--seed", type=int, default=None, help="seed of the safe/body choices")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run_dir(args: argparse.Namespace) -> str:
    if args.run_dir:
        return args.run_dir
    if args.config:
        from totemd.settings import resolve_settings
        return resolve_settings(args.config, node_id=args.node_id).run_dir
    directory = os.environ.get("CORO_RUN_DIR")
    if not directory:
        raise TotemError("give --run-dir, or -c FILE [--node-id N], or set CORO_RUN_DIR")
    return directory


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _validate(args: argparse.Namespace) -> str | None:
    if args.size < HEADER.size:
        return f"--size must be at least {HEADER.size} bytes (the loader's header)"
    if args.rate <= 0 or args.duration <= 0 or args.batch < 1:
        return "--rate, --duration and --batch must be positive"
    if not 0.0 <= args.safe_fraction <= 1.0:
        return "--safe-fraction must be within 0..1"
    return None


def _drive(totem: TotemClient, args: argparse.Namespace, checker: LoadChecker) -> dict[str, Any]:
    rng = random.Random(args.seed)

    def dispatch(timeout: float) -> None:
        totem.dispatch_deliveries(checker.on_delivery, checker.on_event, timeout=timeout)

    body = rng.randbytes(max(0, args.size - HEADER.size))
    pid = os.getpid()
    sent = try_again = 0
    start = time.monotonic()
    end = start + args.duration
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = min(int((now - start) * args.rate) + 1 - sent, args.batch)
        if due <= 0:
            wait = min(end, start + (sent / args.rate)) - now
            dispatch(timeout=max(0.0, wait))
            continue
        stamp = time.monotonic_ns()
        batch = [(encode_payload(totem.node_id, pid, sent + i + 1, args.size, stamp, body),
                  rng.random() < args.safe_fraction) for i in range(due)]
        try:
            totem.submit_many(batch)
            sent += due
        except TryAgain as error:
            sent += error.accepted
            try_again += 1
            dispatch(timeout=0.001)
        dispatch(timeout=0.0)
    submit_s = time.monotonic() - start
    drain_end = time.monotonic() + DRAIN_TIMEOUT_S
    while checker.own_delivered < sent and time.monotonic() < drain_end:
        dispatch(timeout=0.1)
    elapsed = time.monotonic() - start
    return {"sent": sent, "try_again": try_again, "submit_seconds": round(submit_s, 3),
            "elapsed_seconds": round(elapsed, 3)}


def run(args: argparse.Namespace) -> int:
    """``coro load``: 0 if every check passed, 1 on corruption/reordering/loss, 2 on bad use."""
    problem = _validate(args)
    if problem:
        print(f"coro load: {problem}", file=sys.stderr)
        return 2
    try:
        with TotemClient.connect(_run_dir(args)) as totem:
            checker = LoadChecker(node=totem.node_id, pid=os.getpid())
            result = _drive(totem, args, checker)
    except TotemError as error:
        print(f"coro load: {error}", file=sys.stderr)
        return 1
    lost = result["sent"] - checker.own_delivered
    latencies = checker.latencies_ms
    report = {
        **result, "size": args.size, "rate": args.rate, "delivered": checker.delivered,
        "own_delivered": checker.own_delivered, "lost": lost, "corrupt": checker.corrupt,
        "reordered": checker.reordered, "gaps": checker.gaps, "foreign": checker.foreign,
        "conf_changes": checker.conf_changes,
        "throughput_msgs_per_s": round(checker.delivered / result["elapsed_seconds"], 1),
        "throughput_mb_per_s": round(checker.delivered_bytes / result["elapsed_seconds"] / 1e6, 3),
        "latency_ms_p50": round(_percentile(latencies, 0.5), 3),
        "latency_ms_p99": round(_percentile(latencies, 0.99), 3),
        "latency_ms_max": round(max(latencies, default=0.0), 3),
        "problems": checker.problems,
    }
    failed = checker.corrupt or checker.reordered or lost
    report["result"] = "FAIL" if failed else "OK"
    if args.json:
        print(json.dumps(report))
    else:
        print(f"sent {report['sent']} messages of {args.size} B in {result['submit_seconds']} s "
              f"({report['try_again']} TRY_AGAIN)")
        print(f"delivered {report['delivered']} ({report['own_delivered']} own, "
              f"{report['delivered'] - report['own_delivered']} from others), "
              f"{report['throughput_msgs_per_s']} msg/s, {report['throughput_mb_per_s']} MB/s")
        print(f"latency (submit to own delivery): p50 {report['latency_ms_p50']} ms, "
              f"p99 {report['latency_ms_p99']} ms, max {report['latency_ms_max']} ms")
        print(f"corrupt {report['corrupt']}, reordered {report['reordered']}, lost {lost}, "
              f"gaps {report['gaps']}, configuration changes {report['conf_changes']}")
        for line in checker.problems:
            print(f"  {line}")
        print(f"RESULT: {report['result']}")
    return 1 if failed else 0
