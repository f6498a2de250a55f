"""The cmap codec's building blocks: the numbers of the wire and its fields.

The header, the protocol's limits and flags, and how a key and a typed value
are written and read (``_Reader``, every read length-checked). The layout is
documented in :mod:`objdb.codec`, which re-exports every name here; the
underscore names are shared only with the other codec modules
(:mod:`objdb.codec_responses`) and a few fast paths of ``clients.cmap``.
"""

from __future__ import annotations

import struct

from objdb.errors import DecodeError
from objdb.store import Entry
from objdb.types import NUMERIC_STRUCTS, Value, ValueType

__all__ = ["MAGIC", "VERSION", "KIND_REQUEST", "KIND_RESPONSE", "KIND_EVENT", "HELLO_INTERNAL",
           "SET_FORCE_TYPE", "MAX_ITERATE_COUNT", "MAX_SET_MANY_COUNT", "MAX_GET_MANY_COUNT",
           "BATCH_BYTES_BUDGET", "REQUEST_HEADER", "RESPONSE_HEADER", "EVENT_HEADER",
           "RESPONSE_OK", "encode_key", "encode_value"]

MAGIC = 0xC3A9
VERSION = 1
KIND_REQUEST = 1
KIND_RESPONSE = 2
KIND_EVENT = 3

HELLO_INTERNAL = 0x1
SET_FORCE_TYPE = 0x1
#: Most entries one ITERATE reply carries.
MAX_ITERATE_COUNT = 1024
#: Most sets one SET_MANY request carries.
MAX_SET_MANY_COUNT = 1024
#: Most keys one GET_MANY request carries.
MAX_GET_MANY_COUNT = 1024
#: Byte budget of an ITERATE reply or a SET_MANY request: they stop growing
#: once past it (one entry may still add up to a maximum value and key), so
#: every message fits the 256 KiB rings objdb uses (max message ~128 KiB).
BATCH_BYTES_BUDGET = 64 * 1024

_HEADER = struct.Struct("<HBB")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_VALUE_HEAD = struct.Struct("<BI")

REQUEST_HEADER = _HEADER.pack(MAGIC, VERSION, KIND_REQUEST)
RESPONSE_HEADER = _HEADER.pack(MAGIC, VERSION, KIND_RESPONSE)
EVENT_HEADER = _HEADER.pack(MAGIC, VERSION, KIND_EVENT)
RESPONSE_OK = RESPONSE_HEADER + b"\x00"
_VALUE_TYPES = {int(value_type): value_type for value_type in ValueType}


class _Reader:
    """Cursor over a payload; every read checks the length first."""

    __slots__ = ("data", "offset")

    def __init__(self, data: bytes | memoryview, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, size: int) -> bytes | memoryview:
        end = self.offset + size
        if end > len(self.data):
            raise DecodeError(f"message truncated: needs {end} bytes, has {len(self.data)}")
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def unpack(self, layout: struct.Struct) -> tuple:
        end = self.offset + layout.size
        if end > len(self.data):
            raise DecodeError(f"message truncated: needs {end} bytes, has {len(self.data)}")
        fields = layout.unpack_from(self.data, self.offset)
        self.offset = end
        return fields

    def key(self) -> str:
        (length,) = self.unpack(_U8)
        raw = bytes(self.take(length))
        if not raw.isascii():
            raise DecodeError("key is not ASCII")
        return raw.decode("ascii")

    def value(self) -> Entry:
        type_code, length = self.unpack(_VALUE_HEAD)
        value_type = _VALUE_TYPES.get(type_code)
        if value_type is None:
            raise DecodeError(f"unknown value type {type_code}")
        raw = self.take(length)
        layout = NUMERIC_STRUCTS.get(value_type)
        if layout is not None:
            if length != layout.size:
                raise DecodeError(f"{value_type.short_name} value is {length} bytes, not {layout.size}")
            return Entry(value_type=value_type, value=layout.unpack(raw)[0])
        if value_type is ValueType.STRING:
            try:
                return Entry(value_type=value_type, value=bytes(raw).decode("utf-8"))
            except UnicodeDecodeError:
                raise DecodeError("str value is not valid UTF-8") from None
        return Entry(value_type=value_type, value=bytes(raw))

    def end(self) -> None:
        if self.offset != len(self.data):
            raise DecodeError(f"{len(self.data) - self.offset} unexpected bytes at the end")


def _check_header(payload: bytes | memoryview, kind: int) -> _Reader:
    if len(payload) < _HEADER.size:
        raise DecodeError(f"message of {len(payload)} bytes is shorter than the header")
    magic, version, found_kind = _HEADER.unpack_from(payload, 0)
    if magic != MAGIC:
        raise DecodeError(f"bad magic {magic:#06x}")
    if version != VERSION:
        raise DecodeError(f"cmap codec version {version}, this side speaks {VERSION}")
    if found_kind != kind:
        raise DecodeError(f"message kind {found_kind}, expected {kind}")
    return _Reader(payload, _HEADER.size)


# -- encoding fields ---------------------------------------------------------

def encode_key(key: str) -> bytes:
    """A key or prefix as ``u8 length`` + ASCII. Raises DecodeError if it cannot be."""
    try:
        raw = key.encode("ascii")
    except UnicodeEncodeError:
        raise DecodeError(f"key {key!r} is not ASCII") from None
    if len(raw) > 255:
        raise DecodeError(f"key of {len(raw)} characters does not fit the wire (255)")
    return _U8.pack(len(raw)) + raw


def encode_value(value_type: ValueType, value: Value) -> bytes:
    """A typed value as ``u8 type`` + ``u32 length`` + bytes (value already checked)."""
    layout = NUMERIC_STRUCTS.get(value_type)
    if layout is not None:
        raw = layout.pack(value)
    elif value_type is ValueType.STRING:
        assert isinstance(value, str)
        raw = value.encode("utf-8")
    else:
        raw = bytes(value)  # type: ignore[arg-type]
    return _VALUE_HEAD.pack(int(value_type), len(raw)) + raw
