"""A microbenchmark of totemd's local interface, in one process.

    python -m scripts.bench_local [--json] [--rounds N]

Drives a real :class:`coroipc.IpcServer` serving a real
:class:`totemd.local.TotemService` (with a stand-in for the daemon: no Totem
core, no network) and measures the server side of:

- ``idle``: one ``process(0.0)`` pass with 3 connected clients and no work
  (what totemd pays up to ``IPC_PASSES_PER_TURN`` times per loop turn), and
  one ``process(0.0, poll=False)`` pass (the passes that need not poll);
- ``deliver 6x8K`` / ``deliver 40x1K``: one turn's deliveries to one
  batching subscriber that sleeps on its event ring: what the daemon does
  from the rows and bodies it collected (build the DELIVER_BATCH, broadcast
  it, ring the subscriber's doorbell in ``flush_wakes``), per batch and per
  message; ``legacy`` is the old call shape (``encode_deliver_batch`` then
  ``broadcast_deliveries``), ``payload`` the new one (``deliver_batch_payload``
  handed to ``broadcast_deliveries``) when the code has it;
- ``submit_many 32x8K``: one SUBMIT_MANY request of 32 x 8 KiB taken by
  ``process(0.0)`` (decode, the stand-in's queueing, the reply), per request.

The subscriber's reading and the client's writing of requests are not timed.
Numbers are wall-clock µs and thread CPU µs of the timed parts (each the
median of ``--rounds`` rounds); the 1-minute load average is printed
with them, since the machine is shared.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

from coroipc import IpcClient, IpcServer
from coroipc._wire import put_message
from totemd import local_codec as wire
from totemd.local import TotemService

IDLE_CALLS = 2000
DELIVER_CALLS = 400
SUBMIT_CALLS = 200
CLIENTS = 3
_ITEM_PACK = wire.DELIVER_ITEM.pack
_ORIGIN = wire.ORIGIN.size


class StandInDaemon:
    """What TotemService asks of the daemon, with a send queue that takes all."""

    node_id = 1
    inc = 7

    def __init__(self) -> None:
        self.queued = 0
        self._sseq = 0

    def current_ring_id(self) -> tuple[int, int]:
        return (1, 4)

    def current_members(self) -> tuple[int, ...]:
        return (1, 2, 3)

    def submit_room(self) -> int:
        return 1088

    def local_submit_many(self, items) -> tuple[wire.Status, int, int]:
        count = 0
        for data, _safe in items:
            count += len(data) > 0
        self.queued += count
        first = self._sseq + 1
        self._sseq += count
        return wire.Status.OK, count, first


def _serve_until(server: IpcServer, done: threading.Event, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not done.is_set():
        if time.monotonic() > deadline:
            raise RuntimeError("the clients did not connect in time")
        server.process(0.005)


def _connect(run_dir: str, server: IpcServer) -> list[IpcClient]:
    """CLIENTS connections; the first subscribes with batches (in a thread:
    the handshake blocks on the server, which this thread serves)."""
    clients: list[IpcClient] = []
    done = threading.Event()
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            for index in range(CLIENTS):
                client = IpcClient.connect(TotemService.name, run_dir=run_dir, timeout=5.0)
                clients.append(client)
                client.request(wire.Function.HELLO, wire.encode_hello(index == 0, batch=index == 0), timeout=5.0)
        except BaseException as error:  # reported by the caller
            failure.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=connect)
    thread.start()
    try:
        _serve_until(server, done)
    finally:
        thread.join()
    if failure:
        for client in clients:
            client.close()
        raise failure[0]
    server.flush_wakes()
    return clients


def _timed(rounds: int, calls: int, body) -> tuple[float, float]:
    """(median wall µs per call over the rounds, median CPU µs per call).

    ``body(calls)`` returns (wall seconds, thread CPU seconds) of its timed parts.
    """
    walls = []
    cpus = []
    for _ in range(rounds):
        elapsed, cpu = body(calls)
        walls.append(elapsed / calls * 1e6)
        cpus.append(cpu / calls * 1e6)
    return statistics.median(walls), statistics.median(cpus)


def bench_idle(server: IpcServer, rounds: int, poll: bool = True) -> tuple[float, float]:
    process = server.process
    options = {} if poll else {"poll": False}

    def body(calls: int) -> tuple[float, float]:
        cpu = time.thread_time()
        start = time.perf_counter()
        for _ in range(calls):
            process(0.0, **options)
        return time.perf_counter() - start, time.thread_time() - cpu

    return _timed(rounds, IDLE_CALLS, body)


def _messages(count: int, size: int) -> list[bytes]:
    return [wire.encode_origin(7, index + 1, False) + bytes([index & 0xFF]) * size for index in range(count)]


def bench_deliver(server: IpcServer, service: TotemService, subscriber: IpcClient, count: int, size: int,
                  rounds: int, shape: str) -> tuple[float, float]:
    """One batch of ``count`` deliveries of ``size`` bytes per call, the subscriber asleep."""
    messages = _messages(count, size)
    ring = subscriber.event_ring
    event_bell = ring._reader_bell
    parts_of = getattr(wire, "deliver_batch_payload", None)
    if shape == "payload" and parts_of is None:
        raise LookupError("this code has no deliver_batch_payload")
    expected = wire.encode_deliver_batch(
        [_ITEM_PACK(size, 1, 7, i + 1, 1, 4, 10 + i, 0) for i in range(count)],
        [memoryview(m)[_ORIGIN:] for m in messages])

    def body(calls: int) -> tuple[float, float]:
        elapsed = cpu = 0.0
        for call in range(calls):
            # What the daemon collected in _on_deliver_messages (not timed).
            rows = [_ITEM_PACK(size, 1, 7, i + 1, 1, 4, 10 + i, 0) for i in range(count)]
            bodies = [memoryview(m)[_ORIGIN:] for m in messages]
            ring.arm_reader(drain=False)  # the subscriber sleeps on its events
            cpu_start = time.thread_time()
            start = time.perf_counter()
            if shape == "payload":
                batch = parts_of(rows, bodies, count * size)
            else:
                batch = wire.encode_deliver_batch(rows, bodies)
            service.broadcast_deliveries([batch], None)
            server.flush_wakes()
            elapsed += time.perf_counter() - start
            cpu += time.thread_time() - cpu_start
            ring.disarm_reader()
            event_bell.drain()
            got = ring.read_batch()
            if len(got) != 1 or (call == 0 and got[0][16:] != expected):
                raise RuntimeError(f"the subscriber got {len(got)} events, or a wrong one")
        return elapsed, cpu

    return _timed(rounds, DELIVER_CALLS, body)


def bench_submit_many(server: IpcServer, client: IpcClient, count: int, size: int,
                      rounds: int) -> tuple[float, float]:
    payload = wire.encode_submit_many([(bytes(size), index % 2 == 0) for index in range(count)])
    response = client.response_ring

    def body(calls: int) -> tuple[float, float]:
        elapsed = cpu = 0.0
        for call in range(calls):
            put_message(client.request_ring, wire.Function.SUBMIT_MANY, 0, call + 1, payload)
            cpu_start = time.thread_time()
            start = time.perf_counter()
            server.process(0.0)
            elapsed += time.perf_counter() - start
            cpu += time.thread_time() - cpu_start
            reply = response.read_batch()
            if len(reply) != 1:
                raise RuntimeError(f"{len(reply)} replies to one SUBMIT_MANY")
            status, accepted, _first = wire.decode_submit_many_reply(reply[0][16:])
            if status is not wire.Status.OK or accepted != count:
                raise RuntimeError(f"SUBMIT_MANY answered {status.name}, {accepted} accepted")
        server.flush_wakes()
        return elapsed, cpu

    return _timed(rounds, SUBMIT_CALLS, body)


def measure(rounds: int) -> list[dict[str, Any]]:
    """Every case, in one server; one result dict per case."""
    daemon = StandInDaemon()
    service = TotemService(daemon)  # type: ignore[arg-type]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-local-") as run_dir:
        server = IpcServer(run_dir, [service], defer_wakes=True)
        server.start()
        clients: list[IpcClient] = []
        try:
            clients = _connect(run_dir, server)
            for _ in range(100):
                server.process(0.0)
            wall, cpu = bench_idle(server, rounds)
            results.append({"case": "idle process(0.0), 3 clients", "unit": "call", "us": wall, "cpu_us": cpu})
            if "poll" in inspect.signature(server.process).parameters:
                wall, cpu = bench_idle(server, rounds, poll=False)
                results.append({"case": "idle process(0.0, poll=False)", "unit": "call", "us": wall,
                                "cpu_us": cpu})
            shapes = ["legacy"] + (["payload"] if hasattr(wire, "deliver_batch_payload") else [])
            for count, size in ((6, 8192), (40, 1024)):
                for shape in shapes:
                    wall, cpu = bench_deliver(server, service, clients[0], count, size, rounds, shape)
                    results.append({"case": f"deliver {count}x{size // 1024}K ({shape})", "unit": "batch",
                                    "us": wall, "cpu_us": cpu, "us_per_message": wall / count})
            wall, cpu = bench_submit_many(server, clients[1], 32, 8192, rounds)
            results.append({"case": "submit_many 32x8K", "unit": "request", "us": wall, "cpu_us": cpu,
                            "us_per_message": wall / 32})
        finally:
            for client in clients:
                client.close()
            server.close()
    load = os.getloadavg()[0]
    for result in results:
        result["load"] = round(load, 2)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (the median is shown)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    results = measure(max(1, args.rounds))
    if args.json:
        for result in results:
            print(json.dumps({key: round(value, 2) if isinstance(value, float) else value
                              for key, value in result.items()}))
        return 0
    print(f"{'case':<34} {'µs/unit':>9} {'cpu µs':>8} {'µs/msg':>7}  load {results[0]['load']}")
    for result in results:
        per_message = result.get("us_per_message")
        print(f"{result['case']:<34} {result['us']:>9.2f} {result['cpu_us']:>8.2f} "
              f"{'' if per_message is None else f'{per_message:.2f}':>7}  per {result['unit']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from scripts._standalone import standalone

    return standalone(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
