"""``coro bench totem``: ordered throughput and latency on a local cluster.

::

    coro bench totem --nodes 3 [--duration 3] [--senders 1|all] [--json]

Starts a cluster of real ``coro start`` nodes (scripts.localcluster: 3 nodes
in a private network namespace when root, else on the host's loopback;
udpu, netmtu 1500, no EVS log) and measures, for 64 B, 1 KiB, 8 KiB and
64 KiB messages:

- throughput: a client on each sending node keeps the node's send queue full
  (``offer_many`` batches sized to refill it, a refusal is back-pressure)
  for ``--duration`` seconds after a warm-up, and counts its own messages as
  the node delivers them in total order (``DeliveryBatch.count_from``, the
  payloads untouched). ``msgs_per_s`` is the cluster's ordered throughput
  (the sum over senders), ``mb_per_s`` its payload in 10^6 bytes/s;
- latency: one client submits one message at a time and waits until its own
  node delivers it (submit-to-own-delivery, which includes a token rotation
  and the agreed-order wait), with no other load; p50 and p99 in µs. Closed
  loop on node 1: the next message as soon as the last one is delivered;
- sparse latency: the same one message at a time from every node's client
  in turn, each after a random pause around 20 ms (``--sparse-samples`` per
  node), the way corosync's cpghum sends (one message every -d ms): the
  idle ring's token is held at the representative between messages, and
  each message wakes it (token_hold_cancel, or the representative's own
  visit of the held token). p50 and p99 over every node's samples.

Reference (issue 4): corosync 3.1.7 with CPG, 3 nodes in namespaces on a
2-core machine of this kind: 42 k msgs/s at 64 B, 33.5 k at 1 KiB, 77 MB/s at
8 KiB, 78 MB/s at 64 KiB, latency p50 170 µs.

Every row carries the machine's 1-minute load average: the nodes, the
clients and anything else running share the same cores.

The clients run inside the namespace (coroipc doorbells are per network
namespace), in NamespaceWorker processes that call ``saturate`` and
``latency`` below.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "saturate", "latency", "Row", "SIZES"]

SIZES = (64, 1024, 8192, 65536)
WARMUP_S = 0.5
LATENCY_SAMPLES = 400
SPARSE_SAMPLES = 60  # per node
SPARSE_GAP_MS = 20.0  # longer than seqno_unchanged_const idle rotations: the token is held
BATCH_BYTES = 256 * 1024
IN_FLIGHT_BYTES = 2 * 1024 * 1024
REFERENCE = {64: "42 k msgs/s", 1024: "33.5 k msgs/s", 8192: "77 MB/s", 65536: "78 MB/s"}


@dataclass(frozen=True, slots=True)
class Row:
    impl: str
    nodes: int
    size: int
    msgs_per_s: float
    mb_per_s: float
    p50_us: float | None
    p99_us: float | None
    senders: int
    load_1m: float
    # Sparse traffic (latency with gap_ms): every node's client in turn, one
    # message every ~SPARSE_GAP_MS; p50/p99 over all nodes' samples, and the
    # p50 of each node (the representative's differs: it holds the token).
    sparse_p50_us: float | None = None
    sparse_p99_us: float | None = None
    sparse_p50_by_node: dict[str, float] | None = None
    # A KVM guest's idle polling before it halts a vCPU (None: not such a
    # guest). With 0, every wake-up of a sleeping daemon on an idle vCPU is a
    # VM exit and a host wake-up: on this project's VM that is ~20 us a hop,
    # which the latency pays three times per rotation (docs, "Fourth round").
    guest_halt_poll_ns: int | None = None
    # totem.crypto_cipher/crypto_hash of the run ("none", or "aes256/sha256").
    crypto: str = "none"
    # "loopback": the nodes on 127.0.0.x of one namespace; "lan": a namespace
    # per node, bridged (scripts.netns.Lan).
    topology: str = "loopback"
    # totem.transport: "udpu" (netmtu 1500) or "knet" (corosync's knet
    # netmtu 65536, frames cut to the link MTU: totemd.linkfrag).
    transport: str = "udpu"


# -- measurements (run inside the namespace, in a NamespaceWorker) ------------------------

def saturate(run_dir: str, size: int, duration_s: float, warmup_s: float = WARMUP_S) -> dict[str, Any]:
    """Keep one node's send queue full for ``warmup_s + duration_s`` and count
    our own messages as the node delivers them (after the warm-up).

    Returns:
        {"delivered": n, "bytes": b, "seconds": s, "try_again": t, "submitted": k,
        "cpu_s": this client's CPU seconds over warm-up and measurement,
        "submit_calls": round trips, "dispatch_calls": reads of the events};
        ``try_again`` counts the offers the node took only partly (the
        usual answer: each offer goes a little past what the queue holds).
    """
    # A saturating sender is batch work: SCHED_BATCH (no privilege needed)
    # keeps its wake-ups from preempting the daemons mid-turn, as corosync's
    # SCHED_RR keeps its clients below it. Measured, 3 nodes at 8 KiB:
    # 4.8-5.2k -> 5.5-5.9k msgs/s. The worker goes back to SCHED_OTHER for
    # what it runs next (the latency client).
    _run_as_batch_work()
    try:
        return _saturate(run_dir, size, duration_s, warmup_s)
    finally:
        _run_as_batch_work(False)


def _saturate(run_dir: str, size: int, duration_s: float, warmup_s: float) -> dict[str, Any]:
    from clients.totem import TotemClient

    payload = bytes(size)
    batch = max(1, min(256, BATCH_BYTES // max(size, 1)))
    # Enough in flight to keep the token busy, not so much that a backlog of
    # seconds is left behind for the next measurement.
    window = max(4 * batch, IN_FLIGHT_BYTES // max(size, 1))
    messages = [(payload, False)] * batch
    with TotemClient.connect(run_dir, subscribe=True) as client:
        me, inc = client.hello.node_id, client.hello.inc
        own = [0, 0]  # delivered in all, delivered while measuring
        counting = [False]

        def on_batch(delivered: Any) -> None:
            # Count our own deliveries on the batch's table, not one call each
            # (nor a look at the payloads).
            mine = delivered.count_from(me, inc)
            own[0] += mine
            if counting[0]:
                own[1] += mine

        def on_other(_event: Any) -> None:
            pass

        pacer = _Pacer(batch, window)
        cpu_start = time.process_time()
        start = time.monotonic()
        measure_from = start + warmup_s
        end = measure_from + duration_s
        full = False
        wakes = 0
        while True:
            now = time.monotonic()
            if not counting[0] and now >= measure_from:
                counting[0] = True
                measure_from = now
            if now >= end:
                break
            if not full:
                offer = pacer.offer(own[0])
                if offer:
                    accepted, _first = client.offer_many(messages[:offer])
                    pacer.accepted(offer, accepted)
                    full = accepted < offer
                else:
                    full = True
            # Read deliveries; wait for them only when nothing can be sent.
            # The queue has room again once some of our own messages left it
            # (they are delivered back as they are stamped); others'
            # deliveries do not make room, so they do not trigger a retry.
            own_before = own[0]
            wakes += 1
            if not client.dispatch_batches(on_batch, on_other, timeout=0.005 if full else 0.0) \
                    or own[0] > own_before:
                full = False
        counted = [own[1]]
        cpu_s = time.process_time() - cpu_start
        # Let what is still in flight be delivered before the next measurement.
        drain_until = time.monotonic() + 30.0
        while own[0] < pacer.submitted and time.monotonic() < drain_until:
            client.dispatch_batches(on_batch, on_other, timeout=0.1)
        elapsed = end - measure_from
        return {"delivered": counted[0], "bytes": counted[0] * size, "seconds": elapsed,
                "try_again": pacer.refusals, "submitted": pacer.submitted, "cpu_s": cpu_s,
                "submit_calls": pacer.calls, "dispatch_calls": wakes}


class _Pacer:
    """How many messages a saturating sender offers per ``submit_many``.

    The node's queue is full when it takes only part of an offer.
    How many of our messages were in flight then (submitted, not yet
    delivered back) is the level the node holds; the next offer is what
    brings us back to it, plus a quarter to find out whether it grew. So
    one round trip usually both fills the queue and gets the refusal that
    says it is full, instead of a full batch copied for a queue with room
    for a few, or an accepted offer followed by a second round trip only
    to learn that the queue is now full. Until the first refusal it offers
    whole batches.
    """

    def __init__(self, batch: int, window: int) -> None:
        self.batch, self.window = batch, window
        self.submitted = self.refusals = self.calls = 0
        self.level: int | None = None  # our messages in flight when the node last refused
        self._delivered = 0

    def offer(self, delivered: int) -> int:
        """Messages to offer now that ``delivered`` of ours came back (0: wait)."""
        self._delivered = delivered
        in_flight = self.submitted - delivered
        room = self.window - in_flight
        if room <= 0:
            return 0
        if self.level is None:
            return min(self.batch, room)
        gap = max(1, self.level - in_flight)
        return min(self.batch, room, gap + max(1, self.level // 4))

    def accepted(self, offered: int, accepted: int) -> None:
        """Record a reply: ``accepted`` of the ``offered`` were queued."""
        self.calls += 1
        self.submitted += accepted
        in_flight = self.submitted - self._delivered
        if accepted < offered:
            self.refusals += 1
            self.level = in_flight
        elif self.level is not None and in_flight > self.level:
            self.level = in_flight


def _run_as_batch_work(batch: bool = True) -> None:
    """Switch this process to SCHED_BATCH (or back to SCHED_OTHER)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH if batch else os.SCHED_OTHER,
                              os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or refused: measure as is
        pass


def latency(run_dir: str, size: int, samples: int = LATENCY_SAMPLES,
            gap_ms: float = 0.0) -> dict[str, Any]:
    """Submit-to-own-delivery latency, one message at a time (µs).

    The client side is kept short: the wait for the delivery is one sleep on
    the event ring's doorbell (no polling, no sleeps), and the delivery is
    matched on its origin fields as the event is read in place (no event
    object, no copy of the payload).

    Args:
        gap_ms: 0 submits each message as soon as the previous one is
            delivered (closed loop). Otherwise the client first sleeps a
            random 0.5-1.5 x gap_ms (seeded): sparse traffic, as corosync's
            cpghum sends (one message every -d ms); an idle ring's token is
            then held at the representative (after seqno_unchanged_const
            quiet rotations) and each message wakes it.

    Returns:
        {"p50_us": .., "p99_us": .., "samples": n, "values_us": the samples, sorted}
    """
    from clients.totem import TotemClient

    payload = bytes(size)
    values: list[float] = []
    pause = random.Random(size).uniform if gap_ms > 0 else None
    with TotemClient.connect(run_dir, subscribe=True) as client:
        me, inc = client.hello.node_id, client.hello.inc
        awaited = [0, False]  # sseq, seen

        def on_deliver(sender: int, sinc: int, sseq: int, *_rest: Any) -> None:
            if sseq == awaited[0] and sender == me and sinc == inc:
                awaited[1] = True

        def on_other(_event: Any) -> None:
            pass

        for _ in range(samples + samples // 10):
            if pause is not None:
                time.sleep(pause(0.5, 1.5) * gap_ms / 1000.0)
            started = time.perf_counter_ns()
            awaited[0], awaited[1] = client.submit(payload), False
            deadline = time.monotonic() + 5.0
            while not awaited[1]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"message {me}.{inc}.{awaited[0]} was not delivered within 5 s")
                client.dispatch_deliveries(on_deliver, on_other, timeout=remaining)
            values.append((time.perf_counter_ns() - started) / 1000.0)
    measured = sorted(values[samples // 10:])  # the first tenth warms up
    return {"p50_us": _percentile(measured, 0.50), "p99_us": _percentile(measured, 0.99),
            "samples": len(measured), "values_us": measured}


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))
    return round(values[index], 1)


# -- the command ---------------------------------------------------------------------------

def add_measurement_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say what is measured (coro bench totem and corosync)."""
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=3, help="cluster size")
    parser.add_argument("--duration", type=float, default=3.0, metavar="S",
                        help="seconds of measured throughput per size (after a warm-up)")
    parser.add_argument("--senders", choices=("1", "all"), default="all",
                        help="nodes that send during the throughput run")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES), metavar="B,B,..",
                        help="message sizes in bytes")
    parser.add_argument("--latency-samples", type=int, default=LATENCY_SAMPLES, metavar="N",
                        help="round trips per size for p50/p99")
    parser.add_argument("--sparse-samples", type=int, default=SPARSE_SAMPLES, metavar="N",
                        help=f"messages per node and size sent one every ~{SPARSE_GAP_MS:.0f} ms "
                             "(sparse-traffic latency; 0 skips it)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_measurement_arguments(parser)
    parser.add_argument("--crypto-cipher", choices=("none", "aes128", "aes192", "aes256"),
                        default="none", help="totem.crypto_cipher of the cluster (default none)")
    parser.add_argument("--crypto-hash", choices=("none", "md5", "sha1", "sha256", "sha384", "sha512"),
                        default=None, help="totem.crypto_hash (default: sha256 with a cipher, "
                                           "else none)")
    parser.add_argument("--topology", choices=("loopback", "lan"), default="loopback",
                        help="loopback: the nodes on 127.0.0.1-N in one namespace (default); "
                             "lan: a namespace per node on a bridge (192.0.2.0/24), as "
                             "coro bench corosync runs corosync")
    parser.add_argument("--transport", choices=("udpu", "knet"), default="udpu",
                        help="udpu: netmtu 1500, one frame per datagram (default); knet: "
                             "corosync 3's default transport, netmtu 65536, frames cut to "
                             "the link MTU as knet does")
    parser.add_argument("--no-namespace", action="store_true",
                        help="run on the host's loopback even as root")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")


HALT_POLL_PATH = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"


def _guest_halt_poll_ns(path: str = HALT_POLL_PATH) -> int | None:
    """The guest halt-polling window in ns, or None where there is none."""
    try:
        with open(path) as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def _load_1m() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return -1.0


def _measure_size(cluster: Any, workers: list[Any], size: int, duration_s: float,
                  samples: int, sparse_samples: int) -> Row:
    senders = list(cluster.nodes)[:len(workers)]
    results: list[dict[str, Any] | BaseException] = [{}] * len(workers)

    def one(index: int) -> None:
        node = cluster.nodes[senders[index]]
        try:
            results[index] = workers[index].call("scripts.bench_totem:saturate", str(node.run_dir),
                                                 size, duration_s, timeout_s=duration_s + 60.0)
        except BaseException as error:  # reported below, after every thread ended
            results[index] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise RuntimeError(f"throughput at {size} B failed: {failures[0]}")
    ok = [r for r in results if isinstance(r, dict)]
    msgs = sum(r["delivered"] / r["seconds"] for r in ok if r["seconds"] > 0)
    lat = workers[0].call("scripts.bench_totem:latency", str(cluster.nodes[1].run_dir), size,
                          samples, timeout_s=120.0 + samples * 0.05)
    sparse: list[float] = []
    by_node: dict[str, float] = {}
    if sparse_samples:
        for node_id, node in cluster.nodes.items():
            # A client where the node is (on a Lan each node has its namespace).
            one_node = cluster.worker_of(node_id).call(
                "scripts.bench_totem:latency", str(node.run_dir), size, sparse_samples,
                SPARSE_GAP_MS, timeout_s=120.0 + sparse_samples * SPARSE_GAP_MS * 0.0025)
            sparse += one_node["values_us"]
            by_node[str(node_id)] = one_node["p50_us"]
        sparse.sort()
    return Row(impl="coro-totem", nodes=len(cluster.nodes), size=size, msgs_per_s=round(msgs, 1),
               mb_per_s=round(msgs * size / 1e6, 2), p50_us=lat["p50_us"], p99_us=lat["p99_us"],
               senders=len(workers), load_1m=_load_1m(), guest_halt_poll_ns=_guest_halt_poll_ns(),
               sparse_p50_us=_percentile(sparse, 0.50) if sparse else None,
               sparse_p99_us=_percentile(sparse, 0.99) if sparse else None,
               sparse_p50_by_node=by_node or None)


def print_rows(rows: list[Row], out: Any) -> None:
    """The table's header and one line per row (coro bench totem and corosync)."""
    width = max([11, *(len(row.impl) for row in rows)])
    print(f"{'impl':<{width}} {'nodes':>5} {'size':>6} {'msgs/s':>10} {'MB/s':>8} {'p50 µs':>8} "
          f"{'p99 µs':>8} {'sparse p50':>10} {'p99':>6} {'senders':>7} {'load':>5}  "
          "corosync 3.1.7 (issue 4)", file=out)
    for row in rows:
        sparse = (f"{row.sparse_p50_us:>10.0f} {row.sparse_p99_us:>6.0f}"
                  if row.sparse_p50_us is not None and row.sparse_p99_us is not None
                  else f"{'-':>10} {'-':>6}")
        print(f"{row.impl:<{width}} {row.nodes:>5} {row.size:>6} {row.msgs_per_s:>10.0f} "
              f"{row.mb_per_s:>8.2f} {row.p50_us or 0:>8.0f} {row.p99_us or 0:>8.0f} {sparse} "
              f"{row.senders:>7} {row.load_1m:>5.1f}  {REFERENCE.get(row.size, '')}", file=out)


def _print_table(rows: list[Row], out: Any) -> None:
    print_rows(rows, out)
    print("Reference latency: corosync p50 170 µs. MB = 10^6 bytes of payload. p50/p99: closed "
          "loop on node 1 (the next message as soon as the last is delivered); sparse: every "
          f"node in turn, one message every ~{SPARSE_GAP_MS:.0f} ms (the idle token is held "
          "between them, as with corosync's cpghum).", file=out)
    if rows and rows[0].topology == "lan":
        from scripts.netns import LAN_NETWORK

        print(f"Topology lan: a namespace per node, bridged ({LAN_NETWORK}): every datagram "
              "crosses two veths and a bridge.", file=out)
    if rows and rows[0].transport == "knet":
        print("Transport knet: netmtu 65536 (corosync's knet default), frames cut to the link "
              "MTU and joined again (totemd/linkfrag.py), as knet does for corosync.", file=out)
    if rows and rows[0].crypto != "none":
        print(f"Every datagram sealed: crypto {rows[0].crypto} (totemd/crypto.py).", file=out)
    poll_ns = rows[0].guest_halt_poll_ns if rows else None
    if poll_ns is not None:
        print(f"This VM's guest halt polling ({HALT_POLL_PATH}): {poll_ns} ns"
              + (" (idle vCPUs halt at once: each wake-up of a sleeping daemon is a VM exit)"
                 if poll_ns == 0 else ""), file=out)


def run(args: argparse.Namespace) -> int:
    from scripts.localcluster import ClusterError, ClusterSettings, LocalCluster
    from scripts.netns import NamespaceWorker, NetnsError

    try:
        sizes = [int(part) for part in str(args.sizes).split(",") if part.strip()]
    except ValueError:
        print(f"coro bench totem: --sizes wants numbers like 64,1024, got {args.sizes!r}", file=sys.stderr)
        return 2
    if (not sizes or any(size < 1 for size in sizes) or args.duration <= 0 or args.latency_samples < 1
            or args.sparse_samples < 0):
        print("coro bench totem: sizes, --duration and --latency-samples must be positive, "
              "--sparse-samples at least 0", file=sys.stderr)
        return 2
    cipher = args.crypto_cipher
    hash_ = args.crypto_hash or ("sha256" if cipher != "none" else "none")
    if cipher != "none" and hash_ == "none":
        print("coro bench totem: a crypto cipher needs a crypto hash", file=sys.stderr)
        return 2
    if args.topology == "lan" and (args.no_namespace or os.geteuid() != 0):
        print("coro bench totem: --topology lan needs root (a namespace per node) and a "
              "namespace", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="coro-bt-"))
    settings = ClusterSettings(nodes=args.nodes, token_ms=3000, consensus_ms=3600, evs_log=False,
                               use_namespace=not args.no_namespace, crypto_cipher=cipher,
                               crypto_hash=hash_, topology=args.topology,
                               transport=args.transport)
    crypto = "none" if not settings.crypto else f"{cipher}/{hash_}"
    cluster = LocalCluster(base, settings)
    workers: list[Any] = []
    rows: list[Row] = []
    try:
        cluster.setup()
        where = cluster.where()
        if not args.json:
            print(f"Starting {args.nodes} node(s) in the {where} ...", file=sys.stderr)
        cluster.start()
        cluster.wait_converged(30.0)
        count = args.nodes if args.senders == "all" else 1
        workers = [NamespaceWorker(cluster.namespace_of(node_id)) for node_id in range(1, count + 1)]
        for size in sizes:
            row = replace(_measure_size(cluster, workers, size, args.duration,
                                        args.latency_samples, args.sparse_samples), crypto=crypto,
                          topology=args.topology, transport=args.transport,
                          impl="coro-totem" if args.transport == "udpu" else "coro-totem-knet")
            rows.append(row)
            if args.json:
                print(json.dumps(asdict(row)), flush=True)
        if not args.json:
            _print_table(rows, sys.stdout)
        return 0
    except (ClusterError, NetnsError, RuntimeError, OSError) as error:
        print(f"coro bench totem: {error}", file=sys.stderr)
        for node_id in cluster.nodes:
            print(f"--- node {node_id} ---\n{cluster.output(node_id, 10)}", file=sys.stderr)
        return 1
    finally:
        for worker in workers:
            worker.close()
        cluster.close()
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
