"""Child-process roles for the cross-process ring tests (run with -m)."""

from __future__ import annotations

import os
import signal
import sys
import zlib

from coroipc import Ring


def echo_summary(in_name: str, out_name: str, expected: int) -> None:
    """Read ``expected`` messages, then write back 'count crc32'."""
    with Ring.attach(in_name) as source, Ring.attach(out_name) as sink:
        count = crc = 0
        while count < expected:
            for message in source.read_batch() or [source.read(timeout=10.0)]:
                crc = zlib.crc32(message, crc)
                count += 1
        sink.write(f"{count} {crc}".encode(), timeout=10.0)


def write_then_die(name: str) -> None:
    """Write one message, start a second one (reserve, never commit), SIGKILL self."""
    ring = Ring.attach(name)
    ring.write(b"complete", timeout=10.0)
    view = ring.reserve(64)
    view[:10] = b"incomplete"
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    role = argv[0]
    if role == "echo":
        echo_summary(argv[1], argv[2], int(argv[3]))
    elif role == "die":
        write_then_die(argv[1])
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main(sys.argv[1:])
