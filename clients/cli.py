"""The one command-line entry point, ``coro``.

Each capability owns its subcommand in its own module; this file only knows
where they live. A subcommand module provides::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...          # exit status

Modules are imported lazily, so ``coro --help`` stays fast and a broken
optional dependency of one tool cannot take the others down. A module that is
not present in this tree is left out of the listing rather than shown as a
command that fails.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

# name -> (module, one-line help). Order is the order of `coro --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "start": ("totemd.cli_start", "start a node (totemd, objdb, service engine) from corosync.conf"),
    "demo": ("clients.demo", "run the local demonstration (cluster story, or IPC demo)"),
    "config": ("coroconf.cli", "check a corosync.conf file (like corosync -t)"),
    "blackbox": ("clients.blackbox", "print a running node's flight data (corosync-blackbox)"),
    "keygen": ("clients.keygen", "write the cluster's shared key for totem.crypto_* (corosync-keygen)"),
    "cmap": ("clients.cmapctl", "read, change and track keys in the object database"),
    "cfgtool": ("clients.cfgtool", "link and node status, clean stop (corosync-cfgtool)"),
    "load": ("clients.load", "submit ordered messages through a running node"),
    "sim": ("totemd.sim.cli", "run the deterministic Totem cluster simulator over many seeds"),
    "check-evs": ("totemd.evs.cli", "check per-node event logs against the EVS rules"),
    "bench": ("clients.bench", "benchmarks: ipc, core, totem, cmap"),
}


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package that fails to import: listed as unavailable below
        return True


def _version() -> str:
    try:
        from importlib.metadata import version

        number = version("coro")
    except Exception:  # not installed (run from a source tree)
        number = "unknown"
    return f"coro cluster engine, version {number} (Totem SRP over udpu/udp, corosync.conf 3)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coro",
        description="Cluster engine in the Corosync family: Totem SRP, coroipc, objdb and tools.",
    )
    parser.add_argument("-v", "--version", action="version", version=_version(),
                        help="print the version and exit (corosync -v)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if not _available(module):
            continue
        try:
            add_arguments = importlib.import_module(module).add_arguments
        except Exception as exc:  # one broken tool must not take the others down
            broken = f"{type(exc).__name__}: {exc}"
            command_parser = sub.add_parser(name, help=f"(unavailable: {broken})", add_help=False)
            command_parser.set_defaults(_module=module, _broken=broken)
            command_parser.add_argument("_ignored", nargs=argparse.REMAINDER)
            continue
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module)
        add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    broken = getattr(args, "_broken", None)
    if broken:
        print(f"coro {args.command}: this tool cannot load ({broken})", file=sys.stderr)
        return 1
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `coro cmap dump | head`: the reader went away; that is not our error.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
