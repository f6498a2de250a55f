"""The store, pure: types, ranges, read-only keys, tracking, prefixes, wrapping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objdb.errors import (InvalidKey, InvalidRequest, InvalidValue, LimitReached, NoSuchKey,
                          ReadOnly, TooLong, WrongType)
from objdb.store import Entry, Store, TrackFlags
from objdb.types import MAX_STRING_BYTES, MAX_VALUE_BYTES, ValueType

ALL = TrackFlags.all_changes()


@pytest.fixture
def store() -> Store:
    store = Store()
    store.load([
        ("totem.token", "u32", 3000),
        ("totem.cluster_name", "str", "alpha"),
        ("nodelist.node.0.ring0_addr", "str", "10.0.0.1"),
        ("nodelist.node.0.nodeid", "u32", 1),
        ("logging.debug", "str", "off"),
    ])
    return store


def test_get_returns_typed_entry(store: Store) -> None:
    assert store.get("totem.token") == Entry(value_type=ValueType.UINT32, value=3000)
    with pytest.raises(NoSuchKey, match=r"^no key 'totem.nothing'$"):
        store.get("totem.nothing")


@pytest.mark.parametrize("value_type, good, bad", [
    (ValueType.INT8, (-128, 127), (-129, 128)),
    (ValueType.UINT8, (0, 255), (-1, 256)),
    (ValueType.INT16, (-32768, 32767), (-32769, 32768)),
    (ValueType.UINT16, (0, 65535), (-1, 65536)),
    (ValueType.INT32, (-(2**31), 2**31 - 1), (-(2**31) - 1, 2**31)),
    (ValueType.UINT32, (0, 2**32 - 1), (-1, 2**32)),
    (ValueType.INT64, (-(2**63), 2**63 - 1), (-(2**63) - 1, 2**63)),
    (ValueType.UINT64, (0, 2**64 - 1), (-1, 2**64)),
])
def test_integer_ranges(value_type: ValueType, good: tuple[int, int], bad: tuple[int, int]) -> None:
    store = Store()
    for number in good:
        store.set("test.key", value_type, number)
        assert store.get("test.key").value == number
    for number in bad:
        with pytest.raises(InvalidValue, match=rf"^{number} does not fit {value_type.short_name}"):
            store.set("test.key", value_type, number)
    assert store.get("test.key").value == good[-1]


def test_values_of_the_wrong_python_type_are_refused() -> None:
    store = Store()
    with pytest.raises(InvalidValue, match="needs an integer"):
        store.set("a.b", ValueType.UINT32, "5")
    with pytest.raises(InvalidValue, match="needs an integer"):
        store.set("a.b", ValueType.UINT8, True)
    with pytest.raises(InvalidValue, match="needs a number"):
        store.set("a.b", ValueType.DOUBLE, "1.0")
    with pytest.raises(InvalidValue, match="cannot contain NUL"):
        store.set("a.b", ValueType.STRING, "a\0b")
    with pytest.raises(InvalidValue, match="needs bytes"):
        store.set("a.b", ValueType.BINARY, "text")
    with pytest.raises(InvalidValue, match="does not fit flt"):
        store.set("a.b", ValueType.FLOAT, 1e39)
    assert "a.b" not in store


def test_float_is_stored_at_single_precision() -> None:
    store = Store()
    store.set("a.f", ValueType.FLOAT, 0.1)
    assert store.get("a.f").value != 0.1
    assert abs(store.get("a.f").value - 0.1) < 1e-7
    store.set("a.d", ValueType.DOUBLE, 0.1)
    assert store.get("a.d").value == 0.1


def test_value_size_limits() -> None:
    store = Store()
    store.set("a.bin", ValueType.BINARY, b"x" * MAX_VALUE_BYTES)
    with pytest.raises(TooLong, match=rf"^bin value is {MAX_VALUE_BYTES + 1} bytes"):
        store.set("a.bin", ValueType.BINARY, b"x" * (MAX_VALUE_BYTES + 1))
    store.set("a.str", ValueType.STRING, "y" * MAX_STRING_BYTES)
    with pytest.raises(TooLong, match="str value is"):
        store.set("a.str", ValueType.STRING, "y" * (MAX_STRING_BYTES + 1))
    # The limit counts UTF-8 bytes, not characters.
    with pytest.raises(TooLong):
        store.set("a.str", ValueType.STRING, "é" * (MAX_STRING_BYTES // 2 + 1))


@pytest.mark.parametrize("key", ["ab", "x" * 256, "bad key", "tötem.token", "a\nb", "semi;colon", ""])
def test_invalid_key_names(key: str) -> None:
    store = Store()
    with pytest.raises(InvalidKey):
        store.set(key, ValueType.UINT8, 1)
    assert len(store) == 0


def test_valid_key_names_at_the_limits() -> None:
    store = Store()
    for key in ("abc", "x" * 255, "a-b_c.d/e:f", "A.Z.0.9"):
        store.set(key, ValueType.UINT8, 1)
    assert len(store) == 4


def test_changing_a_keys_type_needs_force(store: Store) -> None:
    with pytest.raises(WrongType, match=r"^key 'totem.token' is u32, not str; pass force_type"):
        store.set("totem.token", ValueType.STRING, "3000")
    assert store.get("totem.token").value_type is ValueType.UINT32
    store.set("totem.token", ValueType.STRING, "3000", force_type=True)
    assert store.get("totem.token") == Entry(value_type=ValueType.STRING, value="3000")


@pytest.mark.parametrize("key", ["totem.cluster_name", "nodelist.node.0.nodeid",
                                 "runtime.members.1.status", "totem.secauth",
                                 "internal_configuration.service.0.name"])
def test_read_only_keys_refuse_clients(key: str) -> None:
    store = Store()
    store.set(key, ValueType.STRING, "before", privileged=True)
    with pytest.raises(ReadOnly, match=rf"^key '{key}' is read-only$"):
        store.set(key, ValueType.STRING, "after")
    with pytest.raises(ReadOnly):
        store.delete(key)
    assert store.get(key).value == "before"
    store.set(key, ValueType.STRING, "after", privileged=True)
    assert store.get(key).value == "after"
    store.delete(key, privileged=True)
    assert key not in store


def test_read_only_integer_refuses_adjust() -> None:
    store = Store()
    store.set("runtime.totem.pg.msg_queue_avail", ValueType.UINT32, 5, privileged=True)
    with pytest.raises(ReadOnly):
        store.adjust("runtime.totem.pg.msg_queue_avail", 1)
    entry, _notes = store.adjust("runtime.totem.pg.msg_queue_avail", 1, privileged=True)
    assert entry.value == 6


def test_trigger_keys_stay_writable() -> None:
    store = Store()
    store.set("runtime.force_gather", ValueType.UINT8, 1)
    assert store.get("runtime.force_gather").value == 1
    store.set("totem.token", ValueType.UINT32, 1)   # writable config key
    store.set("totemx.secauth", ValueType.UINT32, 1)   # not the RO exact key


@pytest.mark.parametrize("value_type, start, step, expected", [
    (ValueType.UINT8, 255, 1, 0),
    (ValueType.UINT8, 0, -1, 255),
    (ValueType.INT8, 127, 1, -128),
    (ValueType.INT8, -128, -1, 127),
    (ValueType.UINT16, 65535, 2, 1),
    (ValueType.INT32, 2**31 - 1, 1, -(2**31)),
    (ValueType.UINT32, 0, -1, 2**32 - 1),
    (ValueType.INT64, 2**63 - 1, 1, -(2**63)),
    (ValueType.UINT64, 2**64 - 1, 1, 0),
    (ValueType.UINT32, 10, 5, 15),
])
def test_adjust_wraps_like_corosync(value_type: ValueType, start: int, step: int, expected: int) -> None:
    store = Store()
    store.set("a.counter", value_type, start)
    entry, _notes = store.adjust("a.counter", step)
    assert entry == Entry(value_type=value_type, value=expected)
    assert store.get("a.counter").value == expected


def test_adjust_refuses_non_integers_and_missing_keys(store: Store) -> None:
    with pytest.raises(WrongType, match="only integer keys"):
        store.adjust("totem.cluster_name", 1)
    store.set("a.real", ValueType.DOUBLE, 1.0)
    with pytest.raises(WrongType):
        store.adjust("a.real", 1)
    with pytest.raises(NoSuchKey):
        store.adjust("a.missing", 1)


def test_prefix_iteration_is_sorted_and_bounded(store: Store) -> None:
    assert store.keys("nodelist.") == ["nodelist.node.0.nodeid", "nodelist.node.0.ring0_addr"]
    assert store.keys("totem.") == ["totem.cluster_name", "totem.token"]
    assert store.keys("") == sorted(store.keys(""))
    assert len(store.keys("")) == 5
    assert store.keys("zzz") == []
    # Plain string prefix: "totem" matches "totemx.*" too, like corosync.
    store.set("totemx.a", ValueType.UINT8, 1)
    assert store.keys("totem") == ["totem.cluster_name", "totem.token", "totemx.a"]
    # Paging with after/limit visits everything once, in order.
    pages, after = [], None
    while True:
        page = store.items("", after=after, limit=2)
        if not page:
            break
        pages.extend(key for key, _entry in page)
        after = page[-1][0]
    assert pages == store.keys("")


def test_track_exact_key_reports_old_and_new_values(store: Store) -> None:
    tracker = store.track_add("client-a", "totem.token", ALL)
    notes = store.set("totem.token", ValueType.UINT32, 5000)
    assert len(notes) == 1
    note = notes[0]
    assert (note.tracker_id, note.owner, note.event, note.key) == (
        tracker.tracker_id, "client-a", TrackFlags.MODIFY, "totem.token")
    assert note.old == Entry(value_type=ValueType.UINT32, value=3000)
    assert note.new == Entry(value_type=ValueType.UINT32, value=5000)
    # Setting the same value again is not a change.
    assert store.set("totem.token", ValueType.UINT32, 5000) == []
    # Other keys do not reach an exact tracker.
    assert store.set("totem.tokenx", ValueType.UINT32, 1) == []
    [deleted] = store.delete("totem.token")
    assert deleted.event is TrackFlags.DELETE
    assert deleted.new is None and deleted.old == Entry(value_type=ValueType.UINT32, value=5000)
    [added] = store.set("totem.token", ValueType.UINT32, 1)
    assert added.event is TrackFlags.ADD and added.old is None


def test_track_prefix_and_event_filter(store: Store) -> None:
    adds_only = store.track_add("a", "nodelist.", TrackFlags.ADD | TrackFlags.PREFIX)
    every = store.track_add("b", "nodelist.node.1", ALL | TrackFlags.PREFIX)
    notes = store.set("nodelist.node.1.nodeid", ValueType.UINT32, 2, privileged=True)
    assert [(n.tracker_id, n.event) for n in notes] == [
        (adds_only.tracker_id, TrackFlags.ADD), (every.tracker_id, TrackFlags.ADD)]
    notes = store.set("nodelist.node.1.nodeid", ValueType.UINT32, 3, privileged=True)
    assert [(n.tracker_id, n.event) for n in notes] == [(every.tracker_id, TrackFlags.MODIFY)]
    assert store.set("totem.token", ValueType.UINT32, 1) == []


def test_track_delete_and_drop_owner(store: Store) -> None:
    first = store.track_add("a", "totem.token", ALL)
    store.track_add("a", "totem.", ALL | TrackFlags.PREFIX)
    other = store.track_add("b", "totem.token", ALL)
    with pytest.raises(NoSuchKey):
        store.track_delete(first.tracker_id, owner="b")
    store.track_delete(first.tracker_id, owner="a")
    assert len(store.set("totem.token", ValueType.UINT32, 7)) == 2
    assert store.drop_owner("a") == 1
    notes = store.set("totem.token", ValueType.UINT32, 8)
    assert [n.tracker_id for n in notes] == [other.tracker_id]
    with pytest.raises(NoSuchKey):
        store.track_delete(first.tracker_id)


def test_track_flags_and_key_are_validated() -> None:
    store = Store()
    with pytest.raises(InvalidRequest):
        store.track_add("a", "totem.token", TrackFlags.PREFIX)
    with pytest.raises(InvalidRequest):
        store.track_add("a", "totem.token", 0x100 | TrackFlags.ADD)
    with pytest.raises(InvalidKey):
        store.track_add("a", "no", ALL)
    # An empty prefix tracks everything.
    store.track_add("a", "", ALL | TrackFlags.PREFIX)
    assert len(store.set("any.key", ValueType.UINT8, 1)) == 1


def test_max_keys_bound() -> None:
    store = Store(max_keys=2)
    store.set("a.one", ValueType.UINT8, 1)
    store.set("a.two", ValueType.UINT8, 1)
    with pytest.raises(LimitReached):
        store.set("a.three", ValueType.UINT8, 1)
    store.set("a.two", ValueType.UINT8, 2)   # changing an existing key still works
    assert store.stats().keys == 2
    assert store.stats().refused == 1


_OPS = st.lists(st.tuples(
    st.sampled_from(["set", "delete", "adjust"]),
    st.sampled_from(["a.x", "a.y", "b.x", "ab.z"]),
    st.sampled_from([ValueType.UINT8, ValueType.INT16, ValueType.STRING]),
    st.integers(-300, 300),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_replaying_notifications_rebuilds_the_store(operations) -> None:
    """A tracker of everything sees each change with the right old value, and
    applying its notifications to an empty map gives the store's content."""
    store = Store()
    store.track_add("watcher", "", ALL | TrackFlags.PREFIX)
    replica: dict[str, Entry] = {}
    for operation, key, value_type, number in operations:
        value: object = str(number) if value_type is ValueType.STRING else number
        try:
            if operation == "set":
                notes = store.set(key, value_type, value, force_type=number % 2 == 0)
            elif operation == "delete":
                notes = store.delete(key)
            else:
                notes = store.adjust(key, number)[1]
        except (InvalidValue, WrongType, NoSuchKey):
            continue
        for note in notes:
            assert note.old == replica.get(note.key)
            if note.event is TrackFlags.DELETE:
                del replica[note.key]
            else:
                assert note.new is not None
                replica[note.key] = note.new
    assert replica == {key: entry for key, entry in store.items("")}


_SETS = st.lists(st.tuples(
    st.sampled_from(["a.x", "a.y", "runtime.ro", "x", "totem.token", "a.z"]),
    st.sampled_from([ValueType.UINT8, ValueType.INT16, ValueType.STRING, ValueType.DOUBLE]),
    st.integers(-300, 300),
    st.booleans(),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(_SETS, st.booleans())
def test_set_many_is_set_applied_item_by_item(items, privileged) -> None:
    """Same entries, errors (class, message, position), notifications and counters."""
    one_by_one, batched = Store(max_keys=5), Store(max_keys=5)
    for store in (one_by_one, batched):
        store.load([("totem.token", "u32", 3000)])
        store.track_add("watcher", "", ALL | TrackFlags.PREFIX)
    sets = [(key, value_type, str(number) if value_type is ValueType.STRING else number, force)
            for key, value_type, number, force in items]
    expected_errors, expected_notes, expected_changed = [], [], []
    for index, (key, value_type, value, force) in enumerate(sets):
        try:
            notes = one_by_one.set(key, value_type, value, privileged=privileged, force_type=force)
        except (InvalidKey, InvalidValue, WrongType, ReadOnly, LimitReached) as error:
            expected_errors.append((index, type(error), str(error)))
            continue
        if notes:
            expected_notes.append(notes)
            expected_changed.append((key, one_by_one.peek(key)))
    outcome = batched.set_many(sets, privileged=privileged)
    assert [(index, type(error), str(error)) for index, error in outcome.errors] == expected_errors
    assert outcome.notifications == expected_notes
    assert outcome.changed == expected_changed   # with a watcher, every change notifies
    assert batched.items("") == one_by_one.items("")
    assert batched.stats() == one_by_one.stats()


def test_set_many_reports_changes_not_unchanged_sets(store: Store) -> None:
    outcome = store.set_many([("totem.token", ValueType.UINT32, 3000, False),   # same value
                              ("a.new", ValueType.UINT8, 1, False),
                              ("totem.token", ValueType.STRING, "x", False)])   # wrong type
    assert outcome.changed == [("a.new", Entry(value_type=ValueType.UINT8, value=1))]
    assert [(index, type(error)) for index, error in outcome.errors] == [(2, WrongType)]
    assert outcome.notifications == []   # nobody tracks
    with pytest.raises(ValueError):
        store.set_many([("a.bad", 99, 1, False)])
    assert store.stats().refused == 2
