"""``coro bench core``: frames and messages per second one Totem core
processes, measured in the simulator (no network, no clock: pure core CPU).

Three nodes, no faults, a saturating workload: 64-byte messages (packed many
to a frame) and 8 KiB messages (fragmented over several frames).

How: the simulator runs the cluster once while node 2's core records every
call it gets (start, receive, timer_expired, submit, take_actions) with its
arguments. The core is pure, so a fresh core fed the same calls does exactly
the same work; that replay (after the ring has formed) is timed with one
process-CPU clock around the whole loop, so neither the simulator nor a
per-call timer is charged to the core. The counts are the frames and messages
node 2 delivered during the replay. ``--profile`` prints a cProfile of one
replay (the core's functions only).

Two more rows time single token visits of node 2 in a formed ring
(``totemd.sim.visit_bench``): an idle visit (the token alone) and a loaded
one (14 received 8 KiB-fragment frames, the token, 13 frames originated and
everything delivered), as totemd's loop drives its core.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import time

from totemd.sim.cluster import Cluster, SimConfig, sim_params
from totemd.sim.visit_bench import FRAMES_IN, FRAMES_OUT, measure_visits
from totemd.srp import SrpCore, SubmitRejected

__all__ = ["add_arguments", "run", "measure", "record", "replay", "Recording", "RecordingCore"]

CASES = (("64 B packed", 64, 20_000.0), ("8 KiB fragmented", 8192, 1_500.0))
MEASURED_NODE = 2
FORMED_MS = 200.0  # the ring is formed by then; the replay times what follows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--virtual-ms", type=float, default=2000.0,
                        help="virtual time to simulate per case (default 2000)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="replays per case, best kept (default 3)")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one replay of each case")
    parser.add_argument("--per-packet", action="store_true",
                        help="drive the core with receive and per-message Deliver actions "
                             "(the older way) instead of receive_many and DeliverFrame")
    parser.add_argument("--visits", type=int, default=20_000,
                        help="idle token visits timed per run (default 20000; 0: skip the "
                             "visit rows)")
    parser.add_argument("--json", action="store_true", help="one JSON object per case")


class RecordingCore(SrpCore):
    """An SrpCore that keeps the calls it gets, to be replayed on a fresh one."""

    def __init__(self, *args, **kwargs) -> None:
        self.calls: list[tuple[str, tuple]] = []
        rng = kwargs.get("rng")
        self._created = (args, kwargs, rng.getstate() if rng is not None else None)
        super().__init__(*args, **kwargs)

    def fresh(self, **overrides) -> SrpCore:
        """A plain SrpCore in the state this one was created in (its rng
        too), with constructor arguments replaced by ``overrides``."""
        args, kwargs, rng_state = self._created
        kwargs = dict(kwargs, **overrides)
        if rng_state is not None:
            kwargs["rng"] = random.Random()
            kwargs["rng"].setstate(rng_state)
        return SrpCore(*args, **kwargs)

    def start(self, *args):
        self.calls.append(("start", args))
        return super().start(*args)

    def receive(self, *args):
        self.calls.append(("receive", args))
        return super().receive(*args)

    def receive_many(self, packets, now_ms, deliver=True):
        packets = list(packets)
        self.calls.append(("receive_many", (packets, now_ms, deliver)))
        return super().receive_many(packets, now_ms, deliver)

    def deliver_pending(self):
        self.calls.append(("deliver_pending", ()))
        return super().deliver_pending()

    def timer_expired(self, *args):
        self.calls.append(("timer_expired", args))
        return super().timer_expired(*args)

    def submit(self, message, safe=False, handle=None):
        self.calls.append(("submit", (message, safe, handle)))
        return super().submit(message, safe, handle)

    def submit_many(self, items):
        items = list(items)
        self.calls.append(("submit_many", (items,)))
        return super().submit_many(items)

    def leave(self, *args):
        self.calls.append(("leave", args))
        return super().leave(*args)

    def take_actions(self):
        self.calls.append(("take_actions", ()))
        return super().take_actions()


class Recording:
    """Node 2's calls during one simulated run (see ``record``)."""

    def __init__(self, core: RecordingCore, formed_index: int) -> None:
        self.calls = core.calls
        self.formed_index = formed_index
        self.new_core = core.fresh
        # What the recorded core ended with: a replay must end the same.
        self.final_stats = core.stats()


def record(size: int, rate_per_s: float, virtual_ms: float, seed: int = 1) -> Recording:
    """Simulate 3 nodes for ``virtual_ms`` after formation, recording node 2."""
    config = SimConfig(nodes=3, seed=seed, params=sim_params(3), sizes=(size,),
                       size_weights=(1,), safe_fraction=0.0,
                       submit_interval_ms=3000.0 / rate_per_s)
    recorded: list[RecordingCore] = []

    def factory(node_id, *args, **kwargs):
        if node_id != MEASURED_NODE:
            return SrpCore(node_id, *args, **kwargs)
        core = RecordingCore(node_id, *args, **kwargs)
        recorded.append(core)
        return core

    cluster = Cluster(config, core_factory=factory)
    for node in (1, 2, 3):
        cluster.start_node(node)
    cluster.run_until(FORMED_MS)
    formed_index = len(recorded[0].calls)
    cluster.run_until(FORMED_MS + virtual_ms)
    return Recording(recorded[0], formed_index)


def replay(recording: Recording, profiler: cProfile.Profile | None = None,
           per_packet: bool = False) -> dict:
    """Feed a fresh core the recorded calls; time those after formation.

    Args:
        recording: what node 2's core got.
        profiler: enabled around the timed part only.
        per_packet: drive the core the older way: each burst handed to
            ``receive`` packet by packet, and one ``Deliver`` per message
            (``deliver_frames=False``) instead of one ``DeliverFrame`` per
            frame. The work is otherwise the same.

    Returns:
        frames and messages delivered in the timed part, its CPU seconds, and
        the core's final stats (``SrpStats``, under "stats").
    """
    core = (recording.new_core(deliver_frames=False, deliver_after_token=False) if per_packet
            else recording.new_core())
    calls = []
    for name, args in recording.calls:
        if per_packet and name == "receive_many":
            packets, now_ms, _deliver = args
            calls.extend((core.receive, (packet, now_ms)) for packet in packets)
        else:
            calls.append((getattr(core, name), args))
    formed = _formed_index(recording, per_packet)
    for method, args in calls[:formed]:
        try:
            method(*args)
        except SubmitRejected:  # refused in the recorded run too
            pass
    timed = calls[formed:]
    before = core.stats()
    if profiler is not None:
        profiler.enable()
    start = time.process_time()
    for method, args in timed:
        try:
            method(*args)
        except SubmitRejected:
            pass
    cpu = time.process_time() - start
    if profiler is not None:
        profiler.disable()
    after = core.stats()
    return {"frames": after.frames_delivered - before.frames_delivered,
            "messages": after.messages_delivered - before.messages_delivered,
            "calls": len(timed), "core_seconds": cpu, "stats": after}


def _formed_index(recording: Recording, per_packet: bool) -> int:
    """Where the timed calls start in the list ``replay`` builds."""
    head = recording.calls[:recording.formed_index]
    if not per_packet:
        return len(head)
    return sum(len(args[0]) if name == "receive_many" else 1 for name, args in head)


def measure(size: int, rate_per_s: float, virtual_ms: float, repeat: int = 3,
            seed: int = 1, per_packet: bool = False) -> dict:
    """Record one case and replay it ``repeat`` times; the fastest replay counts."""
    recording = record(size, rate_per_s, virtual_ms, seed)
    best = min((replay(recording, per_packet=per_packet) for _ in range(max(1, repeat))),
               key=lambda row: row["core_seconds"])
    cpu = best["core_seconds"]
    best = {key: value for key, value in best.items() if key != "stats"}
    return dict(best, size=size, per_packet=per_packet,
                frames_per_s=best["frames"] / cpu if cpu else 0.0,
                messages_per_s=best["messages"] / cpu if cpu else 0.0,
                us_per_frame=1e6 * cpu / best["frames"] if best["frames"] else 0.0,
                virtual_messages_per_s=best["messages"] / (virtual_ms / 1000.0))


def run(args: argparse.Namespace) -> int:
    if args.profile:
        for label, size, rate in CASES:
            profiler = cProfile.Profile(time.process_time)  # CPU time: the box is shared
            replay(record(size, rate, args.virtual_ms), profiler, per_packet=args.per_packet)
            print(f"== {label}")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0
    rows = []
    for label, size, rate in CASES:
        row = measure(size, rate, args.virtual_ms, args.repeat, per_packet=args.per_packet)
        row["case"] = label
        rows.append(row)
        if args.json:
            print(json.dumps(row))
    visit_rows = []
    if args.visits > 0:
        visit_rows = measure_visits(idle_count=args.visits,
                                    loaded_count=max(1, args.visits // 20), repeat=args.repeat)
        if args.json:
            for row in visit_rows:
                print(json.dumps(row))
    if not args.json:
        mode = "receive + Deliver" if args.per_packet else "receive_many + DeliverFrame"
        print(f"{'case':<18} {'frames/s':>10} {'msgs/s':>10} {'us/frame':>9} {'frames':>8} "
              f"{'msgs':>8} {'core s':>7}  (node 2 of 3, CPU inside its core; {mode})")
        for row in rows:
            print(f"{row['case']:<18} {row['frames_per_s']:>10.0f} {row['messages_per_s']:>10.0f} "
                  f"{row['us_per_frame']:>9.2f} {row['frames']:>8} {row['messages']:>8} "
                  f"{row['core_seconds']:>7.3f}")
        if visit_rows:
            print(f"\n{'case':<18} {'us/visit':>10} {'us/frame':>10} {'visits':>8} {'core s':>7}"
                  f"  (node 2 of 3: receive_many + take_actions [+ deliver_pending]; "
                  f"loaded: {FRAMES_IN} frames in, {FRAMES_OUT} out)")
            for row in visit_rows:
                per_frame = f"{row['us_per_frame']:>10.2f}" if row["frames_per_visit"] else \
                    f"{'-':>10}"
                print(f"{row['case']:<18} {row['us_per_visit']:>10.2f} {per_frame} "
                      f"{row['visits']:>8} {row['core_seconds']:>7.3f}")
    return 0
