"""The handshake codec: round trips, and garbage only ever raises ProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from coroipc import codec, errors
from coroipc._wire import HandshakeBuffer

MESSAGES = [
    codec.Hello(service="cmap", request_ring_bytes=1 << 16, response_ring_bytes=8192, event_ring_bytes=4096,
                max_message_bytes=1000, flags=0),
    codec.Accept(connection_id=7, server_pid=1234, request_ring_bytes=4096, response_ring_bytes=4096,
                 event_ring_bytes=4096, max_message_bytes=2008, ring_names=("/coro-a", "/coro-b", "/coro-c")),
    codec.Refuse(code=codec.RefuseCode.NOT_ALLOWED, reason="uid 1000 may not"),
    codec.Ready(),
    codec.Goodbye(code=codec.RefuseCode.STALLED, reason="read no events for 10 s"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda message: type(message).__name__)
def test_round_trip_in_pieces(message):
    data = codec.encode_handshake(message)
    assert data[:4] == b"CIPC" and data[4:6] == b"\x00\x01"  # magic, version 1 big-endian
    buffer = HandshakeBuffer()
    for index in range(len(data)):
        assert buffer.next_message() is None
        buffer.feed(data[index:index + 1])
    assert buffer.next_message() == (codec.PROTOCOL_VERSION, message)


@pytest.mark.parametrize("data, reason", [
    (b"XXXX\x00\x01\x00\x01\x00\x00\x00\x00", "bad handshake magic"),
    (b"CIPC\x00\x01\x00\x09\x00\x00\x00\x00", "unknown handshake message kind 9"),
    (b"CIPC\x00\x01\x00\x01\x00\x01\x00\x00", "exceeds 1024"),
])
def test_bad_headers(data, reason):
    with pytest.raises(errors.ProtocolError, match=reason):
        codec.decode_header(data)


def test_other_version_is_rejected_except_in_hello():
    with pytest.raises(errors.ProtocolError, match="version 2"):
        codec.decode_handshake(2, codec.Kind.READY, b"")
    hello = codec.Hello(service="x", version=2)
    assert codec.decode_handshake(2, codec.Kind.HELLO, codec.encode_handshake(hello)[12:]) == hello


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(list(codec.Kind)))
def test_garbage_bodies_raise_only_protocol_error(body, kind):
    try:
        codec.decode_handshake(codec.PROTOCOL_VERSION, kind, body)
    except errors.ProtocolError:
        pass
