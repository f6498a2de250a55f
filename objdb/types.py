"""Value types of the object database, as cmap has them.

Twelve types, with corosync's numbering (``CMAP_VALUETYPE_*``) as the wire
code and corosync-cmapctl's short names (``i8`` ... ``bin``) as the text form.
A value is held as a plain Python object: ``int`` for the integer types,
``float`` for ``flt``/``dbl`` (a ``flt`` is rounded to single precision when
it is stored, so what you get back is what the store holds), ``str`` for
``str`` and ``bytes`` for ``bin``.

Limits (corosync's ``ICMAP_MAX_VALUE_LEN`` is 16 KiB including a string's
terminating NUL):

- ``bin``: at most :data:`MAX_VALUE_BYTES` bytes;
- ``str``: at most ``MAX_VALUE_BYTES - 1`` bytes of UTF-8, and no NUL.
"""

from __future__ import annotations

import enum
import math
import struct
from typing import Union

from objdb.errors import InvalidValue, TooLong

#: Largest value, in bytes, a key can hold (corosync's ICMAP_MAX_VALUE_LEN).
MAX_VALUE_BYTES = 16 * 1024
#: Largest string, in UTF-8 bytes (one byte less: corosync keeps a NUL).
MAX_STRING_BYTES = MAX_VALUE_BYTES - 1

Value = Union[int, float, str, bytes]


class ValueType(enum.IntEnum):
    """A value's type; the integer is the wire code (corosync's numbering)."""

    INT8 = 1
    UINT8 = 2
    INT16 = 3
    UINT16 = 4
    INT32 = 5
    UINT32 = 6
    INT64 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    STRING = 11
    BINARY = 12

    @property
    def short_name(self) -> str:
        """corosync-cmapctl's name for the type: ``i8`` ... ``bin``."""
        return _SHORT_NAMES[self]

    @property
    def is_integer(self) -> bool:
        """True for the eight integer types (the ones increment/decrement accept)."""
        return self in _INTEGER_RANGES

    @classmethod
    def from_name(cls, name: str) -> "ValueType":
        """The type called ``name``: a short name (``u32``) or a long one (``uint32``).

        Raises:
            InvalidValue: no type has that name.
        """
        found = _BY_NAME.get(name.lower())
        if found is None:
            raise InvalidValue(
                f"unknown type {name!r}: use one of {', '.join(_SHORT_NAMES.values())}"
            )
        return found


_SHORT_NAMES = {
    ValueType.INT8: "i8", ValueType.UINT8: "u8", ValueType.INT16: "i16", ValueType.UINT16: "u16",
    ValueType.INT32: "i32", ValueType.UINT32: "u32", ValueType.INT64: "i64",
    ValueType.UINT64: "u64", ValueType.FLOAT: "flt", ValueType.DOUBLE: "dbl",
    ValueType.STRING: "str", ValueType.BINARY: "bin",
}
_BY_NAME: dict[str, ValueType] = {}
for _type, _short in _SHORT_NAMES.items():
    _BY_NAME[_short] = _type
    _BY_NAME[_type.name.lower()] = _type
_BY_NAME.update({"string": ValueType.STRING, "binary": ValueType.BINARY,
                 "float": ValueType.FLOAT, "double": ValueType.DOUBLE})

#: (minimum, maximum, bits) of each integer type.
_INTEGER_RANGES: dict[ValueType, tuple[int, int, int]] = {
    ValueType.INT8: (-(1 << 7), (1 << 7) - 1, 8),
    ValueType.UINT8: (0, (1 << 8) - 1, 8),
    ValueType.INT16: (-(1 << 15), (1 << 15) - 1, 16),
    ValueType.UINT16: (0, (1 << 16) - 1, 16),
    ValueType.INT32: (-(1 << 31), (1 << 31) - 1, 32),
    ValueType.UINT32: (0, (1 << 32) - 1, 32),
    ValueType.INT64: (-(1 << 63), (1 << 63) - 1, 64),
    ValueType.UINT64: (0, (1 << 64) - 1, 64),
}

#: (minimum, maximum) of each integer type, for hot paths that check an
#: exact ``int`` inline and leave everything else to :func:`check_value`.
INTEGER_BOUNDS: dict[ValueType, tuple[int, int]] = {
    value_type: (low, high) for value_type, (low, high, _bits) in _INTEGER_RANGES.items()}

#: Fixed-width wire formats, little-endian, for the numeric types.
NUMERIC_STRUCTS: dict[ValueType, struct.Struct] = {
    ValueType.INT8: struct.Struct("<b"), ValueType.UINT8: struct.Struct("<B"),
    ValueType.INT16: struct.Struct("<h"), ValueType.UINT16: struct.Struct("<H"),
    ValueType.INT32: struct.Struct("<i"), ValueType.UINT32: struct.Struct("<I"),
    ValueType.INT64: struct.Struct("<q"), ValueType.UINT64: struct.Struct("<Q"),
    ValueType.FLOAT: struct.Struct("<f"), ValueType.DOUBLE: struct.Struct("<d"),
}

_FLOAT32_MAX = 3.4028234663852886e38


def integer_range(value_type: ValueType) -> tuple[int, int]:
    """(minimum, maximum) of an integer type."""
    low, high, _bits = _INTEGER_RANGES[value_type]
    return low, high


def check_value(value_type: ValueType, value: object) -> Value:
    """Validate ``value`` for ``value_type`` and return it as the store holds it.

    Args:
        value_type: the type the value is to have.
        value: a Python value (int, float, str, bytes-like).

    Returns:
        The normalised value: ``flt`` rounded to single precision, binary as
        ``bytes``.

    Raises:
        InvalidValue: the value is not of a fitting Python type or out of range.
        TooLong: a string or binary value over its limit.
    """
    if value_type in _INTEGER_RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidValue(f"{value_type.short_name} needs an integer, not {type(value).__name__}")
        low, high, _bits = _INTEGER_RANGES[value_type]
        if not low <= value <= high:
            raise InvalidValue(f"{value} does not fit {value_type.short_name} ({low}..{high})")
        return int(value)
    if value_type in (ValueType.FLOAT, ValueType.DOUBLE):
        return _check_real(value_type, value)
    if value_type is ValueType.STRING:
        return _check_string(value)
    return _check_binary(value)


def _check_real(value_type: ValueType, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidValue(f"{value_type.short_name} needs a number, not {type(value).__name__}")
    number = float(value)
    if value_type is ValueType.FLOAT:
        if math.isfinite(number) and abs(number) > _FLOAT32_MAX:
            raise InvalidValue(f"{value} does not fit flt (single precision)")
        number = NUMERIC_STRUCTS[ValueType.FLOAT].unpack(NUMERIC_STRUCTS[ValueType.FLOAT].pack(number))[0]
    return number


def _check_string(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"str needs a text string, not {type(value).__name__}")
    if "\0" in value:
        raise InvalidValue("a str value cannot contain NUL; use bin")
    try:
        length = len(value.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InvalidValue(f"str value is not encodable as UTF-8: {error.reason}") from None
    if length > MAX_STRING_BYTES:
        raise TooLong(f"str value is {length} bytes, the limit is {MAX_STRING_BYTES}")
    return value


def _check_binary(value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidValue(f"bin needs bytes, not {type(value).__name__}")
    data = bytes(value)
    if len(data) > MAX_VALUE_BYTES:
        raise TooLong(f"bin value is {len(data)} bytes, the limit is {MAX_VALUE_BYTES}")
    return data


def wrap_integer(value_type: ValueType, value: int) -> int:
    """``value`` wrapped into ``value_type``'s range, two's complement, as corosync's
    ``icmap_adjust_int`` does (u8 255 + 1 = 0, i8 127 + 1 = -128)."""
    low, _high, bits = _INTEGER_RANGES[value_type]
    modulus = 1 << bits
    return (value - low) % modulus + low


def parse_value(value_type: ValueType, text: str) -> Value:
    """Parse a value typed on a command line (``coro cmap set KEY u32 5``).

    Integers accept decimal and 0x/0o/0b prefixes; ``bin`` takes the text's
    UTF-8 bytes (the tool reads files itself).

    Raises:
        InvalidValue: the text is not a value of the type, or is out of range.
        TooLong: the value is over its limit.
    """
    if value_type.is_integer:
        try:
            number: object = int(text.strip(), 0)
        except ValueError:
            raise InvalidValue(f"{text!r} is not a valid {value_type.short_name} value") from None
        return check_value(value_type, number)
    if value_type in (ValueType.FLOAT, ValueType.DOUBLE):
        try:
            real = float(text.strip())
        except ValueError:
            raise InvalidValue(f"{text!r} is not a valid {value_type.short_name} value") from None
        return check_value(value_type, real)
    if value_type is ValueType.STRING:
        return check_value(value_type, text)
    return check_value(value_type, text.encode("utf-8"))


def format_binary(data: bytes) -> str:
    """Binary as corosync-cmapctl -b shows it: printable ASCII as is, ``\\\\`` for a
    backslash, ``\\xNN`` for everything else."""
    parts = []
    for byte in data:
        if byte == 0x5C:
            parts.append("\\\\")
        elif 0x20 <= byte < 0x7F:
            parts.append(chr(byte))
        else:
            parts.append(f"\\x{byte:02X}")
    return "".join(parts)


def format_value(value_type: ValueType, value: Value) -> str:
    """A value as corosync-cmapctl prints it (``%f`` for flt and dbl)."""
    if value_type in (ValueType.FLOAT, ValueType.DOUBLE):
        return f"{value:f}"
    if value_type is ValueType.BINARY:
        assert isinstance(value, bytes)
        return format_binary(value)
    return str(value)


def json_value(value_type: ValueType, value: Value) -> object:
    """A value for JSON output: binary as lowercase hex, the rest as is."""
    if value_type is ValueType.BINARY:
        assert isinstance(value, bytes)
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
