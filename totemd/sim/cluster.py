"""N Totem cores in one process on virtual time (FoundationDB/VOPR style).

One ``random.Random`` per concern, all derived from the seed, and a heap of
events ordered by (virtual time, insertion counter): one seed gives one run,
exactly. The network is simulated per link (delay, loss, duplication,
reordering, one-way loss, token-only loss, partitions); nodes can crash,
restart (with or without their persisted ring seq), pause, leave, and run
their clocks fast or slow. Every node logs the EVS events through
``totemd.evslog.EventLog`` (in memory, or to ``log_dir``).

Both ways of driving a core are exercised, by node id: an even node reads
the frames of one token visit as one burst (``receive_many``, as a daemon
does with the datagrams of one network read; each frame is still lost or
duplicated on its own), an odd one packet by packet (``receive``); nodes 2,
3, 6, 7, ... get one ``DeliverFrame`` per frame, the others one ``Deliver``
per message; nodes 2, 3, 5, 6, 8, ... run with ``deliver_after_token`` (as
totemd does), and the bursty ones among them store a burst without
delivering it (``receive_many(deliver=False)``), calling ``deliver_pending``
``DEFERRED_DELIVERY_MS`` later unless a token visit delivered it first (at
once when the visit stamped their own message: ``own_delivery_owed``).
"""

from __future__ import annotations

import heapq
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from totemd.evslog import EventLog
from totemd.sim.faults import Fault, FaultSchedule
from totemd.sim.workload import SIZE_WEIGHTS, SIZES, AppMessage, decode_message, encode_message
from totemd.srp import (CancelTimer, ConfChange, ConfKind, Deliver, DeliverFrame, Originated,
                        PersistRingSeq, SendMulticast, SendUnicast, SetTimer, SrpCore,
                        StateChanged, SubmitRejected, TotemParams)

__all__ = ["SimConfig", "Cluster", "sim_params"]

_PACKET, _TIMER, _SUBMIT, _FAULT, _CALL = range(5)
#: How long a node that stores bursts without delivering them waits before
#: it calls deliver_pending (totemd's bound on deferred deliveries).
DEFERRED_DELIVERY_MS = 2.0
_NS = 1_000_000  # virtual ms -> log ns


def sim_params(nodes: int, token_ms: float = 200.0) -> TotemParams:
    """Short virtual timeouts for the simulator (corosync's ratios)."""
    return TotemParams(token_ms=token_ms, token_coefficient_ms=10.0, join_ms=20.0,
                       merge_ms=100.0, nodes=max(2, nodes), fail_recv_const=2500,
                       seqno_unchanged_const=6)


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """One simulated run.

    Attributes:
        nodes: cluster size (ids 1..nodes).
        seed: the only source of randomness.
        params: Totem timers (None: ``sim_params(nodes)``).
        latency_ms: (min, max) base one-way delay of a link.
        submit_interval_ms: mean time between two submits at one node.
        safe_fraction: share of messages submitted safe.
        initial_seq: first frame seq of every ring (near 2**32 to test wrap).
        log_dir: write JSONL logs there (None: in memory).
    """

    nodes: int = 3
    seed: int = 0
    params: TotemParams | None = None
    latency_ms: tuple[float, float] = (0.2, 1.5)
    submit_interval_ms: float = 25.0
    safe_fraction: float = 0.1
    sizes: tuple[int, ...] = SIZES
    size_weights: tuple[int, ...] = SIZE_WEIGHTS
    initial_seq: int = 0
    log_dir: Path | None = None


@dataclass
class _Node:
    """The harness side of one node: its current incarnation and clock."""

    node_id: int
    inc: int = 0
    core: SrpCore | None = None
    log: EventLog | None = None
    stored_ring_seq: int | None = None
    paused_until: float = 0.0
    rate: float = 1.0
    base_virtual: float = 0.0
    base_local: float = 0.0
    timers: dict = field(default_factory=dict)         # timer -> local deadline
    timer_entries: dict = field(default_factory=dict)  # timer -> generation in the heap
    timer_generation: int = 0
    sseq: int = 0
    last_delivered: str | None = None
    in_conf: object = None
    submitting: bool = True

    def local(self, now: float) -> float:
        return self.base_local + (now - self.base_virtual) * self.rate

    def virtual(self, local: float) -> float:
        return self.base_virtual + (local - self.base_local) / self.rate


class Cluster:
    """A simulated cluster. Drive it with ``run_until`` and ``apply``."""

    def __init__(self, config: SimConfig, core_factory=None) -> None:
        self.config = config
        # Builds each node's core (SrpCore's signature); the bench records one.
        self._core_factory = core_factory
        self.params = config.params or sim_params(config.nodes)
        seed = config.seed
        self._net_rng = random.Random(f"net-{seed}")
        self._app_rng = random.Random(f"app-{seed}")
        self._heap: list = []
        self._counter = 0
        self.now = 0.0
        self.nodes = {i: _Node(i) for i in range(1, config.nodes + 1)}
        self.logs: dict[tuple[int, int], EventLog] = {}
        link_rng = random.Random(f"links-{seed}")
        low, high = config.latency_ms
        self._link_delay = {(a, b): link_rng.uniform(low, high)
                            for a in self.nodes for b in self.nodes}
        self.loss = 0.0
        self.duplicate = 0.0
        self.reorder_ms = 0.0
        self.token_loss = 0.0
        self.side: dict[int, int] | None = None
        self.oneway: set[tuple[int, int]] = set()
        self.submitting = True
        self.ring_seq_lost = False
        self.events = 0
        self.packets = 0
        self.state_changes: list[str] = []

    # ---- scheduling -------------------------------------------------------------

    def _push(self, at: float, kind: int, node: int, payload: object, inc: int = 0) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, kind, node, payload, inc))

    def call_at(self, at: float, function) -> None:
        """Run ``function(cluster)`` at virtual time ``at``."""
        self._push(at, _CALL, 0, function)

    def schedule(self, faults: FaultSchedule, offset_ms: float = 0.0) -> None:
        """Queue the faults of a schedule."""
        for fault in faults:
            self._push(offset_ms + fault.at_ms, _FAULT, 0, fault)

    def run_until(self, end_ms: float) -> None:
        """Process events up to virtual time ``end_ms``."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end_ms:
            at, _count, kind, node_id, payload, inc = pop(heap)
            self.now = at
            self.events += 1
            if kind == _FAULT:
                self.apply(payload)
                continue
            if kind == _CALL:
                payload(self)
                continue
            node = self.nodes[node_id]
            core = node.core
            if core is None or (inc and inc != node.inc):
                continue
            if node.paused_until > at:
                self._counter += 1
                heapq.heappush(heap, (node.paused_until, self._counter, kind, node_id, payload, inc))
                continue
            if kind == _PACKET:
                if type(payload) is list:  # a burst of frames
                    if node_id % 3 != 1:  # deliver_after_token: store, deliver later
                        core.receive_many(payload, node.local(at), deliver=False)
                        if core.delivery_owed:
                            self._push(at + DEFERRED_DELIVERY_MS, _CALL, 0,
                                       _deferred_delivery(node_id, node.inc))
                    else:
                        core.receive_many(payload, node.local(at))
                else:
                    core.receive(payload, node.local(at))
            elif kind == _TIMER:
                # One heap entry per armed timer: a re-arm to a later deadline
                # only moves the deadline, and the entry re-queues itself.
                timer, generation = payload
                if node.timer_entries.get(timer) != generation:
                    continue
                deadline = node.timers.get(timer)
                if deadline is None:
                    del node.timer_entries[timer]
                    continue
                local = node.local(at)
                if local + 1e-6 < deadline:
                    self._push(max(at + 1e-6, node.virtual(deadline)), _TIMER, node_id,
                               payload, inc)
                    continue
                del node.timers[timer]
                del node.timer_entries[timer]
                core.timer_expired(timer, max(local, deadline))
            elif kind == _SUBMIT:
                self._submit(node)
            if core.own_delivery_owed and node.core is core:
                core.deliver_pending()  # as totemd: our message once the token is sent
            self._execute(node)
        self.now = max(self.now, end_ms)

    # ---- nodes ------------------------------------------------------------------

    def start_node(self, node_id: int, keep_ring_seq: bool = True) -> None:
        """Start (or restart) a node as a new incarnation."""
        node = self.nodes[node_id]
        if node.core is not None:
            return
        node.inc += 1
        node.timers.clear()
        node.timer_entries.clear()
        node.sseq = 0
        node.last_delivered = None
        node.in_conf = None
        node.submitting = True
        directory = self.config.log_dir
        log = EventLog(directory, node_id, node.inc, clock=lambda: int(self.now * _NS))
        node.log = log
        self.logs[(node_id, node.inc)] = log
        if not keep_ring_seq:
            node.stored_ring_seq = None
            self.ring_seq_lost = True
        rng = random.Random(f"core-{self.config.seed}-{node_id}-{node.inc}")
        factory = self._core_factory or SrpCore
        node.core = factory(node_id, self.params, rng=rng, initial_seq=self.config.initial_seq,
                            deliver_frames=node_id % 4 in (2, 3),
                            deliver_after_token=node_id % 3 != 1)
        node.core.start(node.local(self.now), node.stored_ring_seq)
        self._execute(node)
        self._schedule_submit(node)

    def crash_node(self, node_id: int) -> None:
        """Kill a node's incarnation now (its log ends with ``crash``)."""
        node = self.nodes[node_id]
        if node.core is None:
            return
        node.core = None
        node.timers.clear()
        node.timer_entries.clear()
        node.log.crash(t=int(self.now * _NS))

    def leave_node(self, node_id: int) -> None:
        """Graceful leave; the node is then down. EVS treats leaving like a
        failure of that process, so the log ends with a crash record."""
        node = self.nodes[node_id]
        if node.core is None:
            return
        node.core.leave(node.local(self.now))
        self._execute(node)
        self.crash_node(node_id)

    def stop_all(self) -> None:
        """Clean shutdown of every running node (end of a run)."""
        for node in self.nodes.values():
            if node.core is not None:
                node.core = None
                node.log.stop(t=int(self.now * _NS))
        for log in self.logs.values():
            log.close()

    def running(self) -> list[int]:
        """Ids of the nodes that have a running incarnation."""
        return [n.node_id for n in self.nodes.values() if n.core is not None]

    # ---- faults -----------------------------------------------------------------

    def apply(self, fault: Fault) -> None:
        """Inject one fault now."""
        kind = fault.kind
        node_id = fault.node if fault.node in self.nodes else 1
        node = self.nodes[node_id]
        if kind == "crash":
            self.crash_node(node_id)
        elif kind == "restart":
            self.start_node(node_id, keep_ring_seq=fault.value >= 0.5)
        elif kind == "pause":
            node.paused_until = max(node.paused_until, self.now + fault.value)
        elif kind == "skew":
            node.base_local = node.local(self.now)
            node.base_virtual = self.now
            node.rate = fault.value if fault.value > 0 else 1.0
        elif kind == "leave":
            self.leave_node(node_id)
        elif kind == "partition":
            self.side = {n: (fault.other >> (n - 1)) & 1 for n in self.nodes}
        elif kind == "heal_partition":
            self.side = None
        elif kind == "oneway":
            if fault.other != node_id and fault.other in self.nodes:
                self.oneway.add((node_id, fault.other))
        elif kind == "heal_oneway":
            self.oneway.clear()
        elif kind == "loss":
            self.loss = fault.value
        elif kind == "duplicate":
            self.duplicate = fault.value
        elif kind == "reorder":
            self.reorder_ms = fault.value
        elif kind == "token_loss":
            self.token_loss = fault.value

    def heal(self) -> None:
        """End every network fault (node faults stay)."""
        self.side = None
        self.oneway.clear()
        self.loss = self.duplicate = self.reorder_ms = self.token_loss = 0.0

    # ---- the network ------------------------------------------------------------

    def _multicast(self, src: int, frames: list[bytes]) -> None:
        """Send the multicasts of one batch of actions to every other node:
        as one burst to an even node (unless packets are being reordered),
        one by one to an odd one."""
        for dest in self.nodes:
            if dest == src:
                continue
            if dest % 2 == 0 and not self.reorder_ms:
                self._send_burst(src, dest, frames)
            else:
                for data in frames:
                    self._send(src, dest, data, False)

    def _send_burst(self, src: int, dest: int, frames: list[bytes]) -> None:
        """Frames that travel together (one delay) and are read together;
        each one is lost or duplicated on its own."""
        self.packets += len(frames)
        if self.side is not None and self.side[src] != self.side[dest]:
            return
        if (src, dest) in self.oneway:
            return
        rng = self._net_rng
        loss = self.loss
        kept = [data for data in frames if not (loss and rng.random() < loss)]
        if not kept:
            return
        base = self._link_delay[(src, dest)]
        delay = base * (1.0 + 0.2 * rng.random())
        if rng.random() < 0.01:
            delay += base * rng.paretovariate(2.0)  # a heavy tail
        self._push(self.now + delay, _PACKET, dest, kept)
        if self.duplicate:
            for data in kept:
                if rng.random() < self.duplicate:
                    self._push(self.now + delay + rng.uniform(0.0, 2 * base), _PACKET, dest, data)

    def _send(self, src: int, dest: int, data: bytes, token: bool) -> None:
        self.packets += 1
        if src == dest:
            self._push(self.now + 0.01, _PACKET, dest, data)
            return
        if self.side is not None and self.side[src] != self.side[dest]:
            return
        if (src, dest) in self.oneway:
            return
        rng = self._net_rng
        loss = self.loss
        if token and self.token_loss:
            loss = 1.0 - (1.0 - loss) * (1.0 - self.token_loss)
        if loss and rng.random() < loss:
            return
        base = self._link_delay[(src, dest)]
        delay = base * (1.0 + 0.2 * rng.random())
        if rng.random() < 0.01:
            delay += base * rng.paretovariate(2.0)  # a heavy tail
        if self.reorder_ms:
            delay += rng.uniform(0.0, self.reorder_ms)
        self._push(self.now + delay, _PACKET, dest, data)
        if self.duplicate and rng.random() < self.duplicate:
            self._push(self.now + delay + rng.uniform(0.0, 2 * base), _PACKET, dest, data)

    # ---- actions ----------------------------------------------------------------

    def _execute(self, node: _Node) -> None:
        core = node.core
        if core is None:
            return
        me = node.node_id
        multicasts: list[bytes] = []
        for action in core.take_actions():
            kind = type(action)
            if kind is SendMulticast:
                multicasts.append(action.data)
            elif kind is DeliverFrame:
                for message in action.messages:
                    self._log_deliver(node, action.sender, action.ring_id, action.seq,
                                      action.safe, message)
            elif kind is Deliver:
                self._log_deliver(node, action.sender, action.ring_id, action.seq,
                                  action.safe, action.message)
            elif kind is SetTimer:
                timer = action.timer
                previous = node.timers.get(timer)
                node.timers[timer] = action.deadline_ms
                if previous is None or action.deadline_ms < previous \
                        or timer not in node.timer_entries:
                    node.timer_generation += 1
                    node.timer_entries[timer] = node.timer_generation
                    self._push(max(self.now, node.virtual(action.deadline_ms)), _TIMER, me,
                               (timer, node.timer_generation), node.inc)
            elif kind is SendUnicast:
                self._send(me, action.dest, action.data, True)
            elif kind is CancelTimer:
                node.timers.pop(action.timer, None)
            elif kind is Originated:
                self._log_originate(node, action)
            elif kind is ConfChange:
                self._log_conf(node, action)
            elif kind is PersistRingSeq:
                node.stored_ring_seq = action.ring_seq
            elif kind is StateChanged:
                self.state_changes.append(f"{self.now:.3f} {action.text}")
        if multicasts:
            # After the loop: the network is not faster than the actions are run.
            self._multicast(me, multicasts)

    def _seq(self, seq: int) -> int:
        """The unwrapped position of a frame seq in its ring (for the logs)."""
        return (seq - self.config.initial_seq) & 0xFFFFFFFF

    def _log_conf(self, node: _Node, change: ConfChange) -> None:
        t = int(self.now * _NS)
        if change.kind is ConfKind.REG:
            conf_id = tuple(change.ring_id)
            node.log.conf("REG", conf_id, change.members, t=t)
        else:
            conf_id = (tuple(change.old_ring_id), tuple(change.ring_id))
            node.log.conf("TRANS", conf_id, change.members, t=t)
        node.in_conf = conf_id

    def _log_originate(self, node: _Node, action: Originated) -> None:
        t = int(self.now * _NS)
        for mid, sseq in action.handles:
            node.log.originate(mid, tuple(action.ring_id), self._seq(action.seq), sseq, t=t)

    def _log_deliver(self, node: _Node, sender: int, ring_id, seq: int, frame_safe: bool,
                     data: bytes) -> None:
        message = decode_message(data)
        crc = zlib.crc32(data)
        if message is None:
            mid, sinc, sseq, safe = f"garbage.{crc}", 0, 0, frame_safe
        else:
            mid, sender, sinc, sseq, safe = (message.mid, message.node, message.inc,
                                             message.sseq, message.safe)
        node.log.deliver(mid, sender, sinc, sseq, tuple(ring_id), self._seq(seq),
                         safe, crc, node.in_conf, t=int(self.now * _NS))
        node.last_delivered = mid

    # ---- the workload -----------------------------------------------------------

    def _schedule_submit(self, node: _Node) -> None:
        gap = self._app_rng.expovariate(1.0 / self.config.submit_interval_ms)
        self._push(self.now + gap, _SUBMIT, node.node_id, None, node.inc)

    def _submit(self, node: _Node) -> None:
        """One workload tick at a node: submit a message (when the workload
        is on) and schedule the next tick."""
        if not node.submitting:
            return
        self._schedule_submit(node)
        if not self.submitting:
            return
        rng = self._app_rng
        config = self.config
        size = rng.choices(config.sizes, config.size_weights)[0]
        safe = rng.random() < config.safe_fraction
        deps = (node.last_delivered,) if node.last_delivered else ()
        message = AppMessage(node.node_id, node.inc, node.sseq + 1, safe, deps)
        data = encode_message(message, size)
        try:
            node.core.submit(data, safe, handle=(message.mid, message.sseq))
        except SubmitRejected:
            return
        node.sseq += 1
        node.log.submit(message.mid, message.sseq, safe, zlib.crc32(data),
                        list(deps) if deps else None, t=int(self.now * _NS))


def _deferred_delivery(node_id: int, inc: int):
    """The call that delivers what a node stored, if it still waits (same incarnation)."""
    def call(cluster: "Cluster") -> None:
        node = cluster.nodes[node_id]
        if node.core is None or node.inc != inc or not node.core.delivery_owed:
            return
        if node.paused_until > cluster.now:  # a paused process does nothing
            cluster.call_at(node.paused_until, call)
            return
        node.core.deliver_pending()
        cluster._execute(node)
    return call
