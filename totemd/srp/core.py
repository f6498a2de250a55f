"""``SrpCore``: the whole Totem SRP as a pure state machine.

Events in, actions out (raft's Step/Ready, h11's sans-I/O). No sockets,
threads, clocks or global randomness: the driver passes ``now_ms`` with every
event and executes the actions of ``take_actions()`` in order.

    core = SrpCore(node_id=1, params=TotemParams(nodes=3))
    core.start(now_ms, persisted_ring_seq)      # None on a node's first start
    core.receive(packet, now_ms)                # a packet from the network
    core.receive_many(packets, now_ms)          # the packets of one network read
    core.timer_expired(Timer.JOIN, now_ms)      # a timer the core armed fired
    core.submit(message, safe=False, handle=h)  # an application message
    core.submit_many([(message, safe, h), ...]) # several, one wake-up
    core.leave(now_ms)                          # graceful leave
    for action in core.take_actions(): ...

The protocol is split by sub-protocol into mixins that share this instance's
state: ordering.py (regular token, frames, delivery, flow control, hold),
membership.py (GATHER, joins, consensus, commit token), recovery.py
(RECOVERY, install). Packets are decoded by totemd.codec; a malformed packet
is counted and dropped, never asserted on.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import random

from totemd import codec
from totemd.codec import decode_ring_frame, decode_token
from totemd.pg import MessageTooLarge, Packer, QueueFull, Unpacker
from totemd.srp.actions import (Action, CancelTimer, GatherReason, PersistRingSeq,
                                SendMulticast, SetTimer, State, StateChanged, Timer)
from totemd.srp.errors import DecodeError, NotStarted, SubmitRejected
from totemd.srp.membership import MembershipMixin
from totemd.srp.messages import (CommitToken, Join, Mcast, MergeDetect, OrfToken, PacketType,
                                 RingId, TokenHoldCancel)
from totemd.srp.ordering import OrderingMixin
from totemd.srp.params import SORT_QUEUE_MAX, TotemParams
from totemd.srp.recovery import RecoveryMixin
from totemd.srp.ringstate import RingState
from totemd.srp.seqnum import SEQ_HALF, SEQ_MASK, seq_min

__all__ = ["SrpCore", "SrpStats"]

# The type byte (offset 3 of the header) of a regular token: with
# deliver_after_token, frames stored before one are left to its visit.
_ORF_TOKEN_TYPE = int(PacketType.ORF_TOKEN)
_INITIAL, _OPERATIONAL, _LEFT = State.INITIAL, State.OPERATIONAL, State.LEFT

log = logging.getLogger("totemd.srp")


class _Counters:
    """Mutable counters behind ``SrpStats`` (same field names)."""

    __slots__ = ("orf_token_tx", "orf_token_rx", "mcast_tx", "mcast_rx", "mcast_retx",
                 "mcast_duplicate", "memb_join_tx", "memb_join_rx", "join_ignored",
                 "merge_detect_tx", "merge_detect_rx", "commit_token_tx", "commit_token_rx",
                 "commit_token_dropped", "commit_tokens_created", "hold_cancel_tx",
                 "hold_cancel_rx", "token_holds", "token_hold_releases", "token_hold_originations",
                 "token_retransmits",
                 "token_duplicate", "token_dropped_wrong_ring", "operational_entered",
                 "gather_entered", "commit_entered", "recovery_entered", "token_lost",
                 "consensus_timeouts", "failed_to_receive", "leaves_received",
                 "rx_malformed", "rx_from_self", "rx_foreign_ring", "rx_out_of_window",
                 "rtr_foreign_dropped", "frames_delivered", "messages_delivered",
                 "frames_freed", "recovery_frames_sent", "recovery_frames_dropped",
                 "submit_rejected", "token_warnings")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SrpStats:
    """A snapshot of the core's counters (corosync's stats.srp.* in spirit).

    Every field is a count since the core was created; ``state`` and
    ``ring_id`` are the current values, ``sort_queue_frames`` the frames held.
    """

    state: str
    ring_id: tuple[int, int]
    sort_queue_frames: int
    orf_token_tx: int
    orf_token_rx: int
    mcast_tx: int
    mcast_rx: int
    mcast_retx: int
    mcast_duplicate: int
    memb_join_tx: int
    memb_join_rx: int
    join_ignored: int
    merge_detect_tx: int
    merge_detect_rx: int
    commit_token_tx: int
    commit_token_rx: int
    commit_token_dropped: int
    commit_tokens_created: int
    hold_cancel_tx: int
    hold_cancel_rx: int
    token_holds: int
    token_hold_releases: int
    # Releases that visited the held token again to carry this node's own
    # new messages (the representative's submits on an idle ring).
    token_hold_originations: int
    token_retransmits: int
    token_duplicate: int
    token_dropped_wrong_ring: int
    operational_entered: int
    gather_entered: int
    commit_entered: int
    recovery_entered: int
    token_lost: int
    consensus_timeouts: int
    failed_to_receive: int
    leaves_received: int
    rx_malformed: int
    rx_from_self: int
    rx_foreign_ring: int
    rx_out_of_window: int
    rtr_foreign_dropped: int
    frames_delivered: int
    messages_delivered: int
    frames_freed: int
    recovery_frames_sent: int
    recovery_frames_dropped: int
    submit_rejected: int
    token_warnings: int


class SrpCore(OrderingMixin, MembershipMixin, RecoveryMixin):
    """One node's Totem SRP protocol engine.

    Args:
        node_id: this node's id (1 .. 2**32-1).
        params: timers and constants.
        rng: injected randomness, used only for the ring-seq epoch of a node
            that has nothing persisted (None: that epoch is 0, as in corosync).
        initial_seq: the frame seq every new ring starts at (tests use a value
            near 2**32 to exercise wrap-around).
        deliver_frames: emit one ``DeliverFrame`` per delivered frame (its
            messages in a list) instead of one ``Deliver`` per message.
        deliver_after_token: keep deliveries off the token's path: a token
            visit with frames to deliver forwards (or holds) the token first
            and leaves them owed (``delivery_owed``; ``own_delivery_owed``
            when it stamped frames of ours and left only a few), so that the
            driver sends the token before it calls ``deliver_pending()``;
            frames stored before a token are delivered with that visit's, and
            ``receive_many(..., deliver=False)`` stores frames for a later
            visit or ``deliver_pending()``. What is delivered and in which
            order does not change, only when; everything deliverable is
            delivered before the node leaves OPERATIONAL.
    """

    def __init__(self, node_id: int, params: TotemParams | None = None,
                 rng: "random.Random | None" = None, initial_seq: int = 0,
                 deliver_frames: bool = False, deliver_after_token: bool = False) -> None:
        if not 0 < node_id <= 0xFFFFFFFF:
            raise ValueError(f"node_id must be within 1..2**32-1, got {node_id}")
        self._node_id = node_id
        self._params = params if params is not None else TotemParams()
        self._rng = rng
        self._initial_seq = initial_seq & 0xFFFFFFFF
        self._deliver_frames = deliver_frames
        self._deliver_after_token = deliver_after_token
        self._delivery_owed = False  # frames stored and not yet offered to _deliver_ready
        self._own_delivery_owed = False  # ... and the last visit stamped ours (few to deliver)
        self._token_loss_ms = self._params.effective_token_ms  # a property: computed once
        # token_warning (0.0: off). The warning timer is lazy: a token visit only
        # notes its time in _token_heard_ms; the timer, when it fires, re-arms
        # itself for the time still missing (see _on_token_warning_timer).
        self._token_warning_ms = self._params.token_warning_ms
        self._token_heard_ms = 0.0
        self._token_warned_ms = float("-inf")
        # corosync's idle hold: a rotation is unchanged when the token comes
        # back with the seq it had at our previous visit (nobody sent). The
        # representative holds after MORE than seqno_unchanged_const of them,
        # the others count the token as held from seqno_unchanged_const on:
        # the one rotation between makes sure that every node that may find
        # the token held asks for it back (token_hold_cancel) on a submit.
        self._hold_cancel_rotations = self._params.seqno_unchanged_const
        self._hold_rotations = self._hold_cancel_rotations + 1
        # Read on every token visit: plain attributes of the core.
        self._window_size = self._params.window_size
        self._max_messages = self._params.max_messages
        self._fail_recv_const = self._params.fail_recv_const
        self._token_retransmit_ms = self._params.token_retransmit_ms
        # (members, the node after us in them): _forward_token's cache.
        self._successor_cache: tuple[tuple[int, ...] | None, int] = (None, 0)
        # (ring id, codec.frame_prefix of our frames on it): _originate_new's cache.
        self._frame_prefix: tuple[RingId | None, bytes] = (None, b"")
        self._packer = Packer(self._params.frame_payload_max, self._params.max_message_size,
                              self._params.max_queued_bytes)
        self._unpacker = Unpacker(self._params.max_message_size)
        self._counters = _Counters()
        self._actions: list[Action] = []
        self._now = 0.0
        self._state = State.INITIAL
        self._timers: dict[Timer, float] = {}
        # Ring identity: my_ring_id is the ring I am in or forming (persisted).
        self._ring_id = RingId(node_id, 0)
        self._high_ring_seq_seen = 0
        self._installed = RingState(self._ring_id, (node_id,), self._initial_seq)
        self._ring: RingState | None = None
        self._reg_delivered = False
        # Membership.
        self._proc: set[int] = {node_id}
        self._failed: set[int] = set()
        self._consensus: set[int] = {node_id}
        # Recovery.
        self._trans_members: tuple[int, ...] = ()
        self._agreed_safe_line = 0
        self._retransmit_queue: deque[Mcast] = deque()
        self._reset_token_state()

    def _reset_token_state(self) -> None:
        """Per-ring token bookkeeping, reset when a new ring is adopted."""
        self._token_seq_seen: int | None = None
        self._commit_token_seq_seen: int | None = None
        self._last_token: tuple[int, bytes] | None = None
        self._held_token: OrfToken | None = None
        self._previous_sent = 0
        self._previous_backlog = 0
        self._previous_token_aru: int | None = None
        self._aru_stuck_rotations = 0
        self._unchanged_rotations = 0
        self._last_arrival_seq: int | None = None  # the token's seq as it came last visit
        self._hold_cancel_sent = False
        self._retrans_counted = False
        self._recovery_visits = 0
        self._install_seq: int | None = None
        self._originated_orf_token = False

    # ---- public interface -------------------------------------------------------

    @property
    def node_id(self) -> int:
        """This node's id."""
        return self._node_id

    @property
    def state(self) -> State:
        """The current membership state."""
        return self._state

    @property
    def ring_id(self) -> RingId:
        """The ring this node is in (or forming)."""
        return self._ring_id

    @property
    def members(self) -> tuple[int, ...]:
        """Members of the last installed ring."""
        return self._installed.members

    @property
    def params(self) -> TotemParams:
        """The timers and constants in force."""
        return self._params

    def start(self, now_ms: float, persisted_ring_seq: int | None) -> None:
        """Start the node: load the ring seq, bump it, and enter GATHER.

        Args:
            now_ms: the driver's clock.
            persisted_ring_seq: the ring seq stored by a previous incarnation,
                or None if there is none (first start, or the file was lost).
                It is bumped by one so a fast restart never reuses a ring id
                (c:3675dace). Without one the node starts from a random epoch
                (from the injected rng, a multiple of 4 below 2**42): a node
                that lost its file must not re-form a ring id it formed before
                with other members (rule S5).

        Raises:
            RuntimeError: the core was already started.
        """
        if self._state is not State.INITIAL:
            raise RuntimeError("start() called twice")
        self._now = now_ms
        if persisted_ring_seq is None:
            seq = self._rng.getrandbits(40) << 2 if self._rng is not None else 0
        else:
            seq = persisted_ring_seq + 1
        self._ring_id = RingId(self._node_id, seq)
        self._high_ring_seq_seen = seq
        self._installed = RingState(self._ring_id, (self._node_id,), self._initial_seq)
        self._actions.append(PersistRingSeq(seq))
        self._gather_enter(GatherReason.STARTUP)

    def receive(self, data: bytes, now_ms: float) -> None:
        """Handle one packet from the network; bad packets are counted and dropped.

        Args:
            data: the packet bytes.
            now_ms: the driver's clock.

        Raises:
            NotStarted: called before ``start``.
        """
        self._check_running(now_ms)
        self._receive_all((data,))

    def receive_many(self, packets: Iterable[bytes], now_ms: float, deliver: bool = True) -> None:
        """Handle the packets of one network read, in order.

        Equivalent to ``receive`` for each packet in turn (the same actions in
        the same order), but cheaper per packet: the frames of the running
        ring are stored as they come and delivered together at the end of a
        run of them (before any other packet is handled, and at the end), and
        the per-call work is done once. With ``deliver_after_token`` a run
        that ends at a token is delivered by the token's visit, after it
        forwarded the token.

        Args:
            packets: the packets' bytes, in the order they were read.
            now_ms: the driver's clock.
            deliver: False (with ``deliver_after_token``) stores the frames of
                the last run without delivering them: the next token visit,
                ``deliver_pending`` or leaving OPERATIONAL delivers them.

        Raises:
            NotStarted: called before ``start``.
        """
        # _check_running, written out (once per network read).
        state = self._state
        if state is _INITIAL:
            raise NotStarted("the core must be started before it gets events")
        self._now = now_ms
        deliver = deliver or not self._deliver_after_token
        if type(packets) is list and len(packets) == 1 and state is not _LEFT:
            data = packets[0]
            if len(data) > 3 and data[3] == _ORF_TOKEN_TYPE:
                # A token alone (a network read on an idle ring): what
                # _receive_all does for it, without its per-call set-up.
                self._receive_packet(data)
                if deliver and self._delivery_owed:
                    self._deliver_owed()
                return
        self._receive_all(packets, deliver)

    @property
    def delivery_owed(self) -> bool:
        """True while stored frames wait for ``deliver_pending`` or a token visit."""
        return self._delivery_owed

    @property
    def own_delivery_owed(self) -> bool:
        """True when the last token visit stamped frames of ours and left at
        most ``EARLY_DELIVERY_FRAMES`` owed (an idle ring: our client's own
        message): a driver calls ``deliver_pending`` as soon as that visit's
        token is sent, before other work, rather than when it has time."""
        return self._own_delivery_owed and self._delivery_owed

    def deliver_pending(self) -> None:
        """Deliver what the frames stored by ``receive_many(deliver=False)`` made
        deliverable (nothing if no such frames wait)."""
        if self._delivery_owed:
            self._deliver_owed()

    def _deliver_owed(self) -> None:
        self._delivery_owed = self._own_delivery_owed = False
        ring = self._ring
        if self._state is State.OPERATIONAL and ring is not None:
            self._deliver_ready(ring)
            # What every member has and we delivered leaves the sort queue
            # (a visit that put its deliveries off left this to us).
            self._counters.frames_freed += ring.free_up_to(seq_min(ring.safe_line,
                                                                   ring.high_delivered))

    def _receive_all(self, packets: Iterable[bytes], deliver: bool = True) -> None:
        state = self._state
        if state is _LEFT:
            return
        ring = self._ring if state is _OPERATIONAL else None
        ring_id = ring.ring_id if ring is not None else None
        queue = ring.queue if ring is not None else None
        counters = self._counters
        pending = False  # frames of ``ring`` stored but not yet delivered
        after_token = self._deliver_after_token
        me = self._node_id
        frames = 0
        # Locals: this loop runs once per packet.
        decode_frame, window, mask, half = decode_ring_frame, SORT_QUEUE_MAX, SEQ_MASK, SEQ_HALF
        for data in packets:
            frame = decode_frame(data, ring_id, me) if ring_id is not None else None
            if frame is not None:
                # _on_mcast's OPERATIONAL same-ring case, delivery deferred,
                # with RingState.insert written out (once per frame): a frame
                # within SORT_QUEUE_MAX after high_delivered and new is stored.
                frames += 1
                seq = frame[2]
                offset = (seq - ring.high_delivered) & mask
                if 0 < offset <= window and seq not in queue:
                    queue[seq] = frame
                    if 0 < ((seq - ring.high_seq) & mask) <= half:
                        ring.high_seq = seq
                    if seq == ((ring.aru + 1) & mask):
                        # The frame after aru: aru moves across it and what follows.
                        seq = (seq + 1) & mask
                        while seq in queue:
                            seq = (seq + 1) & mask
                        ring.aru = (seq - 1) & mask
                    pending = True
                elif window < offset <= half:
                    counters.rx_out_of_window += 1
                else:  # at or before high_delivered, or held already
                    counters.mcast_duplicate += 1
                continue
            if pending:
                pending = False
                if after_token and len(data) > 3 and data[3] == _ORF_TOKEN_TYPE:
                    # The visit delivers them once the token is on its way
                    # (or the end of this call does, if the token is dropped).
                    self._delivery_owed = True
                else:
                    self._deliver_ready(ring)
            self._receive_packet(data)
            ring = self._ring if self._state is _OPERATIONAL else None
            ring_id = ring.ring_id if ring is not None else None
            queue = ring.queue if ring is not None else None
        counters.mcast_rx += frames
        if pending:
            self._delivery_owed = True
        if deliver and self._delivery_owed:
            self._deliver_owed()

    def _receive_packet(self, data: bytes) -> None:
        """Decode one packet and hand it to its handler."""
        if len(data) > 3 and data[3] == _ORF_TOKEN_TYPE:
            # The token (once per visit): decode_token is what decode does for
            # it, and a token from ourselves is legitimate (a singleton ring).
            ring = self._ring
            try:
                token = decode_token(data, ring.ring_id if ring is not None else None)
            except DecodeError as error:
                self._counters.rx_malformed += 1
                log.debug("node %d dropped a malformed packet: %s", self._node_id, error)
                return
            self._on_token(token)
            return
        try:
            packet = codec.decode(data)
        except DecodeError as error:
            self._counters.rx_malformed += 1
            log.debug("node %d dropped a malformed packet: %s", self._node_id, error)
            return
        if packet.sender == self._node_id and not isinstance(packet, (OrfToken, CommitToken)):
            # Our own multicast looped back (we deliver our own frames
            # directly); tokens to ourselves are legitimate in a singleton ring.
            self._counters.rx_from_self += 1
            return
        kind = type(packet)
        if kind is Mcast:
            self._on_mcast(packet)
        elif kind is OrfToken:
            self._on_token(packet)
        elif kind is Join:
            self._on_join(packet)
        elif kind is CommitToken:
            self._on_commit_token(packet)
        elif kind is MergeDetect:
            self._on_merge_detect(packet)
        elif kind is TokenHoldCancel:
            self._on_hold_cancel(packet)

    def timer_expired(self, timer: Timer, now_ms: float) -> None:
        """A timer fired. Stale firings (cancelled, re-armed later) are ignored.

        Args:
            timer: which timer.
            now_ms: the driver's clock.
        """
        self._check_running(now_ms)
        deadline = self._timers.get(timer)
        if deadline is None or now_ms + 1e-9 < deadline:
            return
        del self._timers[timer]
        state = self._state
        if timer is Timer.TOKEN_LOSS:
            reason = {State.OPERATIONAL: GatherReason.TOKEN_LOST_OPERATIONAL,
                      State.COMMIT: GatherReason.TOKEN_LOST_COMMIT,
                      State.RECOVERY: GatherReason.TOKEN_LOST_RECOVERY}.get(state)
            if reason is not None:
                self._counters.token_lost += 1
                self._gather_enter(reason)
        elif timer is Timer.TOKEN_RETRANSMIT:
            self._retransmit_token()
        elif timer is Timer.TOKEN_HOLD:
            self._release_held_token()
        elif timer is Timer.JOIN:
            if state is State.GATHER:
                self._on_join_timer()
        elif timer is Timer.SEND_JOIN:
            if state is State.GATHER:
                self._send_join_now()
        elif timer is Timer.CONSENSUS:
            if state is State.GATHER:
                self._on_consensus_timeout()
        elif timer is Timer.MERGE_DETECT:
            self._on_merge_timer()
        elif timer is Timer.TOKEN_WARNING:
            self._on_token_warning_timer()

    def submit(self, message: bytes, safe: bool = False, handle: Any = None) -> None:
        """Queue an application message for totally ordered delivery.

        Args:
            message: up to ``params.max_message_size`` bytes.
            safe: deliver only once every member is known to have it.
            handle: reported in ``Originated`` when its last part is stamped.

        Raises:
            SubmitRejected: too large, or the send queue is full.
        """
        try:
            self._packer.submit(message, safe, handle)
        except (MessageTooLarge, QueueFull) as error:
            self._counters.submit_rejected += 1
            raise SubmitRejected(str(error)) from error
        # _ask_hold_release acts only in these two cases (a busy ring is in
        # neither): skip the call per message otherwise.
        if self._held_token is not None or self._unchanged_rotations >= self._hold_cancel_rotations:
            self._ask_hold_release()

    def submit_many(self, items: Iterable[tuple[bytes, bool, Any]]) -> tuple[int, str | None]:
        """Queue application messages in order until one is refused.

        The same as calling ``submit`` for each ``(message, safe, handle)``,
        but the idle ring is woken once for the batch rather than once per
        message, and a refusal is returned rather than raised.

        Args:
            items: ``(message, safe, handle)`` in submission order.

        Returns:
            (how many were queued, the reason the next one was refused or
            None when all were queued). Messages after a refused one are not
            looked at.
        """
        submit = self._packer.submit
        accepted = 0
        refused: str | None = None
        for message, safe, handle in items:
            try:
                submit(message, safe, handle)
            except (MessageTooLarge, QueueFull) as error:
                self._counters.submit_rejected += 1
                refused = str(error)
                break
            accepted += 1
        if accepted and self._state is not State.INITIAL:
            self._ask_hold_release()
        return accepted, refused

    def leave(self, now_ms: float) -> None:
        """Leave the ring gracefully: multicast a leave, then ignore everything."""
        self._check_running(now_ms)
        if self._state is State.LEFT:
            return
        if self._delivery_owed:
            self._deliver_owed()  # what was received is delivered before we go
        self._failed.add(self._node_id)
        self._proc.discard(self._node_id)
        leave = Join(sender=self._node_id, ring_seq=self._ring_id.seq,
                     proc=frozenset(self._proc), failed=frozenset(self._failed))
        self._actions.append(SendMulticast(codec.encode(leave)))
        for timer in list(self._timers):
            self._cancel_timer(timer)
        self._set_state(State.LEFT, None)

    def take_actions(self) -> list[Action]:
        """The actions produced since the last call, in order."""
        actions = self._actions
        self._actions = []
        return actions

    def queued_frames(self) -> int:
        """Frames' worth of application data waiting to be originated."""
        return self._packer.pending_frames()

    def stats(self) -> SrpStats:
        """A frozen snapshot of the counters."""
        counters = self._counters
        values = {name: getattr(counters, name) for name in _Counters.__slots__}
        held = len(self._installed.queue) + (len(self._ring.queue) if self._ring is not None
                                             and self._ring is not self._installed else 0)
        return SrpStats(state=self._state.value, ring_id=tuple(self._ring_id),
                        sort_queue_frames=held, **values)

    # ---- helpers shared by the mixins ------------------------------------------

    def _check_running(self, now_ms: float) -> None:
        if self._state is State.INITIAL:
            raise NotStarted("the core must be started before it gets events")
        self._now = now_ms

    def _set_timer(self, timer: Timer, delay_ms: float) -> None:
        deadline = self._now + delay_ms
        self._timers[timer] = deadline
        # tuple.__new__: a few timers are set on every token visit.
        self._actions.append(tuple.__new__(SetTimer, (timer, deadline)))

    def _arm_token_loss(self) -> None:
        """(Re)start the token loss timer, and the token warning with it
        (corosync's reset_token_timeout): a token was just seen, or one is
        expected from now on (COMMIT, RECOVERY)."""
        self._set_timer(Timer.TOKEN_LOSS, self._token_loss_ms)
        if self._token_warning_ms:
            self._token_heard_ms = self._now
            # Lazy: an armed warning timer stays where it is (one action per
            # warning period instead of one per token visit); it moves itself
            # to the right deadline when it fires.
            if Timer.TOKEN_WARNING not in self._timers:
                self._set_timer(Timer.TOKEN_WARNING, self._token_warning_ms)

    def _cancel_timer(self, timer: Timer) -> None:
        if self._timers.pop(timer, None) is not None:
            self._actions.append(tuple.__new__(CancelTimer, (timer,)))

    def _set_state(self, new: State, reason: GatherReason | None) -> None:
        """Change state, log it, and report it (with the reason on GATHER)."""
        old = self._state
        self._state = new
        if reason is None:
            text = f"node {self._node_id} entered {new.value} (ring {self._ring_id.rep:x}." \
                   f"{self._ring_id.seq:x})"  # hex, as corosync prints ring ids
        elif reason.value.endswith(old.value) or reason is GatherReason.STARTUP:
            text = f"node {self._node_id} entered {new.value}: {reason.value}"
        else:
            text = f"node {self._node_id} entered {new.value}: {reason.value} in {old.value}"
        log.info(text)
        self._actions.append(StateChanged(old=old, new=new, reason=reason, text=text))


assert {f.name for f in fields(SrpStats)} == set(_Counters.__slots__) | {
    "state", "ring_id", "sort_queue_frames"}
