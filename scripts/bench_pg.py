"""Microbenchmark of the packing layer (totemd.pg): CPU per frame and per
message of ``Packer.submit``, ``Packer.take_frame`` and ``Unpacker.feed``.

::

    python -m scripts.bench_pg [--against REV] [--new REV] [--rounds 3] [--repeat 5]
                               [--callgrind] [--scale 1] [--workload 64B ...]
                               [--take-frames N] [--json]

Workloads, at the frame payload totemd uses at netmtu 1500
(``TotemParams().frame_payload_max``, 1408 bytes): 64 B messages packed (~21 per
frame), 1 KiB messages packed (a frame carries a bit more than one, so most
messages are split across two frames), 8 KiB and 64 KiB messages fragmented.

How: for each workload a fresh Packer gets all messages (submit timed), then
every frame is taken (take_frame timed; with ``--take-frames N``, N at a
time with ``Packer.take_frames`` where the code has it, as a token visit
would), then a fresh Unpacker is fed every
payload (feed timed). Each phase is timed with ``time.process_time`` around
its whole loop; the best of ``--repeat`` runs is kept.

``--against REV`` compares with the totemd package of a git revision: both
implementations run in child processes (``git archive REV totemd`` unpacked
in a temporary directory for the old one), alternating ``--rounds`` times in
the same minutes, and the table shows both and the ratio new/old. ``--new
REV`` measures a revision rather than the work tree as the new one. Every
row carries the 1-minute load average: on a shared machine the numbers are
only comparable within one run.

``--callgrind`` counts instructions instead (``valgrind --tool=callgrind``,
unaffected by the machine's load; slow, so use ``--scale 0.1``): each phase
by the difference of runs that stop after the one before it and after it,
the start-up by a run of zero messages. The columns are then instructions
per frame and per message.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "measure", "WORKLOADS"]

ROOT = Path(__file__).resolve().parent.parent
# name -> (message size in bytes, messages per run at --scale 1)
WORKLOADS: dict[str, tuple[int, int]] = {
    "64B": (64, 42_000),
    "1KiB": (1024, 4_000),
    "8KiB": (8192, 600),
    "64KiB": (65536, 80),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--against", metavar="REV",
                        help="also run the totemd.pg of this git revision and compare")
    parser.add_argument("--new", metavar="REV",
                        help="measure the totemd.pg of this git revision rather than the work tree")
    parser.add_argument("--rounds", type=int, default=3,
                        help="with --against: alternations old/new, best kept (default 3)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed runs per workload in one process, best kept (default 5)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the message counts (default 1)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append",
                        help="run only this workload (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--impl-dir", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stop-after", default="feed", help=argparse.SUPPRESS)
    parser.add_argument("--take-frames", type=int, default=0, metavar="N",
                        help="take the frames N at a time with Packer.take_frames (a visit's "
                             "worth, e.g. 17) where the code has it; default: take_frame each")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions with valgrind instead of timing (slow; "
                             "per phase by difference of runs that stop after it)")


def _load_pg(impl_dir: str | None) -> Any:
    """totemd.pg, from ``impl_dir``/totemd when given (the editable install's
    finder would otherwise always answer with the work tree's)."""
    if impl_dir is not None:
        init = Path(impl_dir) / "totemd" / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            "totemd", init, submodule_search_locations=[str(init.parent)])
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules["totemd"] = package
        spec.loader.exec_module(package)
    module = importlib.import_module("totemd.pg")
    if impl_dir is not None and not module.__file__.startswith(str(Path(impl_dir))):
        raise RuntimeError(f"loaded {module.__file__}, not the one under {impl_dir}")
    return module


def _frame_payload_max() -> int:
    from totemd.srp.params import TotemParams
    return TotemParams().frame_payload_max


def measure(pg: Any, size: int, count: int, frame_payload_max: int,
            repeat: int, stop_after: str = "feed", batch: int = 0) -> dict[str, float]:
    """Best-of-``repeat`` CPU seconds of the three phases for ``count``
    messages of ``size`` bytes, with the frame and message counts.
    ``batch`` > 0 takes the frames ``batch`` at a time with
    ``Packer.take_frames`` (a token visit's worth) where the packer has it.
    ``stop_after`` ("submit", "take") skips the later phases (for
    instruction counts of each phase by difference)."""
    messages = [(i.to_bytes(4, "big") * (size // 4 + 1))[:size] for i in range(count)]
    best = {"submit_s": float("inf"), "take_s": float("inf"), "feed_s": float("inf")}
    frames = 0
    for _ in range(repeat):
        packer = pg.Packer(frame_payload_max, max_queued_bytes=max(1 << 24, size * count * 2))
        submit = packer.submit
        clock = time.process_time
        start = clock()
        for message in messages:
            submit(message, False, message)
        submitted = clock()
        if stop_after == "submit":
            continue
        take = packer.take_frame
        payloads = []
        add = payloads.append
        start_take = clock()
        if batch > 0 and hasattr(packer, "take_frames"):
            take_frames = packer.take_frames
            while frames_taken := take_frames(batch):
                payloads += [frame[0] for frame in frames_taken]
        else:
            while (frame := take()) is not None:
                add(frame[0])
        taken = clock()
        frames = len(payloads)
        if stop_after == "take":
            continue
        unpacker = pg.Unpacker()
        feed = unpacker.feed
        out = []
        extend = out.extend
        start_feed = clock()
        for payload in payloads:
            extend(feed(1, payload))
        fed = clock()
        if out != messages:
            raise RuntimeError("round trip changed the messages")
        for key, value in (("submit_s", submitted - start), ("take_s", taken - start_take),
                           ("feed_s", fed - start_feed)):
            best[key] = min(best[key], value)
    return {**best, "frames": frames, "messages": count}


def _worker(args: argparse.Namespace) -> int:
    pg = _load_pg(args.impl_dir)
    frame_payload_max = _frame_payload_max()
    for name in args.workload or WORKLOADS:
        size, count = WORKLOADS[name]
        count = int(count * args.scale)
        result = (measure(pg, size, count, frame_payload_max, args.repeat, args.stop_after,
                          args.take_frames)
                  if count else {})
        print(json.dumps({"workload": name, **result}), flush=True)
    return 0


def _unpack_revision(revision: str, directory: Path) -> str:
    """The totemd package of a git revision, unpacked under ``directory``."""
    directory.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "totemd"],
                             check=True, capture_output=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True, timeout=60)
    return str(directory)


def _run_worker(args: argparse.Namespace, impl_dir: str | None) -> dict[str, dict[str, float]]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker",
               "--repeat", str(args.repeat), "--scale", str(args.scale),
               "--take-frames", str(args.take_frames)]
    for name in args.workload or WORKLOADS:
        command += ["--workload", name]
    if impl_dir is not None:
        command += ["--impl-dir", impl_dir]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {row["workload"]: row for row in rows}


def _instructions(args: argparse.Namespace, impl_dir: str | None, name: str,
                  stop_after: str, scale: float) -> int:
    """Instructions (callgrind's Ir) of one worker run."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, str(Path(__file__).resolve()), "--worker", "--repeat", "1",
               "--scale", str(scale), "--workload", name, "--stop-after", stop_after,
               "--take-frames", str(args.take_frames)]
    if impl_dir is not None:
        command += ["--impl-dir", impl_dir]
    # A fixed hash seed: dict and set layouts, hence instruction counts,
    # repeat from run to run.
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800,
                          env=dict(os.environ, PYTHONHASHSEED="0"))
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")


def _callgrind_rows(args: argparse.Namespace, impl_dir: str | None
                    ) -> dict[str, dict[str, float]]:
    """Per workload: instructions of each phase, by differences of runs at
    --scale and at zero messages (start-up and message generation cancel)."""
    rows: dict[str, dict[str, float]] = {}
    for name in args.workload or WORKLOADS:
        size, count = WORKLOADS[name]
        count = int(count * args.scale)
        marks = {stop: _instructions(args, impl_dir, name, stop, args.scale)
                 for stop in ("submit", "take", "feed")}
        zero = _instructions(args, impl_dir, name, "feed", 0.0)
        measured = measure(_load_pg(None), size, count, _frame_payload_max(), 1, "take",
                           args.take_frames)
        # "_s" keys hold instructions here; _per turns them into per-frame
        # and per-message figures all the same.
        rows[name] = {"submit_s": (marks["submit"] - zero) / 1e6,
                      "take_s": (marks["take"] - marks["submit"]) / 1e6,
                      "feed_s": (marks["feed"] - marks["take"]) / 1e6,
                      "frames": measured["frames"], "messages": count}
    return rows


def _per(row: dict[str, float]) -> dict[str, float]:
    frames, messages = row["frames"], row["messages"]
    pack = row["submit_s"] + row["take_s"]
    return {
        "take_us_per_frame": row["take_s"] / frames * 1e6,
        "feed_us_per_frame": row["feed_s"] / frames * 1e6,
        "submit_us_per_msg": row["submit_s"] / messages * 1e6,
        "pack_us_per_msg": pack / messages * 1e6,
        "feed_us_per_msg": row["feed_s"] / messages * 1e6,
        "frames": frames,
        "messages": messages,
    }


def _best(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {}
    for result in runs:
        for name, row in result.items():
            if name not in best:
                best[name] = dict(row)
                continue
            for key in ("submit_s", "take_s", "feed_s"):
                best[name][key] = min(best[name][key], row[key])
    return best


def run(args: argparse.Namespace) -> int:
    if args.worker:
        return _worker(args)
    implementations: dict[str, str | None] = {"new": None}
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as scratch:
        if args.new:
            implementations["new"] = _unpack_revision(args.new, Path(scratch) / "new")
        if args.against:
            implementations = {"old": _unpack_revision(args.against, Path(scratch) / "old"),
                               "new": implementations["new"]}
        runs: dict[str, list[dict[str, dict[str, float]]]] = {key: [] for key in implementations}
        for _ in range(1 if args.callgrind or not args.against else args.rounds):
            for key, impl_dir in implementations.items():
                runs[key].append(_callgrind_rows(args, impl_dir) if args.callgrind
                                 else _run_worker(args, impl_dir))
    load = os.getloadavg()[0]
    best = {key: _best(value) for key, value in runs.items()}
    unit = "ir" if args.callgrind else "us"
    columns = tuple(f"{c}_{unit}_per_{n}" for c, n in (
        ("take", "frame"), ("feed", "frame"), ("submit", "msg"), ("pack", "msg"), ("feed", "msg")))
    if not args.json:
        print(f"{'workload':8} {'impl':4} {'frames':>7} {'msgs':>6}  "
              + " ".join(f"{c:>18}" for c in columns) + "  load1")
    for name in args.workload or WORKLOADS:
        per = {key: _per(best[key][name]) for key in best if best[key][name]}
        if args.callgrind:
            # Instructions, not µs: the same figures under their own names.
            per = {key: {c.replace("_us_", "_ir_"): v for c, v in values.items()}
                   for key, values in per.items()}
        if not per:
            continue
        for key, values in per.items():
            if args.json:
                print(json.dumps({"workload": name, "impl": key, "load1": load, **values}))
                continue
            print(f"{name:8} {key:4} {values['frames']:7d} {values['messages']:6d}  "
                  + " ".join(f"{values[c]:18.3f}" for c in columns) + f"  {load:.2f}")
        if "old" in per and not args.json:
            ratio = " ".join(f"{per['new'][c] / per['old'][c]:18.2f}" if per["old"][c] else
                             f"{'-':>18}" for c in columns)
            print(f"{name:8} {'new/old':>4} {'':7} {'':6}  {ratio}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from scripts._standalone import standalone

    return standalone(__doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
