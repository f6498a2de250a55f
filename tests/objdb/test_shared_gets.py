"""Gets from objdb's shared-memory table through CmapClient, and the buffered set_nowait."""

from __future__ import annotations

import os
import time

import pytest

import clients.cmap
import objdb.table_client
from clients.cmap import (CmapClient, ConnectionLost, InvalidKey, NoSuchKey, ReadOnly, TrackFlags,
                          ValueType)
from objdb import codec
from objdb.process import ObjdbProcess
from objdb.shm_table import ShmTableReader, TableLocator, TableUnavailable

pytestmark = pytest.mark.multiprocess


def table_locator(cmap: CmapClient) -> TableLocator:
    fd, token = codec.decode_table_info_response(cmap._call(codec.TableInfo()))
    return TableLocator(fd=fd, token=token)


def test_gets_come_from_the_table_and_read_the_latest_write(node) -> None:
    with CmapClient.connect(node.run_dir) as reader, CmapClient.connect(node.run_dir) as writer:
        assert reader.table_unavailable == ""
        assert reader.get("totem.token") == (3000, ValueType.UINT32)
        for value in range(200):
            writer.set("app.shared", value, ValueType.UINT32)
            assert reader.get("app.shared") == (value, ValueType.UINT32)   # no stale read
            assert writer.get("app.shared") == (value, ValueType.UINT32)   # read-your-writes
        writer.set("app.shared", "now text", ValueType.STRING, force_type=True)
        assert reader.get_string("app.shared") == "now text"
        writer.delete("app.shared")
        trips = reader.round_trip_gets
        with pytest.raises(NoSuchKey, match="^no key 'app.shared'$"):
            reader.get("app.shared")
        with pytest.raises(InvalidKey):
            reader.get("no")
        assert reader.round_trip_gets == trips
        assert reader.shared_gets >= 201


def test_a_tracker_notified_of_a_change_then_reads_it(node) -> None:
    seen: list[int] = []
    with CmapClient.connect(node.run_dir) as tracker, CmapClient.connect(node.run_dir) as writer:
        tracker.track_add("app.tracked", TrackFlags.all_changes(),
                          lambda note: seen.append(tracker.get_u64("app.tracked")))
        for value in range(1, 101):
            writer.set("app.tracked", value, ValueType.UINT64)
            deadline = time.monotonic() + 10
            while len(seen) < value:
                assert time.monotonic() < deadline, "notification not received"
                tracker.dispatch(timeout=1.0)
        # In the callback the key already held (at least) the notified value.
        assert seen == list(range(1, 101))
        assert tracker.shared_gets > 0


def test_unconfirmed_pipelined_sets_are_read_back_by_a_round_trip(node) -> None:
    with CmapClient.connect(node.run_dir) as cmap:
        cmap.set("app.rw", 0, ValueType.UINT32)
        for value in range(1, 50):
            cmap.set_nowait("app.rw", value, ValueType.UINT32)
            trips = cmap.round_trip_gets
            assert cmap.get_u32("app.rw") == value
            assert cmap.round_trip_gets == trips + 1   # flushed, then asked objdb
        shared = cmap.shared_gets
        assert cmap.get_u32("app.rw") == 49             # confirmed: from the table again
        assert cmap.shared_gets == shared + 1


def test_buffered_sets_go_out_at_the_bound_on_flush_and_on_close(node) -> None:
    with CmapClient.connect(node.run_dir) as watcher:
        cmap = CmapClient.connect(node.run_dir)
        for value in range(clients.cmap.NOWAIT_FLUSH_COUNT):
            cmap.set_nowait("app.bound", value, ValueType.UINT32)
        wait_for(watcher, "app.bound", clients.cmap.NOWAIT_FLUSH_COUNT - 1)
        cmap.set_nowait("app.flushed", 1, ValueType.UINT8)
        cmap.flush()
        wait_for(watcher, "app.flushed", 1)
        cmap.set_nowait("app.closed", 2, ValueType.UINT8)
        cmap.close()
        wait_for(watcher, "app.closed", 2)


def test_pipelined_failures_still_name_the_key_at_sync(node) -> None:
    with CmapClient.connect(node.run_dir) as cmap:
        for index in range(300):   # several flushes
            cmap.set_nowait(f"app.many.{index % 7}", index, ValueType.UINT32)
        cmap.set_nowait("totem.secauth", "on", "str")
        cmap.set_nowait("app.many.0", 1, ValueType.UINT32)
        with pytest.raises(ReadOnly, match="^1 pipelined set\\(s\\) failed; the first: key 'totem.secauth'"):
            cmap.sync()
        assert cmap.get_u32("app.many.0") == 1


@pytest.mark.parametrize("shared_table", [True, False])
def test_get_many_reads_many_keys_with_or_without_the_table(node, shared_table) -> None:
    with CmapClient.connect(node.run_dir, shared_table=shared_table) as cmap:
        cmap.set_many([(f"app.gm.{index}", index, ValueType.UINT16) for index in range(1500)])
        cmap.set("app.gm.big", b"z" * 16000, ValueType.BINARY)
        keys = [f"app.gm.{index}" for index in range(1500)] + ["app.gm.none"] + ["app.gm.big"] * 6
        cmap.get("app.gm.0")   # the table may have grown: follow it now
        shared, trips = cmap.shared_gets, cmap.round_trip_gets
        results = cmap.get_many(keys)
        assert results[:1500] == [(index, ValueType.UINT16) for index in range(1500)]
        assert results[1500] is None
        assert results[1501:] == [(b"z" * 16000, ValueType.BINARY)] * 6
        if shared_table:
            assert (cmap.shared_gets - shared, cmap.round_trip_gets - trips) == (len(keys), 0)
        else:
            assert (cmap.shared_gets - shared, cmap.round_trip_gets - trips) == (0, len(keys))
        with pytest.raises(InvalidKey):
            cmap.get_many(["app.gm.1", "no"])
        cmap.set_nowait("app.gm.1", 7, ValueType.UINT16)          # read-your-writes
        assert cmap.get_many(["app.gm.1"]) == [(7, ValueType.UINT16)]


def wait_for(cmap: CmapClient, key: str, value: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if cmap.get(key)[0] == value:
                return
        except NoSuchKey:
            pass
        assert time.monotonic() < deadline, f"{key} never became {value}"
        time.sleep(0.005)


def test_without_a_mappable_table_gets_are_round_trips(node, monkeypatch) -> None:
    def refuse(pid: int, locator: TableLocator) -> None:
        raise TableUnavailable(f"cannot open the table at /proc/{pid}/fd/{locator.fd}: "
                               "[Errno 13] Permission denied")

    monkeypatch.setattr(objdb.table_client, "ShmTableReader", refuse)
    with CmapClient.connect(node.run_dir) as cmap, CmapClient.connect(node.run_dir) as writer:
        assert "Permission denied" in cmap.table_unavailable
        writer.set("app.fallback", 5, ValueType.UINT16)
        assert cmap.get("app.fallback") == (5, ValueType.UINT16)
        with pytest.raises(NoSuchKey, match="^no key 'app.none'$"):
            cmap.get("app.none")
        assert cmap.shared_gets == 0 and cmap.round_trip_gets == 2
    with CmapClient.connect(node.run_dir, shared_table=False) as cmap:
        assert cmap.get("totem.token") == (3000, ValueType.UINT32)
        assert cmap.shared_gets == 0 and cmap.round_trip_gets == 1


def test_the_table_grows_and_clients_follow(tmp_path_factory) -> None:
    run_dir = tmp_path_factory.mktemp("gr")
    with ObjdbProcess.start(run_dir=run_dir) as objdb, CmapClient.connect(run_dir) as cmap:
        cmap.set("app.first", 1, ValueType.UINT8)
        assert cmap.get("app.first") == (1, ValueType.UINT8)
        first = table_locator(cmap)
        cmap.set_many([(f"app.grow.{index}", index, ValueType.UINT32) for index in range(3000)])
        second = table_locator(cmap)
        assert second != first
        with pytest.raises(TableUnavailable):   # the old generation's descriptor is closed
            ShmTableReader(objdb.pid, first)
        assert memfd_count(objdb.pid) == 1
        shared = cmap.shared_gets
        assert cmap.get("app.first") == (1, ValueType.UINT8)      # remaps, then reads again
        assert all(cmap.get(f"app.grow.{index}") == (index, ValueType.UINT32)
                   for index in range(0, 3000, 97))
        assert cmap.shared_gets > shared
        assert objdb.stop() == 0


def memfd_count(pid: int) -> int:
    """How many table memory files objdb holds open (a mapping holds a
    descriptor of its own: count files, not descriptors)."""
    files = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        try:
            if os.readlink(path).startswith("/memfd:coro-objdb-table"):
                files.add(os.stat(path).st_ino)
        except FileNotFoundError:
            pass
    return len(files)


def test_a_killed_objdb_turns_table_gets_into_connection_lost(tmp_path_factory) -> None:
    run_dir = tmp_path_factory.mktemp("kl")
    objdb = ObjdbProcess.start(run_dir=run_dir)
    try:
        with CmapClient.connect(run_dir) as cmap:
            cmap.set("app.k", 1, ValueType.UINT8)
            assert cmap.get("app.k") == (1, ValueType.UINT8)
            objdb.kill()
            deadline = time.monotonic() + 10
            with pytest.raises(ConnectionLost):
                while time.monotonic() < deadline:    # within LIVENESS_INTERVAL_S
                    cmap.get("app.k")
                    time.sleep(0.01)
        # The table has no name: a SIGKILL leaves nothing of it behind.
        assert [name for name in os.listdir("/dev/shm") if f"-{objdb.pid}-" in name] == []
    finally:
        objdb.close()
        for leftover in os.listdir(run_dir):   # the killed objdb's socket file
            os.unlink(os.path.join(run_dir, leftover))


def test_close_waits_for_pipelined_sets_but_not_for_a_wedged_objdb(tmp_path_factory) -> None:
    import signal

    run_dir = tmp_path_factory.mktemp("wd")
    with ObjdbProcess.start(run_dir=run_dir) as objdb:
        cmap = CmapClient.connect(run_dir)
        cmap.set_nowait("app.wedged", 1, ValueType.UINT8)
        os.kill(objdb.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            cmap.close()
            took = time.monotonic() - started
        finally:
            os.kill(objdb.pid, signal.SIGCONT)
        assert clients.cmap.CLOSE_SYNC_TIMEOUT_S <= took < clients.cmap.CLOSE_SYNC_TIMEOUT_S + 3
        with CmapClient.connect(run_dir) as other:   # and objdb serves on
            other.set("app.after", 2, ValueType.UINT8)
            assert other.get("app.after") == (2, ValueType.UINT8)
