"""``coro keygen``: write the cluster's shared key (corosync-keygen).

The key authenticates and, with ``crypto_cipher``, encrypts every Totem
datagram (totemd/crypto.py). Write it once and copy the same file to every
node (mode 0400, owned by the user the nodes run as).
"""

from __future__ import annotations

import argparse
import sys

from coroconf.defaults import KEYFILE
from totemd.crypto import KEY_DEFAULT_BYTES, KEY_MAX_BYTES, KEY_MIN_BYTES, KeyError_, write_key

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", "--key-file", default=KEYFILE, metavar="FILE",
                        help=f"where to write the key (default {KEYFILE}); an existing key is replaced")
    parser.add_argument("-s", "--size", type=int, default=KEY_DEFAULT_BYTES, metavar="BYTES",
                        help=f"key size in bytes, {KEY_MIN_BYTES}..{KEY_MAX_BYTES} "
                             f"(default {KEY_DEFAULT_BYTES})")
    # corosync-keygen's source choices; the key always comes from the kernel's
    # CSPRNG (getrandom), which neither blocks nor is weaker than /dev/random.
    parser.add_argument("-r", "--random-device", action="store_true",
                        help="accepted for corosync-keygen scripts (no effect: getrandom is used)")
    parser.add_argument("-l", "--less-secure", action="store_true",
                        help="accepted for corosync-keygen scripts (obsolete there; no effect)")


def run(args: argparse.Namespace) -> int:
    if not KEY_MIN_BYTES <= args.size <= KEY_MAX_BYTES:
        print(f"coro keygen: a key is {KEY_MIN_BYTES}..{KEY_MAX_BYTES} bytes, not {args.size}",
              file=sys.stderr)
        return 2
    print(f"Writing corosync key to {args.key_file}.")
    try:
        write_key(args.key_file, args.size)
    except KeyError_ as error:
        print(f"coro keygen: {error}", file=sys.stderr)
        return 1
    return 0
