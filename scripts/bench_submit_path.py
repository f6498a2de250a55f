"""Microbenchmark of one local client's submit path in totemd, in one process.

::

    python -m scripts.bench_submit_path [--size 8192] [--offer 4] [--requests 400] [--rounds 5]
                                        [--take-frames] [--against REV] [--callgrind] [--json]

What a saturated node does for its local client at 8 KiB, with the real code
from the request ring to the frames: a real :class:`coroipc.IpcServer`
serving the real ``totem`` service (``totemd.local.TotemService``), whose
daemon is a stand-in made of the real ``LocalSideMixin.local_submit_many``
(the send queue's bounds, the origin header) over a stand-in core that runs
the real ``SrpCore.submit_many`` on a real ``Packer`` at netmtu 1500
(``TotemParams()`` defaults: 68 queued frames, 1408-byte frame payloads).

One step, repeated ``--requests`` times after a warm-up:

1. the client writes a SUBMIT_MANY of ``--offer`` messages of ``--size``
   bytes into its request ring (as ``TotemClient.offer_many`` does for
   messages under 16 KiB: one joined request; not measured);
2. ``serve``: the daemon's IPC passes (``process(0.0, poll=False)`` until one
   finds nothing, then ``flush_wakes``): decode, queue what the bounds take,
   answer; the queue is kept full, so most offers are taken in part and the
   rest gets TRY_AGAIN, as in ``coro bench totem``;
3. the client reads the reply (not measured);
4. ``visit``: the token visit's share, ``Packer.take_frame`` for 12 frames
   (what a node originates per visit at 8 KiB), each frame's completed
   handles counted back into the daemon as ``Originated`` does; with
   ``--take-frames``, one ``Packer.take_frames(12)`` call instead (the same
   frames) where the code has it.

Reported per step (the median of ``--rounds`` rounds): CPU µs of ``serve``
and of ``visit`` (thread CPU time), messages accepted and refused per
request, and CPU per accepted message. ``--callgrind`` counts instructions
instead (``valgrind --tool=callgrind``, one run per section, only that
section collected), which the machine's load does not move.
``--against REV`` runs the same steps with the ``totemd``/``coroipc``/
``clients`` packages of a git revision too, alternating, in the same minutes.
Every row carries the 1-minute load average.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["add_arguments", "run", "main"]

ROOT = Path(__file__).resolve().parent.parent
FRAMES_PER_VISIT = 12
WARMUP_REQUESTS = 50
SECTIONS = ("serve", "visit")


def build(run_dir: str | None = None, params: Any = None) -> dict[str, Any]:
    """Server, service, daemon stand-in and one connected client, in
    ``run_dir`` (None: a new temporary directory, removed by Steps.close).
    The imports are here: a worker may run another revision's packages.

    Returns:
        wire (the local codec), daemon, service, server, client, packer,
        run_dir, own_dir (whether run_dir was made here).
    """
    import threading
    from types import SimpleNamespace

    from coroipc import IpcClient, IpcServer
    from totemd import local_codec as wire
    from totemd.daemon_local import QUEUE_VISITS, LocalSideMixin, default_max_queued_messages
    from totemd.local import TotemService
    from totemd.pg import Packer
    from totemd.srp.core import SrpCore
    from totemd.srp.params import TotemParams
    from totemd.srp import core as core_module

    params = params or TotemParams()

    class Core:
        """What the daemon asks of SrpCore: its real submit_many on a real Packer."""

        submit_many = SrpCore.submit_many

        def __init__(self) -> None:
            self._packer = Packer(params.frame_payload_max, params.max_message_size,
                                  params.max_queued_bytes)
            self._counters = SimpleNamespace(submit_rejected=0)
            self._state = core_module.State.INITIAL  # no ring to wake

        def queued_frames(self) -> int:
            return self._packer.pending_frames()

    class Daemon(LocalSideMixin):
        node_id = 1
        inc = 7

        def __init__(self) -> None:
            self.settings = SimpleNamespace(params=params)
            self.core = Core()
            self._started, self._draining = True, False
            self.max_queued_messages = default_max_queued_messages(params)
            self.max_queued_frames = QUEUE_VISITS * params.max_messages
            self._frame_payload = params.frame_payload_max
            self._sseq = self._originated = 0
            self.evslog, self._last_delivered = None, None
            self._counts = dict.fromkeys(("messages_submitted", "bytes_submitted",
                                          "try_again_queue_messages", "try_again_queue_frames",
                                          "try_again_queue_bytes"), 0)

        def current_ring_id(self) -> tuple[int, int]:
            return (1, 4)

        def current_members(self) -> tuple[int, ...]:
            return (1, 2, 3)

    daemon = Daemon()
    service = TotemService(daemon)  # type: ignore[arg-type]
    own_dir = run_dir is None
    if run_dir is None:
        run_dir = tempfile.mkdtemp(prefix="bench-submit-")
    server = IpcServer(run_dir, [service], defer_wakes=True)
    server.start()
    box: list[Any] = []
    done = threading.Event()

    def connect() -> None:
        try:
            client = IpcClient.connect(TotemService.name, run_dir=run_dir, timeout=5.0)
            box.append(client)
            client.request(wire.Function.HELLO, wire.encode_hello(True, batch=True), timeout=5.0)
        except BaseException as error:  # reported below
            box.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=connect)
    thread.start()
    deadline = time.monotonic() + 10.0
    while not done.is_set() and time.monotonic() < deadline:
        server.process(0.005)
    thread.join(5.0)
    if not box or isinstance(box[-1], BaseException):
        server.close()
        raise RuntimeError(f"the client did not connect: {box[-1] if box else 'timeout'}")
    for _ in range(10):
        server.process(0.0)
    server.flush_wakes()
    return {"wire": wire, "daemon": daemon, "service": service, "server": server, "client": box[0],
            "run_dir": run_dir, "own_dir": own_dir, "packer": daemon.core._packer}


class Steps:
    """The four steps of the module docstring, as methods over one setup."""

    def __init__(self, setup: dict[str, Any], size: int, offer: int) -> None:
        self.setup = setup
        wire = setup["wire"]
        self.request = wire.encode_submit_many([(bytes(size), False)] * offer)
        self.offer = offer
        self.function = int(wire.Function.SUBMIT_MANY)
        self.decode_reply = wire.decode_submit_many_reply
        self.ok, self.try_again = wire.Status.OK, wire.Status.TRY_AGAIN
        self.client = setup["client"]
        self.server = setup["server"]
        self.daemon = setup["daemon"]
        self.packer = setup["packer"]
        from coroipc._wire import put_message
        self.put_message = put_message
        self.ident = 0
        self.accepted = self.refused = self.requests = self.frames = 0

    def write(self) -> None:
        self.ident += 1
        self.put_message(self.client.request_ring, self.function, 0, self.ident, self.request)

    def serve(self) -> None:
        process = self.server.process
        for _ in range(4):  # as totemd's _serve_local: passes until one finds nothing
            if not process(0.0, poll=False):
                break
        self.server.flush_wakes()

    def read(self) -> None:
        replies = self.client.response_ring.read_batch()
        if len(replies) != 1:
            raise RuntimeError(f"{len(replies)} replies to one SUBMIT_MANY")
        status, accepted, _first = self.decode_reply(replies[0][16:])
        if status is not (self.ok if accepted == self.offer else self.try_again):
            raise RuntimeError(f"SUBMIT_MANY answered {status.name} with {accepted} accepted")
        self.accepted += accepted
        self.refused += self.offer - accepted
        self.requests += 1

    def visit_batched(self) -> None:
        """visit through Packer.take_frames (one call per visit), where the
        code has it (what the core would call)."""
        frames = self.packer.take_frames(FRAMES_PER_VISIT)
        self.frames += len(frames)
        self.daemon._originated += sum(len(frame[2]) for frame in frames)

    def visit(self) -> None:
        take = self.packer.take_frame
        originated = 0
        for _ in range(FRAMES_PER_VISIT):
            frame = take()
            if frame is None:
                break
            originated += len(frame[2])
            self.frames += 1
        self.daemon._originated += originated

    def close(self) -> None:
        self.client.close()
        self.server.close()
        if self.setup["own_dir"]:
            os.rmdir(self.setup["run_dir"])


def _wrapped(function: Callable[[], None]) -> Callable[[], None]:
    """``function`` called from inside functools.reduce: the C function
    callgrind's --toggle-collect switches collection on for."""
    def call(_a: Any, _b: Any) -> None:
        function()
    pair = (None, None)
    return lambda: functools.reduce(call, pair)


def _worker(args: argparse.Namespace) -> int:
    """One measurement in this process; prints one JSON line."""
    steps = Steps(build(), args.size, args.offer)
    try:
        for _ in range(WARMUP_REQUESTS):
            steps.write(); steps.serve(); steps.read(); steps.visit()
        steps.accepted = steps.refused = steps.requests = steps.frames = 0
        serve, visit = steps.serve, steps.visit
        if args.take_frames and hasattr(steps.packer, "take_frames"):
            visit = steps.visit_batched
        if args.section == "serve":
            serve = _wrapped(serve)
        elif args.section == "visit":
            visit = _wrapped(visit)
        elif args.section == "empty":
            empty = _wrapped(lambda: None)
            visit = (lambda inner: (lambda: (empty(), inner())))(visit)
        clock = time.thread_time
        serve_s = visit_s = 0.0
        for _ in range(args.requests):
            steps.write()
            start = clock()
            serve()
            middle = clock()
            steps.read()
            visit_start = clock()
            visit()
            end = clock()
            serve_s += middle - start
            visit_s += end - visit_start
        print(json.dumps({"serve_s": serve_s, "visit_s": visit_s, "requests": steps.requests,
                          "accepted": steps.accepted, "refused": steps.refused,
                          "frames": steps.frames}), flush=True)
    finally:
        steps.close()
    return 0


def _unpack_revision(revision: str, directory: Path) -> str:
    directory.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "totemd", "coroipc",
                              "clients"], check=True, capture_output=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True, timeout=60)
    return str(directory)


def _command(args: argparse.Namespace, section: str, requests: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", "--size", str(args.size),
            "--offer", str(args.offer), "--requests", str(requests), "--section", section,
            *(["--take-frames"] if args.take_frames else [])]


def _env(impl_dir: str | None) -> dict[str, str]:
    path = [impl_dir] if impl_dir else []
    return dict(os.environ, PYTHONHASHSEED="0",
                PYTHONPATH=os.pathsep.join([*path, str(ROOT)]))


def _run_worker(args: argparse.Namespace, impl_dir: str | None) -> dict[str, float]:
    done = subprocess.run(_command(args, "none", args.requests), check=True, capture_output=True,
                          text=True, timeout=600, env=_env(impl_dir))
    return json.loads(done.stdout.strip().splitlines()[-1])


def _instructions(args: argparse.Namespace, impl_dir: str | None, section: str) -> tuple[int, dict]:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               "--collect-atstart=no", "--toggle-collect=*functools_reduce*",
               *_command(args, section, args.requests)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=3600,
                          env=_env(impl_dir))
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1]), json.loads(done.stdout.strip().splitlines()[-1])
    raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")


def _callgrind_row(args: argparse.Namespace, impl_dir: str | None) -> dict[str, float]:
    empty, _ = _instructions(args, impl_dir, "empty")
    row: dict[str, float] = {}
    for section in SECTIONS:
        count, counts = _instructions(args, impl_dir, section)
        row.update({key: value for key, value in counts.items() if not key.endswith("_s")})
        row[f"{section}_s"] = (count - empty) / 1e6  # "seconds" are millions of instructions here
    return row


def _per(row: dict[str, float]) -> dict[str, float]:
    requests, accepted = row["requests"], max(1, row["accepted"])
    return {"serve_per_request": row["serve_s"] / requests * 1e6,
            "visit_per_request": row["visit_s"] / requests * 1e6,
            "serve_per_message": row["serve_s"] / accepted * 1e6,
            "visit_per_message": row["visit_s"] / accepted * 1e6,
            "total_per_message": (row["serve_s"] + row["visit_s"]) / accepted * 1e6,
            "accepted_per_request": row["accepted"] / requests,
            "refused_per_request": row["refused"] / requests,
            "frames_per_request": row["frames"] / requests}


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=8192, help="message size in bytes")
    parser.add_argument("--offer", type=int, default=4, help="messages per SUBMIT_MANY")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median is shown)")
    parser.add_argument("--against", metavar="REV", help="also measure this git revision")
    parser.add_argument("--callgrind", action="store_true",
                        help="instructions (valgrind) instead of CPU time; one round")
    parser.add_argument("--take-frames", action="store_true",
                        help="visit with one Packer.take_frames call (where the code has it)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--section", default="none", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.worker:
        return _worker(args)
    unit = "instructions" if args.callgrind else "cpu_us"
    with tempfile.TemporaryDirectory(prefix="bench-submit-rev-") as scratch:
        implementations: dict[str, str | None] = {"new": None}
        if args.against:
            implementations = {"old": _unpack_revision(args.against, Path(scratch) / "old"),
                               "new": None}
        rows: dict[str, list[dict[str, float]]] = {key: [] for key in implementations}
        for _ in range(1 if args.callgrind else max(1, args.rounds)):
            for key, impl_dir in implementations.items():
                raw = _callgrind_row(args, impl_dir) if args.callgrind else _run_worker(args, impl_dir)
                rows[key].append(_per(raw))
    load = round(os.getloadavg()[0], 2)
    results = [{"impl": key, "size": args.size, "offer": args.offer, "unit": unit, "load": load,
                **_median(found)} for key, found in rows.items()]
    if args.json:
        for result in results:
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))
        return 0
    print(f"submit path, {args.offer} x {args.size} B offered per request, {unit}, load {load}")
    print(f"{'impl':<5} {'serve/req':>10} {'visit/req':>10} {'serve/msg':>10} {'visit/msg':>10} "
          f"{'total/msg':>10} {'acc/req':>8} {'ref/req':>8} {'frames/req':>10}")
    for result in results:
        print(f"{result['impl']:<5} {result['serve_per_request']:>10.2f} "
              f"{result['visit_per_request']:>10.2f} {result['serve_per_message']:>10.2f} "
              f"{result['visit_per_message']:>10.2f} {result['total_per_message']:>10.2f} "
              f"{result['accepted_per_request']:>8.2f} {result['refused_per_request']:>8.2f} "
              f"{result['frames_per_request']:>10.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from scripts._standalone import standalone

    return standalone(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
