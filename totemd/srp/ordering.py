"""Ordering and reliability: the regular token and frames (totem.md §2.2).

A mixin of ``SrpCore``: the state lives on the core instance (see core.py for
the fields). This module handles a regular token visit in OPERATIONAL and
RECOVERY, the receipt of frames, agreed and safe delivery, garbage
collection, the idle token hold, and FAILED TO RECEIVE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from totemd.codec import encode, encode_mcast, encode_token, frame_prefix, pack_frame_tail
from totemd.srp.actions import (CancelTimer, Deliver, DeliverFrame, GatherReason, Originated,
                                SendMulticast, SendUnicast, SetTimer, State, Timer, TokenWarning)
from totemd.srp.messages import Mcast, OrfToken, RtrEntry, TokenHoldCancel
from totemd.srp.params import RTR_LIST_MAX, SORT_QUEUE_MAX
from totemd.srp.ringstate import RingState
from totemd.srp.seqnum import SEQ_HALF, SEQ_MASK, seq_diff, seq_ge, seq_lt

if TYPE_CHECKING:
    from totemd.srp.core import SrpCore

__all__ = ["OrderingMixin"]

#: deliver_after_token: every visit forwards the token before it delivers;
#: one that stamped frames of ours and left at most this many to deliver
#: says so (``SrpCore.own_delivery_owed``), and the driver delivers them as
#: soon as the token is sent (our clients' own messages, an idle ring), the
#: rest when it has time (other nodes' frames, a loaded ring).
EARLY_DELIVERY_FRAMES = 4

# Module constants for what a token visit looks up every time.
_OPERATIONAL = State.OPERATIONAL
_RECOVERY = State.RECOVERY
_TOKEN_LOSS = Timer.TOKEN_LOSS
_TOKEN_RETRANSMIT = Timer.TOKEN_RETRANSMIT
_TOKEN_HOLD = Timer.TOKEN_HOLD
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__


class OrderingMixin:
    """Regular token and frame handling of ``SrpCore``."""

    # ---- frames -----------------------------------------------------------------

    def _on_mcast(self: SrpCore, frame: Mcast) -> None:
        self._counters.mcast_rx += 1
        ring = self._ring
        state = self._state
        if ring is not None and frame.ring_id == ring.ring_id:
            if seq_diff(frame.seq, ring.high_delivered) > SORT_QUEUE_MAX:
                self._counters.rx_out_of_window += 1
                return
            if not ring.insert(frame):
                self._counters.mcast_duplicate += 1
                return
            inner = frame.inner
            if inner is not None and state is State.RECOVERY:
                self._insert_old_ring_frame(inner)
            if state is State.OPERATIONAL:
                self._deliver_ready(ring)
            return
        installed = self._installed
        if frame.ring_id == installed.ring_id:
            # A late frame of the ring we left: still useful until we commit
            # to a new ring (after that our commit-token entry is fixed).
            if state is State.GATHER and frame.inner is None:
                if seq_diff(frame.seq, installed.high_delivered) <= SORT_QUEUE_MAX:
                    installed.insert(frame)
            return
        self._counters.rx_foreign_ring += 1
        if state is State.OPERATIONAL and frame.sender not in installed.members:
            self._merge_with(frame.sender, GatherReason.FOREIGN_MCAST)

    def _insert_old_ring_frame(self: SrpCore, inner: Mcast) -> None:
        """Keep an old-ring frame recovered through the new ring (RECOVERY)."""
        installed = self._installed
        if inner.ring_id != installed.ring_id:
            return
        if seq_diff(inner.seq, installed.high_delivered) > SORT_QUEUE_MAX:
            return
        installed.insert(inner)

    def _deliver_ready(self: SrpCore, ring: RingState) -> None:
        """Deliver in seq order: agreed up to aru, safe up to the safe line."""
        nxt = (ring.high_delivered + 1) & SEQ_MASK
        aru = ring.aru
        if not seq_ge(aru, nxt):
            return
        queue = ring.queue
        safe_line = ring.safe_line
        ring_id = ring.ring_id
        feed = self._unpacker.feed
        emit = self._actions.append
        extend = self._actions.extend
        per_frame = self._deliver_frames
        # tuple.__new__ skips the NamedTuples' Python-level __new__ (one action
        # per frame, or per message: the delivery hot spot).
        new_tuple = tuple.__new__
        frames = delivered = 0
        high_delivered = ring.high_delivered
        while True:
            sender, _ring_id, _seq, safe, payload, inner = queue[nxt]
            if safe and seq_lt(safe_line, nxt):
                break
            high_delivered = nxt
            if inner is None:
                frames += 1
                messages = feed(sender, payload)
                if messages:
                    delivered += len(messages)
                    if per_frame:
                        emit(new_tuple(DeliverFrame, (sender, ring_id, nxt, safe, messages)))
                    else:
                        extend([new_tuple(Deliver, (sender, ring_id, nxt, safe, message))
                                for message in messages])
            if nxt == aru:
                break
            nxt = (nxt + 1) & SEQ_MASK
        ring.high_delivered = high_delivered
        counters = self._counters
        counters.frames_delivered += frames
        counters.messages_delivered += delivered

    # ---- the regular token ----------------------------------------------------

    def _on_token(self: SrpCore, token: OrfToken) -> None:
        counters = self._counters
        counters.orf_token_rx += 1
        ring = self._ring
        state = self._state
        token_ring_id = token[1]
        if (ring is None or (token_ring_id is not ring.ring_id and token_ring_id != ring.ring_id)
                or (state is not _OPERATIONAL and state is not _RECOVERY)):
            counters.token_dropped_wrong_ring += 1
            return
        seen = self._token_seq_seen
        token_seq = token[3]
        # not seq_lt(seen, token_seq), written out (once per visit).
        if seen is not None and not 0 < ((token_seq - seen) & SEQ_MASK) <= SEQ_HALF:
            # A retransmitted or duplicated token: it must not reset the timers
            # nor move any aru bookkeeping (c:79c60fd0, c:b8878d2e).
            counters.token_duplicate += 1
            return
        self._token_seq_seen = token_seq
        self._visit_token(ring, token)

    def _visit_token(self: SrpCore, ring: RingState, token: OrfToken) -> None:
        """One visit of the regular token (steps 2-9 of totem.md §2.2).

        Runs once per token hop, so the arithmetic of ``flow`` and the seq
        comparisons of ``seqnum`` are written out here (the table tests pin
        those functions; tests/totem/test_receive_many.py and the simulator
        pin this visit against them), and the work a visit does not need
        (no retransmit requests, nothing queued, aru == seq, nothing to
        deliver or free) is skipped.
        """
        (_sender, _ring_id, start_seq, token_seq, token_aru, token_aru_addr, token_fcc,
         token_backlog, token_retrans, requests) = token
        me = self._node_id
        operational = self._state is _OPERATIONAL
        my_backlog = self._packer.pending_frames() if operational else len(self._retransmit_queue)
        previous_backlog = self._previous_backlog
        # The budget matters only with something to send or re-send.
        allowed = (self._transmits_allowed(token_fcc, token_backlog, my_backlog)
                   if my_backlog or requests else 0)
        if requests:
            rtr, sent = self._serve_retransmit_requests(ring, requests, allowed)
        else:
            rtr, sent = [], 0
        seq = start_seq
        count = 0
        if my_backlog:  # zero exactly when nothing is queued
            # flow.sort_queue_room: seq_diff(seq, aru) frames are in flight.
            in_flight = (start_seq - token_aru) & SEQ_MASK
            if in_flight > SEQ_HALF:
                in_flight -= 0x100000000
            budget = allowed - sent
            room = SORT_QUEUE_MAX - self._window_size - in_flight
            if room < budget:
                budget = room
            if budget > 0:
                if operational:
                    seq, count = self._originate_new(ring, seq, budget)
                else:
                    seq, count = self._originate_recovery(ring, seq, budget)
                sent += count
        ring_aru = ring.aru
        if ring_aru != seq:  # _request_missing has nothing to do when aru == seq
            self._request_missing(ring, seq, rtr)
        aru, aru_addr = token_aru, token_aru_addr
        # seq_lt(ring_aru, aru) or aru_addr == me or aru_addr == 0
        if aru_addr == me or aru_addr == 0 or 0 < ((aru - ring_aru) & SEQ_MASK) <= SEQ_HALF:
            aru = ring_aru
            aru_addr = 0 if aru == seq else me
        # FAILED TO RECEIVE (corosync's self-accusing variant, c:d4db2ea5).
        if token_aru == self._previous_token_aru and token_aru_addr != 0 and token_aru != start_seq:
            stuck = self._aru_stuck_rotations + 1
        else:
            stuck = 0
        self._aru_stuck_rotations = stuck
        self._previous_token_aru = token_aru
        if stuck >= self._fail_recv_const and token_aru_addr == me and operational:
            self._failed_to_receive()
            return
        retrans_pending = 0 if operational else self._update_retrans_pending(token_retrans)
        # Step 8: the token's fcc and backlog (flow.update_fcc, flow.update_backlog).
        fcc = token_fcc + sent - self._previous_sent
        if fcc < 0:
            fcc = 0
        self._previous_sent = sent
        if count:
            backlog_now = (self._packer.pending_frames() if operational
                           else len(self._retransmit_queue))
        else:
            backlog_now = my_backlog  # nothing was taken from the queue
        backlog = token_backlog + backlog_now - previous_backlog
        if backlog < 0:
            backlog = 0
        self._previous_backlog = backlog_now
        last = ring.last_aru_forwarded
        if last is not None:
            line = aru if 0 < ((last - aru) & SEQ_MASK) <= SEQ_HALF else last  # seq_min
            if 0 < ((line - ring.safe_line) & SEQ_MASK) <= SEQ_HALF:
                ring.safe_line = line
        ring.last_aru_forwarded = aru
        # Unchanged: nobody sent since our last visit, nor do we now.
        arrived_unchanged = start_seq == self._last_arrival_seq
        self._last_arrival_seq = start_seq
        if arrived_unchanged and seq == start_seq:
            self._unchanged_rotations += 1
        else:
            self._unchanged_rotations = 0
            self._hold_cancel_sent = False
        # Positional (sender, ring_id, seq, token_seq, aru, aru_addr, fcc,
        # backlog, retrans_pending, rtr): once per visit.
        out = _new_tuple(OrfToken, (me, ring.ring_id, seq, (token_seq + 1) & SEQ_MASK, aru,
                                    aru_addr, fcc, backlog, retrans_pending,
                                    tuple(rtr) if rtr else ()))
        self._pass_token(ring, out, operational, count)

    def _transmits_allowed(self: SrpCore, token_fcc: int, token_backlog: int,
                           my_backlog: int) -> int:
        """Step 3: the frames this visit may send (flow.transmits_allowed,
        written out with the parameters read once)."""
        window = self._window_size
        allowed = window - token_fcc
        if allowed > self._max_messages:
            allowed = self._max_messages
        elif allowed < 0:
            allowed = 0
        ring_backlog = token_backlog + my_backlog - self._previous_backlog
        if ring_backlog > 0:
            share = (window * my_backlog) // ring_backlog
            if 0 < share < allowed:
                allowed = share
        return allowed

    def _pass_token(self: SrpCore, ring: RingState, out: OrfToken, operational: bool,
                    stamped: int) -> None:
        """The end of a visit: re-arm the token loss timer, deliver (before
        or after the token), hold or forward ``out``, and in RECOVERY see
        whether the ring can be installed.

        Args:
            stamped: frames of ours this visit gave seqs to.
        """
        # _set_timer(TOKEN_LOSS), written out.
        now = self._now
        deadline = now + self._token_loss_ms
        self._timers[_TOKEN_LOSS] = deadline
        self._actions.append(_new_tuple(SetTimer, (_TOKEN_LOSS, deadline)))
        # The token warning timer is armed from COMMIT on (_arm_token_loss) and
        # re-arms itself until GATHER: a visit only notes the time (no action).
        self._token_heard_ms = now
        # With deliver_after_token the token goes first and the deliveries
        # are left owed. Measured on a 3-node ring with one closed-loop client
        # (lan, alternated clusters): forwarders that delivered <= 4 frames
        # first, p50 244 us -> 204 when they forwarded first (six clusters
        # each); the stamping node delivering its own message first, mean
        # p50 225 -> 200 (twelve each) when it too forwarded first.
        # own_delivery_owed tells the driver that this visit stamped frames
        # of ours and left few to deliver (an idle ring: our client's own
        # message): deliver them as soon as the token is sent, before
        # anything else, so that our sender's latency does not grow.
        after = False
        if operational:
            high_delivered = ring.high_delivered
            ring_aru = ring.aru
            if self._deliver_after_token and ring_aru != high_delivered:
                after = True
                self._own_delivery_owed = stamped > 0 and (
                    ((ring_aru - high_delivered) & SEQ_MASK) <= EARLY_DELIVERY_FRAMES)
            else:
                self._delivery_owed = self._own_delivery_owed = False
                if ring_aru != high_delivered:  # else nothing is deliverable
                    self._deliver_ready(ring)
                    high_delivered = ring.high_delivered
                # free_up_to(seq_min(safe_line, high_delivered)), which frees
                # nothing when the queue was freed up to there already.
                limit = ring.safe_line
                if not 0 < ((high_delivered - limit) & SEQ_MASK) <= SEQ_HALF:
                    limit = high_delivered
                if ring.freed != limit:
                    self._counters.frames_freed += ring.free_up_to(limit)
        if (operational and ring.ring_id[0] == self._node_id
                and self._unchanged_rotations >= self._hold_rotations
                and self._should_hold(ring, out)):
            self._held_token = out
            self._counters.token_holds += 1
            self._cancel_timer(_TOKEN_RETRANSMIT)
            self._set_timer(_TOKEN_HOLD, self._params.hold_ms)
        else:
            self._forward_token(out)  # re-arms TOKEN_RETRANSMIT
        if after:
            # The token is on its way: the deliveries (ours just stamped and
            # what was stored before the token) are left owed, so that the
            # driver sends the token before doing them (deliver_pending right
            # after it executed this visit's actions), which also frees them.
            self._delivery_owed = True
        if not operational:
            self._maybe_install(ring, out)

    def _serve_retransmit_requests(self: SrpCore, ring: RingState, requests: tuple[RtrEntry, ...],
                                   allowed: int) -> tuple[list[RtrEntry], int]:
        """Re-multicast requested frames we hold; the rest stay on the list."""
        if not requests:
            return [], 0
        keep: list[RtrEntry] = []
        sent = 0
        queue = ring.queue
        ring_id = ring.ring_id
        for entry in requests:
            if entry.ring_id != ring_id:
                self._counters.rtr_foreign_dropped += 1
                continue
            frame = queue.get(entry.seq) if sent < allowed else None
            if frame is None:
                keep.append(entry)
                continue
            self._actions.append(SendMulticast(encode_mcast(frame)))
            self._counters.mcast_retx += 1
            sent += 1
        return keep, sent

    def _originate_new(self: SrpCore, ring: RingState, seq: int, budget: int) -> tuple[int, int]:
        """Stamp up to ``budget`` packed frames with new seqs and multicast them."""
        emit = self._actions.append
        queue = ring.queue
        high_delivered = ring.high_delivered  # no delivery while we stamp
        me = self._node_id
        ring_id = ring.ring_id
        cached = self._frame_prefix
        if cached[0] is not ring_id:
            cached = self._frame_prefix = (ring_id, frame_prefix(me, ring_id))
        prefix = cached[1]
        new_tuple = tuple.__new__
        # One call for the visit's frames (Packer.take_frames: the middle
        # fragments of a large message are cut in one loop).
        frames = self._packer.take_frames(budget) if budget > 0 else ()
        for payload, safe, completed in frames:
            seq = (seq + 1) & SEQ_MASK
            # tuple.__new__: NamedTuples built without their Python-level
            # __new__ (once per frame sent).
            # RingState.insert, written out: the frame is new unless a
            # faulty peer sent this seq already.
            if seq not in queue and 0 < ((seq - high_delivered) & SEQ_MASK) <= SEQ_HALF:
                queue[seq] = new_tuple(Mcast, (me, ring_id, seq, safe, payload, None))
                if 0 < ((seq - ring.high_seq) & SEQ_MASK) <= SEQ_HALF:
                    ring.high_seq = seq
                if seq == ((ring.aru + 1) & SEQ_MASK):
                    aru = seq  # and across what follows it
                    while ((aru + 1) & SEQ_MASK) in queue:
                        aru = (aru + 1) & SEQ_MASK
                    ring.aru = aru
            # Originated goes first: a driver that logs it must have it on
            # disk before the frame can reach another node (EVS rule S10).
            if completed:
                emit(new_tuple(Originated, (ring_id, seq, completed)))
            # encode_mcast of the frame, with the header fields that do not
            # change per frame packed once per ring (codec.frame_prefix).
            emit(new_tuple(SendMulticast, (prefix + pack_frame_tail(seq, 1 if safe else 0)
                                                   + payload,)))
        count = len(frames)
        self._counters.mcast_tx += count
        return seq, count

    def _originate_recovery(self: SrpCore, ring: RingState, seq: int,
                            budget: int) -> tuple[int, int]:
        """Re-send old-ring frames, each wrapped in a new-ring frame."""
        queue = self._retransmit_queue
        emit = self._actions.append
        count = 0
        while queue and count < budget:
            inner = queue.popleft()
            seq = (seq + 1) & SEQ_MASK
            mcast = Mcast(sender=self._node_id, ring_id=ring.ring_id, seq=seq, safe=False,
                          payload=b"", inner=inner)
            ring.insert(mcast)
            emit(SendMulticast(encode_mcast(mcast)))
            count += 1
        self._counters.mcast_tx += count
        self._counters.recovery_frames_sent += count
        return seq, count

    def _request_missing(self: SrpCore, ring: RingState, seq: int, rtr: list[RtrEntry]) -> None:
        """Add my holes to the rtr list once seen missing miss_count_const times."""
        if seq_diff(seq, ring.high_delivered) > SORT_QUEUE_MAX:
            # Frames that far ahead would be dropped on receipt anyway; and a
            # token claiming such a seq (corrupt, or from a buggy peer) must
            # not make this loop walk up to 2**32 seqs.
            seq = (ring.high_delivered + SORT_QUEUE_MAX) & SEQ_MASK
        if not seq_lt(ring.aru, seq) or len(rtr) >= RTR_LIST_MAX:
            return
        queue = ring.queue
        misses = ring.miss_counts
        threshold = self._params.miss_count_const
        listed = {entry.seq for entry in rtr}
        ring_id = ring.ring_id
        s = ring.aru
        while s != seq and len(rtr) < RTR_LIST_MAX:
            s = (s + 1) & SEQ_MASK
            if s in queue:
                continue
            count = misses.get(s, 0) + 1
            misses[s] = count
            if count >= threshold and s not in listed:
                rtr.append(RtrEntry(ring_id, s))
        if len(misses) > 4 * RTR_LIST_MAX:
            aru = ring.aru
            for stale in [k for k in misses if not seq_lt(aru, k)]:
                del misses[stale]

    def _failed_to_receive(self: SrpCore) -> None:
        """FAILED TO RECEIVE (corosync's self-accusing variant, c:d4db2ea5):
        the token's aru stayed ours for fail_recv_const rotations (counted
        by ``_visit_token``), so we cannot receive what the others have."""
        self._counters.failed_to_receive += 1
        self._failed.update(m for m in self._installed.members if m != self._node_id)
        self._gather_enter(GatherReason.FAILED_TO_RECEIVE)

    def _my_backlog(self: SrpCore) -> int:
        if self._state is State.OPERATIONAL:
            return self._packer.pending_frames()
        return len(self._retransmit_queue)

    # ---- forwarding, retransmission and the idle hold -------------------------

    def _forward_token(self: SrpCore, token: OrfToken) -> None:
        ring = self._ring
        assert ring is not None
        self._held_token = None
        timers = self._timers
        actions = self._actions
        # _cancel_timer(TOKEN_HOLD) and, below, _set_timer(TOKEN_RETRANSMIT),
        # written out (once per visit).
        if timers.pop(_TOKEN_HOLD, None) is not None:
            actions.append(_new_tuple(CancelTimer, (_TOKEN_HOLD,)))
        data = encode_token(token)
        members = ring.members
        cached = self._successor_cache
        if cached[0] is not members:
            cached = self._successor_cache = (members, self._successor(members))
        dest = cached[1]
        self._last_token = (dest, data)
        actions.append(_new_tuple(SendUnicast, (dest, data)))
        self._counters.orf_token_tx += 1
        deadline = self._now + self._token_retransmit_ms
        timers[_TOKEN_RETRANSMIT] = deadline
        actions.append(_new_tuple(SetTimer, (_TOKEN_RETRANSMIT, deadline)))

    def _successor(self: SrpCore, members: tuple[int, ...]) -> int:
        index = members.index(self._node_id)
        return members[(index + 1) % len(members)]

    def _should_hold(self: SrpCore, ring: RingState, token: OrfToken) -> bool:
        """The representative holds an idle token (corosync's extension)."""
        if (self._state is not State.OPERATIONAL or ring.ring_id.rep != self._node_id
                or self._unchanged_rotations < self._hold_rotations
                or self._packer.pending_frames()):
            return False
        if token.rtr and self._params.cancel_token_hold_on_retransmit:
            return False
        return token.aru == token.seq

    def _release_held_token(self: SrpCore) -> None:
        held = self._held_token
        if held is None:
            return
        ring = self._ring
        if ring is None or self._state is not State.OPERATIONAL:
            self._held_token = None  # the ring it belonged to is gone (a leave)
            return
        self._counters.token_hold_releases += 1
        if self._packer.pending_frames():
            # Our own messages are waiting and the token is here: visit it
            # again (a hop to ourselves) so that it carries them now, rather
            # than after the rotation that forwarding it as held would cost.
            # What the hold visit did is on the held token (seq, aru, fcc,
            # backlog), so this visit is one the ring could have seen anyway.
            self._held_token = None
            self._counters.token_hold_originations += 1
            # The aru the hold visit put on the token never went round the
            # ring: it must not raise the safe line (min of two forwarded
            # arus a rotation apart), so this visit starts that pair afresh.
            ring.last_aru_forwarded = None
            self._visit_token(ring, held)
            return
        self._forward_token(held)

    def _on_hold_cancel(self: SrpCore, message: TokenHoldCancel) -> None:
        self._counters.hold_cancel_rx += 1
        ring = self._ring
        if ring is not None and message.ring_id == ring.ring_id:
            self._unchanged_rotations = 0
            self._release_held_token()

    def _ask_hold_release(self: SrpCore) -> None:
        """On submit: wake an idle ring (release our hold, or ask the rep)."""
        ring = self._ring
        if self._state is not State.OPERATIONAL or ring is None:
            return
        if self._held_token is not None:
            # We hold the token: the hold timer, due now, releases it on the
            # driver's next look at the clock, with the time of that turn
            # (self._now is the last event's, possibly a hold time ago) and
            # every message submitted until then.
            self._unchanged_rotations = 0
            self._set_timer(_TOKEN_HOLD, 0.0)
            return
        if ring.ring_id.rep == self._node_id:
            return  # the token comes back to us and is not held while we have frames
        if (self._unchanged_rotations >= self._hold_cancel_rotations
                and not self._hold_cancel_sent):
            self._hold_cancel_sent = True
            self._actions.append(SendMulticast(encode(
                TokenHoldCancel(sender=self._node_id, ring_id=ring.ring_id))))
            self._counters.hold_cancel_tx += 1

    def _retransmit_token(self: SrpCore) -> None:
        if self._last_token is None or self._state in (State.GATHER, State.LEFT):
            return
        dest, data = self._last_token
        self._actions.append(SendUnicast(dest, data))
        self._counters.token_retransmits += 1
        self._set_timer(Timer.TOKEN_RETRANSMIT, self._params.token_retransmit_ms)

    # ---- recovery bookkeeping on the token ------------------------------------

    def _on_token_warning_timer(self: SrpCore) -> None:
        """corosync's timer_function_orf_token_warning: no token for
        token_warning ms (since the last token, or since the last warning)
        -> report it and warn again one period later. Fired early (a token
        came after the timer was armed; see _arm_token_loss) -> re-arm for
        the deadline the last token gives."""
        now = self._now
        warning = self._token_warning_ms
        due = max(self._token_heard_ms, self._token_warned_ms) + warning
        if now + 1e-9 < due:
            self._timers[Timer.TOKEN_WARNING] = due
            self._actions.append(tuple.__new__(SetTimer, (Timer.TOKEN_WARNING, due)))
            return
        self._token_warned_ms = now
        self._counters.token_warnings += 1
        self._actions.append(TokenWarning(elapsed_ms=now - self._token_heard_ms,
                                          token_timeout_ms=self._token_loss_ms,
                                          state=self._state))
        self._set_timer(Timer.TOKEN_WARNING, warning)

    def _update_retrans_pending(self: SrpCore, pending: int) -> int:
        """Count nodes that still hold old-ring frames to re-send (RECOVERY).

        Our token carries a count instead of corosync's flag: a node adds one
        while its queue is non-empty and removes it when the queue drains, so
        zero on a visit after a full rotation means every node has sent
        everything (a flag can be cleared by a node that set it earlier while
        another still has frames).
        """
        if self._state is not State.RECOVERY:
            return 0
        if self._retransmit_queue and not self._retrans_counted:
            self._retrans_counted = True
            pending += 1
        elif not self._retransmit_queue and self._retrans_counted:
            self._retrans_counted = False
            pending = max(0, pending - 1)
        self._recovery_visits += 1
        return pending
