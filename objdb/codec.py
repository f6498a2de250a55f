"""Wire codec of the cmap service (version 1), spoken over coroipc.

coroipc carries (function, payload); the codec owns the payload. Every
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

The codec is three modules, every name importable from this one:
``objdb.codec_fields`` (the header, the limits and flags, keys and values),
``objdb.codec_responses`` (each function's reply) and this module (requests
and events).
"""

from __future__ import annotations

import struct

from objdb.codec_fields import (BATCH_BYTES_BUDGET, EVENT_HEADER, HELLO_INTERNAL, KIND_EVENT,
                                KIND_REQUEST, KIND_RESPONSE, MAGIC, MAX_GET_MANY_COUNT,
                                MAX_ITERATE_COUNT, MAX_SET_MANY_COUNT, REQUEST_HEADER,
                                RESPONSE_HEADER, RESPONSE_OK, SET_FORCE_TYPE, VERSION, _I64, _U8,
                                _U16, _U32, _U64, _VALUE_HEAD, _VALUE_TYPES, _Reader,
                                _check_header, encode_key, encode_value)
from objdb.codec_responses import (decode_empty_response, decode_get_many_response,
                                   decode_hello_response, decode_iterate_response,
                                   decode_response, decode_statuses_response,
                                   decode_sync_response, decode_table_info_response,
                                   decode_u64_response, decode_value_reply,
                                   decode_value_response, encode_error, encode_get_many_response,
                                   encode_hello_response, encode_iterate_response,
                                   encode_statuses_response, encode_sync_response,
                                   encode_table_info_response, encode_u64_response,
                                   encode_value_response)
from objdb.errors import DecodeError
from objdb.messages import (Adjust, Delete, Function, Get, GetMany, Hello, Iterate, NotifyEvent,
                            Request, Set, SetItem, SetMany, SetNowait, SetNowaitMany, Sync,
                            TableInfo, TrackAdd, TrackDelete)
from objdb.store import Entry, TrackFlags
from objdb.types import NUMERIC_STRUCTS, Value, ValueType
# The message classes (objdb.messages) are part of this codec's API: codec.Get etc.

__all__ = [
    # objdb.codec_fields
    "MAGIC", "VERSION", "KIND_REQUEST", "KIND_RESPONSE", "KIND_EVENT", "HELLO_INTERNAL",
    "SET_FORCE_TYPE", "MAX_ITERATE_COUNT", "MAX_SET_MANY_COUNT", "MAX_GET_MANY_COUNT",
    "BATCH_BYTES_BUDGET", "REQUEST_HEADER", "RESPONSE_HEADER", "EVENT_HEADER", "RESPONSE_OK",
    "encode_key", "encode_value",
    # requests and events (this module)
    "encode_request", "encode_set", "encode_set_item", "encode_set_many", "decode_set_items",
    "decode_set_item", "decode_request", "fast_get_key", "encode_notify", "notify_prefix",
    "encode_notify_change", "decode_notify",
    # objdb.codec_responses
    "encode_error", "decode_response", "encode_value_response", "decode_value_response",
    "decode_value_reply", "decode_empty_response", "encode_statuses_response",
    "decode_statuses_response", "encode_sync_response", "decode_sync_response",
    "encode_hello_response", "decode_hello_response", "encode_get_many_response",
    "decode_get_many_response", "encode_table_info_response", "decode_table_info_response",
    "encode_u64_response", "decode_u64_response", "encode_iterate_response",
    "decode_iterate_response",
    # objdb.messages
    "Function", "Hello", "Get", "Set", "Delete", "Adjust", "Iterate", "TrackAdd", "TrackDelete",
    "SetItem", "SetMany", "SetNowait", "Sync", "TableInfo", "SetNowaitMany", "GetMany",
    "NotifyEvent", "Request",
]

_NOTIFY_HEAD = struct.Struct("<QB")
_EVENTS = {int(event): event for event in (TrackFlags.ADD, TrackFlags.DELETE, TrackFlags.MODIFY)}


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


def fast_get_key(payload: bytes | memoryview) -> str | None:
    """The key of a well-formed GET request, or None (then use :func:`decode_request`,
    which says what is wrong). Lets the server answer the commonest request
    without building a request object."""
    if len(payload) < 5 or payload[:4] != REQUEST_HEADER or len(payload) != 5 + payload[4]:
        return None
    raw = bytes(payload[5:])
    return raw.decode("ascii") if raw.isascii() else None


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
