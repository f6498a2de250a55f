"""The Totem client library (clients.totem) against a stand-in ``totem``
service: an IpcServer in a thread that speaks the local interface, queues
up to ``room`` messages per SUBMIT_MANY and delivers what it accepted back
at once as one DELIVER_BATCH (or DELIVER events for a connection without
BATCH). No daemon, no cluster: the library's reading, counting, waiting,
re-arming and back-pressure paths, each checked against what was sent."""

from __future__ import annotations

import json
import mmap
import random
import select
import threading
import time

import numpy
import pytest

from clients.totem import (ConnectionLost, DeliverEvent, DeliveryBatch, TotemClient, TryAgain)
from coroipc import IpcServer, Service
from tests.coroipc.services import ServerThread
from totemd import local_codec as wire

NODE, INC = 1, 7
RING_ID = (1, 4)
SEND_UNKNOWN = 90  # test control: send one event of an unknown kind
SEND_OTHERS = 91  # test control: one DELIVER_BATCH of N deliveries from node 2
BROADCAST = 92  # test control: one delivery from node 2 to every other connection
RAW_BATCH = 93  # test control: the request's payload as a DELIVER_BATCH event, unchecked


class StandInTotem(Service):
    """Enough of totemd's local interface for the client library."""

    name = "totem"

    def __init__(self) -> None:
        self.room = 1_000_000  # messages a SUBMIT_MANY may still queue
        self.sseq = 0
        self.seq = 0
        self.batched: dict[int, bool] = {}
        self.connections: dict[int, object] = {}

    def on_connect(self, conn) -> None:
        self.connections[conn.id] = conn

    def on_disconnect(self, conn) -> None:
        self.connections.pop(conn.id, None)

    def on_request(self, conn, function: int, payload: memoryview) -> bytes | None:
        if function == wire.Function.HELLO:
            flags = wire.decode_hello_flags(payload)
            self.batched[conn.id] = bool(flags & wire.BATCH)
            return wire.encode_hello_reply(wire.Hello(
                version=wire.VERSION, subscribed=bool(flags & wire.SUBSCRIBE), node_id=NODE, inc=INC,
                ring_id=RING_ID, members=(NODE,), batched=bool(flags & wire.BATCH)))
        if function == wire.Function.SUBMIT_MANY:
            items, count = wire.decode_submit_many(payload, self.room + 1)
            taken = items[:self.room]
            first = self.sseq + 1
            self._deliver(conn, [(NODE, INC, bytes(data), safe) for data, safe in taken])
            status = wire.Status.OK if len(taken) == count else wire.Status.TRY_AGAIN
            return wire.encode_submit_many_reply(status, len(taken), first if taken else 0)
        if function == wire.Function.SUBMIT:
            data, safe = wire.decode_submit(payload)
            if self.room <= 0:
                return wire.encode_submit_reply(wire.Status.TRY_AGAIN, 0)
            self._deliver(conn, [(NODE, INC, bytes(data), safe)])
            return wire.encode_submit_reply(wire.Status.OK, self.sseq)
        if function == wire.Function.STATS:
            return json.dumps({"node_id": NODE}).encode()
        if function == SEND_UNKNOWN:
            conn.send_event(77, b"from a newer daemon")
            return b""
        if function == BROADCAST:
            news = wire.encode_deliver_batch([wire.DELIVER_ITEM.pack(4, 2, 3, 1, *RING_ID, 1, 0)],
                                             [b"news"])
            for other in list(self.connections.values()):
                if other is not conn:
                    other.send_event(wire.EventKind.DELIVER_BATCH, news)
            return b""
        if function == RAW_BATCH:
            conn.send_event(wire.EventKind.DELIVER_BATCH, bytes(payload))
            return b""
        if function == SEND_OTHERS:
            count = int(bytes(payload))
            rows, payloads = [], []
            for index in range(count):
                self.seq += 1
                data = f"other {index}".encode()
                rows.append(wire.DELIVER_ITEM.pack(len(data), 2, 3, index + 1, *RING_ID, self.seq, 0))
                payloads.append(data)
            conn.send_event(wire.EventKind.DELIVER_BATCH, wire.encode_deliver_batch(rows, payloads))
            return b""
        raise ValueError(f"unknown function {function}")

    def _deliver(self, conn, messages: list[tuple[int, int, bytes, bool]]) -> None:
        rows, payloads = [], []
        for sender, sinc, data, safe in messages:
            self.sseq += 1
            self.seq += 1
            flags = wire.SAFE if safe else 0
            if not self.batched[conn.id]:
                conn.send_event(wire.EventKind.DELIVER, wire.deliver_header(
                    sender, sinc, self.sseq, RING_ID, self.seq, safe) + data)
                continue
            rows.append(wire.DELIVER_ITEM.pack(len(data), sender, sinc, self.sseq, *RING_ID,
                                               self.seq, flags))
            payloads.append(data)
        if rows:
            conn.send_event(wire.EventKind.DELIVER_BATCH, wire.encode_deliver_batch(rows, payloads))


@pytest.fixture
def service() -> StandInTotem:
    return StandInTotem()


@pytest.fixture
def run_dir(tmp_path, service):
    with ServerThread(IpcServer(tmp_path, [service], ring_size=1 << 20)):
        yield tmp_path


def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"


def test_batches_are_read_in_place_and_counted_by_origin(run_dir):
    messages = [(bytes([index]) * (index * 37 % 300 + 1), index % 3 == 0) for index in range(40)]
    seen: list[tuple] = []
    own = [0]
    in_place = []

    def on_batch(batch: DeliveryBatch) -> None:
        own[0] += batch.count_from(NODE, INC)
        assert batch.count_from(NODE, INC + 1) == 0 and batch.count_from(2, INC) == 0
        in_place.append(isinstance(batch.payload(0).obj, mmap.mmap))
        table = batch.table
        for index in range(len(batch)):
            seen.append((int(table["sender"][index]), int(table["sseq"][index]),
                         bool(table["flags"][index] & wire.SAFE), bytes(batch.payload(index))))

    with TotemClient.connect(run_dir) as client:
        assert client.submit_many(messages) == 1
        _until(lambda: client.dispatch_batches(on_batch, pytest.fail, timeout=0.5) or len(seen) >= 40)
    assert own[0] == 40
    assert in_place == [True]  # a view of the event ring, not a copy
    assert seen == [(NODE, index + 1, safe, data) for index, (data, safe) in enumerate(messages)]


def test_dispatch_and_dispatch_deliveries_see_the_same_deliveries(run_dir):
    with TotemClient.connect(run_dir) as client:
        client.submit_many([(b"a", False), (b"bb", True)])
        client.submit(b"ccc")
        tuples: list[tuple] = []
        _until(lambda: client.dispatch_deliveries(
            lambda *fields: tuples.append(fields[:-1] + (bytes(fields[-1]),)), pytest.fail,
            timeout=0.5) + len(tuples) >= 3 and len(tuples) >= 3)
        client.submit_many([(b"a", False), (b"bb", True)])
        client.submit(b"ccc")
        events: list[DeliverEvent] = []
        _until(lambda: client.dispatch(events.append, timeout=0.5) >= 0 and len(events) >= 3)
    assert [(t[2], t[6], t[7]) for t in tuples] == [(1, 0, b"a"), (2, wire.SAFE, b"bb"), (3, 0, b"ccc")]
    assert [(e.sseq, e.safe, e.data) for e in events] == [(4, False, b"a"), (5, True, b"bb"),
                                                        (6, False, b"ccc")]
    assert all(e.sender == NODE and e.sinc == INC and e.ring_id == RING_ID for e in events)


def test_offer_many_answers_a_full_queue_and_submit_many_raises(run_dir, service):
    with TotemClient.connect(run_dir, subscribe=False) as client:
        service.room = 3
        assert client.offer_many([(b"x", False)] * 5) == (3, 1)
        service.room = 0
        assert client.offer_many([(b"x", False)] * 5) == (0, 0)
        service.room = 2
        with pytest.raises(TryAgain) as caught:
            client.submit_many([(b"y", False)] * 4)
        assert (caught.value.accepted, caught.value.first_sseq) == (2, 4)
        service.room = 10
        assert client.offer_many([]) == (0, 0)
        assert client.offer_many(iter([(b"z", True)])) == (1, 6)  # any sequence, not only lists


def test_fileno_is_readable_for_every_new_event_once_asked_for(run_dir):
    with TotemClient.connect(run_dir) as client, TotemClient.connect(run_dir) as other:
        got: list[int] = []

        def count(batch: DeliveryBatch) -> None:
            got.append(len(batch))

        # A wait that sleeps on the doorbell leaves the wake-up unarmed ...
        timer = threading.Timer(0.2, other._request, (BROADCAST, b""))
        timer.start()
        try:
            assert client.dispatch_batches(count, pytest.fail, timeout=5.0) == 1
        finally:
            timer.join()
        poller = select.poll()
        poller.register(client.fileno(), select.POLLIN)  # ... asking for fileno() arms it
        for round_number in range(3):
            other._request(BROADCAST, b"")
            assert poller.poll(5000), f"fileno() not readable for event {round_number}"
            assert client.dispatch_batches(count, pytest.fail) == 1
            assert poller.poll(50) == []  # and quiet again once read
        assert got == [1, 1, 1, 1]


def test_many_rows_and_few_rows_count_the_same_as_the_table():
    rng = random.Random(4)
    for count in (0, 1, 5, 127, 128, 129, 700):
        origins = [(rng.choice((1, 2, 0xFFFFFFFF)), rng.choice((7, 8, 0))) for _ in range(count)]
        rows = [wire.DELIVER_ITEM.pack(1, sender, sinc, index, *RING_ID, index, 0)
                for index, (sender, sinc) in enumerate(origins)]
        batch = DeliveryBatch(wire.encode_deliver_batch(rows, [b"p"] * count))
        table = batch.table
        for sender, sinc in ((1, 7), (2, 8), (0xFFFFFFFF, 0), (3, 7)):
            expected = int(numpy.count_nonzero((table["sender"] == sender) & (table["sinc"] == sinc)))
            assert batch.count_from(sender, sinc) == expected == origins.count((sender, sinc))


def test_malformed_batches_are_refused():
    row = wire.DELIVER_ITEM.pack(5, NODE, INC, 1, *RING_ID, 1, 0)
    with pytest.raises(wire.LocalDecodeError):
        DeliveryBatch(b"\x00\x00")  # shorter than its count
    with pytest.raises(wire.LocalDecodeError):
        DeliveryBatch((3).to_bytes(4, "big") + row + row)  # the table overruns the event
    short = DeliveryBatch(wire.encode_deliver_batch([row], [b"hell"]))  # lengths do not fill it
    assert len(short) == 1 and short.count_from(NODE, INC) == 1  # the table is sound
    with pytest.raises(wire.LocalDecodeError):
        short.payload(0)
    with pytest.raises(wire.LocalDecodeError):
        list(short)


def test_a_malformed_batch_is_refused_after_its_sound_deliveries(run_dir):
    row = wire.DELIVER_ITEM.pack(2, 2, 3, 1, *RING_ID, 1, 0)
    with TotemClient.connect(run_dir) as client:
        got: list[bytes] = []

        def on_deliver(*fields) -> None:
            got.append(bytes(fields[-1]))

        for bad in (wire.encode_deliver_batch([row, row], [b"ok", b"x"]),  # overruns the event
                    wire.encode_deliver_batch([row], [b"ok"]) + b"!",  # a byte left over
                    (5).to_bytes(4, "big") + row):  # the table overruns the event
            client._request(RAW_BATCH, bad)
            with pytest.raises(wire.LocalDecodeError):
                _until(lambda: client.dispatch_deliveries(on_deliver, pytest.fail, timeout=0.5) < 0)
        assert got == [b"ok", b"ok"]
        client.submit(b"still served")
        _until(lambda: client.dispatch_deliveries(on_deliver, pytest.fail, timeout=0.5) >= 0
               and len(got) == 3)
        assert got[-1] == b"still served"


def test_unknown_events_are_counted_and_other_events_still_arrive(run_dir):
    with TotemClient.connect(run_dir) as client:
        client._request(SEND_UNKNOWN, b"")
        client._request(SEND_OTHERS, b"3")
        counts: list[tuple[int, int]] = []
        _until(lambda: client.dispatch_batches(
            lambda batch: counts.append((len(batch), batch.count_from(2, 3))), pytest.fail,
            timeout=0.5) >= 0 and bool(counts))
        assert client.unknown_events == 1
        assert counts == [(3, 3)]


def test_a_connection_without_batches_gets_one_delivery_batches(run_dir):
    with TotemClient.connect(run_dir, batch=False) as client:
        client.submit_many([(b"one", False), (b"two", True)])
        got: list[tuple[int, bytes]] = []
        _until(lambda: client.dispatch_batches(
            lambda batch: got.append((len(batch), bytes(batch.payload(0)))), pytest.fail,
            timeout=0.5) >= 0 and len(got) >= 2)
    assert got == [(1, b"one"), (1, b"two")]


def test_waiting_for_nothing_times_out_and_a_gone_service_is_reported(tmp_path, service):
    thread = ServerThread(IpcServer(tmp_path, [service], ring_size=1 << 16))
    with thread:
        client = TotemClient.connect(tmp_path)
        started = time.monotonic()
        assert client.dispatch_batches(pytest.fail, pytest.fail, timeout=0.2) == 0
        assert 0.15 <= time.monotonic() - started < 5.0
        assert client.stats()["node_id"] == NODE
    try:
        deadline = time.monotonic() + 5.0
        with pytest.raises(ConnectionLost):
            while time.monotonic() < deadline:  # a poll checks liveness every few ms at most
                client.dispatch_batches(pytest.fail, pytest.fail, timeout=0)
    finally:
        client.close()


def test_events_read_in_place_are_counted_by_the_ipc_client(run_dir):
    """The IPC client's events counter sees the event messages the totem
    client reads in place (peek_batch) and those it copies alike."""
    with TotemClient.connect(run_dir) as client:
        ipc = client._ipc
        for index in range(3):
            client.submit(b"x" * (index + 1))  # one DELIVER_BATCH event each
        client._request(SEND_UNKNOWN, b"")
        deliveries: list[int] = []
        _until(lambda: client.dispatch_deliveries(lambda *fields: deliveries.append(len(fields[-1])),
                                                  pytest.fail, timeout=0.5) >= 0
               and client.unknown_events == 1)
        assert deliveries == [1, 2, 3]
        assert ipc.stats().events == 4  # three batches and the unknown event
        client._request(SEND_OTHERS, b"5")
        events: list[DeliverEvent] = []
        _until(lambda: client.dispatch(events.append, timeout=0.5) >= 0 and len(events) == 5)
        assert ipc.stats().events == 5


def test_submit_many_parts_decode_to_the_messages():
    messages = [(b"", False), (b"s" * 70_000, True), (memoryview(b"view"), False), (bytearray(b"ba"), True)]
    joined = memoryview(b"".join(wire.encode_submit_many_parts(messages)))
    decoded, count = wire.decode_submit_many(joined)
    assert count == len(messages)
    assert [(bytes(data), safe) for data, safe in decoded] == [(bytes(m), s) for m, s in messages]


@pytest.mark.parametrize("sizes", [(40_000, 20_000, 3), (3, 40_000, 17_000)], ids=["large first", "small first"])
def test_large_and_small_offers_are_delivered_intact(run_dir, service, sizes):
    """Batches led by a large message go part by part into the request ring,
    others joined: the daemon sees the same request either way."""
    messages = [(bytes([index + 1]) * size, index == 1) for index, size in enumerate(sizes)]
    with TotemClient.connect(run_dir) as client:
        assert client.offer_many(messages) == (3, 1)
        service.room = 1
        with pytest.raises(TryAgain) as caught:
            client.submit_many(messages)
        assert (caught.value.accepted, caught.value.first_sseq) == (1, 4)
        got: list[tuple[bytes, int]] = []
        _until(lambda: client.dispatch_deliveries(lambda *fields: got.append((bytes(fields[-1]), fields[6])),
                                                  pytest.fail, timeout=0.5) >= 0 and len(got) >= 4)
    assert got == [(data, wire.SAFE if safe else 0) for data, safe in messages + messages[:1]]
