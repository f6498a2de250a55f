"""``coro config``: check a corosync.conf (like ``corosync -t``) or show it.

    coro config check FILE [--strict]     exit 0 valid, 1 invalid (message on stderr)
    coro config show FILE [--json] [--cmap]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys

from . import load, runtime_config_items, to_cmap_items, totem_params
from .errors import ConfigError
from .model import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``check`` and ``show`` actions."""
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION")
    check = actions.add_parser("check", help="validate FILE; exit 0 if valid, 1 if not",
                               description="Validate a corosync.conf the way corosync -t "
                                           "does. Errors and warnings go to stderr.")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--strict", action="store_true",
                       help="treat warnings (options accepted but not honoured) as errors")
    show = actions.add_parser("show", help="print the effective values, defaults included",
                              description="Print every effective setting of FILE, with "
                                          "defaults and derived values.")
    show.add_argument("file", metavar="FILE")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.add_argument("--cmap", action="store_true",
                      help="print the cmap keys instead: the file's, then runtime.config")


def _summary(config: Config) -> str:
    totem = config.totem
    running = (f" (runs as {totem.network_transport})"
               if totem.network_transport != totem.transport else "")
    count = len(config.nodelist)
    return (f"{config.filename}: valid; transport {totem.transport}{running}, "
            f"{count} node{'' if count == 1 else 's'}, token {totem.token_ms} ms, "
            f"consensus {totem.consensus_ms} ms")


def _core_refusal(config: Config) -> str | None:
    """The Totem core's objection to the timers, if the core is installed."""
    try:
        srp = importlib.import_module("totemd.srp")
    except ImportError:
        return None
    try:
        totem_params(config)
    except srp.ParamsError as error:
        return str(error)
    return None


def _check(args: argparse.Namespace) -> int:
    try:
        config = load(args.file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    refusal = _core_refusal(config)
    if refusal is not None:
        print(f"error: {args.file}: the Totem core refuses these totem values: {refusal}",
              file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.strict and config.warnings:
        print(f"error: {args.file}: {len(config.warnings)} warning(s) and --strict",
              file=sys.stderr)
        return 1
    print(_summary(config))
    return 0


def _as_dict(config: Config) -> dict[str, object]:
    data = dataclasses.asdict(config)
    data.pop("source_items")
    data["warnings"] = list(config.warnings)
    return data


def _flat_lines(prefix: str, value: object, out: list[str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat_lines(f"{prefix}.{key}" if prefix else key, inner, out)
    elif isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
        for index, inner in enumerate(value):
            _flat_lines(f"{prefix}.{index}", inner, out)
    else:
        out.append(f"{prefix} = {json.dumps(value)}")


def _show(args: argparse.Namespace) -> int:
    try:
        config = load(args.file)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.cmap:
        items = to_cmap_items(config) + runtime_config_items(config)
        if args.json:
            for key, kind, value in items:
                print(json.dumps({"key": key, "type": kind, "value": value}))
        else:
            for key, kind, value in items:
                print(f"{key} ({kind}) = {value}")
        return 0
    data = _as_dict(config)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    data.pop("warnings")
    lines: list[str] = []
    _flat_lines("", data, lines)
    print("\n".join(lines))
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``coro config ACTION``; returns the exit status."""
    if args.config_action == "check":
        return _check(args)
    if args.config_action == "show":
        return _show(args)
    print("usage: coro config {check,show} FILE (see coro config --help)", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """``python -m coroconf ACTION FILE``: the same as ``coro config``."""
    parser = argparse.ArgumentParser(prog="coro config",
                                     description="check or show a corosync.conf")
    add_arguments(parser)
    return run(parser.parse_args(argv))
