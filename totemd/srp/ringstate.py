"""The ordering state of one ring at one node: its sort queue and counters.

A node keeps two of these at most: the ring it last installed (``installed``,
the "old ring" while a new one forms) and the ring it is forming or running.
"""

from __future__ import annotations

from totemd.srp.messages import Mcast, RingId
from totemd.srp.seqnum import SEQ_HALF as _HALF, SEQ_MASK, seq_lt

__all__ = ["RingState"]


class RingState:
    """Sort queue and sequence counters of one ring (all seqs 32-bit, wrapping).

    Invariants: ``freed <= high_delivered <= aru <= high_seq`` (in seq order);
    every seq in (freed, aru] is in ``queue``; nothing at or below ``freed``
    is.
    """

    __slots__ = ("ring_id", "members", "initial_seq", "queue", "aru", "high_seq",
                 "high_delivered", "safe_line", "freed", "miss_counts", "last_aru_forwarded")

    def __init__(self, ring_id: RingId, members: tuple[int, ...], initial_seq: int) -> None:
        self.ring_id = ring_id
        self.members = members
        self.initial_seq = initial_seq & SEQ_MASK
        self.queue: dict[int, Mcast] = {}
        self.aru = self.initial_seq
        self.high_seq = self.initial_seq
        self.high_delivered = self.initial_seq
        # Highest seq every member is known to have received (two token visits).
        self.safe_line = self.initial_seq
        self.freed = self.initial_seq
        self.miss_counts: dict[int, int] = {}
        self.last_aru_forwarded: int | None = None

    def insert(self, frame: Mcast) -> bool:
        """Store a frame of this ring; False if it is old or a duplicate.

        ``SrpCore._receive_all`` (once per received frame) and
        ``_originate_new`` (once per frame sent) have this written out: keep
        the three alike.
        """
        # Called once per frame sent or received: the seq comparisons of
        # seqnum are written out here (seq_lt(a, b) is 0 < (b - a) & MASK <= HALF).
        seq = frame.seq
        queue = self.queue
        if seq in queue or not 0 < ((seq - self.high_delivered) & SEQ_MASK) <= _HALF:
            return False
        queue[seq] = frame
        if 0 < ((seq - self.high_seq) & SEQ_MASK) <= _HALF:
            self.high_seq = seq
        aru = self.aru
        if seq == ((aru + 1) & SEQ_MASK):
            # The frame after aru: move aru across it and what follows it.
            aru = seq
            nxt = (seq + 1) & SEQ_MASK
            while nxt in queue:
                aru = nxt
                nxt = (nxt + 1) & SEQ_MASK
            self.aru = aru
        return True

    def advance_aru(self) -> None:
        """Move aru across contiguous seqs (no scan cap, c:e48ddf99)."""
        queue = self.queue
        aru = self.aru
        nxt = (aru + 1) & SEQ_MASK
        while nxt in queue:
            aru = nxt
            nxt = (nxt + 1) & SEQ_MASK
        self.aru = aru

    def free_up_to(self, limit: int) -> int:
        """Drop delivered frames every member has (seq <= limit); count them."""
        freed = self.freed
        if not seq_lt(freed, limit):
            return 0
        queue = self.queue
        pop = queue.pop
        held = len(queue)
        while freed != limit:
            freed = (freed + 1) & SEQ_MASK
            pop(freed, None)
        self.freed = freed
        return held - len(queue)

    def offset(self, seq: int) -> int:
        """Position of ``seq`` in this ring (0 = initial seq); an unwrapped order."""
        return (seq - self.initial_seq) & SEQ_MASK
