"""The nodelist: node ids (given or generated), addresses per link, checks."""

from __future__ import annotations

from ._derive import generate_nodeid
from ._source import Source
from ._values import parse_ip
from .model import NodeConfig, Nodelist

__all__ = ["build_nodelist", "KNET_MAX_HOST"]

#: knet host ids are 16 bits
KNET_MAX_HOST = 65536


def _positions(src: Source) -> list[int]:
    seen: list[int] = []
    for match, _key in src.keys(r"nodelist\.node\.(\d+)\..*"):
        position = int(match.group(1))
        if position not in seen:
            seen.append(position)
    return sorted(seen)


def _describe(src: Source, position: int) -> str:
    name = src.text(f"nodelist.node.{position}.name")
    addr = src.text(f"nodelist.node.{position}.ring0_addr")
    label = name or addr
    return f"node {position + 1} of the nodelist" + (f" ({label})" if label else "")


def _nodeid(src: Source, position: int, transport: str, clear_high_bit: bool) -> tuple[int, bool]:
    prefix = f"nodelist.node.{position}"
    given = src.integer(f"{prefix}.nodeid", 0)
    ring0 = src.text(f"{prefix}.ring0_addr") or ""
    if given:  # 0 is reserved and means "none given", as in corosync
        if transport == "knet" and given >= KNET_MAX_HOST:
            raise src.fail(f"transport knet needs node ids below {KNET_MAX_HOST}, but "
                           f"{_describe(src, position)} has nodeid {given}", f"{prefix}.nodeid")
        return given, False
    if transport == "knet":
        raise src.fail(f"transport knet needs an explicit nodeid for every node, and "
                       f"{_describe(src, position)} has none (0 is reserved)",
                       f"{prefix}.nodeid" if src.has(f"{prefix}.nodeid") else f"{prefix}.ring0_addr")
    generated = generate_nodeid(ring0, clear_high_bit)
    if generated is None:
        raise src.fail(f"{_describe(src, position)} has no nodeid, and one can only be "
                       f"generated from an IPv4 ring0_addr (not '{ring0}'); add a nodeid",
                       f"{prefix}.ring0_addr")
    return generated, True


def _ring_addrs(src: Source, position: int) -> tuple[str | None, ...]:
    found: dict[int, str] = {}
    for match, key in src.keys(rf"nodelist\.node\.{position}\.ring(\d+)_addr"):
        found[int(match.group(1))] = str(src.get(key))
    if 0 not in found:
        raise src.fail(f"{_describe(src, position)} has no ring0_addr; every node needs an "
                       "address on link 0", f"nodelist.node.{position}.nodeid"
                       if src.has(f"nodelist.node.{position}.nodeid") else None)
    return tuple(found.get(link) for link in range(max(found) + 1))


def _check_duplicates(src: Source, nodes: list[NodeConfig]) -> None:
    first: dict[int, NodeConfig] = {}
    for node in nodes:
        other = first.setdefault(node.nodeid, node)
        if other is node:
            continue
        how = f" (generated from ring0_addr {node.ring0_addr})" if node.nodeid_generated else ""
        key = f"nodelist.node.{node.position}." + ("ring0_addr" if node.nodeid_generated
                                                     else "nodeid")
        raise src.fail(f"nodeid {node.nodeid}{how} is used by both "
                       f"{_describe(src, other.position)} and {_describe(src, node.position)}",
                       key)


def _check_links(src: Source, nodes: list[NodeConfig]) -> None:
    links = max(len(node.ring_addrs) for node in nodes)
    if links > 1:
        for node in nodes:
            if node.name is None:
                raise src.fail(f"with several links every node needs a 'name', and "
                               f"{_describe(src, node.position)} has none",
                               f"nodelist.node.{node.position}.ring0_addr")
            if len(node.ring_addrs) != links or None in node.ring_addrs:
                has = ", ".join(str(n) for n, a in enumerate(node.ring_addrs) if a is not None)
                raise src.fail("every node needs an address on the same links, but "
                               f"{_describe(src, node.position)} has links {has} while another "
                               f"node has links 0 to {links - 1}",
                               f"nodelist.node.{node.position}.ring0_addr")
    for link in range(links):
        owners: dict[str, NodeConfig] = {}
        for node in nodes:
            address = node.ring_addrs[link] if link < len(node.ring_addrs) else None
            if address is None:
                continue
            other = owners.setdefault(address, node)
            if other is not node:
                raise src.fail(f"ring{link}_addr {address} is given to both "
                               f"{_describe(src, other.position)} and "
                               f"{_describe(src, node.position)}",
                               f"nodelist.node.{node.position}.ring{link}_addr")
        families: dict[int, str] = {}
        for node in nodes:
            text = node.ring_addrs[link] if link < len(node.ring_addrs) else None
            parsed = parse_ip(text or "")
            if parsed is not None and text is not None:
                families.setdefault(parsed.version, text)
        if len(families) > 1:
            raise src.fail(f"the nodes on link {link} mix IPv4 and IPv6 addresses "
                           f"({families[4]} and {families[6]})")


def build_nodelist(src: Source, transport: str, clear_high_bit: bool) -> Nodelist:
    """Build and check the nodelist.

    Raises:
        ConfigConsistencyError: a node without ring0_addr, a node id missing
            where the transport needs one or impossible to generate, a
            duplicate node id, nodes with different links, or mixed IP
            families on one link.
    """
    nodes = []
    for position in _positions(src):
        prefix = f"nodelist.node.{position}"
        ring_addrs = _ring_addrs(src, position)
        nodeid, generated = _nodeid(src, position, transport, clear_high_bit)
        nodes.append(NodeConfig(position=position, nodeid=nodeid, nodeid_generated=generated,
                                name=src.text(f"{prefix}.name"), ring_addrs=ring_addrs,
                                quorum_votes=src.integer(f"{prefix}.quorum_votes", 1)))
    if nodes:
        _check_duplicates(src, nodes)
        _check_links(src, nodes)
    return Nodelist(nodes=tuple(nodes))
