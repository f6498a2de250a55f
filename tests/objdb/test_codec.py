"""The cmap wire codec: every message round-trips, and garbage raises DecodeError only."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objdb import codec
from objdb.errors import DecodeError, InvalidKey, NoSuchKey, ReadOnly, TooLong, WrongType
from objdb.store import Entry
from objdb.types import ValueType

KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-/:", min_size=3, max_size=255)

_ENTRIES = st.one_of(
    st.integers(-128, 127).map(lambda v: Entry(value_type=ValueType.INT8, value=v)),
    st.integers(0, 2**64 - 1).map(lambda v: Entry(value_type=ValueType.UINT64, value=v)),
    st.integers(-(2**31), 2**31 - 1).map(lambda v: Entry(value_type=ValueType.INT32, value=v)),
    st.floats(allow_nan=False).map(lambda v: Entry(value_type=ValueType.DOUBLE, value=v)),
    st.text(max_size=64).filter(lambda s: "\0" not in s).map(
        lambda v: Entry(value_type=ValueType.STRING, value=v)),
    st.binary(max_size=64).map(lambda v: Entry(value_type=ValueType.BINARY, value=v)),
)


def _requests() -> st.SearchStrategy:
    return st.one_of(
        KEYS.map(lambda k: codec.Get(key=k)),
        st.builds(lambda k, e, f: codec.Set(key=k, value_type=e.value_type, value=e.value, force_type=f),
                  KEYS, _ENTRIES, st.booleans()),
        KEYS.map(lambda k: codec.Delete(key=k)),
        st.builds(lambda k, s: codec.Adjust(key=k, step=s), KEYS, st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda p, a, n: codec.Iterate(prefix=p, after=a, max_count=n),
                  st.text(alphabet="abc.", max_size=20), st.none() | KEYS,
                  st.integers(1, codec.MAX_ITERATE_COUNT)),
        st.builds(lambda k, f: codec.TrackAdd(key=k, flags=f), KEYS, st.integers(0, 2**32 - 1)),
        st.integers(0, 2**64 - 1).map(lambda t: codec.TrackDelete(tracker_id=t)),
        st.integers(0, 2**32 - 1).map(lambda o: codec.Hello(options=o)),
        st.lists(st.builds(lambda k, e, f: codec.SetItem(k, e.value_type, e.value, f),
                           KEYS, _ENTRIES, st.booleans()),
                 max_size=5).map(lambda sets: codec.SetMany(sets=tuple(sets))),
        st.builds(lambda k, e: codec.SetNowait(set=codec.SetItem(k, e.value_type, e.value)),
                  KEYS, _ENTRIES),
        st.just(codec.Sync()),
        st.just(codec.TableInfo()),
        st.lists(KEYS, max_size=6).map(lambda keys: codec.GetMany(keys=tuple(keys))),
        st.lists(st.builds(lambda k, e, f: codec.SetItem(k, e.value_type, e.value, f),
                           KEYS, _ENTRIES, st.booleans()),
                 max_size=5).map(lambda sets: codec.SetNowaitMany(sets=tuple(sets))),
    )


@settings(max_examples=300, deadline=None)
@given(_requests())
def test_requests_round_trip(request: codec.Request) -> None:
    function, payload = codec.encode_request(request)
    assert codec.decode_request(function, payload) == request


@settings(max_examples=200, deadline=None)
@given(KEYS, st.sampled_from(list(codec._EVENTS.values())), st.none() | _ENTRIES, st.none() | _ENTRIES,
       st.integers(0, 2**64 - 1))
def test_notify_round_trip(key, event, new, old, tracker_id) -> None:
    payload = codec.encode_notify(tracker_id, event, key, new, old)
    assert codec.decode_notify(payload) == codec.NotifyEvent(
        tracker_id=tracker_id, event=event, key=key, new=new, old=old)


def test_responses_round_trip() -> None:
    entry = Entry(value_type=ValueType.UINT32, value=3000)
    assert codec.decode_value_response(codec.encode_value_response(entry)) == entry
    items = [("a.b", entry), ("a.c", Entry(value_type=ValueType.STRING, value="x"))]
    assert codec.decode_iterate_response(codec.encode_iterate_response(items, True)) == (items, True)
    assert codec.decode_u64_response(codec.encode_u64_response(2**64 - 1)) == 2**64 - 1
    assert codec.decode_hello_response(codec.encode_hello_response(True, 16384)) == (1, True, 16384)
    codec.decode_empty_response(codec.RESPONSE_OK)
    assert codec.decode_statuses_response(codec.encode_statuses_response([0, 2, 4])) == [0, 2, 4]
    assert codec.decode_sync_response(codec.encode_sync_response(0, None)) == (0, None)
    failed, first = codec.decode_sync_response(codec.encode_sync_response(3, ReadOnly("key 'x' is read-only")))
    assert failed == 3 and isinstance(first, ReadOnly) and str(first) == "key 'x' is read-only"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.none() | _ENTRIES, max_size=20))
def test_get_many_response_round_trip(entries) -> None:
    assert codec.decode_get_many_response(codec.encode_get_many_response(entries)) == entries


def test_get_many_response_stops_at_the_byte_budget() -> None:
    big = Entry(value_type=ValueType.BINARY, value=b"x" * 16384)
    answered = codec.decode_get_many_response(codec.encode_get_many_response([big] * 10 + [None]))
    assert answered == [big] * 4   # 4 x 16 KiB reach the 64 KiB budget
    with pytest.raises(DecodeError, match="found flag"):
        codec.decode_get_many_response(codec.RESPONSE_OK + b"\x01\x00\x02")
    with pytest.raises(DecodeError, match="1025 keys"):
        codec.encode_request(codec.GetMany(keys=("abc",) * 1025))


def test_table_info_response() -> None:
    assert codec.decode_table_info_response(codec.encode_table_info_response(None)) is None
    assert codec.decode_table_info_response(
        codec.encode_table_info_response(17, 2**64 - 1)) == (17, 2**64 - 1)
    for bad, match in ((struct.pack("<BIQ", 2, 17, 5), "presence flag"),
                       (struct.pack("<BIQ", 1, 17, 0), "cannot be right"),
                       (struct.pack("<BIQ", 1, 2**31, 5), "cannot be right"),
                       (struct.pack("<BI", 1, 17), "truncated")):
        with pytest.raises(DecodeError, match=match):
            codec.decode_table_info_response(codec.RESPONSE_OK + bad)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.builds(lambda k, e, f: codec.SetItem(k, e.value_type, e.value, f),
                          KEYS, _ENTRIES, st.booleans()), max_size=8),
       st.sampled_from([codec.Function.SET_MANY, codec.Function.SET_NOWAIT_MANY]))
def test_batch_decoder_agrees_with_the_request_decoder(sets, function) -> None:
    payload = codec.encode_set_many([codec.encode_set_item(*item) for item in sets])
    assert codec.decode_request(function, payload).sets == tuple(sets)
    assert codec.decode_set_items(memoryview(payload)) == [tuple(item) for item in sets]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.builds(lambda k, e, f: codec.SetItem(k, e.value_type, e.value, f),
                          KEYS, _ENTRIES, st.booleans()), min_size=1, max_size=4), st.data())
def test_batch_decoder_raises_decode_error_exactly_when_the_request_decoder_does(sets, data) -> None:
    payload = bytearray(codec.encode_set_many([codec.encode_set_item(*item) for item in sets]))
    position = data.draw(st.integers(0, len(payload) - 1))
    payload[position] ^= data.draw(st.integers(1, 255))
    cut = bytes(payload[:data.draw(st.integers(0, len(payload)))])
    for candidate in (bytes(payload), cut):
        try:
            expected = [tuple(item) for item in
                        codec.decode_request(codec.Function.SET_MANY, candidate).sets]
        except DecodeError:
            with pytest.raises(DecodeError):
                codec.decode_set_items(candidate)
        else:
            # repr: a flipped bit can make a double NaN, and NaN != NaN.
            assert repr(codec.decode_set_items(candidate)) == repr(expected)


@pytest.mark.parametrize("error", [NoSuchKey("no key 'a.b'"), ReadOnly("key 'x' is read-only"),
                                   WrongType("w"), TooLong("t"), InvalidKey("k")])
def test_errors_cross_the_wire_with_their_class_and_message(error) -> None:
    with pytest.raises(type(error), match=f"^{str(error)}$"):
        codec.decode_value_response(codec.encode_error(error))


def test_byte_order_is_little_endian() -> None:
    _function, payload = codec.encode_request(
        codec.Set(key="abc", value_type=ValueType.UINT32, value=0x01020304))
    assert payload[:4] == struct.pack("<HBB", codec.MAGIC, codec.VERSION, codec.KIND_REQUEST)
    assert payload.endswith(b"\x06\x04\x00\x00\x00\x04\x03\x02\x01")


@pytest.mark.parametrize("payload, match", [
    (b"", "shorter than the header"),
    (b"\x00\x00\x01\x01\x03abc", "bad magic"),
    (struct.pack("<HBB", codec.MAGIC, 2, 1) + b"\x03abc", "version 2"),
    (struct.pack("<HBB", codec.MAGIC, 1, 2) + b"\x03abc", "kind 2"),
    (codec.REQUEST_HEADER + b"\x09abc", "truncated"),
    (codec.REQUEST_HEADER + b"\x03abcXX", "unexpected bytes"),
    (codec.REQUEST_HEADER + b"\x03a\xffc", "not ASCII"),
])
def test_malformed_get_requests(payload: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        codec.decode_request(codec.Function.GET, payload)


def test_malformed_values() -> None:
    head = codec.REQUEST_HEADER + b"\x00\x03abc"
    with pytest.raises(DecodeError, match="unknown value type 13"):
        codec.decode_request(codec.Function.SET, head + struct.pack("<BI", 13, 0))
    with pytest.raises(DecodeError, match="u32 value is 3 bytes, not 4"):
        codec.decode_request(codec.Function.SET, head + struct.pack("<BI", 6, 3) + b"abc")
    with pytest.raises(DecodeError, match="not valid UTF-8"):
        codec.decode_request(codec.Function.SET, head + struct.pack("<BI", 11, 1) + b"\xff")
    with pytest.raises(DecodeError, match="truncated"):
        codec.decode_request(codec.Function.SET, head + struct.pack("<BI", 12, 2**32 - 1) + b"ab")
    with pytest.raises(DecodeError, match="unknown set flags"):
        codec.decode_request(codec.Function.SET, codec.REQUEST_HEADER + b"\x02\x03abc"
                             + struct.pack("<BI", 2, 1) + b"\x01")
    with pytest.raises(DecodeError, match="unknown cmap function 99"):
        codec.decode_request(99, codec.REQUEST_HEADER)
    with pytest.raises(DecodeError, match="max_count 0"):
        codec.decode_request(codec.Function.ITERATE, codec.REQUEST_HEADER + b"\x00\x00\x00\x00")


def _decode_quietly(decode, payload) -> None:
    """Decode; a DecodeError or a well-formed refusal is fine, anything else is a bug."""
    try:
        decode(payload)
    except DecodeError:
        pass
    except Exception as error:
        if type(error).__module__ != "objdb.errors":
            raise


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 70), st.binary(max_size=64))
def test_garbage_raises_decode_error_only(function: int, body: bytes) -> None:
    for payload in (body, codec.REQUEST_HEADER + body):
        _decode_quietly(lambda data: codec.decode_request(function, data), payload)
    for decode in (codec.decode_notify, codec.decode_iterate_response, codec.decode_value_response,
                   codec.decode_hello_response, codec.decode_u64_response,
                   codec.decode_get_many_response, codec.decode_table_info_response):
        for header in (codec.EVENT_HEADER, codec.RESPONSE_OK, codec.RESPONSE_HEADER):
            _decode_quietly(decode, header + body)


@settings(max_examples=300, deadline=None)
@given(_requests(), st.data())
def test_mutated_requests_raise_decode_error_or_decode(request, data) -> None:
    function, payload = codec.encode_request(request)
    position = data.draw(st.integers(0, len(payload) - 1))
    mutated = bytearray(payload)
    mutated[position] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    for candidate in (bytes(mutated), bytes(mutated[:cut])):
        _decode_quietly(lambda raw: codec.decode_request(function, raw), candidate)
