"""objdb as a process: loaded from corosync.conf, used over coroipc by other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

from pathlib import Path

import psutil
import pytest


from clients.cmap import (CmapClient, InvalidKey, NoSuchKey, NotConnected, ReadOnly, TrackFlags,
                          ValueType, WrongType)
from objdb.process import ObjdbProcess, ObjdbStartError
from tests.objdb.conftest import CONFIG

CONFIG_WITH_UIDGID = CONFIG + "uidgid {\n    uid: 4242\n}\nuidgid {\n    gid: 4747\n}\n"

pytestmark = pytest.mark.multiprocess


def test_process_title_and_configuration_keys(node) -> None:
    assert "coro: objdb" in " ".join(psutil.Process(node.process.pid).cmdline())
    with CmapClient.connect(node.run_dir) as cmap:
        assert cmap.get("totem.token") == (3000, ValueType.UINT32)
        assert cmap.get("totem.cluster_name") == ("objdbtest", ValueType.STRING)
        assert cmap.get("nodelist.node.1.ring0_addr") == ("127.0.0.2", ValueType.STRING)
        assert cmap.get_u32("nodelist.local_node_pos") == 0
        assert cmap.get_u32("runtime.config.totem.token") >= 3000
        keys = [key for key, _value, _type in cmap.iter("nodelist.")]
        assert keys == sorted(keys) and "nodelist.node.0.nodeid" in keys


def test_set_in_one_client_get_in_another(node) -> None:
    with CmapClient.connect(node.run_dir) as writer, CmapClient.connect(node.run_dir) as reader:
        writer.set("app.counter", 41, ValueType.UINT64)
        assert writer.inc("app.counter") == 42
        assert reader.get("app.counter") == (42, ValueType.UINT64)
        writer.set_binary("app.blob", b"\x00\xff")
        assert reader.get_binary("app.blob") == b"\x00\xff"
        writer.set_float("app.ratio", 0.5)
        assert reader.get_float("app.ratio") == 0.5
        with pytest.raises(WrongType):
            reader.get_string("app.counter")
        with pytest.raises(WrongType, match="pass force_type"):
            writer.set("app.counter", "x", ValueType.STRING)
        writer.set("app.counter", "x", "str", force_type=True)
        assert reader.get("app.counter") == ("x", ValueType.STRING)
        writer.delete("app.counter")
        with pytest.raises(NoSuchKey, match="no key 'app.counter'"):
            reader.get("app.counter")
        with pytest.raises(ReadOnly, match="^key 'totem.cluster_name' is read-only$"):
            writer.set("totem.cluster_name", "other", ValueType.STRING)
        with pytest.raises(InvalidKey):
            writer.get("x")


def test_pipelined_sets_apply_in_order_and_report_failures_at_sync(node) -> None:
    with CmapClient.connect(node.run_dir) as cmap:
        for value in range(1000):
            cmap.set_nowait("app.pipelined", value, ValueType.UINT32)
        cmap.sync()
        assert cmap.get_u32("app.pipelined") == 999
        cmap.set_nowait("totem.secauth", "on", "str")            # read-only
        cmap.set_nowait("app.pipelined", "text", "str")          # type change
        cmap.set_nowait("app.after", 1, "u8")
        with pytest.raises(ReadOnly, match="^2 pipelined set\\(s\\) failed; the first: key 'totem.secauth'"):
            cmap.sync()
        assert cmap.get("app.after") == (1, ValueType.UINT8)
        cmap.sync()   # failures were reported once


def test_large_batches_and_dumps_are_split_to_fit_the_rings(node) -> None:
    """600 keys of 1 KiB (600 KiB, more than a ring's largest message) go in
    several SET_MANY requests and come back in several ITERATE pages."""
    items = [(f"big.k{index:04d}", bytes([index % 256]) * 1024, ValueType.BINARY)
             for index in range(600)]
    with CmapClient.connect(node.run_dir) as cmap:
        assert cmap.set_many(items) == [None] * 600
        dumped = list(cmap.iter("big."))
        assert [(key, value) for key, value, _type in dumped] == [(k, v) for k, v, _t in items]
        huge = [("big.max", b"x" * 16384, ValueType.BINARY)] * 20
        assert cmap.set_many(huge) == [None] * 20


def test_internal_connection_writes_runtime_keys(node) -> None:
    with CmapClient.connect(node.run_dir, internal=True) as internal, \
            CmapClient.connect(node.run_dir) as plain:
        assert internal.privileged and not plain.privileged
        internal.set("runtime.members.1.status", "joined", ValueType.STRING)
        assert plain.get_string("runtime.members.1.status") == "joined"
        with pytest.raises(ReadOnly):
            plain.delete("runtime.members.1.status")
        results = internal.set_many([("runtime.totem.pg.msg_queue_avail", 7, "u32"),
                                     ("runtime.members.1.join_count", 1, "u32")])
        assert results == [None, None]
        assert plain.set_many([("runtime.members.1.join_count", 2, "u32")])[0].status == ReadOnly.status


def test_track_sees_a_set_from_another_process(node) -> None:
    seen = []
    with CmapClient.connect(node.run_dir) as cmap:
        handle = cmap.track_add("totem.", TrackFlags.all_changes() | TrackFlags.PREFIX, seen.append)
        subprocess.run(node.coro("cmap", "set", "totem.token", "u32", "5000"), env=node.env(),
                       check=True, timeout=60)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            cmap.dispatch(timeout=0.5)
        [note] = seen
        assert (note.tracker_id, note.event, note.key) == (handle, TrackFlags.MODIFY, "totem.token")
        assert (note.old.value, note.new.value) == (3000, 5000)
        cmap.track_delete(handle)
        with pytest.raises(NoSuchKey):
            cmap.track_delete(handle)
        cmap.set("totem.token", 3000, ValueType.UINT32)   # as the configuration has it


def test_coro_cmap_track_prints_a_set_made_elsewhere(node) -> None:
    tracker = subprocess.Popen(
        node.coro("cmap", "track", "app.watched", "--count", "2", "--timeout", "30", "--json"),
        env=node.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert tracker.stderr.readline().startswith("coro cmap: tracking app.watched")
        with CmapClient.connect(node.run_dir) as cmap:
            cmap.set("app.watched", 1, ValueType.UINT8)
            cmap.set("app.watched", 2, ValueType.UINT8)
        out, _err = tracker.communicate(timeout=30)
    finally:
        tracker.kill()
        tracker.wait()
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"event": "create", "key": "app.watched", "type": "u8", "value": 1},
        {"event": "modify", "key": "app.watched", "type": "u8", "value": 2,
         "old_type": "u8", "old_value": 1},
    ]
    assert tracker.returncode == 0


@pytest.fixture
def coro(node, capsys, monkeypatch):
    """`coro cmap ARGS` run in this process (clients.cli.main), saving a Python
    start-up per call; a few tests run the real command line in a subprocess."""
    import io

    from clients.cli import main

    monkeypatch.setenv("CORO_RUN_DIR", str(node.run_dir))

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        status = main(["cmap", *args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, status, captured.out, captured.err)

    return run


def test_corosync_cmapctl_compatible_output(node, coro) -> None:
    dump = coro()
    assert dump.returncode == 0
    lines = dump.stdout.splitlines()
    assert "totem.token (u32) = 3000" in lines
    assert "totem.cluster_name (str) = objdbtest" in lines
    assert [line.split(" ")[0] for line in lines] == sorted(line.split(" ")[0] for line in lines)
    assert coro("totem.").stdout.splitlines() == [l for l in lines if l.startswith("totem.")]
    assert coro("-g", "totem.token").stdout == "totem.token (u32) = 3000\n"
    assert coro("-q", "-g", "totem.token").stdout == "3000\n"
    missing = coro("-g", "totem.missing")
    assert (missing.returncode, missing.stderr) == (1, "Can't get key totem.missing. Error CS_ERR_NOT_EXIST\n")
    assert coro("-s", "app.x", "i8", "-5").returncode == 0
    assert coro("-g", "app.x").stdout == "app.x (i8) = -5\n"
    bad = coro("-s", "app.x", "u8", "300")
    assert (bad.returncode, bad.stderr) == (1, "300 is not valid u8 type value\n")
    readonly = coro("-s", "totem.secauth", "str", "on")
    assert readonly.stderr == "Failed to set key totem.secauth. Error CS_ERR_ACCESS\n"
    assert coro("-s", "app.dbl", "dbl", "2.5").returncode == 0
    assert coro("-g", "app.dbl").stdout == "app.dbl (dbl) = 2.500000\n"
    assert coro("-s", "app.bin", "bin", "-", stdin="a\\b\n").returncode == 0
    assert coro("-g", "app.bin").stdout == "app.bin (bin)\n"
    assert coro("-b", "-g", "app.bin").stdout == "app.bin (bin) = a\\\\b\\x0A\n"
    assert coro("-s", "stats.test.count", "u64", "3").returncode == 1   # read-only for tools
    with CmapClient.connect(node.run_dir, internal=True) as internal:   # as totemd publishes
        internal.set("stats.test.count", 3, ValueType.UINT64)
    stats = coro("-m", "stats").stdout.splitlines()
    assert "stats.test.count (u64) = 3" in stats and all(l.startswith("stats.") for l in stats)
    assert "stats.test.count" not in coro("-m", "icmap").stdout
    assert "totem.token (u32) = 3000" in coro("-m", "icmap").stdout.splitlines()
    assert "stats.test.count (u64) = 3" in coro().stdout.splitlines()   # no -m: both
    assert coro("-m", "stats", "totem.").returncode == 1
    assert coro("-D", "app.").returncode == 0
    assert coro("app.").returncode == 1
    assert coro("-g").stderr == "Expected key after options\n"
    settings = node.run_dir.parent / "settings.txt"
    settings.write_text("# comment\napp.p1 u16 7\napp.p2 str hello\n\napp.gone u8 1\n^app.gone\n"
                        "other.a u8 1\nother.b u8 2\n^^other.\n")
    assert coro("-p", str(settings)).returncode == 0
    assert coro("app.p").stdout == "app.p1 (u16) = 7\napp.p2 (str) = hello\n"
    assert coro("other.").returncode == 1
    assert coro("-g", "app.gone").returncode == 1
    started = time.monotonic()
    assert coro("track", "app.quiet", "--timeout", "0.3").returncode == 0
    assert time.monotonic() - started >= 0.3


def test_cmapctl_track_flag_prints_events_until_q(node) -> None:
    tracker = subprocess.Popen(node.coro("cmap", "-T", "app."), env=node.env(), text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert tracker.stdout.readline() == 'Type "q" to finish\n'
        with CmapClient.connect(node.run_dir) as cmap:
            cmap.set("app.t", "v", ValueType.STRING)
            assert tracker.stdout.readline() == "create> app.t (str) = v\n"
            cmap.delete("app.t")
            assert tracker.stdout.readline() == "delete> app.t (str) = v\n"
        out, _err = tracker.communicate("q\n", timeout=30)
    finally:
        tracker.kill()
        tracker.wait()
    assert (tracker.returncode, out) == (0, "")


def test_coro_cmap_verbs_and_json(node, coro) -> None:
    real = subprocess.run(node.coro("cmap", "set", "verb.n", "u32", "0x10"), env=node.env(),
                          capture_output=True, text=True, timeout=60)
    assert (real.returncode, real.stdout, real.stderr) == (0, "", "")
    assert json.loads(coro("get", "verb.n", "--json").stdout) == {
        "key": "verb.n", "type": "u32", "value": 16}
    assert coro("inc", "verb.n").stdout == "17\n"
    assert coro("dec", "verb.n").stdout == "16\n"
    changed = coro("set", "verb.n", "str", "x")
    assert changed.returncode == 1 and "pass force_type" in changed.stderr
    assert coro("set", "--force-type", "verb.n", "str", "x").returncode == 0
    assert coro("set", "verb.b", "bin", "00ff5c").returncode == 0
    dumped = [json.loads(line) for line in coro("dump", "verb.", "--json").stdout.splitlines()]
    assert dumped == [{"key": "verb.b", "type": "bin", "value": "00ff5c"},
                      {"key": "verb.n", "type": "str", "value": "x"}]
    assert coro("dump", "verb.b").stdout == "verb.b (bin)\n"
    assert coro("dump", "verb.b", "-b").stdout == "verb.b (bin) = \\x00\\xFF\\\\\n"
    assert coro("delete", "verb.n").returncode == 0
    gone = coro("get", "verb.n")
    assert gone.returncode == 1 and "no key 'verb.n'" in gone.stderr
    assert coro("set", "verb.b", "bin", "zz").stderr.endswith("bin values are given as hex\n")
    assert coro("get", "bad key").stderr.startswith("coro cmap get: key name 'bad key' contains ' '")
    # The run directory can also come from the configuration file.
    env = node.env()
    del env["CORO_RUN_DIR"]
    by_config = subprocess.run(node.coro("cmap", "-c", str(node.config_path), "get", "totem.token"),
                               env=env, capture_output=True, text=True, timeout=60)
    assert by_config.stdout == "totem.token (u32) = 3000\n"


def test_no_daemon_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(NotConnected, match="cannot reach objdb"):
        CmapClient.connect(tmp_path, timeout=0.5)
    result = subprocess.run([sys.executable, "-m", "clients.cli", "cmap", "--run-dir", str(tmp_path),
                             "get", "totem.token"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "cannot reach objdb" in result.stderr


def test_a_second_objdb_on_the_same_run_dir_is_refused(node) -> None:
    with pytest.raises(ObjdbStartError, match="already listening"):
        ObjdbProcess.start(run_dir=node.run_dir)
    assert_still_serving = CmapClient.connect(node.run_dir)
    with assert_still_serving as cmap:
        assert cmap.get_u32("totem.token") == 3000


def test_bad_configuration_fails_start_with_its_reason(tmp_path) -> None:
    config = tmp_path / "corosync.conf"
    config.write_text("totem {\n    tokn: 3000\n}\n")
    with pytest.raises(ObjdbStartError, match="tokn"):
        ObjdbProcess.start(config_path=config, run_dir=tmp_path / "run")


def test_stop_removes_the_socket_and_segments(tmp_path_factory, resource_tag) -> None:
    import os

    run_dir = tmp_path_factory.mktemp("st")
    process = ObjdbProcess.start(run_dir=run_dir)
    with CmapClient.connect(run_dir) as cmap:
        cmap.set("app.x", 1, ValueType.UINT8)
    assert process.stop() == 0
    process.close()
    assert [name for name in os.listdir(run_dir)] == []
    assert [name for name in os.listdir("/dev/shm") if resource_tag in name
            and str(process.pid) in name] == []


def test_asyncio_add_reader_dispatches_notifications(node) -> None:
    import asyncio

    async def main() -> list:
        loop = asyncio.get_running_loop()
        received: asyncio.Queue = asyncio.Queue()
        with CmapClient.connect(node.run_dir) as tracker, CmapClient.connect(node.run_dir) as writer:
            tracker.track_add("app.async", TrackFlags.all_changes(), received.put_nowait)
            loop.add_reader(tracker.fileno(), tracker.dispatch)
            try:
                for value in (1, 2, 3):
                    writer.set("app.async", value, ValueType.UINT16)
                notes = [await asyncio.wait_for(received.get(), timeout=10) for _index in range(3)]
            finally:
                loop.remove_reader(tracker.fileno())
        return notes

    notes = asyncio.run(main())
    assert [(note.event, note.new.value) for note in notes] == [
        (TrackFlags.ADD, 1), (TrackFlags.MODIFY, 2), (TrackFlags.MODIFY, 3)]


def test_clients_see_connection_lost_when_objdb_stops(tmp_path_factory) -> None:
    run_dir = tmp_path_factory.mktemp("cl")
    process = ObjdbProcess.start(run_dir=run_dir)
    try:
        cmap = CmapClient.connect(run_dir)
        cmap.track_add("app.x", TrackFlags.all_changes(), lambda note: None)
        assert process.stop() == 0
        from clients.cmap import ConnectionLost

        with pytest.raises(ConnectionLost):
            cmap.get("totem.token")
        cmap.close()
        cmap.close()   # idempotent
        with pytest.raises(NotConnected, match="closed"):
            cmap.get("totem.token")
    finally:
        process.close()


def test_objdb_stops_when_its_supervisor_dies(tmp_path_factory) -> None:
    run_dir = tmp_path_factory.mktemp("pd")
    supervisor = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from objdb.process import ObjdbProcess
            objdb = ObjdbProcess.start(run_dir={str(run_dir)!r})
            print(objdb.pid, flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        objdb_pid = int(supervisor.stdout.readline())
        supervisor.kill()
        supervisor.wait()
        psutil.Process(objdb_pid).wait(timeout=15)   # not our child: no exit status
        assert not psutil.pid_exists(objdb_pid) or \
            psutil.Process(objdb_pid).status() == psutil.STATUS_ZOMBIE
        # It stopped cleanly (a SIGKILL would have left the socket file).
        assert not (run_dir / "cmap.sock").exists()
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        supervisor.stdout.close()


ACL_CHILD = textwrap.dedent("""
    import os, sys
    # Import first, as root: the interpreter's own files may not be readable
    # by the uid the client then becomes.
    from clients.cmap import CmapClient, NotConnected, ReadOnly
    os.setgroups([])
    os.setgid(int(sys.argv[3]))
    os.setuid(int(sys.argv[2]))
    try:
        cmap = CmapClient.connect(sys.argv[1], timeout=5.0)
    except NotConnected as error:
        print("refused", error)
        sys.exit(0)
    with cmap:
        print("connected", cmap.get("totem.token")[0])
    try:
        CmapClient.connect(sys.argv[1], internal=True, timeout=5.0)
    except ReadOnly:
        print("internal refused")
""")


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run clients as other uids")
def test_uidgid_entries_decide_who_may_connect() -> None:
    import shutil
    import tempfile

    # Not under pytest's temporary directory: that one is private to root,
    # and the clients here run as other uids.
    base = Path(tempfile.mkdtemp(prefix="coro-objdb-acl-"))
    try:
        base.chmod(0o755)
        run_dir = base / "run"
        config = base / "corosync.conf"
        config.write_text(CONFIG_WITH_UIDGID % {"run_dir": run_dir})
        with ObjdbProcess.start(config_path=config, local_addresses=["127.0.0.1"]) as objdb:
            assert objdb.run_dir == str(run_dir)

            def as_user(uid: int, gid: int) -> str:
                return subprocess.run([sys.executable, "-c", ACL_CHILD, str(run_dir), str(uid),
                                       str(gid)], capture_output=True, text=True, timeout=60,
                                      check=True).stdout

            assert as_user(4242, 4242) == "connected 3000\ninternal refused\n"   # listed uid
            assert as_user(4343, 4747) == "connected 3000\ninternal refused\n"   # listed gid
            refused = as_user(4343, 4343)                                          # neither
            assert refused.startswith("refused") and "uid 4343 gid 4343" in refused, refused
        assert not (run_dir / "cmap.sock").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
