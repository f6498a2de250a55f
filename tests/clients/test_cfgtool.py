"""coro cfgtool (corosync-cfgtool): the view built from a node's cmap keys,
its output, and the command's errors. A live cluster: tests/cluster/test_cfgtool_cluster.py."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from clients import cfgtool
from clients.cli import build_parser

NODELIST = {
    "nodelist.local_node_pos": 0,
    "nodelist.node.0.nodeid": 1, "nodelist.node.0.ring0_addr": "10.0.0.1",
    "nodelist.node.0.name": "alpha",
    "nodelist.node.1.nodeid": 2, "nodelist.node.1.ring0_addr": "10.0.0.2",
    "nodelist.node.1.ring1_addr": "10.1.0.2",
    "nodelist.node.2.nodeid": 3, "nodelist.node.2.ring0_addr": "10.0.0.3",
    "nodelist.node.10.nodeid": 11, "nodelist.node.10.ring0_addr": "10.0.0.11",
    "totem.transport": "knet", "totem.netmtu": 1400,
}


def _keys(members: str = "1 2") -> dict[str, object]:
    return {**NODELIST, "runtime.totem.node_id": 1, "runtime.totem.members": members,
            "runtime.totem.state": "OPERATIONAL"}


def test_status_marks_ring_members_connected_and_the_rest_disconnected():
    view = cfgtool.view_from_keys(_keys())
    assert [entry.nodeid for entry in view.nodes] == [1, 2, 3, 11]   # numeric, not text order
    assert view.transport == "udpu"          # a knet file runs as udpu over link 0
    assert cfgtool.status_lines(view) == [
        "Local node ID 1, transport udpu", "LINK ID 0 udpu", "\taddr\t= 10.0.0.1", "\tstatus:",
        "\t\tnodeid:    1:\tlocalhost", "\t\tnodeid:    2:\tconnected",
        "\t\tnodeid:    3:\tdisconnected", "\t\tnodeid:   11:\tdisconnected"]
    assert cfgtool.brief_status(view) == "n311"
    assert cfgtool.brief_status(cfgtool.view_from_keys(_keys("1 2 3 11"))) == "n333"


def test_nodes_show_the_link_to_each_other_node():
    lines = cfgtool.node_lines(cfgtool.view_from_keys(_keys()))
    assert lines[1:4] == ["nodeid: 2 reachable",
                          "   LINK: 0 udpu (10.0.0.1->10.0.0.2) enabled connected mtu: 1400", ""]
    assert lines[4:6] == ["nodeid: 3 not reachable",
                          "   LINK: 0 udpu (10.0.0.1->10.0.0.3) enabled disconnected mtu: 1400"]
    assert lines[-1] != ""


def test_udp_peers_learned_from_packets_are_shown_without_a_nodelist():
    keys = {"runtime.totem.node_id": 5, "runtime.totem.members": "5 9",
            "runtime.totem.state": "OPERATIONAL", "totem.transport": "udp",
            "runtime.members.5.ip": "r(0) ip(192.0.2.5) ",
            "runtime.members.9.ip": "r(0) ip(192.0.2.9) ", "runtime.members.9.status": "joined"}
    view = cfgtool.view_from_keys(keys)
    assert view.transport == "udp" and view.local_address == "192.0.2.5"
    assert [(e.nodeid, e.addresses) for e in view.nodes] == [(5, ("192.0.2.5",)),
                                                           (9, ("192.0.2.9",))]
    assert cfgtool.brief_status(view) == "n3"


def test_a_node_that_has_not_started_its_ring_is_reported():
    with pytest.raises(LookupError, match="runtime.totem"):
        cfgtool.view_from_keys(NODELIST)


def _run(argv: list[str], monkeypatch, keys: dict[str, object] | None = None
         ) -> tuple[int, str]:
    if keys is not None:
        monkeypatch.setattr(cfgtool, "read_view", lambda _run_dir: cfgtool.view_from_keys(keys))
    args = build_parser().parse_args(["cfgtool", "--run-dir", "/nonexistent", *argv])
    out = io.StringIO()
    return cfgtool.run(args, out), out.getvalue()


def test_command_line_outputs_and_exit_statuses(monkeypatch):
    code, text = _run(["-s", "-b"], monkeypatch, _keys())
    assert code == 1 and text.endswith("\tstatus\t= n311\n")      # a node is disconnected
    code, text = _run(["-s", "-b"], monkeypatch, _keys("1 2 3 11"))
    assert code == 0
    code, text = _run(["-a", "2"], monkeypatch, _keys())
    assert (code, text) == (0, "10.0.0.2 10.1.0.2\n")
    code, text = _run(["-s", "--json"], monkeypatch, _keys())
    rows = [json.loads(line) for line in text.splitlines()]
    assert [(r["nodeid"], r["status"]) for r in rows] == [
        (1, "localhost"), (2, "connected"), (3, "disconnected"), (11, "disconnected")]
    code, text = _run(["-n", "--json"], monkeypatch, _keys())
    assert [json.loads(line)["nodeid"] for line in text.splitlines()] == [2, 3, 11]
    assert _run(["-s", "-i", "0"], monkeypatch, _keys())[0] == 0
    assert _run(["-s", "-i", "10.0.0.1"], monkeypatch, _keys())[0] == 0


def test_errors_say_what_is_wrong(monkeypatch, capsys):
    assert _run(["-s"], monkeypatch)[0] == 1                 # nothing runs there
    assert "cannot reach the node" in capsys.readouterr().err
    assert _run(["-H"], monkeypatch)[0] == 1
    assert "no node runs with run directory /nonexistent" in capsys.readouterr().err
    assert _run(["-a", "7"], monkeypatch, _keys())[0] == 1
    assert "node 7 is not known" in capsys.readouterr().err
    assert _run(["-s", "-i", "10.9.9.9"], monkeypatch, _keys())[0] == 1
    assert "no link with address or id 10.9.9.9" in capsys.readouterr().err
    assert _run(["-R"], monkeypatch)[0] == 1
    assert "needs the CFG service" in capsys.readouterr().err
    assert _run(["-k", "2"], monkeypatch)[0] == 1
    assert "needs the CFG service" in capsys.readouterr().err
    assert _run([], monkeypatch)[0] == 2
    assert _run(["-n", "-b"], monkeypatch)[0] == 2


def test_the_run_directory_falls_back_to_corosyncs_defaults_as_for_coro_cmap(monkeypatch, tmp_path):
    monkeypatch.delenv("CORO_RUN_DIR", raising=False)
    from clients import cmapctl

    monkeypatch.setattr(cmapctl, "DEFAULT_CONFIG", str(tmp_path / "missing.conf"))
    args = argparse.Namespace(run_dir=None, config=None)
    assert cmapctl.resolve_run_dir(args) == "/run/corosync"
    conf = tmp_path / "corosync.conf"
    conf.write_text("totem {\n version: 2\n cluster_name: t\n transport: udpu\n}\n"
                    "nodelist {\n node {\n ring0_addr: 127.0.0.1\n nodeid: 1\n }\n}\n"
                    f"system {{\n run_dir: {tmp_path}/run\n}}\n")
    monkeypatch.setattr(cmapctl, "DEFAULT_CONFIG", str(conf))
    assert cmapctl.resolve_run_dir(argparse.Namespace(run_dir=None, config=None)) == f"{tmp_path}/run"


def test_a_knet_node_shows_the_link_mtu_its_frames_are_cut_to():
    keys = {**_keys(), "totem.netmtu": 65536, "stats.transport.link_mtu": 1500}
    lines = cfgtool.node_lines(cfgtool.view_from_keys(keys))
    assert lines[2] == "   LINK: 0 udpu (10.0.0.1->10.0.0.2) enabled connected mtu: 1500"
    assert cfgtool.view_from_keys({**keys, "stats.transport.link_mtu": 0}).netmtu == 65536
