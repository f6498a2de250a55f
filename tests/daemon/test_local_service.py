"""The ``totem`` service's submit path in one process: a real coroipc server
and client, the real TotemService, the daemon's real ``local_submit_many``
over a real Packer (the harness of scripts/bench_submit_path.py). Partial
acceptance, refusals, TOO_LARGE, SHUTTING_DOWN, a client behind on its
deliveries, garbage requests and a client that goes away with its request
unanswered: each answered as before, nothing queued that was refused."""

from __future__ import annotations

import time
from collections import deque

import pytest

from coroipc import codec
from coroipc._wire import put_message
from scripts.bench_submit_path import build
from totemd import local_codec as wire
from totemd.pg import Unpacker, pack_all
from totemd.srp.params import TotemParams

SIZE = 8192


@pytest.fixture()
def path(tmp_path):
    setup = build(str(tmp_path))
    try:
        yield setup
    finally:
        setup["client"].close()
        setup["server"].close()


def _submit_many(setup, messages, ident=1):
    """One SUBMIT_MANY written by the client and served by one pass."""
    client, server = setup["client"], setup["server"]
    put_message(client.request_ring, wire.Function.SUBMIT_MANY, 0, ident,
                wire.encode_submit_many(messages))
    assert server.process(0.0, poll=False) == 1
    (reply,) = client.response_ring.read_batch()
    function, status, got_ident = codec.MESSAGE_HEADER.unpack_from(reply)
    assert (function, status, got_ident) == (wire.Function.SUBMIT_MANY, 0, ident)
    return wire.decode_submit_many_reply(reply[16:])


def _queued(setup) -> list[bytes]:
    """Everything the packer holds, taken and unpacked (the queue is emptied)."""
    unpacker = Unpacker()
    return [bytes(m) for frame in pack_all(setup["packer"]) for m in unpacker.feed(1, frame.payload)]


def _fill(setup) -> int:
    """Submit 8 KiB messages until the node refuses one; returns how many it took."""
    taken = 0
    for ident in range(1, 100):
        status, accepted, _first = _submit_many(setup, [(bytes(SIZE), False)], ident)
        taken += accepted
        if status is wire.Status.TRY_AGAIN:
            return taken
    raise AssertionError("the queue never filled")


def _message(index: int) -> bytes:
    return bytes([index]) * SIZE


def test_an_offer_to_a_nearly_full_queue_is_taken_in_part_and_the_rest_refused(path):
    service, daemon, packer = path["service"], path["daemon"], path["packer"]
    filled = _fill(path)
    before = packer.stats().messages_submitted
    for _ in range(12):  # a token visit's frames leave the queue
        frame = packer.take_frame()
        daemon._originated += len(frame.completed)
    counts = dict(service.counts)
    status, accepted, first = _submit_many(path, [(_message(i), i == 1) for i in range(4)], 500)
    assert status is wire.Status.TRY_AGAIN and 0 < accepted < 4
    assert first == filled + 1
    assert packer.stats().messages_submitted == before + accepted
    assert service.counts["submitted"] == counts["submitted"] + accepted
    assert service.counts["try_again"] == counts["try_again"] + 1
    bodies = _queued(path)[-accepted:]  # the offer's accepted prefix, behind the fill
    for index, body in enumerate(bodies):
        origin = wire.ORIGIN.unpack_from(body)
        assert origin[3:] == (daemon.inc, first + index)
        assert bool(origin[2] & wire.SAFE) == (index == 1)
        assert body[wire.ORIGIN.size:] == _message(index)


def test_an_offer_to_a_full_queue_queues_nothing(path):
    service, packer = path["service"], path["packer"]
    _fill(path)
    stats = packer.stats()
    status, accepted, first = _submit_many(path, [(_message(i), False) for i in range(4)], 700)
    assert (status, accepted, first) == (wire.Status.TRY_AGAIN, 0, 0)
    assert packer.stats() == stats


def test_a_too_large_message_stops_the_batch_there(tmp_path):
    path = build(str(tmp_path), TotemParams(max_message_size=20_000))
    try:
        _too_large_stops_the_batch(path)
    finally:
        path["client"].close()
        path["server"].close()


def _too_large_stops_the_batch(path) -> None:
    service = path["service"]
    limit = path["daemon"].settings.params.max_message_size - wire.ORIGIN.size
    status, accepted, first = _submit_many(
        path, [(b"a" * 10, False), (bytes(limit + 1), False), (b"c" * 10, False)])
    assert (status, accepted, first) == (wire.Status.TOO_LARGE, 1, 1)
    assert service.counts["too_large"] == 1 and service.counts["try_again"] == 0
    assert [body[wire.ORIGIN.size:] for body in _queued(path)] == [b"a" * 10]


def test_a_draining_daemon_answers_shutting_down_and_queues_nothing(path):
    service, daemon, packer = path["service"], path["daemon"], path["packer"]
    daemon._draining = True
    status, accepted, _first = _submit_many(path, [(_message(1), False)] * 3)
    assert (status, accepted) == (wire.Status.SHUTTING_DOWN, 0)
    assert packer.stats().messages_submitted == 0
    assert service.counts["try_again"] == service.counts["too_large"] == 0


def test_a_client_behind_on_its_deliveries_gets_try_again_first(path):
    service, packer = path["service"], path["packer"]
    conn = service._subscribers and next(iter(service._subscribers.values()))
    service._overflow[conn.id] = (deque(), [0])
    status, accepted, _first = _submit_many(path, [(_message(1), False)])
    assert (status, accepted) == (wire.Status.TRY_AGAIN, 0)
    assert service.counts["try_again_reader_behind"] == 1
    assert packer.stats().messages_submitted == 0
    del service._overflow[conn.id]
    assert _submit_many(path, [(_message(1), False)], 2)[:2] == (wire.Status.OK, 1)


@pytest.mark.parametrize("payload", [
    b"\x00\x00",  # shorter than the count
    wire.encode_submit_many([(b"xyz", False)])[:-1],  # the message overruns the request
    wire.encode_submit_many([(b"xyz", False)]) + b"!",  # bytes after the last message
    b"\x00\x00\x00\x01\x80\x00\x00\x00\x01x",  # unknown flag bits
])
def test_a_garbage_submit_many_is_invalid_and_the_connection_keeps_working(path, payload):
    service, client, server = path["service"], path["client"], path["server"]
    put_message(client.request_ring, wire.Function.SUBMIT_MANY, 0, 9, payload)
    assert server.process(0.0, poll=False) == 1
    (reply,) = client.response_ring.read_batch()
    assert wire.decode_submit_many_reply(reply[16:])[:2] == (wire.Status.INVALID, 0)
    assert service.counts["bad_requests"] == 1
    assert path["packer"].stats().messages_submitted == 0
    assert _submit_many(path, [(b"fine", False)], 10) == (wire.Status.OK, 1, 1)


def test_an_unknown_function_is_a_service_error_not_a_disconnect(path):
    client, server, service = path["client"], path["server"], path["service"]
    put_message(client.request_ring, 99, 0, 3, b"?")
    assert server.process(0.0, poll=False) == 1
    (reply,) = client.response_ring.read_batch()
    assert codec.MESSAGE_HEADER.unpack_from(reply)[1] == 1  # the status of a service error
    assert b"unknown function 99" in bytes(reply[16:])
    assert service.counts["bad_requests"] == 1
    assert _submit_many(path, [(b"fine", False)], 4) == (wire.Status.OK, 1, 1)


def test_a_client_gone_with_its_request_unanswered_leaves_the_server_serving(path):
    client, server, service = path["client"], path["server"], path["service"]
    put_message(client.request_ring, wire.Function.SUBMIT_MANY, 0, 1,
                wire.encode_submit_many([(_message(1), False)] * 2))
    client.close()
    deadline = time.monotonic() + 5.0
    while server.stats().connections and time.monotonic() < deadline:
        server.process(0.0)
    assert server.stats().connections == 0
    assert not service._subscribers
    # What it managed to submit before it went is queued whole (or not at all).
    assert [len(body) for body in _queued(path)] in ([], [wire.ORIGIN.size + SIZE] * 2)
