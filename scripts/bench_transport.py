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

With ``--cpu``, CPU per packet with the other side in a second process
(lockstep: one visit, then an acknowledgement, so every read finds what a
daemon's read finds after its wake-up), ``time.process_time`` around the
transport calls only (its own cost subtracted):
  - ``receive-visit``: a sender process pushes token visits as totemd does at
    8 KiB: 13 to 17 frames of 1450 bytes and a 60-byte token in ONE GSO send;
    ``us_per_segment`` is receive CPU per frame, ``us_per_call`` per visit;
  - ``receive-token``: single 60-byte packets (an idle token);
  - ``send-visit``: ``send_visit`` of such a visit to two peers (a process
    drains them); CPU per visit, kernel loopback delivery included;
  - ``send-token``: ``unicast`` of one 60-byte token.

Run: ``.venv/bin/python -m scripts.bench_transport [--sizes 1024,1450]
[--frames-per-visit 17] [--duration 1] [--repeat 3] [--cpu [--visits 3000]] [--json]``.
Prints the load average first: on a shared machine compare cases of the
same run, not runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import select
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from totemd.transport import SOL_UDP, UDP_GRO, UDP_SEGMENT, UdpTransport

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


# -- CPU per packet, the other side in a second process ----------------------------------------

CPU_FRAME_BYTES = 1450  # a full frame at netmtu 1500
CPU_TOKEN_BYTES = 60
CPU_VISIT_SEGMENTS = (13, 14, 15, 16, 17)  # frames per 8 KiB visit, as totemd sends them
CPU_CASES = ("receive-visit", "receive-token", "send-visit", "send-token")
_SEGMENT_OPTION = struct.Struct("=H")


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuResult:
    """One CPU case (see the module docstring, ``--cpu``)."""

    case: str
    visits: int
    segments_per_visit: float
    us_per_call: float
    us_per_segment: float
    load_average: float


def _cpu_visits(count: int) -> list[list[bytes]]:
    """Visits of 13..17 distinct frames (cycled), each closed by the token."""
    token = b"T" * CPU_TOKEN_BYTES
    visits = []
    for index in range(count):
        segments = CPU_VISIT_SEGMENTS[index % len(CPU_VISIT_SEGMENTS)]
        frames = [(b"%03d%06d" % (frame, index)).ljust(CPU_FRAME_BYTES, b"f") for frame in range(segments)]
        visits.append(frames + [token])
    return visits


def _clock_overhead_s() -> float:
    """What timing a call adds (about one ``process_time`` call), to subtract."""
    clock = time.process_time
    rounds = 2000
    started = clock()
    for _ in range(rounds):
        clock()
        clock()
    return (clock() - started) / rounds / 2


def _feed_receiver(case: str, port: int, visits: int, lockstep: Any) -> None:
    """Child: send visits (one GSO send each) or tokens from 127.0.0.1 to
    127.0.0.2, each after the receiver acknowledged the one before."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.connect(("127.0.0.2", port))
        token = b"T" * CPU_TOKEN_BYTES
        segment = [(SOL_UDP, UDP_SEGMENT, _SEGMENT_OPTION.pack(CPU_FRAME_BYTES))]
        patterns = _cpu_visits(len(CPU_VISIT_SEGMENTS))
        for index in range(visits):
            if case == "receive-visit":
                sock.sendmsg(patterns[index % len(patterns)], segment)
            else:
                sock.send(token)
            if not lockstep.poll(DRAIN_TIMEOUT_S):
                return
            lockstep.recv_bytes()
    finally:
        sock.close()
        lockstep.close()


def _drain_peers(port: int, visits: int, with_frames: bool, lockstep: Any) -> None:
    """Child: read what node 1 sends to 127.0.0.2 and .3 (GRO sockets),
    acknowledging each visit once both have all its bytes."""
    sockets = []
    try:
        for address in ("127.0.0.2", "127.0.0.3"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
            sock.bind((address, port))
            sock.setblocking(False)
        lockstep.send_bytes(b"r")
        patterns = _cpu_visits(len(CPU_VISIT_SEGMENTS))
        for index in range(visits):
            datagrams = patterns[index % len(patterns)]
            frames_bytes = sum(map(len, datagrams[:-1])) if with_frames else 0
            want = [frames_bytes + CPU_TOKEN_BYTES, frames_bytes]  # the token goes to node 2 only
            got = [0, 0]
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while got[0] < want[0] or got[1] < want[1]:
                if time.monotonic() > deadline:
                    return
                select.select(sockets, [], [], 0.1)
                for slot, sock in enumerate(sockets):
                    while True:
                        try:
                            got[slot] += len(sock.recv(65536))
                        except BlockingIOError:
                            break
            lockstep.send_bytes(b"a")
    finally:
        for sock in sockets:
            sock.close()
        lockstep.close()


def _stop_peer(pipe: Any, child: Any) -> None:
    """Close our end of the lockstep pipe and reap the peer process (killed
    if it does not leave within 5 s)."""
    pipe.close()
    child.join(5)
    if child.is_alive():
        child.kill()
        child.join()


def _receive_cpu(case: str, visits: int, method: str) -> CpuResult:
    """Time the transport's receive calls for ``visits`` fed by a child."""
    port = _free_port()
    receiver = UdpTransport(mode="udpu", bind_address="127.0.0.2", port=port,
                            peers={1: "127.0.0.1", 2: "127.0.0.2"}, window_size=200).open()
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe()
    child = context.Process(target=_feed_receiver, args=(case, port, visits, theirs), daemon=True)
    receive: Callable[[], list[Any]] = getattr(receiver, method)
    clock = time.process_time
    overhead = _clock_overhead_s()
    patterns = _cpu_visits(len(CPU_VISIT_SEGMENTS))
    cpu = 0.0
    calls = segments = 0
    child.start()
    try:
        fd = receiver.fileno()
        for index in range(visits):
            want = len(patterns[index % len(patterns)]) if case == "receive-visit" else 1
            got = 0
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while got < want:
                if time.monotonic() > deadline:
                    raise FramesLost(f"{case}: got {got} of {want} packets of visit {index}")
                select.select([fd], [], [], 0.1)
                started = clock()
                batch = receive()
                cpu += clock() - started - overhead
                calls += 1
                got += len(batch)
            segments += got
            mine.send_bytes(b"a")
    finally:
        _stop_peer(mine, child)
        receiver.close()
    return CpuResult(case=f"{case} {method}", visits=visits, segments_per_visit=round(segments / visits, 2),
                     us_per_call=round(cpu / visits * 1e6, 2), us_per_segment=round(cpu / segments * 1e6, 3),
                     load_average=round(os.getloadavg()[0], 2))


def _send_cpu(case: str, visits: int) -> CpuResult:
    """Time ``send_visit`` (or ``unicast`` of the token) from node 1 to a
    child that drains nodes 2 and 3."""
    port = _free_port()
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe()
    child = context.Process(target=_drain_peers, args=(port, visits, case == "send-visit", theirs), daemon=True)
    child.start()
    sender = UdpTransport(mode="udpu", bind_address="127.0.0.1", port=port, peers=PEERS, window_size=200).open()
    clock = time.process_time
    overhead = _clock_overhead_s()
    patterns = [(datagrams[:-1], datagrams[-1]) for datagrams in _cpu_visits(len(CPU_VISIT_SEGMENTS))]
    cpu = 0.0
    segments = 0
    try:
        if not mine.poll(DRAIN_TIMEOUT_S):
            raise FramesLost(f"{case}: the draining process did not start")
        mine.recv_bytes()
        for index in range(visits):
            frames, token = patterns[index % len(patterns)]
            started = clock()
            if case == "send-visit":
                sender.send_visit(frames, 2, token)
            else:
                sender.unicast(2, token)
            cpu += clock() - started - overhead
            segments += 1 + (len(frames) if case == "send-visit" else 0)
            if not mine.poll(DRAIN_TIMEOUT_S):
                raise FramesLost(f"{case}: visit {index} did not reach both peers")
            mine.recv_bytes()
    finally:
        _stop_peer(mine, child)
        sender.close()
    return CpuResult(case=case, visits=visits, segments_per_visit=round(segments / visits, 2),
                     us_per_call=round(cpu / visits * 1e6, 2), us_per_segment=round(cpu / segments * 1e6, 3),
                     load_average=round(os.getloadavg()[0], 2))


def run_cpu_case(case: str, visits: int) -> list[CpuResult]:
    """One ``--cpu`` case: a receive case once per receive method the
    transport has (``receive_batch``, ``receive_frames``).

    Raises:
        FramesLost: a visit did not arrive within DRAIN_TIMEOUT_S.
    """
    if case.startswith("send"):
        return [_send_cpu(case, visits)]
    methods = [name for name in ("receive_batch", "receive_frames") if hasattr(UdpTransport, name)]
    return [_receive_cpu(case, visits, method) for method in methods]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="frame sizes in bytes, comma-separated (default %(default)s)")
    parser.add_argument("--frames-per-visit", type=int, default=DEFAULT_FRAMES_PER_VISIT,
                        help="frames sent per token visit (default %(default)s)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per case and repeat")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; the best is reported")
    parser.add_argument("--cpu", action="store_true",
                        help="CPU per packet and visit, the other side in a second process (instead)")
    parser.add_argument("--visits", type=int, default=3000, help="visits per --cpu case (default %(default)s)")
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
    if args.cpu:
        return _run_cpu(args)
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


def _run_cpu(args: argparse.Namespace) -> int:
    """``--cpu``: each case ``--repeat`` times, the best (least CPU) reported."""
    if args.visits < len(CPU_VISIT_SEGMENTS):
        print(f"--visits must be at least {len(CPU_VISIT_SEGMENTS)}", file=sys.stderr)
        return 2
    if not args.json:
        print(f"load average {' '.join(f'{value:.2f}' for value in os.getloadavg())}; {args.visits} visits "
              f"of {CPU_VISIT_SEGMENTS[0]}-{CPU_VISIT_SEGMENTS[-1]} x {CPU_FRAME_BYTES} B frames + a "
              f"{CPU_TOKEN_BYTES} B token over loopback; best of {args.repeat}")
        print(f"{'case':<30}{'segs/visit':>11}{'us/call':>9}{'us/seg':>9}{'load':>6}")
    for case in CPU_CASES:
        best: dict[str, CpuResult] = {}
        for _repeat in range(args.repeat):
            try:
                results = run_cpu_case(case, args.visits)
            except FramesLost as error:
                print(f"{case}: {error}", file=sys.stderr)
                return 1
            for result in results:
                if result.case not in best or result.us_per_call < best[result.case].us_per_call:
                    best[result.case] = result
        for result in best.values():
            if args.json:
                print(json.dumps(asdict(result)), flush=True)
            else:
                print(f"{result.case:<30}{result.segments_per_visit:>11.2f}{result.us_per_call:>9.2f}"
                      f"{result.us_per_segment:>9.3f}{result.load_average:>6.2f}", flush=True)
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
    from scripts._standalone import standalone

    return standalone(__doc__, add_arguments, run, argv, prog="bench_transport")


if __name__ == "__main__":
    sys.exit(main())
