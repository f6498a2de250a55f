"""The store: typed values under flat dotted keys, with change tracking.

Pure: no I/O, no clock, no threads. Every change returns the notifications it
caused (one per matching tracker, with the old and the new value); the caller
(``objdb.service``) delivers them. That keeps tracking testable without a
process and keeps the order of notifications the order of changes.

Rules, decided here once:

- A set of a value equal to the current one (same type, same value) is not a
  change: no notification (as corosync's icmap).
- A set that would change an existing key's type is refused with
  :class:`WrongType` unless ``force_type=True`` (corosync replaces silently;
  we make the caller say so, and ``coro cmap set --force-type`` exists).
- Read-only keys (``objdb.keys.is_read_only``) refuse set, delete and
  increment unless ``privileged=True``.
- Increment and decrement wrap in two's complement like corosync's
  ``icmap_adjust_int`` and only work on the integer types.
- A client's set of a trigger key (``objdb.keys.TRIGGER_KEYS``: the
  ``stats.clear.*`` of ``coro cmap -C``, runtime.blackbox.dump_flight_data)
  stores how many such sets there were (u64), whatever value was written:
  each request is a change, even the same value twice, so the process that
  acts on it sees every one.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass
from typing import Hashable, Iterable, NamedTuple

from objdb import keys as key_rules
from objdb.errors import CmapError, InvalidRequest, LimitReached, NoSuchKey, ReadOnly, WrongType
from objdb.types import INTEGER_BOUNDS, Value, ValueType, check_value, wrap_integer

_UINT64 = ValueType.UINT64

#: Default bound on the number of keys (a runaway writer gets LimitReached).
DEFAULT_MAX_KEYS = 200_000


class TrackFlags(enum.IntFlag):
    """What a tracker wants to hear about; numbering as corosync's CMAP_TRACK_*."""

    DELETE = 1
    MODIFY = 2
    ADD = 4
    PREFIX = 8

    @classmethod
    def all_changes(cls) -> "TrackFlags":
        """ADD | DELETE | MODIFY."""
        return cls.ADD | cls.DELETE | cls.MODIFY


#: The three change events (a notification's ``event`` is exactly one of them).
CHANGE_EVENTS = (TrackFlags.ADD, TrackFlags.DELETE, TrackFlags.MODIFY)
_VALID_FLAGS = int(TrackFlags.all_changes() | TrackFlags.PREFIX)


class Entry(NamedTuple):
    """A typed value as the store holds it (immutable).

    A NamedTuple rather than a frozen dataclass because every set builds one:
    a tuple is built about four times faster, and sets are objdb's hot path.
    """

    value_type: ValueType
    value: Value


_new_entry = tuple.__new__


@dataclass(frozen=True, slots=True, kw_only=True)
class Tracker:
    """A subscription: ``key`` is an exact key, or a prefix with ``PREFIX`` in flags."""

    tracker_id: int
    owner: Hashable
    key: str
    flags: TrackFlags


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One change as one tracker sees it. ``old`` is None for ADD, ``new`` for DELETE."""

    tracker_id: int
    owner: Hashable
    event: TrackFlags
    key: str
    new: Entry | None
    old: Entry | None


class SetOutcome(NamedTuple):
    """What :meth:`Store.set_many` did (a NamedTuple, like Entry: one per set
    request, so it should cost little to build).

    ``errors``: (index of the item, the error it got) for each refused set;
    ``changed``: (key, new entry) for each set that changed something, in
    order (a set of the value a key already holds is not a change);
    ``notifications``: one list per change that some tracker hears of, in
    order of the changes.
    """

    errors: list[tuple[int, CmapError]]
    changed: list[tuple[str, Entry]]
    notifications: list[list[Notification]]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """Counters of a store since it was created."""

    keys: int
    trackers: int
    sets: int
    deletes: int
    adjusts: int
    notifications: int
    refused: int


class Store:
    """The object database: key -> :class:`Entry`, plus trackers.

    Args:
        max_keys: the most keys the store will hold; a set of a new key beyond
            it raises :class:`LimitReached`.
    """

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self._entries: dict[str, Entry] = {}
        self._sorted_keys: list[str] | None = []   # None: must re-sort before iterating
        self._max_keys = max_keys
        self._read_only_memo: dict[str, bool] = {}
        self._exact_trackers: dict[str, dict[int, Tracker]] = {}
        self._prefix_trackers: dict[str, dict[int, Tracker]] = {}
        self._trackers: dict[int, Tracker] = {}
        self._next_tracker_id = 1
        self._counts = {"sets": 0, "deletes": 0, "adjusts": 0, "notifications": 0, "refused": 0}

    # -- reading ---------------------------------------------------------------

    def get(self, key: str) -> Entry:
        """The entry under ``key``.

        Raises:
            InvalidKey: the key name is not valid.
            NoSuchKey: no such key.
        """
        entry = self._entries.get(key)
        if entry is None:
            key_rules.check_key(key)
            raise NoSuchKey(f"no key {key!r}")
        return entry

    def peek(self, key: str) -> Entry | None:
        """The entry under ``key``, or None (no validation: for hot paths)."""
        return self._entries.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, in sorted order.

        Raises:
            InvalidKey: the prefix is not valid.
        """
        return [key for key, _entry in self.items(prefix)]

    def items(self, prefix: str = "", *, after: str | None = None,
              limit: int | None = None) -> list[tuple[str, Entry]]:
        """(key, entry) for keys starting with ``prefix``, sorted by key.

        Args:
            prefix: the string prefix ("" for all keys).
            after: only keys sorting strictly after this one (for paging).
            limit: at most this many.

        Raises:
            InvalidKey: the prefix is not valid.
        """
        key_rules.check_prefix(prefix)
        ordered = self._ordered_keys()
        start = bisect.bisect_left(ordered, prefix)
        if after is not None and after >= prefix:
            start = bisect.bisect_right(ordered, after)
        found: list[tuple[str, Entry]] = []
        for index in range(start, len(ordered)):
            key = ordered[index]
            if not key.startswith(prefix) or (limit is not None and len(found) >= limit):
                break
            found.append((key, self._entries[key]))
        return found

    def _ordered_keys(self) -> list[str]:
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self._entries)
        return self._sorted_keys

    # -- changing --------------------------------------------------------------

    def set(self, key: str, value_type: ValueType, value: object, *,
            privileged: bool = False, force_type: bool = False) -> list[Notification]:
        """Store ``value`` of ``value_type`` under ``key``.

        Args:
            key: the key (created if absent).
            value_type: its type.
            value: the value; validated and normalised by ``objdb.types.check_value``.
            privileged: allowed to change read-only keys.
            force_type: allowed to change an existing key's type.

        Returns:
            The notifications the change caused (empty if nothing changed).

        Raises:
            InvalidKey, InvalidValue, TooLong: the key or value is not valid.
            ReadOnly: the key is read-only and the caller is not privileged.
            WrongType: the key exists with another type and ``force_type`` is False.
            LimitReached: the store is full.
        """
        outcome = self.set_many(((key, value_type, value, force_type),), privileged=privileged)
        if outcome.errors:
            raise outcome.errors[0][1]
        return outcome.notifications[0] if outcome.notifications else []

    def set_many(self, items: Iterable[tuple[str, ValueType, object, bool]], *,
                 privileged: bool = False) -> "SetOutcome":
        """Apply (key, type, value, force_type) sets in order, each on its own,
        with the rules of :meth:`set` (one failing does not stop the rest).

        Args:
            items: the sets.
            privileged: allowed to change read-only keys.

        Returns:
            What happened: :class:`SetOutcome`.

        Raises:
            ValueError: a type that is neither a ValueType nor its number (a
                caller's bug; the sets before it are applied).
        """
        entries, counts, max_keys = self._entries, self._counts, self._max_keys
        check_key, read_only_memo = key_rules.check_key, self._read_only_memo
        trigger_keys = key_rules.TRIGGER_KEYS
        integer_bounds = INTEGER_BOUNDS
        errors: list[tuple[int, CmapError]] = []
        changed: list[tuple[str, Entry]] = []
        notifications: list[list[Notification]] = []
        try:
            for index, (key, value_type, value, force_type) in enumerate(items):
                try:
                    old = entries.get(key)
                    if old is None:
                        check_key(key)
                    if value_type.__class__ is not ValueType:
                        value_type = ValueType(value_type)
                    bounds = integer_bounds.get(value_type)
                    if (bounds is not None and value.__class__ is int
                            and bounds[0] <= value <= bounds[1]):
                        normalised = value   # what check_value returns for it, sooner
                    else:
                        normalised = check_value(value_type, value)
                    if not privileged:
                        read_only = read_only_memo.get(key)
                        if read_only is None:
                            read_only = self._remember_read_only(key)
                        if read_only:
                            raise ReadOnly(f"key {key!r} is read-only")
                        if key in trigger_keys:
                            # A request, not a value (keys.TRIGGER_KEYS): count it.
                            value_type, force_type = _UINT64, True
                            normalised = wrap_integer(_UINT64, old[1] + 1 if old is not None
                                                      and old[0] is _UINT64 else 1)
                    if old is None:
                        if len(entries) >= max_keys:
                            raise LimitReached(f"the store holds its maximum of {max_keys} keys")
                    elif old[0] is not value_type:
                        if not force_type:
                            raise WrongType(
                                f"key {key!r} is {old.value_type.short_name}, not "
                                f"{value_type.short_name}; pass force_type (coro cmap set "
                                "--force-type) to change its type"
                            )
                    elif old[1] == normalised:
                        # Not a change (as corosync's icmap: no notification).
                        # Python's 0 == 0.0 == False is covered by the type check;
                        # NaN != NaN makes every set of NaN a change, harmlessly.
                        continue
                except CmapError as error:
                    counts["refused"] += 1
                    errors.append((index, error))
                    continue
                except Exception:
                    counts["refused"] += 1
                    raise
                new = _new_entry(Entry, (value_type, normalised))
                entries[key] = new
                changed.append((key, new))
                if old is None:
                    self._sorted_keys = None
                if self._trackers:
                    found = self._notify(TrackFlags.ADD if old is None else TrackFlags.MODIFY,
                                         key, new, old)
                    if found:
                        notifications.append(found)
        finally:
            counts["sets"] += len(changed)
        return SetOutcome(errors, changed, notifications)

    def _remember_read_only(self, key: str) -> bool:
        """``keys.is_read_only(key)``, memoised (bounded like the keys): a
        pure function of the key that every unprivileged set asks."""
        read_only = key_rules.is_read_only(key)
        if len(self._read_only_memo) >= self._max_keys:
            self._read_only_memo.clear()
        self._read_only_memo[key] = read_only
        return read_only

    def delete(self, key: str, *, privileged: bool = False) -> list[Notification]:
        """Remove ``key``.

        Returns:
            The notifications the deletion caused.

        Raises:
            InvalidKey: the key name is not valid.
            NoSuchKey: no such key.
            ReadOnly: the key is read-only and the caller is not privileged.
        """
        old = self._entries.get(key)
        if old is None:
            self._counts["refused"] += 1
            key_rules.check_key(key)
            raise NoSuchKey(f"no key {key!r}")
        if not privileged and key_rules.is_read_only(key):
            self._counts["refused"] += 1
            raise ReadOnly(f"key {key!r} is read-only")
        del self._entries[key]
        self._sorted_keys = None
        self._counts["deletes"] += 1
        return self._notify(TrackFlags.DELETE, key, None, old)

    def adjust(self, key: str, step: int, *,
               privileged: bool = False) -> tuple[Entry, list[Notification]]:
        """Add ``step`` (negative to decrement) to an integer key, wrapping.

        Returns:
            The new entry and the notifications.

        Raises:
            NoSuchKey: no such key.
            WrongType: the key is not of an integer type.
            ReadOnly: read-only key, caller not privileged.
        """
        entry = self.get(key)
        if not entry.value_type.is_integer:
            self._counts["refused"] += 1
            raise WrongType(
                f"key {key!r} is {entry.value_type.short_name}; only integer keys can be "
                "incremented or decremented"
            )
        assert isinstance(entry.value, int)
        new_value = wrap_integer(entry.value_type, entry.value + step)
        notifications = self.set(key, entry.value_type, new_value, privileged=privileged)
        self._counts["adjusts"] += 1
        return self._entries[key], notifications

    # -- tracking --------------------------------------------------------------

    def track_add(self, owner: Hashable, key: str, flags: int) -> Tracker:
        """Subscribe ``owner`` to changes of ``key`` (a prefix if ``flags`` has PREFIX).

        The key need not exist yet: tracking a key that is created later
        reports its ADD.

        Raises:
            InvalidKey: not a valid key (or prefix).
            InvalidRequest: flags with unknown bits or with no change event.
        """
        if int(flags) & ~_VALID_FLAGS or not int(flags) & int(TrackFlags.all_changes()):
            raise InvalidRequest(
                f"track flags {int(flags):#x}: use ADD, DELETE, MODIFY (at least one) and PREFIX"
            )
        track_flags = TrackFlags(int(flags))
        if TrackFlags.PREFIX in track_flags:
            key_rules.check_prefix(key)
            table = self._prefix_trackers
        else:
            key_rules.check_key(key)
            table = self._exact_trackers
        tracker = Tracker(tracker_id=self._next_tracker_id, owner=owner, key=key, flags=track_flags)
        self._next_tracker_id += 1
        self._trackers[tracker.tracker_id] = tracker
        table.setdefault(key, {})[tracker.tracker_id] = tracker
        return tracker

    def track_delete(self, tracker_id: int, owner: Hashable | None = None) -> Tracker:
        """End a subscription. With ``owner`` given, only that owner's tracker matches.

        Raises:
            NoSuchKey: no tracker with that id (for this owner).
        """
        tracker = self._trackers.get(tracker_id)
        if tracker is None or (owner is not None and tracker.owner != owner):
            raise NoSuchKey(f"no tracker {tracker_id}")
        del self._trackers[tracker_id]
        table = (self._prefix_trackers if TrackFlags.PREFIX in tracker.flags
                 else self._exact_trackers)
        bucket = table[tracker.key]
        del bucket[tracker_id]
        if not bucket:
            del table[tracker.key]
        return tracker

    def drop_owner(self, owner: Hashable) -> int:
        """End every subscription of ``owner`` (a connection went away). Returns how many."""
        mine = [tracker_id for tracker_id, tracker in self._trackers.items()
                if tracker.owner == owner]
        for tracker_id in mine:
            self.track_delete(tracker_id)
        return len(mine)

    def trackers(self, owner: Hashable | None = None) -> list[Tracker]:
        """The live trackers (of ``owner`` if given), by id."""
        return [tracker for tracker in self._trackers.values()
                if owner is None or tracker.owner == owner]

    def _notify(self, event: TrackFlags, key: str, new: Entry | None,
                old: Entry | None) -> list[Notification]:
        if not self._trackers:
            return []
        notifications = []
        candidates = list(self._exact_trackers.get(key, {}).values())
        for prefix, bucket in self._prefix_trackers.items():
            if key.startswith(prefix):
                candidates.extend(bucket.values())
        if len(candidates) > 1:
            candidates.sort(key=lambda tracker: tracker.tracker_id)
        for tracker in candidates:
            if event in tracker.flags:
                notifications.append(Notification(
                    tracker_id=tracker.tracker_id, owner=tracker.owner, event=event,
                    key=key, new=new, old=old))
        self._counts["notifications"] += len(notifications)
        return notifications

    def load(self, items: Iterable[tuple[str, ValueType | str, object]]) -> int:
        """Set many keys with privilege (start-up from the configuration).

        Args:
            items: (key, type or type name, value) triples.

        Returns:
            How many keys were set.

        Raises:
            CmapError: the first item that is not valid (nothing after it is loaded).
        """
        count = 0
        for key, type_or_name, value in items:
            value_type = (type_or_name if isinstance(type_or_name, ValueType)
                          else ValueType.from_name(str(type_or_name)))
            self.set(key, value_type, value, privileged=True, force_type=True)
            count += 1
        return count

    def stats(self) -> StoreStats:
        """The store's counters."""
        return StoreStats(keys=len(self._entries), trackers=len(self._trackers), **self._counts)

