"""Unknown keys and sections, and values a key cannot take: exact messages."""

from __future__ import annotations

import re

import pytest

import coroconf
from coroconf import ConfigValueError

from .helpers import UDPU_NODES, udpu


def _fails(text: str, message: str) -> ConfigValueError:
    with pytest.raises(ConfigValueError, match=rf"^{re.escape(message)}$") as caught:
        coroconf.loads(text, "corosync.conf")
    return caught.value


def test_unknown_key_suggests_the_nearest():
    error = _fails(udpu("\ttokn: 3000\n"),
                   "corosync.conf:4: unknown key 'tokn' in section 'totem' (did you mean 'token'?)")
    assert (error.line, error.key) == (4, "totem.tokn")


def test_unknown_key_without_a_near_one():
    _fails(udpu("\tzzz: 1\n"), "corosync.conf:4: unknown key 'zzz' in section 'totem'")


def test_key_in_the_wrong_section_says_where_it_belongs():
    _fails(udpu("\ttwo_node: 1\n"),
           "corosync.conf:4: unknown key 'two_node' in section 'totem' ('two_node' belongs in "
           "section 'quorum')")


def test_a_section_written_as_a_key():
    _fails(udpu("\tinterface: 0\n"),
           "corosync.conf:4: unknown key 'interface' in section 'totem' ('interface' is a "
           "section: write 'interface {')")


def test_key_outside_any_section():
    _fails("token: 3000\n" + udpu(), "corosync.conf:1: unknown key 'token' outside any section "
           "('token' belongs in section 'totem')")


def test_unknown_sections():
    _fails("totme {\n}\n", "corosync.conf:1: unknown section 'totme' (did you mean 'totem'?)")
    _fails(udpu("\tinterfce {\n\t}\n"),
           "corosync.conf:4: unknown section 'interfce' in section 'totem' (did you mean "
           "'interface'?)")
    _fails(udpu("\tfoo {\n\t}\n"),
           "corosync.conf:4: unknown section 'foo' in section 'totem' (allowed here: interface)")
    _fails(udpu("", UDPU_NODES.replace("\t\tnodeid: 1\n", "\t\tx {\n\t\t}\n")),
           "corosync.conf:8: unknown section 'x' in section 'nodelist.node' (section "
           "'nodelist.node' has no subsections)")


@pytest.mark.parametrize("line,message", [
    ("token: 3s", "'token' in section 'totem' must be a whole number of milliseconds from 0 to "
                  "4294967295, not '3s'"),
    ("token: -1", "'token' in section 'totem' must be a whole number of milliseconds from 0 to "
                  "4294967295, not '-1'"),
    ("token: 4294967296", "'token' in section 'totem' must be a whole number of milliseconds "
                          "from 0 to 4294967295, not '4294967296'"),
    ("token: 3000 # ms", "'token' in section 'totem' must be a whole number of milliseconds from "
                         "0 to 4294967295, not '3000 # ms' (comments must be on a line of "
                         "their own)"),
    ("window_size: 1.5", "'window_size' in section 'totem' must be a whole number from 0 to "
                         "4294967295, not '1.5'"),
    ("knet_pmtud_interval: x", "'knet_pmtud_interval' in section 'totem' must be a whole "
                               "number of seconds from 0 to 4294967295, not 'x'"),
    ("knet_compression_level: 2147483648", "'knet_compression_level' in section 'totem' must "
                                           "be a whole number from -2147483648 to 2147483647, "
                                           "not '2147483648'"),
    ("config_version: -2", "'config_version' in section 'totem' must be a whole number from "
                           "0 to 18446744073709551615, not '-2'"),
    ("transport: tcp", "'transport' in section 'totem' must be one of knet, udpu, udp, not "
                       "'tcp'"),
    ("transport: knett", "'transport' in section 'totem' must be one of knet, udpu, udp, not "
                         "'knett' (did you mean 'knet'?)"),
    ("block_unlisted_ips: true", "'block_unlisted_ips' in section 'totem' must be one of yes, "
                                 "no, not 'true'"),
    ("ip_dscp: 64", "'ip_dscp' in section 'totem' must be a number from 0 to 63 or a DSCP name "
                    "(cs0..cs7, af11..af43, ef), not '64'"),
    ("ip_version: ipv5", "'ip_version' in section 'totem' must be one of ipv4, ipv6, ipv4-6, "
                         "ipv6-4, not 'ipv5' (did you mean 'ipv6'?)"),
])
def test_bad_totem_values(line, message):
    error = _fails(udpu(f"\t{line}\n"), f"corosync.conf:4: {message}")
    assert error.key == f"totem.{line.split(':')[0]}"


def test_the_unit_is_named_in_the_message():
    with pytest.raises(ConfigValueError, match="milliseconds"):
        coroconf.loads(udpu("\tconsensus: 3.6s\n"))


@pytest.mark.parametrize("text,expected", [("ef", 46), ("af41", 34), ("0x10", 16), ("63", 63)])
def test_dscp_names_and_numbers(text, expected):
    config = coroconf.loads(udpu(f"\tip_dscp: {text}\n"))
    assert config.totem.ip_dscp == expected


@pytest.mark.parametrize("address", ["10.0.0.300", "not an address", "bad_host!", "1.2.3"])
def test_bad_addresses(address):
    rest = UDPU_NODES.replace("10.0.0.2", address)
    _fails(udpu("", rest), f"corosync.conf:11: 'ring0_addr' in section 'nodelist.node' is not "
                           f"an IP address or host name: '{address}'")


def test_ring_addresses_stop_at_ring7():
    _fails(udpu(rest=UDPU_NODES.replace("nodeid: 2", "nodeid: 2\n\t\tring8_addr: 10.8.0.2")),
           "corosync.conf:13: unknown key 'ring8_addr' in section 'nodelist.node' (link numbers "
           "go from 0 to 7)")


def test_interface_numbers_are_range_checked():
    _fails(udpu("\tinterface {\n\t\tmcastport: 70000\n\t}\n"),
           "corosync.conf:5: 'mcastport' in section 'totem.interface' must be a whole number "
           "from 0 to 65535, not '70000'")


def test_quorum_flags_and_logging_words():
    _fails(udpu() + "quorum {\n\ttwo_node: yes\n}\n",
           "corosync.conf:16: 'two_node' in section 'quorum' must be 0 (off) or 1 (on), or a "
           "number up to 255, not 'yes'")
    _fails(udpu() + "logging {\n\tto_syslog: maybe\n}\n",
           "corosync.conf:16: 'to_syslog' in section 'logging' must be one of yes, no, on, "
           "off, not 'maybe'")
    _fails(udpu() + "logging {\n\tdebug: of\n}\n",
           "corosync.conf:16: 'debug' in section 'logging' must be one of on, off, trace, not "
           "'of' (did you mean 'off'?)")


def test_logger_subsys_needs_subsys():
    _fails(udpu() + "logging {\n\tlogger_subsys {\n\t\tdebug: on\n\t}\n}\n",
           "corosync.conf:16: a logger_subsys section needs a 'subsys' key naming the subsystem "
           "(for example 'subsys: QUORUM')")


def test_uidgid_keys_and_unknown_users():
    _fails(udpu() + "uidgid {\n\tuser: root\n}\n",
           "corosync.conf:16: unknown key 'user' in section 'uidgid' (only uid and gid are "
           "allowed)")
    _fails(udpu() + "uidgid {\n\tuid: no-such-user-coroconf\n}\n",
           "corosync.conf:16: user 'no-such-user-coroconf' in section 'uidgid' is not in the "
           "passwd database")
    _fails(udpu() + "uidgid {\n\tgid: no-such-group-coroconf\n}\n",
           "corosync.conf:16: group 'no-such-group-coroconf' in section 'uidgid' is not in the "
           "group database")
