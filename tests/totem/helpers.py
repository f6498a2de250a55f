"""A tiny synchronous network for scripted tests of SrpCore (no simulator).

Packets are queued FIFO and delivered one at a time by ``step``/``settle``;
timers are only fired when a test asks. Tests can drop, duplicate or hold
any packet on the way.
"""

from __future__ import annotations

from collections import deque

from totemd.codec import decode
from totemd.srp import (ConfChange, Deliver, SendMulticast, SendUnicast, SetTimer, SrpCore,
                        StateChanged, TokenWarning, TotemParams)
from totemd.srp.actions import CancelTimer, Originated, PersistRingSeq


class Net:
    """N cores wired together; the clock only moves when the test says."""

    def __init__(self, nodes: int, params: TotemParams | None = None, initial_seq: int = 0,
                 start: bool = True) -> None:
        self.params = params or TotemParams(token_ms=1000.0, token_coefficient_ms=0.0,
                                            nodes=nodes)
        self.now = 0.0
        self.cores = {i: SrpCore(i, self.params, initial_seq=initial_seq)
                      for i in range(1, nodes + 1)}
        self.queue: deque[tuple[int, int, bytes]] = deque()  # (src, dest, data)
        self.delivered: dict[int, list[Deliver]] = {i: [] for i in self.cores}
        self.confs: dict[int, list[ConfChange]] = {i: [] for i in self.cores}
        self.states: dict[int, list[StateChanged]] = {i: [] for i in self.cores}
        self.warnings: dict[int, list[tuple[float, TokenWarning]]] = {i: [] for i in self.cores}
        self.timers: dict[int, dict] = {i: {} for i in self.cores}
        self.persisted: dict[int, int] = {}
        self.originated: dict[int, list[Originated]] = {i: [] for i in self.cores}
        self.sent: list[tuple[int, int, bytes]] = []
        self.down: set[int] = set()
        self.filter = None  # callable(src, dest, packet) -> bool (keep)
        if start:
            for core in self.cores.values():
                core.start(self.now, None)
                self.collect(core.node_id)

    def collect(self, node: int) -> None:
        for action in self.cores[node].take_actions():
            kind = type(action)
            if kind is SendMulticast:
                for other in self.cores:
                    if other != node:
                        self._enqueue(node, other, action.data)
            elif kind is SendUnicast:
                self._enqueue(node, action.dest, action.data)
            elif kind is Deliver:
                self.delivered[node].append(action)
            elif kind is ConfChange:
                self.confs[node].append(action)
            elif kind is StateChanged:
                self.states[node].append(action)
            elif kind is SetTimer:
                self.timers[node][action.timer] = action.deadline_ms
            elif kind is CancelTimer:
                self.timers[node].pop(action.timer, None)
            elif kind is PersistRingSeq:
                self.persisted[node] = action.ring_seq
            elif kind is Originated:
                self.originated[node].append(action)
            elif kind is TokenWarning:
                self.warnings[node].append((self.now, action))

    def _enqueue(self, src: int, dest: int, data: bytes) -> None:
        self.sent.append((src, dest, data))
        if self.filter is not None and not self.filter(src, dest, decode(data)):
            return
        self.queue.append((src, dest, data))

    def step(self) -> bool:
        """Deliver one queued packet; False when none is left."""
        while self.queue:
            src, dest, data = self.queue.popleft()
            if dest in self.down:
                continue
            self.cores[dest].receive(data, self.now)
            self.collect(dest)
            return True
        return False

    def settle(self, limit: int = 100_000) -> int:
        """Deliver until the network is empty (bounded); the packet count."""
        count = 0
        while count < limit and self.step():
            count += 1
        return count

    def fire(self, node: int, timer) -> None:
        """Fire one armed timer of a node (the clock jumps to its deadline)."""
        deadline = self.timers[node].pop(timer)
        self.now = max(self.now, deadline)
        self.cores[node].timer_expired(timer, self.now)
        self.collect(node)

    def run_timers(self, until_ms: float, limit: int = 100_000) -> None:
        """Fire timers in deadline order (settling the network in between)
        until the clock passes ``until_ms``."""
        for _ in range(limit):
            self.settle()
            armed = [(deadline, node, timer) for node, timers in self.timers.items()
                     if node not in self.down for timer, deadline in timers.items()]
            if not armed:
                return
            deadline, node, timer = min(armed, key=lambda item: (item[0], item[1], item[2].value))
            if deadline > until_ms:
                return
            self.fire(node, timer)

    def form_ring(self) -> None:
        """From a fresh start: joins, commit token, recovery, first rotation."""
        self.settle()
        self.run_timers(self.now + 200)

    def submit(self, node: int, message: bytes, safe: bool = False) -> None:
        self.cores[node].submit(message, safe, handle=message)
        self.collect(node)


def indexed_message(index: int, size: int) -> bytes:
    """A message whose content depends on its index, so a mix-up shows."""
    seed = index.to_bytes(4, "big")
    return (seed * (size // 4 + 1))[:size]
