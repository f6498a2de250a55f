"""Wire codec of the cmap service (version 1), spoken over coroipc.

coroipc carries (function, payload); this module owns the payload. Every
payload starts with the same 4-byte header, little-endian like every field::

    magic    u16   0xC3A9
    version  u8    1
    kind     u8    1 request, 2 response, 3 event

Fields that follow:

- key / prefix: ``u8 length`` + ASCII bytes (a key is at most 255 characters);
- value: ``u8 type`` (``objdb.types.ValueType``) + ``u32 length`` + bytes;
  numbers are fixed-width little-endian (length must be the type's size),
  ``str`` is UTF-8, ``bin`` raw;
- response: header + ``u8 status``; status 0 is followed by the function's
  result, any other status by ``u16 length`` + a UTF-8 message, and maps to
  the exception class with that ``status`` in ``objdb.errors``.

Requests (function: fields -> result):

=====  ============  =====================================  ==========================
 1     HELLO         u32 options (bit 0: internal)           u32 version, u8 privileged,
                                                             u32 max value bytes
 2     GET           key                                     value
 3     SET           u8 flags (bit 0: force type), key,      (nothing)
                     value
 4     DELETE        key                                     (nothing)
 5     ADJUST        key, i64 step                           value (the new one)
 6     ITERATE       prefix, u8 has_after, [key], u16 max    u16 count, count x (key,
                                                             value), u8 more
 7     TRACK_ADD     u32 flags, key or prefix                u64 tracker id
 8     TRACK_DELETE  u64 tracker id                          (nothing)
 9     SET_MANY      u16 count, count x (u8 flags, key,      u16 count, count x u8 status
                     value)                                  (0 or an error status)
10     SET_NOWAIT    as SET (sent with coroipc ``post``)     none: a failure is kept for
                                                             SYNC
11     SYNC          (nothing)                               u32 failed, u8 first status,
                                                             u16 length, first message
12     TABLE_INFO    (nothing)                               u8 present, u32 objdb's fd of
                                                             the table, u64 its token
13     SET_NOWAIT_   u16 count, count x (u8 flags, key,      none (posted): each failure
       MANY          value), as SET_MANY                     is kept for SYNC, as
                                                             SET_NOWAIT
14     GET_MANY      u16 count, count x key                  u16 answered, answered x
                                                             (u8 found, [value]): the
                                                             first keys, as many as fit
=====  ============  =====================================  ==========================

TABLE_INFO says where the read-only shared-memory mirror of the store
(``objdb.shm_table``) is: a client of objdb's uid may open
``/proc/<objdb pid>/fd/<fd>``, check the token and answer gets from it
without a round trip; ``present`` 0 means there is none. SET_NOWAIT_MANY is what a
client's buffered :meth:`set_nowait` calls are flushed as: one ring write for
many sets, applied in order, each on its own.

SET_MANY applies its sets in order, each on its own (one failing does not
stop the rest); it is how a node process publishes many statistics keys in
one round trip.

Event (function 64, NOTIFY): ``u64 tracker id, u8 event, key, u8 has_new,
[value], u8 has_old, [value]``.

``decode_*`` check every length, code and count and raise one
:class:`~objdb.errors.DecodeError`; trailing bytes are an error too.
"""

from __future__ import annotations

import struct

from objdb.errors import ERROR_BY_STATUS, CmapError, DecodeError
from objdb.messages import (Adjust, Delete, Function, Get, GetMany, Hello, Iterate, NotifyEvent,
                            Request, Set, SetItem, SetMany, SetNowait, SetNowaitMany, Sync,
                            TableInfo, TrackAdd, TrackDelete)
from objdb.store import Entry, TrackFlags
from objdb.types import NUMERIC_STRUCTS, Value, ValueType
# The message classes (objdb.messages) are part of this codec's API: codec.Get etc.

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
_HELLO_REPLY = struct.Struct("<IBI")
_NOTIFY_HEAD = struct.Struct("<QB")

REQUEST_HEADER = _HEADER.pack(MAGIC, VERSION, KIND_REQUEST)
RESPONSE_HEADER = _HEADER.pack(MAGIC, VERSION, KIND_RESPONSE)
EVENT_HEADER = _HEADER.pack(MAGIC, VERSION, KIND_EVENT)
RESPONSE_OK = RESPONSE_HEADER + b"\x00"
_VALUE_TYPES = {int(value_type): value_type for value_type in ValueType}
_EVENTS = {int(event): event for event in (TrackFlags.ADD, TrackFlags.DELETE, TrackFlags.MODIFY)}


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


# -- requests ----------------------------------------------------------------

def encode_request(request: Request) -> tuple[int, bytes]:
    """(function, payload) for a request."""
    if isinstance(request, Get):
        return Function.GET, REQUEST_HEADER + encode_key(request.key)
    if isinstance(request, Set):
        return Function.SET, REQUEST_HEADER + _encode_set_fields(request)
    if isinstance(request, SetMany):
        return Function.SET_MANY, encode_set_many([_encode_set_fields(item) for item in request.sets])
    if isinstance(request, SetNowait):
        return Function.SET_NOWAIT, REQUEST_HEADER + _encode_set_fields(request.set)
    if isinstance(request, Sync):
        return Function.SYNC, REQUEST_HEADER
    if isinstance(request, TableInfo):
        return Function.TABLE_INFO, REQUEST_HEADER
    if isinstance(request, GetMany):
        if len(request.keys) > MAX_GET_MANY_COUNT:
            raise DecodeError(f"{len(request.keys)} keys in one request (limit {MAX_GET_MANY_COUNT})")
        return Function.GET_MANY, b"".join([REQUEST_HEADER, _U16.pack(len(request.keys)),
                                            *[encode_key(key) for key in request.keys]])
    if isinstance(request, SetNowaitMany):
        return Function.SET_NOWAIT_MANY, encode_set_many(
            [_encode_set_fields(item) for item in request.sets])
    if isinstance(request, Delete):
        return Function.DELETE, REQUEST_HEADER + encode_key(request.key)
    if isinstance(request, Adjust):
        return Function.ADJUST, REQUEST_HEADER + encode_key(request.key) + _I64.pack(request.step)
    if isinstance(request, Iterate):
        after = b"\x00" if request.after is None else b"\x01" + encode_key(request.after)
        return Function.ITERATE, (REQUEST_HEADER + encode_key(request.prefix) + after
                                  + _U16.pack(request.max_count))
    if isinstance(request, TrackAdd):
        return Function.TRACK_ADD, REQUEST_HEADER + _U32.pack(request.flags) + encode_key(request.key)
    if isinstance(request, TrackDelete):
        return Function.TRACK_DELETE, REQUEST_HEADER + _U64.pack(request.tracker_id)
    if isinstance(request, Hello):
        return Function.HELLO, REQUEST_HEADER + _U32.pack(request.options)
    raise TypeError(f"not a cmap request: {request!r}")


def encode_set(key: str, value_type: ValueType, value: Value, force_type: bool = False) -> bytes:
    """A SET (or SET_NOWAIT) request payload, the value already checked."""
    return REQUEST_HEADER + encode_set_item(key, value_type, value, force_type)


def encode_set_item(key: str, value_type: ValueType, value: Value, force_type: bool = False) -> bytes:
    """One set's fields: ``u8 flags, key, value`` (a SET body, or one SET_MANY entry)."""
    return b"".join((b"\x01" if force_type else b"\x00", encode_key(key),
                     encode_value(value_type, value)))


def encode_set_many(items: list[bytes]) -> bytes:
    """A SET_MANY payload from items made by :func:`encode_set_item`."""
    if len(items) > MAX_SET_MANY_COUNT:
        raise DecodeError(f"{len(items)} sets in one request (limit {MAX_SET_MANY_COUNT})")
    return b"".join([REQUEST_HEADER, _U16.pack(len(items)), *items])


def _encode_set_fields(request: Set | SetItem) -> bytes:
    return encode_set_item(request.key, request.value_type, request.value, request.force_type)


def _decode_set_fields(reader: _Reader) -> SetItem:
    data = reader.data if isinstance(reader.data, bytes) else bytes(reader.data)
    key, value_type, value, force, reader.offset = _decode_one_set(data, reader.offset, len(data))
    return SetItem(key, value_type, value, force)


_NUMERIC_BY_CODE = {int(value_type): (value_type, layout)
                    for value_type, layout in NUMERIC_STRUCTS.items()}


def _decode_one_set(data: bytes, offset: int, size: int
                    ) -> tuple[str, ValueType, Value, bool, int]:
    """One set item at ``offset`` of ``data``: (key, type, value, force_type,
    the offset after it). The one validating decoder of a set item, for SET,
    SET_NOWAIT and the batches (kept lean: SET_MANY runs it per item).

    Raises:
        DecodeError: truncated, unknown flags or type, a key that is not
            ASCII, a numeric value of the wrong size, a str not UTF-8.
    """
    if offset + 2 > size:
        raise DecodeError(f"message truncated: needs {offset + 2} bytes, has {size}")
    flags, key_length = data[offset], data[offset + 1]
    if flags & ~SET_FORCE_TYPE:
        raise DecodeError(f"unknown set flags {flags:#x}")
    key_end = offset + 2 + key_length
    if key_end + 5 > size:
        raise DecodeError(f"message truncated: needs {key_end + 5} bytes, has {size}")
    try:
        key = data[offset + 2:key_end].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("key is not ASCII") from None
    type_code, length = _VALUE_HEAD.unpack_from(data, key_end)
    end = key_end + 5 + length
    if end > size:
        raise DecodeError(f"message truncated: needs {end} bytes, has {size}")
    known = _NUMERIC_BY_CODE.get(type_code)
    if known is not None:
        value_type, layout = known
        if length != layout.size:
            raise DecodeError(f"{value_type.short_name} value is {length} bytes, not {layout.size}")
        return key, value_type, layout.unpack_from(data, key_end + 5)[0], flags == 1, end
    value_type = _VALUE_TYPES.get(type_code)
    if value_type is None:
        raise DecodeError(f"unknown value type {type_code}")
    raw = data[key_end + 5:end]
    if value_type is ValueType.STRING:
        try:
            return key, value_type, raw.decode("utf-8"), flags == 1, end
        except UnicodeDecodeError:
            raise DecodeError("str value is not valid UTF-8") from None
    return key, value_type, raw, flags == 1, end


def decode_set_items(payload: bytes | memoryview) -> list[tuple[str, ValueType, Value, bool]]:
    """The sets of a SET_MANY or SET_NOWAIT_MANY payload as plain
    (key, type, value, force_type) tuples: the servers' batch path, with the
    checks of :func:`decode_request` and no object per item.

    Raises:
        DecodeError: as :func:`decode_request`.
    """
    data = bytes(payload)   # one copy: slices of bytes are cheaper than of a memoryview
    _check_header(data, KIND_REQUEST)
    size = len(data)
    if size < 6:
        raise DecodeError(f"message truncated: needs 6 bytes, has {size}")
    count = data[4] | data[5] << 8
    if count > MAX_SET_MANY_COUNT:
        raise DecodeError(f"{count} sets in one request (limit {MAX_SET_MANY_COUNT})")
    items = []
    append = items.append
    one = _decode_one_set
    offset = 6
    for _index in range(count):
        key, value_type, value, force, offset = one(data, offset, size)
        append((key, value_type, value, force))
    if offset != size:
        raise DecodeError(f"{size - offset} unexpected bytes at the end")
    return items


def decode_set_item(payload: bytes | memoryview) -> SetItem:
    """The set in a SET or SET_NOWAIT payload, without building a request object.

    Raises:
        DecodeError: as :func:`decode_request`.
    """
    reader = _check_header(payload, KIND_REQUEST)
    item = _decode_set_fields(reader)
    reader.end()
    return item


def decode_request(function: int, payload: bytes | memoryview) -> Request:
    """The request in ``payload`` sent as ``function``.

    Raises:
        DecodeError: unknown function, bad header, bad field or trailing bytes.
    """
    reader = _check_header(payload, KIND_REQUEST)
    request: Request
    if function == Function.GET:
        request = Get(key=reader.key())
    elif function == Function.SET:
        key, value_type, value, force_type = _decode_set_fields(reader)
        request = Set(key=key, value_type=value_type, value=value, force_type=force_type)
    elif function == Function.SET_NOWAIT:
        request = SetNowait(set=_decode_set_fields(reader))
    elif function == Function.SYNC:
        request = Sync()
    elif function == Function.SET_MANY or function == Function.SET_NOWAIT_MANY:
        (count,) = reader.unpack(_U16)
        if count > MAX_SET_MANY_COUNT:
            raise DecodeError(f"{count} sets in one request (limit {MAX_SET_MANY_COUNT})")
        sets = tuple([_decode_set_fields(reader) for _index in range(count)])
        request = SetMany(sets=sets) if function == Function.SET_MANY else SetNowaitMany(sets=sets)
    elif function == Function.TABLE_INFO:
        request = TableInfo()
    elif function == Function.GET_MANY:
        (count,) = reader.unpack(_U16)
        if count > MAX_GET_MANY_COUNT:
            raise DecodeError(f"{count} keys in one request (limit {MAX_GET_MANY_COUNT})")
        request = GetMany(keys=tuple(reader.key() for _index in range(count)))
    elif function == Function.DELETE:
        request = Delete(key=reader.key())
    elif function == Function.ADJUST:
        key = reader.key()
        (step,) = reader.unpack(_I64)
        request = Adjust(key=key, step=step)
    elif function == Function.ITERATE:
        request = _decode_iterate(reader)
    elif function == Function.TRACK_ADD:
        (flags,) = reader.unpack(_U32)
        request = TrackAdd(key=reader.key(), flags=flags)
    elif function == Function.TRACK_DELETE:
        (tracker_id,) = reader.unpack(_U64)
        request = TrackDelete(tracker_id=tracker_id)
    elif function == Function.HELLO:
        (options,) = reader.unpack(_U32)
        request = Hello(options=options)
    else:
        raise DecodeError(f"unknown cmap function {function}")
    reader.end()
    return request


def _decode_iterate(reader: _Reader) -> Iterate:
    prefix = reader.key()
    (has_after,) = reader.unpack(_U8)
    if has_after not in (0, 1):
        raise DecodeError(f"has_after is {has_after}, not 0 or 1")
    after = reader.key() if has_after else None
    (max_count,) = reader.unpack(_U16)
    if not 1 <= max_count <= MAX_ITERATE_COUNT:
        raise DecodeError(f"iterate max_count {max_count} is not 1..{MAX_ITERATE_COUNT}")
    return Iterate(prefix=prefix, after=after, max_count=max_count)


# -- responses ---------------------------------------------------------------

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


def fast_get_key(payload: bytes | memoryview) -> str | None:
    """The key of a well-formed GET request, or None (then use :func:`decode_request`,
    which says what is wrong). Lets the server answer the commonest request
    without building a request object."""
    if len(payload) < 5 or payload[:4] != REQUEST_HEADER or len(payload) != 5 + payload[4]:
        return None
    raw = bytes(payload[5:])
    return raw.decode("ascii") if raw.isascii() else None


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


# -- events ------------------------------------------------------------------

def encode_notify(tracker_id: int, event: TrackFlags, key: str,
                  new: Entry | None, old: Entry | None) -> bytes:
    """A NOTIFY event payload (function :attr:`Function.NOTIFY`)."""
    return notify_prefix(tracker_id) + encode_notify_change(event, key, new, old)


def notify_prefix(tracker_id: int) -> bytes:
    """The per-tracker start of a NOTIFY payload (header and tracker id)."""
    return EVENT_HEADER + _U64.pack(tracker_id)


def encode_notify_change(event: TrackFlags, key: str, new: Entry | None,
                         old: Entry | None) -> bytes:
    """The part of a NOTIFY payload every tracker of one change shares (encode it once)."""
    parts = [_U8.pack(int(event)), encode_key(key)]
    for entry in (new, old):
        if entry is None:
            parts.append(b"\x00")
        else:
            parts.append(b"\x01")
            parts.append(encode_value(entry.value_type, entry.value))
    return b"".join(parts)


def decode_notify(payload: bytes | memoryview) -> NotifyEvent:
    """The notification in an event payload.

    Raises:
        DecodeError: malformed.
    """
    reader = _check_header(payload, KIND_EVENT)
    tracker_id, event_code = reader.unpack(_NOTIFY_HEAD)
    event = _EVENTS.get(event_code)
    if event is None:
        raise DecodeError(f"unknown track event {event_code}")
    key = reader.key()
    entries: list[Entry | None] = []
    for _index in range(2):
        (present,) = reader.unpack(_U8)
        if present not in (0, 1):
            raise DecodeError(f"value presence flag is {present}, not 0 or 1")
        entries.append(reader.value() if present else None)
    reader.end()
    return NotifyEvent(tracker_id=tracker_id, event=event, key=key, new=entries[0], old=entries[1])
