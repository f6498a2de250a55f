"""A Totem cluster of real ``coro start`` processes on one machine, for the
failure tests (tests/cluster), ``coro demo`` and ``coro bench totem``.

Two topologies (``ClusterSettings.topology``):

- ``loopback`` (default): node i (1-based) binds 127.0.0.i. As root the
  nodes run in one private network namespace (scripts.netns) and the network
  faults are iptables rules inside it; without root they run on the host's
  loopback (other addresses of 127.0.0.0/8 work on Linux without
  configuration), on a free port, and only process faults (kill, pause,
  stop) are available.
- ``lan`` (root only): a namespace per node on one bridged segment
  (scripts.netns.Lan), node i at 192.0.2.i. Each node has a network stack of
  its own, so faults cut IP multicast per receiver too (partitions over
  transport udp), and the packets cross veths and a bridge as between
  corosync nodes in namespaces (the topology ``coro bench corosync`` uses).

Each node gets its own corosync.conf (udpu, the whole nodelist, short
timeouts), run_dir and state_dir under the cluster's base directory, and
writes its EVS log (totemd.evslog) into one shared directory, so the checker
(totemd.evs) sees every incarnation. The harness appends the ``crash`` record
after it SIGKILLs a node, and records quiet windows in ``harness.jsonl``.

The nodes' local interface is a coroipc service. coroipc wakes its peers
through abstract Unix sockets, which exist per network namespace, so the
queries run in a NamespaceWorker inside the namespace (``scripts.nodeview``).

Everything is torn down by :meth:`LocalCluster.close` on every path: node
process groups (SIGTERM, then SIGKILL), the worker, the namespace (its
iptables rules go with it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from scripts.netns import (LAN_NETWORK, Firewall, Lan, Namespace, NamespaceWorker, NetnsError, is_root,
                           lan_address, loopback_address)
from scripts.nodeview import NodeView, node_view, node_views, view_from_stats
from totemd.crypto import write_key

__all__ = [
    "ClusterError",
    "ClusterSettings",
    "LocalCluster",
    "NodeView",
    "node_view",
    "node_views",
    "render_node_config",
]

DEFAULT_PORT = 5405
STOP_TIMEOUT_S = 10.0
STARTUP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05
# sockaddr_un holds 108 bytes; the longest socket a node makes is
# "<run_dir>/<service>.sock" with a service name of up to ~12 characters.
RUN_DIR_MAX_CHARS = 108 - 1 - len("/objdb-admin.sock") - 4


class ClusterError(Exception):
    """The local cluster could not start, did not converge in time, or a
    node did not answer; the message says which node and what it reported."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    """How a local cluster is laid out and timed (the corosync.conf keys)."""

    nodes: int = 3
    token_ms: int = 1000
    consensus_ms: int = 1200
    join_ms: int = 50
    merge_ms: int = 200
    # None: the file leaves netmtu out (corosync's default: 1500, knet 65536).
    netmtu: int | None = None
    window_size: int = 50
    max_messages: int = 17
    fail_recv_const: int = 2500
    port: int = DEFAULT_PORT
    cluster_name: str = "coro-local"
    use_namespace: bool = True
    # "loopback" (one namespace, 127.0.0.i) or "lan" (a namespace per node,
    # 192.0.2.i; needs root and use_namespace).
    topology: str = "loopback"
    evs_log: bool = True
    # "udpu" (unicast to the nodelist), "udp" (IP multicast to
    # multicast_group; as root the namespace's lo is set up for it) or
    # "knet" (udpu with corosync's knet netmtu, frames cut to the link MTU).
    transport: str = "udpu"
    multicast_group: str = "239.192.77.1"
    # udp only: each node's nodelist names the node alone, so it learns its
    # peers' addresses from the source of their packets (daemon _learn_peer).
    learn_peers: bool = False
    # totem.crypto_*: with either set, setup writes one key (base_dir/authkey,
    # coro keygen's) and every node's file names it as its keyfile.
    crypto_cipher: str = "none"
    crypto_hash: str = "none"

    @property
    def crypto(self) -> bool:
        return self.crypto_cipher != "none" or self.crypto_hash != "none"

    def address(self, node_id: int) -> str:
        """Node ``node_id``'s ring0 address in this topology."""
        return lan_address(node_id) if self.topology == "lan" else loopback_address(node_id)

    def convergence_budget_s(self, rotations: int = 4, slack_s: float = 2.0) -> float:
        """L1's T_conv: token + consensus + 4 x join + a few rotations, plus
        slack for a 2-core machine shared with other work."""
        rotation_s = 0.05 * self.nodes  # generous: one token hop is ~1-10 ms here
        return ((self.token_ms + self.consensus_ms + 4 * self.join_ms) / 1000.0
                + rotations * rotation_s + slack_s)


def render_node_config(settings: ClusterSettings, *, run_dir: str, state_dir: str,
                       node_id: int | None = None, keyfile: str | None = None) -> str:
    """The corosync.conf text of one node (they differ only in system.*,
    and in the nodelist with ``learn_peers``).

    Args:
        settings: the cluster layout and timers.
        run_dir: the node's socket directory.
        state_dir: the node's ring id and incarnation directory.
        node_id: the node the file is for (needed with ``learn_peers``).
        keyfile: the shared key's file (needed with crypto).

    Returns:
        The file's text; coroconf.loads accepts it.

    Raises:
        ValueError: an unknown transport, or ``learn_peers`` without udp or
            without ``node_id``.
    """
    if settings.transport not in ("udpu", "udp", "knet"):
        raise ValueError(f"transport {settings.transport!r} is not one of udpu, udp, knet")
    if settings.topology not in ("loopback", "lan"):
        raise ValueError(f"topology {settings.topology!r} is not one of loopback, lan")
    if settings.crypto and keyfile is None:
        raise ValueError("crypto needs the keyfile")
    key_line = f"\tkeyfile: {keyfile}\n" if settings.crypto else ""
    listed = range(1, settings.nodes + 1)
    if settings.learn_peers:
        if settings.transport != "udp" or node_id is None:
            raise ValueError("learn_peers needs transport udp and the node id of the file")
        listed = range(node_id, node_id + 1)
    nodes = "".join(
        f"\tnode {{\n\t\tring0_addr: {settings.address(i)}\n\t\tnodeid: {i}\n"
        f"\t\tname: node{i}\n\t}}\n" for i in listed)
    return (
        "# Written by scripts/localcluster.py for a local test cluster.\n"
        "totem {\n"
        "\tversion: 2\n"
        f"\tcluster_name: {settings.cluster_name}\n"
        f"\ttransport: {settings.transport}\n"
        f"\tcrypto_cipher: {settings.crypto_cipher}\n"
        f"\tcrypto_hash: {settings.crypto_hash}\n"
        f"{key_line}"
        f"\ttoken: {settings.token_ms}\n"
        "\ttoken_coefficient: 0\n"
        f"\tconsensus: {settings.consensus_ms}\n"
        f"\tjoin: {settings.join_ms}\n"
        f"\tmerge: {settings.merge_ms}\n"
        f"\tfail_recv_const: {settings.fail_recv_const}\n"
        f"{_netmtu_line(settings)}"
        f"\twindow_size: {settings.window_size}\n"
        f"\tmax_messages: {settings.max_messages}\n"
        "\tinterface {\n"
        "\t\tlinknumber: 0\n"
        f"{_multicast_keys(settings)}"
        f"\t\tmcastport: {settings.port}\n"
        "\t}\n"
        "}\n"
        f"nodelist {{\n{nodes}}}\n"
        "logging {\n"
        "\tto_stderr: yes\n"
        "\tto_logfile: no\n"
        "\tto_syslog: no\n"
        "\ttimestamp: on\n"
        "}\n"
        "system {\n"
        f"\trun_dir: {run_dir}\n"
        f"\tstate_dir: {state_dir}\n"
        "}\n"
    )


def _netmtu_line(settings: ClusterSettings) -> str:
    """totem.netmtu, when the settings give one (else corosync's default)."""
    return "" if settings.netmtu is None else f"\tnetmtu: {settings.netmtu}\n"


def _multicast_keys(settings: ClusterSettings) -> str:
    """The interface keys of transport udp: the network every node's
    address is in (127.0.0.0 or the Lan's) and the group; nothing for udpu."""
    if settings.transport != "udp":
        return ""
    network = settings.address(1).rsplit(".", 1)[0] + ".0"
    return (f"\t\tbindnetaddr: {network}\n"
            f"\t\tmcastaddr: {settings.multicast_group}\n"
            "\t\tttl: 1\n")


# -- the cluster ------------------------------------------------------------------------

@dataclass(slots=True)
class Node:
    """One node slot: its files and its current process (None when down)."""

    node_id: int
    address: str
    config_path: Path
    run_dir: Path
    state_dir: Path
    output_path: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_command() -> list[str]:
    """``coro start`` (the supervisor); the bare daemon while the supervisor
    module is not in this tree."""
    import importlib.util

    if importlib.util.find_spec("totemd.cli_start") is None:
        return [sys.executable, "-P", "-m", "totemd.process"]
    script = Path(sys.executable).with_name("coro")
    return [str(script), "start"] if script.exists() else [sys.executable, "-m", "clients.cli", "start"]


@dataclass
class LocalCluster:
    """A local cluster under one base directory.

    Args:
        base_dir: an empty directory for configs, run/state dirs and logs.
        settings: layout and timers; ``use_namespace`` is honoured only as
            root (``namespaced`` says what happened).
        extra_args: appended to every ``coro start`` command.
    """

    base_dir: Path
    settings: ClusterSettings = field(default_factory=ClusterSettings)
    extra_args: Sequence[str] = ()
    namespace: Namespace | None = None
    firewall: Firewall | None = None
    worker: NamespaceWorker | None = None
    # topology "lan": the namespaces, and a worker in each node's namespace
    # (``worker`` is then node 1's).
    lan: Lan | None = None
    workers: dict[int, NamespaceWorker] = field(default_factory=dict)
    nodes: dict[int, Node] = field(default_factory=dict)
    starting: set[int] = field(default_factory=set)
    evs_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.base_dir = Path(self.base_dir)
        self.evs_dir = self.base_dir / "evs"
        if self.settings.topology == "lan" and not (self.settings.use_namespace and is_root()):
            raise ClusterError("topology lan needs root and use_namespace (a namespace per node)")
        if self.settings.use_namespace and not is_root():
            self.settings = _replace(self.settings, use_namespace=False)
        if not self.settings.use_namespace and self.settings.port == DEFAULT_PORT:
            # On the host, pick a free port so two clusters never meet.
            self.settings = _replace(self.settings, port=_free_port())

    @property
    def namespaced(self) -> bool:
        return self.settings.use_namespace

    def namespace_of(self, node_id: int) -> Namespace | None:
        """The namespace node ``node_id`` runs in (None on the host); local
        clients of the node must run there."""
        if self.lan is not None:
            return self.lan.nodes[node_id]
        return self.namespace

    def worker_of(self, node_id: int) -> NamespaceWorker:
        """A worker in node ``node_id``'s namespace."""
        worker = self.workers.get(node_id) if self.lan is not None else self.worker
        if worker is None:
            raise ClusterError("the cluster is not set up")
        return worker

    def where(self) -> str:
        """Where the nodes run, for reports."""
        if self.lan is not None:
            return f"{len(self.lan.nodes)} namespaces bridged in {self.lan.hub.name} ({LAN_NETWORK})"
        if self.namespace is not None:
            return f"namespace {self.namespace.name}"
        return f"host loopback port {self.settings.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def setup(self) -> LocalCluster:
        """Create the namespace, firewall, worker and node files (no node runs yet)."""
        longest = self.base_dir / f"node{self.settings.nodes}" / "run"
        if len(str(longest.resolve())) > RUN_DIR_MAX_CHARS:
            raise ClusterError(f"the run directory {longest} is longer than {RUN_DIR_MAX_CHARS} "
                               "characters: node sockets would not fit in sockaddr_un; use a "
                               "shorter base directory")
        self.evs_dir.mkdir(parents=True, exist_ok=True)
        keyfile = None
        if self.settings.crypto:
            keyfile = str(self.base_dir / "authkey")
            write_key(keyfile)
        if self.settings.topology == "lan":
            self.lan = Lan(self.settings.nodes).create()
        elif self.namespaced:
            self.namespace = Namespace().create()
            if self.settings.transport == "udp":
                self.namespace.enable_multicast()
            self.firewall = Firewall(self.namespace).install()
        for node_id in range(1, self.settings.nodes + 1):
            node_dir = self.base_dir / f"node{node_id}"
            run_dir, state_dir = node_dir / "run", node_dir / "state"
            run_dir.mkdir(parents=True, exist_ok=True)
            state_dir.mkdir(parents=True, exist_ok=True)
            config_path = node_dir / "corosync.conf"
            config_path.write_text(render_node_config(
                self.settings, run_dir=str(run_dir), state_dir=str(state_dir), node_id=node_id,
                keyfile=keyfile))
            self.nodes[node_id] = Node(node_id, self.settings.address(node_id), config_path,
                                       run_dir, state_dir, node_dir / "output.log")
        if self.lan is not None:
            self.workers = {node_id: NamespaceWorker(namespace)
                            for node_id, namespace in self.lan.nodes.items()}
            self.worker = self.workers[1]
        else:
            self.worker = NamespaceWorker(self.namespace)
        return self

    def start(self, node_ids: Iterable[int] | None = None) -> LocalCluster:
        """Start the given nodes (default: all that are down)."""
        for node_id in (node_ids if node_ids is not None else self.nodes):
            if self.nodes[node_id].process is None:
                self._spawn(self.nodes[node_id])
        return self

    def _spawn(self, node: Node) -> None:
        command = [*_start_command(), "-c", str(node.config_path),
                   "--node-id", str(node.node_id), "--run-dir", str(node.run_dir),
                   "--state-dir", str(node.state_dir)]
        if self.settings.evs_log:
            command += ["--evs-log", str(self.evs_dir)]
        command += list(self.extra_args)
        namespace = self.namespace_of(node.node_id)
        argv = namespace.argv(command) if namespace is not None else command
        with open(node.output_path, "ab") as output:
            output.write(f"=== start {node.starts + 1}: {' '.join(command)}\n".encode())
            output.flush()
            # Own process group: a signal reaches the node and every child it starts.
            node.process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        node.starts += 1
        node.paused = False
        self.starting.add(node.node_id)

    def running(self) -> list[int]:
        """Nodes whose process is alive (paused ones included)."""
        alive = []
        for node_id, node in self.nodes.items():
            if node.process is not None and node.process.poll() is None:
                alive.append(node_id)
        return alive

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the node's process group, wait for it to die, and
        write the EVS ``crash`` record its incarnation could not write."""
        node = self._live(node_id)
        assert node.process is not None
        self._signal(node, sig)
        if node.paused and sig != signal.SIGKILL:
            self._signal(node, signal.SIGCONT)
        try:
            node.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._signal(node, signal.SIGKILL)
            node.process.wait(STOP_TIMEOUT_S)
        node.process = None
        node.paused = False
        if self.settings.evs_log:
            self._append_crash(node_id)

    def restart(self, node_id: int) -> None:
        """Start a node that was killed or stopped (a new incarnation)."""
        node = self.nodes[node_id]
        if node.process is not None and node.process.poll() is None:
            raise ClusterError(f"node {node_id} is still running")
        node.process = None
        self._spawn(node)

    def pause(self, node_id: int, seconds: float) -> None:
        """SIGSTOP the node, wait ``seconds``, SIGCONT it (blocking)."""
        self.suspend(node_id)
        try:
            time.sleep(seconds)
        finally:
            self.resume(node_id)

    def suspend(self, node_id: int) -> None:
        """SIGSTOP the node's process group (it stays a member until the
        others' token timeout fires)."""
        node = self._live(node_id)
        self._signal(node, signal.SIGSTOP)
        node.paused = True

    def resume(self, node_id: int) -> None:
        """SIGCONT a suspended node."""
        node = self._live(node_id)
        self._signal(node, signal.SIGCONT)
        node.paused = False

    def stop(self, node_ids: int | Iterable[int], timeout_s: float = STOP_TIMEOUT_S) -> dict[int, int]:
        """Graceful stop (SIGTERM: the node leaves the ring and logs ``stop``).
        Several nodes are signalled together. Returns {node: exit status}.

        Raises:
            ClusterError: a node did not exit within ``timeout_s`` (it is then
                killed, so nothing is left running).
        """
        ids = [node_ids] if isinstance(node_ids, int) else list(node_ids)
        for node_id in ids:
            node = self._live(node_id)
            if node.paused:
                self._signal(node, signal.SIGCONT)
                node.paused = False
            self._signal(node, signal.SIGTERM)
        statuses: dict[int, int] = {}
        slow: list[int] = []
        deadline = time.monotonic() + timeout_s
        for node_id in ids:
            node = self.nodes[node_id]
            assert node.process is not None
            try:
                statuses[node_id] = node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                slow.append(node_id)
                self._signal(node, signal.SIGKILL)
                statuses[node_id] = node.process.wait(STOP_TIMEOUT_S)
                if self.settings.evs_log:
                    self._append_crash(node_id)
            node.process = None
        if slow:
            raise ClusterError(f"nodes {slow} did not stop within {timeout_s:.0f} s after SIGTERM")
        return statuses

    def close(self) -> list[str]:
        """Tear everything down (safe on every path, idempotent). Returns
        what had to be forced (empty after a clean run)."""
        forced: list[str] = []
        running = self.running()
        if running:
            try:
                self.stop(running)
            except ClusterError as exc:
                forced.append(str(exc))
        for node in self.nodes.values():
            if node.process is not None:
                self._signal(node, signal.SIGKILL)
                node.process.wait(STOP_TIMEOUT_S)
                node.process = None
        for node in self.nodes.values():
            # A SIGKILLed node (supervisor included) cannot remove its sockets;
            # its next start would. Nobody listens on them any more.
            for path in node.run_dir.glob("*.sock"):
                path.unlink(missing_ok=True)
        for worker in {id(w): w for w in [*self.workers.values(), self.worker] if w}.values():
            worker.close()
        self.worker = None
        self.workers = {}
        if self.lan is not None:
            killed = self.lan.destroy()
            if killed:
                forced.append(f"killed leftover processes in the namespaces: {killed}")
            self.lan = None
        if self.namespace is not None:
            killed = self.namespace.destroy()
            if killed:
                forced.append(f"killed leftover processes in the namespace: {killed}")
            self.namespace = None
        return forced

    def __enter__(self) -> LocalCluster:
        try:
            return self.setup()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _live(self, node_id: int) -> Node:
        node = self.nodes[node_id]
        if node.process is None or node.process.poll() is not None:
            raise ClusterError(f"node {node_id} is not running")
        return node

    @staticmethod
    def _signal(node: Node, sig: int) -> None:
        if node.process is None:
            return
        try:
            os.killpg(node.process.pid, sig)
        except ProcessLookupError:
            pass

    def _append_crash(self, node_id: int) -> None:
        from totemd.evslog import append_crash

        incarnations = [int(path.name.split(".")[1]) for path in self.evs_dir.glob(f"n{node_id}.*.jsonl")]
        if incarnations:
            append_crash(self.evs_dir, node_id, max(incarnations), time.monotonic_ns())

    # -- network faults (namespace only) -----------------------------------------------------

    def _firewall(self) -> Firewall:
        if self.firewall is None:
            raise ClusterError("network faults need root (iptables in a private namespace)")
        return self.firewall

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut the links between groups of node ids (symmetric)."""
        lists = [list(group) for group in groups]
        if self.lan is not None:
            self.lan.partition(lists)
            return
        self._firewall().partition([[loopback_address(n) for n in group] for group in lists])

    def one_way_loss(self, source: int, destination: int) -> None:
        """Drop everything ``source`` sends to ``destination``."""
        if self.lan is not None:
            self.lan.block(source, destination)
            return
        self._firewall().block(loopback_address(source), loopback_address(destination))

    def random_loss(self, percent: float) -> None:
        """Drop ``percent`` % of all UDP packets (on a Lan: of what each node
        receives)."""
        if self.lan is not None:
            self.lan.random_loss(percent)
            return
        self._firewall().random_loss(percent)

    def heal(self) -> None:
        """Remove every network fault."""
        if self.lan is not None:
            self.lan.heal()
        if self.firewall is not None:
            self.firewall.heal()

    def dropped_packets(self) -> int:
        """Packets the fault rules dropped so far (0 without a firewall)."""
        if self.lan is not None:
            return self.lan.dropped_packets()
        return self.firewall.dropped_packets() if self.firewall is not None else 0

    # -- observation ---------------------------------------------------------------------

    def views(self, node_ids: Iterable[int] | None = None, timeout_s: float = 20.0) -> dict[int, NodeView]:
        """Each node's own report (ring, members, state)."""
        if self.worker is None:
            raise ClusterError("the cluster is not set up")
        ids = list(node_ids) if node_ids is not None else self.running()
        # One call per worker: every node on a Lan has its own.
        by_worker: dict[int, tuple[NamespaceWorker, dict[str, str]]] = {}
        for n in ids:
            worker = self.worker_of(n)
            by_worker.setdefault(id(worker), (worker, {}))[1][str(n)] = str(self.nodes[n].run_dir)
        answers: dict[str, Any] = {}
        for worker, run_dirs in by_worker.values():
            answers.update(worker.call("scripts.nodeview:node_views", run_dirs, timeout_s=timeout_s))
        return {int(n): view_from_stats(int(n), stats) for n, stats in answers.items()}

    def wait_converged(self, timeout_s: float | None = None) -> tuple[int, int]:
        """Wait until every running, unpaused node reports the same ring whose
        members are exactly those nodes (state OPERATIONAL).

        Returns:
            The ring id they agree on.

        Raises:
            ClusterError: the deadline passed; the message lists each view.
        """
        expected = [n for n in self.running() if not self.nodes[n].paused]
        return self.wait_rings([expected], timeout_s)[0]

    def wait_rings(self, groups: Sequence[Iterable[int]],
                   timeout_s: float | None = None) -> list[tuple[int, int]]:
        """Wait until the nodes of each group share one ring whose members are
        exactly that group (a partition: one group per side).

        Returns:
            The ring id of each group, in order.

        Raises:
            ClusterError: the deadline passed; the message lists each view.
        """
        self.wait_serving()
        budget = timeout_s if timeout_s is not None else self.settings.convergence_budget_s()
        deadline = time.monotonic() + budget
        wanted = [tuple(sorted(group)) for group in groups]
        if not all(wanted):
            raise ClusterError(f"empty group in {wanted}")
        views: dict[int, NodeView] = {}
        while True:
            try:
                views = self.views([n for group in wanted for n in group],
                                   timeout_s=max(1.0, deadline - time.monotonic()))
            except NetnsError as exc:
                raise ClusterError(f"cannot ask the nodes: {exc}") from exc
            rings = [_agreed_ring(views, group) for group in wanted]
            if all(ring is not None for ring in rings):
                return [ring for ring in rings if ring is not None]
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL_S)
        described = "; ".join(f"node {n}: ring {v.ring} members {list(v.members)} state {v.state}"
                              for n, v in sorted(views.items()))
        raise ClusterError(f"no ring per group {[list(g) for g in wanted]} within {budget:.1f} s "
                           f"({described})")

    def wait_serving(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until the nodes started since the last call answer on their
        local interface. Starting the Python processes of a node (supervisor,
        objdb, totemd) takes seconds on a loaded 2-core box; convergence
        budgets are about the protocol, so they count from here.

        Raises:
            ClusterError: a started node does not serve within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.starting &= set(self.running())
            if not self.starting:
                return
            views = self.views(sorted(self.starting))
            self.starting -= {n for n, view in views.items() if "error" not in view.raw}
            if not self.starting:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(f"nodes {sorted(self.starting)} do not serve {timeout_s:.0f} s "
                                   "after their start")
            time.sleep(POLL_INTERVAL_S)

    def wait_drained(self, node_ids: Iterable[int] | None = None, timeout_s: float = 5.0) -> bool:
        """Wait until the nodes' send queues and sort queues are empty on two
        polls in a row: everything they accepted was originated, delivered
        and is stable (freed by every member). Returns False if the deadline
        passed first."""
        ids = list(node_ids) if node_ids is not None else self.running()
        deadline = time.monotonic() + timeout_s
        empty_polls = 0
        while True:
            views = self.views(ids)
            empty = all("error" not in view.raw
                        and int((view.raw.get("daemon") or {}).get("send_queue_frames", 1)) == 0
                        and int((view.raw.get("srp") or {}).get("sort_queue_frames", 1)) == 0
                        for view in views.values())
            empty_polls = empty_polls + 1 if empty else 0
            if empty_polls >= 2:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL_S)

    def snapshot_logs(self, destination: Path) -> Path:
        """Copy the EVS logs as one consistent cut: every running node is
        stopped (SIGSTOP) while the files are copied, then continued.

        Reading live files one after the other would see node 2 deliver a
        message whose submit node 1 wrote after its file was read. A node
        writes what others can observe before it sends, so with everyone
        stopped the files on disk form a consistent cut. The stop lasts a few
        milliseconds, far below the token timeout.
        """
        import shutil

        destination.mkdir(parents=True, exist_ok=True)
        for stale in destination.glob("*.jsonl"):
            stale.unlink()
        frozen = [self.nodes[n] for n in self.running() if not self.nodes[n].paused]
        for node in frozen:
            self._signal(node, signal.SIGSTOP)
        try:
            # kill() only queues the signal: a node may run on for a moment on
            # the other core. Copy only once every process is really stopped.
            self._wait_stopped({node.process.pid for node in frozen if node.process is not None})
            for path in self.evs_dir.glob("n*.jsonl"):
                shutil.copyfile(path, destination / path.name)
        finally:
            for node in frozen:
                self._signal(node, signal.SIGCONT)
        return destination

    @staticmethod
    def _wait_stopped(groups: set[int], timeout_s: float = 2.0) -> None:
        """Wait until every process of the given process groups is stopped
        (state T) or gone.

        Raises:
            ClusterError: one is still running after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            running = []
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                # fields[0] is the state, fields[2] the process group.
                if int(fields[2]) in groups and fields[0] not in ("T", "t", "Z", "X"):
                    running.append(int(entry.name))
            if not running:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(f"processes {running} did not stop within {timeout_s} s")
            time.sleep(0.002)

    def output(self, node_id: int, tail_lines: int = 40) -> str:
        """The end of a node's stdout/stderr (all its incarnations)."""
        try:
            lines = self.nodes[node_id].output_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-tail_lines:])


def _agreed_ring(views: dict[int, NodeView], group: tuple[int, ...]) -> tuple[int, int] | None:
    """The ring every node of ``group`` reports with exactly ``group`` as its
    members and state OPERATIONAL, or None."""
    rings = {views[n].ring if n in views else None for n in group}
    if len(rings) != 1 or None in rings:
        return None
    if all(views[n].members == group and views[n].state in ("OPERATIONAL", "unknown") for n in group):
        return rings.pop()
    return None


def _replace(settings: ClusterSettings, **changes: Any) -> ClusterSettings:
    from dataclasses import replace

    return replace(settings, **changes)

