"""The cmap service logic with stand-in connections (no processes): privilege,
garbage, the bound on trackers that do not read."""

from __future__ import annotations

import os

import pytest

from coroipc import errors as ipc_errors
from objdb import codec
from objdb.errors import InvalidKey, InvalidRequest, LimitReached, NoSuchKey, ReadOnly, WrongType
from objdb.service import CmapService
from objdb.shm_table import MISS, STATE_RETIRED, ShmTableReader, ShmTableWriter, key_hash
from objdb.store import Store, TrackFlags
from objdb.types import ValueType


class FakeConnection:
    """What the service uses of a coroipc connection; an event backlog bounded at ``capacity``."""

    def __init__(self, uid: int | None = None, capacity: int = 1000) -> None:
        self.uid = os.geteuid() if uid is None else uid
        self.pid = 4242
        self.events: list[tuple[int, bytes]] = []
        self.capacity = capacity
        self.closed = False

    def send_event(self, function: int, payload: bytes) -> None:
        if self.closed:
            raise ipc_errors.ConnectionLost("closed")
        if len(self.events) >= self.capacity:
            raise ipc_errors.WouldBlock("event backlog full")
        self.events.append((function, payload))

    def close(self) -> None:
        self.closed = True


def call(service: CmapService, connection: FakeConnection, request: codec.Request) -> bytes | None:
    function, payload = codec.encode_request(request)
    return service.on_request(connection, function, memoryview(payload))


@pytest.fixture
def service() -> CmapService:
    store = Store()
    store.load([("totem.token", "u32", 3000), ("runtime.members.1.status", "str", "joined")])
    return service_for(store)


def service_for(store: Store, **options) -> CmapService:
    return CmapService(store, **options)


def connect(service: CmapService, **options) -> FakeConnection:
    connection = FakeConnection(**options)
    service.on_connect(connection)
    return connection


def test_get_set_round_trip_through_the_service(service: CmapService) -> None:
    client = connect(service)
    codec.decode_empty_response(call(service, client, codec.Set(
        key="totem.token", value_type=ValueType.UINT32, value=5000)))
    entry = codec.decode_value_response(call(service, client, codec.Get(key="totem.token")))
    assert entry.value == 5000
    with pytest.raises(NoSuchKey):
        codec.decode_value_response(call(service, client, codec.Get(key="totem.none")))


def test_internal_hello_grants_privilege_only_to_the_daemon_uid(service: CmapService) -> None:
    plain = connect(service)
    with pytest.raises(ReadOnly, match="read-only"):
        codec.decode_empty_response(call(service, plain, codec.Set(
            key="runtime.members.1.status", value_type=ValueType.STRING, value="left")))
    stranger = connect(service, uid=os.geteuid() + 1)
    if os.geteuid() != 0:
        with pytest.raises(ReadOnly, match="may not open an internal"):
            codec.decode_hello_response(call(service, stranger, codec.Hello(options=1)))
    internal = connect(service)
    assert codec.decode_hello_response(call(service, internal, codec.Hello(options=1)))[1] is True
    codec.decode_empty_response(call(service, internal, codec.Set(
        key="runtime.members.1.status", value_type=ValueType.STRING, value="left")))
    assert service.store.get("runtime.members.1.status").value == "left"


def test_garbage_is_answered_then_the_connection_is_dropped(service: CmapService) -> None:
    noisy = connect(service)
    quiet = connect(service)
    for _index in range(8):
        with pytest.raises(InvalidRequest, match="malformed request"):
            codec.decode_empty_response(service.on_request(noisy, 2, memoryview(b"\x01\x02garbage")))
    assert not noisy.closed
    assert service.on_request(noisy, 77, memoryview(b"")) is None
    assert noisy.closed
    stats = service.stats()
    assert (stats.bad_requests, stats.dropped_garbage) == (9, 1)
    # Everyone else is still served.
    assert codec.decode_value_response(call(service, quiet, codec.Get(key="totem.token"))).value == 3000


def test_notifications_carry_old_and_new_values(service: CmapService) -> None:
    tracker = connect(service)
    writer = connect(service)
    handle = codec.decode_u64_response(call(service, tracker, codec.TrackAdd(
        key="totem.token", flags=int(TrackFlags.all_changes()))))
    call(service, writer, codec.Set(key="totem.token", value_type=ValueType.UINT32, value=7))
    [(function, payload)] = tracker.events
    assert function == codec.Function.NOTIFY
    note = codec.decode_notify(payload)
    assert (note.tracker_id, note.event, note.key) == (handle, TrackFlags.MODIFY, "totem.token")
    assert (note.old.value, note.new.value) == (3000, 7)


def test_a_tracker_that_does_not_read_is_dropped_and_others_keep_going(service: CmapService) -> None:
    slow = connect(service, capacity=3)
    healthy = connect(service)
    for connection in (slow, healthy):
        call(service, connection, codec.TrackAdd(key="totem.token", flags=int(TrackFlags.MODIFY)))
    writer = connect(service)
    for value in range(10):
        call(service, writer, codec.Set(key="totem.token", value_type=ValueType.UINT32, value=value))
    assert slow.closed and len(slow.events) == 3
    assert [codec.decode_notify(p).new.value for _f, p in healthy.events] == list(range(10))
    assert service.stats().dropped_slow == 1
    assert len(service.store.trackers()) == 1


def test_disconnect_removes_trackers_and_limits_apply() -> None:
    service = service_for(Store(), max_trackers=2)
    client = connect(service)
    flags = int(TrackFlags.ADD)
    call(service, client, codec.TrackAdd(key="a.one", flags=flags))
    call(service, client, codec.TrackAdd(key="a.two", flags=flags))
    with pytest.raises(LimitReached):
        codec.decode_u64_response(call(service, client, codec.TrackAdd(key="a.three", flags=flags)))
    service.on_disconnect(client)
    assert service.store.trackers() == []


def test_track_delete_is_per_connection(service: CmapService) -> None:
    owner = connect(service)
    other = connect(service)
    handle = codec.decode_u64_response(call(service, owner, codec.TrackAdd(
        key="totem.token", flags=int(TrackFlags.ADD))))
    with pytest.raises(NoSuchKey):
        codec.decode_empty_response(call(service, other, codec.TrackDelete(tracker_id=handle)))
    codec.decode_empty_response(call(service, owner, codec.TrackDelete(tracker_id=handle)))


def test_set_many_applies_each_item_on_its_own(service: CmapService) -> None:
    client = connect(service)
    sets = (
        codec.SetItem("a.one", ValueType.UINT8, 1),
        codec.SetItem("runtime.members.1.status", ValueType.STRING, "x"),
        codec.SetItem("totem.token", ValueType.STRING, "x"),
        codec.SetItem("a.two", ValueType.UINT8, 2),
    )
    statuses = codec.decode_statuses_response(call(service, client, codec.SetMany(sets=sets)))
    assert statuses == [0, ReadOnly.status, WrongType.status, 0]
    assert service.store.keys("a.") == ["a.one", "a.two"]


def test_cached_get_replies_follow_every_change(service: CmapService) -> None:
    client = connect(service)

    def get() -> object:
        return codec.decode_value_reply(call(service, client, codec.Get(key="totem.token")))

    assert get() == (3000, ValueType.UINT32)
    assert get() == (3000, ValueType.UINT32)          # served from the cache
    service.store.set("totem.token", ValueType.UINT32, 4000)
    assert get() == (4000, ValueType.UINT32)
    service.store.set("totem.token", ValueType.STRING, "x", force_type=True)
    assert get() == ("x", ValueType.STRING)
    service.store.delete("totem.token")
    with pytest.raises(NoSuchKey):
        get()
    service.store.set("totem.token", ValueType.STRING, "x")
    assert get() == ("x", ValueType.STRING)


# -- the shared-memory mirror ---------------------------------------------------------

class TableWatchingConnection(FakeConnection):
    """Reads the shared table at the moment each notification is sent."""

    def __init__(self, service: CmapService, **options) -> None:
        super().__init__(**options)
        self.service = service
        self.reader = ShmTableReader(os.getpid(), service.table_locator)
        self.remaps = 0
        self.seen: list[tuple[object, object]] = []

    def send_event(self, function: int, payload: bytes) -> None:
        note = codec.decode_notify(payload)
        raw = note.key.encode()
        found = self.reader.lookup(raw, key_hash(raw))
        if found is None and self.reader.state == STATE_RETIRED:
            self.reader.close()   # what a client does: ask for the new generation, remap
            self.reader = ShmTableReader(os.getpid(), self.service.table_locator)
            self.remaps += 1
            found = self.reader.lookup(raw, key_hash(raw))
        self.seen.append((note, found))
        super().send_event(function, payload)


def test_every_change_is_in_the_table_before_its_notification_goes_out() -> None:
    store = Store()
    store.load([("totem.token", "u32", 3000)])
    mirror = ShmTableWriter(initial_slots=8, initial_heap_bytes=1024)
    service = CmapService(store, mirror=mirror)
    watcher = TableWatchingConnection(service)
    try:
        assert watcher.reader.lookup(b"totem.token", key_hash(b"totem.token")) == (
            3000, ValueType.UINT32)
        service.on_connect(watcher)
        writer = connect(service)
        call(service, watcher, codec.TrackAdd(key="app.", flags=int(
            TrackFlags.all_changes() | TrackFlags.PREFIX)))
        codec.decode_empty_response(call(service, writer, codec.Set(
            key="app.a", value_type=ValueType.UINT8, value=1)))
        call(service, writer, codec.SetMany(sets=(codec.SetItem("app.b", ValueType.STRING, "x"),
                                                  codec.SetItem("app.a", ValueType.UINT8, 2))))
        assert call(service, writer, codec.SetNowaitMany(sets=tuple(
            codec.SetItem(f"app.n{index}", ValueType.UINT64, index) for index in range(50)))) is None
        codec.decode_value_response(call(service, writer, codec.Adjust(key="app.a", step=5)))
        codec.decode_empty_response(call(service, writer, codec.Delete(key="app.b")))
        service.publish([("app.published", ValueType.UINT32, 9)])
        assert len(watcher.seen) == 56
        for note, in_table in watcher.seen:
            if note.new is None:
                assert in_table is MISS
            else:
                assert in_table == (note.new.value, note.new.value_type)
        # 8 slots: the batch grew the table, and the watcher followed it.
        assert mirror.stats().regenerations >= 1 and watcher.remaps >= 1
    finally:
        watcher.reader.close()
        mirror.close()


def test_pipelined_batches_report_their_first_failure_at_sync(service: CmapService) -> None:
    client = connect(service)
    sets = (codec.SetItem("a.one", ValueType.UINT8, 1),
            codec.SetItem("totem.token", ValueType.STRING, "x"),               # wrong type
            codec.SetItem("runtime.members.1.status", ValueType.STRING, "y"),  # read-only
            codec.SetItem("a.two", ValueType.UINT8, 2))
    assert call(service, client, codec.SetNowaitMany(sets=sets)) is None
    failed, first = codec.decode_sync_response(call(service, client, codec.Sync()))
    assert failed == 2 and isinstance(first, WrongType) and "'totem.token'" in str(first)
    assert service.store.keys("a.") == ["a.one", "a.two"]
    assert codec.decode_sync_response(call(service, client, codec.Sync())) == (0, None)


def test_table_info_says_where_the_table_is_or_that_there_is_none(service: CmapService) -> None:
    client = connect(service)
    assert codec.decode_table_info_response(call(service, client, codec.TableInfo())) is None
    mirror = ShmTableWriter()
    try:
        mirrored = CmapService(Store(), mirror=mirror)
        other = connect(mirrored)
        where = codec.decode_table_info_response(call(mirrored, other, codec.TableInfo()))
        assert where == (mirror.locator.fd, mirror.locator.token)
    finally:
        mirror.close()


def test_get_many_answers_in_order_and_within_the_budget(service: CmapService) -> None:
    client = connect(service)
    service.store.set("app.big.1", ValueType.BINARY, b"a" * 16384)
    service.store.set("app.big.2", ValueType.BINARY, b"b" * 16384)
    keys = ("totem.token", "app.none", *["app.big.1", "app.big.2"] * 3, "totem.token")
    answered = codec.decode_get_many_response(call(service, client, codec.GetMany(keys=keys)))
    assert answered[:2] == [service.store.get("totem.token"), None]
    assert 0 < len(answered) < len(keys)          # the 64 KiB budget cut the reply
    assert answered[2:] == [service.store.get(key) for key in keys[2:len(answered)]]
    with pytest.raises(InvalidKey):
        codec.decode_get_many_response(call(service, client, codec.GetMany(keys=("ok.key", "x"))))
