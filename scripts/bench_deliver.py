"""A microbenchmark of totemd's delivery path for large messages, from the
core's frames to the bytes in a subscriber's event ring.

::

    python -m scripts.bench_deliver [--size 8192 --size 65536] [--turns 40]
                                    [--against REV] [--new REV] [--rounds 3]
                                    [--callgrind] [--json]

What one *turn* is: the frames of one token rotation of a 3-node ring, as a
node delivers them (three senders, ``--frames`` frames each, their visits one
after the other, frames of ``TotemParams().frame_payload_max`` bytes made by
``totemd.pg.Packer`` from messages that carry the daemon's origin header).
Each turn runs what totemd runs for it: the core's delivery loop
(``Unpacker.feed`` per frame, one ``DeliverFrame`` per frame that completed
messages, as ``ordering._deliver_ready`` makes them), the daemon's action
dispatch of those (``LocalSideMixin._on_deliver_messages``), then
``_flush_deliveries`` (DELIVER_BATCH events through the real
``TotemService.broadcast_deliveries`` into a real coroipc event ring) and the
server's ``flush_wakes``. The subscriber is a real ``TotemClient`` in a child
process that reads its events in place (``dispatch_deliveries``), checks each
delivery's origin and CRC, and acknowledges each turn over a pipe; it sleeps
on its event ring between turns, so the daemon side rings its doorbell as in
totemd. Only the daemon side is measured.

Reported per delivered message (and per frame): thread CPU time (µs; best
of ``--rounds`` runs, each the mean over ``--turns`` turns), or with
``--callgrind`` instructions (``valgrind --tool=callgrind`` on the daemon
side only; by difference of a run that delivers ``--turns`` turns and one
that delivers none, so start-up and packing cancel). ``--against REV``
runs the totemd, coroipc and clients packages of a git revision as well
(``git archive``), alternating with the work tree in the same minutes, on
the same frames (packed once by the work tree's Packer). The
1-minute load average is printed with every row: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]

ROOT = Path(__file__).resolve().parent.parent
SENDERS = (1, 2, 3)
ME = 2                    # the measuring node (one of the senders)
RING_REP, RING_SEQ = 1, 8
SIZES = (8192, 65536)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, action="append",
                        help="message size in bytes (repeatable; default 8192 and 65536)")
    parser.add_argument("--turns", type=int, default=40, help="turns per run (default 40)")
    parser.add_argument("--frames", type=int, default=12,
                        help="frames per sender per turn (default 12: ~35 a rotation, as at 8 KiB)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per implementation, best kept")
    parser.add_argument("--against", metavar="REV", help="also run this git revision, alternating")
    parser.add_argument("--new", metavar="REV", help="measure this revision instead of the work tree")
    parser.add_argument("--callgrind", action="store_true", help="count instructions (slow)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deliver-turns", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--ack-fd", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--frames-file", help=argparse.SUPPRESS)


# -- the frames ---------------------------------------------------------------------------

def _frames(size: int, turns: int, frames_per_visit: int) -> tuple[list[list[tuple[int, int, bool, bytes]]],
                                                                  dict[int, list[tuple[int, int, int]]]]:
    """Per turn, the (sender, seq, safe, payload) frames a node delivers, and
    per sender the (sinc, sseq, crc of the body) of every message it sent."""
    from totemd import local_codec as wire
    from totemd.pg import Packer
    from totemd.srp.params import TotemParams

    frame_payload = TotemParams().frame_payload_max
    per_sender: dict[int, list[bytes]] = {}
    expected: dict[int, list[tuple[int, int, int]]] = {}
    needed = turns * frames_per_visit
    for sender in SENDERS:
        packer = Packer(frame_payload_max=frame_payload)
        sent: list[tuple[int, int, int]] = []
        payloads: list[bytes] = []
        sseq = 0
        backlog = 2 * (size // frame_payload + 2)  # a saturated sender: frames join messages
        while len(payloads) < needed:
            if packer.pending_frames() < backlog:
                sseq += 1
                body = (sseq.to_bytes(4, "big") * (size // 4 + 1))[:size]
                packer.submit(wire.encode_origin(10 + sender, sseq, sseq % 7 == 0) + body)
                sent.append((10 + sender, sseq, zlib.crc32(body)))
            else:
                payloads.append(bytes(packer.take_frame().payload))
        per_sender[sender] = payloads
        expected[sender] = sent
    schedule = []
    seq = 0
    for turn in range(turns):
        frames = []
        for sender in SENDERS:
            for payload in per_sender[sender][turn * frames_per_visit:(turn + 1) * frames_per_visit]:
                seq += 1
                frames.append((sender, seq, False, payload))
        schedule.append(frames)
    return schedule, expected


# -- the daemon side ----------------------------------------------------------------------

def _node_class():
    """A stand-in Daemon: the state ``Daemon.__init__`` gives the local side."""
    from totemd.daemon_local import LocalSideMixin

    class Node(LocalSideMixin):
        def __init__(self, service: Any) -> None:
            self.node_id = ME
            self.inc = 10 + ME
            self.service = service
            self.evslog = None
            self._own_delivered = 0
            self._batch_rows: list[bytes] = []
            self._batch_bodies: list[Any] = []
            self._batch_count = 0
            self._batch_bytes = 0
            self._pending_payload = 0
            self._batches: list[Any] = []
            self._singles = None
            self._in_conf = None
            self._last_delivered = None
            self._counts = dict.fromkeys(("messages_delivered", "bytes_delivered",
                                          "unframed_deliveries"), 0)

        def current_ring_id(self) -> tuple[int, int]:
            return (RING_REP, RING_SEQ)

        def current_members(self) -> tuple[int, ...]:
            return SENDERS

    return Node


def _worker(args: argparse.Namespace) -> int:
    """Deliver the turns of one size; print one JSON result."""
    from coroipc import IpcServer
    from totemd.local import TotemService
    from totemd.pg_unpack import Unpacker
    from totemd.srp.actions import DeliverFrame
    from totemd.srp.messages import RingId

    size = args.size[0]
    if args.frames_file:
        # The driver's frames: every implementation compared unpacks the same.
        with open(args.frames_file, "rb") as file:
            schedule, expected = pickle.load(file)
    else:
        schedule, expected = _frames(size, args.turns, args.frames)
    deliver_turns = args.turns if args.deliver_turns < 0 else args.deliver_turns
    unpacker = Unpacker()
    # The messages each turn completes (a dry run of the same unpacking).
    dry = Unpacker()
    counts = [sum(len(dry.feed(sender, payload)) for sender, _seq, _safe, payload in frames)
              for frames in schedule][:deliver_turns]  # every turn: the same work in every run
    with tempfile.TemporaryDirectory(prefix="bench-deliver-") as run_dir:
        node_class = _node_class()
        node = node_class(None)
        service = TotemService(node)  # type: ignore[arg-type]
        node.service = service
        server = IpcServer(run_dir, [service], defer_wakes=True)
        server.start()
        ack_read, ack_write = os.pipe()
        reader = subprocess.Popen(
            [sys.executable, "-P", str(Path(__file__).resolve()), "--reader", "--run-dir", run_dir,
             "--ack-fd", str(ack_write)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(ack_write,),
            cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=os.environ.get("BENCH_READER_PATH", str(ROOT))))
        os.close(ack_write)
        try:
            reader.stdin.write(json.dumps({"counts": counts, "expected": {
                str(sender): sent for sender, sent in expected.items()}}).encode() + b"\n")
            reader.stdin.close()
            deadline = time.monotonic() + 60.0
            while service.subscriber_count < 1:
                if time.monotonic() > deadline or reader.poll() is not None:
                    raise RuntimeError("the reader did not subscribe")
                server.process(0.01)
            server.flush_wakes()
            ring_id = RingId(RING_REP, RING_SEQ)
            cpu, wall = _deliver(node, server, unpacker, schedule[:deliver_turns], counts, ring_id,
                                 DeliverFrame, ack_read)
            for frames in schedule[deliver_turns:]:
                # The fresh copies _deliver makes, for the turns not
                # delivered: a callgrind difference counts delivery alone.
                frames = [(sender, seq, safe, memoryview(payload).tobytes())
                          for sender, seq, safe, payload in frames]
            out = reader.stdout.read()
            reader.wait(timeout=60.0)
            if reader.returncode != 0:
                raise RuntimeError(f"the reader failed ({reader.returncode})")
            report = json.loads(out)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
            os.close(ack_read)
            server.close()
    frames = sum(len(turn) for turn in schedule[:deliver_turns])
    messages = sum(counts)
    if report["messages"] != messages or report["bad"]:
        raise RuntimeError(f"the reader got {report['messages']} of {messages} messages, "
                           f"{report['bad']} wrong")
    print(json.dumps({"size": size, "turns": deliver_turns, "frames": frames, "messages": messages,
                      "cpu_s": cpu, "wall_s": wall}))
    return 0


def _deliver(node: Any, server: Any, unpacker: Any, schedule: list, counts: list[int], ring_id: Any,
             deliver_frame: Any, ack_read: int) -> tuple[float, float]:
    """The timed loop: per turn, the core's delivery loop and the daemon's
    actions for it (see the module docstring); the reader's ack is not timed."""
    feed = unpacker.feed
    new_tuple = tuple.__new__
    on_messages = node._on_deliver_messages
    flush = node._flush_deliveries
    flush_wakes = server.flush_wakes
    thread_time = time.thread_time
    perf_counter = time.perf_counter
    cpu = wall = 0.0
    for frames in schedule:
        # Fresh copies, as totemd's frames are (just received and cut out
        # of their datagram): in the cache, not left there by the packing.
        frames = [(sender, seq, safe, memoryview(payload).tobytes()) for sender, seq, safe, payload in frames]
        cpu_start = thread_time()
        start = perf_counter()
        actions = []
        emit = actions.append
        for sender, seq, safe, payload in frames:          # ordering._deliver_ready
            messages = feed(sender, payload)
            if messages:
                emit(new_tuple(deliver_frame, (sender, ring_id, seq, safe, messages)))
        for action in actions:                             # daemon._run_actions
            if type(action) is deliver_frame:
                on_messages(action.sender, action.ring_id, action.seq, action.safe, action.messages)
        if node._batch_count:                              # daemon._execute
            flush()
        flush_wakes()
        wall += perf_counter() - start
        cpu += thread_time() - cpu_start
        if os.read(ack_read, 1) != b"a":
            raise RuntimeError("the reader stopped")
    return cpu, wall


# -- the subscriber -----------------------------------------------------------------------

def _reader(args: argparse.Namespace) -> int:
    """Read every turn's deliveries in place, check them, ack each turn."""
    from clients.totem import TotemClient

    plan = json.loads(sys.stdin.readline())
    expected = {int(sender): {(sinc, sseq): crc for sinc, sseq, crc in sent}
                for sender, sent in plan["expected"].items()}
    state = {"messages": 0, "bad": 0}

    def on_deliver(sender, sinc, sseq, rep, ring_seq, seq, flags, data) -> None:
        state["messages"] += 1
        if expected[sender].get((sinc, sseq)) != zlib.crc32(data) or (rep, ring_seq) != (RING_REP, RING_SEQ):
            state["bad"] += 1

    client = TotemClient.connect(args.run_dir, timeout=30.0)
    try:
        target = 0
        for count in plan["counts"]:
            target += count
            deadline = time.monotonic() + 60.0
            while state["messages"] < target:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"turn not delivered: {state['messages']} of {target}")
                client.dispatch_deliveries(on_deliver, lambda event: None, timeout=1.0)
            os.write(args.ack_fd, b"a")
    finally:
        client.close()
    print(json.dumps(state))
    return 0


# -- the driver ---------------------------------------------------------------------------

def _unpack_revision(rev: str, into: Path) -> str:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "totemd", "coroipc", "clients"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return str(into)


def _worker_command(args: argparse.Namespace, size: int, deliver_turns: int) -> list[str]:
    command = [str(Path(__file__).resolve()), "--worker", "--size", str(size), "--turns", str(args.turns),
               "--frames", str(args.frames), "--deliver-turns", str(deliver_turns)]
    frames_file = args.frames_files.get(size) if getattr(args, "frames_files", None) else None
    return command + (["--frames-file", frames_file] if frames_file else [])


def _env(impl_dir: str | None) -> dict[str, str]:
    path = f"{impl_dir}:{ROOT}" if impl_dir else str(ROOT)
    # The reader always runs the implementation under test too (its
    # client library reads what this side wrote).
    return dict(os.environ, PYTHONPATH=path, BENCH_READER_PATH=path, PYTHONHASHSEED="0")


def _timed_run(args: argparse.Namespace, impl_dir: str | None, size: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-P", *_worker_command(args, size, -1)], check=True,
                          capture_output=True, text=True, timeout=600, env=_env(impl_dir), cwd="/")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _instructions(args: argparse.Namespace, impl_dir: str | None, size: int, deliver_turns: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-P",
               *_worker_command(args, size, deliver_turns)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=3600,
                          env=_env(impl_dir), cwd="/")
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")


def _measure(args: argparse.Namespace, impl_dir: str | None, size: int) -> dict[str, Any]:
    if args.callgrind:
        full = _instructions(args, impl_dir, size, -1)
        none = _instructions(args, impl_dir, size, 0)
        counted = _timed_run(args, impl_dir, size)  # the frame and message counts
        return {**counted, "ir": full - none}
    return _timed_run(args, impl_dir, size)


def run(args: argparse.Namespace) -> int:
    if args.reader:
        return _reader(args)
    if args.worker:
        return _worker(args)
    sizes = args.size or list(SIZES)
    with tempfile.TemporaryDirectory(prefix="bench-deliver-") as scratch:
        implementations: dict[str, str | None] = {"new": None}
        if args.new:
            implementations["new"] = _unpack_revision(args.new, Path(scratch) / "new")
        if args.against:
            implementations = {"old": _unpack_revision(args.against, Path(scratch) / "old"),
                               "new": implementations["new"]}
        args.frames_files = {}
        for size in sizes:
            path = args.frames_files[size] = str(Path(scratch) / f"frames-{size}.pickle")
            with open(path, "wb") as file:
                pickle.dump(_frames(size, args.turns, args.frames), file)
        best: dict[tuple[str, int], dict[str, Any]] = {}
        for _ in range(1 if args.callgrind else args.rounds):
            for size in sizes:
                for key, impl_dir in implementations.items():
                    result = _measure(args, impl_dir, size)
                    metric = "ir" if args.callgrind else "cpu_s"
                    if (key, size) not in best or result[metric] < best[key, size][metric]:
                        best[key, size] = result
    load = os.getloadavg()[0]
    if not args.json:
        unit = "instructions" if args.callgrind else "CPU us"
        print(f"{'size':>6} {'impl':>4} {'frames':>6} {'msgs':>5}  {unit + ' /msg':>18} {unit + ' /frame':>18}"
              f"  load1")
    for size in sizes:
        for key in implementations:
            result = best[key, size]
            value = result["ir"] if args.callgrind else result["cpu_s"] * 1e6
            per_message = value / result["messages"]
            per_frame = value / result["frames"]
            row = {"size": size, "impl": key, "frames": result["frames"], "messages": result["messages"],
                   ("ir_per_message" if args.callgrind else "cpu_us_per_message"): round(per_message, 3),
                   ("ir_per_frame" if args.callgrind else "cpu_us_per_frame"): round(per_frame, 3),
                   "wall_us_per_message": round(result["wall_s"] * 1e6 / result["messages"], 3),
                   "load1": round(load, 2)}
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{size:6d} {key:>4} {result['frames']:6d} {result['messages']:5d}  {per_message:18.2f} "
                      f"{per_frame:18.2f}  {load:.2f}")
        if "old" in implementations and not args.json:
            metric = "ir" if args.callgrind else "cpu_s"
            print(f"{size:6d} {'new/old':>11}  {best['new', size][metric] / best['old', size][metric]:25.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from scripts._standalone import standalone

    return standalone(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
