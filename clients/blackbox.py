"""``coro blackbox``: a running node's flight data (corosync-blackbox).

Every process of a node (``coro start``'s supervisor, objdb, totemd) keeps
its last log lines at debug in memory while ``logging.blackbox`` is on (the
default; ``coroconf.logsetup``). This asks each of them (SIGUSR2) to write
them to ``<state_dir>/fdata-<process>-<pid>`` and prints the files, the
supervisor's first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["add_arguments", "run"]

WAIT_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="/etc/corosync/corosync.conf", metavar="FILE",
                        help="the node's corosync.conf (default: /etc/corosync/corosync.conf)")
    parser.add_argument("--node-id", type=int, metavar="N",
                        help="the node, when several share a machine (as for coro start)")
    parser.add_argument("--run-dir", metavar="DIR", help="the node's run directory (its pid file)")
    parser.add_argument("--state-dir", metavar="DIR", help="where the node writes flight data")


def _directories(args: argparse.Namespace) -> tuple[str, str]:
    if args.run_dir and args.state_dir:
        return args.run_dir, args.state_dir
    from totemd.settings import resolve_settings

    settings = resolve_settings(args.config, node_id=args.node_id, run_dir=args.run_dir,
                                state_dir=args.state_dir)
    return settings.run_dir, settings.state_dir


def _node_processes(run_dir: str) -> list[tuple[str, int]]:
    """(name, pid) of the running node's processes: supervisor, then its children."""
    import psutil

    from totemd.cli_start import PID_FILE

    try:
        supervisor = int(Path(run_dir, PID_FILE).read_text().strip())
        parent = psutil.Process(supervisor)
        children = parent.children()
    except (OSError, ValueError, psutil.Error):
        raise LookupError(f"no node runs with run directory {run_dir} (no live pid in "
                          f"{os.path.join(run_dir, PID_FILE)})") from None
    found = [("coro", supervisor)]
    for child in children:
        try:
            title = " ".join(child.cmdline())
        except psutil.Error:
            continue
        for name in ("objdb", "totemd"):
            if name in title:
                found.append((name, child.pid))
    return found


def run(args: argparse.Namespace) -> int:
    from coroconf.logsetup import flight_data_path

    try:
        run_dir, state_dir = _directories(args)
        processes = _node_processes(run_dir)
    except LookupError as error:
        print(f"coro blackbox: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # StartupError and friends: the reason is the message
        print(f"coro blackbox: {error}", file=sys.stderr)
        return 1
    asked = time.time()
    paths = {}
    for name, pid in processes:
        paths[(name, pid)] = path = flight_data_path(state_dir, name, pid)
        try:
            os.kill(pid, signal.SIGUSR2)
        except ProcessLookupError:
            paths.pop((name, pid))
    missing = dict(paths)
    deadline = time.monotonic() + WAIT_S
    while missing and time.monotonic() < deadline:
        for key, path in list(missing.items()):
            try:
                if os.stat(path).st_mtime >= asked - 1.0:
                    del missing[key]
            except FileNotFoundError:
                pass
        if missing:
            time.sleep(0.05)
    for (name, pid), path in paths.items():
        if (name, pid) in missing:
            continue
        print(f"=== {name} (pid {pid}): {path}")
        sys.stdout.write(Path(path).read_text(encoding="utf-8", errors="replace"))
    if missing:
        print("coro blackbox: no flight data within {:.0f} s from {}".format(
            WAIT_S, ", ".join(f"{name} (pid {pid})" for name, pid in missing)), file=sys.stderr)
        return 1
    return 0
