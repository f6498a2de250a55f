"""Real-world corosync.conf files (corosync's examples, the man page, pcs,
Proxmox, an old openais-style file) load, with the expected warnings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import coroconf

FIXTURES = Path(__file__).parent / "fixtures"


#: Every file with a quorum section gets this one until the quorum service exists.
QUORUM = ("%s.conf:%d: quorum.provider corosync_votequorum: the quorum service is not built yet; "
          "no node computes quorum or blocks on its loss")

def _load(name: str) -> coroconf.Config:
    return coroconf.load(FIXTURES / name)


def _names(config: coroconf.Config) -> list[str]:
    # drop the directory part so expectations do not depend on the checkout
    return [warning.replace(str(FIXTURES) + "/", "") for warning in config.warnings]


def test_corosync3_example_as_shipped_is_a_template():
    # Its ring0_addr lines are commented out; corosync 3 refuses it too ("No
    # interfaces defined"), we say which node lacks what.
    with pytest.raises(coroconf.ConfigConsistencyError,
                       match=r"^.*corosync3_example\.conf:31: node 1 of the nodelist \(node1\) has "
                             r"no ring0_addr; every node needs an address on link 0$"):
        _load("corosync3_example.conf")


def test_corosync3_example_filled_in_with_two_knet_links():
    config = _load("corosync3_example_filled.conf")
    assert (config.totem.transport, config.totem.network_transport) == ("knet", "udpu")
    assert [node.ring_addrs for node in config.nodelist] == [("192.168.0.1", "192.168.1.1"),
                                                             ("192.168.0.2", "192.168.1.2")]
    assert config.logging.subsystems == (coroconf.LoggerSubsysConfig(subsys="QUORUM",
                                                                     debug="off"),)
    assert (config.logging.to_logfile, config.logging.logfile) == (
        True, "/var/log/cluster/corosync.log")
    assert _names(config) == ["corosync3_example_filled.conf: transport knet: running as udpu "
                              "over link 0 with knet's fragmentation (frames cut to the link MTU); "
                              "ring1_addr ignored", QUORUM % ("corosync3_example_filled", 23)]


def test_corosync2_multicast_example_needs_transport_udp_under_corosync3():
    with pytest.raises(coroconf.ConfigConsistencyError,
                       match=re.escape("transport is not set, so corosync 3's default knet "
                                       "applies (for multicast without a nodelist, set "
                                       "'transport: udp')")):
        _load("corosync2_example_udp.conf")
    config = _load("corosync2_example_udp_fixed.conf")
    (link,) = config.totem.interfaces
    assert (config.totem.network_transport, link.bindnetaddr, link.mcastaddr, link.mcastport,
            link.ttl) == ("udp", "192.168.1.0", "239.255.1.1", 5405, 1)
    assert len(config.nodelist) == 0
    assert _names(config) == ["corosync2_example_udp_fixed.conf:9: totem.interface.ringnumber "
                              "is the corosync 2 name of linknumber; read as linknumber"]


def test_corosync2_udpu_example_generates_the_missing_nodeids():
    config = _load("corosync2_example_udpu.conf")
    assert [node.nodeid for node in config.nodelist] == [1, 2, 0x0A102367, 0x0A102368,
                                                         0x0A102369]
    assert config.totem.token_ms == 3000 + 3 * 650
    assert _names(config) == [
        "corosync2_example_udpu.conf:8: totem.interface.ringnumber is the corosync 2 name of "
        "linknumber; read as linknumber",
        "corosync2_example_udpu.conf:9: totem.interface.bindnetaddr is ignored because the "
        "nodelist gives each node's address"]


def test_pcs_two_node_knet_with_crypto():
    config = _load("pcs_two_node_knet.conf")
    assert (config.totem.crypto_cipher, config.totem.crypto_hash) == ("aes256", "sha256")
    assert config.totem.cluster_uuid == "e592f61f916943978bdf7c046a195980"
    assert [node.ring0_addr for node in config.nodelist] == ["pcmk-1", "pcmk-2"]
    assert (config.quorum.two_node, config.quorum.wait_for_all) == (True, True)
    assert config.totem.keyfile is None  # the default, /etc/corosync/authkey
    assert _names(config) == [  # crypto is implemented: no warning for it
        "pcs_two_node_knet.conf:7: transport knet: running as udpu over link 0 with knet's fragmentation (frames cut to the link MTU)",
        QUORUM % ("pcs_two_node_knet", 28)]


def test_proxmox_three_nodes_two_links():
    config = _load("proxmox_two_links.conf")
    assert config.totem.config_version == 5
    assert config.totem.ip_version == "ipv4-6"
    assert [node.quorum_votes for node in config.nodelist] == [1, 1, 1]
    assert [link.linknumber for link in config.totem.interfaces] == [0, 1]
    assert config.totem.token_ms == 3650
    assert (config.totem.crypto_cipher, config.totem.crypto_hash) == ("aes256", "sha256")  # secauth
    assert _names(config) == [
        "proxmox_two_links.conf: transport knet: running as udpu over link 0 with knet's fragmentation (frames cut to the link MTU); ring1_addr ignored",
        "proxmox_two_links.conf:46: knet options have no effect (knet runs as udpu with fragmentation here): "
        "totem.link_mode", QUORUM % ("proxmox_two_links", 33)]


def test_man_page_add_node_example():
    config = _load("manpage_add_node.conf")
    assert [(node.nodeid, node.name) for node in config.nodelist] == [
        (1, "node1"), (2, "node2"), (3, "NEW")]


def test_old_openais_style_file_loads_with_every_ignored_part_reported():
    config = _load("legacy_openais_style.conf")
    assert (config.totem.token_retransmits_before_loss_const, config.totem.join_ms,
            config.totem.max_messages, config.totem.clear_node_high_bit) == (10, 60, 20, True)
    assert config.totem.interfaces[0].mcastport == 5406
    assert config.quorum.expected_votes == 1
    warnings = _names(config)
    for fragment in ("totem.vsftype", "totem.threads", "totem.rrp_mode", "ringnumber",
                     "section 'amf'", "section 'aisexec'", "section 'service'", "logging.tags",
                     "bindnetaddr is ignored"):
        assert sum(fragment in warning for warning in warnings) == 1, fragment
    assert len(warnings) == 10  # the 9 above and the quorum provider


def test_debian_single_node_default():
    config = _load("debian_default.conf")
    assert config.system.allow_knet_handle_fallback is True
    assert [(node.nodeid, node.ring0_addr) for node in config.nodelist] == [(1, "127.0.0.1")]
    assert config.local_node(["127.0.0.1/8"]).name == "node1"
    assert coroconf.totem_params_kwargs(config)["nodes"] == 1
    assert _names(config) == ["debian_default.conf: transport knet: running as udpu over link 0 with knet's fragmentation (frames cut to the link MTU)",
                              QUORUM % ("debian_default", 29)]
