"""Defaults equal corosync 3.1's, and derived values are computed as corosync does."""

from __future__ import annotations

import pytest

import coroconf
from coroconf import _derive

from .helpers import load_udpu, nodes, udpu


def test_totem_defaults_match_corosync():
    totem = load_udpu().totem
    assert (totem.token_ms, totem.token_base_ms, totem.token_coefficient_ms) == (3000, 3000, 650)
    assert (totem.token_retransmits_before_loss_const, totem.token_retransmit_ms,
            totem.hold_ms) == (4, 714, 561)
    assert (totem.join_ms, totem.send_join_ms, totem.consensus_ms, totem.merge_ms,
            totem.downcheck_ms) == (50, 0, 3600, 200, 1000)
    assert (totem.fail_recv_const, totem.seqno_unchanged_const, totem.window_size,
            totem.max_messages, totem.miss_count_const) == (2500, 30, 50, 17, 5)
    assert (totem.netmtu, totem.max_network_delay_ms, totem.heartbeat_failures_allowed,
            totem.token_warning_percent) == (1500, 50, 0, 75)
    assert (totem.block_unlisted_ips, totem.cancel_token_hold_on_retransmit) == (True, False)
    assert (totem.crypto_cipher, totem.crypto_hash, totem.crypto_model) == ("none", "none", "nss")
    assert totem.ip_version == "ipv6-4" and totem.link_mode == "passive"
    (link,) = totem.interfaces
    assert (link.linknumber, link.mcastport, link.ttl) == (0, 5405, 1)


def test_transport_defaults_to_knet_and_runs_as_udpu():
    config = coroconf.loads("totem {\n\tversion: 2\n}\n" + nodes(2), "corosync.conf")
    assert (config.totem.transport, config.totem.network_transport) == ("knet", "udpu")
    assert config.warnings == ("corosync.conf: transport knet: running as udpu over link 0 with "
                               "knet's fragmentation (frames cut to the link MTU)",)
    # corosync's knet netmtu (knet cuts frames to the link), udp/udpu's 1500.
    assert (config.totem.netmtu, config.totem.knet_mtu) == (65536, 0)
    assert coroconf.totem_params(config).netmtu == 65536


def test_knet_mtu_is_zero_or_a_usable_link_mtu():
    head = "totem {\n\tversion: 2\n\tknet_mtu: %d\n}\n"
    assert coroconf.loads(head % 1500 + nodes(2)).totem.knet_mtu == 1500
    for bad in (575, 65537):
        with pytest.raises(coroconf.ConfigError, match="knet_mtu"):
            coroconf.loads(head % bad + nodes(2))


def test_udp_defaults_to_ipv4():
    config = coroconf.loads("totem {\n\tversion: 2\n\ttransport: udp\n\tcluster_name: demo\n}\n"
                            + nodes(2))
    assert config.totem.ip_version == "ipv4"


@pytest.mark.parametrize("count,token,retransmit,hold,consensus", [
    (2, 3000, 714, 561, 3600),
    (3, 3650, 869, 685, 4380),
    (5, 4950, 1178, 932, 5940),
])
def test_token_coefficient_applies_from_three_nodes(count, token, retransmit, hold, consensus):
    totem = coroconf.loads(udpu(rest=nodes(count))).totem
    assert (totem.token_ms, totem.token_retransmit_ms, totem.hold_ms,
            totem.consensus_ms) == (token, retransmit, hold, consensus)
    assert totem.token_base_ms == 3000


def test_token_coefficient_zero_turns_it_off():
    totem = coroconf.loads(udpu("\ttoken_coefficient: 0\n", nodes(5))).totem
    assert totem.token_ms == 3000


def test_old_one_second_token_gives_the_man_page_numbers():
    # corosync.conf(5) still quotes token_retransmit 238 ms and hold 180 ms,
    # the values for token 1000 ms.
    totem = load_udpu("\ttoken: 1000\n").totem
    assert (totem.token_retransmit_ms, totem.hold_ms, totem.consensus_ms) == (238, 180, 1200)


def test_explicit_values_win_over_derivations():
    totem = load_udpu("\ttoken: 5000\n\ttoken_retransmit: 500\n\tconsensus: 7000\n").totem
    assert (totem.token_ms, totem.token_retransmit_ms, totem.hold_ms, totem.consensus_ms) == (
        5000, 500, 390, 7000)


def test_retransmits_const_feeds_token_retransmit():
    totem = load_udpu("\ttoken_retransmits_before_loss_const: 10\n").totem
    assert totem.token_retransmit_ms == int(3000 / 10.2) == 294


def test_zero_means_default_where_corosync_says_so():
    totem = load_udpu("\ttoken: 0\n\tjoin: 0\n\twindow_size: 0\n\tsend_join: 0\n"
                      "\ttoken_warning: 0\n").totem
    assert (totem.token_ms, totem.join_ms, totem.window_size) == (3000, 50, 50)
    assert (totem.send_join_ms, totem.token_warning_percent) == (0, 0)


def test_consensus_rounds_through_a_c_float():
    assert _derive.consensus_ms(3000) == 3600
    assert _derive.consensus_ms(5000) == 6000
    # 1.2 x 16777217 is not representable in a float32: corosync gets 20132660
    assert _derive.consensus_ms(16777217) == 20132660


def test_knet_ping_timers_follow_token():
    config = coroconf.loads("totem {\n\tversion: 2\n\ttoken: 4000\n\tinterface {\n"
                            "\t\tlinknumber: 0\n\t\tknet_pong_count: 4\n\t}\n}\n" + nodes(2))
    (link,) = config.totem.interfaces
    assert (link.knet_ping_interval_ms, link.knet_ping_timeout_ms) == (500, 1000)


def test_udp_multicast_address_is_derived_from_the_cluster_name():
    assert _derive.cluster_mcast_addr("demo", 0, ipv6=False) == "239.192.5.3"
    assert _derive.cluster_mcast_addr("demo", 1, ipv6=False) == "239.192.5.4"
    assert _derive.cluster_mcast_addr("demo", 0, ipv6=True) == "ff15::5fd"
    config = coroconf.loads("totem {\n\tversion: 2\n\ttransport: udp\n\tcluster_name: demo\n"
                            "\tinterface {\n\t\tbindnetaddr: 10.0.0.0\n\t}\n}\n")
    assert config.totem.interfaces[0].mcastaddr == "239.192.5.3"
    assert config.totem.interfaces[0].mcastport == 5405


def test_broadcast_uses_the_broadcast_address():
    config = coroconf.loads("totem {\n\tversion: 2\n\ttransport: udp\n\tinterface {\n"
                            "\t\tbindnetaddr: 10.0.0.0\n\t\tbroadcast: yes\n\t}\n}\n")
    assert config.totem.interfaces[0].mcastaddr == "255.255.255.255"


def test_nodeids_are_generated_from_ipv4_for_udpu():
    config = coroconf.loads(udpu(rest=nodes(2, nodeids=False, prefix="10.16.35.10")))
    assert [node.nodeid for node in config.nodelist] == [0x0A102365, 0x0A102366]
    assert all(node.nodeid_generated for node in config.nodelist)
    high = coroconf.loads(udpu("\tclear_node_high_bit: yes\n",
                               nodes(1, nodeids=False, prefix="192.168.1.")))
    assert high.nodelist.nodes[0].nodeid == 0xC0A80101 & 0x7FFFFFFF


def test_quorum_defaults_and_two_node_implies_wait_for_all():
    assert load_udpu().quorum == coroconf.QuorumConfig()
    quorum = coroconf.loads(udpu() + "quorum {\n\tprovider: corosync_votequorum\n"
                            "\ttwo_node: 1\n}\n").quorum
    assert (quorum.provider, quorum.two_node, quorum.wait_for_all) == (
        "corosync_votequorum", True, True)
    assert quorum.last_man_standing_window_ms == 10000 and quorum.expected_votes is None
    explicit = coroconf.loads(udpu() + "quorum {\n\ttwo_node: 1\n\twait_for_all: 0\n}\n")
    assert explicit.quorum.wait_for_all is False


def test_logging_and_system_defaults():
    config = load_udpu()
    assert config.logging == coroconf.LoggingConfig()
    assert (config.logging.to_syslog, config.logging.to_stderr, config.logging.timestamp) == (
        True, True, "hires")
    assert (config.system.state_dir, config.system.run_dir) == ("/var/lib/corosync",
                                                                "/run/corosync")


def test_state_and_run_dir_can_be_set_per_node():
    config = coroconf.loads(udpu() + "system {\n\tstate_dir: /tmp/n1/state\n"
                            "\trun_dir: /tmp/n1/run\n}\n")
    assert (config.system.state_dir, config.system.run_dir) == ("/tmp/n1/state", "/tmp/n1/run")


def test_logging_values_and_subsystems():
    config = coroconf.loads(udpu() + "logging {\n\tto_stderr: off\n\tto_file: yes\n"
                            "\tsyslog_level: debug\n\tlogger_subsys {\n\t\tsubsys: QUORUM\n"
                            "\t\tdebug: on\n\t}\n}\n")
    logging = config.logging
    assert (logging.to_stderr, logging.to_logfile, logging.syslog_priority) == (False, True,
                                                                               "debug")
    assert logging.subsystems == (coroconf.LoggerSubsysConfig(subsys="QUORUM", debug="on"),)


def test_config_is_frozen():
    config = load_udpu()
    with pytest.raises(AttributeError):
        config.totem.token_ms = 1  # type: ignore[misc]
