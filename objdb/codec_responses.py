"""The cmap codec's responses: each function's reply, encoded and decoded.

A response is the header, ``u8 status`` and, for status 0, the function's
result (the table in :mod:`objdb.codec`, which re-exports every name here);
any other status carries a message and raises the matching
:mod:`objdb.errors` class on the client. Decoders check every length, flag
and count and raise :class:`~objdb.errors.DecodeError`.
"""

from __future__ import annotations

import struct

from objdb.codec_fields import (BATCH_BYTES_BUDGET, KIND_RESPONSE, MAX_GET_MANY_COUNT,
                                MAX_ITERATE_COUNT, RESPONSE_HEADER, RESPONSE_OK, VERSION,
                                _U8, _U16, _U64, _VALUE_HEAD, _VALUE_TYPES, _Reader,
                                _check_header, encode_key, encode_value)
from objdb.errors import ERROR_BY_STATUS, CmapError, DecodeError
from objdb.store import Entry
from objdb.types import NUMERIC_STRUCTS, Value, ValueType

__all__ = ["encode_error", "decode_response", "encode_value_response", "decode_value_response",
           "decode_value_reply", "decode_empty_response", "encode_statuses_response",
           "decode_statuses_response", "encode_sync_response", "decode_sync_response",
           "encode_hello_response", "decode_hello_response", "encode_get_many_response",
           "decode_get_many_response", "encode_table_info_response",
           "decode_table_info_response", "encode_u64_response", "decode_u64_response",
           "encode_iterate_response", "decode_iterate_response"]

_HELLO_REPLY = struct.Struct("<IBI")


def encode_error(error: CmapError) -> bytes:
    """A failure response carrying the error's status and message."""
    message = str(error).encode("utf-8")[:4000]
    return RESPONSE_HEADER + _U8.pack(error.status) + _U16.pack(len(message)) + message


def decode_response(payload: bytes | memoryview) -> _Reader:
    """Check a response; return a reader positioned at its result.

    Raises:
        CmapError: (the subclass for its status) the request was refused.
        DecodeError: the response is malformed.
    """
    reader = _check_header(payload, KIND_RESPONSE)
    (status,) = reader.unpack(_U8)
    if status == 0:
        return reader
    error_class = ERROR_BY_STATUS.get(status)
    if error_class is None:
        raise DecodeError(f"unknown status {status}")
    (length,) = reader.unpack(_U16)
    raw = bytes(reader.take(length))
    reader.end()
    raise error_class(raw.decode("utf-8", errors="replace"))


def encode_value_response(entry: Entry) -> bytes:
    return RESPONSE_OK + encode_value(entry.value_type, entry.value)


def decode_value_response(payload: bytes | memoryview) -> Entry:
    reader = decode_response(payload)
    entry = reader.value()
    reader.end()
    return entry


def decode_value_reply(payload: bytes | memoryview) -> tuple[Value, ValueType]:
    """(value, type) of a value response: :func:`decode_value_response` without the Entry.

    The common case (a well-formed success) is decoded inline; anything else
    goes through the full decoder, so errors and validation are the same.
    """
    if len(payload) >= 10 and payload[:5] == RESPONSE_OK:
        type_code, length = _VALUE_HEAD.unpack_from(payload, 5)
        value_type = _VALUE_TYPES.get(type_code)
        layout = NUMERIC_STRUCTS.get(value_type) if value_type is not None else None
        if layout is not None and length == layout.size and len(payload) == 10 + length:
            return layout.unpack_from(payload, 10)[0], value_type  # type: ignore[return-value]
    entry = decode_value_response(payload)
    return entry.value, entry.value_type


def decode_empty_response(payload: bytes | memoryview) -> None:
    decode_response(payload).end()


def encode_statuses_response(statuses: list[int]) -> bytes:
    return RESPONSE_OK + _U16.pack(len(statuses)) + bytes(statuses)


def decode_statuses_response(payload: bytes | memoryview) -> list[int]:
    """The per-item statuses of a SET_MANY reply (0 = done)."""
    reader = decode_response(payload)
    (count,) = reader.unpack(_U16)
    statuses = list(bytes(reader.take(count)))
    reader.end()
    for status in statuses:
        if status and status not in ERROR_BY_STATUS:
            raise DecodeError(f"unknown status {status}")
    return statuses


_SYNC_HEAD = struct.Struct("<IBH")


def encode_sync_response(failed: int, first: CmapError | None) -> bytes:
    message = b"" if first is None else str(first).encode("utf-8")[:4000]
    status = 0 if first is None else first.status
    return RESPONSE_OK + _SYNC_HEAD.pack(failed, status, len(message)) + message


def decode_sync_response(payload: bytes | memoryview) -> tuple[int, CmapError | None]:
    """(how many SET_NOWAIT failed since the last SYNC, the first failure)."""
    reader = decode_response(payload)
    failed, status, length = reader.unpack(_SYNC_HEAD)
    message = bytes(reader.take(length)).decode("utf-8", errors="replace")
    reader.end()
    if (failed == 0) != (status == 0):
        raise DecodeError(f"sync reply: {failed} failed but first status {status}")
    if status == 0:
        return 0, None
    error_class = ERROR_BY_STATUS.get(status)
    if error_class is None:
        raise DecodeError(f"unknown status {status}")
    return failed, error_class(message)


def encode_hello_response(privileged: bool, max_value_bytes: int) -> bytes:
    return RESPONSE_OK + _HELLO_REPLY.pack(VERSION, int(privileged), max_value_bytes)


def decode_hello_response(payload: bytes | memoryview) -> tuple[int, bool, int]:
    """(server version, privileged, max value bytes)."""
    reader = decode_response(payload)
    version, privileged, max_value_bytes = reader.unpack(_HELLO_REPLY)
    reader.end()
    if privileged not in (0, 1):
        raise DecodeError(f"privileged is {privileged}, not 0 or 1")
    return version, bool(privileged), max_value_bytes


def encode_get_many_response(entries: list[Entry | None]) -> bytes:
    """A GET_MANY reply for the first of ``entries`` (None: no such key) that
    fit :data:`BATCH_BYTES_BUDGET`; at least one is always answered."""
    parts = []
    size = 0
    for entry in entries:
        if parts and size >= BATCH_BYTES_BUDGET:
            break
        part = b"\x00" if entry is None else b"\x01" + encode_value(entry.value_type, entry.value)
        parts.append(part)
        size += len(part)
    return b"".join([RESPONSE_OK, _U16.pack(len(parts)), *parts])


def decode_get_many_response(payload: bytes | memoryview) -> list[Entry | None]:
    """The entries a GET_MANY reply answered, in request order (None: no such key).

    Raises:
        DecodeError: malformed.
    """
    reader = decode_response(payload)
    (count,) = reader.unpack(_U16)
    if count > MAX_GET_MANY_COUNT:
        raise DecodeError(f"get_many reply with {count} entries (limit {MAX_GET_MANY_COUNT})")
    entries: list[Entry | None] = []
    for _index in range(count):
        (found,) = reader.unpack(_U8)
        if found not in (0, 1):
            raise DecodeError(f"found flag is {found}, not 0 or 1")
        entries.append(reader.value() if found else None)
    reader.end()
    return entries


_TABLE_INFO = struct.Struct("<BIQ")


def encode_table_info_response(fd: int | None, token: int = 0) -> bytes:
    """A TABLE_INFO reply: objdb's descriptor of the table and its token, or
    none (``fd`` None)."""
    if fd is None:
        return RESPONSE_OK + _TABLE_INFO.pack(0, 0, 0)
    return RESPONSE_OK + _TABLE_INFO.pack(1, fd, token)


def decode_table_info_response(payload: bytes | memoryview) -> tuple[int, int] | None:
    """(objdb's descriptor of the table, its token), or None if objdb has none.

    Raises:
        DecodeError: malformed.
    """
    reader = decode_response(payload)
    present, fd, token = reader.unpack(_TABLE_INFO)
    reader.end()
    if present not in (0, 1):
        raise DecodeError(f"table presence flag is {present}, not 0 or 1")
    if not present:
        return None
    if fd > 0x7FFFFFFF or token == 0:
        raise DecodeError(f"table descriptor {fd} / token {token:#x} cannot be right")
    return fd, token


def encode_u64_response(number: int) -> bytes:
    return RESPONSE_OK + _U64.pack(number)


def decode_u64_response(payload: bytes | memoryview) -> int:
    reader = decode_response(payload)
    (number,) = reader.unpack(_U64)
    reader.end()
    return number


def encode_iterate_response(items: list[tuple[str, Entry]], more: bool) -> bytes:
    """An ITERATE reply with as many of ``items`` as fit :data:`BATCH_BYTES_BUDGET`.

    The first item always goes in; if some are left out, ``more`` is set so
    the client asks again after the last key sent.
    """
    encoded = []
    size = 0
    for key, entry in items:
        if encoded and size >= BATCH_BYTES_BUDGET:
            more = True
            break
        chunk = encode_key(key) + encode_value(entry.value_type, entry.value)
        encoded.append(chunk)
        size += len(chunk)
    return b"".join([RESPONSE_OK, _U16.pack(len(encoded)), *encoded, _U8.pack(int(more))])


def decode_iterate_response(payload: bytes | memoryview) -> tuple[list[tuple[str, Entry]], bool]:
    """(items, more): ``more`` means ask again with ``after`` = the last key."""
    reader = decode_response(payload)
    (count,) = reader.unpack(_U16)
    if count > MAX_ITERATE_COUNT:
        raise DecodeError(f"iterate reply with {count} items (limit {MAX_ITERATE_COUNT})")
    items = [(reader.key(), reader.value()) for _index in range(count)]
    (more,) = reader.unpack(_U8)
    reader.end()
    if more not in (0, 1):
        raise DecodeError(f"more is {more}, not 0 or 1")
    return items, bool(more)
