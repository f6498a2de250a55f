"""totemd: the Totem SRP core driven by real sockets, a real clock and local clients.

``Daemon`` (run by the process ``python -m totemd.process -c corosync.conf``,
normally started by ``coro start``'s supervisor) is one single-threaded loop
built on epoll.
Why not asyncio: one turn must do a fixed sequence of steps (drain the
socket, serve local clients, fire timers, execute the core's actions in
order) and asyncio's callback scheduling would interleave them in an order
we do not control, for more overhead per packet.

One loop turn:

1. wait in ``select`` until a packet, a local request, a signal, or the
   earliest of: the core's next timer, the statistics tick (1 s), the
   coroipc server's housekeeping tick (100 ms);
2. check how long the loop was not scheduled (corosync's pause detection);
3. drain the UDP socket (bounded batches) and the self-addressed token
   queue, feeding each packet to ``SrpCore.receive``, and execute the
   core's actions at once (the token is forwarded before anything else);
4. fire the timers that are due (``SrpCore.timer_expired``), execute;
5. serve local clients (submits go into the core's send queue, bounded per
   turn by ``IPC_PASSES_PER_TURN`` passes), execute;
6. executing ``SrpCore.take_actions()`` means, in order (``Daemon._execute``):
   ``PersistRingSeq`` is fsync'd and renamed into place before any later
   action runs; the EVS log is flushed before every send; sends go to the
   transport (a token to ourselves is queued for the next turn);
   timers go on the heap; deliveries, configuration changes and
   originations go to the subscribed local clients and the EVS log.

Statistics are published into objdb (``totemd.daemon_stats``, keys in
``totemd.stats``) on every configuration change and once a second.
"""

from __future__ import annotations

import logging
import os
import random
import select
import signal
import struct
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from coroipc import IpcServer
from coroipc.errors import IpcError
from objdb.clearing import Baselines, TriggerWatch
from totemd import local_codec as wire
from totemd.crypto import PacketCrypto
from totemd.evslog import EventLog, next_incarnation
from totemd.local import TotemService
from totemd.ringstore import load_ring_seq, store_ring_seq
from totemd.settings import NodeSettings, StartupError, resolve_settings
from totemd.signal_wakeup import SignalWakeup
from totemd.srp import (CancelTimer, ConfChange, ConfKind, Deliver, DeliverFrame, Originated,
                        PersistRingSeq, SendMulticast, SendUnicast, SetTimer, SrpCore,
                        StateChanged, Timer, TokenWarning)
from totemd import codec  # after totemd.srp: codec and the core import each other
from totemd.daemon_local import QUEUE_VISITS, LocalSideMixin, default_max_queued_messages
from totemd.daemon_stats import StatsMixin
from totemd.stats import MemberRecord, format_ring_id
from totemd.transport import RECEIVE_BATCH_MAX, UdpTransport

__all__ = ["NodeSettings", "StartupError", "Daemon", "resolve_settings"]

log = logging.getLogger("totemd")

IPC_TICK_MS = 100.0
RECEIVE_BATCHES_PER_TURN = 4
IPC_PASSES_PER_TURN = 4
#: Frames read without a token are stored and delivered by this node's next
#: token visit (after it forwarded the token), or after this long at most.
DEFERRED_DELIVERY_MS = 2.0
_TOTEM_HEADER = struct.Struct("!HBBBI")
# The type byte of a regular token (offset 3 of the Totem header): a network
# read is cut after each one (see _drain_network).
_ORF_TOKEN = int(codec.PacketType.ORF_TOKEN)


class _Timers:
    """The core's armed timers, one deadline each.

    A handful of timers, two of them re-armed on every token visit: a dict
    and ``min`` over its values cost less than a heap that piles up stale
    entries to skip (measured in a py-spy of an idle ring: the heap's
    ``next_deadline`` was ~7% of a daemon's busy time).
    """

    def __init__(self) -> None:
        self._deadlines: dict[Timer, float] = {}

    def set(self, timer: Timer, deadline_ms: float) -> None:
        self._deadlines[timer] = deadline_ms

    def cancel(self, timer: Timer) -> None:
        self._deadlines.pop(timer, None)

    def next_deadline(self) -> float | None:
        deadlines = self._deadlines
        return min(deadlines.values()) if deadlines else None

    def pop_due(self, now_ms: float) -> list[Timer]:
        """The timers due at ``now_ms``, earliest first; they are disarmed."""
        deadlines = self._deadlines
        if not deadlines or min(deadlines.values()) > now_ms:
            return []
        due = sorted((item for item in deadlines.items() if item[1] <= now_ms),
                     key=lambda item: item[1])
        for timer, _deadline in due:
            del deadlines[timer]
        return [timer for timer, _deadline in due]


class Daemon(LocalSideMixin, StatsMixin):
    """One node's totemd. ``open()``, then ``run()``, then ``close()``.

    Args:
        settings: from ``resolve_settings``.
        clock_ns: monotonic nanoseconds (injectable for tests).
    """

    def __init__(self, settings: NodeSettings, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self._clock_ns = clock_ns
        self.inc = 0
        # OS-seeded: the core draws its ring-seq epoch from it when no ring seq is
        # stored, and a seed that repeats across restarts would repeat ring ids.
        # One DeliverFrame per frame (its messages in a list), not one Deliver per message.
        # Deliveries happen off the token's path (deliver_after_token): a
        # visit forwards the token first and _drain_network delivers once it
        # is sent; frames read between visits are delivered with the next
        # visit's (or after DEFERRED_DELIVERY_MS).
        self.core = SrpCore(settings.node_id, settings.params, rng=random.Random(),
                            deliver_frames=True, deliver_after_token=True)
        self._owed_since_ms: float | None = None
        self.transport = UdpTransport(
            mode=settings.mode, bind_address=settings.bind_address, port=settings.port,
            peers={n: a for n, a in settings.peers.items() if n != settings.node_id},
            multicast_group=settings.multicast_group, window_size=settings.params.window_size,
            netmtu=settings.params.netmtu, multicast_ttl=settings.multicast_ttl,
            crypto=PacketCrypto(settings.crypto) if settings.crypto is not None else None,
            link_mtu=settings.link_mtu, node_id=settings.node_id)
        self.service = TotemService(self)
        self.server: IpcServer | None = None
        self.evslog: EventLog | None = None
        # epoll directly: the selectors module's per-event Python work was a
        # few microseconds of every turn, on the token's path.
        self._selector: select.epoll | None = None
        self._network_fd = -1
        self._ipc_fd = -1
        self._signal_fd = -1
        self._wakeup: SignalWakeup | None = None
        self._timers = _Timers()
        self._loopback: deque[bytes] = deque()
        self._learned: dict[int, str] = {}
        self._stop_requested = False
        self._started = False
        self._sseq = 0
        self._originated = 0                # own messages the core has stamped
        self._own_delivered = 0             # highest own sseq delivered back to us
        self._draining = False              # stopping: no new submits, finish the queued ones
        self.max_queued_messages = int(settings.extra.get("send_queue_messages")
                                       or default_max_queued_messages(settings.params))
        # What QUEUE_VISITS token visits originate, whatever the message size.
        self.max_queued_frames = QUEUE_VISITS * settings.params.max_messages
        self._frame_payload = settings.params.frame_payload_max
        # One turn's deliveries for the subscribers (see _flush_deliveries).
        self._batch_rows: list[bytes] = []     # DELIVER_BATCH table rows ...
        self._batch_bodies: list[Any] = []     # ... and their payloads
        self._batch_count = 0
        self._batch_bytes = 0
        self._pending_payload = 0
        self._batches: list[bytes] = []
        self._singles: list[bytes] | None = None
        self._in_conf: Any = None
        self._last_delivered: str | None = None
        self._members: tuple[int, ...] = ()
        self._ring_id: tuple[int, int] = (settings.node_id, 0)
        self._member_records: dict[int, MemberRecord] = {
            n: MemberRecord(ip=a) for n, a in settings.peers.items()}
        self._last_state_change = ""
        self._counts = dict.fromkeys((
            "messages_submitted", "bytes_submitted", "messages_delivered", "bytes_delivered",
            "messages_originated", "conf_changes", "unframed_deliveries", "unicast_unknown_dest",
            "loop_turns", "loop_stalls", "ring_seq_writes", "cmap_errors",
            "try_again_queue_messages", "try_again_queue_frames", "try_again_queue_bytes",
            "token_warnings"), 0)
        self._max_stall_ms = 0.0
        # A derived property of the params: computed once, read every turn.
        self._stall_threshold_ms = 0.8 * settings.params.effective_token_ms
        self._max_turn_ms = 0.0
        self._last_turn_ms: float | None = None
        self._token_rate = (0.0, 0)       # (time, orf_token_rx) at the last stats tick
        self._token_rotation_ms = 0.0
        self._next_stats_ms = 0.0
        self._publish_due = True
        self._cmap: Any = None
        self._cmap_retry_ms = 0.0
        self._published: dict[str, Any] = {}
        self._triggers = TriggerWatch()  # coro cmap -C, dump_flight_data (objdb.clearing)
        self._baselines = Baselines()

    # -- life cycle ----------------------------------------------------------------------

    def now_ms(self) -> float:
        return self._clock_ns() / 1e6

    def open(self) -> None:
        """Bind, listen, start the core. Everything opened is closed by ``close``.

        Raises:
            StartupError: a resource cannot be set up (the reason is in the message).
        """
        from totemd.ringstore import RingStoreError
        from totemd.transport import TransportError

        settings = self.settings
        try:
            persisted = load_ring_seq(settings.state_dir, self.node_id)   # before any write
            self.inc = next_incarnation(settings.state_dir)
        except (OSError, ValueError, RingStoreError) as error:
            raise StartupError(f"state directory {settings.state_dir}: {error}") from error
        try:
            self.transport.open()
        except TransportError as error:
            raise StartupError(str(error)) from error
        try:
            if settings.evs_log:
                self.evslog = _open_event_log(settings.evs_log, self.node_id, self.inc)
        except OSError as error:
            raise StartupError(f"EVS log {settings.evs_log}: {error.strerror}") from error
        # Clients are woken once, at the end of a turn (flush_wakes in turn):
        # a woken client that takes the CPU mid-turn would hold up the token.
        # Root, our own uid, and the file's uidgid entries (as objdb's cmap).
        self.server = IpcServer(settings.run_dir, [self.service], defer_wakes=True,
                                allowed_uids={0, os.geteuid(), *settings.ipc_uids},
                                allowed_gids=set(settings.ipc_gids))
        try:
            self.server.start()
        except (IpcError, OSError) as error:
            raise StartupError(f"run directory {settings.run_dir}: {error}") from error
        self._selector = select.epoll()
        self._network_fd = self.transport.fileno()
        self._selector.register(self._network_fd, select.EPOLLIN)
        self._ipc_fd = self.server.fileno()
        self._selector.register(self._ipc_fd, select.EPOLLIN)
        self._wakeup = SignalWakeup()
        self._signal_fd = self._wakeup.read_end
        self._selector.register(self._signal_fd, select.EPOLLIN)
        now = self.now_ms()
        self._next_stats_ms = now
        self._token_rate = (now, 0)
        log.info("node %d incarnation %d: %s %s:%d, run dir %s, ring seq %s", self.node_id,
                 self.inc, settings.mode, settings.bind_address, settings.port, settings.run_dir,
                 "none stored" if persisted is None else persisted)
        self.core.start(now, persisted)
        self._started = True
        self._execute(self.core.take_actions())

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: leave the ring and stop (handled inside the loop)."""
        assert self._wakeup is not None
        self._wakeup.arm()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_requested = True

    def request_stop(self) -> None:
        self._stop_requested = True

    def close(self) -> None:
        """Leave the ring (if it was joined), stop the event log, close everything. Idempotent."""
        if self._started:
            self._started = False
            try:
                self.core.leave(self.now_ms())
                self._execute(self.core.take_actions())
            except Exception:  # noqa: BLE001 - closing must finish whatever happened
                log.exception("leaving the ring failed")
            log.info("node %d left the ring", self.node_id)
        if self.evslog is not None and not self.evslog.closed:
            self.evslog.stop()
        if self._cmap is not None:
            self._close_cmap()
        if self.server is not None:
            self.server.close()
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None
        self.transport.close()

    # -- the loop ------------------------------------------------------------------------

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Turn the loop until a stop is requested (signal, ``request_stop``) or ``until()``.

        A requested stop first drains (see ``drain``), so what the node
        accepted from its clients is ordered and self-delivered before it leaves.
        """
        busy = False
        while not self._stop_requested and (until is None or not until()):
            busy = self.turn(busy)
        if self._stop_requested:
            self.drain()

    def drain(self, timeout_ms: float | None = None) -> bool:
        """Stop accepting submits (SHUTTING_DOWN) and keep turning until every
        message this node accepted has been delivered back to it, or until
        ``timeout_ms`` (default: twice the token timeout) runs out: a node cut
        off from its ring must still stop. Returns True if fully drained.
        """
        self._draining = True
        if timeout_ms is None:
            timeout_ms = 2 * self.settings.params.effective_token_ms
        deadline = self.now_ms() + timeout_ms
        busy = False
        while self._own_delivered < self._sseq and self.now_ms() < deadline:
            busy = self.turn(busy)
        drained = self._own_delivered >= self._sseq
        if not drained:
            log.warning("node %d stopping with %d accepted message(s) not delivered back after "
                        "%.0f ms", self.node_id, self._sseq - self._own_delivered, timeout_ms)
        return drained

    def _select_timeout_s(self, now: float, busy: bool) -> float:
        if busy or self._loopback:
            return 0.0
        wake = min(self._next_stats_ms, now + IPC_TICK_MS)
        if self._owed_since_ms is not None:
            wake = min(wake, self._owed_since_ms + DEFERRED_DELIVERY_MS)
        deadline = self._timers.next_deadline()
        if deadline is not None:
            wake = min(wake, deadline)
        return max(0.0, (wake - now) / 1000.0)

    def turn(self, busy: bool = False) -> bool:
        """One loop turn (see the module docstring).

        Args:
            busy: local clients may have work waiting: poll without waiting.

        Returns:
            True if local clients may still have work (the next turn polls).
        """
        assert self._selector is not None and self.server is not None
        self.server.flush_wakes()
        before = self.now_ms()
        ready = self._selector.poll(self._select_timeout_s(before, busy))
        now = self.now_ms()
        self._check_scheduling(now)
        self._counts["loop_turns"] += 1
        network = ipc = False
        for fd, _mask in ready:
            if fd == self._network_fd:
                network = True
            elif fd == self._ipc_fd:
                ipc = True
            elif fd == self._signal_fd:
                self._wakeup.drain()
        # The token goes on before local clients are served (_drain_network
        # executes the actions of each packet): their requests (and the
        # wake-ups of their answers, which can hand the CPU to the client on
        # a busy machine) must not stand between the token's arrival and its
        # forwarding. This execute sends the deliveries collected meanwhile.
        # A turn for the clients alone does not try the socket (a failed
        # read is a system call and an exception).
        if network or self._loopback:
            self._drain_network(now)
            self._execute(self.core.take_actions())
            # The token is gone: the subscribers may run now (their
            # deliveries, their next submits) rather than after the turn.
            self.server.flush_wakes()
        else:
            self._execute(self.core.take_actions())
        for timer in self._timers.pop_due(now):
            self.core.timer_expired(timer, now)
        owed = self._owed_since_ms
        if owed is not None and now - owed >= DEFERRED_DELIVERY_MS:
            self.core.deliver_pending()  # no token came by: do not wait longer
            self._owed_since_ms = None
        self._execute(self.core.take_actions())
        ipc_busy = self._serve_local(ipc)
        self.service.flush()
        self._execute(self.core.take_actions())
        if self.evslog is not None:
            self.evslog.flush()
        # Whatever left deliveries owed this turn (frames stored after the
        # last token, a visit run by a submit or a timer): at most
        # DEFERRED_DELIVERY_MS until they are delivered anyway.
        if not self.core.delivery_owed:
            self._owed_since_ms = None
        elif self._owed_since_ms is None:
            self._owed_since_ms = now
        if now >= self._next_stats_ms or self._publish_due:
            self._stats_tick(now)
        self._max_turn_ms = max(self._max_turn_ms, self.now_ms() - now)
        return ipc_busy

    def _check_scheduling(self, now: float) -> None:
        """Corosync's pause detection: a gap between turns above 0.8 x token."""
        last, self._last_turn_ms = self._last_turn_ms, now
        if last is None:
            return
        gap = now - last
        threshold = self._stall_threshold_ms
        if gap > threshold:
            self._counts["loop_stalls"] += 1
            self._max_stall_ms = max(self._max_stall_ms, gap)
            log.warning("totemd (node %d) was not scheduled for %.1f ms (threshold is %.1f ms). "
                        "Consider token timeout increase.", self.node_id, gap, threshold)

    def _drain_network(self, now: float) -> None:
        """Feed waiting packets to the core, executing its actions after each
        one: a token is forwarded as soon as it is processed, not after the
        hundreds of frames that may sit behind it in the socket. Deliveries
        are only collected here; the turn sends them in one batch."""
        core = self.core
        receive = core.receive
        take_actions = core.take_actions
        run = self._run_actions
        # Only what was queued before this turn: a token we send ourselves
        # while processing waits for the next turn (bounded work per turn).
        for _ in range(len(self._loopback)):
            receive(self._loopback.popleft(), now)
            actions = take_actions()
            if actions:
                run(actions)
        sched_yield = os.sched_yield
        learn = self.settings.mode == "udp"
        receive_many = core.receive_many
        receive_frames = self.transport.receive_frames
        for _ in range(RECEIVE_BATCHES_PER_TURN):
            if learn:
                sources: list[str] = []
                packets = receive_frames(RECEIVE_BATCH_MAX, sources, _ORF_TOKEN)
                for data, source in zip(packets, sources):
                    self._learn_peer(data, source)
            else:
                # udpu: the sources were checked. A read stops at a token: it
                # goes on without the poll for more that would follow the read
                # (a system call on its path; measured, forwarding visits
                # ~5-10 us shorter, p50 of poll-to-sent 50-67 -> 48-56 us).
                packets = receive_frames(RECEIVE_BATCH_MAX, None, _ORF_TOKEN)
            # The packets of a read go to the core together, cut after each
            # token so that its actions (forwarding it) run before the packets
            # that follow it. Frames after the last token are stored, not
            # delivered: the next visit delivers them once the token is gone.
            start = 0
            for index, data in enumerate(packets):
                if len(data) > 3 and data[3] == _ORF_TOKEN:
                    # deliver=False: what the visit leaves owed is delivered
                    # below, once its actions (the token) are sent.
                    receive_many(packets[start:index + 1], now, False)
                    start = index + 1
                    actions = take_actions()
                    if actions:
                        run(actions)
                    if core.own_delivery_owed:
                        self._deliver_own()
                    if self._batch_count:
                        # Our client's own message goes to it before the
                        # yield below hands the CPU to the next node: a
                        # closed-loop client then submits its next message
                        # before the token is back more often (latency runs,
                        # same minutes: 1-59% -> 1-21% of samples waited a
                        # second rotation; p50 mean 286 -> 258 us).
                        self._flush_deliveries()
                        self.server.flush_wakes()
                    # The token is sent, and a UDP wake-up is a "sync" one: the
                    # next daemon is often queued on this CPU, behind the work
                    # we do now (deliveries, clients). Let it take the token on
                    # first. Measured, 3 nodes, same minutes: 8 KiB 62.5-64.3 ->
                    # 69.4-72.6 MB/s, 1 KiB +10%, 64 KiB and latency unchanged.
                    sched_yield()
                    if core.delivery_owed:
                        # The token is sent: now what its visit left to deliver.
                        core.deliver_pending()
                        actions = take_actions()
                        if actions:
                            run(actions)
            if start < len(packets):
                receive_many(packets[start:] if start else packets, now, False)
                actions = take_actions()
                if actions:
                    run(actions)
            if len(packets) < RECEIVE_BATCH_MAX:
                break

    def _learn_peer(self, data: bytes, source: str) -> None:
        """udp (multicast) without a full nodelist: learn where to unicast the
        token from the sender id in the Totem header (codec: magic u16,
        version u8, type u8, flags u8, sender u32)."""
        if len(data) < codec.HEADER_SIZE:
            return
        magic, _version, _kind, _flags, sender = _TOTEM_HEADER.unpack_from(data)
        if magic != codec.MAGIC or sender == self.node_id or not sender:
            return
        if self._learned.get(sender) != source:
            self._learned[sender] = source
            self.transport.learn_peer(sender, source)
            self._member_records.setdefault(sender, MemberRecord(ip=source)).ip = source

    def _serve_local(self, ipc_ready: bool) -> bool:
        """Serve the local clients; True if they may have more work waiting.

        Every pass looks at the rings; only the first one polls the IPC
        server's epoll set (accepts, handshakes, hang-ups, doorbells), and
        only when this turn's poll found it readable: a quiet set costs no
        system call (what is left in it keeps it readable for the next turn).
        """
        assert self.server is not None
        process = self.server.process
        poll = ipc_ready
        for _ in range(IPC_PASSES_PER_TURN):
            if not process(0.0, poll=poll):
                return False
            poll = False
        return True

    # -- the core's actions ----------------------------------------------------------------

    def _execute(self, actions: list[Any]) -> None:
        """Execute the core's actions (``_run_actions``), then send the
        collected deliveries to the subscribers. A visit among them that
        stamped our client's message (a held token released by a submit or
        a timer) has its token sent by now: that message is delivered too."""
        self._run_actions(actions)
        if self.core.own_delivery_owed:
            self._deliver_own()
        if self._batch_count:
            self._flush_deliveries()

    def _deliver_own(self) -> None:
        """The token of a visit that stamped our client's message (and left
        little else, ``SrpCore.own_delivery_owed``) is sent: deliver now."""
        self.core.deliver_pending()
        self._run_actions(self.core.take_actions())

    def _run_actions(self, actions: list[Any]) -> None:
        """Execute the core's actions in the order it produced them.

        The order matters: a ``PersistRingSeq`` is durable before any later
        action (a join or commit token carrying the new seq) runs; the EVS log
        is flushed before each send, so what another node can see of us is in
        the log first; a ``Deliver`` of an old ring precedes the
        ``ConfChange`` after it, as the core emitted them.
        """
        evslog = self.evslog
        on_deliver = self._on_deliver
        # A visit's frames leave together (transport.multicast_many: one GSO
        # send per peer); they go before any unicast (the token follows its
        # visit's frames) and before this call returns.
        frames: list[bytes] = []
        on_messages = self._on_deliver_messages
        for action in actions:
            kind = type(action)
            if kind is DeliverFrame:
                on_messages(action.sender, action.ring_id, action.seq, action.safe, action.messages)
            elif kind is Deliver:
                on_deliver(action)
            elif kind is SendMulticast:
                frames.append(action.data)
            elif kind is SendUnicast:
                if evslog is not None:
                    evslog.flush()
                if action.dest == self.node_id:
                    if frames:
                        self._send_frames(frames)
                        frames = []
                    self._loopback.append(action.data)
                elif frames:
                    # The visit's frames, then the token with the successor's share.
                    if not self.transport.send_visit(frames, action.dest, action.data):
                        self._counts["unicast_unknown_dest"] += 1
                    frames = []
                elif not self.transport.unicast(action.dest, action.data):
                    self._counts["unicast_unknown_dest"] += 1
            elif kind is SetTimer:
                self._timers.set(action.timer, action.deadline_ms)
            elif kind is CancelTimer:
                self._timers.cancel(action.timer)
            elif kind is Originated:
                self._on_originated(action)
            elif kind is ConfChange:
                self._on_conf_change(action)
            elif kind is PersistRingSeq:
                store_ring_seq(self.settings.state_dir, self.node_id, action.ring_seq)
                self._counts["ring_seq_writes"] += 1
            elif kind is StateChanged:
                self._last_state_change = action.text
            elif kind is TokenWarning:
                # corosync's wording (totemsrp.c), so log watchers match it.
                self._counts["token_warnings"] += 1
                log.warning("Token has not been received in %d ms", action.elapsed_ms)
        if frames:
            self._send_frames(frames)

    def _send_frames(self, frames: list[bytes]) -> None:
        """Multicast frames in order; the EVS log first holds what they carry."""
        if self.evslog is not None:
            self.evslog.flush()
        if len(frames) == 1:
            self.transport.multicast(frames[0])
        else:
            self.transport.multicast_many(frames)

    def _on_conf_change(self, change: ConfChange) -> None:
        if self._batch_count:
            self._flush_deliveries()  # the deliveries before a change reach clients before it
        self._counts["conf_changes"] += 1
        ring_id = (change.ring_id.rep, change.ring_id.seq)
        if change.kind is ConfKind.REG:
            conf_id: Any = ring_id
            self._members = tuple(change.members)
            self._ring_id = ring_id
            log.info("A new membership (%s) was formed. Members joined: %s%s",
                     format_ring_id(ring_id), " ".join(map(str, change.joined)) or "-",
                     f" left: {' '.join(map(str, change.left))}" if change.left else "")
            log.info("Members[%d]: %s", len(change.members), " ".join(map(str, change.members)))
            for node_id in change.joined:
                record = self._member_records.setdefault(
                    node_id, MemberRecord(ip=self.settings.peers.get(node_id, "?")))
                record.join_count += 1
            for node_id, record in self._member_records.items():
                record.status = "joined" if node_id in change.members else "left"
        else:
            old = change.old_ring_id
            old_id = (old.rep, old.seq) if old is not None else ring_id
            conf_id = (old_id, ring_id)
            log.info("Transitional membership %s -> %s: members %s, left %s",
                     format_ring_id(old_id), format_ring_id(ring_id),
                     " ".join(map(str, change.members)) or "-",
                     " ".join(map(str, change.left)) or "-")
        self._in_conf = conf_id
        if self.evslog is not None:
            self.evslog.conf(change.kind.value, conf_id, change.members)
        if self.service.subscriber_count:
            old = change.old_ring_id
            event = wire.ConfEvent(
                kind=change.kind.value, ring_id=ring_id,
                old_ring_id=(old.rep, old.seq) if old is not None else None,
                members=tuple(change.members), left=tuple(change.left),
                joined=tuple(change.joined))
            self.service.broadcast(wire.EventKind.CONFCHG, wire.encode_conf(event))
        self._publish_due = True


def _open_event_log(target: str, node: int, inc: int) -> EventLog:
    """``--evs-log``: a directory (created if missing) gets
    ``n<node>.<inc>.jsonl``; a path ending in ``.jsonl`` is the file itself.

    Raises:
        OSError: the directory or file cannot be created or opened.
    """
    path = Path(target)
    if path.suffix == ".jsonl" and not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        return EventLog(None, node, inc, path=path)
    path.mkdir(parents=True, exist_ok=True)
    return EventLog(path, node, inc)
