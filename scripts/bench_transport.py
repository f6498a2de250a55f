"""Transport micro-benchmark: one Totem token visit's frames to two peers,
sent one datagram per frame and peer (``multicast`` per frame, plain reads)
against batched (``multicast_many`` with UDP GSO, UDP_GRO reads).

Three udpu transports on loopback in this process (127.0.0.1 sends,
127.0.0.2 and .3 receive), like a 3-node ring where every node has a full
window to send. One visit = ``--frames-per-visit`` frames of ``size`` bytes
(distinct contents) sent to both peers, then both peers drain their sockets;
every frame must arrive (else the case fails). Cases of one size alternate
within each repeat so they share the machine's conditions.

Reported per case (best of ``--repeat``):
  - ``frames_per_s``: frames delivered to EACH peer per second of this
    process's CPU time (send and receive; on loopback the kernel's receive
    path runs inside the sender's system call, so CPU time covers it);
  - ``send_us``, ``receive_us``: CPU microseconds per visit on each side;
  - ``send_calls``, ``receive_reads``: system calls per visit (send side for
    both peers; receive side summed over both peers).

Run: ``.venv/bin/python -m scripts.bench_transport [--sizes 1024,1450]
[--frames-per-visit 17] [--duration 1] [--repeat 3] [--json]``.
Prints the load average first: on a shared machine compare cases of the
same run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from totemd.transport import UdpTransport

DEFAULT_SIZES = (1024, 1450)
DEFAULT_FRAMES_PER_VISIT = 17  # 3 nodes sending 1 KiB messages: up to 17 frames per token visit
PEERS = {1: "127.0.0.1", 2: "127.0.0.2", 3: "127.0.0.3"}
DRAIN_TIMEOUT_S = 2.0


class FramesLost(Exception):
    """A receiver did not get every frame of a visit within DRAIN_TIMEOUT_S."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """One case's best repeat (see the module docstring for the fields)."""

    case: str
    size: int
    frames_per_visit: int
    visits: int
    frames_per_s: float
    send_us: float
    receive_us: float
    send_calls: float
    receive_reads: float
    load_average: float


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _open(batched: bool) -> list[UdpTransport]:
    port = _free_port()
    nodes: list[UdpTransport] = []
    try:
        for node in (1, 2, 3):
            nodes.append(UdpTransport(mode="udpu", bind_address=PEERS[node], port=port, peers=PEERS,
                                      window_size=200, gso=batched, gro=batched).open())
    except BaseException:
        for transport in nodes:
            transport.close()
        raise
    return nodes


def _drain(receiver: UdpTransport, want: int) -> None:
    got = 0
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        got += len(receiver.receive_batch())
        if got >= want:
            return
        if time.monotonic() > deadline:
            raise FramesLost(f"{receiver.bind_address} got {got} of {want} frames")
        select.select([receiver.fileno()], [], [], 0.01)


def _send_one_by_one(sender: UdpTransport, frames: list[bytes]) -> None:
    multicast = sender.multicast
    for data in frames:
        multicast(data)


def run_case(case: str, size: int, frames_per_visit: int, duration_s: float) -> CaseResult:
    """Run visits of one case for about duration_s of wall time.

    Raises:
        FramesLost: a peer missed frames (full socket buffer or a bug).
    """
    batched = case == "batched"
    nodes = _open(batched)
    sender, receivers = nodes[0], nodes[1:]
    send: Callable[[list[bytes]], None] = (
        sender.multicast_many if batched else (lambda frames: _send_one_by_one(sender, frames)))
    frames = [(b"%06d" % index).ljust(size, b"x") for index in range(frames_per_visit)]
    send_cpu = receive_cpu = 0.0
    visits = 0
    try:
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            started = time.process_time()
            send(frames)
            sent = time.process_time()
            for receiver in receivers:
                _drain(receiver, frames_per_visit)
            receive_cpu += time.process_time() - sent
            send_cpu += sent - started
            visits += 1
        total_cpu = max(send_cpu + receive_cpu, 1e-9)
        return CaseResult(
            case=case, size=size, frames_per_visit=frames_per_visit, visits=visits,
            frames_per_s=round(visits * frames_per_visit / total_cpu),
            send_us=round(send_cpu / visits * 1e6, 1), receive_us=round(receive_cpu / visits * 1e6, 1),
            send_calls=round(sender.stats.send_calls / visits, 2),
            receive_reads=round(sum(r.stats.receive_reads for r in receivers) / visits, 2),
            load_average=round(os.getloadavg()[0], 2))
    finally:
        for transport in nodes:
            transport.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="frame sizes in bytes, comma-separated (default %(default)s)")
    parser.add_argument("--frames-per-visit", type=int, default=DEFAULT_FRAMES_PER_VISIT,
                        help="frames sent per token visit (default %(default)s)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per case and repeat")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; the best is reported")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    try:
        sizes = [int(size) for size in str(args.sizes).split(",") if size]
    except ValueError:
        print(f"--sizes: {args.sizes!r} is not a comma-separated list of byte counts", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 16 or max(sizes) > 65000 or args.frames_per_visit < 1 or args.repeat < 1:
        print("--sizes must be 16..65000 bytes, --frames-per-visit and --repeat at least 1", file=sys.stderr)
        return 2
    if not args.json:
        print(f"load average {' '.join(f'{value:.2f}' for value in os.getloadavg())}; "
              f"{args.frames_per_visit} frames per visit to 2 peers over loopback; best of {args.repeat}")
        print(f"{'case':<12}{'size':>6}{'frames/s':>11}{'send us':>9}{'recv us':>9}"
              f"{'send calls':>12}{'reads':>7}{'load':>6}")
    for size in sizes:
        best: dict[str, CaseResult] = {}
        for _repeat in range(args.repeat):
            for case in ("one-by-one", "batched"):
                try:
                    result = run_case(case, size, args.frames_per_visit, args.duration)
                except FramesLost as error:
                    print(f"{case} {size} B: {error}", file=sys.stderr)
                    return 1
                if case not in best or result.frames_per_s > best[case].frames_per_s:
                    best[case] = result
        for result in best.values():
            _print(result, args.json)
    return 0


def _print(result: CaseResult, as_json: bool) -> None:
    if as_json:
        data: dict[str, Any] = asdict(result)
        print(json.dumps(data), flush=True)
        return
    print(f"{result.case:<12}{result.size:>6}{result.frames_per_s:>11,.0f}{result.send_us:>9.1f}"
          f"{result.receive_us:>9.1f}{result.send_calls:>12.2f}{result.receive_reads:>7.2f}"
          f"{result.load_average:>6.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_transport", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
