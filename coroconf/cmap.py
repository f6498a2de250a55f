"""The configuration as cmap keys: what the file set, and what corosync
publishes as effective values.

:func:`to_cmap_items` gives exactly the keys corosync's parser (coroparse)
puts into cmap for the file, with its types: most values are strings; the
totem timers and counters, nodeid, quorum_votes, votequorum's numbers and
flags, config_version (u64), mcastport (u16), ttl and ip_dscp (u8) are
integers. :func:`runtime_config_items` gives what corosync adds at start-up:
``runtime.config.totem.*`` (effective timers, after defaults and
derivations), knet's per-link ping timers and ports, udp's derived
multicast address and port, and node ids it generated.
"""

from __future__ import annotations

from .model import Config

__all__ = ["CMAP_TYPES", "to_cmap_items", "runtime_config_items"]

CMAP_TYPES = frozenset({"i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "flt", "dbl",
                        "str", "bin"})

CmapItem = tuple[str, str, object]


def to_cmap_items(config: Config) -> list[CmapItem]:
    """Every key the file set, as (cmap key, cmap type name, value).

    Args:
        config: from :func:`coroconf.load`.

    Returns:
        e.g. [("totem.version", "u32", 2), ("totem.cluster_name", "str",
        "demo"), ("nodelist.node.0.nodeid", "u32", 1), ...] in the order
        corosync's parser would set them (interface and logger_subsys keys
        when their section closes); never a key of ``SECRET_KEYS``.
    """
    # An inline totem.key is a secret: totemd reads it from the file, and no
    # cmap reader (any allowed local uid) gets it.
    return [(item.key, item.cmap_type, item.value) for item in config.source_items
            if item.key not in SECRET_KEYS]


#: Keys of the file that never enter cmap.
SECRET_KEYS = frozenset({"totem.key"})


# runtime.config.totem.<name> -> TotemConfig field, all u32 (as corosync stores them)
_RUNTIME_U32 = (
    ("token_retransmits_before_loss_const", "token_retransmits_before_loss_const"),
    ("token", "token_ms"),
    ("token_warning", "token_warning_percent"),
    ("max_network_delay", "max_network_delay_ms"),
    ("window_size", "window_size"),
    ("max_messages", "max_messages"),
    ("miss_count_const", "miss_count_const"),
    ("knet_pmtud_interval", "knet_pmtud_interval_s"),
    ("knet_mtu", "knet_mtu"),
    ("token_retransmit", "token_retransmit_ms"),
    ("hold", "hold_ms"),
    ("join", "join_ms"),
    ("consensus", "consensus_ms"),
    ("merge", "merge_ms"),
    ("downcheck", "downcheck_ms"),
    ("fail_recv_const", "fail_recv_const"),
    ("seqno_unchanged_const", "seqno_unchanged_const"),
    ("send_join", "send_join_ms"),
    ("heartbeat_failures_allowed", "heartbeat_failures_allowed"),
    ("knet_compression_threshold", "knet_compression_threshold"),
)


def runtime_config_items(config: Config) -> list[CmapItem]:
    """The effective values corosync publishes at start-up.

    Args:
        config: from :func:`coroconf.load`.

    Returns:
        ``runtime.config.totem.*`` items (u32 except knet_compression_level,
        i32, and knet_compression_model, str; the two yes/no options as u32
        0/1), then for knet ``runtime.config.totem.interface.N.*`` ping
        timers (u32) and mcastport (u16), for udp the derived
        ``totem.interface.N.mcastaddr``/``mcastport`` the file did not set,
        and ``nodelist.node.N.nodeid`` for generated node ids. Host-specific
        keys (``nodelist.local_node_pos``) are not included: see
        :meth:`coroconf.Config.local_node`.
    """
    totem = config.totem
    items: list[CmapItem] = [(f"runtime.config.totem.{name}", "u32", getattr(totem, field))
                             for name, field in _RUNTIME_U32]
    items += [
        ("runtime.config.totem.knet_compression_level", "i32", totem.knet_compression_level),
        ("runtime.config.totem.knet_compression_model", "str", totem.knet_compression_model),
        ("runtime.config.totem.block_unlisted_ips", "u32", int(totem.block_unlisted_ips)),
        ("runtime.config.totem.cancel_token_hold_on_retransmit", "u32",
         int(totem.cancel_token_hold_on_retransmit)),
    ]
    file_keys = {item.key for item in config.source_items}
    for link in totem.interfaces:
        prefix = f"totem.interface.{link.linknumber}"
        if totem.transport == "knet":
            items += [(f"runtime.config.{prefix}.knet_ping_timeout", "u32",
                       link.knet_ping_timeout_ms),
                      (f"runtime.config.{prefix}.knet_ping_interval", "u32",
                       link.knet_ping_interval_ms),
                      (f"runtime.config.{prefix}.mcastport", "u16", link.mcastport)]
        if totem.transport == "udp":
            if f"{prefix}.mcastaddr" not in file_keys and link.mcastaddr is not None:
                items.append((f"{prefix}.mcastaddr", "str", link.mcastaddr))
            if f"{prefix}.mcastport" not in file_keys:
                items.append((f"{prefix}.mcastport", "u16", link.mcastport))
    for node in config.nodelist:
        if node.nodeid_generated:
            items.append((f"nodelist.node.{node.position}.nodeid", "u32", node.nodeid))
    return items
