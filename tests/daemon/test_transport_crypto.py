"""The transport with totem.crypto_*: every datagram sealed on the way out and
opened on the way in, with GSO sends and GRO reads, on loopback (udpu)."""

from __future__ import annotations

import select
import socket
import time

import pytest

from tests.daemon.test_transport_gso import PEERS, _free_port, _mixed_frames, _receive
from totemd.crypto import CryptoSettings, PacketCrypto
from totemd.transport import UdpTransport

KEY = bytes(range(200))
OTHER_KEY = bytes(range(1, 201))


def _node(node: int, port: int, key: bytes | None = KEY, cipher: str = "aes256",
          **options: object) -> UdpTransport:
    crypto = PacketCrypto(CryptoSettings(cipher, "sha256", key)) if key is not None else None
    return UdpTransport(mode="udpu", bind_address=PEERS[node], port=port, peers=PEERS,
                        crypto=crypto, **options).open()  # type: ignore[arg-type]


@pytest.fixture
def port() -> int:
    return _free_port()


@pytest.mark.parametrize("gso", [True, False])
def test_sealed_frames_and_token_arrive_in_order_batched_as_without_crypto(port, gso):
    one, two, three = (_node(n, port, gso=gso) for n in (1, 2, 3))
    try:
        assert one.stats.crypto_enabled == 1
        frames = _mixed_frames()
        assert one.send_visit(frames, 2, b"token")
        one.multicast(b"one more")
        one.unicast(3, b"to three")
        assert [d for d, _ in _receive(two, len(frames) + 2)] == frames + [b"token", b"one more"]
        assert [d for d, _ in _receive(three, len(frames) + 2)] == frames + [b"one more", b"to three"]
        if gso:
            # Equal frames stay equal once sealed: GSO and GRO still batch them.
            assert one.stats.send_gso_calls > 0 and three.stats.receive_coalesced_reads > 0
        overhead = one.crypto.overhead
        assert one.stats.bytes_sent == (2 * sum(map(len, frames)) + len(b"token") + 2 * len(b"one more")
                                        + len(b"to three") + overhead * one.stats.packets_sent)
        assert two.stats.dropped_crypto == three.stats.dropped_crypto == 0
    finally:
        for transport in (one, two, three):
            transport.close()


def test_a_read_stops_at_a_sealed_token(port):
    one, two, three = (_node(n, port) for n in (1, 2, 3))
    try:
        frames = [b"\x00\x00\x00\x01frame-%d" % i for i in range(3)]
        token = b"\x00\x00\x00\x02tok"
        assert one.send_visit(frames, 2, token)
        assert one.unicast(2, b"\x00\x00\x00\x01later")
        select.select([two.fileno()], [], [], 5)
        assert two.receive_frames(256, None, 2) == frames + [token]
        deadline, rest = time.monotonic() + 5, []
        while not rest and time.monotonic() < deadline:
            select.select([two.fileno()], [], [], 0.1)
            rest += two.receive_frames(256, None, 2)
        assert rest == [b"\x00\x00\x00\x01later"]
    finally:
        for transport in (one, two, three):
            transport.close()


@pytest.mark.parametrize("theirs", [dict(key=OTHER_KEY), dict(cipher="aes128"), dict(key=None)])
def test_datagrams_that_do_not_open_are_counted_and_never_returned(port, theirs):
    """Another key, other settings, or a node in clear: nothing reaches the core."""
    one = _node(1, port, **theirs)  # type: ignore[arg-type]
    two = _node(2, port)
    try:
        frames = [bytes([n]) * 1000 for n in range(10)]
        one.multicast_many(frames)
        one.unicast(2, b"token")
        deadline = time.monotonic() + 5
        got: list = []
        while two.stats.dropped_crypto < len(frames) + 1 and time.monotonic() < deadline:
            select.select([two.fileno()], [], [], 0.1)
            got += two.receive_frames(256)
        assert got == []
        assert two.stats.dropped_crypto == len(frames) + 1
        assert two.stats.packets_received == len(frames) + 1
    finally:
        one.close()
        two.close()


def test_a_flood_of_forged_sessions_is_throttled_and_the_member_still_gets_through(port):
    """Random session ids from a nodelist address: a few key derivations, the
    rest dropped cheaply and counted; node 1's own packets still open."""
    one, two = _node(1, port), _node(2, port)
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert one.unicast(2, b"hello")
        forger.bind((PEERS[1], 0))                      # a member's address, another port
        for session in range(300):
            forger.sendto(bytes((0xC7, 1, 3, 3)) + session.to_bytes(8, "big") + bytes(8)
                          + b"f" * 100, (PEERS[2], port))
        assert one.unicast(2, b"after")
        deadline, got = time.monotonic() + 5, []
        while len(got) < 2 and time.monotonic() < deadline:
            select.select([two.fileno()], [], [], 0.1)
            got += two.receive_frames(256)
        assert got == [b"hello", b"after"]
        assert two.stats.dropped_crypto == 300
        assert 0 < two.stats.dropped_crypto_throttled <= 300 - 1
    finally:
        forger.close()
        one.close()
        two.close()


def test_nothing_of_the_packet_is_on_the_wire_in_clear(port):
    """A plain socket in node 2's place reads what node 1 sends."""
    one = _node(1, port)
    spy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        spy.bind((PEERS[2], port))
        spy.settimeout(5)
        secret = b"SECRET-PAYLOAD-" * 60
        one.multicast_many([secret, secret])
        one.unicast(2, b"TOKEN-IN-CLEAR")
        seen = []
        while len(seen) < 3:
            data = spy.recv(65536)
            for start in range(0, len(data), len(secret) + one.crypto.overhead):
                seen.append(data[start:start + len(secret) + one.crypto.overhead])
        assert all(b"SECRET" not in d and b"TOKEN" not in d for d in seen)
        assert [len(d) for d in seen] == [len(secret) + 36] * 2 + [len(b"TOKEN-IN-CLEAR") + 36]
    finally:
        one.close()
        spy.close()
