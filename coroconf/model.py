"""The configuration object: nested frozen dataclasses.

Each section of corosync.conf has a dataclass holding its *effective*
values: what the file set, else corosync's default, else the value corosync
derives (token with token_coefficient, token_retransmit, hold, consensus,
knet ping timers, the udp multicast address, generated node ids). Field
names follow the file's keys; durations carry their unit at the end
(``token_ms`` for the file's ``token``), sizes and counts keep the file's
name. Components receive their sub-config (``config.totem``,
``config.quorum``) in their constructor and never read the file again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ._flatten import SourceItem

__all__ = ["InterfaceConfig", "NodeConfig", "Nodelist", "TotemConfig", "QuorumDeviceConfig",
           "QuorumConfig", "LoggerSubsysConfig", "LoggingConfig", "SystemConfig",
           "ResourcesConfig", "NozzleConfig", "UidGidConfig", "Config"]

_FROZEN = {"frozen": True, "slots": True, "kw_only": True}


@dataclass(**_FROZEN)
class InterfaceConfig:
    """One link (``totem { interface { linknumber: N ... } }`` or a ringN_addr).

    ``mcastport`` defaults to 5405 + linknumber (5405 + 2 x linknumber with
    broadcast). ``mcastaddr`` is derived from cluster_name for udp when not
    set. The knet_* fields are corosync's per-link knet settings, recorded
    for cmap; we run knet as udpu and do not use them.
    """

    linknumber: int
    bindnetaddr: str | None = None
    mcastaddr: str | None = None
    broadcast: bool = False
    mcastport: int = 5405
    ttl: int = 1
    knet_link_priority: int = 1
    knet_ping_interval_ms: int = 0
    knet_ping_timeout_ms: int = 0
    knet_ping_precision: int = 2048
    knet_pong_count: int = 2
    knet_transport: str = "udp"


@dataclass(**_FROZEN)
class NodeConfig:
    """One ``nodelist { node { ... } }`` entry.

    Attributes:
        position: its index in the nodelist (cmap ``nodelist.node.<position>``).
        nodeid: the node id; generated from an IPv4 ring0_addr for udp/udpu
            when the file gives none (``nodeid_generated`` is then True).
        ring_addrs: the address of the node on each link, index = link
            number, None where the node has no address on that link.
    """

    position: int
    nodeid: int
    nodeid_generated: bool = False
    name: str | None = None
    ring_addrs: tuple[str | None, ...] = ()
    quorum_votes: int = 1

    @property
    def ring0_addr(self) -> str | None:
        """The node's address on link 0."""
        return self.ring_addrs[0] if self.ring_addrs else None


@dataclass(**_FROZEN)
class Nodelist:
    """All nodes, in file order."""

    nodes: tuple[NodeConfig, ...] = ()

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[NodeConfig]:
        return iter(self.nodes)

    def by_nodeid(self, nodeid: int) -> NodeConfig | None:
        """The node with this id, or None."""
        return next((node for node in self.nodes if node.nodeid == nodeid), None)


@dataclass(**_FROZEN)
class TotemConfig:
    """The ``totem`` section, effective values.

    ``transport`` is what the file asks for (corosync 3 defaults to knet);
    ``network_transport`` is what runs: udp (multicast) or udpu (unicast to
    every node), knet running as udpu over link 0. ``token_ms`` is the
    effective token timeout, ``token_base_ms`` the file's ``token`` before
    token_coefficient is added for nodelists of 3 or more nodes.
    """

    version: int = 2
    cluster_name: str | None = None
    cluster_uuid: str | None = None
    config_version: int = 0
    transport: str = "knet"
    network_transport: str = "udpu"
    ip_version: str = "ipv6-4"
    ip_dscp: int = 0
    clear_node_high_bit: bool = False
    crypto_model: str = "nss"
    crypto_cipher: str = "none"
    crypto_hash: str = "none"
    keyfile: str | None = None
    has_inline_key: bool = False
    link_mode: str = "passive"
    netmtu: int = 1500
    token_ms: int = 3000
    token_base_ms: int = 3000
    token_coefficient_ms: int = 650
    token_warning_percent: int = 75
    token_retransmit_ms: int = 714
    token_retransmits_before_loss_const: int = 4
    hold_ms: int = 561
    join_ms: int = 50
    send_join_ms: int = 0
    consensus_ms: int = 3600
    merge_ms: int = 200
    downcheck_ms: int = 1000
    fail_recv_const: int = 2500
    seqno_unchanged_const: int = 30
    heartbeat_failures_allowed: int = 0
    max_network_delay_ms: int = 50
    window_size: int = 50
    max_messages: int = 17
    miss_count_const: int = 5
    block_unlisted_ips: bool = True
    cancel_token_hold_on_retransmit: bool = False
    knet_pmtud_interval_s: int = 30
    knet_mtu: int = 0
    knet_compression_model: str = "none"
    knet_compression_threshold: int = 0
    knet_compression_level: int = 0
    interfaces: tuple[InterfaceConfig, ...] = ()

    def interface(self, linknumber: int = 0) -> InterfaceConfig | None:
        """The link with this number, or None if it is not configured."""
        return next((link for link in self.interfaces if link.linknumber == linknumber), None)


@dataclass(**_FROZEN)
class QuorumDeviceConfig:
    """``quorum { device { ... } }`` (qdevice; recorded, not implemented)."""

    model: str | None = None
    votes: int = 1
    timeout_ms: int = 10000
    sync_timeout_ms: int = 30000
    master_wins: bool = False
    #: the net { } and heuristics { } keys, as ("net.host", "qnetd") pairs
    settings: tuple[tuple[str, str], ...] = ()


@dataclass(**_FROZEN)
class QuorumConfig:
    """The ``quorum`` section (votequorum's options, see votequorum(5)).

    ``provider`` None means no quorum service. ``wait_for_all`` is on when
    set, or by default with two_node. ``expected_votes`` None means "the sum
    of the nodelist's quorum_votes".
    """

    provider: str | None = None
    expected_votes: int | None = None
    votes: int | None = None
    two_node: bool = False
    wait_for_all: bool = False
    last_man_standing: bool = False
    last_man_standing_window_ms: int = 10000
    auto_tie_breaker: bool = False
    auto_tie_breaker_node: str = "lowest"
    allow_downscale: bool = False
    expected_votes_tracking: bool = False
    leaving_timeout_ms: int | None = None
    device: QuorumDeviceConfig | None = None


@dataclass(**_FROZEN)
class LoggerSubsysConfig:
    """A ``logger_subsys`` override; None fields inherit from ``logging``."""

    subsys: str
    to_stderr: bool | None = None
    to_logfile: bool | None = None
    to_syslog: bool | None = None
    logfile: str | None = None
    logfile_priority: str | None = None
    syslog_facility: str | None = None
    syslog_priority: str | None = None
    debug: str | None = None


@dataclass(**_FROZEN)
class LoggingConfig:
    """The ``logging`` section."""

    timestamp: str = "hires"
    fileline: bool = False
    function_name: bool = False
    blackbox: bool = True
    to_stderr: bool = True
    to_logfile: bool = False
    to_syslog: bool = True
    logfile: str | None = None
    logfile_priority: str = "info"
    syslog_facility: str = "daemon"
    syslog_priority: str = "info"
    debug: str = "off"
    subsystems: tuple[LoggerSubsysConfig, ...] = ()


@dataclass(**_FROZEN)
class SystemConfig:
    """The ``system`` section. ``run_dir`` is ours, not corosync's.

    ``state_dir`` (corosync: ring id files, blackbox) and ``run_dir`` (our
    sockets) default to /var/lib/corosync and /run/corosync; give each node
    its own pair to run several nodes on one machine.
    """

    qb_ipc_type: str = "native"
    # None: the file does not say. corosync then takes SCHED_RR; totemd keeps
    # the normal policy unless asked (measured: real-time totemds pre-empt
    # their local clients; docs, "Implemented, and what is reported instead").
    sched_rr: bool | None = None
    # corosync's: a nice value -20..19, "max" (-20) or "min" (19); used when
    # sched_rr is not yes.
    priority: str | None = None
    move_to_root_cgroup: str = "auto"
    allow_knet_handle_fallback: bool = False
    state_dir: str = "/var/lib/corosync"
    run_dir: str = "/run/corosync"


@dataclass(**_FROZEN)
class ResourcesConfig:
    """The ``resources`` section (recorded; no watchdog is driven)."""

    watchdog_device: str | None = None
    watchdog_timeout_s: int | None = None


@dataclass(**_FROZEN)
class NozzleConfig:
    """The ``nozzle`` section (knet's tap device; recorded, not implemented)."""

    name: str | None = None
    ipaddr: str | None = None
    ipprefix: str | None = None
    macaddr: str | None = None


@dataclass(**_FROZEN)
class UidGidConfig:
    """Users and groups allowed to use the IPC (``uidgid`` and uidgid.d)."""

    uids: tuple[int, ...] = ()
    gids: tuple[int, ...] = ()


@dataclass(**_FROZEN)
class Config:
    """One validated corosync.conf.

    Attributes:
        filename: where it was read from ("<string>" for text).
        warnings: sentences about what was accepted but is not honoured
            (knet's extra links, crypto, legacy keys), each with file:line
            where one line is to blame. Not part of equality.
        source_items: every key the file set, as corosync's parser puts it
            in cmap (see :func:`coroconf.to_cmap_items`).
    """

    filename: str = field(compare=False, default="<string>")
    totem: TotemConfig = field(default_factory=TotemConfig)
    nodelist: Nodelist = field(default_factory=Nodelist)
    quorum: QuorumConfig = field(default_factory=QuorumConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    nozzle: NozzleConfig | None = None
    uidgid: UidGidConfig = field(default_factory=UidGidConfig)
    warnings: tuple[str, ...] = field(compare=False, default=())
    source_items: tuple[SourceItem, ...] = ()

    def local_node(self, addresses: Iterable[str]) -> NodeConfig | None:
        """The nodelist entry for this host, found from its addresses.

        Args:
            addresses: the host's addresses ("10.0.0.1", "10.0.0.1/24",
                "fe80::1") and, optionally, its host names.

        Returns:
            The first node with a ring address (or ``name``) among them, or
            None when no node matches.
        """
        from ._local import find_local_node
        return find_local_node(self, addresses)

    def local_nodeid(self, addresses: Iterable[str]) -> int | None:
        """This host's node id: its nodelist entry's, or (udp without a
        nodelist) one generated from the bind address as corosync does."""
        from ._local import find_local_nodeid
        return find_local_nodeid(self, addresses)

    def bind_address(self, addresses: Iterable[str], linknumber: int = 0) -> str | None:
        """The local address to bind on a link: the local node's ringN_addr,
        else the host address inside ``totem.interface.bindnetaddr``."""
        from ._local import find_bind_address
        return find_bind_address(self, addresses, linknumber)
