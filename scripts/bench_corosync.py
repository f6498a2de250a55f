"""``coro bench corosync``: corosync 3 with CPG, the peer of ``coro bench totem``,
measured on this machine in the same way.

::

    coro bench corosync --nodes 3 [--transport knet|udpu] [--duration 3] [--senders 1|all] [--json]

Runs the machine's own corosync (Debian's 3.1.7 here; installed with
``libcpg-dev`` when missing and we are root) as a real cluster: one network
namespace per node on a bridge (scripts.netns.Lan, node i on 192.0.2.i).
Corosync needs a namespace per node: its IPC endpoints are abstract unix
sockets with fixed names. Each daemon also gets a mount namespace of its own
with the node's directory bound over /run, because corosync 3.1.7 locks a
fixed /var/run/corosync.pid (a second daemon on one /run refuses to start);
its state (ring id, blackbox) goes to the node's directory through
``system.state_dir``.

The cluster: totem version 2, the chosen transport (knet is corosync 3's
default), no crypto, token 3000 ms (as bench totem's cluster), everything
else corosync's defaults, SCHED_RR included (corosync sets it by default;
the scheduling it got is reported), except that a daemon whose SCHED_RR is
refused must not move itself to the root cgroup. No quorum provider: CPG
does not need one.

The client is ``scripts/cpg_peer.c``, a small C program on libcpg, compiled
into the run's temporary directory. It measures what scripts/bench_totem.py
measures, per message size:

- throughput: a ``cpg_peer saturate`` on every node at once (``--senders
  1``: on node 1 only), each sending
  AGREED messages as fast as ``cpg_mcast_joined`` takes them (a
  CS_ERR_TRY_AGAIN waits briefly for deliveries) and counting its own
  deliveries after a 0.5 s warm-up for ``--duration`` seconds;
  ``msgs_per_s`` is the sum over senders;
- latency: ``cpg_peer latency`` on node 1, one message at a time, from just
  before ``cpg_mcast_joined`` to its own delivery (closed loop), p50/p99;
- sparse latency: the same from every node in turn, one message every
  ~20 ms (seeded random 0.5-1.5 x 20 ms), p50/p99 over all nodes.

Teardown on every path: clients killed, each corosync stopped with SIGTERM
(SIGKILL after a bounded wait), the namespaces deleted, the temporary
directory removed (unless ``--keep``), and libqb's /dev/shm files that
carry a pid of ours removed and reported if any were left.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from scripts.bench_totem import (HALT_POLL_PATH, SPARSE_GAP_MS, WARMUP_S, Row,
                                 _guest_halt_poll_ns, _load_1m, _percentile,
                                 add_measurement_arguments, print_rows)
from scripts.netns import LAN_NETWORK, NetnsError

__all__ = ["add_arguments", "run", "render_config", "CorosyncCluster", "BenchError"]

IMPL = "corosync-cpg"
PACKAGES = ("corosync", "libcpg-dev")
CPG_HEADER = Path("/usr/include/corosync/cpg.h")
PEER_SOURCE = Path(__file__).resolve().with_name("cpg_peer.c")
SBIN_PATH = "/usr/sbin:/sbin"
INSTALL_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 120.0
TOOL_TIMEOUT_S = 10.0
MEMBERS_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
TOKEN_MS = 3000
SHM_DIR = Path("/dev/shm")


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# -- what it needs ---------------------------------------------------------------------------

def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN_PATH)


def _missing() -> list[str]:
    """Debian packages that would supply what is missing (empty: all there)."""
    packages: list[str] = []
    if _which("corosync") is None or _which("corosync-cmapctl") is None:
        packages.append("corosync")
    if not CPG_HEADER.exists():
        packages.append("libcpg-dev")
    if _which("gcc") is None:
        packages.append("gcc")
    return packages


def ensure_corosync() -> str:
    """The path of ``corosync``, installing Debian's packages when something
    is missing (as root with apt-get; the answer is quick when all is there).

    Raises:
        BenchError: missing and not installable here; says what to install.
    """
    packages = _missing()
    if packages:
        hint = f"install {' '.join(packages)} (Debian: apt-get install {' '.join(packages)})"
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise BenchError(f"corosync, libcpg and gcc are needed: {hint}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        try:
            done = subprocess.run(install, capture_output=True, text=True, env=env,
                                  timeout=INSTALL_TIMEOUT_S, check=False)
            if done.returncode != 0:
                # A fresh machine may have no package lists yet.
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True,
                               env=env, timeout=INSTALL_TIMEOUT_S, check=False)
                done = subprocess.run(install, capture_output=True, text=True, env=env,
                                      timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"apt-get gave no answer in {INSTALL_TIMEOUT_S:.0f} s: {hint}") from exc
        if done.returncode != 0 or _missing():
            raise BenchError(f"installing {' '.join(packages)} failed "
                             f"({done.stderr.strip()[-300:]}): {hint}")
    found = _which("corosync")
    assert found is not None
    return found


def corosync_version(binary: str) -> str:
    """``3.1.7`` from ``corosync -v`` ("" when it does not say)."""
    try:
        out = subprocess.run([binary, "-v"], capture_output=True, text=True,
                             timeout=TOOL_TIMEOUT_S, check=False).stdout
    except subprocess.TimeoutExpired:
        return ""
    found = re.search(r"version '([^']+)'", out)
    return found.group(1) if found else ""


def build_peer(directory: Path) -> Path:
    """Compile scripts/cpg_peer.c into ``directory`` (never into the tree)."""
    binary = directory / "cpg_peer"
    try:
        done = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(PEER_SOURCE), "-lcpg"],
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"building cpg_peer failed: {exc}") from exc
    if done.returncode != 0:
        raise BenchError(f"building cpg_peer failed:\n{done.stderr.strip()}")
    return binary


# -- the cluster -----------------------------------------------------------------------------

def render_config(node_id: int, nodes: int, transport: str, node_dir: Path) -> str:
    """corosync.conf for node ``node_id`` of ``nodes`` on the Lan."""
    from scripts.netns import lan_address

    members = "".join(f"    node {{\n        ring0_addr: {lan_address(n)}\n        nodeid: {n}\n"
                      f"        name: node{n}\n    }}\n" for n in range(1, nodes + 1))
    return (
        f"# coro bench corosync, node {node_id}\n"
        "totem {\n"
        "    version: 2\n"
        "    cluster_name: coro-bench\n"
        f"    transport: {transport}\n"
        "    crypto_cipher: none\n"
        "    crypto_hash: none\n"
        f"    token: {TOKEN_MS}\n"
        "}\n"
        "nodelist {\n"
        f"{members}"
        "}\n"
        "logging {\n"
        "    to_syslog: no\n"
        "    to_stderr: no\n"
        "    to_logfile: yes\n"
        f"    logfile: {node_dir / 'corosync.log'}\n"
        "    timestamp: hires\n"
        "}\n"
        "system {\n"
        f"    state_dir: {node_dir / 'state'}\n"
        # Never move a bench daemon out of the cgroup it was started in (only
        # tried when SCHED_RR is refused; SCHED_RR itself stays the default).
        "    move_to_root_cgroup: no\n"
        "}\n"
    )


def _scheduling(pid: int) -> str:
    """``SCHED_RR/99`` and the like: the policy a process runs under."""
    names = {getattr(os, name): name for name in ("SCHED_OTHER", "SCHED_BATCH", "SCHED_IDLE",
                                                  "SCHED_FIFO", "SCHED_RR") if hasattr(os, name)}
    try:
        policy = os.sched_getscheduler(pid)
        priority = os.sched_getparam(pid).sched_priority
    except OSError:
        return "unknown"
    return f"{names.get(policy, str(policy))}/{priority}"


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What teardown found still there and removed (a clean run has none)."""

    killed_in_namespaces: tuple[int, ...] = ()
    daemons_killed: tuple[int, ...] = ()
    shm_removed: tuple[str, ...] = ()

    def notes(self) -> list[str]:
        notes = []
        if self.daemons_killed:
            notes.append(f"corosync did not stop on SIGTERM, killed: {list(self.daemons_killed)}")
        if self.killed_in_namespaces:
            notes.append(f"processes left in the namespaces, killed: {list(self.killed_in_namespaces)}")
        if self.shm_removed:
            notes.append(f"/dev/shm files left by our processes, removed: {list(self.shm_removed)}")
        return notes


class CorosyncCluster:
    """Corosync on ``nodes`` namespaces of a Lan, and the clients we run there.

    Every process it starts is recorded (its pid names libqb's /dev/shm
    files) and stopped by :meth:`close`, which is safe on every path.
    """

    def __init__(self, base: Path, nodes: int, transport: str) -> None:
        from scripts.netns import Lan

        self.base = base
        self.transport = transport
        self.lan = Lan(nodes)
        self.daemons: dict[int, subprocess.Popen[bytes]] = {}
        self.children: list[subprocess.Popen[Any]] = []
        self.pids: set[int] = set()
        self._shm_before = _shm_entries()

    @property
    def node_ids(self) -> list[int]:
        return sorted(self.lan.nodes)

    def node_dir(self, node_id: int) -> Path:
        return self.base / f"n{node_id}"

    def start(self, corosync: str) -> None:
        """Build the Lan and start a corosync on each node."""
        self.lan.create(firewalls=False)
        for node_id in self.node_ids:
            node_dir = self.node_dir(node_id)
            for sub in ("state", "run"):
                (node_dir / sub).mkdir(parents=True, exist_ok=True)
            conf = node_dir / "corosync.conf"
            conf.write_text(render_config(node_id, len(self.node_ids), self.transport, node_dir))
            # A private mount namespace with the node's own /run: corosync's
            # lock file is a fixed /var/run/corosync.pid. unshare and sh exec in
            # place, so the pid we get is corosync's.
            command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                       'mount --bind "$1" /run && exec "$2" -f -c "$3"', "sh",
                       str(node_dir / "run"), corosync, str(conf)]
            with open(node_dir / "stderr", "wb") as errors:
                daemon = self.lan.nodes[node_id].popen(command, stdin=subprocess.DEVNULL,
                                                       stdout=errors, stderr=errors,
                                                       start_new_session=True)
            self.daemons[node_id] = daemon
            self.pids.add(daemon.pid)

    def scheduling(self) -> str:
        """The scheduling policy of the daemons (one answer when they agree)."""
        found = sorted({_scheduling(daemon.pid) for daemon in self.daemons.values()})
        return ",".join(found)

    def _check_daemons(self) -> None:
        for node_id, daemon in self.daemons.items():
            if daemon.poll() is not None:
                raise BenchError(f"corosync on node {node_id} exited with status {daemon.returncode}")

    def spawn(self, node_id: int, command: Sequence[str]) -> subprocess.Popen[str]:
        """Start a command in node ``node_id``'s namespace (its own process group)."""
        child = self.lan.nodes[node_id].popen(list(command), stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True, start_new_session=True)
        self.children.append(child)
        self.pids.add(child.pid)
        return child

    def collect(self, child: subprocess.Popen[str], timeout_s: float) -> tuple[int, str, str]:
        """Wait for a spawned command (killed after ``timeout_s``)."""
        try:
            out, err = child.communicate(timeout=max(timeout_s, 0.1))
        except subprocess.TimeoutExpired:
            _kill_group(child)
            out, err = child.communicate(timeout=STOP_TIMEOUT_S)
            raise BenchError(f"{' '.join(map(str, child.args))} gave no answer in "
                             f"{timeout_s:.0f} s: {err.strip()[-300:]}") from None
        return child.returncode, out, err

    def clients(self, commands: Sequence[tuple[int, Sequence[str]]],
                timeout_s: float) -> list[dict[str, Any]]:
        """Run cpg_peer commands at once, one per (node, argv); their JSON answers."""
        started = [(node_id, self.spawn(node_id, command)) for node_id, command in commands]
        deadline = time.monotonic() + timeout_s
        answers: list[dict[str, Any]] = []
        failure: str | None = None
        for node_id, child in started:
            try:
                code, out, err = self.collect(child, deadline - time.monotonic())
            except BenchError as error:
                failure = failure or f"node {node_id}: {error}"
                continue
            if code != 0:
                failure = failure or f"node {node_id}: cpg_peer exited {code}: {err.strip()[-300:]}"
                continue
            try:
                answers.append(json.loads(out))
            except ValueError:
                failure = failure or f"node {node_id}: cpg_peer printed no JSON: {out[-200:]!r}"
        if failure is not None:
            raise BenchError(failure)
        return answers

    def members(self, node_id: int) -> int:
        """How many nodes node ``node_id`` sees joined (0: not answering yet)."""
        child = self.spawn(node_id, ["corosync-cmapctl", "runtime.members"])
        try:
            code, out, _err = self.collect(child, TOOL_TIMEOUT_S)
        except BenchError:
            return 0
        if code != 0:
            return 0
        return sum(1 for line in out.splitlines()
                   if re.match(r"runtime\.members\.\d+\.status \(str\) = joined\s*$", line))

    def wait_members(self, timeout_s: float = MEMBERS_TIMEOUT_S) -> float:
        """Wait until every node sees every node joined; returns the seconds taken."""
        start = time.monotonic()
        want = len(self.node_ids)
        pending = set(self.node_ids)
        while pending:
            self._check_daemons()
            if time.monotonic() - start > timeout_s:
                raise BenchError(f"nodes {sorted(pending)} did not see all {want} members "
                                 f"within {timeout_s:.0f} s")
            pending = {node_id for node_id in pending if self.members(node_id) < want}
            if pending:
                time.sleep(0.2)
        return time.monotonic() - start

    def log_tail(self, node_id: int, lines: int = 15) -> str:
        parts = []
        for name in ("stderr", "corosync.log"):
            try:
                text = (self.node_dir(node_id) / name).read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                parts.append(f"[{name}]\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no output)"

    def close(self) -> Leftovers:
        """Stop everything we started and remove what it left; idempotent."""
        for child in self.children:
            if child.poll() is None:
                _kill_group(child)
            _reap(child)
        self.children.clear()
        for daemon in self.daemons.values():
            if daemon.poll() is None:
                try:
                    os.killpg(daemon.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        killed: list[int] = []
        for daemon in self.daemons.values():
            try:
                daemon.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(daemon.pid)
                _kill_group(daemon)
                _reap(daemon)
        self.daemons.clear()
        in_namespaces = self.lan.destroy()
        return Leftovers(killed_in_namespaces=tuple(in_namespaces), daemons_killed=tuple(killed),
                         shm_removed=tuple(self._remove_shm()))

    def _remove_shm(self) -> list[str]:
        """Remove libqb's /dev/shm entries that name a pid of ours.

        libqb names them after the processes at both ends: a connection's
        directory ``qb-<server>-<client>-<fd>-<random>``, corosync's blackbox
        ``qb-corosync-<pid>-blackbox-*``. A clean stop removes them.
        """
        removed = []
        ours = {str(pid) for pid in self.pids}
        for name in sorted(_shm_entries() - self._shm_before):
            if not name.startswith("qb-") or not ours & set(name.split("-")):
                continue
            path = SHM_DIR / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(name)
        return removed


def corosync_pids(under: str | None = None) -> set[int]:
    """Every corosync process on the machine (by /proc/<pid>/comm), or only
    those whose command line names a path under ``under`` (one run's)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() != "corosync":
                    continue
                if under is not None and under not in Path(f"/proc/{entry}/cmdline").read_text(
                        errors="replace"):
                    continue
                found.add(int(entry))
            except OSError:  # gone meanwhile
                pass
    return found


def _shm_entries() -> set[str]:
    try:
        return set(os.listdir(SHM_DIR))
    except OSError:
        return set()


def _kill_group(child: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()


def _reap(child: subprocess.Popen[Any]) -> None:
    try:
        child.communicate(timeout=STOP_TIMEOUT_S)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass


# -- the measurement -------------------------------------------------------------------------

def _measure_size(cluster: CorosyncCluster, peer: Path, size: int, duration_s: float,
                  senders: int, samples: int, sparse_samples: int) -> Row:
    nodes = cluster.node_ids
    saturated = cluster.clients(
        [(node_id, [str(peer), "saturate", str(size), str(WARMUP_S), str(duration_s)])
         for node_id in nodes[:senders]], timeout_s=duration_s + 60.0)
    msgs = sum(r["delivered"] / r["seconds"] for r in saturated if r["seconds"] > 0)
    closed = cluster.clients([(nodes[0], [str(peer), "latency", str(size), str(samples), "0"])],
                             timeout_s=120.0 + samples * 0.05)[0]["values_us"]
    sparse: list[float] = []
    by_node: dict[str, float] = {}
    if sparse_samples:
        for node_id in nodes:
            values = cluster.clients(
                [(node_id, [str(peer), "latency", str(size), str(sparse_samples), str(SPARSE_GAP_MS)])],
                timeout_s=120.0 + sparse_samples * SPARSE_GAP_MS * 0.0025)[0]["values_us"]
            sparse += values
            by_node[str(node_id)] = _percentile(values, 0.50)
        sparse.sort()
    return Row(impl=IMPL, nodes=len(nodes), size=size, msgs_per_s=round(msgs, 1),
               mb_per_s=round(msgs * size / 1e6, 2), p50_us=_percentile(closed, 0.50),
               p99_us=_percentile(closed, 0.99), senders=len(saturated), load_1m=_load_1m(),
               sparse_p50_us=_percentile(sparse, 0.50) if sparse else None,
               sparse_p99_us=_percentile(sparse, 0.99) if sparse else None,
               sparse_p50_by_node=by_node or None, guest_halt_poll_ns=_guest_halt_poll_ns(),
               crypto="none", topology="lan")


def _print_table(rows: list[Row], notes: dict[str, str], out: Any) -> None:
    """bench totem's table, then how corosync ran."""
    print_rows(rows, out)
    print(f"corosync {notes['version']} on this machine, transport {notes['transport']}, "
          f"crypto none, token {TOKEN_MS} ms, scheduling {notes['sched']} (corosync's default); "
          "CPG clients: scripts/cpg_peer.c (the saturating ones SCHED_BATCH).", file=out)
    print("Measured as coro bench totem: msgs/s summed over the senders (a saturating client "
          "on each of the first 'senders' nodes); "
          "p50/p99 closed loop on node 1; sparse: every node in turn, one message every "
          f"~{SPARSE_GAP_MS:.0f} ms. A namespace per node, bridged ({LAN_NETWORK}). "
          "MB = 10^6 bytes of payload.", file=out)
    poll_ns = rows[0].guest_halt_poll_ns if rows else None
    if poll_ns is not None:
        print(f"This VM's guest halt polling ({HALT_POLL_PATH}): {poll_ns} ns", file=out)


# -- the command ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_measurement_arguments(parser)
    parser.add_argument("--transport", choices=("knet", "udpu"), default="knet",
                        help="corosync's totem.transport (default knet, corosync 3's default)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's directory")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")


def _raise_on_sigterm(signum: int, _frame: Any) -> None:
    # A terminated bench still tears down (the finally below).
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    name = "coro bench corosync"
    try:
        sizes = [int(part) for part in str(args.sizes).split(",") if part.strip()]
    except ValueError:
        print(f"{name}: --sizes wants numbers like 64,1024, got {args.sizes!r}", file=sys.stderr)
        return 2
    if (not sizes or any(not 1 <= size <= 1024 * 1024 for size in sizes) or args.duration <= 0
            or args.latency_samples < 1 or args.sparse_samples < 0):
        print(f"{name}: sizes (1 B..1 MiB), --duration and --latency-samples must be positive, "
              "--sparse-samples at least 0", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print(f"{name}: needs root (a network namespace per corosync node)", file=sys.stderr)
        return 2
    try:
        corosync = ensure_corosync()
    except BenchError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2

    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    base = Path(tempfile.mkdtemp(prefix="coro-bc-"))
    cluster: CorosyncCluster | None = None
    rows: list[Row] = []
    status = 1
    try:
        peer = build_peer(base)
        cluster = CorosyncCluster(base, args.nodes, args.transport)
        notes = {"version": corosync_version(corosync) or "?", "transport": args.transport}
        if not args.json:
            print(f"Starting corosync {notes['version']} on {args.nodes} node(s), "
                  f"transport {args.transport}, a namespace each ...", file=sys.stderr)
        cluster.start(corosync)
        cluster.wait_members()
        notes["sched"] = cluster.scheduling()
        others = corosync_pids() - {daemon.pid for daemon in cluster.daemons.values()}
        if others:
            # e.g. the package's service, started by the install: it shares the cores.
            print(f"{name}: note: other corosync processes run here: {sorted(others)}",
                  file=sys.stderr)
        for size in sizes:
            row = _measure_size(cluster, peer, size, args.duration,
                                args.nodes if args.senders == "all" else 1,
                                args.latency_samples, args.sparse_samples)
            rows.append(row)
            if args.json:
                print(json.dumps({**asdict(row), "transport": args.transport,
                                  "corosync_version": notes["version"],
                                  "corosync_sched": notes["sched"]}), flush=True)
        if not args.json:
            _print_table(rows, notes, sys.stdout)
        status = 0
    except (BenchError, NetnsError, OSError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        if cluster is not None:
            for node_id in cluster.node_ids:
                print(f"--- node {node_id} ---\n{cluster.log_tail(node_id)}", file=sys.stderr)
    finally:
        try:
            if cluster is not None:
                for note in cluster.close().notes():
                    print(f"{name}: {note}", file=sys.stderr)
            if args.keep:
                print(f"kept {base}", file=sys.stderr)
            else:
                shutil.rmtree(base, ignore_errors=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return status
