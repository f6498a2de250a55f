"""The daemon's pure pieces: local interface codec, ring seq store, timer heap,
statistics keys, coro load's payload check."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.load import HEADER, LoadChecker, check_payload, encode_payload
from totemd import local_codec as wire
from totemd.daemon import _Timers
from totemd.ringstore import RingStoreError, load_ring_seq, ring_seq_path, store_ring_seq
from totemd.srp import Timer
from totemd.stats import DaemonStats, cmap_items, format_ring_id


@given(st.lists(st.tuples(st.binary(max_size=300), st.booleans()), max_size=20))
def test_submit_many_round_trips(messages):
    decoded, count = wire.decode_submit_many(memoryview(wire.encode_submit_many(messages)))
    assert [(bytes(data), safe) for data, safe in decoded] == messages


@pytest.mark.parametrize("payload, message", [
    (b"", r"^SUBMIT_MANY of 0 bytes is shorter than 4$"),
    (struct.pack("!I", 1), r"^SUBMIT_MANY ends inside the header of message 0$"),
    (struct.pack("!IBI", 1, 0, 10) + b"abc", r"^SUBMIT_MANY message 0 of 10 bytes overruns the request$"),
    (struct.pack("!IBI", 1, 4, 0), r"^SUBMIT_MANY message 0 flags 0x4 has unknown bits$"),
    (struct.pack("!IBI", 0, 0, 0), r"^SUBMIT_MANY has 5 bytes after 0 messages$"),
])
def test_malformed_submit_many_is_refused_before_use(payload, message):
    with pytest.raises(wire.LocalDecodeError, match=message):
        wire.decode_submit_many(memoryview(payload))


@given(st.lists(st.tuples(st.binary(max_size=50), st.booleans()), min_size=1, max_size=12),
       st.integers(min_value=0, max_value=14))
def test_submit_many_decodes_only_what_the_queue_can_take(messages, max_items):
    decoded, count = wire.decode_submit_many(memoryview(wire.encode_submit_many(messages)), max_items)
    assert count == len(messages)
    assert [(bytes(data), safe) for data, safe in decoded] == messages[:max_items]


def test_submit_many_prefix_decode_still_validates_what_it_returns():
    good = wire.encode_submit_many([(b"a", False), (b"b", True)])
    # A tail past the decoded prefix is not looked at (the client resubmits it) ...
    decoded, count = wire.decode_submit_many(memoryview(good + b"junk"), 1)
    assert (count, [bytes(d) for d, _ in decoded]) == (2, [b"a"])
    # ... but the whole request must be well formed when all of it is used,
    with pytest.raises(wire.LocalDecodeError, match=r"^SUBMIT_MANY has 4 bytes after 2 messages$"):
        wire.decode_submit_many(memoryview(good + b"junk"), 2)
    # and a decoded message that overruns is refused.
    with pytest.raises(wire.LocalDecodeError, match=r"overruns the request$"):
        wire.decode_submit_many(memoryview(good[:-1]), 2)


def test_origin_header_round_trip_and_rejects_foreign_bytes():
    header = wire.encode_origin(7, 2**40, True)
    assert len(header) == wire.ORIGIN.size == 16
    assert wire.decode_origin(header + b"payload") == (7, 2**40, True)
    with pytest.raises(wire.LocalDecodeError, match=r"^origin header magic/version 0x57/0 is not ours$"):
        wire.decode_origin(b"W" + bytes(15))
    with pytest.raises(wire.LocalDecodeError):
        wire.decode_origin(b"short")


def test_events_round_trip():
    conf = wire.ConfEvent(kind="TRANS", ring_id=(1, 8), old_ring_id=(1, 4), members=(1, 2),
                          left=(3,), joined=())
    assert wire.decode_conf(wire.encode_conf(conf)) == conf
    reg = wire.ConfEvent(kind="REG", ring_id=(2, 12), old_ring_id=None, members=(1, 2, 3),
                         joined=(3,))
    assert wire.decode_conf(wire.encode_conf(reg)) == reg
    event = wire.decode_deliver(wire.deliver_header(3, 2, 9, (1, 8), 77, True) + b"data")
    assert (event.mid, event.ring_id, event.seq, event.safe, event.data) == ("3.2.9", (1, 8), 77, True, b"data")
    with pytest.raises(wire.LocalDecodeError, match=r"^CONFCHG of 48 bytes does not hold 4 node ids$"):
        wire.decode_conf(wire.encode_conf(reg)[:-4])


def test_hello_version_mismatch_is_refused():
    with pytest.raises(wire.LocalDecodeError, match=r"^local interface version 9 is not 2$"):
        wire.decode_hello(struct.pack("!HH", 9, 1))
    assert wire.decode_hello(wire.encode_hello(True)) is True


def test_ring_seq_store_is_atomic_text_and_refuses_garbage(tmp_path):
    assert load_ring_seq(tmp_path, 3) is None
    store_ring_seq(tmp_path, 3, 44)
    store_ring_seq(tmp_path, 3, 48)
    assert load_ring_seq(tmp_path, 3) == 48
    assert ring_seq_path(tmp_path, 3).read_text() == "48\n"
    assert sorted(os.listdir(tmp_path)) == ["ringid_3"]
    ring_seq_path(tmp_path, 3).write_text("forty")
    with pytest.raises(RingStoreError, match=r"does not hold a ring seq \(got 'forty'\)"):
        load_ring_seq(tmp_path, 3)
    with pytest.raises(ValueError):
        store_ring_seq(tmp_path, 3, -1)


def test_timers_fire_only_the_latest_arming_earliest_first():
    timers = _Timers()
    timers.set(Timer.JOIN, 10.0)
    timers.set(Timer.TOKEN_LOSS, 30.0)
    timers.set(Timer.JOIN, 20.0)          # re-armed: the 10 ms entry is stale
    timers.set(Timer.CONSENSUS, 5.0)
    timers.cancel(Timer.CONSENSUS)
    assert timers.next_deadline() == 20.0
    assert timers.pop_due(15.0) == []
    assert timers.pop_due(25.0) == [Timer.JOIN]
    assert timers.pop_due(100.0) == [Timer.TOKEN_LOSS]
    assert timers.next_deadline() is None
    timers.set(Timer.TOKEN_LOSS, 9.0)
    timers.set(Timer.TOKEN_RETRANSMIT, 7.0)
    timers.set(Timer.JOIN, 8.0)
    assert timers.pop_due(8.5) == [Timer.TOKEN_RETRANSMIT, Timer.JOIN]
    assert timers.next_deadline() == 9.0


def test_cmap_items_follow_corosync_names():
    stats = DaemonStats(node_id=2, inc=3, state="OPERATIONAL", ring_id=(1, 0x2C), members=(1, 2),
                        last_state_change="", token_rotation_ms=12.5,
                        srp={"orf_token_rx": 9, "rx_malformed": 4, "state": "OPERATIONAL"},
                        transport={"dropped_unknown_source": 1, "last_send_error": ""},
                        members_detail={1: {"ip": "127.0.0.1", "join_count": 2, "status": "joined"}})
    items = cmap_items(stats, config_version=5)
    assert format_ring_id((1, 0x2C)) == "1.2c"
    assert items["runtime.totem.ring_id"] == ("1.2c", "str")
    assert items["runtime.members.1.ip"] == ("r(0) ip(127.0.0.1) ", "str")
    assert items["runtime.members.1.join_count"] == (2, "u32")
    assert items["runtime.members.1.config_version"] == (5, "u64")
    assert items["stats.srp.orf_token_rx"] == (9, "u64")
    assert items["stats.srp.rx_msg_dropped"] == (5, "u64")
    assert "stats.srp.state" not in items and "stats.transport.last_send_error" not in items


def test_load_payload_detects_corruption_and_reordering():
    good = encode_payload(1, 99, 5, 100, 123, bytes(range(100)))
    assert len(good) == 100
    assert check_payload(good) == (1, 99, 5, 123)
    bad = bytearray(good)
    bad[-1] ^= 1
    with pytest.raises(ValueError, match=r"^CRC mismatch in message 1/99/5$"):
        check_payload(bytes(bad))
    assert check_payload(b"not a loader message") is None

    checker = LoadChecker(node=1, pid=99)
    for counter, sseq in ((1, 1), (2, 2), (2, 3)):
        data = encode_payload(1, 99, counter, HEADER.size + 4, 0, b"abcd")
        checker.on_event(wire.DeliverEvent(sender=1, sinc=1, sseq=sseq, ring_id=(1, 4), seq=sseq,
                                           safe=False, data=data))
    checker.on_event(wire.DeliverEvent(sender=1, sinc=1, sseq=4, ring_id=(1, 4), seq=4, safe=False,
                                       data=bytes(bad)))
    assert (checker.delivered, checker.own_delivered, checker.reordered, checker.corrupt) == (4, 3, 1, 1)


def _batch_row(sender: int, sseq: int, data: bytes, safe: bool = False) -> bytes:
    return wire.DELIVER_ITEM.pack(len(data), sender, 2, sseq, 1, 8, sseq + 10,
                                  wire.SAFE if safe else 0)


def _batch(messages: list[tuple[bytes, bool]], sender: int = 3) -> bytes:
    rows = [_batch_row(sender, index + 1, data, safe) for index, (data, safe) in enumerate(messages)]
    return wire.encode_deliver_batch(rows, [data for data, _safe in messages])


@given(st.lists(st.tuples(st.binary(max_size=200), st.booleans()), max_size=12))
def test_deliver_batch_round_trips(messages):
    events = wire.decode_deliver_batch(_batch(messages))
    assert [(e.data, e.safe) for e in events] == messages
    assert [e.mid for e in events] == [f"3.2.{index + 1}" for index in range(len(messages))]
    assert {(e.ring_id, e.seq - e.sseq) for e in events} <= {((1, 8), 10)}


@given(st.lists(st.tuples(st.binary(max_size=200), st.booleans()), max_size=12))
def test_deliver_batch_table_is_the_same_deliveries_as_an_array(messages):
    payload = _batch(messages)
    table, offsets = wire.deliver_batch_table(payload)
    assert table["sseq"].tolist() == list(range(1, len(messages) + 1))
    assert (table["flags"] & wire.SAFE).astype(bool).tolist() == [safe for _d, safe in messages]
    assert [payload[o:o + n] for o, n in zip(offsets.tolist(), table["length"].tolist())] == \
        [data for data, _safe in messages]
    assert not table.flags.writeable


_ROW = wire.DELIVER_ITEM.size


@pytest.mark.parametrize("payload, message", [
    (b"\x00\x00", r"^DELIVER_BATCH event of 2 bytes is shorter than 4$"),
    (struct.pack("!I", 1) + bytes(10),
     r"^DELIVER_BATCH of 14 bytes is shorter than the table of its 1 deliveries$"),
    (struct.pack("!I", 1) + _batch_row(1, 1, b"abc") + b"ab",
     r"^DELIVER_BATCH delivery 0 of 3 bytes overruns the event$"),
    (struct.pack("!I", 2) + _batch_row(1, 1, b"abc") + struct.pack("!I", 2**32 - 1) + bytes(_ROW - 4)
     + b"abc", r"^DELIVER_BATCH delivery 1 of 4294967295 bytes overruns the event$"),
    (struct.pack("!I", 1) + _batch_row(1, 1, b"abc") + b"abcx",
     r"^DELIVER_BATCH has 1 bytes after 1 deliveries$"),
])
def test_malformed_deliver_batch_is_refused(payload, message):
    with pytest.raises(wire.LocalDecodeError, match=message):
        wire.decode_deliver_batch(payload)
    # The array view checks the whole event before returning anything.
    with pytest.raises(wire.LocalDecodeError):
        wire.deliver_batch_table(payload)


def test_hello_flags_ask_for_batches_and_the_reply_says_if_granted():
    assert wire.decode_hello_flags(wire.encode_hello(True, batch=True)) == wire.SUBSCRIBE | wire.BATCH
    assert wire.decode_hello_flags(wire.encode_hello(False)) == 0
    assert wire.decode_hello_flags(struct.pack("!HH", wire.VERSION, 0xFFF1)) == wire.SUBSCRIBE  # unknown bits ignored
    hello = wire.Hello(version=wire.VERSION, subscribed=True, node_id=4, inc=2, ring_id=(4, 8), members=(4,),
                       batched=True)
    assert wire.decode_hello_reply(wire.encode_hello_reply(hello)) == hello


def test_default_send_queue_holds_four_token_visits_of_small_messages():
    from totemd.daemon_local import QUEUE_VISITS, default_max_queued_messages
    from totemd.srp import TotemParams

    params = TotemParams()
    per_frame = params.frame_payload_max // (64 + 16 + 4)
    assert default_max_queued_messages(params) == QUEUE_VISITS * params.max_messages * per_frame == 1088
    assert default_max_queued_messages(TotemParams(max_messages=5)) == 4 * 5 * per_frame


def test_event_log_writes_to_a_named_file(tmp_path):
    from totemd.evslog import EventLog

    path = tmp_path / "sub" / "mine.jsonl"
    path.parent.mkdir()
    with EventLog(None, 2, 3, clock=lambda: 5, path=path) as log:
        log.submit("2.3.1", 1, False, 7, None)
        assert log.records is None
    assert path.read_text() == ('{"node":2,"inc":3,"t":5,"ev":"submit","mid":"2.3.1","sseq":1,'
                                '"safe":false,"crc":7,"deps":null}\n')
    assert sorted(p.name for p in path.parent.iterdir()) == ["mine.jsonl"]
    with pytest.raises(ValueError, match=r"^give the event log a directory or a path, not both$"):
        EventLog(tmp_path, 2, 3, path=path)


@given(mid=st.sampled_from(["1.2.3", "unframed.4.99", 'odd "mid"\n', "ü.1"]),
       numbers=st.lists(st.integers(0, 2**32 - 1), min_size=6, max_size=6), safe=st.booleans(),
       in_conf=st.sampled_from([None, (1, 8), [1, 8], ((1, 4), (1, 8)), [[1, 4], [2, 8]]]),
       deps=st.sampled_from([None, [], ["1.1.1", 'x"y']]))
def test_event_log_text_records_equal_the_encoded_dicts(tmp_path_factory, mid, numbers, safe,
                                                         in_conf, deps):
    import json

    from totemd.evslog import EventLog

    sender, sinc, sseq, seq, crc, t = numbers
    memory = EventLog(None, 3, 2)
    memory.deliver(mid, sender, sinc, sseq, (4, 9), seq, safe, crc, in_conf, t=t)
    memory.submit(mid, sseq, safe, crc, deps, t=t)
    memory.originate(mid, (4, 9), seq, sseq, t=t)
    memory.deliver(mid, sender, sinc, sseq, (4, 9), seq, safe, crc, in_conf, t=t)  # cached in_conf
    path = tmp_path_factory.mktemp("evs") / "log.jsonl"
    with EventLog(None, 3, 2, path=path) as log:
        log.deliver(mid, sender, sinc, sseq, (4, 9), seq, safe, crc, in_conf, t=t)
        log.submit(mid, sseq, safe, crc, deps, t=t)
        log.originate(mid, (4, 9), seq, sseq, t=t)
        log.deliver(mid, sender, sinc, sseq, (4, 9), seq, safe, crc, in_conf, t=t)
    expected = [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in memory.records]
    assert path.read_text(encoding="utf-8").splitlines() == expected


def test_load_checker_takes_raw_deliveries_from_memoryviews():
    checker = LoadChecker(node=1, pid=99)
    good = encode_payload(1, 99, 1, HEADER.size + 4, 0, b"abcd")
    bad = bytearray(encode_payload(1, 99, 2, HEADER.size + 4, 0, b"abcd"))
    bad[-1] ^= 1
    checker.on_delivery(1, 1, 1, 1, 4, 1, 0, memoryview(good))
    checker.on_delivery(1, 1, 2, 1, 4, 2, 0, memoryview(bytes(bad)))
    checker.on_delivery(1, 1, 2, 1, 4, 3, 0, memoryview(b"someone else's"))
    assert (checker.delivered, checker.own_delivered, checker.corrupt, checker.foreign) == (3, 1, 1, 1)
    assert checker.reordered == 1  # sseq 2 twice from sender 1.1
    assert checker.problems[0] == "1.1.2: CRC mismatch in message 1/99/2"


class _FakeConnection:
    """A subscriber whose event ring takes ``room`` events, then WouldBlock;
    events above ``max_message_size`` raise MessageTooLarge as coroipc does."""

    def __init__(self, conn_id: int, room: int = 100, max_message_size: int = 1000) -> None:
        self.id, self.pid, self.room, self.max_message_size = conn_id, 4242, room, max_message_size
        self.events: list[tuple[int, bytes]] = []
        self.closed_with: str | None = None

    def send_event(self, kind, payload):
        from coroipc import errors as ipc_errors
        if len(payload) > self.max_message_size:
            raise ipc_errors.MessageTooLarge("too large")
        if len(self.events) >= self.room:
            raise ipc_errors.WouldBlock("full")
        self.events.append((int(kind), bytes(payload)))

    def close(self, reason):
        self.closed_with = reason


def test_a_subscriber_that_cannot_take_a_delivery_loses_its_connection_others_keep_theirs():
    from totemd.local import TotemService

    service = TotemService(daemon=None)  # type: ignore[arg-type]
    small, big, slow = _FakeConnection(1, max_message_size=100), _FakeConnection(2), _FakeConnection(3, room=1)
    for conn in (small, big, slow):
        service._subscribers[conn.id] = conn
        service._batched.add(conn.id)
    service.broadcast_deliveries([b"a" * 50, b"b" * 500], None)
    assert small.closed_with == "a delivery event of 500 bytes exceeds the connection's maximum of 100"
    assert big.events == [(3, b"a" * 50), (3, b"b" * 500)] and big.closed_with is None
    # The slow one got what fit; the rest waits in its overflow, in order.
    assert slow.events == [(3, b"a" * 50)] and service.stats()["overflow_bytes"] == 500
    slow.room = 10
    service.flush()
    assert slow.events == [(3, b"a" * 50), (3, b"b" * 500)]
    stats = service.stats()
    assert (stats["events_too_large"], stats["subscribers"], stats["overflow_bytes"]) == (1, 2, 0)
