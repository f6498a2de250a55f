"""Membership: GATHER, join processing, consensus and the commit token
(totem.md §2.4).

A mixin of ``SrpCore`` (state on the core instance, see core.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from totemd.codec import encode
from totemd.srp.actions import GatherReason, PersistRingSeq, SendMulticast, SendUnicast, State, Timer
from totemd.srp.messages import CommitEntry, CommitToken, Join, MergeDetect, RingId
from totemd.srp.ringstate import RingState
from totemd.srp.seqnum import SEQ_MASK, seq_lt

if TYPE_CHECKING:
    from totemd.srp.core import SrpCore

__all__ = ["MembershipMixin", "JoinDecision", "decide_join"]

RING_SEQ_STEP = 4  # corosync adds 4 per new ring


class JoinDecision:
    """What join processing in GATHER decides (a table in the tests)."""

    AGREE = "agree"            # same sets: the sender agrees with me
    IGNORE_SUBSET = "subset"   # its sets are inside mine: it will catch up
    IGNORE_FAILED = "failed"   # the sender is in my failed set
    MERGE = "merge"            # new information: merge and re-enter GATHER


def decide_join(my_proc: set[int], my_failed: set[int], join: Join) -> str:
    """The decision of memb_join_process for a join received in GATHER.

    Args:
        my_proc: my processor set.
        my_failed: my failed set.
        join: the join received.

    Returns:
        One of the ``JoinDecision`` values, in the order of totem.md §2.4.
    """
    if join.proc == my_proc and join.failed == my_failed:
        return JoinDecision.AGREE
    if join.proc <= my_proc and join.failed <= my_failed:
        return JoinDecision.IGNORE_SUBSET
    if join.sender in my_failed:
        return JoinDecision.IGNORE_FAILED
    return JoinDecision.MERGE


class MembershipMixin:
    """GATHER / COMMIT handling of ``SrpCore``."""

    # ---- entering GATHER --------------------------------------------------------

    def _gather_enter(self: SrpCore, reason: GatherReason) -> None:
        """Enter (or re-enter) GATHER: broadcast a join, restart consensus."""
        if self._deliver_after_token and self._state is State.OPERATIONAL:
            # Everything deliverable in the ring we leave is delivered first,
            # as if deliveries had never been put off (deliver_after_token).
            self._deliver_owed()
        old = self._state
        if old in (State.COMMIT, State.RECOVERY):
            # Abandon the ring being formed; the last installed ring stays the
            # old ring, and the aborted ring id is never reinstated.
            self._retransmit_queue.clear()
        self._ring = None
        self._held_token = None
        self._last_token = None
        self._proc.add(self._node_id)
        self._failed.discard(self._node_id)
        self._consensus = {self._node_id}
        for timer in (Timer.TOKEN_LOSS, Timer.TOKEN_WARNING, Timer.TOKEN_RETRANSMIT,
                      Timer.TOKEN_HOLD, Timer.MERGE_DETECT):
            self._cancel_timer(timer)
        self._counters.gather_entered += 1
        self._set_state(State.GATHER, reason)
        self._send_join()
        self._set_timer(Timer.JOIN, self._params.join_ms)
        self._set_timer(Timer.CONSENSUS, self._params.consensus_ms)

    def _send_join(self: SrpCore) -> None:
        """Multicast my join now, or after a random send_join delay."""
        delay = self._params.send_join_ms
        if delay > 0 and self._rng is not None:
            if Timer.SEND_JOIN not in self._timers:
                self._set_timer(Timer.SEND_JOIN, self._rng.uniform(0.0, delay))
            return
        self._send_join_now()

    def _send_join_now(self: SrpCore) -> None:
        join = Join(sender=self._node_id, ring_seq=self._ring_id.seq,
                    proc=frozenset(self._proc), failed=frozenset(self._failed))
        self._actions.append(SendMulticast(encode(join)))
        self._counters.memb_join_tx += 1

    # ---- joins ------------------------------------------------------------------

    def _on_join(self: SrpCore, join: Join) -> None:
        counters = self._counters
        counters.memb_join_rx += 1
        if join.ring_seq > self._high_ring_seq_seen:
            self._high_ring_seq_seen = join.ring_seq
        state = self._state
        me = self._node_id
        if join.is_leave:
            self._on_leave(join)
            return
        if state is State.OPERATIONAL:
            if me in join.failed:
                counters.join_ignored += 1
                return
            if join.sender in self._installed.members and join.ring_seq < self._ring_id.seq:
                # A stale join from a member of my ring (c:cfbb021e).
                counters.join_ignored += 1
                return
            self._gather_enter(GatherReason.JOIN_IN_OPERATIONAL)
        elif state is State.COMMIT or state is State.RECOVERY:
            # Only a member of the ring being formed that has moved on (its
            # ring seq is not older) aborts it; anyone else waits until we are
            # OPERATIONAL, or two groups could abort each other for ever.
            ring = self._ring
            if (ring is None or join.sender not in ring.members
                    or join.ring_seq < self._ring_id.seq):
                counters.join_ignored += 1
                return
            self._gather_enter(GatherReason.JOIN_IN_COMMIT if state is State.COMMIT
                               else GatherReason.JOIN_IN_RECOVERY)
        elif state is not State.GATHER:
            return
        self._process_join(join)

    def _process_join(self: SrpCore, join: Join) -> None:
        """memb_join_process in GATHER (totem.md §2.4, read in order)."""
        decision = decide_join(self._proc, self._failed, join)
        if decision == JoinDecision.AGREE:
            self._consensus.add(join.sender)
            self._check_consensus()
            return
        if decision != JoinDecision.MERGE:
            self._counters.join_ignored += 1
            return
        me = self._node_id
        before = (len(self._proc), len(self._failed))
        self._proc.update(join.proc)
        if me in join.failed:
            self._failed.add(join.sender)
        elif join.sender in self._installed.members:
            self._failed.update(join.failed)
        self._failed.discard(me)
        if (len(self._proc), len(self._failed)) == before:
            # Nothing new for me (its failed set is not mine to adopt): a
            # re-broadcast now would only feed a join storm.
            self._counters.join_ignored += 1
            return
        self._gather_enter(GatherReason.JOIN_IN_GATHER)

    def _on_leave(self: SrpCore, join: Join) -> None:
        """A graceful leave: the sender names itself failed."""
        sender = join.sender
        state = self._state
        if state is State.OPERATIONAL:
            relevant = sender in self._installed.members
        elif state is State.COMMIT or state is State.RECOVERY:
            relevant = self._ring is not None and sender in self._ring.members
        elif state is State.GATHER:
            relevant = sender in self._proc and sender not in self._failed
        else:
            relevant = False
        if not relevant:
            self._counters.join_ignored += 1
            return
        self._counters.leaves_received += 1
        self._failed.add(sender)
        self._gather_enter(GatherReason.MEMBER_LEFT)

    def _check_consensus(self: SrpCore) -> None:
        """Everyone not failed agrees: the lowest id creates the commit token."""
        if self._state is not State.GATHER:
            return
        active = self._proc - self._failed
        if not active <= self._consensus or min(active) != self._node_id:
            return
        members = tuple(sorted(active))
        new_seq = max(self._high_ring_seq_seen, self._ring_id.seq) + RING_SEQ_STEP
        token = CommitToken(sender=self._node_id, ring_id=RingId(self._node_id, new_seq),
                            token_seq=0, memb_index=0, members=members, entries=())
        self._counters.commit_tokens_created += 1
        self._on_commit_token(token, created=True)

    def _on_consensus_timeout(self: SrpCore) -> None:
        """Fail everyone who has not sent a join matching mine, and re-gather."""
        self._counters.consensus_timeouts += 1
        silent = (self._proc - self._failed) - self._consensus
        self._failed.update(silent)
        self._failed.discard(self._node_id)
        self._gather_enter(GatherReason.CONSENSUS_TIMEOUT)

    def _on_join_timer(self: SrpCore) -> None:
        self._send_join()
        self._set_timer(Timer.JOIN, self._params.join_ms)
        self._check_consensus()

    # ---- merge detection --------------------------------------------------------

    def _on_merge_detect(self: SrpCore, message: MergeDetect) -> None:
        self._counters.merge_detect_rx += 1
        sender = message.sender
        if self._state is State.OPERATIONAL:
            if sender not in self._installed.members and message.ring_id != self._ring_id:
                self._merge_with(sender, GatherReason.MERGE_DETECT)
        elif self._state is State.GATHER:
            if sender not in self._proc and sender not in self._failed:
                self._proc.add(sender)
                self._gather_enter(GatherReason.MERGE_DETECT)

    def _merge_with(self: SrpCore, sender: int, reason: GatherReason) -> None:
        self._proc.update(self._installed.members)
        self._proc.add(sender)
        self._gather_enter(reason)

    def _on_merge_timer(self: SrpCore) -> None:
        ring = self._ring
        if self._state is State.OPERATIONAL and ring is not None and ring.ring_id.rep == self._node_id:
            self._actions.append(SendMulticast(encode(
                MergeDetect(sender=self._node_id, ring_id=ring.ring_id))))
            self._counters.merge_detect_tx += 1
            self._set_timer(Timer.MERGE_DETECT, self._params.merge_ms)

    # ---- the commit token -------------------------------------------------------

    def _on_commit_token(self: SrpCore, token: CommitToken, created: bool = False) -> None:
        counters = self._counters
        if not created:
            counters.commit_token_rx += 1
        state = self._state
        me = self._node_id
        if me not in token.members:
            counters.commit_token_dropped += 1
            return
        if state is State.GATHER:
            if (token.ring_id.seq <= self._ring_id.seq
                    or set(token.members) != self._proc - self._failed
                    or token.memb_index != token.members.index(me)):
                counters.commit_token_dropped += 1
                return
            self._commit_enter(token)
            return
        if token.ring_id != self._ring_id or token.memb_index != len(token.members):
            counters.commit_token_dropped += 1
            return
        seen = self._commit_token_seq_seen
        if seen is not None and not seq_lt(seen, token.token_seq):
            counters.token_duplicate += 1
            return
        self._commit_token_seq_seen = token.token_seq
        if state is State.COMMIT:
            self._recovery_enter(token)
            self._forward_commit(token)
        elif state is State.RECOVERY and me == token.ring_id.rep and not self._originated_orf_token:
            # The second lap is over: start the first regular token (once;
            # a duplicate commit token must not start another, c:4ee84c51).
            self._originated_orf_token = True
            self._start_regular_token()
        else:
            counters.token_duplicate += 1

    def _commit_enter(self: SrpCore, token: CommitToken) -> None:
        """First lap: fill my entry, adopt and persist the new ring id."""
        installed = self._installed
        entry = CommitEntry(
            old_ring_id=installed.ring_id, aru=installed.aru, high_seq=installed.high_seq,
            high_delivered=installed.high_delivered, received=installed.aru == installed.high_seq,
            safe_line=installed.safe_line)
        filled = CommitToken(sender=self._node_id, ring_id=token.ring_id,
                             token_seq=token.token_seq, memb_index=token.memb_index + 1,
                             members=token.members, entries=token.entries + (entry,))
        self._ring_id = token.ring_id
        self._actions.append(PersistRingSeq(token.ring_id.seq))
        self._ring = RingState(token.ring_id, token.members, self._initial_seq)
        self._reset_token_state()
        self._commit_token_seq_seen = token.token_seq
        self._cancel_timer(Timer.JOIN)
        self._cancel_timer(Timer.CONSENSUS)
        self._counters.commit_entered += 1
        self._set_state(State.COMMIT, None)
        self._arm_token_loss()
        self._forward_commit(filled)

    def _forward_commit(self: SrpCore, token: CommitToken) -> None:
        out = CommitToken(sender=self._node_id, ring_id=token.ring_id,
                          token_seq=(token.token_seq + 1) & SEQ_MASK,
                          memb_index=token.memb_index, members=token.members,
                          entries=token.entries)
        data = encode(out)
        dest = self._successor(token.members)
        self._last_token = (dest, data)
        self._actions.append(SendUnicast(dest, data))
        self._counters.commit_token_tx += 1
        self._set_timer(Timer.TOKEN_RETRANSMIT, self._params.token_retransmit_ms)
