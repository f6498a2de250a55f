"""The cmap service's messages: function numbers and the request/event objects.

``objdb.codec`` encodes and decodes them (and re-exports every name here, so
``codec.Get`` and ``codec.Function`` are what callers use). Frozen
dataclasses, except :class:`SetItem`, a NamedTuple because batches hold
thousands of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple, Union

from objdb.store import Entry, TrackFlags
from objdb.types import Value, ValueType

__all__ = ["Function", "Hello", "Get", "Set", "Delete", "Adjust", "Iterate", "TrackAdd",
           "TrackDelete", "SetItem", "SetMany", "SetNowait", "Sync", "TableInfo",
           "SetNowaitMany", "GetMany", "NotifyEvent", "Request"]


class Function(enum.IntEnum):
    """coroipc function numbers of the cmap service."""

    HELLO = 1
    GET = 2
    SET = 3
    DELETE = 4
    ADJUST = 5
    ITERATE = 6
    TRACK_ADD = 7
    TRACK_DELETE = 8
    SET_MANY = 9
    SET_NOWAIT = 10
    SYNC = 11
    TABLE_INFO = 12
    SET_NOWAIT_MANY = 13
    GET_MANY = 14
    NOTIFY = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    options: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Get:
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Set:
    key: str
    value_type: ValueType
    value: Value
    force_type: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Adjust:
    key: str
    step: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Iterate:
    prefix: str
    after: str | None
    max_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackAdd:
    key: str
    flags: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackDelete:
    tracker_id: int


class SetItem(NamedTuple):
    """One set inside SET_MANY or SET_NOWAIT. A NamedTuple rather than a frozen
    dataclass because batches decode thousands of them and a tuple is built
    about three times faster."""

    key: str
    value_type: ValueType
    value: Value
    force_type: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMany:
    sets: tuple[SetItem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetNowait:
    """A SET whose outcome is reported by the next SYNC (pipelining)."""

    set: SetItem


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync:
    """Barrier: answered once every earlier request of the connection was applied."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TableInfo:
    """Ask for the name of the shared-memory table (the reply may be empty)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetNowaitMany:
    """Many SET_NOWAITs in one message; failures are reported by the next SYNC."""

    sets: tuple[SetItem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetMany:
    """Several gets in one round trip (the reply may answer only the first ones)."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyEvent:
    """A change notification as the client receives it."""

    tracker_id: int
    event: TrackFlags
    key: str
    new: Entry | None
    old: Entry | None


Request = Union[Hello, Get, Set, Delete, Adjust, Iterate, TrackAdd, TrackDelete, SetMany,
                SetNowait, Sync, TableInfo, SetNowaitMany, GetMany]
