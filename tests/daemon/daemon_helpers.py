"""Run real coro nodes (``coro start``) on loopback for the daemon tests.

Each node is a supervisor process group (supervisor, objdb, totemd) started
in its own session, so a test can stop it cleanly (SIGTERM to the
supervisor) or crash the whole node at once (SIGKILL to the group). Every
wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from clients.totem import NotConnected, TotemClient
from totemd.evslog import append_crash

REPO = Path(__file__).resolve().parents[2]


def free_udp_port(addresses: list[str]) -> int:
    """A UDP port that every one of ``addresses`` can bind right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        sockets = []
        try:
            for address in addresses:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free UDP port found")


def write_config(path: Path, port: int, nodes: dict[int, str], token_ms: int = 500,
                 cluster_name: str = "dtest") -> Path:
    """A udpu corosync.conf for ``nodes`` (id -> address) with short timers."""
    entries = "".join(f"    node {{\n        ring0_addr: {address}\n        nodeid: {node_id}\n    }}\n"
                      for node_id, address in sorted(nodes.items()))
    path.write_text(f"""totem {{
    version: 2
    cluster_name: {cluster_name}
    transport: udpu
    token: {token_ms}
    token_coefficient: 0
    join: 50
    merge: 200
    interface {{
        linknumber: 0
        mcastport: {port}
    }}
}}
nodelist {{
{entries}}}
logging {{
    to_syslog: no
}}
""")
    return path


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (NotConnected, OSError) as error:
            last_error = error
            value = None
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


class Node:
    """One ``coro start`` of a test cluster."""

    def __init__(self, root: Path, config: Path, node_id: int, evs_dir: Path | None = None,
                 extra_args: tuple[str, ...] = (), cwd: Path = REPO,
                 launcher: tuple[str, ...] = (sys.executable, "-m", "clients.cli")) -> None:
        self.node_id = node_id
        self.cwd = cwd
        self.launcher = launcher
        self.config = config
        self.dir = root / f"n{node_id}"
        self.run_dir = self.dir / "run"
        self.state_dir = self.dir / "state"
        self.evs_dir = evs_dir
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "node.log"
        self._log_handle: Any = None

    def command(self) -> list[str]:
        command = [*self.launcher, "start", "-c", str(self.config),
                   "--node-id", str(self.node_id), "--run-dir", str(self.run_dir),
                   "--state-dir", str(self.state_dir), *self.extra_args]
        if self.evs_dir is not None:
            command += ["--evs-log", str(self.evs_dir)]
        return command

    def start(self) -> "Node":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), cwd=self.cwd, stdin=subprocess.DEVNULL,
                                        stdout=self._log_handle, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, subscribe: bool = True) -> TotemClient:
        return TotemClient.connect(run_dir=self.run_dir, subscribe=subscribe, timeout=2.0)

    def stats(self) -> dict[str, Any]:
        with self.client(subscribe=False) as client:
            return client.stats()

    def wait_members(self, members: list[int], timeout_s: float = 20.0) -> dict[str, Any]:
        """Wait until this node is OPERATIONAL in a ring of exactly ``members``."""
        def check() -> dict[str, Any] | None:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"node {self.node_id} exited ({self.process.returncode}):\n"
                                     + self.log_text()[-3000:])
            stats = self.stats()
            if stats["state"] == "OPERATIONAL" and stats["members"] == members:
                return stats
            return None
        return wait_for(check, timeout_s, f"node {self.node_id} in a ring of {members}")

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM to the supervisor; returns its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise AssertionError(f"node {self.node_id} did not stop in {timeout_s} s")
        self._close_log()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the whole node (supervisor, objdb, totemd) and log its crash."""
        assert self.process is not None
        incarnation = int((self.state_dir / "incarnation").read_text())
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        wait_for(lambda: not _group_alive(self.process.pid), 10.0, "the node's processes to die")
        if self.evs_dir is not None:
            append_crash(self.evs_dir, self.node_id, incarnation, time.monotonic_ns())
        self._close_log()

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies still count for killpg; they are gone for our purposes.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def remove_dead_sockets(run_dir: Path) -> None:
    """What an administrator does after a crash (the next start does it too)."""
    from totemd.cli_start import _remove_dead_sockets
    if run_dir.exists():
        _remove_dead_sockets(run_dir)


def run_in_multicast_namespace(script: str) -> Any:
    """Run ``python -c script`` (from the repository root) inside a private
    network namespace with multicast enabled on its loopback, and return the
    JSON it prints. Needs root and iproute2 (the callers skip otherwise)."""
    import json

    from scripts.netns import Namespace

    with Namespace() as namespace:
        namespace.enable_multicast()
        done = subprocess.run(namespace.argv([sys.executable, "-c", script]), capture_output=True,
                              text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
