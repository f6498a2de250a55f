"""This host's addresses and names, for :meth:`coroconf.Config.local_node`.

The only module of coroconf that looks at the machine. The rest is pure.
"""

from __future__ import annotations

import ipaddress
import socket

import psutil

__all__ = ["host_addresses", "interface_mtu"]


def host_addresses() -> list[str]:
    """Every IP interface of this host as "address/prefix", then its names.

    Returns:
        e.g. ["127.0.0.1/8", "10.0.0.5/24", "fe80::1/64", "node1",
        "node1.example.com"]. Link-local IPv6 scope ids are dropped.
    """
    found: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            address = entry.address.split("%", 1)[0]
            try:
                if entry.netmask:
                    network = ipaddress.ip_network(f"{address}/{entry.netmask}", strict=False)
                    found.append(f"{address}/{network.prefixlen}")
                else:
                    found.append(address)
            except ValueError:
                found.append(address)
    name = socket.gethostname()
    found.append(name)
    if "." in name:
        found.append(name.split(".", 1)[0])
    return found


def interface_mtu(address: str, default: int = 1500) -> int:
    """The MTU of the interface that has ``address`` (knet mode's link MTU
    when ``totem.knet_mtu`` is 0: corosync's knet finds it by PMTUd; we take
    the local interface's, which is the path's on one segment), or
    ``default`` if no interface has it."""
    wanted = address.split("%", 1)[0]
    stats = psutil.net_if_stats()
    for name, entries in psutil.net_if_addrs().items():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6) and \
                    entry.address.split("%", 1)[0] == wanted and name in stats and stats[name].mtu > 0:
                return int(stats[name].mtu)
    return default
