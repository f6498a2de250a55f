"""Property: a random valid configuration, rendered to text and parsed back,
is the same configuration (and renders to the same text)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import coroconf

_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
_PATH = _NAME.map(lambda name: f"/tmp/coro/{name}")
_FREE_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs",
                                                                              "Zl", "Zp"),
                                            exclude_characters="{\u00a0"),
                     min_size=1, max_size=20)


def _maybe(draw, strategy, key, into):
    if draw(st.booleans()):
        into.append((key, draw(strategy)))


@st.composite
def totem_lines(draw, transport: str):
    lines = [("version", 2)]
    if transport != "knet" or draw(st.booleans()):
        lines.append(("transport", transport))
    if transport == "udp" or draw(st.booleans()):
        lines.append(("cluster_name", draw(_NAME)))
    token = draw(st.integers(1000, 20000))
    lines.append(("token", token))
    _maybe(draw, st.integers(0, 1000), "token_coefficient", lines)
    _maybe(draw, st.integers(1, 10), "token_retransmits_before_loss_const", lines)
    _maybe(draw, st.integers(30, 900), "join", lines)
    _maybe(draw, st.integers(0, 100), "send_join", lines)
    _maybe(draw, st.integers(30, 1000), "merge", lines)
    _maybe(draw, st.integers(30, 5000), "downcheck", lines)
    _maybe(draw, st.integers(0, 100), "token_warning", lines)
    _maybe(draw, st.integers(50, 300), "window_size", lines)
    _maybe(draw, st.integers(1, 50), "max_messages", lines)
    _maybe(draw, st.integers(1, 20), "miss_count_const", lines)
    _maybe(draw, st.integers(576, 9000), "netmtu", lines)
    _maybe(draw, st.integers(0, 2**64 - 1), "config_version", lines)
    _maybe(draw, st.sampled_from(["yes", "no"]), "block_unlisted_ips", lines)
    _maybe(draw, st.sampled_from(["yes", "no"]), "cancel_token_hold_on_retransmit", lines)
    _maybe(draw, st.sampled_from(["none"]), "crypto_cipher", lines)
    return lines


@st.composite
def config_texts(draw):
    transport = draw(st.sampled_from(["udpu", "knet", "udp"]))
    out = ["totem {"]
    out += [f"\t{key}: {value}" for key, value in draw(totem_lines(transport))]
    interface = transport == "udp" and draw(st.booleans())
    if interface:
        out += ["\tinterface {", "\t\tlinknumber: 0", "\t\tbindnetaddr: 10.0.0.0",
                f"\t\tmcastport: {draw(st.integers(1024, 65000))}",
                f"\t\tttl: {draw(st.integers(1, 255))}", "\t}"]
    out.append("}")
    count = draw(st.integers(0 if interface else 1, 6))
    if count:
        hosts = draw(st.lists(st.integers(1, 254), min_size=count, max_size=count, unique=True))
        nodeids = draw(st.lists(st.integers(1, 65535), min_size=count, max_size=count,
                                unique=True))
        out.append("nodelist {")
        for host, nodeid in zip(hosts, nodeids):
            out += ["\tnode {", f"\t\tring0_addr: 10.0.0.{host}"]
            if transport == "knet" or draw(st.booleans()):
                out.append(f"\t\tnodeid: {nodeid}")
            if draw(st.booleans()):
                out.append(f"\t\tname: {draw(_NAME)}")
            if draw(st.booleans()):
                out.append(f"\t\tquorum_votes: {draw(st.integers(0, 5))}")
            out.append("\t}")
        out.append("}")
    if draw(st.booleans()):
        out += ["quorum {", "\tprovider: corosync_votequorum",
                f"\ttwo_node: {int(count == 2 and draw(st.booleans()))}",
                f"\texpected_votes: {draw(st.integers(1, 10))}", "}"]
    if draw(st.booleans()):
        out += ["logging {", f"\tto_syslog: {draw(st.sampled_from(['yes', 'no', 'on', 'off']))}",
                f"\tdebug: {draw(st.sampled_from(['on', 'off', 'trace']))}",
                f"\tlogfile: {draw(_FREE_TEXT)}", "\tlogger_subsys {",
                f"\t\tsubsys: {draw(_NAME)}", "\t\tdebug: on", "\t}", "}"]
    if draw(st.booleans()):
        out += ["system {", f"\tstate_dir: {draw(_PATH)}", f"\trun_dir: {draw(_PATH)}", "}"]
    return "\n".join(out) + "\n"


@settings(max_examples=150, deadline=None)
@given(config_texts())
def test_render_and_parse_back_is_the_same_config(text):
    first = coroconf.loads(text, "generated.conf")
    rendered = coroconf.render(first)
    second = coroconf.loads(rendered, "rendered.conf")
    assert second == first
    assert coroconf.render(second) == rendered
    assert coroconf.to_cmap_items(second) == coroconf.to_cmap_items(first)
    assert coroconf.runtime_config_items(second) == coroconf.runtime_config_items(first)


@settings(max_examples=50, deadline=None)
@given(config_texts())
def test_values_written_are_the_values_read(text):
    config = coroconf.loads(text)
    written = {}
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.endswith("{"):
            section = section or stripped[:-2]
        elif line.startswith("\t") and ":" in stripped and section == "totem":
            key, value = stripped.split(":", 1)
            written[key] = value.strip()
        elif stripped == "}" and not line.startswith("\t"):
            section = None
    assert config.totem.token_base_ms == int(written["token"])
    if "join" in written:
        assert config.totem.join_ms == int(written["join"])
    if "netmtu" in written:
        assert config.totem.netmtu == int(written["netmtu"])
    if "cluster_name" in written:
        assert config.totem.cluster_name == written["cluster_name"]


_PIECES = st.sampled_from([
    "totem {", "}", "nodelist {", "node {", "interface {", "logging {", "logger_subsys {",
    "quorum {", "device {", "net {", "uidgid {", "version: 2", "transport: udpu",
    "transport: udp", "transport: knet", "ring0_addr: 10.0.0.1", "ring0_addr: 10.0.0.2",
    "ring1_addr: 10.1.0.1", "nodeid: 1", "nodeid: 2", "nodeid: 0", "token: 10", "token: 3000",
    "linknumber: 3", "linknumber: 9", "mcastaddr: 239.1.1.1", "bindnetaddr: 10.0.0.0",
    "subsys: QUORUM", "cluster_name: x", "consensus: 40", "uid: 0", "two_node: 1",
    "crypto_cipher: aes256", "member {", "memberaddr: 10.0.0.9", "# comment", "", "token=3",
    ": x", "{", "ttl: 2", "name: a", "secauth: on", "broadcast: yes", "model: net",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=15)), max_size=40))
def test_any_text_gives_a_config_or_a_config_error(lines):
    try:
        config = coroconf.loads("\n".join(lines), "fuzz.conf")
    except coroconf.ConfigError as error:
        assert str(error).startswith("fuzz.conf")
        return
    assert coroconf.loads(coroconf.render(config), "fuzz.conf") == config
