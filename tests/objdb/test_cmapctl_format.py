"""`coro cmap` output, pure: corosync-cmapctl's line format, JSON, parsing values."""

from __future__ import annotations

import json

import pytest

from clients.cmapctl import key_line, notification_line
from objdb.codec import NotifyEvent
from objdb.errors import InvalidValue, TooLong
from objdb.store import Entry, TrackFlags
from objdb.types import MAX_VALUE_BYTES, ValueType, parse_value


@pytest.mark.parametrize("value_type, value, expected", [
    (ValueType.UINT32, 3000, "totem.token (u32) = 3000"),
    (ValueType.INT8, -5, "totem.token (i8) = -5"),
    (ValueType.UINT64, 2**64 - 1, "totem.token (u64) = 18446744073709551615"),
    (ValueType.FLOAT, 1.5, "totem.token (flt) = 1.500000"),
    (ValueType.DOUBLE, 0.1, "totem.token (dbl) = 0.100000"),
    (ValueType.STRING, "udpu", "totem.token (str) = udpu"),
    (ValueType.STRING, "", "totem.token (str) = "),
])
def test_key_line_is_corosync_cmapctl_format(value_type, value, expected) -> None:
    assert key_line("totem.token", value_type, value, show_binary=False) == expected


def test_binary_lines_follow_cmapctl_b() -> None:
    assert key_line("a.bin", ValueType.BINARY, b"ab\\\x00\xff", show_binary=False) == "a.bin (bin)"
    assert (key_line("a.bin", ValueType.BINARY, b"ab\\\x00\xff", show_binary=True)
            == "a.bin (bin) = ab\\\\\\x00\\xFF")


def test_quiet_prints_the_value_only() -> None:
    assert key_line("totem.token", ValueType.UINT32, 7, show_binary=False, quiet=True) == "7"


def _note(event, new, old) -> NotifyEvent:
    return NotifyEvent(tracker_id=1, event=event, key="totem.token", new=new, old=old)


def test_track_lines_compat_and_json() -> None:
    old = Entry(value_type=ValueType.UINT32, value=3000)
    new = Entry(value_type=ValueType.UINT32, value=5000)
    kwargs = dict(as_json=False, show_binary=False)
    assert notification_line(_note(TrackFlags.MODIFY, new, old), compat=True, **kwargs) == \
        "modify> totem.token (u32) = 5000"
    assert notification_line(_note(TrackFlags.ADD, new, None), compat=True, **kwargs) == \
        "create> totem.token (u32) = 5000"
    assert notification_line(_note(TrackFlags.DELETE, None, old), compat=True, **kwargs) == \
        "delete> totem.token (u32) = 3000"
    assert notification_line(_note(TrackFlags.MODIFY, new, old), compat=False, **kwargs) == \
        "modify> totem.token (u32) = 5000 (was 3000)"
    record = json.loads(notification_line(_note(TrackFlags.MODIFY, new, old), compat=False,
                                          as_json=True, show_binary=False))
    assert record == {"event": "modify", "key": "totem.token", "type": "u32", "value": 5000,
                      "old_type": "u32", "old_value": 3000}


@pytest.mark.parametrize("value_type, text, expected", [
    (ValueType.UINT8, "255", 255), (ValueType.INT8, "-128", -128), (ValueType.UINT32, "0x10", 16),
    (ValueType.DOUBLE, "2.5", 2.5), (ValueType.STRING, "hello world", "hello world"),
])
def test_parse_value(value_type, text, expected) -> None:
    assert parse_value(value_type, text) == expected


@pytest.mark.parametrize("value_type, text", [
    (ValueType.UINT8, "256"), (ValueType.UINT8, "-1"), (ValueType.INT8, "128"),
    (ValueType.UINT32, "five"), (ValueType.DOUBLE, "1.2.3"), (ValueType.UINT64, "1.5"),
])
def test_parse_value_refuses_what_does_not_fit(value_type, text) -> None:
    with pytest.raises(InvalidValue):
        parse_value(value_type, text)


def test_parse_value_size_limit() -> None:
    with pytest.raises(TooLong):
        parse_value(ValueType.BINARY, "x" * (MAX_VALUE_BYTES + 1))
