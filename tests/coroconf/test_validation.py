"""Keys that are fine alone but not together: each check and its exact message."""

from __future__ import annotations

import re

import pytest

import coroconf
from coroconf import ConfigConsistencyError

from .helpers import UDPU_NODES, nodes, udpu

KNET = "totem {\n\tversion: 2\n\ttransport: knet\n}\n"


def _fails(text: str, message: str) -> ConfigConsistencyError:
    with pytest.raises(ConfigConsistencyError, match=rf"^{re.escape(message)}$") as caught:
        coroconf.loads(text, "corosync.conf")
    return caught.value


def test_version_is_required():
    error = _fails("totem {\n\ttransport: udpu\n}\n" + UDPU_NODES,
                   "corosync.conf: totem.version must be 2 (write 'version: 2' in the totem "
                   "section)")
    assert error.line is None
    _fails("totem {\n\tversion: 1\n\ttransport: udpu\n}\n" + UDPU_NODES,
           "corosync.conf:2: totem.version must be 2 (write 'version: 2' in the totem section), "
           "not 1")
    _fails(UDPU_NODES.replace("nodeid: 1", "nodeid: 3") + "totem {\n}\n",
           "corosync.conf: totem.version must be 2 (write 'version: 2' in the totem section)")


@pytest.mark.parametrize("extra,message", [
    ("\ttoken: 20\n", "corosync.conf:4: token (20 ms) must be at least 30 ms"),
    ("\tjoin: 10\n", "corosync.conf:4: join (10 ms) must be at least 30 ms"),
    ("\tmerge: 29\n", "corosync.conf:4: merge (29 ms) must be at least 30 ms"),
    ("\tdowncheck: 1\n", "corosync.conf:4: downcheck (1 ms) must be at least 30 ms"),
    ("\tmax_network_delay: 5\n", "corosync.conf:4: max_network_delay (5 ms) must be at least "
                                 "30 ms"),
    ("\thold: 10\n", "corosync.conf:4: hold (10 ms) must be at least 14 ms"),
    ("\ttoken_retransmit: 25\n", "corosync.conf:4: token_retransmit (25 ms) must be at least "
                                 "30 ms"),
    ("\tconsensus: 25\n", "corosync.conf:4: consensus (25 ms) must be at least 30 ms"),
    ("\tconsensus: 40\n", "corosync.conf:4: consensus (40 ms) must be at least join (50 ms)"),
    ("\ttoken: 100\n\ttoken_retransmit: 30\n\tjoin: 500\n",
     "corosync.conf:6: consensus, derived as 1.2 x token (100 ms) = 120 ms, is below join "
     "(500 ms); set consensus or lower join"),
    ("\ttoken_warning: 150\n", "corosync.conf:4: token_warning (150%) must be between 0 (no "
                               "warnings) and 100 percent of token"),
    ("\ttoken: 100\n", "corosync.conf:4: token_retransmit, derived as token (100 ms) / "
                       "(token_retransmits_before_loss_const (4) + 0.2) = 23 ms, is below the "
                       "30 ms minimum; raise token or lower token_retransmits_before_loss_const"),
])
def test_timer_limits(extra, message):
    _fails(udpu(extra), message)


def test_the_minimums_themselves_are_accepted():
    # token_retransmit 30 ms gives hold 30 x 0.8 - 10 = 14 ms: both exactly at the minimum,
    # so a derived hold can never be the first value to fall short.
    totem = coroconf.loads(udpu("\ttoken: 150\n\ttoken_retransmit: 30\n\tjoin: 30\n")).totem
    assert (totem.token_retransmit_ms, totem.hold_ms, totem.join_ms) == (30, 14, 30)


def test_consensus_below_one_point_two_tokens_with_three_nodes():
    _fails(udpu("\tconsensus: 3000\n", nodes(3)),
           "corosync.conf:4: consensus (3000 ms) must be at least 1.2 x token (3650 ms) = 4380 ms "
           "with 3 or more nodes")
    # corosync.conf(5): with two nodes a consensus below token is safe
    two = coroconf.loads(udpu("\tconsensus: 3000\n"), "corosync.conf")
    assert (two.totem.consensus_ms, two.warnings) == (3000, ())


def test_duplicate_nodeids():
    _fails(udpu(rest=UDPU_NODES.replace("nodeid: 2", "nodeid: 1")),
           "corosync.conf:12: nodeid 1 is used by both node 1 of the nodelist (10.0.0.1) and "
           "node 2 of the nodelist (10.0.0.2)")
    generated = (f"nodelist {{\n\tnode {{\n\t\tring0_addr: 10.0.0.2\n\t\tnodeid: {0x0A000002}\n"
                 "\t}\n\tnode {\n\t\tring0_addr: 10.0.0.2\n\t}\n}\n")
    _fails(udpu(rest=generated),
           f"corosync.conf:11: nodeid {0x0A000002} (generated from ring0_addr 10.0.0.2) is used "
           "by both node 1 of the nodelist (10.0.0.2) and node 2 of the nodelist (10.0.0.2)")


def test_knet_needs_explicit_small_nodeids():
    _fails(KNET + nodes(2, nodeids=False),
           "corosync.conf:7: transport knet needs an explicit nodeid for every node, and node 1 "
           "of the nodelist (10.0.0.1) has none (0 is reserved)")
    _fails(KNET + UDPU_NODES.replace("nodeid: 2", "nodeid: 70000"),
           "corosync.conf:12: transport knet needs node ids below 65536, but node 2 of the "
           "nodelist (10.0.0.2) has nodeid 70000")
    _fails(KNET + UDPU_NODES.replace("nodeid: 2", "nodeid: 0"),
           "corosync.conf:12: transport knet needs an explicit nodeid for every node, and node 2 "
           "of the nodelist (10.0.0.2) has none (0 is reserved)")


def test_udpu_cannot_generate_a_nodeid_from_a_name_or_ipv6():
    for address in ("node2", "fd00::2"):
        _fails(udpu(rest=f"nodelist {{\n\tnode {{\n\t\tring0_addr: {address}\n\t}}\n}}\n"),
               f"corosync.conf:7: node 1 of the nodelist ({address}) has no nodeid, and one can "
               f"only be generated from an IPv4 ring0_addr (not '{address}'); add a nodeid")


def test_every_node_needs_ring0_addr():
    _fails(udpu(rest="nodelist {\n\tnode {\n\t\tnodeid: 1\n\t\tname: a\n\t}\n}\n"),
           "corosync.conf:7: node 1 of the nodelist (a) has no ring0_addr; every node needs an "
           "address on link 0")


def test_several_links_need_names_and_the_same_links():
    two_links = ("nodelist {\n\tnode {\n\t\tnodeid: 1\n\t\tring0_addr: 10.0.0.1\n"
                 "\t\tring1_addr: 10.1.0.1\n\t}\n\tnode {\n\t\tnodeid: 2\n"
                 "\t\tring0_addr: 10.0.0.2\n\t\tring1_addr: 10.1.0.2\n\t}\n}\n")
    _fails(KNET + two_links, "corosync.conf:8: with several links every node needs a 'name', and "
                             "node 1 of the nodelist (10.0.0.1) has none")
    named = two_links.replace("nodeid: 1\n", "nodeid: 1\n\t\tname: a\n").replace(
        "nodeid: 2\n", "nodeid: 2\n\t\tname: b\n")
    _fails(KNET + named.replace("\t\tring1_addr: 10.1.0.2\n", ""),
           "corosync.conf:15: every node needs an address on the same links, but node 2 of the "
           "nodelist (b) has links 0 while another node has links 0 to 1")
    assert len(coroconf.loads(KNET + named).nodelist) == 2


def test_one_address_for_two_nodes():
    _fails(udpu(rest=UDPU_NODES.replace("10.0.0.2", "10.0.0.1")),
           "corosync.conf:11: ring0_addr 10.0.0.1 is given to both node 1 of the nodelist "
           "(10.0.0.1) and node 2 of the nodelist (10.0.0.1)")


def test_one_link_mixes_ip_families():
    _fails(udpu(rest=UDPU_NODES.replace("10.0.0.2", "fd00::2")),
           "corosync.conf: the nodes on link 0 mix IPv4 and IPv6 addresses (10.0.0.1 and fd00::2)")


def test_udpu_and_udp_have_one_link():
    rest = UDPU_NODES.replace("nodeid: 1\n", "nodeid: 1\n\t\tname: a\n\t\tring1_addr: 10.1.0.1\n"
                              ).replace("nodeid: 2\n", "nodeid: 2\n\t\tname: b\n"
                                        "\t\tring1_addr: 10.1.0.2\n")
    _fails(udpu(rest=rest), "corosync.conf: transport udpu has one link (0), but links [0, 1] "
                            "are configured; only knet has several")


def test_transports_that_need_a_nodelist():
    _fails("totem {\n\tversion: 2\n\ttransport: udpu\n\tinterface {\n"
           "\t\tbindnetaddr: 10.0.0.0\n\t}\n}\n",
           "corosync.conf:3: transport udpu needs a nodelist with a nodeid and ring0_addr for "
           "each node")
    _fails("totem {\n\tversion: 2\n\tinterface {\n\t\tbindnetaddr: 10.0.0.0\n"
           "\t\tmcastaddr: 239.1.1.1\n\t}\n}\n",
           "corosync.conf: transport knet needs a nodelist with a nodeid and ring0_addr for each "
           "node; transport is not set, so corosync 3's default knet applies (for multicast "
           "without a nodelist, set 'transport: udp')")
    _fails("totem {\n\tversion: 2\n\ttransport: udp\n}\n",
           "corosync.conf: no link is configured: add a nodelist with a ring0_addr for each node, "
           "or a totem.interface with bindnetaddr")


def test_udp_multicast_address_checks():
    head = "totem {\n\tversion: 2\n\ttransport: udp\n\tinterface {\n\t\tbindnetaddr: 10.0.0.0\n"
    _fails(head + "\t}\n}\n", "corosync.conf: transport udp needs a multicast address for link 0: "
                              "set totem.interface.mcastaddr, or totem.cluster_name to derive one")
    _fails(head + "\t\tmcastaddr: 10.0.0.9\n\t}\n}\n",
           "corosync.conf:6: mcastaddr '10.0.0.9' of link 0 is not a multicast address")
    _fails(head + "\t\tmcastaddr: ff15::1\n\t}\n}\n",
           "corosync.conf:6: mcastaddr ff15::1 and bindnetaddr 10.0.0.0 of link 0 are not the "
           "same IP family")


def test_crypto_checks():
    _fails(KNET.replace("knet\n", "knet\n\tcrypto_cipher: aes256\n") + nodes(2),
           "corosync.conf:4: crypto_cipher aes256 needs a crypto_hash other than none")
    # Every transport encrypts here (corosync 3: knet only; corosync 2 did udp and udpu too).
    signed = coroconf.loads(udpu("\tcrypto_hash: sha1\n"))
    assert (signed.totem.crypto_cipher, signed.totem.crypto_hash, signed.warnings) == ("none", "sha1", ())
    legacy = coroconf.loads(udpu("\tsecauth: on\n"))
    assert (legacy.totem.crypto_cipher, legacy.totem.crypto_hash) == ("aes256", "sha256")
    both = coroconf.loads(udpu("\tsecauth: on\n\tkey: short\n\tkeyfile: /etc/k\n"))
    assert (both.totem.keyfile, both.totem.has_inline_key) == ("/etc/k", False)
    assert [str(w) for w in both.warnings] == [
        "<string>:5: key is ignored: keyfile is set (corosync reads the keyfile first)"]
    _fails(udpu("\tsecauth: on\n\tkey: short\n"),
           "corosync.conf:5: key is 5 bytes; a key is 128..4096 bytes (better: a keyfile written "
           "by 'coro keygen')")
    clear = coroconf.loads(udpu("\tkey: " + "k" * 200 + "\n"))
    assert clear.totem.has_inline_key  # unused without crypto, never in cmap
    assert not [key for key, _type, _value in coroconf.to_cmap_items(clear) if key == "totem.key"]
    assert coroconf.loads(udpu("\tsecauth: off\n\tcrypto_cipher: none\n")).warnings == ()


def test_udp_only_and_knet_only_interface_options():
    _fails(udpu("\tinterface {\n\t\tttl: 4\n\t}\n"),
           "corosync.conf:5: ttl can only be set with transport udp (link 0 sets 4)")
    _fails(udpu("\tinterface {\n\t\tknet_link_priority: 3\n\t}\n"),
           "corosync.conf:5: knet_link_priority can only be set with transport knet (link 0)")
    _fails(udpu("\tinterface {\n\t\tmcastport: 0\n\t}\n"),
           "corosync.conf:5: mcastport of link 0 must not be 0")


def test_link_numbers_stop_at_seven():
    _fails(KNET.replace("}\n", "\tinterface {\n\t\tlinknumber: 8\n\t\tmcastport: 6000\n\t}\n}\n")
           + nodes(2), "corosync.conf: interface linknumber 8 is above the maximum of 7")


def test_corosync_one_member_lists():
    member = "\tinterface {\n\t\tmember {\n\t\t\tmemberaddr: 10.0.0.1\n\t\t}\n\t}\n"
    config = coroconf.loads(udpu(member), "corosync.conf")
    assert config.warnings == ("corosync.conf:6: totem.interface.member entries are ignored "
                               "because a nodelist is present",)
    _fails(udpu(member, rest=""), "corosync.conf:3: transport udpu needs a nodelist with a nodeid "
                                  "and ring0_addr for each node")
    udp = "totem {\n\tversion: 2\n\ttransport: udp\n\tcluster_name: x\n" + member.replace(
        "\tinterface {\n", "\tinterface {\n\t\tbindnetaddr: 10.0.0.0\n") + "}\n"
    _fails(udp, "corosync.conf:8: totem.interface.member is the corosync 1 way to list udpu "
                "peers and is not supported; list the nodes in nodelist { node { ring0_addr: ... "
                "nodeid: ... } }")


def test_quorum_checks_and_warnings():
    _fails(udpu() + "quorum {\n\tauto_tie_breaker_node: middle\n}\n",
           "corosync.conf:16: auto_tie_breaker_node must be lowest, highest or a list of node ids, "
           "not 'middle'")
    assert coroconf.loads(udpu() + "quorum {\n\tauto_tie_breaker_node: 1 3\n}\n"
                          ).quorum.auto_tie_breaker_node == "1 3"
    config = coroconf.loads(udpu(rest=nodes(3)) + "quorum {\n\ttwo_node: 1\n}\n", "corosync.conf")
    assert config.warnings == ("corosync.conf:20: quorum.two_node is set but the nodelist has 3 "
                               "nodes; votequorum ignores two_node with more than 2 nodes",)


def test_totem_options_without_an_implementation_are_reported():
    config = coroconf.loads(udpu("\tdowncheck: 500\n\tsend_join: 0\n\theartbeat_failures_allowed: 3\n"),
                            "corosync.conf")
    assert config.warnings == ("corosync.conf:6: not implemented, so these totem options have no "
                               "effect: heartbeat_failures_allowed, downcheck",)
    assert coroconf.loads(udpu("\tsend_join: 0\n")).warnings == ()


def test_scheduling_options_are_read_as_corosync_reads_them():
    text = udpu("") + "system {\n\tsched_rr: yes\n\tpriority: max\n}\n"
    config = coroconf.loads(text, "corosync.conf")
    assert config.system.sched_rr is True and config.system.priority == "max"
    # As in corosync, priority is for sched_rr: no.
    assert [w for w in config.warnings if "system." in w] == [
        "corosync.conf:17: system.priority: no effect with sched_rr: yes (as in corosync: the "
        "real-time priority is the maximal one)"]
    plain = coroconf.loads(udpu(""), "corosync.conf")
    assert plain.system.sched_rr is None and plain.system.priority is None
    assert not [w for w in plain.warnings if "system." in w]
    nice = coroconf.loads(udpu("") + "system {\n\tsched_rr: no\n\tpriority: -5\n}\n")
    assert nice.system.sched_rr is False and nice.system.priority == "-5" and not nice.warnings
    for bad in ("-21", "20", "high", "1.5"):
        with pytest.raises(coroconf.ConfigError, match=r"system.priority: .* is not a nice value"):
            coroconf.loads(udpu("") + f"system {{\n\tpriority: {bad}\n}}\n", "corosync.conf")


def test_system_and_totem_options_we_do_not_act_on_are_reported():
    warnings = [str(w) for w in coroconf.loads(
        udpu("\tblock_unlisted_ips: no\n")
        + "system {\n\tqb_ipc_type: socket\n\tmove_to_root_cgroup: yes\n}\n").warnings]
    assert warnings == [
        "<string>:4: block_unlisted_ips: no is not implemented: packets from addresses outside "
        "the nodelist are dropped",
        "<string>:17: qb_ipc_type socket is not implemented: local clients use shared memory",
        "<string>:18: move_to_root_cgroup is not implemented: totemd stays in its cgroup"]
    quiet = udpu("\tblock_unlisted_ips: yes\n") + "system {\n\tqb_ipc_type: native\n}\n"
    assert coroconf.loads(quiet).warnings == ()
