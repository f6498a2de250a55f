"""Packer.take_frame on large messages at the frame size totemd uses (netmtu
1500): the frame between two large messages (the last part of one and the
head of the next, built by a short path) and the frames around it, held to
the plain reference model of tests/totem/test_pg.py byte for byte."""

from __future__ import annotations

import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.totem.helpers import indexed_message as _message
from tests.totem.test_pg_reference import _ReferencePacker
from totemd import pg
from totemd.pg import Packer, Unpacker, decode_payload
from totemd.srp.params import TotemParams

FRAME_PAYLOAD_MAX = TotemParams().frame_payload_max
ORIGIN = 16  # what the daemon puts in front of every client message


def _check_stats(packer: Packer, reference: _ReferencePacker, taken: list[bytes],
                 submitted: list[int] | None = None) -> None:
    stats = packer.stats()
    if submitted is not None:  # the sizes of every message submitted
        assert stats.messages_submitted == len(submitted)
        assert stats.bytes_submitted == sum(submitted)
        assert stats.messages_completed == len(submitted) - len(reference.queue)
    assert stats.queued_messages == len(reference.queue)
    assert stats.queued_bytes == sum(len(entry[0]) - entry[1] for entry in reference.queue)
    assert stats.frames_taken == len(taken)
    assert stats.payload_bytes_taken == sum(map(len, taken))
    assert stats.fragments_taken == sum(
        (decoded.first_is_continuation + decoded.last_continues)
        - (decoded.first_is_continuation and decoded.last_continues and len(decoded.entries) == 1)
        for decoded in map(decode_payload, taken))


def _take_both(packer: Packer, reference: _ReferencePacker, count: int, taken: list[bytes]) -> None:
    for _ in range(count):
        frame = packer.take_frame()
        expected = reference.take_frame()
        assert (None if frame is None else tuple(frame)) == expected
        if frame is not None:
            taken.append(frame.payload)


# ("submit", size, safe, no handle): mostly the bench's sizes, some odd ones.
_SUBMITS = st.tuples(st.just("submit"),
                     st.one_of(st.sampled_from([8192 + ORIGIN, 65536 + ORIGIN, 1024 + ORIGIN, 64]),
                               st.integers(0, 20_000)),
                     st.booleans(), st.booleans())


def _submit_both(packer: Packer, reference: "_ReferencePacker", serial: int,
                 operation: tuple, submitted: list[int]) -> None:
    """A ("submit", size, safe, no_handle) operation, to both packers."""
    _kind, size, safe, no_handle = operation
    message, handle = _message(serial, size), None if no_handle else ("h", serial)
    packer.submit(message, safe, handle)
    reference.submit(message, safe, handle)
    submitted.append(size)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    operations=st.lists(st.one_of(
        _SUBMITS,
        st.tuples(st.just("take"), st.integers(1, 12)),
        st.tuples(st.just("change")),
    ), max_size=40),
    frame_payload_max=st.sampled_from([FRAME_PAYLOAD_MAX, FRAME_PAYLOAD_MAX - 1, 1000]),
)
def test_large_messages_give_the_reference_frames(operations, frame_payload_max: int) -> None:
    packer = Packer(frame_payload_max)
    reference = _ReferencePacker(frame_payload_max)
    taken: list[bytes] = []
    submitted: list[int] = []
    for serial, operation in enumerate(operations):
        if operation[0] == "submit":
            _submit_both(packer, reference, serial, operation, submitted)
        elif operation[0] == "take":
            _take_both(packer, reference, operation[1], taken)
        else:
            packer.on_configuration_change()
            reference.on_configuration_change()
        _check_stats(packer, reference, taken, submitted)
    while reference.queue:
        _take_both(packer, reference, 1, taken)
    assert packer.take_frame() is None and packer.pending_frames() == 0
    _check_stats(packer, reference, taken, submitted)


def test_a_frame_between_two_large_messages_carries_the_tail_and_the_next_head() -> None:
    size = 8192 + ORIGIN
    messages = [_message(i, size) for i in range(40)]
    packer = Packer(FRAME_PAYLOAD_MAX)
    for index, message in enumerate(messages):
        packer.submit(message, index % 3 == 0, index)
    frames = pg.pack_all(packer)
    between = [frame for frame in frames if len(decode_payload(frame.payload).entries) == 2]
    # Every message but the first starts in a frame that ends the one before.
    assert len(between) == len(messages) - 1
    for frame in between:
        decoded = decode_payload(frame.payload)
        assert decoded.first_is_continuation and decoded.last_continues
        assert len(frame.payload) == FRAME_PAYLOAD_MAX  # full: one GSO size per visit
    completed = [handle for frame in frames for handle in frame.completed]
    assert completed == list(range(len(messages)))
    unpacker = Unpacker()
    out = [message for frame in frames for message in unpacker.feed(1, frame.payload)]
    assert out == messages
    # The safe messages' frames are safe, the others' not.
    for frame in frames:
        decoded = decode_payload(frame.payload)
        carried = {decoded.continued_id, decoded.open_id} - {0}
        assert frame.safe == any(fragment_id % 3 == 1 for fragment_id in carried)


def test_configuration_change_just_after_a_tail_and_head_frame_resends_the_head_whole() -> None:
    size = 8192 + ORIGIN
    packer = Packer(FRAME_PAYLOAD_MAX)
    reference = _ReferencePacker(FRAME_PAYLOAD_MAX)
    for index in range(3):
        packer.submit(_message(index, size), False, index)
        reference.submit(_message(index, size), False, index)
    taken: list[bytes] = []
    while True:  # up to the first frame that opens message 1
        _take_both(packer, reference, 1, taken)
        if len(decode_payload(taken[-1]).entries) == 2:
            break
    packer.on_configuration_change()
    reference.on_configuration_change()
    _check_stats(packer, reference, taken)
    _take_both(packer, reference, 1, taken)
    first = decode_payload(taken[-1])
    assert not first.first_is_continuation  # message 1 starts again from its first byte
    assert first.entries[0] == _message(1, size)[:len(first.entries[0])]
    while reference.queue:
        _take_both(packer, reference, 1, taken)
    assert packer.take_frame() is None
    _check_stats(packer, reference, taken)


def test_the_last_part_alone_ends_the_queue() -> None:
    message = _message(5, 8192 + ORIGIN)
    packer = Packer(FRAME_PAYLOAD_MAX)
    packer.submit(message, True, "only")
    frames = pg.pack_all(packer)
    last = decode_payload(frames[-1].payload)
    assert last.first_is_continuation and not last.last_continues and len(last.entries) == 1
    assert frames[-1].completed == ("only",) and all(frame.safe for frame in frames)
    assert b"".join(part for frame in frames
                    for part in decode_payload(frame.payload).entries) == message
    assert packer.stats().queued_bytes == 0 and packer.stats().messages_completed == 1


def test_large_messages_taken_past_compaction_are_not_kept_alive() -> None:
    """Many large messages (past the lists' compaction point): each one is
    released as soon as its last part is taken, and the frames still match
    the reference."""
    size = 8192 + ORIGIN
    count = 150
    messages = [_message(i, size) for i in range(count)]
    baselines = [sys.getrefcount(messages[index]) for index in range(count)]
    packer = Packer(FRAME_PAYLOAD_MAX, max_queued_bytes=4 << 20)
    reference = _ReferencePacker(FRAME_PAYLOAD_MAX)
    for index, message in enumerate(messages):
        packer.submit(message, False, None if index % 2 else index)
        reference.submit(message, False, None if index % 2 else index)
    del message
    _check_stats(packer, reference, [], [size] * count)
    taken: list[bytes] = []
    for index in range(count):
        while True:
            _take_both(packer, reference, 1, taken)
            if len(reference.queue) < count - index:
                break  # message ``index`` is out: its last part was taken
        # Its last part is out: neither the packer nor the reference holds
        # it (counted outside the assert, whose rewriting holds its operands).
        references = sys.getrefcount(messages[index])
        assert references == baselines[index]
    _check_stats(packer, reference, taken, [size] * count)


def test_messages_that_exactly_fit_or_just_miss_the_room_after_a_tail() -> None:
    """After the last part of a large message, a next message that fills
    the frame to the byte goes whole; one byte more and it is split (and
    the frames after it still match the reference)."""
    capacity = FRAME_PAYLOAD_MAX - pg.HEADER_SIZE
    large = 8192 + ORIGIN
    # The large message's last part: what is left after its head and middles.
    for delta in range(-3, 4):
        for behind in (0, 1):
            packer = Packer(FRAME_PAYLOAD_MAX)
            reference = _ReferencePacker(FRAME_PAYLOAD_MAX)
            sizes = [large, 0, 100, large]  # [1] set below once the tail is known
            first_room = capacity - pg.LENGTH_SIZE
            tail = (large - first_room) % (capacity - pg.LENGTH_SIZE) or capacity - pg.LENGTH_SIZE
            sizes[1] = max(0, capacity - tail - 2 * pg.LENGTH_SIZE + delta)
            for serial, size in enumerate(sizes[:2 + behind * 2]):
                packer.submit(_message(serial, size), serial == 1, serial)
                reference.submit(_message(serial, size), serial == 1, serial)
            taken: list[bytes] = []
            while reference.queue:
                _take_both(packer, reference, 1, taken)
            assert packer.take_frame() is None
            _check_stats(packer, reference, taken)


def test_submitted_counters_survive_compaction_configuration_changes_and_submit_many() -> None:
    packer = Packer(FRAME_PAYLOAD_MAX, max_queued_bytes=32 << 20)
    reference = _ReferencePacker(FRAME_PAYLOAD_MAX)
    sizes: list[int] = []
    taken: list[bytes] = []
    for round_index in range(6):
        batch = [(_message(len(sizes) + i, size), i % 2 == 0, i)
                 for i, size in enumerate([8192 + ORIGIN, 64, 65536 + ORIGIN] * 30)]
        assert packer.submit_many(batch) == (len(batch), None)
        for item in batch:
            reference.submit(*item)
        sizes += [len(item[0]) for item in batch]
        _take_both(packer, reference, 97 + round_index, taken)
        packer.on_configuration_change()
        reference.on_configuration_change()
        _check_stats(packer, reference, taken, sizes)
    while reference.queue:
        _take_both(packer, reference, 1, taken)
    _check_stats(packer, reference, taken, sizes)
    assert packer.stats().messages_completed == len(sizes)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    operations=st.lists(st.one_of(
        _SUBMITS,
        st.tuples(st.just("take_frames"), st.integers(-1, 20)),
        st.tuples(st.just("take"), st.integers(1, 3)),
        st.tuples(st.just("change")),
    ), max_size=40),
    frame_payload_max=st.sampled_from([FRAME_PAYLOAD_MAX, 1000, 200]),
)
def test_take_frames_is_take_frame_called_up_to_limit_times(operations, frame_payload_max: int) -> None:
    packer = Packer(frame_payload_max, max_queued_bytes=64 << 20)
    reference = _ReferencePacker(frame_payload_max)
    taken: list[bytes] = []
    submitted: list[int] = []
    for serial, operation in enumerate(operations):
        if operation[0] == "submit":
            _submit_both(packer, reference, serial, operation, submitted)
        elif operation[0] == "take_frames":
            frames = packer.take_frames(operation[1])
            expected = []
            for _ in range(max(0, operation[1])):
                frame = reference.take_frame()
                if frame is None:
                    break
                expected.append(frame)
            assert [tuple(frame) for frame in frames] == expected
            taken += [frame.payload for frame in frames]
        elif operation[0] == "take":
            _take_both(packer, reference, operation[1], taken)
        else:
            packer.on_configuration_change()
            reference.on_configuration_change()
        _check_stats(packer, reference, taken, submitted)
    frames = packer.take_frames(1 << 30)
    taken += [frame.payload for frame in frames]
    assert [tuple(frame) for frame in frames] == list(iter(reference.take_frame, None))
    assert packer.take_frames(5) == [] and packer.pending_frames() == 0
    _check_stats(packer, reference, taken, submitted)
