"""Which nodelist entry is this host; which address to bind.

Pure: the caller passes the host's addresses (see
:func:`coroconf.host.host_addresses`), so tests can play any host and
several nodes can share one machine, each with its own address.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable

from ._derive import generate_nodeid
from ._values import parse_ip

if TYPE_CHECKING:
    from .model import Config, NodeConfig

__all__ = ["find_local_node", "find_local_nodeid", "find_bind_address"]

_Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _split(addresses: Iterable[str]) -> tuple[list[_Interface], set[str]]:
    interfaces: list[_Interface] = []
    names: set[str] = set()
    for text in addresses:
        try:
            interfaces.append(ipaddress.ip_interface(text.split("%", 1)[0]))
        except ValueError:
            names.add(text)
    return interfaces, names


def find_local_node(config: "Config", addresses: Iterable[str]) -> "NodeConfig | None":
    """The first node with a ring address (or name) among ``addresses``."""
    interfaces, names = _split(addresses)
    local_ips = {interface.ip for interface in interfaces}
    for node in config.nodelist:
        for ring_addr in node.ring_addrs:
            if ring_addr is None:
                continue
            address = parse_ip(ring_addr)
            if (address is not None and address in local_ips) or ring_addr in names:
                return node
        if node.name is not None and node.name in names:
            return node
    return None


def find_bind_address(config: "Config", addresses: Iterable[str], linknumber: int = 0) -> str | None:
    """The local address for ``linknumber``: the local node's ringN_addr, else
    the host address that is, or is inside the network of, bindnetaddr."""
    addresses = list(addresses)
    node = find_local_node(config, addresses)
    if node is not None and linknumber < len(node.ring_addrs):
        return node.ring_addrs[linknumber]
    link = config.totem.interface(linknumber)
    bindnet = parse_ip(link.bindnetaddr or "") if link is not None else None
    if bindnet is None:
        return None
    interfaces, _names = _split(addresses)
    for interface in interfaces:
        if interface.ip == bindnet:
            return str(interface.ip)
    for interface in interfaces:
        if interface.version == bindnet.version and bindnet in interface.network:
            return str(interface.ip)
    return None


def find_local_nodeid(config: "Config", addresses: Iterable[str]) -> int | None:
    """The local node's id; without a nodelist (udp), generated from the
    IPv4 bind address as corosync generates node ids."""
    addresses = list(addresses)
    node = find_local_node(config, addresses)
    if node is not None:
        return node.nodeid
    if config.nodelist.nodes:
        return None
    bind = find_bind_address(config, addresses)
    if bind is None:
        return None
    return generate_nodeid(bind, config.totem.clear_node_high_bit)
