"""Server and client: handshake, requests, events, policy, bounds, corruption."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import stat
import struct
import time

import pytest

from coroipc import IpcClient, IpcServer, codec, errors
from coroipc.server import socket_path
from tests.coroipc.services import BAD_RESPONSE, ECHO, EVENTS, FAIL, FLOOD, NO_REPLY, WHO, ServerThread, TestService, wait_for


def _tagged_segments(resource_tag: str) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if resource_tag in name]


@pytest.fixture
def service() -> TestService:
    return TestService()


@pytest.fixture
def running(tmp_path, service):
    with ServerThread(IpcServer(tmp_path, [service], ring_size=1 << 16)) as server:
        yield server


def test_request_response_and_credentials(running, tmp_path, service):
    with IpcClient.connect("test", run_dir=tmp_path, timeout=5.0) as client:
        assert client.request(ECHO, b"hello", timeout=5.0) == b"hello"
        assert client.request(ECHO, b"", timeout=5.0) == b""
        assert client.request(WHO, timeout=5.0) == f"{os.getpid()} {os.getuid()} {os.getgid()}".encode()
        assert client.server_pid == os.getpid()
        assert wait_for(lambda: len(service.connected) == 1)
        conn = service.connected[0]
        assert (conn.pid, conn.uid, conn.gid) == (os.getpid(), os.getuid(), os.getgid())
    assert wait_for(lambda: len(service.disconnected) == 1)


def test_segments_are_gone_once_connected(running, tmp_path, resource_tag):
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        assert client.request(ECHO, b"x", timeout=5.0) == b"x"
        assert _tagged_segments(resource_tag) == []


def test_service_error_keeps_the_connection(running, tmp_path):
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        with pytest.raises(errors.ServiceError, match="^RuntimeError: the service broke$"):
            client.request(FAIL, timeout=5.0)
        assert client.request(ECHO, b"still here", timeout=5.0) == b"still here"
        with pytest.raises(errors.ServiceError, match="^bad response from the service"):
            client.request(BAD_RESPONSE, timeout=5.0)
        assert client.request(ECHO, b"and here", timeout=5.0) == b"and here"


def test_request_timeout_then_late_answer_is_discarded(running, tmp_path):
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        with pytest.raises(errors.Timeout):
            client.request(NO_REPLY, timeout=0.1)
        assert client.request(ECHO, b"next", timeout=5.0) == b"next"


def test_request_parts_arrive_as_one_payload(running, tmp_path, service):
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        parts = [b"head", memoryview(b"-middle-"), bytearray(b"tail" * 1000)]
        assert client.request_parts(ECHO, parts, timeout=5.0) == b"".join(parts)
        assert client.request_parts(ECHO, [], timeout=5.0) == b""
        with pytest.raises(errors.MessageTooLarge):
            client.request_parts(ECHO, [b"x" * client.max_message_size, b"y"], timeout=5.0)
        assert client.request(ECHO, b"still served", timeout=5.0) == b"still served"
        assert client.stats().requests == 3


def test_oversized_request_fails_before_sending(running, tmp_path, service):
    with IpcClient.connect("test", run_dir=tmp_path, max_message_size=1000) as client:
        assert client.max_message_size == 1000
        before = running.stats().requests
        with pytest.raises(errors.MessageTooLarge, match="1001 bytes exceeds the agreed maximum of 1000"):
            client.request(ECHO, b"x" * 1001, timeout=5.0)
        assert client.request(ECHO, b"x" * 1000, timeout=5.0) == b"x" * 1000
        assert running.stats().requests == before + 1


def test_deferred_wake_ups_are_rung_before_the_server_sleeps(tmp_path, service):
    # A server that holds wake-ups (defer_wakes) still answers clients that
    # sleep on their rings: serve_forever rings them before it waits.
    server = IpcServer(tmp_path, [service], ring_size=1 << 16, defer_wakes=True)
    with ServerThread(server):
        with IpcClient.connect("test", run_dir=tmp_path, timeout=5.0) as client:
            # A held wake-up never rung would leave each answer to the
            # client's own re-check after its sleep (0.2 s here): 20 round
            # trips would take 4 s instead of milliseconds.
            started = time.monotonic()
            for index in range(20):
                payload = b"x%d" % index
                assert client.request(ECHO, payload, timeout=0.2) == payload
            assert time.monotonic() - started < 2.0
            client.request(EVENTS, b"3", timeout=5.0)
            got = []
            deadline = time.monotonic() + 5.0
            while len(got) < 3 and time.monotonic() < deadline:
                client.dispatch(lambda function, payload: got.append(bytes(payload)), timeout=1.0)
            assert len(got) == 3


def test_events_through_poll_dispatch_and_iterator(running, tmp_path):
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        poller = select.poll()
        poller.register(client.fileno(), select.POLLIN)
        assert poller.poll(0) == []
        assert client.request(EVENTS, b"5", timeout=5.0) == b"ok"
        assert poller.poll(5000) != []
        seen = []
        assert client.dispatch(lambda function, payload: seen.append((function, bytes(payload)))) == 5
        assert seen == [(index, str(index).encode()) for index in range(5)]
        assert poller.poll(0) == []  # drained and re-armed
        client.request(EVENTS, b"3", timeout=5.0)
        assert [function for function, _payload in client.events(timeout=0.5)] == [0, 1, 2]


def test_events_are_counted_however_they_are_read(running, tmp_path):
    """stats().events counts dispatch, the iterator and zero-copy peeks of the
    event ring alike, and only the events handed out (not a whole parsed frame)."""
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        assert client.stats().events == 0
        client.request(EVENTS, b"4", timeout=5.0)
        assert wait_for(lambda: client.event_ring.readable())
        with client.event_ring.peek_batch(max_count=3) as views:
            assert len(views) == 3
        assert client.stats().events == 3
        assert client.dispatch(lambda function, payload: None) == 1
        assert client.stats().events == 4
        client.request(EVENTS, b"2", timeout=5.0)
        assert len(list(client.events(timeout=0.2))) == 2
        assert client.stats().events == 6
        with pytest.raises(errors.WouldBlock):
            with client.event_ring.peek_batch():
                pass
        assert client.stats().events == 6
    assert client.stats().events == 6  # still readable once closed


def test_rearm_events_makes_fileno_readable_for_a_ring_reader(running, tmp_path):
    """A caller that reads the event ring itself re-arms with rearm_events():
    fileno() turns readable for the next event, or at once if one waits."""
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        poller = select.poll()
        poller.register(client.fileno(), select.POLLIN)
        for count in (b"2", b"1"):
            client.request(EVENTS, count, timeout=5.0)
            assert poller.poll(5000) != []
            with client.event_ring.peek_batch() as views:
                assert len(views) == int(count)
            client.rearm_events()  # drains the doorbell and arms it again
            assert poller.poll(0) == []
        client.request(EVENTS, b"1", timeout=5.0)
        assert poller.poll(5000) != []
        client.rearm_events()  # an event still waits: readable at once
        assert poller.poll(0) != []
    with pytest.raises(errors.NotConnected):
        client.rearm_events()


def test_unknown_service_and_missing_server(running, tmp_path):
    with pytest.raises(errors.NotConnected, match="no coroipc server for 'nothing'"):
        IpcClient.connect("nothing", run_dir=tmp_path)
    # A handshake naming another service on this socket is refused.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path(tmp_path, "test"))
        sock.sendall(codec.encode_handshake(codec.Hello(service="other")))
        version, kind, length = codec.decode_header(sock.recv(codec.HEADER_BYTES))
        refusal = codec.decode_handshake(version, kind, sock.recv(length))
    assert refusal == codec.Refuse(code=codec.RefuseCode.UNKNOWN_SERVICE, reason="no service 'other' here")


def test_protocol_version_mismatch_is_refused(running, tmp_path, resource_tag):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path(tmp_path, "test"))
        sock.sendall(codec.encode_handshake(codec.Hello(service="test", version=99)))
        version, kind, length = codec.decode_header(sock.recv(codec.HEADER_BYTES))
        refusal = codec.decode_handshake(version, kind, sock.recv(length))
    assert refusal.code is codec.RefuseCode.VERSION_MISMATCH
    assert refusal.reason == "client speaks coroipc protocol version 99, this server speaks 1"
    assert _tagged_segments(resource_tag) == []


def test_garbage_handshake_is_dropped_and_server_keeps_serving(running, tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path(tmp_path, "test"))
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = sock.recv(4096)
        assert codec.decode_header(reply)[1] is codec.Kind.REFUSE
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        assert client.request(ECHO, b"ok", timeout=5.0) == b"ok"
    assert running.stats().handshakes_failed >= 1


def test_refused_by_uid(tmp_path):
    server = IpcServer(tmp_path, [TestService()], allowed_uids={os.getuid() + 4242})
    with ServerThread(server):
        with pytest.raises(errors.Refused, match=rf"^test: uid {os.getuid()} gid {os.getgid()} \(pid \d+\) may not") as refusal:
            IpcClient.connect("test", run_dir=tmp_path)
        assert refusal.value.code == codec.RefuseCode.NOT_ALLOWED
        assert server.stats().refused == 1
    assert IpcServer(tmp_path, [TestService()], allowed_gids={os.getgid()}).allowed_gids == {os.getgid()}


def test_segments_have_mode_0600_while_they_exist(running, tmp_path, resource_tag):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path(tmp_path, "test"))
        sock.sendall(codec.encode_handshake(codec.Hello(service="test")))
        data, ancillary, _flags, _address = sock.recvmsg(4096, socket.CMSG_SPACE(9 * 4))
        version, kind, length = codec.decode_header(data)
        accept = codec.decode_handshake(version, kind, data[codec.HEADER_BYTES:codec.HEADER_BYTES + length])
        for _level, _type, payload in ancillary:
            for fd in struct.unpack(f"{len(payload) // 4}i", payload):
                os.close(fd)
        assert len(accept.ring_names) == 3
        for name in accept.ring_names:
            assert resource_tag in name
            info = os.stat("/dev/shm" + name)
            assert stat.S_IMODE(info.st_mode) == 0o600
            assert info.st_uid == os.getuid()
    # The client went away before READY: the server removes the segments.
    assert wait_for(lambda: _tagged_segments(resource_tag) == [])


def test_slow_event_reader_is_bounded_then_disconnected(tmp_path, service):
    server = IpcServer(tmp_path, [service], event_ring_size=4096, event_backlog_messages=8,
                       event_stall_timeout_s=0.5)
    with ServerThread(server):
        with IpcClient.connect("test", run_dir=tmp_path) as slow, IpcClient.connect("test", run_dir=tmp_path) as busy:
            accepted = int(slow.request(FLOOD, timeout=5.0))
            in_ring = 4096 // 144  # 116-byte messages take 144-byte frames
            assert accepted == in_ring + 8  # the ring, then the bounded backlog; then WouldBlock
            assert service.refusals == 1
            start = time.monotonic()
            while time.monotonic() - start < 0.8:  # the other client is served all along
                assert busy.request(ECHO, b"busy", timeout=2.0) == b"busy"
            with pytest.raises(errors.ConnectionLost, match="read no events for 0.5 s"):
                for _ in range(100):
                    slow.request(ECHO, b"slow", timeout=2.0)
                    time.sleep(0.05)
            assert busy.request(ECHO, b"busy", timeout=2.0) == b"busy"
    assert server.stats().disconnects.get("stalled") == 1


def test_reader_that_catches_up_is_not_disconnected(tmp_path, service):
    server = IpcServer(tmp_path, [service], event_ring_size=4096, event_backlog_messages=8,
                       event_stall_timeout_s=2.0)
    with ServerThread(server):
        with IpcClient.connect("test", run_dir=tmp_path) as client:
            accepted = int(client.request(FLOOD, timeout=5.0))
            received = 0
            deadline = time.monotonic() + 10
            while received < accepted and time.monotonic() < deadline:
                received += client.dispatch(lambda function, payload: None, timeout=0.5)
            assert received == accepted
            assert client.request(ECHO, b"fine", timeout=5.0) == b"fine"


def test_corrupted_request_ring_closes_only_that_connection(running, tmp_path, service):
    with IpcClient.connect("test", run_dir=tmp_path) as bad, IpcClient.connect("test", run_dir=tmp_path) as good:
        bad.request_ring._mmap[0:4] = b"\xde\xad\xbe\xef"  # the header's magic
        with pytest.raises(errors.ConnectionLost, match="request ring corrupted: bad ring magic"):
            bad.request(ECHO, b"x", timeout=5.0)
        assert good.request(ECHO, b"y", timeout=5.0) == b"y"
    assert running.stats().disconnects.get("corrupted") == 1


def test_impossible_record_length_closes_only_that_connection(running, tmp_path):
    with IpcClient.connect("test", run_dir=tmp_path) as bad, IpcClient.connect("test", run_dir=tmp_path) as good:
        from coroipc._ring_layout import FRAME_CHECK, HEADER_SIZE, KIND_DATA

        ring = bad.request_ring
        # A frame whose header checks out but whose one length (10**6) is not
        # the frame's payload (16), published as the writer would.
        frame_start = HEADER_SIZE + ring._wpos % ring.capacity
        struct.pack_into("<IIIII", ring._mmap, frame_start, KIND_DATA, 1, 16, KIND_DATA ^ 1 ^ 16 ^ FRAME_CHECK, 10**6)
        ring._wpos += 48
        ring._publish_write()
        with pytest.raises(errors.ConnectionLost, match="corrupted"):
            bad.request(ECHO, b"x", timeout=5.0)
        assert good.request(ECHO, b"y", timeout=5.0) == b"y"


def test_asyncio_attach(tmp_path, service):
    server = IpcServer(tmp_path, [service])

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        detach = server.attach(loop)
        try:
            client = await loop.run_in_executor(None, lambda: IpcClient.connect("test", run_dir=tmp_path))
            try:
                return await loop.run_in_executor(None, lambda: client.request(ECHO, b"async", timeout=5.0))
            finally:
                client.close()
        finally:
            detach()

    try:
        assert asyncio.run(main()) == b"async"
    finally:
        server.close()


def test_second_server_on_same_socket_is_refused(running, tmp_path):
    with pytest.raises(errors.IpcError, match="already listening"):
        IpcServer(tmp_path, [TestService()]).start()


def test_post_is_one_way_and_respond_later_answers(running, tmp_path, service):
    import threading

    from tests.coroipc.services import DEFER, RELEASE

    with IpcClient.connect("test", run_dir=tmp_path) as waiter, IpcClient.connect("test", run_dir=tmp_path) as poster:
        answers = []
        thread = threading.Thread(target=lambda: answers.append(waiter.request(DEFER, timeout=10.0)))
        thread.start()
        assert wait_for(lambda: len(service.deferred) == 1)
        poster.post(RELEASE, b"go")
        thread.join(timeout=10)
        assert answers == [b"later:go"]
        assert service.posted == [b"go"]
        # The posted message got no response: the next answer is the next request's.
        assert poster.request(ECHO, b"after", timeout=5.0) == b"after"
        assert poster.stats().stale_responses == 0


def test_stats_are_frozen_snapshots(running, tmp_path, service):
    with IpcClient.connect("test", run_dir=tmp_path) as client:
        client.request(ECHO, b"x", timeout=5.0)
        assert wait_for(lambda: service.connected and service.connected[0].stats().responses == 1)
        conn_stats = service.connected[0].stats()
        assert (conn_stats.requests, conn_stats.uid, conn_stats.service) == (1, os.getuid(), "test")
        with pytest.raises(AttributeError):
            conn_stats.requests = 5
        assert running.stats().connections == 1
        assert client.stats().requests == 1


def test_connect_disconnect_cycles_leak_no_descriptors(running, tmp_path, service):
    def open_descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    with IpcClient.connect("test", run_dir=tmp_path) as warm_up:  # lazily created sockets exist from here
        warm_up.request(ECHO, b"x", timeout=5.0)
    assert wait_for(lambda: running.stats().connections == 0)
    before = open_descriptors()
    for _ in range(30):
        with IpcClient.connect("test", run_dir=tmp_path) as client:
            client.request(EVENTS, b"2", timeout=5.0)
    assert wait_for(lambda: running.stats().connections == 0)
    assert open_descriptors() == before
    assert wait_for(lambda: len(service.disconnected) == 31)


def test_group_policy_admits_by_gid(tmp_path):
    server = IpcServer(tmp_path, [TestService()], allowed_uids={os.getuid() + 4242}, allowed_gids={os.getgid()})
    with ServerThread(server):
        with IpcClient.connect("test", run_dir=tmp_path) as client:
            assert client.request(ECHO, b"by group", timeout=5.0) == b"by group"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="chowning a segment to another user needs root")
def test_segments_are_chowned_to_the_client_when_root():
    from coroipc import Ring

    with Ring.create(4096, owner=(65534, 65534)) as ring:
        info = os.stat("/dev/shm" + ring.name)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o600)


def test_client_that_corrupts_its_event_ring_positions_is_dropped_alone(running, tmp_path):
    from coroipc._ring_layout import R_POS

    with IpcClient.connect("test", run_dir=tmp_path) as bad, IpcClient.connect("test", run_dir=tmp_path) as good:
        bad.event_ring._words[R_POS] = 1 << 40  # claims to have read more than was ever written
        with pytest.raises(errors.ConnectionLost, match="event ring unusable"):
            bad.request(FLOOD, timeout=5.0)
        assert good.request(ECHO, b"fine", timeout=5.0) == b"fine"


def test_request_above_the_agreed_size_written_behind_the_clients_back(running, tmp_path):
    from coroipc._wire import put_message

    with IpcClient.connect("test", run_dir=tmp_path, max_message_size=100) as sneaky:
        put_message(sneaky.request_ring, ECHO, 0, 1, b"x" * 200)  # bypasses request()'s check
        with pytest.raises(errors.ConnectionLost, match="exceeds the agreed 100"):
            sneaky.request(ECHO, b"y", timeout=5.0)


def test_client_events_through_asyncio_add_reader(running, tmp_path):
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        seen: list[int] = []
        enough = asyncio.Event()
        with IpcClient.connect("test", run_dir=tmp_path) as client:
            def on_readable() -> None:
                client.dispatch(lambda function, payload: seen.append(function))
                if len(seen) >= 3:
                    enough.set()

            loop.add_reader(client.fileno(), on_readable)
            try:
                assert client.request(EVENTS, b"3", timeout=5.0) == b"ok"
                await asyncio.wait_for(enough.wait(), 5.0)
            finally:
                loop.remove_reader(client.fileno())
        return seen

    assert asyncio.run(main()) == [0, 1, 2]


def test_silent_client_is_dropped_after_the_handshake_timeout(tmp_path):
    server = IpcServer(tmp_path, [TestService()], handshake_timeout_s=0.3)
    with ServerThread(server):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(socket_path(tmp_path, "test"))
            start = time.monotonic()
            data = sock.recv(4096)
            version, kind, length = codec.decode_header(data)
            refusal = codec.decode_handshake(version, kind, data[codec.HEADER_BYTES:codec.HEADER_BYTES + length])
            assert refusal.reason == "no handshake within 0.3 s"
            assert sock.recv(4096) == b""  # then closed
            assert 0.2 < time.monotonic() - start < 5.0
        assert server.stats().handshakes_failed == 1
