"""A small builder for hand-made EVS histories (records as totemd.evslog
writes them), shared by the checker tests."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


@dataclass
class Message:
    mid: str
    sender: int
    sinc: int
    sseq: int
    safe: bool
    crc: int
    ring: tuple[int, int] | None = None
    seq: int = 0


class Node:
    """One incarnation's log under construction."""

    def __init__(self, history: "History", node: int, inc: int) -> None:
        self.history = history
        self.node = node
        self.inc = inc
        self.records: list[dict[str, Any]] = []
        self.current: Any = None
        self.sseq = 0

    def _add(self, ev: str, **fields: Any) -> dict[str, Any]:
        record = {"node": self.node, "inc": self.inc, "t": self.history.tick(), "ev": ev}
        record.update(fields)
        self.records.append(record)
        return record

    def reg(self, ring: tuple[int, int], members: Sequence[int]) -> "Node":
        self._add("conf", kind="REG", id=list(ring), members=sorted(members))
        self.current = list(ring)
        return self

    def trans(self, old: tuple[int, int], new: tuple[int, int], members: Sequence[int]) -> "Node":
        self._add("conf", kind="TRANS", id=[list(old), list(new)], members=sorted(members))
        self.current = [list(old), list(new)]
        return self

    def submit(self, safe: bool = False, deps: Sequence[str] | None = None,
               payload: bytes | None = None) -> Message:
        self.sseq += 1
        mid = f"{self.node}.{self.inc}.{self.sseq}"
        crc = zlib.crc32(payload if payload is not None else mid.encode())
        self._add("submit", mid=mid, sseq=self.sseq, safe=safe, crc=crc,
                  deps=None if deps is None else list(deps))
        return Message(mid, self.node, self.inc, self.sseq, safe, crc)

    def originate(self, message: Message, ring: tuple[int, int], seq: int | None = None) -> Message:
        message.ring = ring
        message.seq = self.history.next_seq(ring) if seq is None else seq
        self._add("originate", mid=message.mid, ring=list(ring), seq=message.seq,
                  sseq=message.sseq)
        return message

    def send(self, ring: tuple[int, int], safe: bool = False,
             deps: Sequence[str] | None = None) -> Message:
        """submit + originate in one go."""
        return self.originate(self.submit(safe=safe, deps=deps), ring)

    def deliver(self, message: Message, **override: Any) -> "Node":
        fields = {
            "mid": message.mid, "sender": message.sender, "sinc": message.sinc,
            "sseq": message.sseq, "orig_ring": list(message.ring or (0, 0)),
            "seq": message.seq, "safe": message.safe, "crc": message.crc,
            "in_conf": self.current,
        }
        fields.update(override)
        self._add("deliver", **fields)
        return self

    def deliver_all(self, messages: Sequence[Message]) -> "Node":
        for message in messages:
            self.deliver(message)
        return self

    def stop(self) -> "Node":
        self._add("stop")
        return self

    def crash(self) -> "Node":
        self._add("crash")
        return self


class History:
    """Incarnation logs sharing one virtual clock and per-ring seq counters."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], Node] = {}
        self.clock = 0
        self.seqs: dict[tuple[int, int], int] = {}
        self.quiet: list[dict[str, int]] = []

    def tick(self) -> int:
        self.clock += 1000
        return self.clock

    def next_seq(self, ring: tuple[int, int]) -> int:
        self.seqs[ring] = self.seqs.get(ring, 0) + 1
        return self.seqs[ring]

    def node(self, node: int, inc: int = 1) -> Node:
        key = (node, inc)
        if key not in self.nodes:
            self.nodes[key] = Node(self, node, inc)
        return self.nodes[key]

    def records(self) -> dict[tuple[int, int], list[dict[str, Any]]]:
        return {key: node.records for key, node in self.nodes.items()}

    def mark_quiet(self, start: int, end: int, drain: int = 0) -> None:
        self.quiet.append({"ev": "quiet", "start": start, "end": end, "drain": drain})

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for (node, inc), log in self.nodes.items():
            lines = "".join(json.dumps(r) + "\n" for r in log.records)
            (directory / f"n{node}.{inc}.jsonl").write_text(lines)
        if self.quiet:
            (directory / "harness.jsonl").write_text(
                "".join(json.dumps(q) + "\n" for q in self.quiet))
        return directory


R4, R8, R12, R16 = (1, 4), (1, 8), (3, 12), (1, 16)


def valid_history() -> History:
    """Three nodes: a ring, a partition with TRANS deliveries, safe messages,
    a crash and restart of node 3, a merge, and a quiet window at the end.
    Every rule holds."""
    h = History()
    n1, n2, n3 = h.node(1), h.node(2), h.node(3)
    for node in (n1, n2, n3):
        node.reg(R4, [1, 2, 3])
    first = [n1.send(R4), n2.send(R4), n3.send(R4, safe=True), n1.send(R4)]
    for node in (n1, n2, n3):
        node.deliver_all(first)
    # n2 sends one more; only n1 and n2 get it before node 3 is cut off. It is
    # delivered in the transitional configuration (a gap elsewhere held it).
    late = n2.send(R4)
    n3.trans(R4, (3, 8), [3]).reg((3, 8), [3])
    for node in (n1, n2):
        node.trans(R4, R8, [1, 2]).deliver(late).reg(R8, [1, 2])
    # Partitioned: safe and causal traffic on both sides.
    safe = n1.send(R8, safe=True)
    after = n2.send(R8, deps=[safe.mid])
    for node in (n1, n2):
        node.deliver_all([safe, after])
    alone = n3.send((3, 8))
    n3.deliver(alone)
    n3.crash()
    # Node 3 restarts, forms its own ring (ring seq persisted: 12 > 8), merges.
    m3 = h.node(3, 2)
    m3.reg(R12, [3])
    for node in (n1, n2):
        node.trans(R8, R16, [1, 2]).reg(R16, [1, 2, 3])
    m3.trans(R12, R16, [3]).reg(R16, [1, 2, 3])
    start = h.clock
    final = [n1.send(R16), m3.send(R16, safe=True), n2.send(R16)]
    for node in (n1, n2, m3):
        node.deliver_all(final)
    end = h.clock
    h.mark_quiet(start, end)
    for node in (n1, n2, m3):
        node.stop()
    return h
