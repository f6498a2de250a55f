"""libcmap's typed accessors (cmap_get_int8 ... cmap_set_binary) as methods.

``TypedAccessors`` is a mixin of ``CmapClient`` (clients/cmap.py): each
method is ``get_typed``/``set`` with one fixed ``ValueType``, kept apart so
that the client module holds the protocol and this one the 24 one-liners.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from objdb.types import ValueType

if TYPE_CHECKING:
    from objdb.types import Value

__all__ = ["TypedAccessors"]


class TypedAccessors:
    """``get_<type>`` (WrongType if the key has another type) and ``set_<type>``."""

    def get_typed(self, key: str, value_type: ValueType) -> "Value":
        raise NotImplementedError  # CmapClient's

    def set(self, key: str, value: "Value", value_type: "ValueType | str", **_options: object) -> None:
        raise NotImplementedError  # CmapClient's

    def get_i8(self, key: str) -> int:
        """The value of ``key``, which must be int8 (else WrongType)."""
        return cast(int, self.get_typed(key, ValueType.INT8))

    def get_u8(self, key: str) -> int:
        """The value of ``key``, which must be uint8 (else WrongType)."""
        return cast(int, self.get_typed(key, ValueType.UINT8))

    def get_i16(self, key: str) -> int:
        """The value of ``key``, which must be int16 (else WrongType)."""
        return cast(int, self.get_typed(key, ValueType.INT16))

    def get_u16(self, key: str) -> int:
        """The value of ``key``, which must be uint16 (else WrongType)."""
        return cast(int, self.get_typed(key, ValueType.UINT16))

    def get_i32(self, key: str) -> int:
        """The value of ``key``, which must be int32 (else WrongType)."""
        return cast(int, self.get_typed(key, ValueType.INT32))

    def get_u32(self, key: str) -> int:
        """The value of ``key``, which must be uint32 (else WrongType)."""
        return cast(int, self.get_typed(key, ValueType.UINT32))

    def get_i64(self, key: str) -> int:
        """The value of ``key``, which must be int64 (else WrongType)."""
        return cast(int, self.get_typed(key, ValueType.INT64))

    def get_u64(self, key: str) -> int:
        """The value of ``key``, which must be uint64 (else WrongType)."""
        return cast(int, self.get_typed(key, ValueType.UINT64))

    def get_float(self, key: str) -> float:
        """The value of ``key``, which must be float (else WrongType)."""
        return cast(float, self.get_typed(key, ValueType.FLOAT))

    def get_double(self, key: str) -> float:
        """The value of ``key``, which must be double (else WrongType)."""
        return cast(float, self.get_typed(key, ValueType.DOUBLE))

    def get_string(self, key: str) -> str:
        """The value of ``key``, which must be string (else WrongType)."""
        return cast(str, self.get_typed(key, ValueType.STRING))

    def get_binary(self, key: str) -> bytes:
        """The value of ``key``, which must be binary (else WrongType)."""
        return cast(bytes, self.get_typed(key, ValueType.BINARY))

    def set_i8(self, key: str, value: int) -> None:
        """Set ``key`` to a int8 value."""
        self.set(key, value, ValueType.INT8)

    def set_u8(self, key: str, value: int) -> None:
        """Set ``key`` to a uint8 value."""
        self.set(key, value, ValueType.UINT8)

    def set_i16(self, key: str, value: int) -> None:
        """Set ``key`` to a int16 value."""
        self.set(key, value, ValueType.INT16)

    def set_u16(self, key: str, value: int) -> None:
        """Set ``key`` to a uint16 value."""
        self.set(key, value, ValueType.UINT16)

    def set_i32(self, key: str, value: int) -> None:
        """Set ``key`` to a int32 value."""
        self.set(key, value, ValueType.INT32)

    def set_u32(self, key: str, value: int) -> None:
        """Set ``key`` to a uint32 value."""
        self.set(key, value, ValueType.UINT32)

    def set_i64(self, key: str, value: int) -> None:
        """Set ``key`` to a int64 value."""
        self.set(key, value, ValueType.INT64)

    def set_u64(self, key: str, value: int) -> None:
        """Set ``key`` to a uint64 value."""
        self.set(key, value, ValueType.UINT64)

    def set_float(self, key: str, value: float) -> None:
        """Set ``key`` to a float value."""
        self.set(key, value, ValueType.FLOAT)

    def set_double(self, key: str, value: float) -> None:
        """Set ``key`` to a double value."""
        self.set(key, value, ValueType.DOUBLE)

    def set_string(self, key: str, value: str) -> None:
        """Set ``key`` to a string value."""
        self.set(key, value, ValueType.STRING)

    def set_binary(self, key: str, value: bytes) -> None:
        """Set ``key`` to a binary value."""
        self.set(key, value, ValueType.BINARY)
