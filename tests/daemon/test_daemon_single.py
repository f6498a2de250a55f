"""One real node (``coro start``) on loopback: its singleton ring, the local
interface, back-pressure, bad packets, the pid file, and a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from clients.totem import ConfEvent, DeliverEvent, TryAgain
from tests.daemon.daemon_helpers import REPO, Node, free_udp_port, wait_for, write_config

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def single(tmp_path: Path):
    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    node = Node(tmp_path, config, 1, evs_dir=tmp_path / "evs")
    yield node
    node.stop()


def _deliveries(client, count: int, timeout_s: float = 10.0) -> list[DeliverEvent]:
    got: list[DeliverEvent] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        for event in client.events(timeout=0.2):
            if isinstance(event, DeliverEvent):
                got.append(event)
            if len(got) >= count:
                break
    return got


def test_singleton_ring_delivers_own_messages_in_order_and_stops_clean(single: Node):
    single.start()
    stats = single.wait_members([1])
    assert stats["inc"] == 1 and stats["ring_id"][0] == 1
    supervisor = psutil.Process(single.process.pid)
    children = supervisor.children(recursive=True)
    titles = sorted(" ".join(child.cmdline()).strip() for child in children)
    assert titles == ["coro: objdb", "coro: totemd node 1"]
    assert " ".join(supervisor.cmdline()).strip() == "coro: supervisor dtest node 1"

    with single.client() as client:
        sent = [(f"message {i}".encode() * (i + 1), i % 3 == 0) for i in range(10)]
        sseqs = [client.submit(data, safe=safe) for data, safe in sent]
        assert sseqs == list(range(1, 11))
        got = _deliveries(client, 10)
    assert [(e.data, e.safe) for e in got] == sent
    assert [e.sseq for e in got] == sseqs
    assert {(e.sender, e.sinc, e.ring_id) for e in got} == {(1, 1, tuple(stats["ring_id"]))}
    assert [e.seq for e in got] == sorted(e.seq for e in got)

    after = single.stats()
    assert after["daemon"]["messages_delivered"] >= 10
    assert after["local"]["submitted"] == 10

    assert single.stop() == 0
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                   for child in children)
    assert sorted(p.name for p in single.run_dir.iterdir()) == []
    assert (single.state_dir / "ringid_1").read_text().strip() == str(stats["ring_id"][1])
    log = (single.evs_dir / "n1.1.jsonl").read_text().splitlines()
    assert log[-1].endswith('"ev":"stop"}')
    assert "A new membership (1." in single.log_text()


def test_a_node_started_from_any_directory_runs_the_installed_code(tmp_path: Path):
    """``coro start`` run from a directory that holds packages named like
    ours (a source tree, a stray checkout) must not run them: the daemons it
    starts import what ``coro`` itself imports (python -P, no cwd on sys.path)."""
    shadow = tmp_path / "elsewhere"
    for package in ("totemd", "objdb", "coroipc", "clients", "coroconf"):
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text(
            f"raise ImportError('the {package} package of the working directory was imported')\n")
    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    coro = Path(sys.executable).with_name("coro")
    launcher = (str(coro),) if coro.exists() else (sys.executable, "-P", "-m", "clients.cli")
    node = Node(tmp_path, config, 1, cwd=shadow, launcher=launcher)
    try:
        node.start()
        node.wait_members([1])
        with node.client() as client:
            assert client.submit(b"from anywhere") == 1
    finally:
        assert node.stop() == 0
    assert "working directory was imported" not in node.log_text()


def _node_with_system(tmp_path: Path, system: str) -> Node:
    """A started single node whose corosync.conf has ``system { <system> }``."""
    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    config.write_text(config.read_text() + f"system {{\n    {system}\n}}\n")
    node = Node(tmp_path, config, 1).start()
    try:
        node.wait_members([1])
    except BaseException:
        node.stop()
        raise
    return node


def _totemd_of(node: Node) -> psutil.Process:
    children = psutil.Process(node.process.pid).children(recursive=True)
    return next(child for child in children if "totemd" in " ".join(child.cmdline()))


@pytest.mark.parametrize("system, expected", [
    ("sched_rr: no\n    priority: 7", ("nice", 7)),
    ("sched_rr: no\n    priority: min", ("nice", 19)),
    ("", ("nice", None)),  # not set: totemd keeps what it was started with
])
def test_system_priority_sets_totemds_nice_value(tmp_path: Path, system: str, expected):
    node = _node_with_system(tmp_path, system)
    try:
        totemd = _totemd_of(node)
        assert os.sched_getscheduler(totemd.pid) == os.SCHED_OTHER
        assert totemd.nice() == (expected[1] if expected[1] is not None
                                 else psutil.Process(node.process.pid).nice())
    finally:
        assert node.stop() == 0


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: SCHED_RR")
def test_sched_rr_yes_gives_totemd_the_maximal_real_time_priority(tmp_path: Path):
    node = _node_with_system(tmp_path, "sched_rr: yes")
    try:
        totemd = _totemd_of(node)
        assert os.sched_getscheduler(totemd.pid) == os.SCHED_RR
        assert os.sched_getparam(totemd.pid).sched_priority == os.sched_get_priority_max(os.SCHED_RR)
        with node.client() as client:  # it still serves its clients
            assert client.submit(b"real time") == 1
        # Only totemd: the supervisor and objdb keep the normal policy.
        assert os.sched_getscheduler(node.process.pid) == os.SCHED_OTHER
    finally:
        assert node.stop() == 0
    assert "scheduling: SCHED_RR priority" in node.log_text()


def test_statistics_are_published_into_objdb(single: Node):
    from clients.cmap import CmapClient

    single.start()
    stats = single.wait_members([1])
    with CmapClient.connect(single.run_dir) as cmap:
        wait_for(lambda: cmap.get("runtime.totem.state")[0] == "OPERATIONAL", 5.0,
                 "runtime.totem.state in objdb")
        assert cmap.get_string("runtime.members.1.status") == "joined"
        assert cmap.get_string("runtime.members.1.ip") == "r(0) ip(127.0.0.1) "
        assert cmap.get_u32("runtime.members.1.join_count") == 1
        assert cmap.get_u64("runtime.totem.ring_seq") == stats["ring_id"][1]
        wait_for(lambda: cmap.get_u64("stats.srp.orf_token_rx") > 0, 5.0, "token counter")


def test_second_start_on_one_run_dir_is_refused(single: Node):
    single.start()
    single.wait_members([1])
    second = subprocess.run(single.command(), cwd=REPO, capture_output=True, timeout=60)
    assert second.returncode == 1
    assert b"a node already runs on" in second.stderr
    assert f"(pid {single.process.pid})".encode() in second.stderr
    single.wait_members([1], timeout_s=2.0)


def test_restart_after_sigkill_takes_over_the_stale_pid_file(single: Node):
    single.start()
    first = single.wait_members([1])
    single.kill()
    assert (single.run_dir / "coro.pid").exists()
    single.start()
    second = single.wait_members([1])
    assert second["inc"] == 2
    assert second["ring_id"][1] > first["ring_id"][1]
    assert "which is not running" in single.log_text()


def test_a_dead_totemd_stops_the_whole_node(single: Node):
    single.start()
    single.wait_members([1])
    supervisor = psutil.Process(single.process.pid)
    children = {" ".join(c.cmdline()).strip(): c for c in supervisor.children()}
    children["coro: totemd node 1"].send_signal(signal.SIGKILL)
    assert single.process.wait(20) == 1
    assert not children["coro: objdb"].is_running() or \
        children["coro: objdb"].status() == psutil.STATUS_ZOMBIE
    assert "totemd (pid" in single.log_text() and "exited unexpectedly" in single.log_text()
    assert sorted(p.name for p in single.run_dir.iterdir()) == []


def test_full_send_queue_answers_try_again(tmp_path: Path):
    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    node = Node(tmp_path, config, 1, extra_args=("--send-queue-bytes", "65536"))
    try:
        node.start()
        node.wait_members([1])
        with node.client() as client:
            batch = [(bytes([i % 251]) * 1000, False) for i in range(200)]
            with pytest.raises(TryAgain) as caught:
                client.submit_many(batch)
            accepted = caught.value.accepted
            assert 0 < accepted < 200
            assert caught.value.first_sseq == 1
            got = _deliveries(client, accepted)
            assert [e.data for e in got] == [data for data, _safe in batch[:accepted]]
            # Drained: accepted again, in order after the batch.
            assert client.submit(b"after", safe=True) == accepted + 1
            assert [e.data for e in _deliveries(client, 1)] == [b"after"]
            stats = client.stats()
        assert stats["local"]["try_again"] == 1
        assert stats["srp"]["submit_rejected"] == 1
    finally:
        node.stop()


def test_garbage_packets_are_counted_and_dropped_while_the_ring_works(tmp_path: Path):
    port = free_udp_port(["127.0.0.1", "127.0.0.2"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1", 2: "127.0.0.2"})
    node = Node(tmp_path, config, 1)
    try:
        node.start()
        node.wait_members([1])
        payloads = [b"", b"\x00", b"garbage" * 10, bytes(range(256)) * 5]
        for source, count in (("127.0.0.2", 40), ("127.0.0.9", 20)):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.bind((source, 0))
                for i in range(count):
                    sender.sendto(payloads[i % len(payloads)], ("127.0.0.1", port))
        stats = wait_for(lambda: (lambda s: s if s["srp"]["rx_malformed"] >= 40 and
                                  s["transport"]["dropped_unknown_source"] >= 20 else None)(node.stats()),
                         10.0, "the garbage to be counted")
        assert stats["state"] == "OPERATIONAL"
        with node.client() as client:
            client.submit(b"still ordering")
            assert [e.data for e in _deliveries(client, 1)] == [b"still ordering"]
    finally:
        node.stop()


def test_subscriber_sees_trans_and_reg_when_a_node_joins_and_leaves(tmp_path: Path):
    port = free_udp_port(["127.0.0.1", "127.0.0.2"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1", 2: "127.0.0.2"})
    one, two = Node(tmp_path, config, 1), Node(tmp_path, config, 2)
    try:
        one.start()
        alone = one.wait_members([1])
        with one.client() as client:
            assert client.hello.members == (1,) and client.hello.ring_id == tuple(alone["ring_id"])
            two.start()
            pair = one.wait_members([1, 2])
            assert two.stop() == 0                     # graceful: a leave message
            back = one.wait_members([1], timeout_s=10.0)
            events = [e for e in client.events(timeout=0.5) if isinstance(e, ConfEvent)]
    finally:
        two.stop()
        one.stop()
    summary = [(e.kind, e.members, e.left, e.joined) for e in events]
    assert summary == [("TRANS", (1,), (), ()), ("REG", (1, 2), (), (2,)),
                       ("TRANS", (1,), (2,), ()), ("REG", (1,), (), ())]
    assert [e.ring_id for e in events] == [tuple(pair["ring_id"])] * 2 + [tuple(back["ring_id"])] * 2
    assert events[0].old_ring_id == tuple(alone["ring_id"])
    assert events[2].old_ring_id == tuple(pair["ring_id"])


def test_bad_requests_get_errors_and_the_daemon_keeps_serving(single: Node):
    from coroipc import IpcClient
    from coroipc import errors as ipc_errors
    from totemd import local_codec as wire

    single.start()
    single.wait_members([1])
    with IpcClient.connect("totem", run_dir=single.run_dir) as raw:
        with pytest.raises(ipc_errors.ServiceError):
            raw.request(99, b"x")
        with pytest.raises(ipc_errors.ServiceError):
            raw.request(wire.Function.HELLO, b"\x00")
        status, accepted, _first = wire.decode_submit_many_reply(
            raw.request(wire.Function.SUBMIT_MANY, b"\x00\x00\x00\x05garbage"))
        assert (status, accepted) == (wire.Status.INVALID, 0)
        status, _sseq = wire.decode_submit_reply(raw.request(wire.Function.SUBMIT, b""))
        assert status is wire.Status.INVALID
    with single.client() as client:
        client.submit(b"fine")
        assert [e.data for e in _deliveries(client, 1)] == [b"fine"]
        assert client.stats()["local"]["bad_requests"] == 4


def test_a_paused_daemon_reports_that_it_was_not_scheduled(single: Node):
    single.start()
    single.wait_members([1])
    totemd = next(c for c in psutil.Process(single.process.pid).children()
                  if "totemd" in " ".join(c.cmdline()))
    totemd.suspend()
    time.sleep(1.0)  # the fault being injected: 2 x the token timeout without CPU
    totemd.resume()
    stats = wait_for(lambda: (lambda s: s if s["daemon"]["loop_stalls"] >= 1 else None)(single.stats()),
                     10.0, "the stall to be counted")
    assert stats["daemon"]["loop_stall_max_ms"] >= 900
    assert "was not scheduled for" in single.log_text()
    single.wait_members([1])


def test_evs_log_to_a_named_file(tmp_path: Path):
    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    target = tmp_path / "logs" / "node1.jsonl"
    node = Node(tmp_path, config, 1, evs_dir=target)
    try:
        node.start()
        node.wait_members([1])
        with node.client() as client:
            client.submit(b"logged", safe=True)
            assert len(_deliveries(client, 1)) == 1
    finally:
        assert node.stop() == 0
    events = [line.split('"ev":"')[1].split('"')[0] for line in target.read_text().splitlines()]
    assert events[0] == "conf" and events[-1] == "stop"
    assert events.count("submit") == events.count("originate") == events.count("deliver") == 1


def test_a_dead_objdb_stops_the_whole_node(single: Node):
    single.start()
    single.wait_members([1])
    supervisor = psutil.Process(single.process.pid)
    children = {" ".join(c.cmdline()).strip(): c for c in supervisor.children()}
    children["coro: objdb"].send_signal(signal.SIGKILL)
    assert single.process.wait(20) == 1
    assert "objdb (pid" in single.log_text() and "exited unexpectedly" in single.log_text()
    assert "node 1 left the ring" in single.log_text()    # totemd stopped gracefully
    assert sorted(p.name for p in single.run_dir.iterdir()) == []


def test_a_killed_supervisor_takes_its_children_down(single: Node):
    single.start()
    single.wait_members([1])
    children = psutil.Process(single.process.pid).children()
    single.process.send_signal(signal.SIGKILL)
    single.process.wait(10)
    wait_for(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
             15.0, "totemd and objdb to notice their supervisor is gone")
    assert "node 1 left the ring" in single.log_text()
    assert sorted(p.name for p in single.run_dir.iterdir()) == ["coro.pid"]


def test_a_corrupt_ring_seq_file_is_a_clear_start_up_error(tmp_path: Path):
    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    state = tmp_path / "state"
    state.mkdir()
    (state / "ringid_1").write_text("not a number\n")
    result = subprocess.run([sys.executable, "-m", "totemd.process", "-c", str(config), "--node-id", "1",
                             "--run-dir", str(tmp_path / "run"), "--state-dir", str(state)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "does not hold a ring seq (got 'not a number'); remove it to start over" in result.stderr
    assert not (tmp_path / "run").exists() or list((tmp_path / "run").iterdir()) == []
    assert sorted(p.name for p in state.iterdir()) == ["ringid_1"]   # nothing written


def test_send_queue_is_bounded_by_messages_and_by_token_visits(tmp_path: Path):
    from clients.totem import TotemClient
    from totemd.local_codec import SAFE as wire_safe

    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    node = Node(tmp_path, config, 1, extra_args=("--send-queue-messages", "50"))
    try:
        node.start()
        node.wait_members([1])
        with node.client() as client, \
                TotemClient.connect(run_dir=node.run_dir, batch=False, timeout=2.0) as legacy:
            assert client.hello.batched and not legacy.hello.batched
            with pytest.raises(TryAgain) as caught:
                client.submit_many([(b"m%d" % i, False) for i in range(200)])
            assert (caught.value.accepted, caught.value.first_sseq) == (50, 1)
            got = _deliveries(client, 50)
            assert [e.data for e in got] == [b"m%d" % i for i in range(50)]
            # A subscriber without the BATCH flag gets the same deliveries one event each.
            assert [(e.data, e.sseq, e.seq) for e in _deliveries(legacy, 50)] == \
                [(e.data, e.sseq, e.seq) for e in got]
            assert client.submit(b"after", safe=True) == 51
            raw: list[tuple] = []
            deadline = time.monotonic() + 10.0
            while not raw and time.monotonic() < deadline:
                client.dispatch_deliveries(
                    lambda *fields: raw.append(fields[:3] + (fields[6], bytes(fields[7]))),
                    lambda event: None, timeout=0.2)
            assert raw == [(1, 1, 51, wire_safe, b"after")]
            # The array view of the same deliveries; one-delivery batches for
            # the subscriber without the BATCH flag.
            client.submit_many([(b"x%d" % i, i == 1) for i in range(3)])
            views = {}
            for name, who in (("batched", client), ("legacy", legacy)):
                rows: list[tuple] = []

                def on_batch(batch, rows=rows):
                    table = batch.table
                    rows.extend(zip(table["sender"].tolist(), table["sseq"].tolist(),
                                    table["flags"].tolist(),
                                    [bytes(batch.payload(i)) for i in range(len(batch))]))

                deadline = time.monotonic() + 10.0
                while (not rows or rows[-1][1] < 54) and time.monotonic() < deadline:
                    who.dispatch_batches(on_batch, lambda event: None, timeout=0.2)
                views[name] = rows
            assert views["batched"] == [(1, 52, 0, b"x0"), (1, 53, wire_safe, b"x1"), (1, 54, 0, b"x2")]
            assert views["legacy"] == [(1, 51, wire_safe, b"after")] + views["batched"]
            stats = client.stats()
        assert stats["daemon"]["try_again_queue_messages"] == 1
        assert stats["local"]["batch_subscribers"] == 1 and stats["local"]["subscribers"] == 2
    finally:
        node.stop()
    # The default bounds: 4 token visits of frames (68 frames of 1408 bytes) stop a
    # batch of 1 KiB messages long before the 16 MiB byte bound would.
    node = Node(tmp_path, config, 1)
    try:
        node.start()
        node.wait_members([1])
        with node.client() as client:
            with pytest.raises(TryAgain) as caught:
                client.submit_many([(bytes([i]) * 1024, False) for i in range(200)])
            accepted = caught.value.accepted
            assert 68 * 1408 // (1024 + 20) <= accepted <= 68 * 1408 // (1024 + 20) + 1
            assert len(_deliveries(client, accepted)) == accepted
            assert client.stats()["daemon"]["try_again_queue_frames"] == 1
    finally:
        node.stop()


def test_a_graceful_stop_delivers_what_it_accepted_first(single: Node):
    """SIGTERM drains: every message the node accepted is ordered and
    delivered back to it before it leaves (EVS rule S12 over its log)."""
    from totemd.evs import check_directory

    single.start()
    single.wait_members([1])
    accepted = 0
    with single.client() as client:
        for _ in range(3):
            batch = [(b"x" * 64, False)] * 1000
            try:
                client.submit_many(batch)
                accepted += len(batch)
            except TryAgain as error:
                accepted += error.accepted
                break
        assert single.stop() == 0
    records = [line for line in (single.evs_dir / "n1.1.jsonl").read_text().splitlines()]
    submits = sum('"ev":"submit"' in line for line in records)
    delivers = sum('"ev":"deliver"' in line for line in records)
    assert submits == accepted > 0
    assert delivers == submits
    report = check_directory(single.evs_dir)
    assert report.ok, report.format()
