"""The coroipc wire codec: the handshake on the Unix socket and the message
headers inside the rings. No I/O here; :func:`decode_handshake` validates
everything and raises one error, :class:`~coroipc.errors.ProtocolError`.

Handshake frame (network byte order, on the SOCK_STREAM Unix socket)::

    0  4s   magic          b"CIPC"
    4  u16  version        PROTOCOL_VERSION
    6  u16  kind           HELLO 1, ACCEPT 2, REFUSE 3, READY 4, GOODBYE 5
    8  u32  body length    at most MAX_BODY_BYTES
   12  body (per kind, below)

    HELLO   (client)  u16 flags, u32 request ring, u32 response ring,
                      u32 event ring (bytes, 0 = server default),
                      u32 max message (0 = server default), u8 name length, name
    ACCEPT  (server)  u64 connection id, u32 server pid, u32 request ring,
                      u32 response ring, u32 event ring, u32 max message,
                      3 x (u8 length, segment name); nine descriptors travel
                      with it as SCM_RIGHTS: per ring, in the same order, its
                      segment, its reader's eventfd and its writer's eventfd
    REFUSE  (server)  u16 code, u16 reason length, reason (UTF-8)
    READY   (client)  empty: the client has mapped all three rings
    GOODBYE (server)  u16 code, u16 reason length, reason: why it disconnects

Ring message header (little-endian, the first 16 bytes of every message)::

    0  u32  function       service function code (the event code for events)
    4  i32  status         request: 0, or REQUEST_NO_REPLY (1) for a one-way
                           message; response: 0, or the service's error status
    8  u64  id             request id (echoed in the response); event sequence
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from coroipc.errors import ProtocolError

__all__ = [
    "PROTOCOL_VERSION", "MAGIC", "Kind", "RefuseCode", "Hello", "Accept", "Refuse", "Ready", "Goodbye",
    "encode_handshake", "decode_header", "decode_handshake", "MESSAGE_HEADER", "HEADER_BYTES",
    "MAX_BODY_BYTES", "REQUEST_NO_REPLY",
]

MAGIC = b"CIPC"
PROTOCOL_VERSION = 1
MAX_BODY_BYTES = 1024
HEADER_BYTES = 12
_HEADER = struct.Struct("!4sHHI")
_HELLO = struct.Struct("!HIIIIB")
_ACCEPT = struct.Struct("!QIIIII")
_REASON = struct.Struct("!HH")
MAX_NAME_BYTES = 200
MESSAGE_HEADER = struct.Struct("<IiQ")
#: In a request's status field: the client does not wait for a response.
REQUEST_NO_REPLY = 1


class Kind(enum.IntEnum):
    HELLO = 1
    ACCEPT = 2
    REFUSE = 3
    READY = 4
    GOODBYE = 5


class RefuseCode(enum.IntEnum):
    """Why a server refused or ended a connection (REFUSE and GOODBYE)."""

    UNKNOWN_SERVICE = 1
    VERSION_MISMATCH = 2
    NOT_ALLOWED = 3
    BAD_HANDSHAKE = 4
    TOO_MANY_CONNECTIONS = 5
    SHUTTING_DOWN = 6
    RESOURCES = 7
    STALLED = 8
    CORRUPTED = 9
    PROTOCOL = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    service: str
    request_ring_bytes: int = 0
    response_ring_bytes: int = 0
    event_ring_bytes: int = 0
    max_message_bytes: int = 0
    flags: int = 0
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if not self.service or len(self.service.encode()) > MAX_NAME_BYTES:
            raise ValueError(f"service name {self.service!r} must be 1..{MAX_NAME_BYTES} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept:
    connection_id: int
    server_pid: int
    request_ring_bytes: int
    response_ring_bytes: int
    event_ring_bytes: int
    max_message_bytes: int
    ring_names: tuple[str, str, str]  # request, response, event


@dataclass(frozen=True, slots=True, kw_only=True)
class Refuse:
    code: RefuseCode
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Goodbye:
    code: RefuseCode
    reason: str


Handshake = Hello | Accept | Refuse | Ready | Goodbye


def _text(value: str, limit: int) -> bytes:
    data = value.encode("utf-8", "replace")[:limit]
    return data


def encode_handshake(message: Handshake) -> bytes:
    """Encode one handshake message with its header."""
    kind: Kind
    version = PROTOCOL_VERSION
    if isinstance(message, Hello):
        kind, version = Kind.HELLO, message.version
        name = message.service.encode()
        body = _HELLO.pack(message.flags, message.request_ring_bytes, message.response_ring_bytes,
                           message.event_ring_bytes, message.max_message_bytes, len(name)) + name
    elif isinstance(message, Accept):
        kind = Kind.ACCEPT
        body = _ACCEPT.pack(message.connection_id, message.server_pid, message.request_ring_bytes,
                            message.response_ring_bytes, message.event_ring_bytes, message.max_message_bytes)
        for ring_name in message.ring_names:
            encoded = _text(ring_name, MAX_NAME_BYTES)
            body += bytes([len(encoded)]) + encoded
    elif isinstance(message, (Refuse, Goodbye)):
        kind = Kind.REFUSE if isinstance(message, Refuse) else Kind.GOODBYE
        reason = _text(message.reason, MAX_BODY_BYTES - _REASON.size)
        body = _REASON.pack(int(message.code), len(reason)) + reason
    elif isinstance(message, Ready):
        kind, body = Kind.READY, b""
    else:  # pragma: no cover - the type union is closed
        raise TypeError(f"not a handshake message: {message!r}")
    return _HEADER.pack(MAGIC, version, kind, len(body)) + body


def decode_header(data: bytes) -> tuple[int, Kind, int]:
    """Validate a 12-byte frame header.

    Returns:
        (version, kind, body length). The version is returned, not checked,
        so a server can answer a client of another version with a REFUSE.

    Raises:
        ProtocolError: bad magic, unknown kind, or an oversized body.
    """
    if len(data) < HEADER_BYTES:
        raise ProtocolError(f"handshake header truncated at {len(data)} bytes")
    magic, version, kind, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(f"bad handshake magic {magic!r}")
    try:
        kind = Kind(kind)
    except ValueError:
        raise ProtocolError(f"unknown handshake message kind {kind}") from None
    if length > MAX_BODY_BYTES:
        raise ProtocolError(f"handshake body of {length} bytes exceeds {MAX_BODY_BYTES}")
    return version, kind, length


def _decode_names(body: bytes, offset: int) -> tuple[str, str, str]:
    names = []
    for _ in range(3):
        if offset >= len(body):
            raise ProtocolError("ACCEPT truncated in the ring names")
        length = body[offset]
        raw = body[offset + 1:offset + 1 + length]
        if len(raw) != length or not length:
            raise ProtocolError("ACCEPT has a truncated or empty ring name")
        if not raw.isascii():
            raise ProtocolError("ACCEPT has a ring name that is not ASCII")
        names.append(raw.decode("ascii"))
        offset += 1 + length
    if offset != len(body):
        raise ProtocolError(f"ACCEPT has {len(body) - offset} trailing bytes")
    return names[0], names[1], names[2]


def _decode_reason(body: bytes, kind: Kind) -> Refuse | Goodbye:
    if len(body) < _REASON.size:
        raise ProtocolError(f"{kind.name} truncated")
    code, length = _REASON.unpack_from(body)
    if len(body) != _REASON.size + length:
        raise ProtocolError(f"{kind.name} reason length {length} does not match the body")
    try:
        refuse_code = RefuseCode(code)
    except ValueError:
        raise ProtocolError(f"{kind.name} has unknown code {code}") from None
    reason = body[_REASON.size:].decode("utf-8", "replace")
    cls = Refuse if kind is Kind.REFUSE else Goodbye
    return cls(code=refuse_code, reason=reason)


def decode_handshake(version: int, kind: Kind, body: bytes) -> Handshake:
    """Decode and validate a handshake body (after :func:`decode_header`).

    Raises:
        ProtocolError: any inconsistency: wrong sizes, a bad name, a version
        other than ours for anything but HELLO.
    """
    if kind is not Kind.HELLO and version != PROTOCOL_VERSION:
        raise ProtocolError(f"peer speaks coroipc protocol version {version}, we speak {PROTOCOL_VERSION}")
    if kind is Kind.HELLO:
        if len(body) < _HELLO.size:
            raise ProtocolError("HELLO truncated")
        flags, request, response, event, max_message, name_length = _HELLO.unpack_from(body)
        name = body[_HELLO.size:]
        if len(name) != name_length or not name_length:
            raise ProtocolError("HELLO service name length does not match the body")
        try:
            service = name.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("HELLO service name is not UTF-8") from None
        return Hello(service=service, request_ring_bytes=request, response_ring_bytes=response,
                     event_ring_bytes=event, max_message_bytes=max_message, flags=flags, version=version)
    if kind is Kind.ACCEPT:
        if len(body) < _ACCEPT.size:
            raise ProtocolError("ACCEPT truncated")
        connection_id, pid, request, response, event, max_message = _ACCEPT.unpack_from(body)
        return Accept(connection_id=connection_id, server_pid=pid, request_ring_bytes=request,
                      response_ring_bytes=response, event_ring_bytes=event, max_message_bytes=max_message,
                      ring_names=_decode_names(body, _ACCEPT.size))
    if kind is Kind.READY:
        if body:
            raise ProtocolError("READY carries no body")
        return Ready()
    return _decode_reason(body, kind)
