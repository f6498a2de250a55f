"""Runtime statistics of totemd: one frozen snapshot, as JSON for the local
interface and as cmap keys for objdb.

Keys published into objdb (read-only there, written by totemd over a
privileged connection, refreshed on every configuration change and once a
second, never per message)::

    runtime.totem.node_id              u32   this node
    runtime.totem.incarnation          u32   process incarnation (EVS ``inc``)
    runtime.totem.state                str   OPERATIONAL, GATHER, COMMIT, RECOVERY, LEFT
    runtime.totem.ring_id              str   "<rep>.<seq>" in hex, as the log prints it
    runtime.totem.ring_rep / ring_seq  u32 / u64
    runtime.totem.members              str   "1 2 3"
    runtime.totem.token_rotation_ms    double  mean over the last second (0: no token)
    runtime.members.<id>.status        str   "joined" or "left"
    runtime.members.<id>.ip            str   "r(0) ip(127.0.0.1) " (corosync's form)
    runtime.members.<id>.join_count    u32   REG configurations this node joined in
    runtime.members.<id>.config_version u64  totem.config_version
    stats.srp.<counter>                u64   every SrpStats counter (orf_token_rx, mcast_retx,
                                             rx_malformed, gather_entered, ...)
    stats.srp.rx_msg_dropped           u64   malformed + unknown-source packets
    stats.srp.mtt_rx_token             double  = token_rotation_ms (corosync's name)
    stats.pg.send_queue_frames         u64   frames' worth of messages not yet originated
    stats.pg.sort_queue_frames         u64   frames held for ordering/retransmission
    stats.transport.<counter>          u64   packets/bytes sent and received, send errors,
                                             dropped_unknown_source, socket buffer sizes
    stats.totemd.<counter>             u64   messages/bytes submitted and delivered,
                                             conf changes, loop stalls, local clients, ...

``coro cmap -C TARGET`` publishes a target's counters from zero on
(``clear_target``; ``objdb.clearing``); levels (``LEVEL_KEYS``) stay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DaemonStats", "LEVEL_KEYS", "MAXIMUM_KEYS", "MemberRecord", "clear_target", "cmap_items",
           "format_ring_id"]


def format_ring_id(ring_id: tuple[int, int]) -> str:
    """Corosync prints ring ids as "<rep hex>.<seq hex>" ("1.2c")."""
    return f"{ring_id[0]:x}.{ring_id[1]:x}"


@dataclass(slots=True)
class MemberRecord:
    """What the node knows about one configured or seen member."""

    ip: str
    join_count: int = 0
    status: str = "left"


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonStats:
    """A snapshot of the daemon (see the module docstring for what each part means).

    Attributes:
        srp: the core's ``SrpStats`` as a dict.
        transport: the transport's counters.
        local: the local interface's counters (requests, submits, try_again, ...).
        daemon: the loop's own counters and queue levels.
        members_detail: node id -> {"ip", "join_count", "status"}.
    """

    node_id: int
    inc: int
    state: str
    ring_id: tuple[int, int]
    members: tuple[int, ...]
    last_state_change: str
    token_rotation_ms: float
    srp: dict[str, Any] = field(default_factory=dict)
    transport: dict[str, Any] = field(default_factory=dict)
    local: dict[str, int] = field(default_factory=dict)
    daemon: dict[str, Any] = field(default_factory=dict)
    members_detail: dict[int, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (ring id as a list, member ids as string keys)."""
        data = asdict(self)
        data["ring_id"] = list(self.ring_id)
        data["members"] = list(self.members)
        data["members_detail"] = {str(k): v for k, v in self.members_detail.items()}
        return data

    @property
    def dropped_malformed(self) -> int:
        """Packets dropped before or at decoding (bad bytes, unknown sources)."""
        return int(self.srp.get("rx_malformed", 0)) + int(self.transport.get("dropped_unknown_source", 0))


_U32, _U64, _DOUBLE, _STRING = "u32", "u64", "double", "str"

#: Published stats that are levels, sizes or switches, not counts: a clear
#: (``coro cmap -C``, objdb.clearing) leaves them as they are.
LEVEL_KEYS = frozenset({
    "stats.srp.sort_queue_frames", "stats.srp.mtt_rx_token", "stats.pg.send_queue_frames",
    "stats.pg.sort_queue_frames", "stats.transport.receive_buffer_bytes",
    "stats.transport.send_buffer_bytes", "stats.transport.gso_enabled",
    "stats.transport.gro_enabled", "stats.transport.crypto_enabled",
    "stats.totemd.send_queue_frames", "stats.totemd.local_connections",
    "stats.totemd.local_subscribers", "stats.totemd.local_batch_subscribers",
    "stats.totemd.local_overflow_bytes",
})

#: Maxima, and the target whose clear restarts them (the daemon resets them).
MAXIMUM_KEYS = {
    "stats.totemd.loop_stall_max_ms": "schedmiss",
    "stats.totemd.loop_turn_max_ms": "totem",
    "stats.totemd.local_overflow_peak_bytes": "ipc",
}


def clear_target(key: str) -> str | None:
    """The ``stats.clear.<target>`` that restarts this published counter from
    zero (corosync-cmapctl -C's targets): knet for the links' counters, ipc
    for the local clients', schedmiss for the loop's stalls, totem for the
    rest of stats.srp/stats.totemd; None for levels, maxima and the rest."""
    if key in LEVEL_KEYS or key in MAXIMUM_KEYS:
        return None
    if key.startswith("stats.transport."):
        return "knet"
    if key.startswith("stats.totemd.local_"):
        return "ipc"
    if key.startswith("stats.totemd.loop_stall"):
        return "schedmiss"
    if key.startswith(("stats.srp.", "stats.totemd.")):
        return "totem"
    return None


def cmap_items(stats: DaemonStats, config_version: int = 0) -> dict[str, tuple[Any, str]]:
    """Every cmap key for ``stats``: key -> (value, type short name)."""
    items: dict[str, tuple[Any, str]] = {
        "runtime.totem.node_id": (stats.node_id, _U32),
        "runtime.totem.incarnation": (stats.inc, _U32),
        "runtime.totem.state": (stats.state, _STRING),
        "runtime.totem.ring_id": (format_ring_id(stats.ring_id), _STRING),
        "runtime.totem.ring_rep": (stats.ring_id[0], _U32),
        "runtime.totem.ring_seq": (stats.ring_id[1], _U64),
        "runtime.totem.members": (" ".join(str(m) for m in stats.members), _STRING),
        "runtime.totem.token_rotation_ms": (float(stats.token_rotation_ms), _DOUBLE),
    }
    for node_id, member in stats.members_detail.items():
        prefix = f"runtime.members.{node_id}."
        items[prefix + "status"] = (member["status"], _STRING)
        items[prefix + "ip"] = (f"r(0) ip({member['ip']}) ", _STRING)
        items[prefix + "join_count"] = (int(member["join_count"]), _U32)
        items[prefix + "config_version"] = (config_version, _U64)
    for name, value in stats.srp.items():
        if isinstance(value, int) and not isinstance(value, bool):
            items[f"stats.srp.{name}"] = (value, _U64)
    items["stats.srp.rx_msg_dropped"] = (stats.dropped_malformed, _U64)
    items["stats.srp.mtt_rx_token"] = (float(stats.token_rotation_ms), _DOUBLE)
    items["stats.pg.send_queue_frames"] = (int(stats.daemon.get("send_queue_frames", 0)), _U64)
    items["stats.pg.sort_queue_frames"] = (int(stats.srp.get("sort_queue_frames", 0)), _U64)
    for group, values in (("transport", stats.transport), ("totemd", stats.daemon)):
        for name, value in values.items():
            if isinstance(value, bool):
                continue
            if isinstance(value, int) and value >= 0:
                items[f"stats.{group}.{name}"] = (value, _U64)
            elif isinstance(value, float):
                items[f"stats.{group}.{name}"] = (value, _DOUBLE)
    for name, value in stats.local.items():
        items[f"stats.totemd.local_{name}"] = (int(value), _U64)
    return items
