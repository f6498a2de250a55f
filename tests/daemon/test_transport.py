"""UDP transports on loopback (udpu) and in a private network namespace (udp multicast)."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from totemd.transport import TransportError, UdpTransport, socket_buffer_bytes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _receive(transport: UdpTransport, count: int, timeout_s: float = 5.0) -> list[tuple[bytes, str]]:
    got: list[tuple[bytes, str]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        select.select([transport.fileno()], [], [], 0.1)
        got += transport.receive_batch()
    return got


def test_socket_buffer_bytes_covers_windows_of_frames():
    assert socket_buffer_bytes(50, 1500) == 4 * 50 * 1500
    with pytest.raises(ValueError, match=r"^window_size \(0\) and netmtu \(1500\) must be positive$"):
        socket_buffer_bytes(0, 1500)


def test_udpu_unicast_and_multicast_fan_out_on_loopback():
    port = _free_port()
    peers = {1: "127.0.0.1", 2: "127.0.0.2", 3: "127.0.0.3"}
    transports = [UdpTransport(mode="udpu", bind_address=peers[n], port=port, peers=peers) for n in (1, 2, 3)]
    for transport in transports:
        transport.open()
    try:
        one, two, three = transports
        assert one.unicast(2, b"token")
        assert _receive(two, 1) == [(b"token", "127.0.0.1")]
        one.multicast(b"frame")
        assert _receive(two, 1) == [(b"frame", "127.0.0.1")]
        assert _receive(three, 1) == [(b"frame", "127.0.0.1")]
        # Never to ourselves: the core self-delivers. On loopback a datagram is
        # queued by the send call itself, so a copy to ourselves would be read
        # before node 2's marker, sent after it.
        assert two.unicast(1, b"marker")
        assert _receive(one, 1) == [(b"marker", "127.0.0.2")]
        assert one.stats.packets_sent == 3
        assert two.stats.receive_buffer_bytes >= socket_buffer_bytes(50, 1500)
        assert not one.unicast(9, b"nobody")
    finally:
        for transport in transports:
            transport.close()


def test_udpu_fan_out_survives_a_dead_peer_and_reaches_it_once_it_is_back():
    # Connected per-peer sockets see ICMP port-unreachable as ECONNREFUSED on
    # a later send: that must be a counted lost packet, never an exception,
    # and must not stop the frames to the other peers.
    port = _free_port()
    peers = {1: "127.0.0.1", 2: "127.0.0.2", 3: "127.0.0.3"}
    one = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=port, peers=peers).open()
    two = UdpTransport(mode="udpu", bind_address="127.0.0.2", port=port, peers=peers).open()
    three = None
    try:
        for index in range(20):
            one.multicast(b"frame%d" % index)
            one.unicast(3, b"token%d" % index)
        got = _receive(two, 20)
        assert [data for data, _source in got] == [b"frame%d" % index for index in range(20)]
        assert all(source == "127.0.0.1" for _data, source in got)
        assert one.stats.packets_sent + one.stats.send_errors == 60
        three = UdpTransport(mode="udpu", bind_address="127.0.0.3", port=port, peers=peers).open()
        received: list[tuple[bytes, str]] = []
        for _ in range(50):
            one.multicast(b"again")
            received = _receive(three, 1, timeout_s=0.1)
            if received:
                break
        assert received == [(b"again", "127.0.0.1")]
    finally:
        for transport in (one, two, three):
            if transport is not None:
                transport.close()


def test_udpu_drops_packets_from_outside_the_nodelist():
    port = _free_port()
    with UdpTransport(mode="udpu", bind_address="127.0.0.1", port=port, peers={1: "127.0.0.1"}) as node:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind(("127.0.0.9", 0))
            stranger.sendto(b"garbage", ("127.0.0.1", port))
        deadline = time.monotonic() + 5
        while node.stats.dropped_unknown_source == 0 and time.monotonic() < deadline:
            select.select([node.fileno()], [], [], 0.1)
            assert node.receive_batch() == []
        assert node.stats.dropped_unknown_source == 1


def test_bind_failure_names_the_address():
    port = _free_port()
    with UdpTransport(mode="udpu", bind_address="127.0.0.1", port=port) as first:
        assert first.fileno() >= 0
        with pytest.raises(TransportError, match=rf"^cannot bind 127\.0\.0\.1:{port}: "):
            UdpTransport(mode="udpu", bind_address="127.0.0.1", port=port).open()


def test_unknown_mode_and_missing_group_are_clear_errors():
    with pytest.raises(TransportError, match=r"^transport 'knet' is not one of udpu, udp$"):
        UdpTransport(mode="knet", bind_address="127.0.0.1", port=0).open()
    with pytest.raises(TransportError, match=r"^transport udp needs a multicast group"):
        UdpTransport(mode="udp", bind_address="127.0.0.1", port=0).open()


MULTICAST_SCRIPT = textwrap.dedent(
    """
    import select, sys, time
    from totemd.transport import UdpTransport
    port = 5405
    a = UdpTransport(mode="udp", bind_address="127.0.0.1", port=port, multicast_group="239.192.7.7").open()
    b = UdpTransport(mode="udp", bind_address="127.0.0.2", port=port, multicast_group="239.192.7.7").open()
    a.multicast(b"hello")
    got, deadline = [], time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        select.select([b.fileno()], [], [], 0.1)
        got = b.receive_batch()
    own = []
    deadline = time.monotonic() + 5
    while not a.stats.dropped_own_loopback and time.monotonic() < deadline:
        select.select([a.fileno()], [], [], 0.1)
        own += a.receive_batch()  # until our own looped-back copy is counted as dropped
    print(got, own, a.stats.dropped_own_loopback)
    a.close(); b.close()
    """
)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="udp multicast runs in a private network namespace, which needs root and iproute2")
def test_udp_multicast_in_a_private_namespace():
    name = f"coro-mc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        run = ["ip", "netns", "exec", name]
        subprocess.run(run + ["ip", "link", "set", "lo", "up", "multicast", "on"], check=True, timeout=30)
        subprocess.run(run + ["ip", "route", "add", "224.0.0.0/4", "dev", "lo"], check=True, timeout=30)
        result = subprocess.run(run + [sys.executable, "-c", MULTICAST_SCRIPT], capture_output=True,
                                text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[(b'hello', '127.0.0.1')] [] 1"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)
