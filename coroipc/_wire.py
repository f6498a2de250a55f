"""Socket and ring plumbing shared by the server and the client.

Handshake frames go over the Unix socket (with descriptors as SCM_RIGHTS);
messages go into rings behind a 16-byte header (see :mod:`coroipc.codec`).
"""

from __future__ import annotations

import array
import os
import socket
import struct
import time

from coroipc import codec
from coroipc.errors import ConnectionLost, ProtocolError, Timeout
from coroipc.ring import Ring

__all__ = ["send_handshake", "recv_handshake", "HandshakeBuffer", "put_message", "put_message_parts",
           "pack_header", "peer_credentials"]

_CREDENTIALS = struct.Struct("3i")
#: The 16-byte header of a ring message: pack_header(function, status, id).
pack_header = codec.MESSAGE_HEADER.pack
_pack_header = pack_header
#: ACCEPT carries, per ring, its segment and its two eventfd doorbells.
FDS_PER_RING = 3
_MAX_FDS = 3 * FDS_PER_RING


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    pid, uid, gid = _CREDENTIALS.unpack(raw)
    return pid, uid, gid


def send_handshake(sock: socket.socket, message: codec.Handshake, fds: tuple[int, ...] = ()) -> None:
    """Send one handshake frame, with ``fds`` attached as SCM_RIGHTS.

    Raises:
        OSError: the socket is gone or (non-blocking) full.
    """
    data = codec.encode_handshake(message)
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sent = sock.sendmsg([data], ancillary)
    if sent != len(data):  # a small frame on a fresh socket: a short send means trouble
        raise ConnectionLost(f"short handshake send ({sent} of {len(data)} bytes)")


class HandshakeBuffer:
    """Incremental decoder for handshake frames arriving in pieces."""

    def __init__(self) -> None:
        self._data = bytearray()
        self.fds: list[int] = []

    def feed(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > codec.HEADER_BYTES + codec.MAX_BODY_BYTES:
            raise ProtocolError("handshake frame too long")

    def next_message(self) -> tuple[int, codec.Handshake] | None:
        """(version, message) once a whole frame is in, else None. Raises ProtocolError."""
        if len(self._data) < codec.HEADER_BYTES:
            return None
        version, kind, length = codec.decode_header(bytes(self._data[: codec.HEADER_BYTES]))
        end = codec.HEADER_BYTES + length
        if len(self._data) < end:
            return None
        body = bytes(self._data[codec.HEADER_BYTES:end])
        del self._data[:end]
        return version, codec.decode_handshake(version, kind, body)

    def close_fds(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fds.clear()


def recv_handshake(sock: socket.socket, buffer: HandshakeBuffer, deadline: float) -> codec.Handshake:
    """Blocking read of the next handshake frame (client side), collecting fds.

    Raises:
        Timeout: nothing complete before ``deadline`` (monotonic seconds).
        ConnectionLost: the server closed the socket.
        ProtocolError: a malformed frame.
    """
    while True:
        found = buffer.next_message()
        if found is not None:
            return found[1]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("timed out waiting for the server's handshake reply")
        sock.settimeout(remaining)
        try:
            data, ancillary, _flags, _address = sock.recvmsg(4096, socket.CMSG_SPACE(_MAX_FDS * 4))
        except socket.timeout:
            raise Timeout("timed out waiting for the server's handshake reply") from None
        except OSError as error:
            raise ConnectionLost(f"handshake failed: {error}") from None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                buffer.fds.extend(fds)
        if not data:
            raise ConnectionLost("the server closed the connection during the handshake")
        buffer.feed(data)


def put_message(ring: Ring, function: int, status: int, ident: int, payload) -> None:
    """Write one header + payload message into ``ring`` without blocking (one copy).

    Raises:
        WouldBlock, MessageTooLarge, ConnectionLost, NotConnected: as the ring's.
    """
    ring.write_prefixed_nowait(_pack_header(function, status, ident), payload)


def put_message_parts(ring: Ring, function: int, status: int, ident: int, parts, size: int) -> None:
    """Like :func:`put_message` for a payload given as the buffers ``parts``
    (``size`` bytes in all), copied into the ring one after the other.

    Raises:
        ValueError: the parts do not add up to ``size`` (nothing written).
        Others as :func:`put_message`.
    """
    ring.write_gather_nowait(_pack_header(function, status, ident), parts, size)


def parse_message(view) -> tuple[int, int, int]:
    """(function, status, id) of a ring message; raises ProtocolError if too short."""
    if len(view) < 16:
        raise ProtocolError(f"ring message of {len(view)} bytes is shorter than its 16-byte header")
    return codec.MESSAGE_HEADER.unpack_from(view)
