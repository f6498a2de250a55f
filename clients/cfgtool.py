"""``coro cfgtool``: a node's links and the other nodes as it sees them
(corosync-cfgtool's habits).

    coro cfgtool -s [-b] [-i ADDR|LINK]   link status: every configured node
                                          localhost / connected / disconnected
    coro cfgtool -n                       the other nodes, reachable or not
    coro cfgtool -a NODEID                a node's addresses
    coro cfgtool -H [--force]             stop this node cleanly
    coro cfgtool -L                       reopen log files (see below)
    add --json to -s or -n for one JSON object per node

The node is found as ``coro cmap`` finds it: ``--run-dir``, ``CORO_RUN_DIR``,
``-c corosync.conf`` (its ``system.run_dir``), else /etc/corosync/corosync.conf
or the default run directory. Everything shown is read from the node's
object database: the nodelist, ``runtime.totem.*`` (this node's id, state
and ring members) and ``runtime.members.*`` (addresses learned over udp).

What the statuses mean here: one link (link 0, udpu or udp; a knet file runs
as udpu over its link 0). A node is *connected* when it is a member of this
node's current ring, *disconnected* when it is configured (or was seen) but
is not. corosync's knet measures each link with its own pings; Totem
membership is what we have, so a node whose link works but which is not in
the ring (still joining, or partitioned by a one-way fault) shows as
disconnected. ``-b`` prints one character a node in node id order: ``n``
this node, ``3`` enabled and connected, ``1`` enabled only; it exits 1 if a
node is disconnected.

``-H`` asks the node to leave the ring and stop (SIGTERM to its supervisor,
which drains what it accepted first) and waits until it has stopped; with
no CFG service there is no client to veto it, so ``--force`` changes
nothing. ``-L``: every log file is opened logrotate-safe (reopened when it
is moved or removed), so there is nothing to ask; it checks the node runs.
``-R`` (reload corosync.conf on every node) and ``-k`` (kill a node) need
the CFG service, which does not exist yet: they fail saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = ["NodeView", "NodeEntry", "add_arguments", "read_view", "run", "status_lines",
           "brief_status", "node_lines"]

LINK_ID = 0
STOP_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One node as this node knows it (configured or seen)."""

    nodeid: int
    addresses: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class NodeView:
    """What ``coro cfgtool`` shows, read from a node's cmap."""

    local_id: int
    transport: str
    state: str
    members: frozenset[int]
    nodes: tuple[NodeEntry, ...]   # in node id order, this node included
    netmtu: int

    def node(self, nodeid: int) -> NodeEntry | None:
        return next((entry for entry in self.nodes if entry.nodeid == nodeid), None)

    @property
    def local_address(self) -> str:
        entry = self.node(self.local_id)
        return entry.addresses[0] if entry is not None and entry.addresses else "?"

    def status_of(self, nodeid: int) -> str:
        if nodeid == self.local_id:
            return "localhost"
        return "connected" if nodeid in self.members else "disconnected"


def _ip_of(member_ip: str) -> tuple[str, ...]:
    """``r(0) ip(127.0.0.1) `` (runtime.members.N.ip) -> ("127.0.0.1",)."""
    found = []
    for part in member_ip.split("ip(")[1:]:
        found.append(part.split(")", 1)[0])
    return tuple(found)


def view_from_keys(keys: dict[str, Any]) -> NodeView:
    """Build the view from cmap keys (key -> value): the nodelist, totem.*,
    runtime.totem.* and runtime.members.*.

    Raises:
        LookupError: the node has not published its runtime keys (not started).
    """
    if "runtime.totem.node_id" not in keys:
        raise LookupError("the node has published no runtime.totem keys yet (is totemd running?)")
    local_id = int(keys["runtime.totem.node_id"])
    members = frozenset(int(word) for word in str(keys.get("runtime.totem.members", "")).split())
    by_id: dict[int, NodeEntry] = {}
    positions = sorted({key.split(".")[2] for key in keys if key.startswith("nodelist.node.")},
                       key=lambda text: int(text) if text.isdigit() else -1)
    for position in positions:
        prefix = f"nodelist.node.{position}."
        if prefix + "nodeid" not in keys:
            continue
        nodeid = int(keys[prefix + "nodeid"])
        addresses = tuple(str(keys[prefix + f"ring{ring}_addr"]) for ring in range(8)
                          if prefix + f"ring{ring}_addr" in keys)
        by_id[nodeid] = NodeEntry(nodeid, addresses, str(keys.get(prefix + "name", "")))
    for key, value in keys.items():   # udp: peers learned from their packets
        parts = key.split(".")
        if len(parts) == 4 and parts[:2] == ["runtime", "members"] and parts[3] == "ip":
            nodeid = int(parts[2])
            if nodeid not in by_id:
                by_id[nodeid] = NodeEntry(nodeid, _ip_of(str(value)))
            elif not by_id[nodeid].addresses:
                by_id[nodeid] = NodeEntry(nodeid, _ip_of(str(value)), by_id[nodeid].name)
    if local_id not in by_id:
        by_id[local_id] = NodeEntry(local_id, ())
    transport = "udp" if keys.get("totem.transport") == "udp" else "udpu"
    return NodeView(local_id=local_id, transport=transport,
                    state=str(keys.get("runtime.totem.state", "?")), members=members,
                    nodes=tuple(by_id[nodeid] for nodeid in sorted(by_id)),
                    netmtu=_link_mtu(keys))


def _link_mtu(keys: dict[str, Any]) -> int:
    """The MTU of the link: knet mode's (stats.transport.link_mtu: frames are
    cut to it, as corosync-cfgtool shows knet's), else totem.netmtu."""
    link = int(keys.get("stats.transport.link_mtu", 0) or 0)
    return link if link else int(keys.get("totem.netmtu", 1500))


def read_view(run_dir: str) -> NodeView:
    """The view of the node running with ``run_dir`` (through its cmap).

    Raises:
        LookupError: no node answers there, or it has not started its ring.
    """
    from clients.cmap import CmapClient
    from objdb.errors import ObjdbError

    try:
        with CmapClient.connect(run_dir) as cmap:
            keys: dict[str, Any] = {}
            for prefix in ("nodelist.", "totem.transport", "totem.netmtu",
                           "stats.transport.link_mtu", "runtime.totem.",
                           "runtime.members."):
                for key, value, _type in cmap.iter(prefix):
                    keys[key] = value
    except ObjdbError as error:
        raise LookupError(f"cannot reach the node's object database in {run_dir}: {error}") from None
    return view_from_keys(keys)


# -- output ----------------------------------------------------------------------------

def _header(view: NodeView) -> str:
    return f"Local node ID {view.local_id}, transport {view.transport}"


def status_lines(view: NodeView) -> list[str]:
    """``-s``: the link and every node's status on it."""
    lines = [_header(view), f"LINK ID {LINK_ID} {view.transport}",
             f"\taddr\t= {view.local_address}", "\tstatus:"]
    for entry in view.nodes:
        lines.append(f"\t\tnodeid: {entry.nodeid:>4}:\t{view.status_of(entry.nodeid)}")
    return lines


def brief_status(view: NodeView) -> str:
    """``-b``: one character a node (n: this node, 3: enabled + connected, 1: enabled)."""
    return "".join("n" if entry.nodeid == view.local_id else
                   ("3" if entry.nodeid in view.members else "1") for entry in view.nodes)


def node_lines(view: NodeView) -> list[str]:
    """``-n``: each other node, reachable or not, with its link."""
    lines = [_header(view)]
    for entry in view.nodes:
        if entry.nodeid == view.local_id:
            continue
        connected = entry.nodeid in view.members
        remote = entry.addresses[0] if entry.addresses else "?"
        lines.append(f"nodeid: {entry.nodeid} {'reachable' if connected else 'not reachable'}")
        lines.append(f"   LINK: {LINK_ID} {view.transport} ({view.local_address}->{remote}) "
                     f"enabled {'connected' if connected else 'disconnected'} mtu: {view.netmtu}")
        lines.append("")
    return lines[:-1] if len(lines) > 1 else lines


def node_json(view: NodeView) -> list[dict[str, Any]]:
    return [{"nodeid": entry.nodeid, "name": entry.name, "addresses": list(entry.addresses),
             "link": LINK_ID, "transport": view.transport, "local": entry.nodeid == view.local_id,
             "status": view.status_of(entry.nodeid), "ring_state": view.state}
            for entry in view.nodes]


# -- the command -----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--run-dir", help="the node's run directory")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="corosync.conf whose system.run_dir names the node")
    actions = parser.add_mutually_exclusive_group()
    for flag, action, help_text in (
            ("-s", "status", "link status: each node localhost, connected or disconnected"),
            ("-n", "nodes", "the other nodes, reachable or not, and their link"),
            ("-H", "shutdown", "stop this node cleanly (it leaves the ring first)"),
            ("-L", "reopen", "reopen log files (automatic here: checks the node runs)"),
            ("-R", "reload", "reload corosync.conf on every node (needs the CFG service)")):
        actions.add_argument(flag, dest="action", action="store_const", const=action,
                             help=help_text)
    actions.add_argument("-a", dest="addresses_of", type=int, metavar="NODEID",
                         help="print a node's addresses")
    actions.add_argument("-k", dest="kill_node", type=int, metavar="NODEID",
                         help="kill a node (needs the CFG service)")
    parser.add_argument("-b", dest="brief", action="store_true", help="with -s: brief status")
    parser.add_argument("-i", dest="link", metavar="ADDR|LINK",
                        help="with -s: only the link with this address or link id")
    parser.add_argument("--force", action="store_true", help="with -H: as corosync (no veto here)")
    parser.add_argument("--json", action="store_true", help="with -s or -n: one JSON object a node")


def _supervisor_pid(run_dir: str) -> int:
    import psutil

    from totemd.cli_start import PID_FILE

    path = Path(run_dir, PID_FILE)
    try:
        pid = int(path.read_text().strip())
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    raise LookupError(f"no node runs with run directory {run_dir} (no live pid in {path})")


def _shutdown(run_dir: str, out: TextIO) -> int:
    import psutil

    pid = _supervisor_pid(run_dir)
    process = psutil.Process(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        try:
            # A zombie has stopped: its parent (systemd, a test) reaps it.
            if process.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        print(f"coro cfgtool: the node (pid {pid}) has not stopped after {STOP_WAIT_S:.0f} s",
              file=sys.stderr)
        return 1
    print(f"node stopped (pid {pid})", file=out)
    return 0


def _show(view: NodeView, args: argparse.Namespace, out: TextIO) -> int:
    if args.link is not None and args.link not in (str(LINK_ID), view.local_address):
        print(f"coro cfgtool: no link with address or id {args.link} (link {LINK_ID} is "
              f"{view.local_address})", file=sys.stderr)
        return 1
    if args.json:
        rows = node_json(view)
        if args.action == "nodes":
            rows = [row for row in rows if not row["local"]]
        for row in rows:
            print(json.dumps(row), file=out)
        return 0
    if args.action == "nodes":
        lines = node_lines(view)
    elif args.brief:
        brief = brief_status(view)
        lines = [_header(view), f"LINK ID {LINK_ID} {view.transport}",
                 f"\taddr\t= {view.local_address}", f"\tstatus\t= {brief}"]
        print("\n".join(lines), file=out)
        return 1 if "1" in brief else 0
    else:
        lines = status_lines(view)
    print("\n".join(lines), file=out)
    return 0


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``coro cfgtool``; the exit status (0 ok, 1 failed, 2 usage)."""
    from clients.cmapctl import UsageError, resolve_run_dir

    out = sys.stdout if out is None else out
    action = args.action
    if args.kill_node is not None or action == "reload":
        what = "-k (kill a node)" if args.kill_node is not None else "-R (reload corosync.conf)"
        print(f"coro cfgtool: {what} needs the CFG service, which is not built yet",
              file=sys.stderr)
        return 1
    if action is None and args.addresses_of is None:
        print("coro cfgtool: say what to do: -s, -n, -a NODEID, -H or -L (see --help)",
              file=sys.stderr)
        return 2
    if (args.brief or args.link is not None) and action != "status":
        print("coro cfgtool: -b and -i go with -s", file=sys.stderr)
        return 2
    try:
        run_dir = resolve_run_dir(args)
        if action == "shutdown":
            return _shutdown(run_dir, out)
        if action == "reopen":
            _supervisor_pid(run_dir)
            return 0
        view = read_view(run_dir)
    except UsageError as error:
        print(f"coro cfgtool: {error}", file=sys.stderr)
        return 2
    except LookupError as error:
        print(f"coro cfgtool: {error}", file=sys.stderr)
        return 1
    if args.addresses_of is not None:
        entry = view.node(args.addresses_of)
        if entry is None or not entry.addresses:
            print(f"coro cfgtool: node {args.addresses_of} is not known to node {view.local_id}",
                  file=sys.stderr)
            return 1
        print(" ".join(entry.addresses), file=out)
        return 0
    return _show(view, args, out)
