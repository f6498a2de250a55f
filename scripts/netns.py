"""Network namespaces, iptables fault rules and an in-namespace worker, for
local clusters on loopback (the failure tests, ``coro demo`` and
``coro bench totem``).

Three pieces, each usable alone:

- :class:`Namespace` -- a private network namespace (``ip netns add
  coro-<pid>-<n>``) with only ``lo`` up. Every node of a local cluster binds
  an address 127.0.0.x inside it, so nothing reaches the host's network and
  two test runs on one machine never see each other's packets. Destroying it
  kills what still runs inside (all of it was started by us: the namespace is
  private) and deletes it, which also drops its iptables rules.
- :class:`Firewall` -- faults as iptables rules in one chain, ``CORO-FAULTS``,
  jumped to from INPUT inside the namespace: a DROP per blocked (source,
  destination) address pair (partitions, one-way loss) and an optional
  ``-m statistic --mode random --probability p`` DROP on every UDP packet
  (random loss). Each change replaces the whole chain at once with
  ``iptables-restore --noflush``, so a fault schedule never passes through a
  half-applied state. On loopback every packet crosses INPUT exactly once,
  on the receiving address, so one rule per direction is enough.
- :class:`Lan` -- a namespace per node, joined by a bridge in a hub
  namespace: what corosync's own benchmarks call "nodes in network
  namespaces". Needed where each node must have a network stack of its own:
  corosync (its IPC endpoints are abstract sockets with fixed names, one per
  namespace), and faults that must cut IP multicast for some receivers only
  (with one namespace the kernel loops a multicast datagram back to every
  member and iptables sees it once). Node i has :func:`lan_address` (i) on
  its ``eth0``; each node namespace carries its own :class:`Firewall`.
- :class:`NamespaceWorker` -- a long-lived Python process inside the
  namespace that calls ``module:function`` for us and answers in JSON. Local
  clients have to run inside the namespace: coroipc wakes its peer through
  abstract-namespace Unix sockets, and those exist per network namespace.

Root is needed for namespaces and iptables. :func:`ensure_iptables` installs
Debian's ``iptables`` package once if the binary is missing (CI is root).
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

__all__ = [
    "CHAIN",
    "Firewall",
    "FaultRules",
    "LAN_NETWORK",
    "Lan",
    "Namespace",
    "NamespaceWorker",
    "NetnsError",
    "ensure_iptables",
    "is_root",
    "lan_address",
    "loopback_address",
    "udp_drain",
    "udp_open",
    "udp_probe",
    "udp_send",
]

CHAIN = "CORO-FAULTS"
IPTABLES_PACKAGE = "iptables"
COMMAND_TIMEOUT_S = 20.0
INSTALL_TIMEOUT_S = 300.0
_counter = itertools.count(1)


class NetnsError(Exception):
    """A namespace, iptables or worker operation failed: the command, its exit
    status and its stderr are in the message."""


def is_root() -> bool:
    """True when this process may create namespaces and change iptables."""
    return os.geteuid() == 0


def loopback_address(index: int) -> str:
    """The loopback address of the index-th node (1-based): 127.0.0.<index>."""
    if not 1 <= index <= 254:
        raise ValueError(f"node index {index} is outside 1..254")
    return f"127.0.0.{index}"


# TEST-NET-1 (RFC 5737): documentation addresses, never routed anywhere; they
# exist only on the veths of a Lan's own namespaces.
LAN_PREFIX = "192.0.2."
LAN_PREFIX_LENGTH = 24
LAN_NETWORK = f"{LAN_PREFIX}0/{LAN_PREFIX_LENGTH}"


def lan_address(index: int) -> str:
    """The address of the index-th node (1-based) of a :class:`Lan`: 192.0.2.<index>."""
    if not 1 <= index <= 254:
        raise ValueError(f"node index {index} is outside 1..254")
    return f"{LAN_PREFIX}{index}"


def _run(argv: Sequence[str], *, input_text: str | None = None,
         timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(list(argv), input=input_text, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise NetnsError(f"{argv[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"{' '.join(argv)}: no answer in {timeout_s:.0f} s") from exc
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed (exit {done.returncode}): "
                         f"{done.stderr.strip() or done.stdout.strip()}")
    return done


_iptables_path: str | None = None


def ensure_iptables(*, install: bool = True) -> str:
    """The path of ``iptables``, installing Debian's package if it is missing.

    Idempotent and quick after the first call (the answer is cached; with the
    binary present nothing runs).

    Args:
        install: run ``apt-get install -y iptables`` when missing (needs root).

    Returns:
        The absolute path of the iptables binary.

    Raises:
        NetnsError: missing and cannot be installed (not root, no apt-get, or
            the install failed).
    """
    global _iptables_path
    if _iptables_path is not None:
        return _iptables_path
    found = shutil.which("iptables") or shutil.which("iptables", path="/usr/sbin:/sbin")
    if found is None and install:
        if not is_root():
            raise NetnsError("iptables is not installed and installing it needs root")
        if shutil.which("apt-get") is None:
            raise NetnsError("iptables is not installed and there is no apt-get to install it")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(["apt-get", "install", "-y", "-qq", IPTABLES_PACKAGE],
                              capture_output=True, text=True, env=env,
                              timeout=INSTALL_TIMEOUT_S, check=False)
        if done.returncode != 0:
            # A fresh machine may have no package lists yet.
            _run(["apt-get", "update", "-qq"], timeout_s=INSTALL_TIMEOUT_S)
            _run(["apt-get", "install", "-y", "-qq", IPTABLES_PACKAGE], timeout_s=INSTALL_TIMEOUT_S)
        found = shutil.which("iptables") or shutil.which("iptables", path="/usr/sbin:/sbin")
    if found is None:
        raise NetnsError("iptables is not installed (apt-get install iptables)")
    _iptables_path = found
    return found


class Namespace:
    """A private network namespace with only ``lo`` up.

    Args:
        name: defaults to ``coro-<pid>-<n>``, unique per process and call.

    Use as a context manager, or call :meth:`create` and :meth:`destroy`
    (destroy is idempotent and safe on every path).
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"coro-{os.getpid()}-{next(_counter)}"
        self.created = False

    def create(self) -> Namespace:
        """Add the namespace and bring ``lo`` up.

        Raises:
            NetnsError: not root, or ``ip`` failed.
        """
        if not is_root():
            raise NetnsError("network namespaces need root")
        _run(["ip", "netns", "add", self.name])
        self.created = True
        try:
            _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        except NetnsError:
            self.destroy()
            raise
        return self

    def enable_multicast(self, routes: Sequence[str] = ("224.0.0.0/4",)) -> Namespace:
        """Let IP multicast work on ``lo`` inside: turn the interface's
        MULTICAST flag on (a fresh namespace's ``lo`` has it off, and the
        kernel then refuses to join groups on it) and route the multicast
        range to it (there is no default route in a private namespace).

        Raises:
            NetnsError: the namespace is not created, or ``ip`` failed.
        """
        if not self.created:
            raise NetnsError(f"namespace {self.name} is not created")
        _run(["ip", "-n", self.name, "link", "set", "lo", "multicast", "on"])
        for route in routes:
            _run(["ip", "-n", self.name, "route", "replace", route, "dev", "lo"])
        return self

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` wrapped to run inside the namespace (``ip netns exec``
        execs in place, so the child's pid is the command's pid)."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, command: Sequence[str], *, input_text: str | None = None,
            timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside and wait for it (output captured as text)."""
        return _run(self.argv(command), input_text=input_text, timeout_s=timeout_s, check=check)

    def popen(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside; keyword arguments go to subprocess.Popen."""
        return subprocess.Popen(self.argv(command), **kwargs)

    def pids(self) -> list[int]:
        """Processes running inside the namespace now."""
        if not self.created:
            return []
        done = _run(["ip", "netns", "pids", self.name], check=False)
        return [int(word) for word in done.stdout.split() if word.isdigit()]

    def destroy(self, *, grace_s: float = 2.0) -> list[int]:
        """Kill what still runs inside, then delete the namespace.

        Everything inside was started by us (the namespace is private to this
        run), so SIGKILL by pid is safe. Returns the pids that had to be
        killed: a caller that stopped its processes expects none.
        """
        if not self.created:
            return []
        killed = self.pids()
        for pid in killed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        _run(["ip", "netns", "del", self.name], check=False)
        self.created = False
        return killed

    def exists(self) -> bool:
        """True while ``ip netns list`` shows the namespace."""
        listing = _run(["ip", "netns", "list"], check=False).stdout
        return any(line.split()[0] == self.name for line in listing.splitlines() if line.strip())

    def __enter__(self) -> Namespace:
        return self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRules:
    """The network faults in force: blocked (source, destination) address
    pairs and a random loss percentage on every UDP packet."""

    blocked: frozenset[tuple[str, str]] = frozenset()
    loss_percent: float = 0.0
    # Sources dropped whatever the destination (unicast or a multicast
    # group): a Lan node's firewall cuts a peer this way.
    silenced: frozenset[str] = frozenset()

    def render(self) -> str:
        """The chain as iptables-restore input (replaces the chain whole)."""
        lines = ["*filter", f":{CHAIN} - [0:0]"]
        for source in sorted(self.silenced):
            lines.append(f"-A {CHAIN} -s {source}/32 -p udp -j DROP")
        for source, destination in sorted(self.blocked):
            lines.append(f"-A {CHAIN} -s {source}/32 -d {destination}/32 -p udp -j DROP")
        if self.loss_percent > 0:
            probability = min(self.loss_percent, 100.0) / 100.0
            lines.append(f"-A {CHAIN} -p udp -m statistic --mode random "
                         f"--probability {probability:.6f} -j DROP")
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


@dataclass(slots=True)
class Firewall:
    """Fault rules inside one namespace (never on the host).

    Args:
        namespace: a created Namespace.
    """

    namespace: Namespace
    rules: FaultRules = field(default_factory=FaultRules)
    installed: bool = False
    _iptables: str = "iptables"
    _restore_binary: str = "iptables-restore"

    def install(self) -> Firewall:
        """Create the chain and the INPUT jump (idempotent).

        Raises:
            NetnsError: iptables is missing and cannot be installed, or failed.
        """
        if self.installed:
            return self
        iptables = ensure_iptables()
        restore = os.path.join(os.path.dirname(iptables), "iptables-restore")
        self._restore_binary = restore if os.path.exists(restore) else "iptables-restore"
        self._iptables = iptables
        self.namespace.run([self._restore_binary, "--noflush"], input_text=FaultRules().render())
        self.namespace.run([iptables, "-w", "-I", "INPUT", "1", "-j", CHAIN])
        self.installed = True
        return self

    def apply(self, rules: FaultRules) -> None:
        """Replace the fault rules with ``rules`` in one step."""
        self.install()
        self.namespace.run([self._restore_binary, "--noflush"], input_text=rules.render())
        self.rules = rules

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every pair of addresses that sit in different groups (both
        directions). Addresses named in no group keep their links to all.
        Keeps the random loss in force."""
        sets = [sorted(set(group)) for group in groups]
        blocked = {(a, b) for i, left in enumerate(sets) for j, right in enumerate(sets)
                   if i != j for a in left for b in right}
        self.apply(replace(self.rules, blocked=frozenset(blocked)))

    def block(self, source: str, destination: str) -> None:
        """Drop what ``source`` sends to ``destination`` (one way only)."""
        self.apply(replace(self.rules, blocked=self.rules.blocked | {(source, destination)}))

    def silence(self, sources: Iterable[str]) -> None:
        """Drop everything from ``sources`` arriving here, multicast included
        (replaces the silenced set; the empty set lifts it)."""
        self.apply(replace(self.rules, silenced=frozenset(sources)))

    def random_loss(self, percent: float) -> None:
        """Drop ``percent`` % of all UDP packets at random (0 turns it off)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"loss {percent}% is outside 0..100")
        self.apply(replace(self.rules, loss_percent=float(percent)))

    def heal(self) -> None:
        """Remove every fault."""
        self.apply(FaultRules())

    def listing(self) -> list[str]:
        """The chain as ``iptables -S`` prints it (for reports and tests)."""
        if not self.installed:
            return []
        return self.namespace.run([self._iptables, "-w", "-S", CHAIN]).stdout.splitlines()

    def dropped_packets(self) -> int:
        """Packets the fault rules dropped so far (iptables counters)."""
        if not self.installed:
            return 0
        out = self.namespace.run([self._iptables, "-w", "-L", CHAIN, "-n", "-v", "-x"]).stdout
        total = 0
        for line in out.splitlines()[2:]:
            words = line.split()
            if len(words) > 2 and words[0].isdigit() and words[2] == "DROP":
                total += int(words[0])
        return total


class Lan:
    """Nodes in namespaces of their own, on one Ethernet segment.

    A hub namespace holds a bridge (``br0``, multicast snooping off so that
    multicast floods to every port, as on a plain switch); node i's namespace
    has ``lo`` and ``eth0``, one end of a veth pair whose other end is a
    bridge port in the hub, with address :func:`lan_address` (i)/24 and a
    route for IP multicast. Nothing is routed out of the hub: the addresses
    exist only here.

    Args:
        size: number of nodes (1..254).

    Use as a context manager, or :meth:`create` / :meth:`destroy` (idempotent,
    safe on every path: a half-built Lan is taken down by create itself).
    """

    BRIDGE = "br0"
    DEVICE = "eth0"

    def __init__(self, size: int) -> None:
        if not 1 <= size <= 254:
            raise ValueError(f"a Lan of {size} nodes is outside 1..254")
        self.size = size
        self.hub = Namespace()
        self.nodes: dict[int, Namespace] = {i: Namespace(f"{self.hub.name}-n{i}")
                                            for i in range(1, size + 1)}
        self.firewalls: dict[int, Firewall] = {}

    def address(self, index: int) -> str:
        """Node ``index``'s address on the segment."""
        if index not in self.nodes:
            raise ValueError(f"node {index} is not on this Lan (1..{self.size})")
        return lan_address(index)

    def create(self, *, firewalls: bool = True) -> Lan:
        """Build the hub, the bridge and every node's namespace and link.

        Args:
            firewalls: install a fault :class:`Firewall` in each node namespace.

        Raises:
            NetnsError: not root, or an ``ip``/iptables command failed (what
                was built is removed first).
        """
        try:
            self.hub.create()
            hub = self.hub.name
            _run(["ip", "-n", hub, "link", "add", self.BRIDGE, "type", "bridge",
                  "mcast_snooping", "0"])
            _run(["ip", "-n", hub, "link", "set", self.BRIDGE, "up"])
            for index, node in self.nodes.items():
                node.create()
                port = f"v{index}"
                _run(["ip", "-n", hub, "link", "add", port, "type", "veth",
                      "peer", "name", self.DEVICE, "netns", node.name])
                _run(["ip", "-n", hub, "link", "set", port, "master", self.BRIDGE, "up"])
                _run(["ip", "-n", node.name, "addr", "add",
                      f"{lan_address(index)}/{LAN_PREFIX_LENGTH}", "dev", self.DEVICE])
                _run(["ip", "-n", node.name, "link", "set", self.DEVICE, "up"])
                _run(["ip", "-n", node.name, "route", "replace", "224.0.0.0/4",
                      "dev", self.DEVICE])
                if firewalls:
                    self.firewalls[index] = Firewall(node).install()
        except BaseException:
            self.destroy()
            raise
        return self

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut the nodes of different groups apart (both ways, multicast
        too); nodes in no group keep their links to all."""
        sets = [set(group) for group in groups]
        for index, firewall in self.firewalls.items():
            mine = next((group for group in sets if index in group), None)
            others = (set() if mine is None
                      else {n for group in sets if group is not mine for n in group})
            firewall.silence(lan_address(n) for n in sorted(others))

    def block(self, source: int, destination: int) -> None:
        """Drop everything node ``source`` sends that node ``destination``
        would receive, multicast included (one way)."""
        firewall = self.firewalls[destination]
        firewall.silence(set(firewall.rules.silenced) | {lan_address(source)})

    def random_loss(self, percent: float) -> None:
        """Each node drops ``percent`` % of the UDP packets it receives."""
        for firewall in self.firewalls.values():
            firewall.random_loss(percent)

    def heal(self) -> None:
        """Remove every fault on every node."""
        for firewall in self.firewalls.values():
            firewall.heal()

    def dropped_packets(self) -> int:
        """Packets the nodes' fault rules dropped so far."""
        return sum(firewall.dropped_packets() for firewall in self.firewalls.values())

    def destroy(self) -> list[int]:
        """Kill what runs inside, delete every namespace (the veths go with
        them). Returns the pids that had to be killed."""
        killed: list[int] = []
        for node in self.nodes.values():
            killed += node.destroy()
        killed += self.hub.destroy()
        self.firewalls.clear()
        return killed

    def exists(self) -> bool:
        """True while any of the Lan's namespaces is listed."""
        listing = _run(["ip", "netns", "list"], check=False).stdout
        names = {line.split()[0] for line in listing.splitlines() if line.strip()}
        return bool(names & {self.hub.name, *(node.name for node in self.nodes.values())})

    def __enter__(self) -> Lan:
        return self.create()

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()


class NamespaceWorker:
    """A Python process inside a namespace (or on the host with namespace
    None) that calls functions for us.

    ``call("package.module:function", *args, **kwargs)`` imports the module
    in the worker, calls the function and returns its JSON-able result. The
    worker keeps module state between calls, so a module may cache client
    connections. Errors come back as NetnsError with the remote message.
    """

    def __init__(self, namespace: Namespace | None, *, env: dict[str, str] | None = None) -> None:
        # -P: the same code as the caller (PYTHONPATH, installed), not the cwd's.
        command = [sys.executable, "-P", "-m", "scripts.netns", "worker"]
        argv = namespace.argv(command) if namespace is not None else command
        self._process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env=env, start_new_session=True)
        self._buffer = ""

    @property
    def pid(self) -> int:
        return self._process.pid

    def call(self, target: str, *args: Any, timeout_s: float = 30.0, **kwargs: Any) -> Any:
        """Call ``module:function`` in the worker and return its result.

        Raises:
            NetnsError: the function raised, the worker died, or no answer
                came within ``timeout_s``.
        """
        if self._process.poll() is not None:
            raise NetnsError(f"the worker exited with status {self._process.returncode}")
        assert self._process.stdin is not None and self._process.stdout is not None
        request = json.dumps({"call": target, "args": args, "kwargs": kwargs})
        try:
            self._process.stdin.write(request + "\n")
            self._process.stdin.flush()
        except BrokenPipeError as exc:
            raise NetnsError("the worker is gone") from exc
        line = self._read_line(timeout_s)
        answer = json.loads(line)
        if "error" in answer:
            raise NetnsError(f"{target}: {answer['error']}")
        return answer["ok"]

    def _read_line(self, timeout_s: float) -> str:
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while "\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NetnsError(f"the worker gave no answer in {timeout_s:.1f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise NetnsError("the worker closed its output")
                self._buffer += chunk.decode()
        line, self._buffer = self._buffer.split("\n", 1)
        return line

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker (end of input, then SIGKILL after ``timeout_s``)."""
        if self._process.poll() is None:
            try:
                assert self._process.stdin is not None
                self._process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout_s)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def __enter__(self) -> NamespaceWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def udp_probe(source: str, destination: str, count: int = 50, wait_s: float = 0.3) -> int:
    """Send ``count`` datagrams from ``source`` to ``destination`` (fresh
    sockets on ephemeral ports) and return how many arrived within ``wait_s``
    after the last one. Run it where the addresses live (a NamespaceWorker).
    """
    import socket

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind((destination, 0))
        receiver.setblocking(False)
        sender.bind((source, 0))
        target = receiver.getsockname()

        def drain() -> int:
            got = 0
            while True:
                try:
                    receiver.recv(64)
                except BlockingIOError:
                    return got
                got += 1

        received = 0
        for index in range(count):
            sender.sendto(index.to_bytes(4, "big"), target)
            if index % 64 == 63:  # keep the receive buffer from overflowing
                received += drain()
        deadline = time.monotonic() + wait_s
        while received < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([receiver], [], [], left)[0]:
                break
            received += drain()
        return received
    finally:
        receiver.close()
        sender.close()


# A probe across namespaces, in three calls on two workers: udp_open where
# the datagrams should arrive, udp_send where they leave, udp_drain to count.
_probe_sockets: dict[int, Any] = {}


def udp_open(address: str, port: int, group: str | None = None) -> int:
    """Open a receiving socket on ``port`` (kept in this worker until
    :func:`udp_drain`): bound to ``address``, or to multicast ``group``
    joined on the interface that has ``address``. Returns the port."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((group or address, port))
        if group is not None:
            membership = socket.inet_aton(group) + socket.inet_aton(address)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    _probe_sockets[port] = sock
    return port


def udp_send(source: str, destination: str, port: int, count: int = 50) -> int:
    """Send ``count`` datagrams from ``source`` to ``destination``:``port``
    (a multicast destination leaves through ``source``'s interface)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((source, 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        for index in range(count):
            sock.sendto(index.to_bytes(4, "big"), (destination, port))
            if index % 32 == 31:
                time.sleep(0.001)  # stay below the receiver's buffer
        return count
    finally:
        sock.close()


def udp_drain(port: int, wait_s: float = 0.3) -> int:
    """How many datagrams the socket of :func:`udp_open` got, waiting up to
    ``wait_s`` after the last; closes it."""
    sock = _probe_sockets.pop(port)
    received = 0
    try:
        while select.select([sock], [], [], wait_s)[0]:
            try:
                while True:
                    sock.recv(64)
                    received += 1
            except BlockingIOError:
                pass
        return received
    finally:
        sock.close()


def _worker_main() -> int:
    """The worker's loop: one JSON request per input line, one answer per
    output line, until end of input."""
    import importlib
    import traceback

    for line in sys.stdin:
        try:
            request = json.loads(line)
            module_name, _, function_name = str(request["call"]).partition(":")
            function = getattr(importlib.import_module(module_name), function_name)
            answer: dict[str, Any] = {"ok": function(*request.get("args", ()),
                                                    **request.get("kwargs", {}))}
        except Exception as exc:  # reported to the caller, the worker keeps serving
            answer = {"error": f"{type(exc).__name__}: {exc}",
                      "trace": traceback.format_exc(limit=5)}
        try:
            sys.stdout.write(json.dumps(answer, default=str) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            return 0
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        sys.exit(_worker_main())
    print("usage: python -m scripts.netns worker", file=sys.stderr)
    sys.exit(2)
