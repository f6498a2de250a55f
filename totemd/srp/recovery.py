"""Recovery and installation of a new ring (totem.md §2.4, "Recovery").

A mixin of ``SrpCore``. On the second lap of the commit token a node computes
its transitional members (those of the new ring that come from its old ring),
queues the old-ring frames some of them may lack, and re-sends them wrapped
in new-ring frames under token flow control. Once every node has sent all it
had and every member holds every new-ring frame up to ``install_seq``, the
node installs: old-ring messages, TRANS, the rest of the old-ring messages,
REG (the EVS order).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from totemd.srp.actions import ConfChange, ConfKind, Deliver, DeliverFrame, State, Timer
from totemd.srp.messages import CommitToken, OrfToken
from totemd.srp.ringstate import RingState
from totemd.srp.seqnum import SEQ_MASK, seq_ge, seq_lt, seq_max, seq_min

if TYPE_CHECKING:
    from totemd.srp.core import SrpCore

__all__ = ["RecoveryMixin", "recovery_plan"]


def recovery_plan(members: tuple[int, ...], entries, my_old_ring) -> tuple[tuple[int, ...], int, int]:
    """Transitional members, the lowest old aru among them, and the highest
    safe line any of them knew (all from the completed commit token).

    Args:
        members: the new ring's members, in ring order.
        entries: their commit entries, same order.
        my_old_ring: this node's old ring id.

    Returns:
        (trans_members, low_ring_aru, agreed_safe_line).
    """
    trans = []
    low = safe = None
    for member, entry in zip(members, entries):
        if entry.old_ring_id != my_old_ring:
            continue
        trans.append(member)
        low = entry.aru if low is None else seq_min(low, entry.aru)
        safe = entry.safe_line if safe is None else seq_max(safe, entry.safe_line)
    assert low is not None and safe is not None  # this node is always its own trans member
    return tuple(trans), low, safe


class RecoveryMixin:
    """RECOVERY and the install of a new ring, for ``SrpCore``."""

    def _recovery_enter(self: SrpCore, token: CommitToken) -> None:
        installed = self._installed
        trans, low, safe = recovery_plan(token.members, token.entries, installed.ring_id)
        self._trans_members = trans
        self._agreed_safe_line = safe
        queue = installed.queue
        resend = deque()
        s = low
        high = installed.high_seq
        while seq_lt(s, high):
            s = (s + 1) & SEQ_MASK
            frame = queue.get(s)
            if frame is not None:
                resend.append(frame)
        self._retransmit_queue = resend
        self._counters.recovery_entered += 1
        self._set_state(State.RECOVERY, None)
        self._arm_token_loss()

    def _start_regular_token(self: SrpCore) -> None:
        """The representative turns the finished commit token into the first
        regular token of the new ring and takes the first visit."""
        ring = self._ring
        assert ring is not None
        first = OrfToken(sender=self._node_id, ring_id=ring.ring_id, seq=ring.initial_seq,
                         token_seq=0, aru=ring.initial_seq, aru_addr=0, fcc=0, backlog=0,
                         retrans_pending=0, rtr=())
        self._token_seq_seen = 0
        self._visit_token(ring, first)

    def _maybe_install(self: SrpCore, ring: RingState, token: OrfToken) -> None:
        """After this visit: install once nothing is left to re-send and every
        member holds every frame up to install_seq (two visits, like SAFE)."""
        if self._state is not State.RECOVERY:
            return
        if self._install_seq is None:
            if self._recovery_visits >= 2 and token.retrans_pending == 0:
                self._install_seq = token.seq
            else:
                return
        if seq_ge(ring.safe_line, self._install_seq):
            self._install(ring)

    def _install(self: SrpCore, ring: RingState) -> None:
        """memb_state_operational_enter: deliver the EVS sequence, go OPERATIONAL."""
        old = self._installed
        trans = self._trans_members
        emit = self._actions.append
        counters = self._counters
        self._deliver_old_ring(old, trans)
        self._unpacker.reset()
        self._packer.on_configuration_change()
        members = ring.members
        joined = tuple(m for m in members if m not in trans) if self._reg_delivered else members
        emit(ConfChange(kind=ConfKind.REG, ring_id=ring.ring_id, old_ring_id=old.ring_id,
                        members=members, joined=joined))
        self._reg_delivered = True
        self._installed = ring
        self._proc = set(members)
        self._failed = set()
        self._retransmit_queue.clear()
        counters.operational_entered += 1
        self._set_state(State.OPERATIONAL, None)
        if ring.ring_id.rep == self._node_id:
            self._set_timer(Timer.MERGE_DETECT, self._params.merge_ms)
        self._deliver_ready(ring)

    def _deliver_old_ring(self: SrpCore, old: RingState, trans: tuple[int, ...]) -> None:
        """Steps (a)-(c): old messages up to the first gap (and the first
        unconfirmed SAFE one) in the old REG configuration, then TRANS, then
        the rest, skipping gaps and, after the first gap, every sender that is
        not a transitional member."""
        emit = self._actions.append
        queue = old.queue
        ring_id = old.ring_id
        safe_line = self._agreed_safe_line
        s = (old.high_delivered + 1) & SEQ_MASK
        high = old.high_seq
        while seq_ge(high, s):
            frame = queue.get(s)
            if frame is None or (frame.safe and seq_lt(safe_line, s)):
                break
            self._deliver_frame(frame, ring_id)
            s = (s + 1) & SEQ_MASK
        if self._reg_delivered:
            left = tuple(m for m in old.members if m not in trans)
            emit(ConfChange(kind=ConfKind.TRANS, ring_id=self._ring_id, old_ring_id=ring_id,
                            members=trans, left=left))
        gap = False
        transitional = set(trans)
        while seq_ge(high, s):
            frame = queue.get(s)
            s = (s + 1) & SEQ_MASK
            if frame is None:
                gap = True
                continue
            if gap and frame.sender not in transitional:
                self._counters.recovery_frames_dropped += 1
                continue
            self._deliver_frame(frame, ring_id)
        queue.clear()

    def _deliver_frame(self: SrpCore, frame, ring_id) -> None:
        self._counters.frames_delivered += 1
        messages = self._unpacker.feed(frame.sender, frame.payload)
        if not messages:
            return
        self._counters.messages_delivered += len(messages)
        if self._deliver_frames:
            self._actions.append(DeliverFrame(frame.sender, ring_id, frame.seq, frame.safe,
                                              messages))
            return
        for message in messages:
            self._actions.append(Deliver(frame.sender, ring_id, frame.seq, frame.safe, message))
