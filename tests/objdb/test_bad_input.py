"""Bad input against a running objdb: each case gets a clear error or is dropped,
and the daemon keeps serving everyone else."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest


from clients.cmap import (CmapClient, ConnectionLost, InvalidKey, InvalidValue, ReadOnly,
                          TooLong, TrackFlags, ValueType)
from coroipc import IpcClient
from coroipc import errors as ipc_errors
from objdb import codec
from objdb.errors import InvalidRequest
from objdb.types import MAX_VALUE_BYTES

pytestmark = pytest.mark.multiprocess


def raw_set(key: bytes, type_code: int, raw_value: bytes) -> bytes:
    return (codec.REQUEST_HEADER + b"\x00" + bytes([len(key)]) + key
            + struct.pack("<BI", type_code, len(raw_value)) + raw_value)


def assert_serving(node) -> None:
    with CmapClient.connect(node.run_dir) as cmap:
        assert cmap.get_u32("totem.token") == 3000


def test_client_side_checks_refuse_before_sending(node) -> None:
    with CmapClient.connect(node.run_dir) as cmap:
        with pytest.raises(InvalidKey, match="256 characters"):
            cmap.set("k" * 256, 1, ValueType.UINT8)
        with pytest.raises(InvalidKey, match="contains ' '"):
            cmap.get("bad key")
        with pytest.raises(InvalidValue, match="does not fit u8"):
            cmap.set("app.x", 256, ValueType.UINT8)
        with pytest.raises(TooLong):
            cmap.set("app.x", b"x" * (MAX_VALUE_BYTES + 1), ValueType.BINARY)


@pytest.mark.parametrize("payload, error", [
    (raw_set(b"app.big", 12, b"x" * (MAX_VALUE_BYTES + 1)), TooLong),
    (raw_set(b"a" * 255 + b"", 2, b"\x01"), None),
    (raw_set(b"ab", 2, b"\x01"), InvalidKey),
    (raw_set(b"app.sp ace", 2, b"\x01"), InvalidKey),
    (raw_set(b"app.nul", 11, b"a\x00b"), InvalidValue),
    (raw_set(b"app.str", 11, b"y" * MAX_VALUE_BYTES), TooLong),
])
def test_the_daemon_validates_what_the_client_did_not(node, payload, error) -> None:
    with IpcClient.connect("cmap", run_dir=str(node.run_dir), timeout=5.0) as ipc:
        reply = ipc.request(codec.Function.SET, payload)
        if error is None:
            codec.decode_empty_response(reply)
        else:
            with pytest.raises(error):
                codec.decode_empty_response(reply)
    assert_serving(node)


def test_garbage_requests_get_errors_then_a_disconnect(node) -> None:
    with IpcClient.connect("cmap", run_dir=str(node.run_dir), timeout=5.0) as ipc:
        for garbage in (b"", b"\x00" * 40, codec.REQUEST_HEADER + b"\xff\xff",
                        struct.pack("<HBB", codec.MAGIC, 9, 1), os.urandom(64)):
            with pytest.raises(InvalidRequest, match="malformed request"):
                codec.decode_empty_response(ipc.request(codec.Function.GET, garbage))
        with pytest.raises(InvalidRequest, match="unknown cmap function 200"):
            codec.decode_empty_response(ipc.request(200, codec.REQUEST_HEADER))
        with pytest.raises(ipc_errors.IpcError):
            for _attempt in range(10):
                ipc.request(codec.Function.GET, b"junk", timeout=5.0)
    assert_serving(node)


def test_a_tracker_that_never_reads_is_dropped_others_are_not(node) -> None:
    healthy_seen = []
    with CmapClient.connect(node.run_dir) as writer, \
            CmapClient.connect(node.run_dir) as slow, \
            CmapClient.connect(node.run_dir) as healthy:
        writer.set("app.hot", 0, ValueType.UINT64)
        slow.track_add("app.hot", TrackFlags.MODIFY, lambda note: None)
        healthy.track_add("app.hot", TrackFlags.MODIFY, healthy_seen.append)
        dropped_after = None
        deadline = time.monotonic() + 60
        for value in range(1, 500_001):
            writer.set("app.hot", value, ValueType.UINT64)
            healthy.dispatch()
            if value % 500 == 0:
                try:
                    slow.get("totem.token")
                except ConnectionLost:
                    dropped_after = value
                    break
            assert time.monotonic() < deadline, "the slow tracker was never dropped"
        assert dropped_after is not None
        while len(healthy_seen) < dropped_after:
            assert healthy.dispatch(timeout=5.0) > 0
        assert [note.new.value for note in healthy_seen] == list(range(1, dropped_after + 1))
        with pytest.raises(ConnectionLost):
            slow.set("app.other", 1, ValueType.UINT8)
        # The writer's own connection is unaffected.
        assert writer.get_u64("app.hot") == dropped_after


CHILD = textwrap.dedent("""
    import sys
    from clients.cmap import CmapClient, TrackFlags, ValueType
    cmap = CmapClient.connect(sys.argv[1])
    cmap.track_add("app.", TrackFlags.all_changes() | TrackFlags.PREFIX, lambda note: None)
    value = 0
    while True:
        value += 1
        cmap.set("app.child", value, ValueType.UINT64)
""")


def test_a_client_killed_mid_request_does_not_hurt_the_daemon(node) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(node.run_dir)])
    try:
        with CmapClient.connect(node.run_dir) as cmap:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if cmap.get_u64("app.child") > 200:
                        break
                except Exception:
                    pass
                assert time.monotonic() < deadline, "the child never got going"
                time.sleep(0.01)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            # Changes under the dead client's tracked prefix must not trip the daemon.
            for value in range(100):
                cmap.set("app.after", value, ValueType.UINT32)
            assert cmap.get_u32("app.after") == 99
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert node.process.is_running()
    assert_serving(node)


def test_a_client_that_floods_its_own_tracker_is_dropped_cleanly(node) -> None:
    """The event ring that overflows belongs to the connection whose request
    caused the change: objdb drops it in the middle of its own request."""
    with CmapClient.connect(node.run_dir) as selfish:
        selfish.track_add("app.self", TrackFlags.all_changes(), lambda note: None)
        with pytest.raises(ConnectionLost):
            for value in range(500_000):
                selfish.set("app.self", value, ValueType.UINT64)
    assert node.process.is_running()
    assert_serving(node)


def test_refusals_and_garbage_are_counted_in_stats_keys(node) -> None:
    with CmapClient.connect(node.run_dir) as cmap:
        before = {key: value for key, value, _type in cmap.iter("stats.objdb.")}
        assert {"stats.objdb.bad_requests", "stats.objdb.refused", "stats.objdb.requests",
                "stats.objdb.dropped_slow", "stats.objdb.keys"} <= set(before)
        with IpcClient.connect("cmap", run_dir=str(node.run_dir), timeout=5.0) as ipc:
            for _attempt in range(3):
                with pytest.raises(InvalidRequest):
                    codec.decode_empty_response(ipc.request(codec.Function.GET, b"junk"))
        with pytest.raises(ReadOnly):
            cmap.set("stats.objdb.refused", 0, ValueType.UINT64)
        deadline = time.monotonic() + 10
        while cmap.get_u64("stats.objdb.bad_requests") < before["stats.objdb.bad_requests"] + 3:
            assert time.monotonic() < deadline, "stats.objdb.bad_requests did not count the garbage"
            cmap.dispatch(timeout=0.2)   # (nothing tracked: just waits) until the next refresh
        assert cmap.get_u64("stats.objdb.refused") >= before["stats.objdb.refused"] + 1


WRITER = textwrap.dedent("""
    import random, sys
    from clients.cmap import CmapClient, ValueType
    rng = random.Random(int(sys.argv[2]))
    with CmapClient.connect(sys.argv[1]) as cmap:
        for step in range(400):
            key = f"conc.w{sys.argv[2]}.k{rng.randrange(8)}"
            action = rng.random()
            try:
                if action < 0.6:
                    cmap.set(key, rng.randrange(256), ValueType.UINT8)
                elif action < 0.8:
                    cmap.inc(key)
                else:
                    cmap.delete(key)
            except Exception as error:   # NoSuchKey for inc/delete of a missing key
                if type(error).__name__ != "NoSuchKey":
                    raise
""")


@pytest.mark.slow
def test_concurrent_writers_and_a_tracker_agree_on_the_final_state(node) -> None:
    """Three writer processes change keys while a tracker follows conc.*: replaying
    the notifications (old values checked) rebuilds exactly what objdb holds."""
    replica: dict[str, object] = {}
    mismatches = []

    def on_change(note) -> None:
        if (note.old.value if note.old else None) != replica.get(note.key):
            mismatches.append(note)
        if note.new is None:
            replica.pop(note.key, None)
        else:
            replica[note.key] = note.new.value

    with CmapClient.connect(node.run_dir) as tracker:
        tracker.track_add("conc.", TrackFlags.all_changes() | TrackFlags.PREFIX, on_change)
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(node.run_dir), str(seed)])
                   for seed in range(3)]
        try:
            deadline = time.monotonic() + 60
            while any(writer.poll() is None for writer in writers):
                tracker.dispatch(timeout=0.05)
                assert time.monotonic() < deadline, "writers did not finish in 60 s"
        finally:
            for writer in writers:
                if writer.poll() is None:
                    writer.kill()
                writer.wait()
        assert [writer.returncode for writer in writers] == [0, 0, 0]
        final = {key: value for key, value, _type in tracker.iter("conc.")}
        tracker.sync()   # every change before this point has been notified
        while tracker.dispatch(timeout=0.2):
            pass
    assert mismatches == []
    assert replica == final


def test_garbage_batches_and_table_requests_get_errors(node) -> None:
    truncated = codec.encode_set_many([codec.encode_set_item("app.x", ValueType.UINT32, 1)])[:-2]
    with IpcClient.connect("cmap", run_dir=str(node.run_dir), timeout=5.0) as ipc:
        for function, garbage in ((codec.Function.SET_MANY, truncated),
                                  (codec.Function.SET_MANY, codec.REQUEST_HEADER + b"\xff\xff"),
                                  (codec.Function.GET_MANY, codec.REQUEST_HEADER + b"\xff\xff"),
                                  (codec.Function.GET_MANY, codec.REQUEST_HEADER + b"\x01\x00\x09ab"),
                                  (codec.Function.TABLE_INFO, codec.REQUEST_HEADER + b"x")):
            with pytest.raises(InvalidRequest, match="malformed request"):
                codec.decode_empty_response(ipc.request(function, garbage))
        # Posted garbage has no reply: it is counted, and the connection lives on.
        for _index in range(2):
            ipc.post(codec.Function.SET_NOWAIT_MANY, truncated)
        failed, first = codec.decode_sync_response(ipc.request(codec.Function.SYNC,
                                                               codec.REQUEST_HEADER))
        assert (failed, first) == (0, None)
        with pytest.raises(ipc_errors.IpcError):   # the 8 malformed requests are used up
            for _attempt in range(10):
                ipc.request(codec.Function.GET_MANY, b"junk", timeout=5.0)
    assert_serving(node)
