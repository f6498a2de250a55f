"""Token-visit microbenchmark of one Totem core (``coro bench core`` rows
"idle visit" and "loaded visit").

A 3-node ring (node ids 1, 2, 3, daemon parameters, ``deliver_frames`` and
``deliver_after_token`` as totemd runs its core) is formed by a small
synchronous driver on virtual time; node 2's core is then copied and fed,
as totemd's network loop feeds it, the packets of one visit after another:

- idle: ``receive_many([token], now, False)`` + ``take_actions()`` (nothing
  queued anywhere, seq == aru);
- loaded: ``receive_many(frames + [token], now, False)`` + ``take_actions()``
  + ``deliver_pending()`` + ``take_actions()``, with ``FRAMES_IN`` received
  frames of 8 KiB messages (from nodes 3 and 1, fragments as the packer makes
  them) and ``FRAMES_OUT`` frames of node 2's own 8 KiB messages to originate
  (the token's fcc leaves exactly that budget).

The packets are built before the clock starts (tokens with the next
token_seq, frames with the next seqs), so only the core's work is timed:
``time.process_time`` around the loop, the best of ``repeat`` runs, each on
a fresh copy of the formed core. The submits that refill node 2's send queue
between loaded visits are timed apart and not counted.
"""

from __future__ import annotations

import copy
import time
from collections import deque

from totemd.codec import decode, encode_mcast, encode_token
from totemd.pg import Packer
from totemd.srp import (CancelTimer, SendMulticast, SendUnicast, SetTimer, SrpCore, State,
                        TotemParams)
from totemd.srp.messages import Mcast, OrfToken
from totemd.srp.seqnum import SEQ_MASK

__all__ = ["form_ring", "idle_visits", "loaded_visits", "measure_visits", "FRAMES_IN",
           "FRAMES_OUT", "MESSAGE_SIZE"]

NODES = (1, 2, 3)
MEASURED = 2
PREDECESSOR = 1  # the token reaches node 2 from node 1 (ring order 1 -> 2 -> 3)
FRAMES_IN = 14  # frames received between two visits (half from 3, half from 1)
FRAMES_OUT = 13  # frames node 2 originates per visit
MESSAGE_SIZE = 8192
_STEPS_MAX = 200_000  # bound on the formation loop


def form_ring(params: TotemParams | None = None) -> SrpCore:
    """Form the 3-node ring and return node 2's core right after it forwarded
    an OPERATIONAL token (its next token comes from node 1).

    Raises:
        RuntimeError: the ring did not form within the step bound.
    """
    params = params if params is not None else TotemParams(nodes=len(NODES))
    cores = {node: SrpCore(node, params, deliver_frames=True, deliver_after_token=True)
             for node in NODES}
    timers: dict[int, dict] = {node: {} for node in NODES}
    packets: deque[tuple[int, bytes]] = deque()
    now = 0.0

    def execute(node: int) -> bool:
        """Run ``node``'s actions; True if it forwarded a token in OPERATIONAL."""
        forwarded = False
        for action in cores[node].take_actions():
            kind = type(action)
            if kind is SendUnicast:
                packets.append((action.dest, action.data))
                forwarded = True
            elif kind is SendMulticast:
                packets.extend((other, action.data) for other in NODES if other != node)
            elif kind is SetTimer:
                timers[node][action.timer] = action.deadline_ms
            elif kind is CancelTimer:
                timers[node].pop(action.timer, None)
        return forwarded and cores[node].state is State.OPERATIONAL

    for node in NODES:
        cores[node].start(now, None)
        execute(node)
    for _ in range(_STEPS_MAX):
        if packets:
            dest, data = packets.popleft()
            cores[dest].receive_many([data], now)
            if (execute(dest) and dest == MEASURED and cores[dest].delivery_owed is False
                    and all(core.state is State.OPERATIONAL and len(core.members) == len(NODES)
                            for core in cores.values())):
                return cores[MEASURED]
            continue
        node, timer, deadline = min(((n, t, d) for n in NODES for t, d in timers[n].items()),
                                    key=lambda item: item[2])
        del timers[node][timer]
        now = max(now, deadline)
        cores[node].timer_expired(timer, now)
        execute(node)
    raise RuntimeError("the 3-node ring did not form")


def _last_token(core: SrpCore) -> OrfToken:
    """The token ``core`` forwarded last (what its next token follows)."""
    token = decode(core._last_token[1])  # the bench may look inside its own core
    assert isinstance(token, OrfToken)
    return token


def idle_visits(core: SrpCore, count: int) -> list[bytes]:
    """``count`` successive idle tokens for ``core`` (from its predecessor)."""
    last = _last_token(core)
    ring_id, seq = last.ring_id, last.seq
    return [encode_token(OrfToken(sender=PREDECESSOR, ring_id=ring_id, seq=seq,
                                  token_seq=(last.token_seq + 2 + 3 * i) & SEQ_MASK, aru=seq,
                                  aru_addr=0, fcc=0, backlog=0, retrans_pending=0, rtr=()))
            for i in range(count)]


def loaded_visits(core: SrpCore, count: int, params: TotemParams) -> list[list[bytes]]:
    """``count`` successive loaded visits for ``core``: each the FRAMES_IN
    frames of nodes 3 and 1 (in that order) and then node 1's token.

    The seqs leave room for the FRAMES_OUT frames ``core`` stamps per visit.
    """
    last = _last_token(core)
    ring_id = last.ring_id
    packers = {node: Packer(params.frame_payload_max, params.max_message_size,
                            params.max_queued_bytes) for node in (3, 1)}
    message = bytes(range(256)) * (MESSAGE_SIZE // 256)
    seq = last.seq
    token_seq = last.token_seq
    visits = []
    for _ in range(count):
        packets = []
        for node, share in ((3, FRAMES_IN - FRAMES_IN // 2), (1, FRAMES_IN // 2)):
            packer = packers[node]
            for _frame in range(share):
                frame = packer.take_frame()
                while frame is None:
                    packer.submit(message)
                    frame = packer.take_frame()
                seq = (seq + 1) & SEQ_MASK
                packets.append(encode_mcast(Mcast(sender=node, ring_id=ring_id, seq=seq,
                                                  safe=False, payload=frame.payload)))
        token_seq = (token_seq + 2) & SEQ_MASK
        # fcc: the other nodes' frames this rotation plus what leaves node 2
        # exactly FRAMES_OUT of the window (max_messages is above that).
        fcc = params.window_size - FRAMES_OUT
        packets.append(encode_token(OrfToken(
            sender=PREDECESSOR, ring_id=ring_id, seq=seq, token_seq=token_seq,
            aru=(seq - FRAMES_IN) & SEQ_MASK, aru_addr=0, fcc=fcc, backlog=0,
            retrans_pending=0, rtr=())))
        visits.append(packets)
        seq = (seq + FRAMES_OUT) & SEQ_MASK
        token_seq = (token_seq + 1) & SEQ_MASK
    return visits


def _time_idle(core: SrpCore, tokens: list[bytes], now: float) -> tuple[float, int]:
    receive_many = core.receive_many
    take_actions = core.take_actions
    sent = 0
    start = time.process_time()
    for token in tokens:
        receive_many([token], now, False)
        sent += len(take_actions())
        now += 0.05
    return time.process_time() - start, sent


def _time_loaded(core: SrpCore, visits: list[list[bytes]], now: float) -> tuple[float, int]:
    receive_many = core.receive_many
    take_actions = core.take_actions
    message = b"\x5a" * MESSAGE_SIZE
    outside = 0.0
    sends = core.stats().mcast_tx
    start = time.process_time()
    for packets in visits:
        mark = time.process_time()
        while core.queued_frames() < FRAMES_OUT + 1:
            core.submit(message)
        outside += time.process_time() - mark
        receive_many(packets, now, False)
        take_actions()
        if core.delivery_owed:
            core.deliver_pending()
            take_actions()
        now += 0.5
    cpu = time.process_time() - start - outside
    return cpu, core.stats().mcast_tx - sends


def measure_visits(idle_count: int = 20_000, loaded_count: int = 400,
                   repeat: int = 5) -> list[dict]:
    """Time idle and loaded visits of node 2 (the best of ``repeat`` runs).

    Returns:
        One row per case: us per visit, us per frame (loaded: frames received
        plus originated), visits, CPU seconds.
    """
    params = TotemParams(nodes=len(NODES))
    formed = form_ring(params)
    now = formed._now + 1.0
    tokens = idle_visits(formed, idle_count)
    visits = loaded_visits(formed, loaded_count, params)
    rows = []
    best = min((_time_idle(copy.deepcopy(formed), tokens, now) for _ in range(max(1, repeat))),
               key=lambda result: result[0])
    rows.append({"case": "idle visit", "visits": idle_count, "core_seconds": best[0],
                 "us_per_visit": 1e6 * best[0] / idle_count, "frames_per_visit": 0,
                 "us_per_frame": 0.0})
    results = []
    for _ in range(max(1, repeat)):
        core = copy.deepcopy(formed)
        results.append(_time_loaded(core, visits, now))
    cpu, sends = min(results, key=lambda result: result[0])
    if sends != loaded_count * FRAMES_OUT:
        raise RuntimeError(f"loaded visits originated {sends} frames, expected "
                           f"{loaded_count * FRAMES_OUT}")
    frames = FRAMES_IN + FRAMES_OUT
    rows.append({"case": "loaded visit", "visits": loaded_count, "core_seconds": cpu,
                 "us_per_visit": 1e6 * cpu / loaded_count, "frames_per_visit": frames,
                 "us_per_frame": 1e6 * cpu / (loaded_count * frames)})
    return rows


if __name__ == "__main__":
    import os
    print("load average", os.getloadavg())
    for row in measure_visits():
        print(row)
