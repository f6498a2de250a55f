"""The totem section: transport, crypto, links, timers; checks and warnings."""

from __future__ import annotations

from . import defaults as d
from ._derive import (cluster_mcast_addr, consensus_ms, effective_token_ms, hold_ms,
                      knet_ping_interval_ms, knet_ping_timeout_ms, token_retransmit_ms)
from ._source import Source
from ._values import parse_ip
from .model import InterfaceConfig, Nodelist, TotemConfig

__all__ = ["build_totem", "transport_of"]


def transport_of(src: Source) -> str:
    """The transport the file asks for (corosync 3 defaults to knet)."""
    return src.text("totem.transport", d.TRANSPORT) or d.TRANSPORT


def _crypto(src: Source) -> dict[str, object]:
    """corosync's crypto keys. Unlike corosync 3 (knet only) every transport
    encrypts here, as corosync 2's udp and udpu did (totemd/crypto.py)."""
    secauth = src.text("totem.secauth")
    cipher, hash_ = d.CRYPTO_CIPHER, d.CRYPTO_HASH
    if secauth is not None and secauth not in ("on", "off"):
        src.warn(f"secauth '{secauth}' is read as off (only 'on' turns it on)", "totem.secauth")
    if secauth == "on":
        cipher, hash_ = d.SECAUTH_CIPHER, d.SECAUTH_HASH
    cipher = src.text("totem.crypto_cipher", cipher) or cipher
    hash_ = src.text("totem.crypto_hash", hash_) or hash_
    if cipher != "none" and hash_ == "none":
        raise src.fail(f"crypto_cipher {cipher} needs a crypto_hash other than none",
                       "totem.crypto_cipher" if src.has("totem.crypto_cipher")
                       else "totem.secauth")
    inline = src.text("totem.key")
    if inline is not None and src.has("totem.keyfile"):
        src.warn("key is ignored: keyfile is set (corosync reads the keyfile first)", "totem.key")
        inline = None
    if inline is not None and (cipher != "none" or hash_ != "none"):
        size = len(inline.encode())
        if not d.KEY_MIN_BYTES <= size <= d.KEY_MAX_BYTES:
            raise src.fail(f"key is {size} bytes; a key is {d.KEY_MIN_BYTES}..{d.KEY_MAX_BYTES} "
                           "bytes (better: a keyfile written by 'coro keygen')", "totem.key")
    return {"crypto_model": src.text("totem.crypto_model", d.CRYPTO_MODEL),
            "crypto_cipher": cipher, "crypto_hash": hash_,
            "keyfile": src.text("totem.keyfile"), "has_inline_key": inline is not None}


def _timers(src: Source, node_count: int) -> dict[str, int]:
    base = src.nonzero("totem.token", d.TOKEN_MS)
    coefficient = src.integer("totem.token_coefficient", d.TOKEN_COEFFICIENT_MS)
    token = effective_token_ms(base, coefficient, node_count)
    retransmits = src.nonzero("totem.token_retransmits_before_loss_const",
                              d.TOKEN_RETRANSMITS_BEFORE_LOSS_CONST)
    retransmit = src.nonzero("totem.token_retransmit", token_retransmit_ms(token, retransmits))
    return {
        "token_ms": token, "token_base_ms": base, "token_coefficient_ms": coefficient,
        "token_warning_percent": src.integer("totem.token_warning", d.TOKEN_WARNING_PERCENT),
        "token_retransmits_before_loss_const": retransmits,
        "token_retransmit_ms": retransmit,
        "hold_ms": src.nonzero("totem.hold", hold_ms(retransmit)),
        "join_ms": src.nonzero("totem.join", d.JOIN_MS),
        "send_join_ms": src.integer("totem.send_join", d.SEND_JOIN_MS),
        "consensus_ms": src.nonzero("totem.consensus", consensus_ms(token)),
        "merge_ms": src.nonzero("totem.merge", d.MERGE_MS),
        "downcheck_ms": src.nonzero("totem.downcheck", d.DOWNCHECK_MS),
        "fail_recv_const": src.nonzero("totem.fail_recv_const", d.FAIL_RECV_CONST),
        "seqno_unchanged_const": src.nonzero("totem.seqno_unchanged_const",
                                             d.SEQNO_UNCHANGED_CONST),
        "heartbeat_failures_allowed": src.integer("totem.heartbeat_failures_allowed",
                                              d.HEARTBEAT_FAILURES_ALLOWED),
        "max_network_delay_ms": src.nonzero("totem.max_network_delay", d.MAX_NETWORK_DELAY_MS),
        "window_size": src.nonzero("totem.window_size", d.WINDOW_SIZE),
        "max_messages": src.nonzero("totem.max_messages", d.MAX_MESSAGES),
        "miss_count_const": src.nonzero("totem.miss_count_const", d.MISS_COUNT_CONST),
        "knet_pmtud_interval_s": src.nonzero("totem.knet_pmtud_interval",
                                             d.KNET_PMTUD_INTERVAL_S),
        "knet_mtu": src.integer("totem.knet_mtu", d.KNET_MTU),
        "knet_compression_threshold": src.integer("totem.knet_compression_threshold",
                                              d.KNET_COMPRESSION_THRESHOLD_BYTES),
        "knet_compression_level": src.integer("totem.knet_compression_level",
                                          d.KNET_COMPRESSION_LEVEL),
    }


def _check_minimum(src: Source, timers: dict[str, int], name: str, field: str,
                   minimum: int) -> None:
    value = timers[field]
    if value >= minimum:
        return
    key = f"totem.{name}"
    if src.has(key) or name in ("token", "max_network_delay", "join", "merge", "downcheck"):
        raise src.fail(f"{name} ({value} ms) must be at least {minimum} ms", key)
    if name == "token_retransmit":
        raise src.fail(
            f"token_retransmit, derived as token ({timers['token_ms']} ms) / "
            f"(token_retransmits_before_loss_const "
            f"({timers['token_retransmits_before_loss_const']}) + 0.2) = {value} ms, is below "
            f"the {minimum} ms minimum; raise token or lower "
            "token_retransmits_before_loss_const", "totem.token")
    raise src.fail(f"{name}, derived from token ({timers['token_ms']} ms) as {value} ms, is "
                   f"below the {minimum} ms minimum; raise token or set {name}", "totem.token")


def _check_timers(src: Source, timers: dict[str, int], node_count: int) -> None:
    for name, field, minimum in (
            ("max_network_delay", "max_network_delay_ms", d.MINIMUM_TIMEOUT_MS),
            ("token", "token_ms", d.MINIMUM_TIMEOUT_MS),
            ("token_retransmit", "token_retransmit_ms", d.MINIMUM_TIMEOUT_MS),
            ("hold", "hold_ms", d.MINIMUM_TIMEOUT_HOLD_MS),
            ("join", "join_ms", d.MINIMUM_TIMEOUT_MS),
            ("consensus", "consensus_ms", d.MINIMUM_TIMEOUT_MS),
            ("merge", "merge_ms", d.MINIMUM_TIMEOUT_MS),
            ("downcheck", "downcheck_ms", d.MINIMUM_TIMEOUT_MS)):
        _check_minimum(src, timers, name, field, minimum)
    if timers["token_warning_percent"] > 100:
        raise src.fail(f"token_warning ({timers['token_warning_percent']}%) must be between 0 "
                       "(no warnings) and 100 percent of token", "totem.token_warning")
    if timers["consensus_ms"] < timers["join_ms"] and not src.has("totem.consensus"):
        raise src.fail(f"consensus, derived as 1.2 x token ({timers['token_ms']} ms) = "
                       f"{timers['consensus_ms']} ms, is below join ({timers['join_ms']} ms); "
                       "set consensus or lower join", "totem.join")
    if timers["consensus_ms"] < timers["join_ms"]:
        raise src.fail(f"consensus ({timers['consensus_ms']} ms) must be at least join "
                       f"({timers['join_ms']} ms)", "totem.consensus")
    wanted = consensus_ms(timers["token_ms"])
    if timers["consensus_ms"] < wanted and node_count > 2:
        # corosync.conf(5) asks for it; the Totem core (totemd.srp) enforces it.
        raise src.fail(f"consensus ({timers['consensus_ms']} ms) must be at least 1.2 x token "
                       f"({timers['token_ms']} ms) = {wanted} ms with 3 or more nodes",
                       "totem.consensus")


def _link_numbers(src: Source, nodes: Nodelist) -> list[int]:
    links = {int(match.group(1)) for match, _key in src.keys(r"totem\.interface\.(\d+)\..*")}
    for node in nodes:
        links.update(n for n, address in enumerate(node.ring_addrs) if address is not None)
    for link in sorted(links):
        if link > d.MAX_LINKS - 1:
            raise src.fail(f"interface linknumber {link} is above the maximum of "
                           f"{d.MAX_LINKS - 1}")
    return sorted(links)


def _udp_mcastaddr(src: Source, link: int, cluster_name: str | None) -> str:
    prefix = f"totem.interface.{link}"
    if src.get(f"{prefix}.broadcast") == "yes":
        return "255.255.255.255"
    given = src.text(f"{prefix}.mcastaddr")
    bindnet = parse_ip(src.text(f"{prefix}.bindnetaddr") or "")
    if given is None:
        if cluster_name is None:
            raise src.fail(f"transport udp needs a multicast address for link {link}: set "
                           "totem.interface.mcastaddr, or totem.cluster_name to derive one")
        return cluster_mcast_addr(cluster_name, link, bindnet is not None and bindnet.version == 6)
    address = parse_ip(given)
    if address is None or not address.is_multicast:
        raise src.fail(f"mcastaddr '{given}' of link {link} is not a multicast address",
                       f"{prefix}.mcastaddr")
    if bindnet is not None and bindnet.version != address.version:
        raise src.fail(f"mcastaddr {given} and bindnetaddr {bindnet} of link {link} are not "
                       "the same IP family", f"{prefix}.mcastaddr")
    return given


def _interface(src: Source, link: int, transport: str, timers: dict[str, int],
               cluster_name: str | None) -> InterfaceConfig:
    prefix = f"totem.interface.{link}"
    broadcast = src.get(f"{prefix}.broadcast") == "yes"
    ttl = src.integer(f"{prefix}.ttl", d.TTL)
    if transport != "udp" and ttl != 1:
        raise src.fail(f"ttl can only be set with transport udp (link {link} sets {ttl})",
                       f"{prefix}.ttl")
    priority = src.integer(f"{prefix}.knet_link_priority", d.KNET_LINK_PRIORITY)
    if transport != "knet" and priority != 1:
        raise src.fail(f"knet_link_priority can only be set with transport knet (link {link})",
                       f"{prefix}.knet_link_priority")
    pongs = src.nonzero(f"{prefix}.knet_pong_count", d.KNET_PONG_COUNT)
    port = src.integer(f"{prefix}.mcastport", d.MCASTPORT + (2 if broadcast else 1) * link)
    if port == 0:
        raise src.fail(f"mcastport of link {link} must not be 0", f"{prefix}.mcastport")
    return InterfaceConfig(
        linknumber=link, bindnetaddr=src.text(f"{prefix}.bindnetaddr"),
        mcastaddr=(_udp_mcastaddr(src, link, cluster_name) if transport == "udp"
                   else src.text(f"{prefix}.mcastaddr")),
        broadcast=broadcast, mcastport=port, ttl=ttl, knet_link_priority=priority,
        knet_ping_interval_ms=src.nonzero(f"{prefix}.knet_ping_interval",
                                          knet_ping_interval_ms(timers["token_ms"], pongs)),
        knet_ping_timeout_ms=src.nonzero(f"{prefix}.knet_ping_timeout",
                                         knet_ping_timeout_ms(timers["token_ms"], pongs)),
        knet_ping_precision=src.nonzero(f"{prefix}.knet_ping_precision", d.KNET_PING_PRECISION),
        knet_pong_count=pongs,
        knet_transport=src.text(f"{prefix}.knet_transport", d.KNET_TRANSPORT) or "udp")


def _check_network(src: Source, transport: str, nodes: Nodelist, links: list[int]) -> None:
    if not links:
        raise src.fail("no link is configured: add a nodelist with a ring0_addr for each node"
                       + (", or a totem.interface with bindnetaddr" if transport == "udp" else ""))
    if transport != "knet" and links != [0]:
        raise src.fail(f"transport {transport} has one link (0), but links {links} are "
                       "configured; only knet has several")
    if transport in ("knet", "udpu") and not nodes.nodes:
        hint = ""
        if transport == "knet" and not src.has("totem.transport"):
            hint = ("; transport is not set, so corosync 3's default knet applies (for "
                    "multicast without a nodelist, set 'transport: udp')")
        raise src.fail(f"transport {transport} needs a nodelist with a nodeid and ring0_addr "
                       f"for each node{hint}", "totem.transport")
    if 0 not in links:
        raise src.fail("link 0 is not configured; links are numbered from 0")


#: totem keys nothing here acts on yet (the Totem core has no heartbeat or
#: interface down-check): setting one is reported. Remove a key from this
#: list when its feature lands (token_warning did: TotemParams.token_warning_percent).
UNUSED_TOTEM_KEYS = ("heartbeat_failures_allowed", "max_network_delay", "downcheck")


def _report_unimplemented(src: Source, transport: str, nodes: Nodelist, links: list[int]) -> None:
    unused = [name for name in UNUSED_TOTEM_KEYS
              if src.has(f"totem.{name}") and not (name == "heartbeat_failures_allowed"
                                                   and src.get(f"totem.{name}") == 0)]
    if unused:
        src.warn(f"not implemented, so these totem options have no effect: {', '.join(unused)}",
                 f"totem.{unused[0]}")
    if src.get("totem.block_unlisted_ips", "yes") != "yes":
        # Accepting them would let in joins from nodes we have no address
        # for (the token could not reach them): the nodelist is fixed here.
        src.warn("block_unlisted_ips: no is not implemented: packets from addresses outside "
                 "the nodelist are dropped", "totem.block_unlisted_ips")
    if transport == "knet":
        ignored = sorted({f"ring{n}_addr" for node in nodes for n, a in
                          enumerate(node.ring_addrs) if n > 0 and a is not None})
        suffix = f"; {', '.join(ignored)} ignored" if ignored else ""
        src.warn(f"transport knet: running as udpu over link 0 with knet's fragmentation "
                 f"(frames cut to the link MTU){suffix}", "totem.transport")
    knet_keys = [item.key for item in src.flat.items
                 if item.key.startswith(("totem.knet_", "totem.link_mode"))
                 and item.key != "totem.knet_mtu"
                 or ".knet_" in item.key and item.key.startswith("totem.interface.")]
    if knet_keys:
        src.warn(f"knet options have no effect (knet runs as udpu with fragmentation here): "
                 f"{', '.join(knet_keys)}",
                 knet_keys[0])
    if nodes.nodes:
        for link in links:
            if src.has(f"totem.interface.{link}.bindnetaddr"):
                src.warn("totem.interface.bindnetaddr is ignored because the nodelist gives "
                         "each node's address", f"totem.interface.{link}.bindnetaddr")
    members = [key for _match, key in src.keys(r"totem\.interface\.\d+\.member\.\d+")]
    if members and nodes.nodes:
        src.warn("totem.interface.member entries are ignored because a nodelist is present",
                 members[0])
    elif members:
        raise src.fail("totem.interface.member is the corosync 1 way to list udpu peers and is "
                       "not supported; list the nodes in nodelist { node { ring0_addr: ... "
                       "nodeid: ... } }", members[0])


def build_totem(src: Source, nodes: Nodelist) -> TotemConfig:
    """Build and check the totem section (nodelist already built).

    Raises:
        ConfigConsistencyError: see :class:`coroconf.errors.ConfigConsistencyError`.
    """
    version = src.integer("totem.version", 0)
    if version != d.VERSION:
        raise src.fail("totem.version must be 2 (write 'version: 2' in the totem section)"
                       + (f", not {version}" if src.has("totem.version") else ""),
                       "totem.version")
    transport = transport_of(src)
    crypto = _crypto(src)
    links = _link_numbers(src, nodes)
    _check_network(src, transport, nodes, links)
    timers = _timers(src, sum(1 for node in nodes if node.ring0_addr))
    _check_timers(src, timers, len(nodes))
    if timers["knet_mtu"] and not d.KNET_MTU_MIN <= timers["knet_mtu"] <= d.NETMTU_KNET:
        raise src.fail(f"knet_mtu ({timers['knet_mtu']} bytes) must be 0 (the interface's MTU) "
                       f"or within {d.KNET_MTU_MIN}..{d.NETMTU_KNET}", "totem.knet_mtu")
    cluster_name = src.text("totem.cluster_name")
    interfaces = tuple(_interface(src, link, transport, timers, cluster_name) for link in links)
    _report_unimplemented(src, transport, nodes, links)
    if src.integer("totem.ip_dscp", 0):
        src.warn("ip_dscp is not applied: packets keep the default TOS", "totem.ip_dscp")
    return TotemConfig(
        version=version, cluster_name=cluster_name, cluster_uuid=src.text("totem.cluster_uuid"),
        config_version=src.integer("totem.config_version", d.CONFIG_VERSION),
        transport=transport, network_transport="udp" if transport == "udp" else "udpu",
        ip_version=src.text("totem.ip_version") or (d.IP_VERSION_UDP if transport == "udp"
                                                   else d.IP_VERSION_OTHER),
        ip_dscp=src.integer("totem.ip_dscp", d.IP_DSCP),
        clear_node_high_bit=src.get("totem.clear_node_high_bit") == "yes",
        link_mode=src.text("totem.link_mode", d.LINK_MODE) or d.LINK_MODE,
        # knet: corosync's 64 KiB frames, cut to the link MTU (totemd.linkfrag).
        netmtu=src.nonzero("totem.netmtu", d.NETMTU_KNET if transport == "knet" else d.NETMTU_UDP),
        block_unlisted_ips=src.get("totem.block_unlisted_ips", "yes") == "yes",
        cancel_token_hold_on_retransmit=src.get("totem.cancel_token_hold_on_retransmit") == "yes",
        knet_compression_model=src.text("totem.knet_compression_model",
                                       d.KNET_COMPRESSION_MODEL) or "none",
        interfaces=interfaces, **crypto, **timers)  # type: ignore[arg-type]
