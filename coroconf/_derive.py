"""The values corosync computes from others, as it computes them.

Sources: corosync exec/totemconfig.c (totem_volatile_config_read,
totem_calc_knet_ping_timers, generate_nodeid, get_cluster_mcast_addr).
Pure functions, so tests can check each formula against corosync's numbers.
"""

from __future__ import annotations

import ipaddress
import struct

from . import defaults

__all__ = ["effective_token_ms", "token_retransmit_ms", "hold_ms", "consensus_ms",
           "knet_ping_interval_ms", "knet_ping_timeout_ms", "generate_nodeid",
           "cluster_mcast_addr"]


def effective_token_ms(token_ms: int, token_coefficient_ms: int, node_count: int) -> int:
    """token + (nodes - 2) x token_coefficient, for nodelists of 3 or more."""
    if node_count > 2:
        return token_ms + (node_count - 2) * token_coefficient_ms
    return token_ms


def token_retransmit_ms(token_ms: int, retransmits_before_loss: int) -> int:
    """token / (token_retransmits_before_loss_const + 0.2), truncated."""
    return int(token_ms / (retransmits_before_loss + 0.2))


def hold_ms(token_retransmit: int) -> int:
    """token_retransmit x 0.8 - one jiffy (10 ms), truncated."""
    return int(token_retransmit * 0.8 - defaults.JIFFY_MS)


def consensus_ms(token_ms: int) -> int:
    """1.2 x token, rounded through a C float as corosync does."""
    as_float32 = struct.unpack("<f", struct.pack("<f", defaults.CONSENSUS_PER_TOKEN * token_ms))
    return int(as_float32[0])


def knet_ping_interval_ms(token_ms: int, pong_count: int) -> int:
    """token / (knet_pong_count x 2)."""
    return token_ms // (pong_count * 2)


def knet_ping_timeout_ms(token_ms: int, pong_count: int) -> int:
    """token / knet_pong_count."""
    return token_ms // pong_count


def generate_nodeid(ring0_addr: str, clear_node_high_bit: bool) -> int | None:
    """The node id corosync makes from an IPv4 address (its 32 bits, big
    endian), or None when the address is not IPv4."""
    try:
        address = ipaddress.IPv4Address(ring0_addr)
    except ValueError:
        return None
    nodeid = int(address)
    if clear_node_high_bit:
        nodeid &= 0x7FFFFFFF
    return nodeid


def cluster_mcast_addr(cluster_name: str, linknumber: int, ipv6: bool) -> str:
    """The udp multicast address derived from cluster_name.

    corosync hashes the name (shift left, add each byte, keep 16 bits),
    adds the link number, and makes 239.192.<high>.<low % 255> (the
    ``% 0xFF`` is corosync's, kept so both pick the same group) or, for
    IPv6, ff15::<id in hex>.
    """
    value = 0
    for byte in cluster_name.encode():
        value = ((value << 1) + (byte if byte < 128 else byte - 256)) & 0xFFFFFFFF
    cluster_id = ((value & 0xFFFF) + linknumber) & 0xFFFF
    if ipv6:
        return f"ff15::{cluster_id:x}"
    return f"239.192.{cluster_id >> 8}.{cluster_id % 0xFF}"
