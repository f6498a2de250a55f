"""The daemon's delivery batching (totemd.daemon_local.LocalSideMixin:
_on_deliver_messages, _close_batch, _flush_deliveries) held to a plain
reference model: framed and unframed messages (short ones too), own
messages, batches cut at BATCH_EVENT_BYTES, no subscriber, subscribers that
want single DELIVER events, and the EVS log's records. No sockets: the
``totem`` service is a recorder."""

from __future__ import annotations

import zlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from totemd import local_codec as wire
from totemd.daemon_local import BATCH_EVENT_BYTES, LocalSideMixin
from totemd.srp.messages import RingId

NODE, INC = 2, 12
RING = RingId(3, 40)


class _Service:
    """What the mixin asks of TotemService, recording what it is given."""

    def __init__(self, subscribers: int, singles: bool) -> None:
        self.subscriber_count = subscribers
        self.wants_single_deliveries = singles
        self.sent: list[tuple[list[bytes], list[bytes] | None]] = []

    def broadcast_deliveries(self, batches: list[Any], singles: list[bytes] | None) -> None:
        # A GatherPayload's parts may be views of messages: join them now.
        self.sent.append(([b if type(b) is bytes else b.join() for b in batches],
                          None if singles is None else list(singles)))


class _Log:
    def __init__(self) -> None:
        self.records: list[tuple] = []

    def deliver(self, *record: Any) -> None:
        self.records.append(record)


class _Node(LocalSideMixin):
    """The state Daemon.__init__ gives the local side."""

    def __init__(self, service: _Service, evslog: _Log | None) -> None:
        self.node_id, self.inc, self.service, self.evslog = NODE, INC, service, evslog
        self._own_delivered = 0
        self._batch_rows: list[bytes] = []
        self._batch_bodies: list[Any] = []
        self._batch_count = self._batch_bytes = self._pending_payload = 0
        self._batches: list[Any] = []
        self._singles = None
        self._in_conf = None
        self._last_delivered = None
        self._counts = dict.fromkeys(("messages_delivered", "bytes_delivered", "unframed_deliveries"), 0)


def _reference(frames: list[tuple[int, int, bool, list[bytes]]], subscribers: int, singles: bool):
    """(batches, singles, counts, own_delivered, log records) as the rules say."""
    deliveries = []
    counts = {"messages_delivered": 0, "bytes_delivered": 0, "unframed_deliveries": 0}
    own = 0
    records = []
    for sender, seq, frame_safe, messages in frames:
        for message in messages:
            if len(message) >= 16 and message[0] == wire.ORIGIN_MAGIC and message[1] == wire.ORIGIN_VERSION:
                _m, _v, flags, sinc, sseq = wire.ORIGIN.unpack_from(message)
                safe, body = flags & wire.SAFE, message[16:]
            else:
                counts["unframed_deliveries"] += 1
                sinc, sseq, safe, body = 0, 0, wire.SAFE if frame_safe else 0, message
            if sender == NODE and sinc == INC:
                own = sseq
            counts["messages_delivered"] += 1
            counts["bytes_delivered"] += len(body)
            deliveries.append((wire.DELIVER_ITEM.pack(len(body), sender, sinc, sseq, RING.rep, RING.seq, seq,
                                                      safe), body))
            crc = zlib.crc32(body)
            mid = f"{sender}.{sinc}.{sseq}" if sinc else f"unframed.{sender}.{crc}"
            records.append((mid, sender, sinc, sseq, (RING.rep, RING.seq), seq, bool(safe), crc,
                            (RING.rep, RING.seq)))
    batches: list[bytes] = []
    current: list[tuple[bytes, bytes]] = []
    for row, body in deliveries:
        if current and sum(40 + len(b) for _r, b in current) + 40 + len(body) > BATCH_EVENT_BYTES:
            batches.append(wire.encode_deliver_batch([r for r, _b in current], [b for _r, b in current]))
            current = []
        current.append((row, body))
    if current:
        batches.append(wire.encode_deliver_batch([r for r, _b in current], [b for _r, b in current]))
    single = [row[4:] + body for row, body in deliveries] if singles else None
    sent = [(batches, single)] if subscribers and batches else []
    return sent, counts, own, records


_MESSAGE = st.one_of(
    # framed: (origin sender node's inc, sseq, safe flag, body size)
    st.tuples(st.sampled_from([INC, 5]), st.integers(1, 1 << 40), st.booleans(),
              st.one_of(st.integers(0, 100), st.integers(8000, 30000))).map(
        lambda t: wire.encode_origin(t[0], t[1], t[2]) + bytes([t[1] & 0xFF]) * t[3]),
    # unframed: anything, short ones too
    st.binary(max_size=40),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.tuples(st.sampled_from([1, NODE, 3]), st.integers(0, (1 << 32) - 1), st.booleans(),
                                 st.lists(_MESSAGE, min_size=1, max_size=4)), max_size=12),
       subscribers=st.integers(0, 2), singles=st.booleans(), logged=st.booleans())
def test_batches_counts_and_log_match_the_reference_model(frames, subscribers, singles, logged) -> None:
    service = _Service(subscribers, singles)
    log = _Log() if logged else None
    node = _Node(service, log)
    for sender, seq, frame_safe, messages in frames:
        node._on_deliver_messages(sender, RING, seq, frame_safe, messages)
    if node._batch_count:  # as Daemon._execute
        node._flush_deliveries()
    sent, counts, own, records = _reference(frames, subscribers, singles)
    assert service.sent == sent
    assert {name: node._counts[name] for name in counts} == counts
    assert node._own_delivered == own
    assert node._batch_count == node._batch_bytes == node._pending_payload == 0
    assert node._batch_rows == [] and node._batches == [] and node._singles is None
    if logged:
        assert log.records == records


def test_a_batch_is_cut_before_it_passes_the_bound() -> None:
    """Deliveries of 20 KiB: three to a batch (3 x (40 + 20 KiB) fits in 64 KiB, four do not)."""
    service = _Service(1, False)
    node = _Node(service, None)
    body = bytes(20 << 10)
    for seq in range(7):
        node._on_deliver_messages(1, RING, seq, False, [wire.encode_origin(9, seq + 1, False) + body])
    node._flush_deliveries()
    (batches, single), = service.sent
    assert single is None
    assert [len(wire.decode_deliver_batch(batch)) for batch in batches] == [3, 3, 1]
    assert node._counts["messages_delivered"] == 7 and node._counts["bytes_delivered"] == 7 * len(body)
