"""coro cmap -C TARGET (corosync-cmapctl -C) and runtime.blackbox.dump_flight_data:
the trigger keys' counts in the store, which published keys each target
clears, objdb's own counters, and a live node whose totemd and objdb restart
their published counters and whose totemd writes its flight data."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from clients import cmapctl
from clients.cli import build_parser
from objdb.clearing import Baselines, TriggerWatch, expand_targets
from objdb.errors import ReadOnly
from objdb.service import CmapService
from objdb.store import Store
from objdb.types import ValueType
from tests.daemon.daemon_helpers import Node, free_udp_port, wait_for, write_config
from totemd.stats import LEVEL_KEYS, MAXIMUM_KEYS, DaemonStats, clear_target, cmap_items


def test_every_client_write_of_a_trigger_key_is_counted_whatever_its_value():
    store = Store()
    store.set("stats.clear.totem", ValueType.UINT8, 1)
    store.set("stats.clear.totem", ValueType.UINT8, 1)          # the same value: still a request
    store.set("stats.clear.totem", ValueType.STRING, "please")  # another type: too
    assert store.get("stats.clear.totem") == (ValueType.UINT64, 3)
    with pytest.raises(ReadOnly):                               # the rest of stats. stays read-only
        store.set("stats.clear.other", ValueType.UINT8, 1)
    with pytest.raises(ReadOnly):
        store.set("stats.srp.orf_token_rx", ValueType.UINT64, 0)


def test_a_trigger_watch_reports_the_keys_written_since_its_last_look():
    watch = TriggerWatch()
    assert watch.changed({"totem": 4, "all": 1}) == set()      # the first look records
    assert watch.changed({"totem": 4, "all": 1}) == set()
    assert watch.changed({"totem": 5, "all": 1}) == {"totem"}
    assert watch.changed({"totem": 5, "all": 2}) == {"all"}
    assert expand_targets({"all"}) == {"totem", "knet", "ipc", "schedmiss", "all"}
    assert expand_targets({"ipc"}) == {"ipc"}
    baselines = Baselines()
    baselines.clear({"a": 10})
    assert (baselines.apply("a", 15), baselines.apply("b", 7)) == (5, 7)


def test_each_published_counter_belongs_to_one_target_and_levels_to_none():
    stats = DaemonStats(
        node_id=1, inc=1, state="OPERATIONAL", ring_id=(1, 4), members=(1,), last_state_change="",
        token_rotation_ms=0.5, srp={"orf_token_rx": 9, "sort_queue_frames": 3},
        transport={"packets_sent": 5, "receive_buffer_bytes": 1 << 20, "gso_enabled": 1},
        local={"requests": 2, "subscribers": 1, "overflow_peak_bytes": 8},
        daemon={"loop_turns": 7, "loop_stalls": 1, "loop_stall_max_ms": 2.5, "send_queue_frames": 4,
                "local_connections": 1, "local_events_refused": 0})
    targets = {key: clear_target(key) for key in cmap_items(stats)}
    assert targets["stats.srp.orf_token_rx"] == "totem"
    assert targets["stats.totemd.loop_turns"] == "totem"
    assert targets["stats.transport.packets_sent"] == "knet"
    assert targets["stats.totemd.local_requests"] == "ipc"
    assert targets["stats.totemd.local_events_refused"] == "ipc"
    assert targets["stats.totemd.loop_stalls"] == "schedmiss"
    for key in ("stats.srp.sort_queue_frames", "stats.transport.receive_buffer_bytes",
                "stats.totemd.local_subscribers", "stats.totemd.send_queue_frames",
                "stats.totemd.local_connections", "runtime.totem.ring_seq"):
        assert targets[key] is None, key
    assert set(MAXIMUM_KEYS) & set(targets) == {"stats.totemd.loop_stall_max_ms",
                                               "stats.totemd.local_overflow_peak_bytes"}
    assert not {key for key in LEVEL_KEYS if not key.startswith("stats.")}


def test_objdb_publishes_its_ipc_counters_from_the_clear_and_keeps_its_levels():
    store = Store()
    service = CmapService(store)
    service._counts["requests"] = 10
    published = dict((key, value) for key, _type, value in service.stats_items())
    assert published["stats.objdb.requests"] == 10
    store.set("stats.clear.ipc", ValueType.UINT8, 1)
    service._counts["requests"] = 12
    published = dict((key, value) for key, _type, value in service.stats_items())
    assert published["stats.objdb.requests"] == 0
    assert published["stats.objdb.keys"] == 1            # a level: the trigger key itself
    service._counts["requests"] = 15
    published = dict((key, value) for key, _type, value in service.stats_items())
    assert published["stats.objdb.requests"] == 3
    store.set("stats.clear.knet", ValueType.UINT8, 1)      # not objdb's
    published = dict((key, value) for key, _type, value in service.stats_items())
    assert published["stats.objdb.requests"] == 3


def _clear(run_dir: Path, target: str) -> int:
    args = build_parser().parse_args(["cmap", "--run-dir", str(run_dir), "-C", target])
    return cmapctl.run(args)


def test_C_rejects_an_unknown_target(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cmap", "-C", "everything"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.multiprocess
def test_a_running_node_restarts_the_counters_of_the_target_asked_for(tmp_path: Path):
    from clients.cmap import CmapClient

    port = free_udp_port(["127.0.0.1"])
    node = Node(tmp_path, write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"}), 1)
    node.start()
    try:
        node.wait_members([1])
        with CmapClient.connect(node.run_dir) as cmap:
            def u64(key: str) -> int:
                return cmap.get_u64(key)

            wait_for(lambda: u64("stats.srp.orf_token_rx") >= 20, 10.0, "20 token visits published")
            wait_for(lambda: u64("stats.objdb.requests") >= 5, 10.0, "objdb requests published")
            # A singleton ring sends nothing over UDP: garbage makes the link counters move.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                for _ in range(10):
                    sender.sendto(b"not totem", ("127.0.0.1", port))
            wait_for(lambda: u64("stats.transport.packets_received") >= 10, 10.0, "link counters")
            tokens, packets = u64("stats.srp.orf_token_rx"), u64("stats.transport.packets_received")
            buffer = u64("stats.transport.receive_buffer_bytes")
            assert _clear(node.run_dir, "totem") == 0
            wait_for(lambda: u64("stats.srp.orf_token_rx") < tokens, 5.0, "stats.srp cleared")
            assert u64("stats.transport.packets_received") >= packets      # knet's: not asked for
            assert u64("stats.transport.receive_buffer_bytes") == buffer   # a level
            assert node.stats()["srp"]["orf_token_rx"] >= tokens           # the daemon's own count
            requests = u64("stats.objdb.requests")
            assert _clear(node.run_dir, "all") == 0
            wait_for(lambda: u64("stats.transport.packets_received") == 0, 5.0, "knet cleared")
            wait_for(lambda: u64("stats.objdb.requests") < requests, 5.0, "objdb's ipc cleared")
            # corosync-blackbox's way: any write of the key, twice the same value too.
            for round_ in (1, 2):
                cmap.set("runtime.blackbox.dump_flight_data", "yes", ValueType.STRING)
                wait_for(lambda: node.log_text().count("flight data written to") == round_, 5.0,
                         f"flight data dump {round_}")
        assert "statistics cleared: totem" in node.log_text()
        line = next(line for line in node.log_text().splitlines() if "flight data written to" in line)
        assert Path(line.split("flight data written to ")[1].split(" (")[0]).is_file()
    finally:
        assert node.stop() == 0
