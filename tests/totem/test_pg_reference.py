"""The packing layer's fast paths (totemd.pg Packer and Unpacker) against
plain reference models: the same bytes, deliveries and counters on random
operations and on good and damaged streams."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.totem.helpers import indexed_message as _message
from totemd import pg
from totemd.pg import (
    HEADER_SIZE,
    DecodeError,
    MessageTooLarge,
    Packer,
    QueueFull,
    Unpacker,
    decode_payload,
    pack_all,
    unpack_all,
)



# ---- the fast paths against plain reference models ---------------------------
#
# Packer and Unpacker take shortcuts for speed (a bisect over running totals
# instead of a loop per message, one header unpack per frame kind, memoized
# entry-splitting structs). The models below are the straightforward
# algorithm, written for clarity only; the implementations must produce the
# same bytes, the same deliveries and the same counters.


class _ReferencePacker:
    """take_frame fills a frame message by message: whole ones while they
    fit, then the head of the next one if at least MIN_FRAGMENT bytes fit."""

    def __init__(self, frame_payload_max: int) -> None:
        self.capacity = frame_payload_max - HEADER_SIZE
        self.queue: list[list] = []  # [data, offset, safe, handle, fragment_id, index]
        self.next_id = 1

    def submit(self, message: bytes, safe: bool, handle: object) -> None:
        self.queue.append([bytes(message), 0, safe, handle, 0, 0])

    def take_frame(self):
        if not self.queue:
            return None
        room = self.capacity
        flags = continued_id = continued_index = open_id = 0
        lengths: list[int] = []
        parts: list[bytes] = []
        completed = []
        safe = False
        while self.queue and room >= 2:
            entry = self.queue[0]
            data, offset, message_safe, handle, fragment_id, index = entry
            rest = len(data) - offset
            if offset:
                assert not parts  # only the first entry can continue a message
                flags |= pg.FLAG_FIRST_IS_CONTINUATION
                continued_id, continued_index = fragment_id, index
            if rest + 2 <= room:
                parts.append(data[offset:])
                lengths.append(rest)
                room -= rest + 2
                safe = safe or bool(message_safe)
                if handle is not None:
                    completed.append(handle)
                self.queue.pop(0)
                continue
            fits = room - 2
            if fits < pg.MIN_FRAGMENT:
                break
            if not offset:
                entry[4] = fragment_id = self.next_id
                self.next_id = self.next_id % 0xFFFFFFFF + 1
            parts.append(data[offset:offset + fits])
            lengths.append(fits)
            safe = safe or bool(message_safe)
            entry[1] = offset + fits
            entry[5] = index + 1
            flags |= pg.FLAG_LAST_CONTINUES
            open_id = fragment_id
            break
        header = struct.pack(f"!BBHIHI{len(lengths)}H", 1, flags, len(lengths), continued_id,
                             continued_index, open_id, *lengths)
        return header + b"".join(parts), safe, tuple(completed)

    def on_configuration_change(self) -> None:
        if self.queue and self.queue[0][1]:
            self.queue[0][1] = self.queue[0][4] = self.queue[0][5] = 0


class _ReferenceUnpacker:
    """feed decodes every payload with decode_payload and applies the rules
    of the module docstring one entry at a time."""

    def __init__(self, max_message_size: int) -> None:
        self.max = max_message_size
        self.assemblies: dict[int, list] = {}  # sender -> [fragment_id, next_index, parts]
        self.counts = dict.fromkeys(
            ("frames", "messages_delivered", "bytes_delivered", "malformed_frames",
             "orphan_fragments", "assemblies_dropped_on_reset", "assemblies_abandoned",
             "oversized_dropped"), 0)
        self.last_error = ""

    def _drop(self, sender: int, counter: str) -> None:
        if self.assemblies.pop(sender, None) is not None:
            self.counts[counter] += 1

    def feed(self, sender: int, payload: bytes) -> list[bytes]:
        self.counts["frames"] += 1
        try:
            decoded = decode_payload(payload)
        except DecodeError as error:
            self.counts["malformed_frames"] += 1
            self.last_error = f"from node {sender}: {error}"
            self._drop(sender, "assemblies_abandoned")
            return []
        entries = list(decoded.entries)
        out: list[bytes] = []
        opens = decoded.last_continues and not (decoded.first_is_continuation and len(entries) == 1)
        head = entries.pop() if opens else None
        if decoded.first_is_continuation:
            part = entries.pop(0)
            assembly = self.assemblies.get(sender)
            if assembly is None or assembly[:2] != [decoded.continued_id, decoded.continued_index]:
                self.counts["orphan_fragments"] += 1
                self._drop(sender, "assemblies_abandoned")
            elif sum(map(len, assembly[2])) + len(part) > self.max:
                self._drop(sender, "oversized_dropped")
            else:
                assembly[2].append(part)
                assembly[1] += 1
                if not decoded.last_continues or opens:
                    del self.assemblies[sender]
                    out.append(b"".join(assembly[2]))
        else:
            self._drop(sender, "assemblies_abandoned")
        out.extend(entries)
        if head is not None:
            if len(head) > self.max:
                self.counts["oversized_dropped"] += 1
            else:
                self.assemblies[sender] = [decoded.open_id, 1, [head]]
        self.counts["messages_delivered"] += len(out)
        self.counts["bytes_delivered"] += sum(map(len, out))
        return out

    def reset(self) -> None:
        self.counts["assemblies_dropped_on_reset"] += len(self.assemblies)
        self.assemblies.clear()

    def stats(self) -> dict:
        return dict(self.counts, open_assemblies=len(self.assemblies), last_error=self.last_error)


def _unpacker_stats(unpacker: Unpacker) -> dict:
    stats = unpacker.stats()
    return {name: getattr(stats, name) for name in stats.__slots__}


_PACKER_OPERATIONS = st.lists(
    st.one_of(
        # (size, safe, handle is None)
        st.tuples(st.just("submit"), st.one_of(st.integers(0, 150), st.integers(0, 4000)),
                  st.booleans(), st.booleans()),
        st.tuples(st.just("submit_many"),
                  st.lists(st.tuples(st.integers(0, 3000), st.booleans(), st.booleans()),
                           max_size=30)),
        st.tuples(st.just("take"), st.integers(1, 6)),
        st.tuples(st.just("change")),
    ),
    max_size=50,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=_PACKER_OPERATIONS, frame_payload_max=st.integers(17, 1500))
def test_packer_frames_are_byte_identical_to_the_reference_model(operations,
                                                                 frame_payload_max: int) -> None:
    packer = Packer(frame_payload_max)
    reference = _ReferencePacker(frame_payload_max)
    serial = 0
    taken: list[bytes] = []

    def both_submit(size: int, safe: bool, no_handle: bool) -> tuple:
        nonlocal serial
        serial += 1
        return _message(serial, size), safe, None if no_handle else ("h", serial)

    for operation in operations:
        if operation[0] == "submit":
            message, safe, handle = both_submit(*operation[1:])
            packer.submit(message, safe, handle)
            reference.submit(message, safe, handle)
        elif operation[0] == "submit_many":
            items = [both_submit(*item) for item in operation[1]]
            assert packer.submit_many(items) == (len(items), None)
            for item in items:
                reference.submit(*item)
        elif operation[0] == "take":
            for _ in range(operation[1]):
                frame = packer.take_frame()
                expected = reference.take_frame()
                assert (None if frame is None else tuple(frame)) == expected
                if frame is not None:
                    taken.append(frame.payload)
        else:
            packer.on_configuration_change()
            reference.on_configuration_change()
        stats = packer.stats()
        queued = [entry for entry in reference.queue]
        assert stats.queued_messages == len(queued)
        assert stats.queued_bytes == sum(len(entry[0]) - entry[1] for entry in queued)
        assert stats.messages_completed == stats.messages_submitted - len(queued)
        assert stats.frames_taken == len(taken)
        assert stats.payload_bytes_taken == sum(map(len, taken))
        assert stats.fragments_taken == sum(
            (decoded.first_is_continuation + decoded.last_continues)
            - (decoded.first_is_continuation and decoded.last_continues
               and len(decoded.entries) == 1)
            for decoded in map(decode_payload, taken))
    while (expected := reference.take_frame()) is not None:
        assert tuple(packer.take_frame()) == expected
    assert packer.take_frame() is None and packer.pending_frames() == 0


def test_submit_many_refuses_like_submit_and_queues_the_prefix() -> None:
    packer = Packer(1400, max_message_size=1000, max_queued_bytes=2500)
    items = [(b"a" * 900, False, 1), (b"b" * 1000, True, 2), (b"c" * 700, False, 3),
             (b"d" * 10, False, 4)]
    accepted, error = packer.submit_many(items)
    assert accepted == 2 and isinstance(error, QueueFull) and "limit of 2500" in str(error)
    accepted, error = packer.submit_many([(b"e" * 10, False, 5), (b"f" * 1001, False, 6)])
    assert accepted == 1 and isinstance(error, MessageTooLarge)
    assert packer.submit_many([]) == (0, None)
    stats = packer.stats()
    assert (stats.messages_submitted, stats.bytes_submitted) == (3, 1910)
    assert (stats.rejected_queue_full, stats.rejected_too_large) == (1, 1)
    frames = pack_all(packer)
    assert unpack_all(Unpacker(), 1, [f.payload for f in frames]) == [b"a" * 900, b"b" * 1000,
                                                                     b"e" * 10]
    assert [h for f in frames for h in f.completed] == [1, 2, 5]
    assert [f.safe for f in frames] == [True, True]
    # Bytes-like messages are queued as bytes (a caller's buffer may change).
    buffer = bytearray(b"mutable")
    assert packer.submit_many([(buffer, False, 7), (memoryview(b"view"), False, 8)]) == (2, None)
    buffer[:] = b"changed"
    assert unpack_all(Unpacker(), 1, [f.payload for f in pack_all(packer)]) == [b"mutable",
                                                                               b"view"]


def _damage(payload: bytes, how: int, where: int) -> bytes:
    """One of several kinds of damage, or none (how 0)."""
    if how == 1:
        return payload[: where % (len(payload) + 1)]
    if how == 2:
        position = where % len(payload)
        return payload[:position] + bytes([payload[position] ^ (1 << (where % 8))]) + \
            payload[position + 1:]
    if how == 3:
        return payload + bytes([where % 256])
    if how == 4:
        # A header byte set to an arbitrary value (flags, count, ids).
        position = where % min(len(payload), HEADER_SIZE + 2)
        return payload[:position] + bytes([where // 7 % 256]) + payload[position + 1:]
    return payload


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.one_of(st.integers(0, 120), st.integers(0, 3000), st.integers(0, 9000)),
                   min_size=1, max_size=40),
    frame_payload_max=st.integers(17, 1500),
    max_message_size=st.sampled_from([500, 5000, 1 << 20]),
    events=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 1 << 16)), max_size=80),
    senders=st.integers(1, 3),
)
def test_unpacker_matches_the_reference_model_on_good_and_damaged_streams(
        sizes: list[int], frame_payload_max: int, max_message_size: int,
        events: list[tuple[int, int]], senders: int) -> None:
    streams = []
    for sender in range(senders):
        packer = Packer(frame_payload_max)
        for i, size in enumerate(sizes):
            packer.submit(_message(i * 7 + sender, size + sender))
        streams.append([frame.payload for frame in pack_all(packer)])
    unpacker = Unpacker(max_message_size)
    reference = _ReferenceUnpacker(max_message_size)
    # Interleave the senders; each event damages, drops, repeats a frame or
    # resets both sides, and the rest of the frames go through intact.
    events_left = list(events)
    position = [0] * senders
    while any(position[s] < len(streams[s]) for s in range(senders)):
        for sender in range(senders):
            if position[sender] >= len(streams[sender]):
                continue
            payload = streams[sender][position[sender]]
            position[sender] += 1
            how, where = events_left.pop() if events_left else (0, 0)
            if how == 5:
                continue  # lost
            if how == 6:
                unpacker.reset()
                reference.reset()
            feeds = [payload, payload] if how == 7 else [_damage(payload, how, where)]
            for fed in feeds:
                assert unpacker.feed(sender, fed) == reference.feed(sender, fed)
    assert _unpacker_stats(unpacker) == reference.stats()


@settings(max_examples=300, deadline=None)
@given(
    header=st.tuples(st.sampled_from([0, 1, 2]), st.integers(0, 255), st.integers(0, 4),
                     st.sampled_from([0, 1, 2, 7]), st.sampled_from([0, 1, 2]),
                     st.sampled_from([0, 1, 2, 7])),
    lengths=st.lists(st.integers(0, 40), max_size=4),
    extra=st.integers(-3, 3),
)
def test_unpacker_accepts_exactly_what_decode_payload_accepts(header, lengths, extra) -> None:
    """Hand-made headers of every flag and id combination, with a fitting or
    almost fitting lengths table, after an open assembly of the same id."""
    version, flags, count, continued_id, continued_index, open_id = header
    body = b"".join(bytes([65 + i]) * length for i, length in enumerate(lengths))
    if extra > 0:
        body += b"z" * extra
    elif extra < 0:
        body = body[:extra]
    payload = struct.pack(f"!BBHIHI{len(lengths)}H", version, flags, count, continued_id,
                          continued_index, open_id, *lengths) + body
    opening = struct.pack("!BBHIHIH", 1, pg.FLAG_LAST_CONTINUES, 1, 0, 0, 7, 3) + b"xyz"
    unpacker = Unpacker()
    reference = _ReferenceUnpacker(pg.DEFAULT_MAX_MESSAGE_SIZE)
    for fed in (opening, payload, payload):
        assert unpacker.feed(4, fed) == reference.feed(4, fed)
    assert _unpacker_stats(unpacker) == reference.stats()


def test_repeated_lengths_tables_take_the_memoized_split() -> None:
    """Frames whose lengths tables repeat (equal-sized messages) are split by
    a memoized struct after the second sighting; the result is the same."""
    from totemd import pg_codec

    packer = Packer(HEADER_SIZE + 13 * 102)  # exactly 13 messages of 100 bytes
    for i in range(200):
        packer.submit(_message(i, 100))
    payloads = [frame.payload for frame in pack_all(packer)]
    whole = [p for p in payloads if decode_payload(p).flags == 0]
    assert len(whole) == len(payloads) == 16
    pg_codec._entry_structs.clear()
    pg_codec._tables_seen.clear()
    unpacker = Unpacker()
    got = [unpacker.feed(1, payload) for payload in payloads]
    assert [m for batch in got for m in batch] == [_message(i, 100) for i in range(200)]
    assert pg_codec._entry_structs  # the repeated table was compiled
    # A payload one byte short of its memoized table is still refused.
    assert unpacker.feed(1, whole[-1][:-1]) == []
    assert unpacker.stats().malformed_frames == 1


@pytest.mark.parametrize("flags", [0, 1, 2, 3])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_truncation_of_a_frame_of_each_kind_is_counted_not_raised(flags, count) -> None:
    """Each fast path reads past the header only after checking the size."""
    lengths = [5] * count
    payload = struct.pack(f"!BBHIHI{count}H", 1, flags, count, 9 if flags & 2 else 0,
                          1 if flags & 2 else 0, (9 if count == 1 else 8) if flags & 1 else 0,
                          *lengths) + b"p" * (5 * count)
    decode_payload(payload)  # the whole frame is valid
    for cut in range(len(payload)):
        unpacker = Unpacker()
        reference = _ReferenceUnpacker(pg.DEFAULT_MAX_MESSAGE_SIZE)
        for fed in (b"\x01\x01\x00\x01" + bytes(6) + b"\x00\x00\x00\x09\x00\x01h", payload[:cut]):
            assert unpacker.feed(1, fed) == reference.feed(1, fed)
        assert unpacker.stats().malformed_frames == 1
        assert _unpacker_stats(unpacker) == reference.stats()
