"""The shared-memory ring: layout, wrap-around, batches, zero-copy, blocking."""

from __future__ import annotations

import os
import stat
import struct
import time

import pytest
from hypothesis import given, settings, strategies as st

from coroipc import Ring, errors
from coroipc._ring_layout import HEADER_SIZE, KIND_DATA, KIND_PAD, LAYOUT_VERSION, MAGIC, R_POS, W_POS, frame_size


@pytest.fixture
def pair():
    writer = Ring.create(8192)
    reader = Ring.attach(writer.name)
    yield writer, reader
    reader.close()
    writer.close()


def _shm_path(ring: Ring) -> str:
    return "/dev/shm" + ring.name


def test_header_layout_is_documented_values(pair, resource_tag):
    writer, _reader = pair
    magic, version, header_size, capacity = struct.unpack_from("<IHHQ", writer._mmap, 0)
    assert (magic, version, header_size, capacity) == (MAGIC, LAYOUT_VERSION, HEADER_SIZE, 8192)
    assert resource_tag in writer.name and str(os.getpid()) in writer.name
    mode = os.stat(_shm_path(writer)).st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_single_message_frame_layout(pair):
    writer, reader = pair
    writer.write(b"abc")
    kind, count, payload, _check, length = struct.unpack_from("<IIIII", writer._mmap, HEADER_SIZE)
    assert (kind, count, payload, length) == (KIND_DATA, 1, 3, 3)
    assert bytes(writer._mmap[HEADER_SIZE + 24:HEADER_SIZE + 27]) == b"abc"
    assert writer._words[W_POS] == frame_size(1, 3) == 32
    assert reader.read_nowait() == b"abc"
    assert writer._words[R_POS] == 32


def test_owner_close_unlinks_and_attach_after_close_fails():
    ring = Ring.create(4096)
    path = _shm_path(ring)
    assert os.path.exists(path)
    ring.close()
    ring.close()  # idempotent
    assert not os.path.exists(path)
    with pytest.raises(FileNotFoundError):
        Ring.attach(ring.name)
    with pytest.raises(errors.NotConnected):
        ring.write_nowait(b"x")


@pytest.mark.parametrize("capacity", [0, 1000, 4096 + 8])
def test_bad_capacity_is_refused(capacity):
    with pytest.raises(ValueError, match="multiple of 64"):
        Ring.create(capacity)


def test_wrap_around_uses_a_pad_frame(pair):
    writer, reader = pair
    message = b"m" * 1000  # frame of 1024 bytes: 8 fit exactly
    for _ in range(7):
        writer.write_nowait(message)
    assert len(reader.read_batch()) == 7
    writer.write_nowait(b"x" * 1500)  # offset 7168: needs 1536, only 1024 left before the end
    kind = struct.unpack_from("<I", writer._mmap, HEADER_SIZE + 7168)[0]
    assert kind == KIND_PAD
    assert reader.read_nowait() == b"x" * 1500
    assert writer._words[W_POS] == writer._words[R_POS] == 8192 + 1536


def test_would_block_when_full_and_empty(pair):
    writer, reader = pair
    with pytest.raises(errors.WouldBlock, match="is empty$"):
        reader.read_nowait()
    written = 0
    with pytest.raises(errors.WouldBlock, match="is full$"):
        while written < 1000:
            writer.write_nowait(b"z" * 100)
            written += 1
    assert written == 8192 // frame_size(1, 100)
    assert len(reader.read_batch()) == written


def test_message_too_large_writes_nothing(pair):
    writer, reader = pair
    assert writer.max_message_size == 8192 // 2 - 24
    writer.write(b"y" * writer.max_message_size)
    with pytest.raises(errors.MessageTooLarge):
        writer.write_nowait(b"y" * (writer.max_message_size + 1))
    with pytest.raises(errors.MessageTooLarge):
        writer.write_batch([b"a", b"y" * (writer.max_message_size + 1)])
    assert reader.read_batch() == [b"y" * writer.max_message_size]


def test_batch_write_read_and_partial_batches(pair):
    writer, reader = pair
    messages = [bytes([index % 256]) * (index % 50) for index in range(300)]
    written = writer.write_batch(messages)
    assert 0 < written < 300  # the ring holds fewer than all of them
    first = reader.read_batch(max_count=5)
    assert first == messages[:5]
    rest = reader.read_batch()
    assert rest == messages[5:written]
    assert writer.write_batch(messages[written:]) == 300 - written
    assert reader.read_batch() == messages[written:]
    assert writer.write_batch([]) == 0


def test_reserve_commit_is_zero_copy(pair):
    writer, reader = pair
    view = writer.reserve(16)
    view[:4] = b"abcd"
    assert reader.read_batch() == []  # nothing visible before commit
    writer.commit(4)
    with reader.peek() as message:
        assert isinstance(message, memoryview) and bytes(message) == b"abcd"
    assert reader.read_batch() == []
    with pytest.raises(RuntimeError):
        writer.commit(1)
    writer.reserve(8)
    with pytest.raises(ValueError):
        writer.commit(9)


def test_peek_batch_views_are_released_after_block(pair):
    writer, reader = pair
    writer.write_batch([b"one", b"two", b"three"])
    with reader.peek_batch() as views:
        assert [bytes(view) for view in views] == [b"one", b"two", b"three"]
    with pytest.raises(ValueError):
        views[0].tobytes()  # released
    with pytest.raises(errors.WouldBlock):
        with reader.peek_batch():
            pass


def test_blocking_forms_time_out(pair):
    writer, reader = pair
    start = time.monotonic()
    with pytest.raises(errors.Timeout):
        reader.read(timeout=0.05)
    assert 0.04 <= time.monotonic() - start < 2.0
    while True:
        try:
            writer.write_nowait(b"f" * 500)
        except errors.WouldBlock:
            break
    with pytest.raises(errors.Timeout):
        writer.write(b"f" * 500, timeout=0.05)
    reader.read_nowait()
    writer.write(b"f" * 500, timeout=1.0)  # space freed: succeeds


def test_closed_writer_ends_the_stream_after_drain(pair):
    writer, reader = pair
    writer.write(b"last")
    writer.close()
    assert reader.read(timeout=1.0) == b"last"
    with pytest.raises(errors.ConnectionLost, match="writer closed"):
        reader.read(timeout=1.0)


def test_corrupt_frame_is_detected(pair):
    writer, reader = pair
    writer.write(b"hello")
    struct.pack_into("<I", writer._mmap, HEADER_SIZE + 8, 1 << 30)  # impossible payload size
    with pytest.raises(errors.RingCorrupted):
        reader.read_nowait()


def test_corrupt_header_refuses_attach():
    ring = Ring.create(4096)
    try:
        struct.pack_into("<I", ring._mmap, 0, 0xDEADBEEF)
        with pytest.raises(errors.RingCorrupted, match="bad ring magic"):
            Ring.attach(ring.name)
    finally:
        ring.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["write", "batch", "read", "read_batch", "reserve", "gather", "peek",
                                           "read_bytes"]),
                          st.lists(st.integers(0, 1500), min_size=1, max_size=12)), max_size=40))
def test_random_operations_match_a_fifo_model(operations):
    """Random record sizes through a small ring behave like a bounded FIFO."""
    writer = Ring.create(4096)
    reader = Ring.attach(writer.name)
    model: list[bytes] = []
    serial = 0
    try:
        for operation, sizes in operations:
            messages = []
            for size in sizes:
                serial += 1
                messages.append(serial.to_bytes(4, "little")[: min(size, 4)] + b"p" * max(0, size - 4))
            if operation == "write":
                try:
                    writer.write_nowait(messages[0])
                    model.append(messages[0])
                except errors.WouldBlock:
                    assert model, "an empty ring must accept any message within the limit"
            elif operation == "batch":
                count = writer.write_batch(messages)
                model.extend(messages[:count])
                assert count > 0 or model
            elif operation == "gather":  # one message: a prefix, then the sizes' messages as parts
                prefix = messages[0][:3]
                message = prefix + b"".join(messages)
                try:
                    writer.write_gather_nowait(prefix, [memoryview(m) for m in messages],
                                               len(message) - len(prefix))
                    model.append(message)
                except errors.WouldBlock:
                    assert model
                except errors.MessageTooLarge:
                    assert len(message) > writer.max_message_size
            elif operation == "reserve":
                try:
                    view = writer.reserve_nowait(len(messages[0]))
                except errors.WouldBlock:
                    assert model
                    continue
                view[:] = messages[0]
                writer.commit(len(messages[0]))
                model.append(messages[0])
            elif operation == "read":
                if model:
                    assert reader.read_nowait() == model.pop(0)
                else:
                    with pytest.raises(errors.WouldBlock):
                        reader.read_nowait()
            elif operation == "peek":
                if not model:
                    with pytest.raises(errors.WouldBlock):
                        with reader.peek_batch(len(sizes)):
                            pass
                else:
                    with reader.peek_batch(len(sizes)) as views:
                        got = [bytes(view) for view in views]
                    assert got == model[: len(sizes)]
                    del model[: len(sizes)]
            elif operation == "read_bytes":  # the messages whose running total fits, at least one
                budget = sum(sizes)
                got = reader.read_batch(max_bytes=budget)
                expected = 0
                total = 0
                while expected < len(model) and (expected == 0 or total + len(model[expected]) <= budget):
                    total += len(model[expected])
                    expected += 1
                assert got == model[:expected]
                del model[:expected]
            else:
                got = reader.read_batch(max_count=len(sizes))
                assert got == model[: len(sizes)]
                del model[: len(sizes)]
            # The counters say what was handed out (not what was parsed).
            written = writer.stats()
            read = reader.stats()
            assert written.messages_written - read.messages_read == len(model)
            assert written.bytes_written - read.bytes_read == sum(map(len, model))
        assert reader.read_batch() == model
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize("frames", ["batch", "one each"])
def test_read_batch_stops_near_its_byte_budget(pair, frames):
    writer, reader = pair
    if frames == "batch":
        assert writer.write_batch([b"a" * 100] * 30) == 30
    else:
        for _ in range(30):
            writer.write_nowait(b"a" * 100)
    first = reader.read_batch(max_bytes=250)
    assert first == [b"a" * 100] * 2
    assert reader.read_batch(max_bytes=1) == [b"a" * 100]  # at least one message
    assert len(reader.read_batch()) == 27


def test_armed_reader_doorbell_is_pollable(pair):
    import select

    writer, reader = pair
    poller = select.poll()
    poller.register(reader.fileno(), select.POLLIN)
    assert reader.arm_reader() is False
    assert poller.poll(0) == []
    writer.write_batch([b"1", b"2"])
    writer.write(b"3")  # same sleep epoch: no second wake-up
    assert poller.poll(1000) != []
    assert writer.stats().wakeups_sent == 1
    reader.disarm_reader()
    assert reader.read_batch() == [b"1", b"2", b"3"]
    writer.write(b"4")  # disarmed: no wake-up at all
    assert writer.stats().wakeups_sent == 1


def test_held_wake_ups_reach_the_reader_only_when_rung(pair):
    import select

    writer, reader = pair
    held: list = []
    writer.wake_sink = held
    poller = select.poll()
    poller.register(reader.fileno(), select.POLLIN)
    assert reader.arm_reader() is False
    writer.write(b"1")
    writer.write(b"2")  # same sleep epoch: still one wake-up
    assert len(held) == 1 and writer.stats().wakeups_sent == 1
    assert poller.poll(0) == []  # held, not rung
    for bell in held:
        bell.ring()
    assert poller.poll(1000) != []
    reader.disarm_reader()
    assert reader.read_batch() == [b"1", b"2"]


def test_names_carry_tag_and_sweep_spares_the_living(resource_tag):
    from coroipc import _shm

    with Ring.create(4096) as ring:
        assert ring.name.startswith(f"/coro-{resource_tag}-{os.getpid()}-")
        assert _shm.sweep_dead(tag=resource_tag) == []
        assert os.path.exists(_shm_path(ring))
        assert _shm.owner_pid(ring.name[1:]) == os.getpid()
        assert _shm.owner_pid("psm_1234") is None


def test_batch_mixing_large_and_small_messages_wraps_intact(pair):
    writer, reader = pair
    big = writer.batch_frame_limit // 2  # from here a message takes the one-message frame path
    sizes = [big, 3, big + 40, 0, big - 1, 17, writer.batch_frame_limit, 5, big]
    messages = [bytes([index % 251]) * size for index, size in enumerate(sizes * 40)]
    received: list[bytes] = []
    sent = 0
    for _ in range(10_000):
        if sent == len(messages):
            break
        sent += writer.write_batch(messages[sent:])
        received += reader.read_batch(max_bytes=3 * big)
    received += reader.read_batch()
    assert sent == len(messages)
    assert received == messages


def test_gather_write_is_the_prefix_then_the_parts(pair):
    writer, reader = pair
    writer.write_gather_nowait(b"HEAD", [b"ab", memoryview(b"xcdx")[1:3], bytearray(b"ef"), b""], 6)
    writer.write_gather_nowait(b"", [], 0)
    assert reader.read_batch() == [b"HEADabcdef", b""]


@pytest.mark.parametrize("parts, size", [([b"abc"], 4), ([b"abc", b"de"], 4), ([b"abc"], 2)])
def test_gather_parts_that_do_not_add_up_publish_nothing(pair, parts, size):
    writer, reader = pair
    with pytest.raises(ValueError, match="parts"):
        writer.write_gather_nowait(b"h", parts, size)
    assert not reader.readable()
    writer.write_gather_nowait(b"h", [b"next"], 4)
    assert reader.read_batch() == [b"hnext"]


def test_gather_write_bounds(pair):
    writer, reader = pair
    reader.become_reader()  # so that its close marks the ring closed
    with pytest.raises(errors.MessageTooLarge):
        writer.write_gather_nowait(b"", [bytes(writer.max_message_size), b"x"], writer.max_message_size + 1)
    assert not reader.readable()
    written = 0
    with pytest.raises(errors.WouldBlock):
        for _ in range(10):  # 3000-byte messages take 3024-byte frames: two fit in 8192
            writer.write_gather_nowait(b"", [bytes(1000), bytes(2000)], 3000)
            written += 1
    assert written == 2
    reader.close()
    with pytest.raises(errors.ConnectionLost, match="reader closed"):
        writer.write_gather_nowait(b"", [bytes(3000)], 3000)


def _fill_with_single_frames(writer: Ring, count: int) -> list[bytes]:
    messages = [bytes([index]) * (index * 7 % 300) for index in range(count)]
    for message in messages:
        writer.write_nowait(message)
    return messages


def test_peek_batch_of_single_message_frames_across_the_wrap(pair):
    """Frames of one message (events, requests) are peeked in place on the
    fast path, over a PAD frame at the end of the data area, in order."""
    writer, reader = pair
    seen: list[bytes] = []
    sent: list[bytes] = []
    for _round in range(12):  # 8 KiB ring, ~2 KiB per round: wraps several times
        sent += _fill_with_single_frames(writer, 14)
        with reader.peek_batch() as views:
            assert all(isinstance(view, memoryview) for view in views)
            seen += [bytes(view) for view in views]
    assert seen == sent
    assert reader.stats().messages_read == len(sent)
    assert reader.stats().bytes_read == sum(map(len, sent))


def test_peek_batch_takes_single_frames_then_a_batch_frame_then_single_frames(pair):
    writer, reader = pair
    writer.write_nowait(b"one")
    writer.write_batch([b"b1", b"b2", b"b3"])
    writer.write_nowait(b"two")
    with reader.peek_batch(max_count=3) as views:
        assert [bytes(view) for view in views] == [b"one", b"b1", b"b2"]
    assert reader.stats().messages_read == 3  # b3 is parsed but not handed out yet
    with reader.peek_batch() as views:
        assert [bytes(view) for view in views] == [b"b3", b"two"]
    assert reader.stats().messages_read == 5


@pytest.mark.parametrize("corruption", ["check word", "length", "kind"])
def test_corrupt_single_frame_after_sound_ones_is_refused_by_peek_batch(pair, corruption):
    writer, reader = pair
    writer.write_nowait(b"sound")
    bad_at = HEADER_SIZE + writer._words[W_POS]
    writer.write_nowait(b"spoiled")
    field = {"check word": 12, "length": 16, "kind": 0}[corruption]
    struct.pack_into("<I", writer._mmap, bad_at + field, 0x12345)
    with pytest.raises(errors.RingCorrupted):
        with reader.peek_batch():
            pass
    assert reader.stats().messages_read == 1  # the sound one, taken before the parser refused


def test_peek_batch_on_a_closed_ring_says_not_connected(pair):
    _writer, reader = pair
    assert reader.read_batch() == []  # now the reader
    reader.close()
    with pytest.raises(errors.NotConnected):
        with reader.peek_batch():
            pass
