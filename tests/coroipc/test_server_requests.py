"""The server's request path, driven pass by pass from the test's thread:
a request served in place and the ones behind it, one-way requests, answers
that wait in the backlog, and what a client can get wrong (a message shorter
than its header, a response ring it stopped reading and closed) or the
service (an answer that is not bytes, or too large): each one answered or
disconnected alone, the others served."""

from __future__ import annotations

from coroipc import codec
from coroipc._wire import put_message
from tests.coroipc.services import BAD_RESPONSE, ECHO, TestService
from tests.coroipc.test_server_passes import _serve_until, served

HUGE = 50  # answers with more bytes than the connection allows
CLOSE = 51  # closes the connection from inside the request, then answers


class _Service(TestService):
    def on_request(self, conn, function: int, payload: memoryview) -> bytes | None:
        if function == HUGE:
            return b"h" * (conn.max_message_size + 1)
        if function == CLOSE:
            conn.close("closed by the test service")
            return b"too late"
        return super().on_request(conn, function, payload)


def _responses(client) -> list[tuple[int, int, int, bytes]]:
    out = []
    for message in client.response_ring.read_batch():
        function, status, ident = codec.MESSAGE_HEADER.unpack_from(message)
        out.append((function, status, ident, bytes(message[16:])))
    return out


def test_requests_behind_the_one_served_in_place_are_answered_in_order(tmp_path):
    service = _Service()
    with served(tmp_path, service) as (server, (client,)):
        for ident in range(1, 6):
            put_message(client.request_ring, ECHO, 0, ident, b"r%d" % ident)
        assert server.process(0.0, poll=False) == 5
        assert _responses(client) == [(ECHO, 0, ident, b"r%d" % ident) for ident in range(1, 6)]
        assert service.connected[0].counts["requests"] == 5
        assert server.stats().requests == 5


def test_a_one_way_request_gets_no_answer_and_the_next_one_does(tmp_path):
    service = _Service()
    with served(tmp_path, service) as (server, (client,)):
        put_message(client.request_ring, ECHO, codec.REQUEST_NO_REPLY, 1, b"quiet")
        put_message(client.request_ring, ECHO, 0, 2, b"loud")
        assert server.process(0.0, poll=False) == 2
        assert _responses(client) == [(ECHO, 0, 2, b"loud")]


def test_a_message_shorter_than_its_header_closes_only_that_connection(tmp_path):
    service = _Service()
    with served(tmp_path, service, clients=2) as (server, (bad, good)):
        bad.request_ring.write_nowait(b"short")  # a ring message of 5 bytes: no header
        put_message(good.request_ring, ECHO, 0, 1, b"fine")
        assert _serve_until(server, lambda: len(service.disconnected) == 1, poll=False)
        assert service.disconnected[0] is service.connected[0]
        assert server.stats().disconnects == {"protocol": 1}
        assert _serve_until(server, good.response_ring.readable, poll=False)
        assert _responses(good) == [(ECHO, 0, 1, b"fine")]


def test_an_answer_that_is_not_bytes_or_too_large_becomes_an_error_answer(tmp_path):
    service = _Service()
    with served(tmp_path, service) as (server, (client,)):
        put_message(client.request_ring, BAD_RESPONSE, 0, 1, b"")
        put_message(client.request_ring, HUGE, 0, 2, b"")
        put_message(client.request_ring, ECHO, 0, 3, b"after")
        assert server.process(0.0, poll=False) == 3
        (first, second, third) = _responses(client)
        assert first[:3] == (BAD_RESPONSE, 1, 1) and first[3].startswith(b"bad response from the service")
        assert second[:3] == (HUGE, 1, 2) and b"exceeds the agreed" in second[3]
        assert third == (ECHO, 0, 3, b"after")
        assert not service.disconnected


def test_answers_wait_while_the_client_does_not_read_them_then_come_in_order(tmp_path):
    service = _Service()
    with served(tmp_path, service, ring_size=8192) as (server, (client,)):
        payload = b"p" * 3000
        for ident in range(1, 4):  # the third answer finds the response ring full
            put_message(client.request_ring, ECHO, 0, ident, payload)
            server.process(0.0, poll=False)
        conn = service.connected[0]
        assert len(conn.response_backlog) == 1
        put_message(client.request_ring, ECHO, 0, 4, b"behind")
        for _ in range(5):
            server.process(0.0, poll=False)
        assert conn.counts["requests"] == 3  # not taken while an answer waits
        answers = _responses(client)
        assert _serve_until(server, lambda: client.response_ring.readable() and not conn.response_backlog,
                            poll=False)
        assert _serve_until(server, lambda: conn.counts["requests"] == 4, poll=False)
        answers += _responses(client)
        assert [answer[2] for answer in answers] == [1, 2, 3, 4]
        assert answers[-1][3] == b"behind" and answers[0][3] == payload


def test_a_client_that_closed_its_full_response_ring_is_disconnected_alone(tmp_path):
    service = _Service()
    with served(tmp_path, service, clients=2, ring_size=8192) as (server, (gone, good)):
        for ident in range(1, 4):  # fills its response ring, one answer in the backlog
            put_message(gone.request_ring, ECHO, 0, ident, b"x" * 3000)
            server.process(0.0, poll=False)
        gone.response_ring.close()  # it stops reading (what a dying client's rings show)
        put_message(good.request_ring, ECHO, 0, 1, b"ok")
        assert _serve_until(server, lambda: len(service.disconnected) == 1)
        assert service.disconnected[0] is service.connected[0]
        assert _serve_until(server, good.response_ring.readable)
        assert _responses(good) == [(ECHO, 0, 1, b"ok")]


def test_a_service_that_closes_the_connection_inside_a_request_ends_it_cleanly(tmp_path):
    service = _Service()
    with served(tmp_path, service, clients=2) as (server, (closing, good)):
        put_message(closing.request_ring, CLOSE, 0, 1, b"")
        put_message(closing.request_ring, ECHO, 0, 2, b"never served")
        put_message(good.request_ring, ECHO, 0, 1, b"fine")
        assert server.process(0.0, poll=False) == 2  # the closing request and the good one
        assert service.disconnected == [service.connected[0]]
        assert server.stats().connections == 1
        assert _responses(good) == [(ECHO, 0, 1, b"fine")]
