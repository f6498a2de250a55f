"""A tiny internal microbenchmark for the ring (not ``coro bench ipc``).

    python -m coroipc._microbench [size ...]
    python -m coroipc._microbench --peek [size ...]

Forks a reader that copies every message out (``read_batch``) and compares
it with what was sent; the parent writes batches of a quarter of the ring.
Prints messages/s and GB/s per size, plus each side's CPU time: on a loaded
machine the wall-clock rate mostly measures the neighbours, while CPU
microseconds per message measure the ring.

``--peek`` measures the in-place reader of frames of one message (what a
connection's events and requests are): one process writes 1, 4 or 64
messages with ``write_nowait``, then takes them with ``peek_batch``; only
the peek (take, views, release, publish) is timed, in CPU microseconds per
peek and per message.
"""

from __future__ import annotations

import os
import sys
import time

from coroipc.ring import Ring

CAPACITY = 1 << 20


def _reader(name: str, total: int, payloads: list[bytes], report_fd: int) -> None:
    ring = Ring.attach(name)
    received = 0
    started = time.process_time()
    mask = len(payloads) - 1
    while received < total:
        batch = ring.read_batch()
        if not batch:
            ring.wait_readable(timeout=10.0)
            continue
        for message in batch:
            if message != payloads[received & mask]:
                raise SystemExit(f"message {received} corrupted")
            received += 1
    os.write(report_fd, f"{time.process_time() - started}".encode())
    ring.close()


def measure(size: int, total: int) -> tuple[float, float, float, float]:
    """(messages/s, bytes/s, writer CPU µs/msg, reader CPU µs/msg) across two processes."""
    payloads = [os.urandom(size) for _ in range(64)]
    per_batch = max(1, min(256, (CAPACITY // 4) // size))
    # Message i carries payloads[i % 64]; a batch starts wherever the last one stopped.
    cycle = payloads * (per_batch // 64 + 2)
    ring = Ring.create(CAPACITY)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            _reader(ring.name, total, payloads, write_end)
            status = 0
        except BaseException as error:
            print(f"reader failed: {error!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(status)
    os.close(write_end)
    started, cpu = time.perf_counter(), time.process_time()
    sent = 0
    while sent < total:
        start = sent & 63
        chunk = cycle[start:start + min(per_batch, total - sent)]
        written = ring.write_batch(chunk)
        if written == 0:
            ring.write(chunk[0], timeout=10.0)  # full: sleep until the reader frees room
            written = 1
        sent += written
    writer_cpu = time.process_time() - cpu
    _pid, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    reader_cpu = float(os.read(read_end, 64) or b"nan")
    os.close(read_end)
    ring.close()
    if status:
        raise SystemExit(f"the reader failed with status {status}")
    return total / elapsed, total * size / elapsed, writer_cpu / total * 1e6, reader_cpu / total * 1e6


def measure_peek(size: int, per_peek: int, rounds: int) -> float:
    """CPU microseconds of one ``peek_batch`` of ``per_peek`` single-message frames."""
    ring = Ring.create(CAPACITY)
    try:
        payload = os.urandom(size)
        cpu = 0.0
        for _ in range(rounds):
            for _ in range(per_peek):
                ring.write_nowait(payload)
            started = time.process_time()
            with ring.peek_batch() as views:
                taken = len(views)
            cpu += time.process_time() - started
            if taken != per_peek:
                raise SystemExit(f"peeked {taken} messages, wrote {per_peek}")
        return cpu / rounds * 1e6
    finally:
        ring.close()


def main(argv: list[str]) -> int:
    peek = "--peek" in argv
    argv = [arg for arg in argv if arg != "--peek"]
    sizes = [int(arg) for arg in argv] or [64, 1024, 65536]
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if peek:
        for size in sizes:
            for per_peek in (1, 4, 64):
                rounds = max(200, 200_000 // per_peek)
                peek_us = min(measure_peek(size, per_peek, rounds) for _ in range(3))
                print(f"{size:>7} B  {per_peek:>2} per peek: {peek_us:6.2f} us per peek, "
                      f"{peek_us / per_peek:5.2f} us per message (CPU, best of 3)")
        return 0
    for size in sizes:
        total = 1_000_000 if size <= 4096 else max(1000, int(2e9 / size))
        rate, bandwidth, writer_us, reader_us = measure(size, total)
        print(f"{size:>7} B  {rate / 1e6:6.2f} M msgs/s  {bandwidth / 1e9:6.2f} GB/s  "
              f"CPU per message: writer {writer_us:.3f} us, reader {reader_us:.3f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
