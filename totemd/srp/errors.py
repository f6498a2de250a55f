"""Errors of the Totem SRP core and its codec.

Only local misuse raises from the core. Bad packets from peers never raise out
of ``SrpCore.receive``: the codec raises ``DecodeError`` and the core counts
and drops the packet.
"""

from __future__ import annotations

__all__ = ["SrpError", "DecodeError", "ParamsError", "NotStarted", "SubmitRejected"]


class SrpError(Exception):
    """Base of every error raised by the Totem SRP package."""


class DecodeError(SrpError, ValueError):
    """Raised by ``totemd.codec.decode`` when a packet is malformed: bad magic,
    unknown version or type, a truncated field, a count that does not match the
    length, or a value out of range. The caller counts it and drops the packet."""


class ParamsError(SrpError, ValueError):
    """Raised by ``TotemParams`` when a timer or constant is out of range or
    inconsistent with another one; the message names the field and the unit."""


class NotStarted(SrpError, RuntimeError):
    """Raised when an event is fed to a core before ``start`` (local misuse)."""


class SubmitRejected(SrpError):
    """Raised by ``SrpCore.submit`` when the message is larger than the maximum
    message size or the send queue is full; the caller may retry later."""
