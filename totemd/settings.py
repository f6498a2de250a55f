"""Node settings for totemd: corosync.conf resolved for one node, and the EVS log target.

``resolve_settings`` loads the configuration (coroconf), picks this node's
nodelist entry (by ``--node-id``, or by matching the host's addresses) and
collects what the daemon needs: bind address and port, transport mode,
peers, the core's ``TotemParams``, the run and state directories.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from totemd.crypto import CryptoSettings, KeyError_, load_key, overhead_bytes
from totemd.srp import TotemParams

__all__ = ["NodeSettings", "StartupError", "resolve_settings", "settings_for_process"]


class StartupError(Exception):
    """The node cannot start: the configuration does not name this node, an
    address cannot be bound, the state directory is unusable. The message says
    what to fix."""


@dataclass(frozen=True, kw_only=True)
class NodeSettings:
    """Everything the daemon needs, resolved from corosync.conf and the command line."""

    node_id: int
    bind_address: str
    port: int
    mode: str
    peers: dict[int, str]
    params: TotemParams
    run_dir: str
    state_dir: str
    cluster_name: str = "coro"
    config_version: int = 0
    multicast_group: str | None = None
    multicast_ttl: int = 1
    evs_log: str | None = None
    config_path: str | None = None
    # system.sched_rr / system.priority (totemd/scheduling.py)
    sched_rr: bool | None = None
    priority: str | None = None
    # totem.crypto_cipher / crypto_hash and the key (None: in clear)
    crypto: CryptoSettings | None = None
    # the logging section (coroconf.LoggingConfig; None: stderr only)
    logging: Any = None
    # uidgid (and uidgid.d): who besides root and our uid may use the totem
    # service, as for every corosync IPC service
    ipc_uids: tuple[int, ...] = ()
    ipc_gids: tuple[int, ...] = ()
    # transport knet: the link MTU frames are cut for (totemd.linkfrag;
    # None: udpu or udp, frames are never cut)
    link_mtu: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _resolve_address(address: str) -> str:
    """A ring address as an IP literal (names are resolved once, at start)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
        return address
    except OSError:
        pass
    try:
        return socket.getaddrinfo(address, None, type=socket.SOCK_DGRAM)[0][4][0]
    except OSError as error:
        raise StartupError(f"cannot resolve ring address {address!r}: {error}") from error


def resolve_settings(config_path: str, *, node_id: int | None = None, run_dir: str | None = None,
                     state_dir: str | None = None, evs_log: str | None = None,
                     send_queue_bytes: int | None = None) -> NodeSettings:
    """Load corosync.conf and find this node in it.

    Args:
        config_path: the file.
        node_id: pick this nodelist entry (several nodes on one machine);
            None: the entry whose ring0_addr is an address of this host.
        run_dir, state_dir: override ``system.run_dir``/``system.state_dir``.
        evs_log: directory (or .jsonl file) for the EVS event log.
        send_queue_bytes: bound of the send queue (default: the core's).

    Raises:
        StartupError: the file is invalid or does not name this node.
    """
    import coroconf
    from coroconf.host import host_addresses, interface_mtu

    try:
        config = coroconf.load(config_path)
    except coroconf.ConfigError as error:
        raise StartupError(str(error)) from error
    if node_id is not None:
        node = config.nodelist.by_nodeid(node_id)
        if node is None or node.ring0_addr is None:
            known = ", ".join(str(n.nodeid) for n in config.nodelist) or "none"
            raise StartupError(f"node id {node_id} is not in the nodelist of {config_path} "
                               f"(node ids: {known})")
        bind = node.ring0_addr
    else:
        addresses = host_addresses()
        node_id = config.local_nodeid(addresses)
        bind = config.bind_address(addresses)
        if node_id is None or bind is None:
            raise StartupError(f"no nodelist entry of {config_path} has an address of this host "
                               "(pass --node-id to pick one)")
    link = config.totem.interface(0)
    peers = {n.nodeid: _resolve_address(n.ring0_addr) for n in config.nodelist
             if n.ring0_addr is not None}
    overrides: dict[str, Any] = {}
    if send_queue_bytes is not None:
        overrides = {"max_queued_bytes": send_queue_bytes,
                     "max_message_size": min(send_queue_bytes, 1 << 20)}
    crypto = _crypto_settings(config, config_path)
    knet = config.totem.transport == "knet"
    if crypto is not None and not knet:
        # Sealed datagrams must still fit netmtu: frames are cut that much
        # smaller (knet mode: the pieces are, see UdpTransport).
        overrides["netmtu"] = config.totem.netmtu - overhead_bytes(crypto.cipher, crypto.hash)
    bind_address = _resolve_address(bind)
    link_mtu = None
    if knet:
        link_mtu = config.totem.knet_mtu or interface_mtu(bind_address)
    try:
        params = coroconf.totem_params(config, **overrides)
    except ValueError as error:
        raise StartupError(f"{config_path}: {error}") from error
    return NodeSettings(
        node_id=node_id, bind_address=bind_address, link_mtu=link_mtu,
        port=link.mcastport if link is not None else 5405,
        mode=config.totem.network_transport, peers=peers, params=params,
        run_dir=run_dir or config.system.run_dir, state_dir=state_dir or config.system.state_dir,
        cluster_name=config.totem.cluster_name or "coro",
        config_version=config.totem.config_version,
        multicast_group=link.mcastaddr if link is not None else None,
        multicast_ttl=link.ttl if link is not None else 1, evs_log=evs_log,
        config_path=config_path, sched_rr=config.system.sched_rr,
        priority=config.system.priority, crypto=crypto, logging=config.logging,
        ipc_uids=config.uidgid.uids, ipc_gids=config.uidgid.gids)


def _crypto_settings(config: Any, config_path: str) -> CryptoSettings | None:
    """The crypto settings and the key (keyfile, default /etc/corosync/authkey,
    or the file's inline ``key``), or None when the file asks for neither a
    cipher nor a hash."""
    from coroconf import defaults

    totem = config.totem
    if totem.crypto_cipher == "none" and totem.crypto_hash == "none":
        return None
    try:
        if totem.has_inline_key:
            key = next(str(item.value) for item in config.source_items
                       if item.key == "totem.key").encode()
        else:
            key = load_key(totem.keyfile or defaults.KEYFILE)
    except KeyError_ as error:
        raise StartupError(f"{config_path}: crypto_cipher {totem.crypto_cipher}, crypto_hash "
                           f"{totem.crypto_hash}: {error}") from error
    return CryptoSettings(cipher=totem.crypto_cipher, hash=totem.crypto_hash, key=key)


def settings_for_process(args: Any, process: str) -> NodeSettings | None:
    """What ``coro start`` and totemd do first: log to stderr until the file
    is read, resolve the node's settings from ``args`` (config, node_id,
    run_dir, state_dir, evs_log, send_queue_bytes, log_level), then follow
    the file's logging section. None (the reason printed): the node cannot start."""
    import logging
    import sys

    from coroconf.logsetup import apply as apply_logging

    logging.basicConfig(level=args.log_level or "INFO", stream=sys.stderr,
                        format=f"%(asctime)s {process}[%(process)d] %(levelname)s %(name)s: "
                               "%(message)s")
    try:
        settings = resolve_settings(args.config, node_id=args.node_id, run_dir=args.run_dir,
                                    state_dir=args.state_dir, evs_log=args.evs_log,
                                    send_queue_bytes=args.send_queue_bytes)
    except StartupError as error:
        print(f"{'coro start' if process == 'coro' else process}: {error}", file=sys.stderr)
        return None
    apply_logging(settings.logging, process, args.log_level, settings.state_dir)
    return settings

