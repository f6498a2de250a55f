"""The objdb process: the store, loaded from the configuration, served over coroipc.

``python -m objdb -c corosync.conf [--run-dir DIR]`` runs it in the
foreground with the process title ``coro: objdb``. It:

1. loads the configuration as cmap items (``objdb.config``) into a fresh
   :class:`~objdb.store.Store`, with privilege (read-only keys included);
2. serves the ``cmap`` service (:class:`~objdb.service.CmapService`) on a
   coroipc server in the run directory;
3. lets connect only root, its own uid and the uids/gids of the
   configuration's ``uidgid`` entries (:func:`allowed_peers`);
4. when ready, writes ``ready <pid>\\n`` to ``--ready-fd`` if given (the
   supervisor waits for that line rather than polling for a socket);
5. publishes its own counters as ``stats.objdb.*`` (u64, read-only for
   clients: requests, refused, bad_requests, dropped_slow, dropped_garbage,
   events_sent, keys, trackers, ...), refreshed every second;
6. keeps a read-only shared-memory mirror of the store
   (``objdb.shm_table``) that clients of its uid map to answer gets without
   a round trip (if shared memory cannot be had, it serves without one);
7. stops on SIGTERM or SIGINT, or when its supervisor (``--parent-pid``)
   is gone: closes the server (socket file and every shared segment
   and the table removed) and exits 0. Watching the parent means a supervisor killed with
   SIGKILL does not leave an orphan objdb holding the run directory.

A start-up failure (bad configuration, no run directory, a second objdb on
the same run directory) exits 1 with one line on stderr saying what to fix.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Sequence

from coroconf.logsetup import apply as apply_logging
from objdb.config import ConfigUnavailable, load_config
from objdb.errors import CmapError
from objdb.service import CmapService
from objdb.shm_table import ShmTableWriter, TableUnavailable
from objdb.store import Store

PROCESS_TITLE = "coro: objdb"
#: How often the daemon refreshes its ``stats.objdb.*`` keys.
STATS_INTERVAL_S = 1.0
RING_BYTES = 256 * 1024
LOG = logging.getLogger("objdb")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m objdb",
                                     description="the coro object database (cmap service)")
    parser.add_argument("-c", "--config", metavar="FILE", help="corosync.conf to load")
    parser.add_argument("--state-dir", help="where the flight data goes when asked (SIGUSR2; "
                                            "default: system.state_dir of the configuration)")
    parser.add_argument("--run-dir", help="run directory for the coroipc socket "
                                          "(default: system.run_dir of the configuration)")
    parser.add_argument("--local-address", action="append", default=None, metavar="ADDR",
                        help="an address of this node in the nodelist (repeatable; "
                             "default: this host's addresses)")
    parser.add_argument("--ready-fd", type=int, default=None,
                        help="write 'ready PID' to this descriptor once serving")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this process (the supervisor) is gone")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log to stderr at this level whatever the logging section says "
                             "(default: the section; WARNING without a file)")
    return parser


def _set_title() -> None:
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a declared dependency
        return
    setproctitle.setproctitle(PROCESS_TITLE)


def _signal_ready(ready_fd: int | None) -> None:
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, f"ready {os.getpid()}\n".encode())
    finally:
        os.close(ready_fd)


def allowed_peers(store: Store) -> tuple[set[int], set[int]]:
    """Who may connect: root, our own uid, and the uids and gids the
    configuration lists (``uidgid { uid: N gid: M }`` and uidgid.d files,
    i.e. ``uidgid.config.uid.N`` / ``uidgid.config.gid.M``, and the runtime
    ``uidgid.uid.N`` / ``uidgid.gid.M`` keys present at start), as corosync's
    IPC access list. A peer passes if its uid or its gid is listed.
    """
    uids, gids = {0, os.geteuid()}, set()
    for key in store.keys("uidgid."):
        parts = key.split(".")
        if len(parts) >= 3 and parts[-1].isdigit() and parts[-2] in ("uid", "gid"):
            (uids if parts[-2] == "uid" else gids).add(int(parts[-1]))
    return uids, gids


class _Stopping:
    """Whether to stop: a signal arrived, or the parent left."""

    def __init__(self, event: threading.Event, parent_pid: int | None) -> None:
        self._event = event
        self._parent_pid = parent_pid

    def is_set(self) -> bool:
        if self._event.is_set():
            return True
        if self._parent_pid is not None and os.getppid() != self._parent_pid:
            LOG.warning("the supervisor (pid %d) is gone; stopping", self._parent_pid)
            self._event.set()
            return True
        return False


def _serve_loop(server: Any, service: CmapService, stopping: _Stopping) -> None:
    """coroipc turns until told to stop; the stats keys refreshed every second."""
    service.publish(service.stats_items(server.stats()))
    next_stats = time.monotonic() + STATS_INTERVAL_S
    while not stopping.is_set():
        server.process(timeout=0.1)
        now = time.monotonic()
        if now >= next_stats:
            service.publish(service.stats_items(server.stats()))
            next_stats = now + STATS_INTERVAL_S


def serve(store: Store, run_dir: str, stop: threading.Event, *,
          ready_fd: int | None = None, parent_pid: int | None = None) -> int:
    """Serve ``store`` as the cmap service in ``run_dir`` until ``stop`` is set.

    Returns:
        The exit status (0).
    """
    from coroipc import IpcServer

    try:
        mirror: ShmTableWriter | None = ShmTableWriter()
    except TableUnavailable as error:
        LOG.warning("serving without a shared-memory table: %s", error)
        mirror = None
    try:
        service = CmapService(store, mirror=mirror)
        uids, gids = allowed_peers(store)
        # 256 KiB rings: 768 KiB of shared memory per client, messages up to
        # ~128 KiB (codec.BATCH_BYTES_BUDGET keeps batches well inside that).
        server = IpcServer(run_dir, [service], ring_size=RING_BYTES, allowed_uids=uids,
                           allowed_gids=gids)
        try:
            server.start()
            service.publish(service.stats_items(server.stats()))
            _signal_ready(ready_fd)
            _serve_loop(server, service, _Stopping(stop, parent_pid))
        finally:
            server.close()
    finally:
        if mirror is not None:
            mirror.close()
    stats = service.stats()
    LOG.info("objdb stopping: %s", stats)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m objdb``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level or "WARNING",
                        format="objdb[%(process)d] %(levelname)s %(message)s")
    _set_title()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    store = Store()
    config_run_dir = None
    try:
        if args.config:
            loaded = load_config(args.config, args.local_address)
            store.load(loaded.items)
            config_run_dir = loaded.run_dir
            apply_logging(loaded.logging, "objdb", args.log_level,
                          args.state_dir or loaded.state_dir)
    except (ConfigUnavailable, CmapError) as error:
        print(f"objdb: cannot load the configuration: {error}", file=sys.stderr)
        return 1
    run_dir = args.run_dir or config_run_dir
    if not run_dir:
        print("objdb: no run directory: pass --run-dir or set system.run_dir in the "
              "configuration", file=sys.stderr)
        return 1
    try:
        os.makedirs(run_dir, mode=0o755, exist_ok=True)
        return serve(store, run_dir, stop, ready_fd=args.ready_fd, parent_pid=args.parent_pid)
    except Exception as error:
        # Start-up failures (another objdb on this run directory, permissions)
        # are the operator's to fix: one line, no traceback.
        if type(error).__module__.startswith("coroipc") or isinstance(error, OSError):
            print(f"objdb: cannot serve in {run_dir}: {error}", file=sys.stderr)
            return 1
        raise
