"""``coro start``: run one node in the foreground under a small supervisor.

::

    coro start -c corosync.conf [--node-id N] [--run-dir DIR] [--state-dir DIR] [--evs-log DIR]

The supervisor (process title ``coro: supervisor <cluster_name> node N``):

1. finds this node in the configuration (``--node-id`` picks the nodelist
   entry when several nodes share a machine);
2. takes the run directory's pid file ``coro.pid`` with an exclusive
   ``flock``: a second ``coro start`` on the same run directory is refused
   with the running pid; a pid file left by a killed node is not locked by
   anyone and is simply taken over (the kernel drops a dead process's lock);
3. starts objdb (``objdb.process.ObjdbProcess``, title ``coro: objdb``),
   then totemd (``python -m totemd.process``, title ``coro: totemd node N``)
   and waits for each to say it is serving;
4. watches both (pidfds) and its signals: on SIGTERM/SIGINT it stops totemd
   (which leaves the ring gracefully), then objdb, and exits 0; if a child
   dies unexpectedly it logs it, stops the other one and exits 1, so a node
   never runs half-alive;
5. on the way out removes the pid file and any socket file a killed child
   left behind, and sweeps shared segments of dead owners.

totemd is also told the supervisor's pid and asks the kernel to SIGTERM it
if the supervisor dies (PR_SET_PDEATHSIG), so killing the supervisor alone
does not leave a ring member behind.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from totemd.settings import NodeSettings, settings_for_process
from totemd.signal_wakeup import SignalWakeup

__all__ = ["add_arguments", "run", "Supervisor", "PID_FILE"]

PID_FILE = "coro.pid"
CHILD_READY_TIMEOUT_S = 20.0
CHILD_STOP_TIMEOUT_S = 10.0
log = logging.getLogger("coro.supervisor")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="/etc/corosync/corosync.conf", metavar="FILE",
                        help="corosync.conf (default: %(default)s)")
    parser.add_argument("-f", "--foreground", action="store_true",
                        help="stay in the foreground (the default; accepted for corosync's -f)")
    parser.add_argument("--node-id", type=int, metavar="N",
                        help="run as this nodelist entry (when nodes share a machine)")
    parser.add_argument("--run-dir", metavar="DIR", help="override system.run_dir (sockets, pid file)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="override system.state_dir (ring seq, incarnation)")
    parser.add_argument("--evs-log", metavar="DIR|FILE",
                        help="write the EVS event log (n<node>.<inc>.jsonl in DIR) for coro check-evs")
    parser.add_argument("--send-queue-bytes", type=int, metavar="BYTES",
                        help="bound of totemd's send queue (clients get TRY_AGAIN beyond it)")
    parser.add_argument("--send-queue-messages", type=int, metavar="N",
                        help="bound of totemd's send queue in messages "
                             "(default: what 4 token visits originate, 1088 with the defaults)")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log to stderr at this level, whatever the logging section says "
                             "(every process of the node)")


class PidFileBusy(Exception):
    """Another live node holds the run directory's pid file."""


class PidFile:
    """The run directory's pid file, held with an exclusive flock while we run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def acquire(self) -> int | None:
        """Take the file; returns the pid of a dead predecessor whose file we took over.

        Raises:
            PidFileBusy: a live process holds it (its pid is in the message).
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise PidFileBusy(f"a node already runs on {self.path.parent} (pid {holder}); "
                              f"stop it first (kill -TERM {holder})") from None
        previous = os.read(fd, 32).decode("ascii", "replace").strip()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        return int(previous) if previous.isdigit() else None

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = -1


def _remove_dead_sockets(run_dir: Path) -> list[str]:
    """Socket files in ``run_dir`` that nobody listens on any more."""
    removed = []
    for path in run_dir.glob("*.sock"):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            try:
                path.unlink()
                removed.append(path.name)
            except FileNotFoundError:
                pass
        except OSError:
            pass
        finally:
            probe.close()
    return removed


class Supervisor:
    """Starts and watches one node's processes (see the module docstring)."""

    def __init__(self, settings: NodeSettings, args: argparse.Namespace) -> None:
        self.settings = settings
        self.args = args
        self.run_dir = Path(settings.run_dir)
        self.pid_file = PidFile(self.run_dir / PID_FILE)
        self.objdb = None
        self.totemd: subprocess.Popen[bytes] | None = None
        self._stop = False
        self._wakeup: SignalWakeup | None = None

    def run(self) -> int:
        """Run the node until a signal or a child's death. Returns the exit status."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        Path(self.settings.state_dir).mkdir(parents=True, exist_ok=True)
        try:
            previous = self.pid_file.acquire()
        except PidFileBusy as error:
            print(f"coro start: {error}", file=sys.stderr)
            return 1
        if previous is not None and previous != os.getpid():
            log.warning("took over the pid file of pid %d, which is not running", previous)
        _set_title(f"coro: supervisor {self.settings.cluster_name} node {self.settings.node_id}")
        self._install_signals()
        status = 1
        try:
            status = self._start_children()
            if status == 0:
                status = self._watch()
        finally:
            self._stop_children()
            self._cleanup()
        return status

    def _install_signals(self) -> None:
        self._wakeup = SignalWakeup()
        self._wakeup.arm()

        def on_signal(signum: int, _frame: object) -> None:
            self._stop = True

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)

    def _start_children(self) -> int:
        from objdb.process import ObjdbProcess, ObjdbStartError

        settings = self.settings
        try:
            self.objdb = ObjdbProcess.start(run_dir=settings.run_dir,
                                            state_dir=settings.state_dir,
                                            config_path=settings.config_path,
                                            local_addresses=[settings.bind_address],
                                            ready_timeout=CHILD_READY_TIMEOUT_S)
        except ObjdbStartError as error:
            log.error("%s", error)
            return 1
        log.info("objdb serving (pid %d)", self.objdb.pid)
        if self._stop:
            return 0
        return self._start_totemd()

    def _start_totemd(self) -> int:
        settings, args = self.settings, self.args
        # -P: the working directory is not on sys.path, so a directory holding
        # packages named like ours cannot stand in for the installed code.
        command = [sys.executable, "-P", "-m", "totemd.process", "-c", os.fspath(settings.config_path),
                   "--node-id", str(settings.node_id), "--run-dir", settings.run_dir,
                   "--state-dir", settings.state_dir, "--parent-pid", str(os.getpid())]
        if args.log_level:
            command += ["--log-level", args.log_level]
        if settings.evs_log:
            command += ["--evs-log", settings.evs_log]
        if args.send_queue_bytes:
            command += ["--send-queue-bytes", str(args.send_queue_bytes)]
        if getattr(args, "send_queue_messages", None):
            command += ["--send-queue-messages", str(args.send_queue_messages)]
        read_end, write_end = os.pipe()
        try:
            self.totemd = subprocess.Popen(command + ["--ready-fd", str(write_end)],
                                           pass_fds=(write_end,), stdin=subprocess.DEVNULL)
        finally:
            os.close(write_end)
        try:
            line = _read_line(read_end, CHILD_READY_TIMEOUT_S, self._wakeup_fd(), lambda: self._stop)
        finally:
            os.close(read_end)
        if self._stop and not line.startswith(b"ready"):
            return 0  # asked to stop while totemd was starting: stopped below, not a failure
        if not line.startswith(b"ready"):
            code = self.totemd.poll()
            log.error("totemd did not start (%s)", f"exit status {code}" if code is not None
                      else f"not ready in {CHILD_READY_TIMEOUT_S:.0f} s")
            return 1
        log.info("totemd serving (pid %d); node %d of cluster %s is up", self.totemd.pid,
                 settings.node_id, settings.cluster_name)
        return 0

    def _watch(self) -> int:
        assert self.totemd is not None and self.objdb is not None and self._wakeup is not None
        pidfds = {os.pidfd_open(self.totemd.pid): "totemd", os.pidfd_open(self.objdb.pid): "objdb"}
        try:
            while not self._stop:
                select.select([self._wakeup.read_end, *pidfds], [], [], 1.0)
                self._wakeup.drain()
                if self._stop:
                    break  # a terminal's ^C also reached the children: not a failure
                if self.totemd.poll() is not None:
                    log.error("totemd (pid %d) exited unexpectedly with status %s; stopping the node",
                              self.totemd.pid, self.totemd.returncode)
                    return 1
                if not self.objdb.is_running():
                    log.error("objdb (pid %d) exited unexpectedly; stopping the node: %s",
                              self.objdb.pid, self.objdb.stderr_text().strip()[-500:])
                    return 1
            log.info("stopping node %d", self.settings.node_id)
            return 0
        finally:
            for fd in pidfds:
                os.close(fd)

    def _wakeup_fd(self) -> int | None:
        return self._wakeup.fileno() if self._wakeup is not None else None

    def _stop_children(self) -> None:
        """totemd first (it leaves the ring, then stops publishing), then objdb."""
        if self.totemd is not None and self.totemd.poll() is None:
            self.totemd.send_signal(signal.SIGTERM)
            try:
                self.totemd.wait(CHILD_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("totemd did not stop in %.0f s; killing it", CHILD_STOP_TIMEOUT_S)
                self.totemd.kill()
                self.totemd.wait()
        if self.objdb is not None:
            self.objdb.close()

    def _cleanup(self) -> None:
        removed = _remove_dead_sockets(self.run_dir)
        if removed:
            log.warning("removed socket files left by a dead process: %s", ", ".join(removed))
        try:
            from coroipc import _shm
            _shm.sweep_dead(tag=_shm.resource_tag())
        except (ImportError, OSError):
            pass
        self.pid_file.release()
        if self._wakeup is not None:
            self._wakeup.close()
            self._wakeup = None


def _read_line(fd: int, timeout: float, wakeup_fd: int | None = None,
               stopping: Callable[[], bool] = lambda: False) -> bytes:
    """A child's readiness line; gives up at the deadline or when ``stopping()``."""
    deadline = time.monotonic() + timeout
    data = b""
    watched = [fd] if wakeup_fd is None else [fd, wakeup_fd]
    while b"\n" not in data and not stopping():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _w, _x = select.select(watched, [], [], remaining)
        if fd not in readable:
            continue
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data


def _set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a declared dependency
        return
    setproctitle.setproctitle(title)


def run(args: argparse.Namespace) -> int:
    """``coro start``: returns 0 after a clean stop, 1 on a start-up error or a child's death."""
    settings = settings_for_process(args, "coro")
    if settings is None:
        return 1
    return Supervisor(settings, args).run()
