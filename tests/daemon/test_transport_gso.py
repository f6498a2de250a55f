"""Batched UDP I/O of the transport: ``multicast_many`` (GSO) and coalesced
reads in ``receive_batch`` (GRO), on loopback (udpu) and in a private
network namespace (udp multicast)."""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import socket
import struct
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.daemon.daemon_helpers import run_in_multicast_namespace
from totemd import transport as transport_module
from totemd.gso import plan_runs, token_joins
from totemd.transport import (
    GRO_MAX_SEGMENTS,
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    SOL_UDP,
    UDP_GRO,
    UdpTransport,
    plan_batches,
    split_coalesced,
)

PEERS = {1: "127.0.0.1", 2: "127.0.0.2", 3: "127.0.0.3"}
SO_NO_CHECK = 11  # Linux: a socket without UDP checksums; the kernel refuses GSO on it


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _receive(transport: UdpTransport, count: int, timeout_s: float = 5.0,
             max_packets: int = 256) -> list[tuple[bytes, str]]:
    got: list[tuple[bytes, str]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        select.select([transport.fileno()], [], [], 0.1)
        got += transport.receive_batch(max_packets)
    return got


def _cluster(**options: object) -> list[UdpTransport]:
    port = _free_port()
    transports = []
    try:
        for node in (1, 2, 3):
            transports.append(UdpTransport(mode="udpu", bind_address=PEERS[node], port=port, peers=PEERS,
                                           **options).open())  # type: ignore[arg-type]
    except BaseException:
        for transport in transports:
            transport.close()
        raise
    return transports


def _mixed_frames() -> list[bytes]:
    """Runs of equal frames longer than GSO_MAX_SEGMENTS, runs closed by a
    shorter frame, single frames between runs, every frame distinct."""
    frames = [bytes([index]) * 1024 for index in range(70)]
    frames += [b"A%03d" % index + b"a" * 1446 for index in range(50)]  # 1450 B: the byte limit cuts it
    frames += [b"short"]
    frames += [b"B%03d" % index + b"b" * 1446 for index in range(3)] + [b"c" * 100]
    frames += [b"lonely" * 30]
    frames += [b"d" * 600, b"e" * 900, b"f" * 900]
    return frames


# -- planning and cutting (pure) -------------------------------------------------------------


def test_plan_batches_groups_equal_runs_closed_by_one_shorter_frame():
    frames = [b"x" * 100] * 3 + [b"y" * 40] + [b"z" * 40] + [b"w" * 200, b"v" * 50, b"u" * 60]
    assert plan_batches(frames) == [(0, 4, 100), (4, 5, 40), (5, 7, 200), (7, 8, 60)]


def test_plan_batches_respects_segment_and_byte_limits():
    assert plan_batches([b"x" * 1000] * 150) == [(0, 64, 1000), (64, 128, 1000), (128, 150, 1000)]
    assert plan_batches([b"x" * 1024] * 70) == [(0, 63, 1024), (63, 70, 1024)]  # 64 KiB > GSO_MAX_BYTES
    per_batch = GSO_MAX_BYTES // 1450
    assert per_batch == 45
    assert plan_batches([b"x" * 1450] * 100) == [(0, 45, 1450), (45, 90, 1450), (90, 100, 1450)]
    # A shorter closing frame that would pass the byte limit starts the next batch.
    frames = [b"x" * 1450] * 45 + [b"y" * 1000]
    assert plan_batches(frames) == [(0, 45, 1450), (45, 46, 1000)]
    assert plan_batches([b"x" * 1000] * 3, max_segments=2) == [(0, 2, 1000), (2, 3, 1000)]


def test_plan_batches_sends_empty_and_oversized_frames_alone():
    big = b"x" * (GSO_MAX_BYTES + 1)
    assert plan_batches([b"x" * 10, b"", b"x" * 10, big, big]) == [
        (0, 1, 10), (1, 2, 0), (2, 3, 10), (3, 4, len(big)), (4, 5, len(big))]
    assert plan_batches([]) == []


def _reference_plan(lengths: list[int], max_segments: int, max_bytes: int) -> list[tuple[int, int, int]]:
    """The planning rule written plainly, frame by frame (no fast path)."""
    batches = []
    start = 0
    while start < len(lengths):
        size, stop, total = lengths[start], start + 1, lengths[start]
        while (0 < size <= max_bytes and stop < len(lengths) and stop - start < max_segments
               and 0 < lengths[stop] <= size and total + lengths[stop] <= max_bytes
               and lengths[stop - 1] == size):
            total += lengths[stop]
            stop += 1
        batches.append((start, stop, size))
        start = stop
    return batches


# Lengths drawn from a few values so that equal runs, shorter closers, empty
# frames and the limits all occur.
_LENGTHS = st.lists(st.sampled_from([0, 1, 7, 100, 1000, 1450, 1451]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(lengths=_LENGTHS, token=st.sampled_from([0, 1, 60, 1450, 1451]),
       max_segments=st.sampled_from([1, 2, 5, 64]), max_bytes=st.sampled_from([1450, 3000, 65473]))
def test_plan_runs_and_token_joins_follow_the_planning_rule(lengths, token, max_segments, max_bytes):
    frames = [b"x" * length for length in lengths]
    runs = plan_runs(frames, max_segments, max_bytes)
    assert [run[:3] for run in runs] == _reference_plan(lengths, max_segments, max_bytes)
    assert plan_batches(frames, max_segments, max_bytes) == [run[:3] for run in runs]
    assert [run[3] for run in runs] == [sum(lengths[start:stop]) for start, stop, _size, _bytes in runs]
    if runs:
        # send_visit plans once: the token either closes the last run or goes alone,
        # exactly as a plan of the frames and the token would have it.
        with_token = _reference_plan(lengths + [token], max_segments, max_bytes)
        last_start, last_stop, last_size, _bytes = runs[-1]
        if token_joins(frames, runs[-1], token, max_segments, max_bytes):
            assert with_token == [run[:3] for run in runs[:-1]] + [(last_start, last_stop + 1, last_size)]
        else:
            assert with_token == [run[:3] for run in runs] + [(len(lengths), len(lengths) + 1, token)]


def _gro(segment: int) -> list[tuple[int, int, bytes]]:
    return [(SOL_UDP, UDP_GRO, struct.pack("=i", segment))]


def test_split_coalesced_cuts_by_segment_size():
    data = b"a" * 100 + b"b" * 100 + b"c" * 30
    assert split_coalesced(data, _gro(100), 0) == [b"a" * 100, b"b" * 100, b"c" * 30]
    assert split_coalesced(b"a" * 300, _gro(100), 0) == [b"a" * 100] * 3
    # No control message: one datagram.
    assert split_coalesced(data, [], 0) == [data]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), segment=st.integers(min_value=1, max_value=400))
def test_split_coalesced_cuts_exactly_like_slicing(data, segment):
    pieces = split_coalesced(data, _gro(segment), 0)
    if len(data) > segment * GRO_MAX_SEGMENTS:
        assert pieces is None
    else:
        assert pieces == [data[offset:offset + segment] for offset in range(0, len(data), segment)]
        assert all(type(piece) is bytes for piece in pieces)


def test_split_coalesced_refuses_what_cannot_be_cut_safely():
    data = b"a" * 300
    assert split_coalesced(data, _gro(0), 0) is None
    assert split_coalesced(data, _gro(-100), 0) is None
    assert split_coalesced(data, [(SOL_UDP, UDP_GRO, b"\x64\x00")], 0) is None  # not an int
    assert split_coalesced(data, _gro(100), socket.MSG_TRUNC) is None
    assert split_coalesced(data, _gro(100), socket.MSG_CTRUNC) is None
    assert split_coalesced(b"x" * (GRO_MAX_SEGMENTS + 1), _gro(1), 0) is None
    assert split_coalesced(b"x" * GRO_MAX_SEGMENTS, _gro(1), 0) == [b"x"] * GRO_MAX_SEGMENTS


# -- udpu on loopback ------------------------------------------------------------------------


def test_multicast_many_delivers_every_frame_in_order_in_few_syscalls():
    one, two, three = _cluster()
    try:
        assert one.stats.gso_enabled == 1 and two.stats.gro_enabled == 1
        frames = _mixed_frames()
        one.multicast_many(frames)
        one.unicast(2, b"token")  # after the batch, on the same socket: arrives after it
        got_two = _receive(two, len(frames) + 1)
        got_three = _receive(three, len(frames))
        assert [data for data, _source in got_two] == frames + [b"token"]
        assert [data for data, _source in got_three] == frames
        assert {source for _data, source in got_two + got_three} == {"127.0.0.1"}
        batches = plan_batches(frames)
        batched = sum(1 for start, stop, _size in batches if stop - start > 1)
        assert one.stats.send_gso_calls == 2 * batched
        assert one.stats.send_calls == 2 * len(batches) + 1
        assert one.stats.packets_sent == 2 * len(frames) + 1
        assert one.stats.bytes_sent == 2 * sum(map(len, frames)) + len(b"token")
        # The receivers read each GSO send as one coalesced read.
        assert three.stats.receive_coalesced_reads == batched
        assert three.stats.receive_reads == len(batches)
        assert three.stats.packets_received == len(frames)
        assert three.stats.bytes_received == sum(map(len, frames))
        assert three.stats.dropped_bad_coalesced == 0
    finally:
        for transport in (one, two, three):
            transport.close()


@pytest.mark.parametrize("gso", [True, False])
def test_send_visit_gives_the_successor_frames_and_token_in_one_send(gso):
    one, two, three = _cluster(gso=gso)
    try:
        visits = ([b"%02d" % index + b"f" * 1398 for index in range(17)],   # one size
                  [b"x" * 1400] * 5 + [b"end" * 100],                      # shorter last
                  [b"alone" * 20],                                         # idle: one frame
                  _mixed_frames())
        for frames in visits:
            before = one.stats.send_calls
            assert one.send_visit(frames, 2, b"token")
            got_two = _receive(two, len(frames) + 1)
            got_three = _receive(three, len(frames))
            assert [data for data, _source in got_two] == frames + [b"token"]
            assert [data for data, _source in got_three] == frames
            calls = one.stats.send_calls - before
            if not gso:
                assert calls == 2 * len(frames) + 1
            else:
                runs = len(plan_batches(frames))
                assert calls == runs + len(plan_batches(frames + [b"token"]))
                if len({len(frame) for frame in frames}) == 1:
                    # Frames of one size: the token rides in the successor's last send.
                    assert calls == 2 * runs
        assert not one.send_visit([b"frame"], 9, b"token")  # unknown successor: frames still go
        assert [data for data, _source in _receive(three, 1)] == [b"frame"]
    finally:
        for transport in (one, two, three):
            transport.close()


def test_send_visit_sends_to_the_successor_first_then_the_others_in_ring_order(monkeypatch):
    # The token's next holder is woken before the peers that only store the
    # frames, and a later peer gets them before the token can reach it.
    peers = {node: f"127.0.0.{node}" for node in range(1, 6)}
    node = UdpTransport(mode="udpu", bind_address=peers[3], port=_free_port(), peers=peers).open()
    try:
        sent: list[tuple[int, list[bytes]]] = []
        monkeypatch.setattr(UdpTransport, "_send_to",
                            lambda _self, entry, batch, _size, _bytes: sent.append((entry[0], list(batch))))
        frames = [b"f" * 1400] * 3
        for successor, order in ((4, [4, 5, 1, 2]), (1, [1, 2, 4, 5]), (4, [4, 5, 1, 2])):
            sent.clear()
            assert node.send_visit(frames, successor, b"token")
            assert [dest for dest, _batch in sent] == order
            assert sent[0][1] == frames + [b"token"]
            assert all(batch == frames for _dest, batch in sent[1:])
    finally:
        node.close()


def test_receive_batch_stops_near_max_packets_and_holds_nothing_back():
    one, two, three = _cluster()
    try:
        frames = [b"%04d" % index + b"x" * 996 for index in range(128)]
        one.multicast_many(frames)
        first = _receive(two, 1, max_packets=10)
        # One coalesced read of 64 frames crossed the limit; all of it is returned.
        assert len(first) == GSO_MAX_SEGMENTS
        rest = _receive(two, len(frames) - len(first), max_packets=10)
        assert [data for data, _source in first + rest] == frames
    finally:
        for transport in (one, two, three):
            transport.close()


def test_gso_off_by_flag_sends_the_same_frames_one_by_one():
    one, two, three = _cluster(gso=False)
    try:
        assert one.stats.gso_enabled == 0
        frames = _mixed_frames()
        one.multicast_many(frames)
        assert [data for data, _source in _receive(two, len(frames))] == frames
        assert [data for data, _source in _receive(three, len(frames))] == frames
        assert one.stats.send_gso_calls == 0
        assert one.stats.send_calls == one.stats.packets_sent == 2 * len(frames)
        assert three.stats.receive_coalesced_reads == 0
    finally:
        for transport in (one, two, three):
            transport.close()


def test_receiver_without_gro_gets_a_gso_batch_as_single_datagrams():
    port = _free_port()
    sender = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=port, peers=PEERS).open()
    plain = UdpTransport(mode="udpu", bind_address="127.0.0.2", port=port, peers=PEERS, gro=False).open()
    try:
        assert plain.stats.gro_enabled == 0
        frames = [b"%03d" % index + b"x" * 1021 for index in range(40)] + [b"tail"]
        sender.multicast_many(frames)
        assert [data for data, _source in _receive(plain, len(frames))] == frames
        # One batch to each of the two peers (node 3 does not listen: its copy is lost).
        assert sender.stats.send_gso_calls == 2
        assert plain.stats.receive_reads == len(frames)
    finally:
        sender.close()
        plain.close()


def test_gso_refused_by_the_kernel_falls_back_for_good_without_losing_frames(caplog):
    one, two, three = _cluster()
    try:
        # The kernel refuses GSO (EINVAL) on a socket with UDP checksums off.
        for connected in one._peer_sockets.values():
            connected.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        frames = _mixed_frames()
        with caplog.at_level(logging.WARNING, logger="totemd.transport"):
            one.multicast_many(frames)
            one.multicast_many(frames)
        want = frames + frames
        assert [data for data, _source in _receive(two, len(want))] == want
        assert [data for data, _source in _receive(three, len(want))] == want
        assert one.stats.send_gso_fallbacks == 1
        assert one.stats.gso_enabled == 0
        assert one.stats.send_gso_calls == 1
        assert one.stats.packets_sent == 2 * len(want)
        assert one.stats.send_errors == 0
        refusals = [record for record in caplog.records if "GSO" in record.getMessage()]
        assert len(refusals) == 1
        assert "Invalid argument" in refusals[0].getMessage()
    finally:
        for transport in (one, two, three):
            transport.close()


def test_send_visit_after_a_gso_refusal_delivers_frames_then_token_one_by_one(caplog):
    one, two, three = _cluster()
    try:
        for connected in one._peer_sockets.values():
            connected.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        frames = [b"%02d" % index + b"v" * 1398 for index in range(12)]
        with caplog.at_level(logging.WARNING, logger="totemd.transport"):
            assert one.send_visit(frames, 2, b"token-1")
            assert one.send_visit(frames, 3, b"token-2")
        assert [data for data, _source in _receive(two, 2 * len(frames) + 1)] == frames + [b"token-1"] + frames
        assert [data for data, _source in _receive(three, 2 * len(frames) + 1)] == frames + frames + [b"token-2"]
        assert one.stats.send_gso_fallbacks == 1 and one.stats.gso_enabled == 0
        assert one.stats.packets_sent == 2 * (2 * len(frames) + 1) and one.stats.send_errors == 0
    finally:
        for transport in (one, two, three):
            transport.close()


def test_without_connected_sockets_unicast_and_send_visit_go_by_sendto(monkeypatch):
    monkeypatch.setattr(transport_module, "connected_socket", lambda *_args: None)
    one, two, three = _cluster()
    try:
        assert not one._peer_sockets
        frames = [b"%02d" % index + b"w" * 1398 for index in range(5)]
        assert one.send_visit(frames, 2, b"token")
        assert one.unicast(3, b"direct")
        assert _receive(two, len(frames) + 1) == [(frame, "127.0.0.1") for frame in frames + [b"token"]]
        assert _receive(three, len(frames) + 1) == [(frame, "127.0.0.1") for frame in frames + [b"direct"]]
        # One GSO send per peer, the token inside node 2's; then the unicast.
        assert (one.stats.send_gso_calls, one.stats.send_calls) == (2, 3)
    finally:
        for transport in (one, two, three):
            transport.close()


def test_gso_unsupported_at_open_means_one_by_one(monkeypatch):
    monkeypatch.setattr(transport_module, "_gso_supported", lambda _sock: False)
    one, two, three = _cluster()
    try:
        assert one.stats.gso_enabled == 0
        frames = [b"x" * 1000] * 10
        one.multicast_many(frames)
        assert [data for data, _source in _receive(two, len(frames))] == frames
        assert one.stats.send_gso_calls == 0 and one.stats.send_calls == 20
    finally:
        for transport in (one, two, three):
            transport.close()


def test_gso_send_to_a_dead_peer_counts_every_frame_as_lost():
    port = _free_port()
    one = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=port, peers=PEERS).open()
    two = UdpTransport(mode="udpu", bind_address="127.0.0.2", port=port, peers=PEERS).open()
    try:
        frames = [b"x" * 1000] * 8
        for _round in range(20):
            one.multicast_many(frames)
        got = _receive(two, 20 * len(frames))
        assert len(got) == 20 * len(frames)
        # Node 3's port is closed: ICMP makes later sends to it fail.
        assert one.stats.send_errors > 0
        assert one.stats.packets_sent + one.stats.send_errors == 2 * 20 * len(frames)
        assert one.stats.send_gso_fallbacks == 0
        assert one.stats.last_send_error.startswith("127.0.0.3: ")
    finally:
        one.close()
        two.close()


class _ScriptedSocket:
    """Stands in for a UDP_GRO socket: recvmsg returns the scripted reads."""

    def __init__(self, reads: list[tuple[bytes, list[tuple[int, int, bytes]], int, tuple[str, int]]]):
        self.reads = list(reads)

    def recvmsg(self, _bufsize: int, _ancbufsize: int):
        if not self.reads:
            raise BlockingIOError(errno.EAGAIN, "no data")
        return self.reads.pop(0)


def test_bad_coalesced_reads_are_counted_and_dropped():
    node = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=_free_port(), peers=PEERS).open()
    try:
        peer = ("127.0.0.2", 5405)
        scripted = _ScriptedSocket([
            (b"a" * 100 + b"b" * 100 + b"c", _gro(100), 0, peer),
            (b"z" * 300, _gro(0), 0, peer),
            (b"z" * 300, [(SOL_UDP, UDP_GRO, b"\x01")], 0, peer),
            (b"z" * 300, _gro(100), socket.MSG_TRUNC, peer),
            (b"z" * 300, _gro(-5), 0, peer),
            (b"single", [], 0, peer),
            (b"q" * 20, _gro(10), 0, ("127.0.0.9", 5405)),  # outside the nodelist
        ])
        frames: list[bytes] = []
        sources: list[str] = []
        node._read_coalesced(scripted.recvmsg, None, 256, frames, sources)
        assert list(zip(frames, sources)) == [(b"a" * 100, "127.0.0.2"), (b"b" * 100, "127.0.0.2"),
                                              (b"c", "127.0.0.2"), (b"single", "127.0.0.2")]
        stats = node.stats
        assert stats.dropped_bad_coalesced == 4
        assert stats.dropped_unknown_source == 2
        assert stats.packets_received == 3 + 1 + 2
        assert stats.receive_reads == 7
        assert stats.receive_coalesced_reads == 2
    finally:
        node.close()


def test_a_gro_read_asks_poll_whether_another_is_waiting_before_reading_again():
    node = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=_free_port(), peers=PEERS).open()
    try:
        peer = ("127.0.0.2", 5405)
        scripted = _ScriptedSocket([(b"a" * 20, _gro(10), 0, peer), (b"b", [], 0, peer), (b"c", [], 0, peer)])
        polls: list[int] = []

        def nothing_waiting(timeout_ms: int) -> list:
            polls.append(timeout_ms)
            return []

        frames: list[bytes] = []
        node._read_coalesced(scripted.recvmsg, nothing_waiting, 256, frames, None)
        # The first read needs no poll (the caller was woken for it); the poll after it said
        # nothing more, so no read failed with EAGAIN and the rest waits for the next call.
        assert frames == [b"a" * 10, b"a" * 10] and polls == [0] and len(scripted.reads) == 2
        node._read_coalesced(scripted.recvmsg, lambda _timeout: [(0, select.POLLIN)], 256, frames, None)
        assert frames == [b"a" * 10, b"a" * 10, b"b", b"c"] and not scripted.reads
        assert node.stats.receive_reads == 3 and node.stats.packets_received == 4
    finally:
        node.close()


def test_receive_frames_gives_what_receive_batch_gives_without_the_sources():
    one, two, three = _cluster()
    outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        outsider.bind(("127.0.0.9", 0))
        for receive in ("receive_frames", "receive_batch"):
            frames = _mixed_frames()
            assert one.send_visit(frames, 2, b"token")
            outsider.sendto(b"intruder", ("127.0.0.2", two.port))
            dropped = two.stats.dropped_unknown_source
            got: list = []
            deadline = time.monotonic() + 5
            while ((len(got) < len(frames) + 1 or two.stats.dropped_unknown_source == dropped)
                   and time.monotonic() < deadline):
                select.select([two.fileno()], [], [], 0.1)
                got += getattr(two, receive)()
            if receive == "receive_batch":
                assert {source for _data, source in got} == {"127.0.0.1"}
                got = [data for data, _source in got]
            assert got == frames + [b"token"]
            assert two.stats.dropped_unknown_source == dropped + 1
    finally:
        outsider.close()
        for transport in (one, two, three):
            transport.close()


def test_receiving_from_a_closed_transport_is_a_clear_error():
    node = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=_free_port(), peers=PEERS).open()
    node.close()
    for receive in (node.receive_frames, node.receive_batch):
        with pytest.raises(transport_module.TransportError, match="not open"):
            receive()


# -- udp multicast in a namespace ------------------------------------------------------------

MULTICAST_SCRIPT = textwrap.dedent(
    """
    import json, select, time
    from totemd.transport import UdpTransport

    def drain(transport, want, timeout_s):
        got, deadline = [], time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            select.select([transport.fileno()], [], [], 0.05)
            got += transport.receive_batch()
        return got

    def drain_own(transport, want_dropped, timeout_s):
        # Until the sender's own looped-back frames are counted as dropped
        # (they come at once), not out a deadline for frames that must never come.
        got, deadline = [], time.monotonic() + timeout_s
        while transport.stats.dropped_own_loopback < want_dropped and time.monotonic() < deadline:
            select.select([transport.fileno()], [], [], 0.05)
            got += transport.receive_batch()
        return got

    group = "239.192.7.9"
    nodes = [UdpTransport(mode="udp", bind_address=f"127.0.0.{n}", port=5405, multicast_group=group,
                          peers={m: f"127.0.0.{m}" for m in (1, 2, 3) if m != n}, gso=(n != 3)).open()
             for n in (1, 2, 3)]
    frames = [bytes([i]) * 1024 for i in range(70)] + [b"s" * 100] + [b"b" * 1450] * 2 + [b"c" * 10]
    result = {"frames": [f.hex() for f in frames]}
    for sender in (nodes[0], nodes[2]):
        sender.multicast_many(frames)
        sender.unicast(2, b"token")
        name = sender.bind_address
        others = [n for n in nodes if n is not sender]
        for node in others:
            got = drain(node, len(frames) + (node is nodes[1]), 5)
            result[f"{name}->{node.bind_address}"] = [[d.hex(), s] for d, s in got]
        result[f"{name}->own"] = len(drain_own(sender, len(frames), 5))
    result["stats"] = [{k: getattr(n.stats, k) for k in ("send_gso_calls", "send_calls",
                        "receive_coalesced_reads", "dropped_own_loopback")} for n in nodes]
    for node in nodes:
        node.close()
    print(json.dumps(result))
    """
)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="udp multicast runs in a private network namespace, which needs root and iproute2")
def test_udp_multicast_many_reaches_the_group_in_order():
    result = run_in_multicast_namespace(MULTICAST_SCRIPT)
    frames = result["frames"]
    for sender, receivers in (("127.0.0.1", ("127.0.0.2", "127.0.0.3")), ("127.0.0.3", ("127.0.0.1", "127.0.0.2"))):
        for receiver in receivers:
            got = result[f"{sender}->{receiver}"]
            want = frames + ([b"token".hex()] if receiver == "127.0.0.2" else [])
            assert [data for data, _source in got] == want, (sender, receiver)
            assert {source for _data, source in got} == {sender}
        assert result[f"{sender}->own"] == 0
    one, two, three = result["stats"]
    # Node 1 sends each batch to the group once (63 + 7 frames of 1 KiB with
    # the 100 B frame closing the second, 2 x 1450 B closed by 10 B) and the
    # token; node 3 (gso=False) once per frame.
    assert (one["send_gso_calls"], one["send_calls"]) == (3, 4)
    assert (three["send_gso_calls"], three["send_calls"]) == (0, len(frames) + 1)
    assert two["receive_coalesced_reads"] == 3
    # The group loops every frame back to its sender, which drops it.
    assert one["dropped_own_loopback"] == len(frames)
    assert three["dropped_own_loopback"] == len(frames)


def test_bench_transport_counts_the_syscalls_of_a_visit():
    from scripts.bench_transport import run_case

    one_by_one = run_case("one-by-one", 1024, 17, duration_s=0.05)
    batched = run_case("batched", 1024, 17, duration_s=0.05)
    assert one_by_one.visits > 0 and batched.visits > 0
    # 17 frames to 2 peers: 34 sends and 34 reads one by one; one GSO send
    # per peer and one coalesced read per peer batched.
    assert (one_by_one.send_calls, one_by_one.receive_reads) == (34, 34)
    assert (batched.send_calls, batched.receive_reads) == (2, 2)


def test_bench_transport_cpu_cases_see_every_segment():
    from scripts.bench_transport import run_cpu_case

    # 10 visits cycle through 13..17 frames (15 on average) and the token.
    for case, segments, methods in (("receive-visit", 16.0, 2), ("receive-token", 1.0, 2),
                                    ("send-visit", 16.0, 1), ("send-token", 1.0, 1)):
        results = run_cpu_case(case, 10)
        assert len(results) == methods, case
        for result in results:
            assert (result.visits, result.segments_per_visit) == (10, segments), result


def test_a_read_stops_at_the_token_and_leaves_what_follows_for_the_next_call():
    """receive_frames(stop_type=T): the token (type byte T at offset 3) ends
    the call; nothing is lost, what follows it comes with the next call."""
    token_type = 2
    frames = [b"\x00\x00\x00\x01frame-%d" % i for i in range(3)]
    token = b"\x00\x00\x00\x02tok"
    after = [b"\x00\x00\x00\x01later-%d" % i for i in range(2)]
    one, two, three = _cluster()
    try:
        assert one.send_visit(frames, 2, token)  # one GSO send: the frames, then the token
        for data in after:
            assert one.unicast(2, data)
        deadline = time.monotonic() + 5
        select.select([two.fileno()], [], [], 5)
        first = two.receive_frames(256, None, token_type)
        assert first == frames + [token]
        rest: list = []
        while len(rest) < len(after) and time.monotonic() < deadline:
            select.select([two.fileno()], [], [], 0.1)
            rest += two.receive_frames(256, None, token_type)
        assert rest == after
    finally:
        for transport in (one, two, three):
            transport.close()


def test_both_readers_stop_after_a_token_they_accept():
    node = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=_free_port(), peers=PEERS).open()
    try:
        peer, stranger = ("127.0.0.2", 5405), ("127.0.0.9", 5405)
        token = b"\x00\x00\x00\x02tok"
        scripted = _ScriptedSocket([(b"\x00\x00\x00\x01" * 2, _gro(4), 0, peer),
                                    (token, [], 0, stranger),  # not from the nodelist: read on
                                    (token, [], 0, peer), (b"next", [], 0, peer)])
        frames: list[bytes] = []
        node._read_coalesced(scripted.recvmsg, None, 256, frames, None, 2)
        assert frames == [b"\x00\x00\x00\x01", b"\x00\x00\x00\x01", token]
        assert [read[0] for read in scripted.reads] == [b"next"]

        plain = [(b"\x00\x00\x00\x01", peer), (token, stranger), (token, peer), (b"next", peer)]

        def recvfrom(_size: int):
            if not plain:
                raise BlockingIOError(errno.EAGAIN, "no data")
            return plain.pop(0)
        frames = []
        node._read_plain(recvfrom, 256, frames, None, 2)
        assert frames == [b"\x00\x00\x00\x01", token] and plain == [(b"next", peer)]
    finally:
        node.close()
