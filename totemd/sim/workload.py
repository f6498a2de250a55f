"""The simulator's application: messages that carry their own identity.

Every message starts with a small header so a receiver can log the EVS
``deliver`` record from the bytes alone (totem.md §1.1)::

    b"W" | u32 node | u32 inc | u32 sseq | u8 safe | u16 deps_len | deps (utf-8, comma-separated)

followed by a body that is a function of the mid, so a corrupted payload
shows up as a CRC mismatch (rule S1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["AppMessage", "encode_message", "decode_message", "SIZES", "SIZE_WEIGHTS"]

_HEADER = struct.Struct("!cIIIBH")
SIZES = (8, 64, 200, 1400, 9000, 70000)
SIZE_WEIGHTS = (30, 30, 15, 15, 7, 3)


@dataclass(frozen=True, slots=True)
class AppMessage:
    """The identity a message carries."""

    node: int
    inc: int
    sseq: int
    safe: bool
    deps: tuple[str, ...]

    @property
    def mid(self) -> str:
        return f"{self.node}.{self.inc}.{self.sseq}"


def encode_message(message: AppMessage, size: int) -> bytes:
    """The bytes of ``message`` padded (with a mid-derived pattern) to ``size``."""
    deps = ",".join(message.deps).encode()
    head = _HEADER.pack(b"W", message.node, message.inc, message.sseq, int(message.safe),
                        len(deps)) + deps
    pad = max(0, size - len(head))
    seed = message.mid.encode() + b"|"
    body = (seed * (pad // len(seed) + 1))[:pad]
    return head + body


def decode_message(data: bytes) -> AppMessage | None:
    """The identity of a delivered message, or None if the bytes are not ours."""
    if len(data) < _HEADER.size:
        return None
    tag, node, inc, sseq, safe, deps_len = _HEADER.unpack_from(data)
    if tag != b"W" or safe > 1 or len(data) < _HEADER.size + deps_len:
        return None
    raw = data[_HEADER.size:_HEADER.size + deps_len]
    try:
        deps = tuple(raw.decode().split(",")) if deps_len else ()
    except UnicodeDecodeError:
        return None
    return AppMessage(node, inc, sseq, bool(safe), deps)
