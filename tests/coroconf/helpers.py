"""Small builders for corosync.conf text used across the coroconf tests."""

from __future__ import annotations

import coroconf

UDPU_NODES = """\
nodelist {
	node {
		ring0_addr: 10.0.0.1
		nodeid: 1
	}
	node {
		ring0_addr: 10.0.0.2
		nodeid: 2
	}
}
"""


def udpu(totem_extra: str = "", rest: str = UDPU_NODES) -> str:
    """A valid udpu file with ``totem_extra`` lines inside totem."""
    return f"totem {{\n\tversion: 2\n\ttransport: udpu\n{totem_extra}}}\n{rest}"


def nodes(count: int, *, nodeids: bool = True, prefix: str = "10.0.0.") -> str:
    """A nodelist of ``count`` nodes at prefix.1, prefix.2, ..."""
    body = ""
    for number in range(1, count + 1):
        nodeid = f"\t\tnodeid: {number}\n" if nodeids else ""
        body += f"\tnode {{\n\t\tring0_addr: {prefix}{number}\n{nodeid}\t}}\n"
    return f"nodelist {{\n{body}}}\n"


def load_udpu(totem_extra: str = "", rest: str = UDPU_NODES) -> coroconf.Config:
    return coroconf.loads(udpu(totem_extra, rest), "corosync.conf")
