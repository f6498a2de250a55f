"""Finding this host's node, node id and bind address from its addresses."""

from __future__ import annotations

import coroconf
from coroconf.host import host_addresses

from .helpers import load_udpu

UDP = ("totem {\n\tversion: 2\n\ttransport: udp\n\tcluster_name: demo\n\tinterface {\n"
       "\t\tbindnetaddr: 192.168.5.0\n\t}\n}\n")


def test_local_node_by_address_with_or_without_prefix():
    config = load_udpu()
    assert config.local_node(["127.0.0.1/8", "10.0.0.2/24"]).nodeid == 2
    assert config.local_node(["10.0.0.1"]).nodeid == 1
    assert config.local_node(["10.0.0.3/24", "::1/128"]) is None
    assert config.local_nodeid(["10.0.0.2"]) == 2
    assert config.local_nodeid(["10.9.9.9"]) is None


def test_local_node_by_name_or_host_name_address():
    text = ("totem {\n\tversion: 2\n}\nnodelist {\n\tnode {\n\t\tname: alpha\n\t\tnodeid: 1\n"
            "\t\tring0_addr: alpha.example\n\t}\n\tnode {\n\t\tname: beta\n\t\tnodeid: 2\n"
            "\t\tring0_addr: 10.0.0.2\n\t}\n}\n")
    config = coroconf.loads(text)
    assert config.local_node(["127.0.0.1", "alpha"]).nodeid == 1
    assert config.local_node(["alpha.example"]).nodeid == 1
    assert config.local_node(["gamma"]) is None


def test_ipv6_addresses_compare_as_addresses():
    text = ("totem {\n\tversion: 2\n}\nnodelist {\n\tnode {\n\t\tnodeid: 1\n"
            "\t\tring0_addr: fd00:0::1\n\t}\n}\n")
    assert coroconf.loads(text).local_node(["fd00::1/64"]).nodeid == 1


def test_bind_address_from_the_nodelist_or_bindnetaddr():
    assert load_udpu().bind_address(["10.0.0.2/24"]) == "10.0.0.2"
    config = coroconf.loads(UDP)
    assert config.bind_address(["127.0.0.1/8", "192.168.5.92/24"]) == "192.168.5.92"
    assert config.bind_address(["192.168.6.1/24"]) is None
    exact = coroconf.loads(UDP.replace("192.168.5.0", "192.168.5.7"))
    assert exact.bind_address(["192.168.5.7/32"]) == "192.168.5.7"


def test_udp_without_nodelist_generates_the_local_nodeid():
    config = coroconf.loads(UDP)
    assert config.local_nodeid(["192.168.5.92/24"]) == 0xC0A8055C


def test_host_addresses_lists_loopback_and_the_host_name():
    found = host_addresses()
    assert "127.0.0.1/8" in found
    assert any("/" not in entry for entry in found)  # the host name
