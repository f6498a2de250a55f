"""The totemd process: ``python -P -m totemd.process -c corosync.conf``
(normally started by ``coro start``'s supervisor, see ``totemd.cli_start``).

Arguments, settings, the process title, signals and scheduling around one
``totemd.daemon.Daemon`` run in the foreground until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from typing import Sequence

from coroconf import logsetup
from totemd.daemon import Daemon
from totemd.scheduling import apply_scheduling
from totemd.settings import StartupError, settings_for_process

__all__ = ["build_parser", "main", "PROCESS_TITLE", "PROFILE_ENV"]

PROCESS_TITLE = "coro: totemd node {node_id}"


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us when the supervisor dies (prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m totemd.process",
                                     description="the Totem daemon of one coro node")
    parser.add_argument("-c", "--config", required=True, metavar="FILE", help="corosync.conf")
    parser.add_argument("--node-id", type=int, help="the nodelist entry to run as")
    parser.add_argument("--run-dir", help="override system.run_dir (sockets)")
    parser.add_argument("--state-dir", help="override system.state_dir (ring seq, incarnation)")
    parser.add_argument("--evs-log", metavar="DIR|FILE", help="write the EVS event log")
    parser.add_argument("--send-queue-bytes", type=int, help="bound of the send queue")
    parser.add_argument("--send-queue-messages", type=int,
                        help="bound of the send queue in messages (default: 4 token visits' worth)")
    parser.add_argument("--ready-fd", type=int, help="write 'ready PID' here once serving")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    parser.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log to stderr at this level whatever the logging section says")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run totemd in the foreground until SIGTERM/SIGINT. Returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.parent_pid:
        _die_with_parent()
    settings = settings_for_process(args, "totemd")
    if settings is None:
        return 1
    if args.parent_pid:
        settings.extra["parent_pid"] = args.parent_pid
    if args.send_queue_messages is not None:
        if args.send_queue_messages < 1:
            print("totemd: --send-queue-messages must be at least 1", file=sys.stderr)
            return 1
        settings.extra["send_queue_messages"] = args.send_queue_messages
    try:
        import setproctitle
        setproctitle.setproctitle(PROCESS_TITLE.format(node_id=settings.node_id))
    except ImportError:  # pragma: no cover - a declared dependency
        pass
    daemon = Daemon(settings)
    try:
        try:
            daemon.open()
        except StartupError as error:
            print(f"totemd: {error}", file=sys.stderr)
            return 1
        daemon.install_signal_handlers()
        apply_scheduling(settings.sched_rr, settings.priority)
        if args.ready_fd is not None:
            try:
                os.write(args.ready_fd, f"ready {os.getpid()}\n".encode())
            finally:
                os.close(args.ready_fd)
        _run_profiled(daemon) if os.environ.get(PROFILE_ENV) else daemon.run()
    except Exception:
        # A fatal error: the traceback, then the flight data (as corosync
        # dumps its blackbox when it dies), then the supervisor stops the node.
        logging.getLogger("totemd").exception("totemd failed")
        _dump_flight_data(settings.state_dir)
        raise
    finally:
        daemon.close()
    return 0


def _dump_flight_data(state_dir: str) -> None:
    recorder = logsetup.recorder()
    if recorder is None:
        return
    path = logsetup.flight_data_path(state_dir, "totemd", os.getpid())
    try:
        recorder.dump(path)
        print(f"totemd: flight data written to {path}", file=sys.stderr)
    except OSError as error:
        print(f"totemd: flight data not written to {path}: {error.strerror}", file=sys.stderr)


#: A tuning aid: when set to a directory, totemd runs under cProfile and
#: writes ``totemd-<node>.prof`` there when it stops.
PROFILE_ENV = "CORO_TOTEMD_PROFILE_DIR"


def _run_profiled(daemon: Daemon) -> None:
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        daemon.run()
    finally:
        profiler.disable()
        profiler.dump_stats(os.path.join(os.environ[PROFILE_ENV], f"totemd-{daemon.node_id}.prof"))


if __name__ == "__main__":
    sys.exit(main())
