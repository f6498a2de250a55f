"""The local side of totemd: what its clients submit and what it delivers to them.

``LocalSideMixin`` holds the ``Daemon`` methods that the ``totem`` service
(totemd/local.py) calls (``local_submit_many`` and the send queue's bounds)
and those that turn the core's deliveries into DELIVER_BATCH events for the
subscribers. It is a mixin over ``Daemon``'s state (set up in
``Daemon.__init__``), kept apart only to keep each module readable.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Sequence

from totemd import local_codec as wire
from totemd.srp import Deliver, Originated

__all__ = ["LocalSideMixin", "default_max_queued_messages", "BATCH_EVENT_BYTES", "QUEUE_VISITS",
           "SMALL_MESSAGE_BYTES"]

# A DELIVER_BATCH event holds the deliveries of one turn up to this many bytes
# (a larger single delivery goes alone): big enough that a token visit's
# worth of small messages is one event, small against the 1 MiB event ring.
BATCH_EVENT_BYTES = 64 << 10

# Token visits' worth of frames (and of small messages) the send queue holds
# before clients get TRY_AGAIN (see ``default_max_queued_messages``).
QUEUE_VISITS = 4
SMALL_MESSAGE_BYTES = 64

# The hot path unpacks and packs with bound methods of the codec's structs.
_ORIGIN_SIZE = wire.ORIGIN.size
_ORIGIN_PACK = wire.ORIGIN.pack
_ORIGIN_MAGIC = wire.ORIGIN_MAGIC
_ORIGIN_VERSION = wire.ORIGIN_VERSION
_ITEM_PACK = wire.DELIVER_ITEM.pack
_ITEM_SIZE = wire.DELIVER_ITEM.size
_SAFE = wire.SAFE
# The origin header with magic and version as one u16 (one unpack tells
# a framed message from an unframed one).
_ORIGIN_HEAD = struct.Struct("!HHIQ").unpack_from
_FRAMED = (_ORIGIN_MAGIC << 8) | _ORIGIN_VERSION


def default_max_queued_messages(params: Any) -> int:
    """The default message-count bound of the send queue.

    What this node can originate in ``QUEUE_VISITS`` token visits when the
    messages are small (``SMALL_MESSAGE_BYTES`` plus the 16-byte origin
    header and the packer's length prefix): ``max_messages`` frames per visit
    of ``frame_payload_max`` bytes each. With the defaults (17 frames of
    1408 bytes, 16 such messages each) that is 4 x 17 x 16 = 1088 messages. A queue longer than a
    few visits adds only latency (a message waits one rotation per visit's
    worth ahead of it), never throughput: the byte bound alone (16 MiB) let
    ~80k small messages queue up, seconds of latency at ~20k msg/s.
    """
    per_frame = max(1, params.frame_payload_max // (SMALL_MESSAGE_BYTES + 16 + 4))
    return QUEUE_VISITS * params.max_messages * per_frame



class LocalSideMixin:
    """Submits from and deliveries to the local clients (see the module docstring)."""

    def _on_deliver(self, action: Deliver) -> None:
        """One delivered message (see ``_on_deliver_messages``)."""
        self._on_deliver_messages(action.sender, action.ring_id, action.seq, action.safe,
                                  (action.message,))

    def _on_deliver_messages(self, sender: int, ring: Any, seq: int, frame_safe: bool,
                             messages: Sequence[bytes]) -> None:
        """Count the messages one frame delivered, add them to this turn's
        batch, log them.

        Each message gets its DELIVER_BATCH row whether or not anyone
        subscribes (``_close_batch`` drops the batch if nobody does: the
        subscribers cannot change within one execution of actions), and the
        byte counts are kept in locals and stored once per frame.
        """
        own = sender == self.node_id
        inc = self.inc
        evslog = self.evslog
        rows, bodies = self._batch_rows, self._batch_bodies
        rep, ring_seq = ring  # a RingId (rep, seq)
        pending = self._pending_payload
        self._batch_count += len(messages)
        for message in messages:
            try:
                head, flags, sinc, sseq = _ORIGIN_HEAD(message)
            except struct.error:  # shorter than an origin header
                head = 0
            if head == _FRAMED:
                safe = flags & _SAFE
                body = memoryview(message)[_ORIGIN_SIZE:]
            else:
                # Not framed by a coro daemon: delivered as is, with no origin.
                self._counts["unframed_deliveries"] += 1
                sinc, sseq, safe, body = 0, 0, _SAFE if frame_safe else 0, memoryview(message)
            if own and sinc == inc:
                self._own_delivered = sseq  # own messages come back in sseq order
            size = len(body)
            grown = pending + _ITEM_SIZE + size
            if grown > BATCH_EVENT_BYTES and rows:
                self._pending_payload = pending
                self._close_batch()
                rows, bodies = self._batch_rows, self._batch_bodies
                grown = _ITEM_SIZE + size
            rows.append(_ITEM_PACK(size, sender, sinc, sseq, rep, ring_seq, seq, safe))
            bodies.append(body)
            pending = grown
            if evslog is not None:
                ring_id = (rep, ring_seq)
                crc = zlib.crc32(body)
                mid = f"{sender}.{sinc}.{sseq}" if sinc else f"unframed.{sender}.{crc}"
                in_conf = self._in_conf if self._in_conf is not None else ring_id
                evslog.deliver(mid, sender, sinc, sseq, ring_id, seq, bool(safe), crc, in_conf)
                self._last_delivered = mid
        self._pending_payload = pending

    def _close_batch(self) -> None:
        """End the DELIVER_BATCH being built (at its size bound or the turn's
        end): count its bytes, and queue it if anyone subscribes."""
        rows, bodies = self._batch_rows, self._batch_bodies
        if not rows:
            return
        payload_bytes = self._pending_payload - _ITEM_SIZE * len(rows)
        self._batch_bytes += payload_bytes
        self._batch_rows = []
        self._batch_bodies = []
        self._pending_payload = 0
        service = self.service
        if not service.subscriber_count:
            return
        # Large payloads go into the event rings part by part (no joined
        # copy); small ones are joined once (wire.deliver_batch_payload).
        self._batches.append(wire.deliver_batch_payload(rows, bodies, payload_bytes))
        if service.wants_single_deliveries:
            singles = self._singles if self._singles is not None else []
            singles.extend(row[4:] + body for row, body in zip(rows, bodies))
            self._singles = singles

    def _flush_deliveries(self) -> None:
        """Count the deliveries of this batch of actions and send them to the
        subscribers: one DELIVER_BATCH event per ``BATCH_EVENT_BYTES`` (one
        DELIVER each to a subscriber that did not ask for batches)."""
        self._close_batch()
        counts = self._counts
        counts["messages_delivered"] += self._batch_count
        counts["bytes_delivered"] += self._batch_bytes
        self._batch_count = self._batch_bytes = 0
        if self._batches:
            batches, self._batches = self._batches, []
            singles, self._singles = self._singles, None
            self.service.broadcast_deliveries(batches, singles)

    def _on_originated(self, action: Originated) -> None:
        self._originated += len(action.handles)
        self._counts["messages_originated"] += len(action.handles)
        if self.evslog is None:
            return
        ring_id = (action.ring_id.rep, action.ring_id.seq)
        for sseq in action.handles:
            self.evslog.originate(f"{self.node_id}.{self.inc}.{sseq}", ring_id, action.seq, sseq)

    def local_submit(self, data: memoryview, safe: bool) -> tuple[wire.Status, int]:
        """Queue one client message for ordering (called by the ``totem`` service).

        Returns:
            (status, sseq): OK and the message's sseq, or TRY_AGAIN (the send
            queue is full), TOO_LARGE, SHUTTING_DOWN, each with sseq 0.
        """
        status, accepted, first = self.local_submit_many(((data, safe),))
        return status, first if accepted else 0

    def local_submit_many(self, items: Sequence[tuple[memoryview, bool]]
                          ) -> tuple[wire.Status, int, int]:
        """Queue client messages for ordering, in order, until one is refused.

        The send queue is bounded by bytes (the core's ``max_queued_bytes``,
        a hard limit), by frames (``max_queued_frames``: what ``QUEUE_VISITS``
        token visits originate) and by messages (``max_queued_messages``:
        own messages submitted and not yet stamped on the token). The two
        latter keep the wait in the queue to a few token rotations: a longer
        queue adds latency, not throughput. A batch may overshoot the frames
        bound by one message (the first one always fits when the queue is empty).

        Returns:
            (status, accepted, first_sseq): OK when all were queued; else the
            status of the first refused one (TRY_AGAIN, TOO_LARGE,
            SHUTTING_DOWN) and how many before it were queued.
        """
        if not self._started or self._draining:
            return wire.Status.SHUTTING_DOWN, 0, 0
        limit = self.settings.params.max_message_size - _ORIGIN_SIZE
        room = self.submit_room()
        queued_frames = self.core.queued_frames()
        # The frames bound, in bytes of frame payload (each message also
        # costs its origin header and the packer's length prefix).
        room_bytes = (self.max_queued_frames - queued_frames) * self._frame_payload
        inc = self.inc
        first = self._sseq + 1
        status = wire.Status.OK
        batch: list[tuple[bytes, bool, int]] = []
        sizes: list[int] = []
        sseq = first
        for data, safe in items:
            if room <= 0:
                status = wire.Status.TRY_AGAIN
                self._counts["try_again_queue_messages"] += 1
                break
            if room_bytes <= 0:
                status = wire.Status.TRY_AGAIN
                self._counts["try_again_queue_frames"] += 1
                break
            if len(data) > limit:
                status = wire.Status.TOO_LARGE
                break
            batch.append((_ORIGIN_PACK(_ORIGIN_MAGIC, _ORIGIN_VERSION, wire.SAFE if safe else 0, inc,
                                       sseq) + data, safe, sseq))
            sizes.append(len(data))
            room_bytes -= len(data) + _ORIGIN_SIZE + 4
            sseq += 1
            room -= 1
        # One call for the batch: the core wakes an idle ring once.
        queued, refused = self.core.submit_many(batch) if batch else (0, None)
        if refused is not None:
            status = wire.Status.TRY_AGAIN
            self._counts["try_again_queue_bytes"] += 1
        sseq = first + queued
        queued_bytes = sum(sizes[:queued])
        evslog = self.evslog
        if evslog is not None:
            deps = [self._last_delivered] if self._last_delivered else None
            for message, safe, number in batch[:queued]:
                body = memoryview(message)[_ORIGIN_SIZE:]
                evslog.submit(f"{self.node_id}.{inc}.{number}", number, safe, zlib.crc32(body), deps)
        accepted = sseq - first
        self._sseq = sseq - 1
        self._counts["messages_submitted"] += accepted
        self._counts["bytes_submitted"] += queued_bytes
        return status, accepted, first if accepted else 0

    def submit_room(self) -> int:
        """How many more own messages the send queue takes now (the messages
        bound of ``local_submit_many``; the frames and bytes bounds can
        refuse earlier)."""
        room = self.max_queued_messages - (self._sseq - self._originated)
        if room < self.max_queued_messages and not self.core.queued_frames():
            # Everything submitted has left the queue (a message the core
            # dropped, e.g. at a leave, never gets an Originated): resync.
            self._originated = self._sseq
            room = self.max_queued_messages
        return room

    def current_ring_id(self) -> tuple[int, int]:
        return self._ring_id

    def current_members(self) -> tuple[int, ...]:
        return self._members
