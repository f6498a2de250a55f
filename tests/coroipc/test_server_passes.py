"""The server driven pass by pass from the test's own thread (as totemd
drives it): passes that do not poll, events written as gathered parts,
held wake-ups rung once, stalled backlogs found by the deadline check."""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from coroipc import IpcClient, IpcServer, Ring, codec, errors
from coroipc._wire import put_message
from coroipc.server import socket_path
from tests.coroipc.services import ECHO, TestService


@contextmanager
def served(tmp_path, service: TestService, clients: int = 1, **options):
    """A started server with ``clients`` connected clients; the server is
    driven only by the caller (the handshakes are served here, while a
    helper thread connects)."""
    server = IpcServer(tmp_path, [service], **options)
    server.start()
    connected: list[IpcClient] = []
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            for _ in range(clients):
                connected.append(IpcClient.connect("test", run_dir=tmp_path, timeout=5.0))
        except BaseException as error:  # re-raised below
            failure.append(error)

    thread = threading.Thread(target=connect)
    thread.start()
    try:
        deadline = time.monotonic() + 10.0
        while thread.is_alive() and time.monotonic() < deadline:
            server.process(0.005)
        thread.join(timeout=5.0)
        if failure:
            raise failure[0]
        # A client is connected once it sent READY; the server then still has to read it.
        assert _serve_until(server, lambda: len(service.connected) == clients)
        assert len(connected) == clients
        yield server, connected
    finally:
        thread.join(timeout=5.0)
        for client in connected:
            client.close()
        server.close()


def _serve_until(server: IpcServer, predicate, limit_s: float = 5.0, **process_options) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        server.process(0.0, **process_options)
    return predicate()


def test_a_pass_without_poll_serves_requests_but_not_the_listener(tmp_path):
    service = TestService()
    with served(tmp_path, service) as (server, (client,)):
        put_message(client.request_ring, ECHO, 0, 1, b"ping")
        assert server.process(0.0, poll=False) == 1
        status, ident, body = _response(client)
        assert (status, ident, body) == (0, 1, b"ping")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(socket_path(tmp_path, "test"))
            for _ in range(20):
                server.process(0.0, poll=False)
            assert server.stats().handshakes_pending == 0  # the listener was not looked at
            assert _serve_until(server, lambda: server.stats().handshakes_pending == 1)
        finally:
            probe.close()
        assert _serve_until(server, lambda: server.stats().handshakes_pending == 0)
        put_message(client.request_ring, ECHO, 0, 2, b"still")
        assert _serve_until(server, lambda: client.response_ring.readable(), poll=False)
        assert _response(client) == (0, 2, b"still")


def _response(client: IpcClient) -> tuple[int, int, bytes]:
    (message,) = client.response_ring.read_batch()
    _function, status, ident = codec.MESSAGE_HEADER.unpack_from(message)
    return status, ident, message[16:]


def test_gathered_events_keep_their_order_through_the_backlog(tmp_path):
    service = TestService()
    with served(tmp_path, service, event_ring_size=4096, event_backlog_messages=64) as (server, (client,)):
        conn = service.connected[0]
        sent = []
        for index in range(40):  # ~6 KiB in all: more than the ring, so the backlog takes the rest
            body = bytes([index]) * (index * 7)
            if index % 2:
                conn.send_event_parts(index, [body[:5], memoryview(body)[5:], b"!"], len(body) + 1)
                sent.append((index, body + b"!"))
            else:
                conn.send_event(index, body)
                sent.append((index, body))
        assert conn.stats().event_backlog > 0
        got: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 5.0
        while len(got) < len(sent) and time.monotonic() < deadline:
            client.dispatch(lambda function, payload: got.append((function, bytes(payload))))
            server.process(0.0)
        assert got == sent
        with pytest.raises(ValueError, match="parts"):
            conn.send_event_parts(1, [b"abc"], 4)
        conn.send_event_parts(2, [b"ab", b"c"], 3)
        assert _serve_until(server, lambda: client.event_ring.readable())
        assert client.dispatch(lambda function, payload: got.append((function, bytes(payload)))) == 1
        assert got[-1] == (2, b"abc")


def test_a_stalled_backlog_is_found_by_passes_without_poll(tmp_path):
    service = TestService()
    with served(tmp_path, service, 2, event_ring_size=4096, event_backlog_messages=4,
                event_stall_timeout_s=0.3) as (server, (slow, busy)):
        conn = service.connected[0]
        with pytest.raises(errors.WouldBlock):
            for _ in range(100):
                conn.send_event(1, bytes(500))
        started = time.monotonic()
        assert _serve_until(server, lambda: conn.closed, poll=False)
        assert time.monotonic() - started >= 0.25
        assert server.stats().disconnects == {"stalled": 1}
        put_message(busy.request_ring, ECHO, 0, 9, b"alive")
        assert _serve_until(server, lambda: busy.response_ring.readable(), poll=False)
        assert _response(busy) == (0, 9, b"alive")


def test_a_bell_held_twice_in_a_turn_is_rung_once(tmp_path):
    server = IpcServer(tmp_path, [TestService()], defer_wakes=True)
    writers = [Ring.create(8192, eventfd_bells=True) for _ in range(2)]
    readers = [Ring.attach(w.name, bell_fds=tuple(os.dup(fd) for fd in w.bell_fds)) for w in writers]
    try:
        for writer in writers:
            writer.wake_sink = server._pending_wakes
        for _ in range(2):  # the first reader sleeps, reads (woken or not), sleeps again
            assert not readers[0].arm_reader()
            writers[0].write_nowait(b"x")
            assert readers[0].read_batch() == [b"x"]
        assert not readers[1].arm_reader()  # the second sleeps once
        writers[1].write_nowait(b"y")
        assert len(server._pending_wakes) == 3
        assert server.flush_wakes() == 2
        assert [os.eventfd_read(w.bell_fds[0]) for w in writers] == [1, 1]  # one ring each
        assert server.flush_wakes() == 0
    finally:
        for ring in (*readers, *writers):
            ring.close()
        server.close()
