"""``coro cmap``: read, change and track keys in the node's object database.

Two ways to call it.

Verbs (this tool's own form)::

    coro cmap get KEY [--json] [-q]
    coro cmap set KEY TYPE VALUE [--force-type]   # TYPE: i8 u8 ... u64 flt dbl str bin
    coro cmap delete KEY
    coro cmap inc KEY | dec KEY
    coro cmap dump [PREFIX] [--json] [-b]
    coro cmap track [--prefix] KEY [--count N] [--timeout SECONDS] [--json]

corosync-cmapctl's flags and output (compatibility mode)::

    coro cmap                      # dump everything: "key (type) = value"
    coro cmap PREFIX...            # dump keys under each prefix
    coro cmap -g KEY...  [-q]      # get
    coro cmap -s KEY TYPE VALUE    # set (for bin, VALUE is a file name or - for stdin)
    coro cmap -d KEY...            # delete
    coro cmap -D PREFIX...         # delete every key under a prefix
    coro cmap -t KEY... | -T PREFIX...   # track; "q" on stdin (or EOF) ends it
    coro cmap -p FILE              # load "key type value" lines (^key deletes, ^^prefix too)
    coro cmap -m stats|icmap       # dump the stats.* keys alone, or the rest
    coro cmap -C TARGET            # clear statistics: totem, knet (links), ipc, schedmiss, all

A dump prefix that is also a verb name ("get", "dump", ...) needs the verb
form: ``coro cmap dump get``. ``bin`` values are hex in the verb form
(``coro cmap set a.b bin 00ff``) and are printed like corosync-cmapctl -b
(``\\xNN`` escapes) in text, hex in JSON.

The node is found through ``--run-dir DIR``, else env ``CORO_RUN_DIR``, else
``system.run_dir`` of the configuration given with ``-c FILE``, else of
/etc/corosync/corosync.conf if it exists, else /run/corosync (the default).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from typing import Callable, TextIO

from clients.cmap import CmapClient, Notification
from objdb.clearing import CLEAR_KEYS
from objdb.errors import (ConnectionLost, InvalidKey, InvalidValue, LimitReached, NoSuchKey,
                          NotConnected, ObjdbError, ReadOnly, TooLong, WrongType)
from objdb.store import TrackFlags
from objdb.types import Value, ValueType, format_value, json_value, parse_value

VERBS = ("get", "set", "delete", "inc", "dec", "dump", "track")

#: Our errors as corosync's cs_strerror names, for the compatibility mode.
_CS_ERROR_NAMES: dict[type, str] = {
    NoSuchKey: "CS_ERR_NOT_EXIST", ReadOnly: "CS_ERR_ACCESS", InvalidKey: "CS_ERR_NAME_TOO_LONG",
    TooLong: "CS_ERR_INVALID_PARAM", WrongType: "CS_ERR_INVALID_PARAM",
    InvalidValue: "CS_ERR_INVALID_PARAM", LimitReached: "CS_ERR_NO_RESOURCES",
    NotConnected: "CS_ERR_LIBRARY", ConnectionLost: "CS_ERR_LIBRARY",
}
_EVENT_WORDS = {TrackFlags.ADD: "create", TrackFlags.DELETE: "delete", TrackFlags.MODIFY: "modify"}


DEFAULT_CONFIG = "/etc/corosync/corosync.conf"


class UsageError(Exception):
    """The command line does not make sense; the message says why."""


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--run-dir", default=default, help="the node's run directory")
    parser.add_argument("-c", "--config", default=default, metavar="FILE",
                        help="corosync.conf whose system.run_dir names the node")
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="one JSON object per line")
    parser.add_argument("-b", "--binary", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="show binary values")
    parser.add_argument("-q", "--quiet", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="get: print the value only")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``coro cmap`` (see the module docstring)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]
    _add_common(parser, suppress=False)
    modes = parser.add_mutually_exclusive_group()
    for flag, help_text in (("-g", "get keys"), ("-s", "set KEY TYPE VALUE"),
                            ("-d", "delete keys"), ("-D", "delete keys by prefix"),
                            ("-t", "track keys"), ("-T", "track prefixes")):
        modes.add_argument(flag, dest="compat_action", action="store_const", const=flag,
                           help=f"(corosync-cmapctl) {help_text}")
    modes.add_argument("-p", dest="load_file", metavar="FILE",
                       help="(corosync-cmapctl) load settings from FILE")
    modes.add_argument("-C", dest="clear", choices=tuple(CLEAR_KEYS), metavar="TARGET",
                       help="(corosync-cmapctl) clear statistics: totem (stats.srp, "
                            "stats.totemd), knet (the links: stats.transport), ipc (local "
                            "clients), schedmiss (loop stalls) or all; levels such as queue "
                            "lengths stay; the processes apply it within a second")
    parser.add_argument("-m", dest="map", choices=("icmap", "stats"), default=None,
                        help="(corosync-cmapctl) dump one map: stats (the stats.* keys) or "
                             "icmap (the rest); without it, both")
    parser.add_argument("words", nargs=argparse.REMAINDER,
                        help="a verb and its arguments, or keys/prefixes for the flags")


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"coro cmap {verb}")
    _add_common(parser, suppress=True)
    if verb in ("get", "delete", "inc", "dec"):
        parser.add_argument("key")
    elif verb == "set":
        parser.add_argument("key")
        parser.add_argument("type", metavar="TYPE", help="i8 u8 i16 u16 i32 u32 i64 u64 flt dbl str bin")
        parser.add_argument("value", metavar="VALUE")
        parser.add_argument("--force-type", action="store_true",
                            help="allow changing the type of an existing key")
    elif verb == "dump":
        parser.add_argument("prefix", nargs="?", default="")
    elif verb == "track":
        parser.add_argument("key")
        parser.add_argument("--prefix", action="store_true", help="KEY is a prefix")
        parser.add_argument("--count", type=int, default=None,
                            help="stop after this many changes")
        parser.add_argument("--timeout", type=float, default=None,
                            help="stop after this many seconds")
    return parser


# -- finding the node ----------------------------------------------------------

def resolve_run_dir(args: argparse.Namespace) -> str:
    """--run-dir, else env CORO_RUN_DIR, else system.run_dir of -c FILE, else
    that of /etc/corosync/corosync.conf if it exists, else the default run
    directory (/run/corosync): the node a corosync tool talks to by default.

    Raises:
        UsageError: the file given with -c (or the default one) cannot be read.
    """
    if getattr(args, "run_dir", None):
        return str(args.run_dir)
    if os.environ.get("CORO_RUN_DIR"):
        return os.environ["CORO_RUN_DIR"]
    config = getattr(args, "config", None)
    if not config and os.path.exists(DEFAULT_CONFIG):
        config = DEFAULT_CONFIG
    if config:
        from objdb.config import ConfigUnavailable, run_dir_from_config

        try:
            return run_dir_from_config(config)
        except ConfigUnavailable as error:
            raise UsageError(f"cannot find the node from {config}: {error}") from None
    from coroconf.defaults import RUN_DIR

    return RUN_DIR


# -- output --------------------------------------------------------------------

def key_line(key: str, value_type: ValueType, value: Value, *, show_binary: bool,
             quiet: bool = False) -> str:
    """One key as corosync-cmapctl prints it: ``key (type) = value``."""
    if value_type is ValueType.BINARY:
        # corosync-cmapctl prints a binary's value only with -b, even with -q.
        shown = f"{key} (bin)"
        return shown + (f" = {format_value(value_type, value)}" if show_binary else "")
    if quiet:
        return format_value(value_type, value)
    return f"{key} ({value_type.short_name}) = {format_value(value_type, value)}"


def key_json(key: str, value_type: ValueType, value: Value) -> dict[str, object]:
    return {"key": key, "type": value_type.short_name, "value": json_value(value_type, value)}


def _print(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def notification_line(note: Notification, *, as_json: bool, show_binary: bool,
                      compat: bool) -> str:
    """A change as `coro cmap track` prints it (compat: exactly corosync-cmapctl's)."""
    word = _EVENT_WORDS[note.event]
    shown = note.old if note.event is TrackFlags.DELETE else note.new
    assert shown is not None
    if as_json:
        record: dict[str, object] = {"event": word, **key_json(note.key, shown.value_type, shown.value)}
        if note.event is TrackFlags.MODIFY and note.old is not None:
            record["old_type"] = note.old.value_type.short_name
            record["old_value"] = json_value(note.old.value_type, note.old.value)
        return json.dumps(record)
    line = f"{word}> " + key_line(note.key, shown.value_type, shown.value,
                                  show_binary=show_binary or not compat)
    if not compat and note.event is TrackFlags.MODIFY and note.old is not None:
        line += f" (was {format_value(note.old.value_type, note.old.value)})"
    return line


# -- the actions ---------------------------------------------------------------

def _in_map(key: str, chosen: str | None) -> bool:
    """corosync keeps statistics in a map of their own (``-m stats``); here
    they are the ``stats.`` keys of the one map."""
    return chosen is None or (chosen == "stats") == key.startswith("stats.")


def _dump(cmap: CmapClient, prefix: str, args: argparse.Namespace, out: TextIO) -> int:
    count = 0
    chosen = getattr(args, "map", None)
    for key, value, value_type in cmap.iter(prefix):
        if not _in_map(key, chosen):
            continue
        count += 1
        if args.json:
            _print(out, json.dumps(key_json(key, value_type, value)))
        else:
            _print(out, key_line(key, value_type, value, show_binary=args.binary))
    return count


def _get(cmap: CmapClient, key: str, args: argparse.Namespace, out: TextIO) -> None:
    value, value_type = cmap.get(key)
    if args.json:
        _print(out, json.dumps(key_json(key, value_type, value)))
    else:
        _print(out, key_line(key, value_type, value, show_binary=args.binary, quiet=args.quiet))


def _track(cmap: CmapClient, keys: list[str], *, prefix: bool, args: argparse.Namespace,
           out: TextIO, count: int | None, timeout: float | None, watch_stdin: bool) -> int:
    seen = 0

    def on_change(note: Notification) -> None:
        nonlocal seen
        seen += 1
        _print(out, notification_line(note, as_json=args.json, show_binary=args.binary,
                                      compat=watch_stdin))

    flags = TrackFlags.all_changes() | (TrackFlags.PREFIX if prefix else TrackFlags(0))
    for key in keys:
        cmap.track_add(key, flags, on_change)
    if watch_stdin:
        _print(out, 'Type "q" to finish')
    else:
        # On stderr, so stdout stays pure data; scripts can wait for this line.
        print(f"coro cmap: tracking {' '.join(keys)}", file=sys.stderr, flush=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()   # not select(): descriptor numbers may pass 1024
    poller.register(cmap.fileno(), select.POLLIN)
    if watch_stdin:
        poller.register(sys.stdin.fileno(), select.POLLIN)
    while count is None or seen < count:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            break
        ready = {fd for fd, _events in poller.poll(1000 if wait is None else min(wait, 1.0) * 1000)}
        if watch_stdin and sys.stdin.fileno() in ready:
            line = sys.stdin.readline()
            if not line or line.startswith("q"):
                break
        remaining = None if count is None else count - seen
        cmap.dispatch(max_count=remaining, timeout=0.0)
    return seen


def _set_from_words(cmap: CmapClient, key: str, type_name: str, text: str, *,
                    force_type: bool, compat: bool) -> None:
    value_type = ValueType.from_name(type_name)
    value: Value
    if value_type is ValueType.BINARY:
        if compat:
            value = sys.stdin.buffer.read() if text == "-" else _read_file(text)
        else:
            try:
                value = bytes.fromhex(text)
            except ValueError:
                raise InvalidValue(f"{text!r} is not hex; bin values are given as hex") from None
    else:
        value = parse_value(value_type, text)
    cmap.set(key, value, value_type, force_type=force_type)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise InvalidValue(f"cannot read {path}: {error.strerror}") from None


def _run_verb(cmap: CmapClient, verb: str, args: argparse.Namespace, out: TextIO) -> int:
    if verb == "get":
        _get(cmap, args.key, args, out)
    elif verb == "set":
        _set_from_words(cmap, args.key, args.type, args.value, force_type=args.force_type,
                        compat=False)
    elif verb == "delete":
        cmap.delete(args.key)
    elif verb in ("inc", "dec"):
        value = cmap.adjust(args.key, 1 if verb == "inc" else -1)
        _print(out, json.dumps({"key": args.key, "value": value}) if args.json else str(value))
    elif verb == "dump":
        return 0 if _dump(cmap, args.prefix, args, out) or not args.prefix else 1
    elif verb == "track":
        if args.count is not None and args.count < 1:
            raise UsageError("--count must be at least 1")
        _track(cmap, [args.key], prefix=args.prefix, args=args, out=out, count=args.count,
               timeout=args.timeout, watch_stdin=False)
    return 0


def _run_verb_mode(args: argparse.Namespace, out: TextIO) -> int:
    verb = args.words[0]
    verb_args = _verb_parser(verb).parse_args(args.words[1:])
    for name in ("run_dir", "config", "json", "binary", "quiet"):
        if not hasattr(verb_args, name):
            setattr(verb_args, name, getattr(args, name))
    run_dir = resolve_run_dir(verb_args)
    try:
        with CmapClient.connect(run_dir) as cmap:
            return _run_verb(cmap, verb, verb_args, out)
    except ObjdbError as error:
        print(f"coro cmap {verb}: {error}", file=sys.stderr)
        return 1


# -- compatibility mode ----------------------------------------------------------

def _cs_name(error: BaseException) -> str:
    for error_class, name in _CS_ERROR_NAMES.items():
        if isinstance(error, error_class):
            return name
    return "CS_ERR_LIBRARY"


def _compat_each(words: list[str], action: Callable[[str], None], what: str) -> int:
    for word in words:
        try:
            action(word)
        except ObjdbError as error:
            print(f"Can't {what} key {word}. Error {_cs_name(error)}", file=sys.stderr)
            return 1
    return 0


def _compat_delete_prefix(cmap: CmapClient, prefix: str) -> None:
    for key in [key for key, _value, _type in cmap.iter(prefix)]:
        try:
            cmap.delete(key)
        except ObjdbError as error:
            print(f"Can't delete key {key}. Error {_cs_name(error)}", file=sys.stderr)


def _compat_set(cmap: CmapClient, words: list[str]) -> int:
    if len(words) < 3:
        print("At least 3 parameters are expected for set", file=sys.stderr)
        return 1
    key, type_name, text = words[:3]
    try:
        ValueType.from_name(type_name)
    except InvalidValue:
        print(f"Unknown type {type_name}", file=sys.stderr)
        return 1
    try:
        _set_from_words(cmap, key, type_name, text, force_type=True, compat=True)
    except InvalidValue:
        print(f"{text} is not valid {type_name} type value", file=sys.stderr)
        return 1
    except ObjdbError as error:
        print(f"Failed to set key {key}. Error {_cs_name(error)}", file=sys.stderr)
        return 1
    return 0


def _compat_load(cmap: CmapClient, path: str) -> int:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        print(f"Couldn't open file.: {error.strerror}", file=sys.stderr)
        return 1
    status = 0
    for line in lines:
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0].startswith("^^"):
            _compat_delete_prefix(cmap, fields[0][2:])
        elif fields[0].startswith("^"):
            status |= _compat_each([fields[0][1:]], cmap.delete, "delete")
        else:
            status |= _compat_set(cmap, fields)
    return status


def _run_compat(cmap: CmapClient, args: argparse.Namespace, out: TextIO) -> int:
    words, action = args.words, args.compat_action
    if args.load_file:
        return _compat_load(cmap, args.load_file)
    if args.clear:
        # Any write is the request (objdb.keys.TRIGGER_KEYS); corosync-cmapctl writes a u8.
        cmap.set(CLEAR_KEYS[args.clear], 1, ValueType.UINT8)
        return 0
    if action is None:
        prefixes = words or [""]
        empty = sum(1 for prefix in prefixes if _dump(cmap, prefix, args, out) == 0)
        return 1 if empty and empty >= len(words) else 0
    if not words:
        print("Expected key after options", file=sys.stderr)
        return 1
    if action == "-g":
        return _compat_each(words, lambda key: _get(cmap, key, args, out), "get")
    if action == "-s":
        return _compat_set(cmap, words)
    if action == "-d":
        return _compat_each(words, cmap.delete, "delete")
    if action == "-D":
        for prefix in words:
            _compat_delete_prefix(cmap, prefix)
        return 0
    _track(cmap, words, prefix=(action == "-T"), args=args, out=out, count=None, timeout=None,
           watch_stdin=True)
    return 0


def _run_compat_mode(args: argparse.Namespace, out: TextIO) -> int:
    run_dir = resolve_run_dir(args)
    try:
        cmap = CmapClient.connect(run_dir)
    except ObjdbError as error:
        print(f"Failed to initialize the cmap API. Error {_cs_name(error)} ({error})",
              file=sys.stderr)
        return 1
    with cmap:
        try:
            return _run_compat(cmap, args, out)
        except ObjdbError as error:
            print(f"coro cmap: {error}", file=sys.stderr)
            return 1


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``coro cmap``; returns the exit status (0 ok, 1 failed, 2 usage)."""
    out = sys.stdout if out is None else out
    try:
        if (args.words and args.words[0] in VERBS and args.compat_action is None
                and not args.load_file and not args.clear):
            return _run_verb_mode(args, out)
        return _run_compat_mode(args, out)
    except UsageError as error:
        print(f"coro cmap: {error}", file=sys.stderr)
        return 2
