"""A tiny internal microbenchmark for the ring (not ``coro bench ipc``).

    python -m coroipc._microbench [size ...]

Forks a reader that copies every message out (``read_batch``) and sums the
lengths; the parent writes batches. Prints messages/s and MB/s per size.
"""

from __future__ import annotations

import os
import sys
import time

from coroipc.errors import WouldBlock
from coroipc.ring import Ring


def _reader(name: str, total: int) -> None:
    ring = Ring.attach(name)
    received = 0
    while received < total:
        batch = ring.read_batch()
        if not batch:
            ring.wait_readable(timeout=10.0)
            continue
        received += len(batch)
    ring.close()


def measure(size: int, seconds: float = 1.0, capacity: int = 1 << 22) -> tuple[float, float]:
    """Messages/s and bytes/s for ``size``-byte messages across two processes."""
    batch = [os.urandom(size)] * max(1, min(4096, (1 << 20) // max(size, 1) // 4 or 1))
    ring = Ring.create(capacity)
    # Calibrate the count so the run lasts about ``seconds``.
    total = max(len(batch) * 4, int(seconds * (2_000_000 if size <= 1024 else 6e9 / size)))
    pid = os.fork()
    if pid == 0:
        try:
            _reader(ring.name, total)
        finally:
            os._exit(0)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        chunk = batch if total - sent >= len(batch) else batch[: total - sent]
        written = ring.write_batch(chunk)
        if written == 0:
            try:
                ring._wait_writable(ring.batch_frame_limit, time.monotonic() + 10.0)
            except WouldBlock:
                pass
        sent += written
    os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    ring.close()
    return total / elapsed, total * size / elapsed


def main(argv: list[str]) -> int:
    sizes = [int(arg) for arg in argv] or [64, 1024, 65536]
    for size in sizes:
        rate, bandwidth = measure(size)
        print(f"{size:>7} B  {rate / 1e6:7.2f} M msgs/s  {bandwidth / 1e9:6.2f} GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
