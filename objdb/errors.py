"""The objdb error taxonomy.

Every error a cmap operation can end in has one class here, and one status
code on the wire (``objdb.codec`` maps between the two), so a client gets the
same exception the store raised, with the same message. All of them derive
from :class:`ObjdbError`; the client adds the connection errors
(:class:`NotConnected`, :class:`ConnectionLost`).

Who is at fault: everything below ``CmapError`` is the caller's request being
refused (a bad key, a value that does not fit, a read-only key); the store
itself is unchanged. :class:`DecodeError` is a malformed message from a peer.
"""

from __future__ import annotations


class ObjdbError(Exception):
    """Base of every objdb and cmap client error."""


class CmapError(ObjdbError):
    """A cmap operation was refused; the store is unchanged.

    The subclass says why; ``status`` is the wire status code for it.
    """

    status: int = 1


class NoSuchKey(CmapError):
    """The key does not exist (get, delete, increment, track delete of an unknown handle)."""

    status = 2


class WrongType(CmapError):
    """The operation does not fit the key's type.

    Raised by a typed get (``get_u32`` on an ``str`` key), by increment or
    decrement of a non-integer key, and by a set that would change an existing
    key's type without ``force_type=True``.
    """

    status = 3


class ReadOnly(CmapError):
    """The key is read-only for this connection (see ``objdb.keys.READ_ONLY_RULES``).

    Only privileged (internal) connections of the node's own processes may
    change such keys.
    """

    status = 4


class TooLong(CmapError):
    """A value is longer than its limit (string or binary over ``MAX_VALUE_BYTES``)."""

    status = 5


class InvalidKey(CmapError):
    """A key name is not 3-255 characters of ``[A-Za-z0-9._/:-]``."""

    status = 6


class InvalidValue(CmapError):
    """A value does not fit its type: out of range, not a number, NUL in a string."""

    status = 7


class InvalidRequest(CmapError):
    """A request was malformed or made no sense (bad flags, unknown type code).

    The daemon counts these; a connection that keeps sending them is dropped.
    """

    status = 8


class LimitReached(CmapError):
    """A per-connection limit was reached (too many trackers or open iterations)."""

    status = 9


class DecodeError(ObjdbError):
    """Bytes from a peer are not a valid cmap message (bad magic, version, length or field).

    Raised only by ``objdb.codec``; the receiver counts it and answers with
    :class:`InvalidRequest` or drops the connection. Never a crash.
    """


class NotConnected(ObjdbError):
    """The client is not connected: it was closed (our own misuse), or at
    ``connect()`` no objdb answered in the run directory (start the node, or
    check ``--run-dir`` / ``CORO_RUN_DIR``)."""


class ConnectionLost(ObjdbError):
    """The objdb daemon went away or dropped this connection (cause in ``__cause__``).

    A tracker that stops reading its events is dropped by the daemon; its next
    call raises this.
    """


class RequestTimeout(ObjdbError):
    """objdb did not answer a request in time (it is wedged or overloaded).

    The connection may still work; a late answer is discarded.
    """


#: status code -> exception class, for the codec.
ERROR_BY_STATUS: dict[int, type[CmapError]] = {
    cls.status: cls
    for cls in (CmapError, NoSuchKey, WrongType, ReadOnly, TooLong, InvalidKey, InvalidValue,
                InvalidRequest, LimitReached)
}
