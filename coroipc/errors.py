"""The coroipc error taxonomy.

Every error coroipc raises on purpose is an :class:`IpcError`. The names say
who is at fault and what state the resource is in, so a caller can decide
without parsing messages:

* local misuse or a closed handle: :class:`NotConnected`,
  :class:`MessageTooLarge`;
* a resource that is busy right now: :class:`WouldBlock`, :class:`Timeout`;
* the other side went away or was refused: :class:`ConnectionLost`,
  :class:`Refused`;
* the other side sent something impossible: :class:`RingCorrupted`,
  :class:`ProtocolError` (the codec's single decode error);
* the service failed while handling a request: :class:`ServiceError`.
"""

from __future__ import annotations

__all__ = [
    "IpcError",
    "NotConnected",
    "ConnectionLost",
    "WouldBlock",
    "Timeout",
    "MessageTooLarge",
    "Refused",
    "RingCorrupted",
    "ProtocolError",
    "ServiceError",
]


class IpcError(Exception):
    """Base class of every error coroipc raises on purpose."""


class NotConnected(IpcError):
    """The handle (ring, client or connection) was closed by this side, or was
    never connected. Using it again is a local programming error."""


class ConnectionLost(IpcError):
    """The peer is gone: its process died, it closed its end, or the server
    disconnected this client (the reason is in the message). Nothing more can
    be sent or received on this connection; reconnect to continue."""


class WouldBlock(IpcError):
    """A non-blocking operation could not proceed now: the ring is full (write)
    or empty (read), or a connection's bounded event backlog is full
    (``send_event``). Retry later, or use the blocking form."""


class Timeout(IpcError, TimeoutError):
    """A blocking operation did not complete within its timeout. The ring or
    connection is still usable."""


class MessageTooLarge(IpcError, ValueError):
    """A message is larger than the ring or connection accepts. Raised before
    anything is written, so the ring or connection is unchanged."""


class Refused(IpcError):
    """The server refused the connection during the handshake: unknown service,
    protocol version mismatch, a uid/gid that is not allowed, or a server that
    is shutting down. The message carries the server's reason and ``code`` its
    :class:`coroipc.codec.RefuseCode` (0 when unknown)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class RingCorrupted(IpcError):
    """A shared ring holds something this side never wrote and cannot be valid:
    a bad magic or layout version in the header, a record with an impossible
    length, positions that run backwards. The ring must be abandoned; the
    server closes only the connection that owns it."""


class ProtocolError(IpcError):
    """A handshake or message header from the peer failed validation (bad
    magic, unknown version, truncated or inconsistent fields). This is the
    codec's single decode error."""


class ServiceError(IpcError):
    """The service raised while handling this request. The connection is
    still usable; ``status`` is the service's error code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
