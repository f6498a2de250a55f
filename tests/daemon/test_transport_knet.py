"""knet mode of the transport (``UdpTransport(link_mtu=...)``): long frames
leave cut into pieces that fit the link MTU and come back whole and in order,
over real sockets on loopback (udpu), with and without crypto, GSO and GRO."""

from __future__ import annotations

import select
import socket
import time

import pytest

from totemd.crypto import CryptoSettings, PacketCrypto
from totemd.linkfrag import FRAGMENT_TYPE, FRAME_MAX_BYTES, HEADER_SIZE, PIECES_MAX, split
from totemd.transport import TransportError, UdpTransport

PEERS = {1: "127.0.0.1", 2: "127.0.0.2"}
TRIO = {1: "127.0.0.1", 2: "127.0.0.2", 3: "127.0.0.3"}
KEY = bytes(range(200))
LINK_MTU = 1500
IPV4_UDP_HEADERS = 28
TOKEN = b"\xc0\x71\x01\x02token"  # an ORF token's type byte (2)

# The transports' variants: plain, sealed, and without GSO and GRO.
OPTIONS = {"plain": {}, "crypto": {"crypto": True}, "no-gso-gro": {"gso": False, "gro": False},
           "crypto-no-gso-gro": {"crypto": True, "gso": False, "gro": False}}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _frame(size: int, tag: int) -> bytes:
    """A Totem-like frame (type byte 1 at offset 3) of ``size`` bytes, unique per tag."""
    head = b"\xc0\x71\x01\x01" + tag.to_bytes(4, "big")
    body = bytes((tag * 31 + index) & 0xFF for index in range(256))
    return (head + body * (size // 256 + 1))[:size]


def _receive(transport: UdpTransport, count: int, timeout_s: float = 2.0) -> list[tuple[bytes, str]]:
    """Up to ``count`` frames, polling until a deadline."""
    got: list[tuple[bytes, str]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        select.select([transport.fileno()], [], [], 0.05)
        got += transport.receive_batch()
    return got


def _nothing_more(transport: UdpTransport, wait_s: float = 0.1) -> list[tuple[bytes, str]]:
    select.select([transport.fileno()], [], [], wait_s)
    return transport.receive_batch()


def _datagram_bound(transport: UdpTransport) -> int:
    overhead = transport.crypto.overhead if transport.crypto is not None else 0
    return LINK_MTU - IPV4_UDP_HEADERS - overhead


def _pieces(frames: list[bytes], bound: int) -> int:
    """How many pieces the frames longer than ``bound`` are cut into."""
    return sum(-(-len(frame) // (bound - HEADER_SIZE)) for frame in frames if len(frame) > bound)


@pytest.fixture
def opened():
    """Opens transports on one free port; closes every one at the end."""
    transports: list[UdpTransport] = []
    port = _free_port()

    def open_node(node: int, peers: dict[int, str] = PEERS, crypto: bool = False,
                  **options: object) -> UdpTransport:
        sealer = PacketCrypto(CryptoSettings("aes256", "sha256", KEY)) if crypto else None
        transport = UdpTransport(mode="udpu", bind_address=peers[node], port=port, peers=peers,
                                 crypto=sealer, node_id=node, **options)  # type: ignore[arg-type]
        transports.append(transport)
        return transport.open()

    yield open_node
    for transport in transports:
        transport.close()


def _check_counters(sender: UdpTransport, receiver: UdpTransport, long_frames: list[bytes],
                    copies: int = 1) -> None:
    """The sender cut each long frame once (the same pieces to every peer);
    the receiver joined each, with nothing dropped or held."""
    pieces = _pieces(long_frames, _datagram_bound(sender))
    assert (sender.stats.frames_split, sender.stats.fragments_sent) == (len(long_frames), pieces)
    stats = receiver.stats
    assert (stats.fragments_received, stats.frames_joined) == (copies * pieces, copies * len(long_frames))
    assert (stats.fragments_malformed, stats.fragments_duplicate, stats.fragment_partials_evicted) == (0, 0, 0)
    assert receiver._reassembler is not None and receiver._reassembler.partial_frames == 0
    assert sender.stats.send_errors == 0


@pytest.mark.parametrize("variant", list(OPTIONS))
def test_multicast_many_delivers_long_and_short_frames_whole_and_in_order(opened, variant):
    options = OPTIONS[variant]
    one = opened(1, link_mtu=LINK_MTU, **options)
    two = opened(2, link_mtu=LINK_MTU, **options)
    assert one.stats.link_mtu == two.stats.link_mtu == LINK_MTU
    bound = _datagram_bound(one)
    # ~130 pieces: well within the receive buffer (net.core.rmem_max) of an idle reader.
    frames = [_frame(60000, 1), _frame(100, 2), _frame(61234, 3), _frame(bound, 4), _frame(bound + 1, 5),
              _frame(65476, 6), _frame(1, 7)]
    long_frames = [frame for frame in frames if len(frame) > bound]
    assert len(long_frames) == 4
    one.multicast_many(frames)
    got = _receive(two, len(frames))
    assert [data for data, _source in got] == frames
    assert {source for _data, source in got} == {"127.0.0.1"}
    assert _nothing_more(two) == []
    _check_counters(one, two, long_frames)
    datagrams = len(frames) - len(long_frames) + _pieces(long_frames, bound)
    assert one.stats.packets_sent == two.stats.packets_received == datagrams
    if options.get("gso", True):
        assert one.stats.send_gso_calls > 0 and one.stats.send_calls < datagrams
    else:
        assert one.stats.send_gso_calls == 0 and one.stats.send_calls == datagrams
    if options.get("gro", True):
        assert two.stats.receive_coalesced_reads > 0
    else:
        assert two.stats.receive_coalesced_reads == 0 and two.stats.receive_reads == datagrams


@pytest.mark.parametrize("variant", list(OPTIONS))
def test_send_visit_gives_the_frames_whole_and_then_the_token(opened, variant):
    options = OPTIONS[variant]
    one, two, three = (opened(node, TRIO, link_mtu=LINK_MTU, **options) for node in (1, 2, 3))
    bound = _datagram_bound(one)
    visits = ([_frame(60000, 1), _frame(60000, 2), _frame(300, 3), _frame(64000, 4)],
              [_frame(100, 5), _frame(200, 6)],                      # nothing to cut
              [_frame(bound + 1, 7)])
    long_frames: list[bytes] = []
    for frames in visits:
        assert one.send_visit(frames, 2, TOKEN)
        # The successor's read stops at the token: everything before it is whole.
        got_two: list[bytes] = []
        deadline = time.monotonic() + 2
        while (not got_two or got_two[-1] != TOKEN) and time.monotonic() < deadline:
            select.select([two.fileno()], [], [], 0.05)
            got_two += two.receive_frames(256, None, TOKEN[3])
        assert got_two == frames + [TOKEN]
        assert [data for data, _source in _receive(three, len(frames))] == frames
        long_frames += [frame for frame in frames if len(frame) > bound]
    assert _nothing_more(two) == [] and _nothing_more(three) == []
    _check_counters(one, two, long_frames)
    _check_counters(one, three, long_frames)
    # An unknown successor: the frames still go, whole.
    lonely = [_frame(50000, 9)]
    assert not one.send_visit(lonely, 9, TOKEN)
    assert [data for data, _source in _receive(three, 1)] == lonely


def test_a_token_longer_than_a_datagram_is_cut_too_and_comes_last(opened):
    one = opened(1, link_mtu=LINK_MTU)
    two = opened(2, link_mtu=LINK_MTU)
    frames = [_frame(30000, 1), _frame(10, 2)]
    token = TOKEN + bytes(3000)
    assert one.send_visit(frames, 2, token)
    assert [data for data, _source in _receive(two, 3)] == frames + [token]
    _check_counters(one, two, [frames[0], token])


@pytest.mark.parametrize("variant", list(OPTIONS))
def test_unicast_and_multicast_of_one_long_frame(opened, variant):
    options = OPTIONS[variant]
    one = opened(1, link_mtu=LINK_MTU, **options)
    two = opened(2, link_mtu=LINK_MTU, **options)
    first, second, short = _frame(60000, 1), _frame(FRAME_MAX_BYTES, 2), _frame(500, 3)
    assert one.unicast(2, first)
    assert [data for data, _source in _receive(two, 1)] == [first]
    one.multicast(second)
    one.multicast(short)
    assert [data for data, _source in _receive(two, 2)] == [second, short]
    assert two.unicast(1, first)  # and back
    assert [data for data, _source in _receive(one, 1)] == [first]
    _check_counters(one, two, [first, second])
    # An unknown node: nothing is cut or sent.
    before = (one.stats.frames_split, one.stats.fragments_sent, one.stats.send_calls)
    assert not one.unicast(9, first)
    assert (one.stats.frames_split, one.stats.fragments_sent, one.stats.send_calls) == before
    assert _nothing_more(two) == []


@pytest.mark.parametrize("crypto", [False, True], ids=["plain", "crypto"])
def test_no_datagram_on_the_wire_passes_the_link_mtu(opened, crypto):
    """A plain socket in node 2's place reads what node 1 sends, datagram by datagram."""
    one = opened(1, link_mtu=LINK_MTU, crypto=crypto, gso=False)
    spy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        spy.bind((PEERS[2], one.port))
        spy.settimeout(2)
        frame = _frame(20000, 1)
        one.multicast(frame)
        sizes = [len(spy.recv(65536)) for _ in range(one.stats.packets_sent)]
        assert max(sizes) == LINK_MTU - IPV4_UDP_HEADERS
        assert len(sizes) == one.stats.fragments_sent == _pieces([frame], _datagram_bound(one))
        assert sizes[:-1] == [LINK_MTU - IPV4_UDP_HEADERS] * (len(sizes) - 1)
    finally:
        spy.close()


def test_the_datagram_bound_is_at_most_what_one_udp_datagram_carries(opened):
    one = opened(1, link_mtu=65536)
    two = opened(2, link_mtu=70000)
    whole, cut = _frame(65507, 1), _frame(65508, 2)
    one.multicast_many([whole, cut])
    assert [data for data, _source in _receive(two, 2)] == [whole, cut]
    assert (one.stats.frames_split, one.stats.fragments_sent) == (1, 2)
    assert two.stats.frames_joined == 1


def test_a_transport_without_link_mtu_passes_pieces_through_unjoined(opened):
    plain = opened(1)  # no knet mode: it does not know pieces
    knet = opened(2, link_mtu=LINK_MTU)
    frame = _frame(5000, 1)
    assert knet.unicast(1, frame)
    count = _pieces([frame], _datagram_bound(knet))
    got = [data for data, _source in _receive(plain, count)]
    assert len(got) == count == knet.stats.fragments_sent
    # Each a piece: type FRAGMENT_TYPE, sender node 2, one serial (a random start), index, count.
    serial = got[0][9:13]
    assert [(piece[3], piece[5:9], piece[9:13], piece[13:15], piece[15:17]) for piece in got] == [
        (FRAGMENT_TYPE, (2).to_bytes(4, "big"), serial, index.to_bytes(2, "big"),
         count.to_bytes(2, "big")) for index in range(count)]
    assert b"".join(piece[HEADER_SIZE:] for piece in got) == frame
    assert _nothing_more(plain) == []
    assert plain.stats.link_mtu == plain.stats.fragments_received == plain.stats.frames_joined == 0


def test_pieces_from_two_senders_each_join(opened):
    one, two, three = (opened(node, TRIO, link_mtu=LINK_MTU) for node in (1, 2, 3))
    from_one, from_three = _frame(40000, 1), _frame(40000, 3)
    one.multicast(from_one)
    three.multicast(from_three)
    got = _receive(two, 2)
    assert sorted(got) == sorted([(from_one, "127.0.0.1"), (from_three, "127.0.0.3")])
    assert two.stats.frames_joined == 2 and two.stats.fragments_malformed == 0


@pytest.mark.parametrize("gro", [True, False], ids=["gro", "no-gro"])
def test_the_receiver_keeps_pieces_of_two_sources_apart_and_counts_bad_ones(opened, gro):
    """Two nodelist addresses send interleaved pieces with the same sender
    and serial (two nodes configured with one node id): neither frame mixes
    with the other; a malformed and a duplicate piece are counted, never returned."""
    two = opened(2, TRIO, link_mtu=LINK_MTU, gro=gro)
    first, second = _frame(3000, 1), _frame(3000, 3)
    pieces_one, pieces_three = split(first, 1, 1, 1000), split(second, 1, 1, 1000)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        senders[0].bind((TRIO[1], 0))
        senders[1].bind((TRIO[3], 0))
        destination = (TRIO[2], two.port)
        for piece_one, piece_three in zip(pieces_one[:-1], pieces_three[:-1]):
            senders[0].sendto(piece_one, destination)
            senders[1].sendto(piece_three, destination)
        senders[1].sendto(pieces_three[0], destination)                            # a duplicate
        senders[0].sendto(pieces_one[0][:4] + bytes([1]) + pieces_one[0][5:], destination)  # flags set
        senders[1].sendto(pieces_three[-1], destination)
        senders[0].sendto(pieces_one[-1], destination)
        got = _receive(two, 2)
    finally:
        for sender in senders:
            sender.close()
    assert got == [(second, "127.0.0.3"), (first, "127.0.0.1")]
    stats = two.stats
    assert (stats.fragments_received, stats.frames_joined, stats.fragments_duplicate,
            stats.fragments_malformed) == (len(pieces_one) + len(pieces_three) + 2, 2, 1, 1)
    assert _nothing_more(two) == []


def test_knet_mode_refuses_udp_and_too_small_a_link_mtu():
    with pytest.raises(TransportError, match="udpu only"):
        UdpTransport(mode="udp", bind_address="127.0.0.1", port=0, multicast_group="239.192.7.7",
                     link_mtu=LINK_MTU, node_id=1).open()
    # The smallest link MTU: a frame of netmtu (the transport's 1500 here)
    # must fit PIECES_MAX pieces, so each piece carries at least 2 bytes.
    smallest = IPV4_UDP_HEADERS + HEADER_SIZE + -(-1500 // PIECES_MAX)
    for link_mtu in (0, IPV4_UDP_HEADERS, smallest - 1):
        with pytest.raises(TransportError, match=rf"^link MTU {link_mtu} is too small"):
            UdpTransport(mode="udpu", bind_address="127.0.0.1", port=0, link_mtu=link_mtu, node_id=1).open()
    crypto = PacketCrypto(CryptoSettings("aes256", "sha256", KEY))
    with pytest.raises(TransportError, match="too small"):
        UdpTransport(mode="udpu", bind_address="127.0.0.1", port=0, link_mtu=smallest + crypto.overhead - 1,
                     node_id=1, crypto=crypto).open()
    for link_mtu, sealer in ((smallest, None), (smallest + crypto.overhead, crypto)):
        transport = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=0, link_mtu=link_mtu, node_id=1,
                                 crypto=sealer)
        try:
            transport.open()
            assert transport.stats.link_mtu == link_mtu
        finally:
            transport.close()


def test_knet_mode_refuses_a_link_mtu_too_small_for_netmtu_and_a_missing_node_id():
    with pytest.raises(TransportError, match="more than 1024 pieces"):
        UdpTransport(mode="udpu", bind_address="127.0.0.1", port=0, link_mtu=100, node_id=1,
                     netmtu=65536).open()
    with pytest.raises(TransportError, match="node id"):
        UdpTransport(mode="udpu", bind_address="127.0.0.1", port=0, link_mtu=LINK_MTU).open()


def test_multicast_of_a_long_frame_honours_exclude(opened):
    peers = {1: "127.0.0.1", 2: "127.0.0.2", 3: "127.0.0.3"}
    one = opened(1, peers=peers, link_mtu=LINK_MTU)
    two = opened(2, peers=peers, link_mtu=LINK_MTU)
    three = opened(3, peers=peers, link_mtu=LINK_MTU)
    frame = _frame(5000, 9)
    one.multicast(frame, exclude=[3])
    assert [data for data, _source in _receive(two, 1)] == [frame]
    assert _nothing_more(three) == [] and three.stats.fragments_received == 0
