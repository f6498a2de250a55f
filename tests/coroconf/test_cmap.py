"""cmap keys and types as corosync's parser sets them, and runtime.config."""

from __future__ import annotations

import coroconf

from .helpers import nodes, udpu

FULL = """\
totem {
	version: 2
	cluster_name: demo
	config_version: 7
	token: 5000
	token_coefficient: 100
	ip_dscp: ef
	knet_compression_level: -1
	crypto_cipher: none
	crypto_hash: none
	interface {
		knet_link_priority: 5
		mcastport: 6000
		linknumber: 1
		knet_ping_interval: 250
	}
}
nodelist {
	node {
		name: a
		nodeid: 1
		quorum_votes: 2
		ring0_addr: 10.0.0.1
		ring1_addr: 10.1.0.1
	}
	node {
		name: b
		nodeid: 2
		ring0_addr: 10.0.0.2
		ring1_addr: 10.1.0.2
	}
}
quorum {
	provider: corosync_votequorum
	expected_votes: 3
	two_node: 0
	last_man_standing_window: 20000
	device {
		model: net
		votes: 1
		net {
			host: qnetd
		}
	}
}
logging {
	to_syslog: yes
	logger_subsys {
		subsys: QUORUM
		debug: on
	}
}
system {
	state_dir: /tmp/x
}
uidgid {
	uid: 0
	gid: 0
}
"""


def test_keys_types_and_values_follow_coroparse():
    items = coroconf.to_cmap_items(coroconf.loads(FULL))
    assert items == [
        ("totem.version", "u32", 2),
        ("totem.cluster_name", "str", "demo"),
        ("totem.config_version", "u64", 7),
        ("totem.token", "u32", 5000),
        ("totem.token_coefficient", "u32", 100),
        ("totem.ip_dscp", "u8", 46),
        ("totem.knet_compression_level", "i32", -1),
        ("totem.crypto_cipher", "str", "none"),
        ("totem.crypto_hash", "str", "none"),
        # interface keys are indexed by linknumber, which is not a key itself
        ("totem.interface.1.knet_link_priority", "u8", 5),
        ("totem.interface.1.mcastport", "u16", 6000),
        ("totem.interface.1.knet_ping_interval", "u32", 250),
        ("nodelist.node.0.name", "str", "a"),
        ("nodelist.node.0.nodeid", "u32", 1),
        ("nodelist.node.0.quorum_votes", "u32", 2),
        ("nodelist.node.0.ring0_addr", "str", "10.0.0.1"),
        ("nodelist.node.0.ring1_addr", "str", "10.1.0.1"),
        ("nodelist.node.1.name", "str", "b"),
        ("nodelist.node.1.nodeid", "u32", 2),
        ("nodelist.node.1.ring0_addr", "str", "10.0.0.2"),
        ("nodelist.node.1.ring1_addr", "str", "10.1.0.2"),
        ("quorum.provider", "str", "corosync_votequorum"),
        ("quorum.expected_votes", "u32", 3),
        ("quorum.two_node", "u8", 0),
        ("quorum.last_man_standing_window", "u32", 20000),
        ("quorum.device.model", "str", "net"),
        ("quorum.device.votes", "u32", 1),
        ("quorum.device.net.host", "str", "qnetd"),
        ("logging.to_syslog", "str", "yes"),
        ("logging.logger_subsys.QUORUM.debug", "str", "on"),
        ("logging.logger_subsys.QUORUM.subsys", "str", "QUORUM"),
        ("system.state_dir", "str", "/tmp/x"),
        ("uidgid.config.uid.0", "u8", 1),
        ("uidgid.config.gid.0", "u8", 1),
    ]
    assert {kind for _key, kind, _value in items} <= coroconf.CMAP_TYPES


def test_runtime_config_gives_effective_values():
    config = coroconf.loads(FULL)
    runtime = {key: (kind, value) for key, kind, value in coroconf.runtime_config_items(config)}
    assert runtime["runtime.config.totem.token"] == ("u32", 5000)
    assert runtime["runtime.config.totem.consensus"] == ("u32", 6000)
    assert runtime["runtime.config.totem.token_retransmit"] == ("u32", 1190)
    assert runtime["runtime.config.totem.hold"] == ("u32", 942)
    assert runtime["runtime.config.totem.knet_compression_level"] == ("i32", -1)
    assert runtime["runtime.config.totem.knet_compression_model"] == ("str", "none")
    assert runtime["runtime.config.totem.block_unlisted_ips"] == ("u32", 1)
    # knet links: ping timers (one set, one derived) and the port
    assert runtime["runtime.config.totem.interface.1.knet_ping_interval"] == ("u32", 250)
    assert runtime["runtime.config.totem.interface.1.knet_ping_timeout"] == ("u32", 2500)
    assert runtime["runtime.config.totem.interface.1.mcastport"] == ("u16", 6000)
    assert runtime["runtime.config.totem.interface.0.mcastport"] == ("u16", 5405)
    assert all(kind in coroconf.CMAP_TYPES for kind, _value in runtime.values())


def test_runtime_token_includes_the_coefficient():
    runtime = dict((key, value) for key, _kind, value in
                   coroconf.runtime_config_items(coroconf.loads(udpu(rest=nodes(4)))))
    assert runtime["runtime.config.totem.token"] == 3000 + 2 * 650


def test_udp_publishes_derived_mcast_address_and_generated_nodeids():
    config = coroconf.loads("totem {\n\tversion: 2\n\ttransport: udp\n\tcluster_name: demo\n}\n"
                            + nodes(2, nodeids=False))
    extra = [item for item in coroconf.runtime_config_items(config)
             if not item[0].startswith("runtime.")]
    assert extra == [("totem.interface.0.mcastaddr", "str", "239.192.5.3"),
                     ("totem.interface.0.mcastport", "u16", 5405),
                     ("nodelist.node.0.nodeid", "u32", 0x0A000001),
                     ("nodelist.node.1.nodeid", "u32", 0x0A000002)]


def test_a_key_set_twice_appears_once_with_the_last_value():
    config = coroconf.loads(udpu("\ttoken: 4000\n\ttoken: 5000\n"))
    tokens = [item for item in coroconf.to_cmap_items(config) if item[0] == "totem.token"]
    assert tokens == [("totem.token", "u32", 5000)]
