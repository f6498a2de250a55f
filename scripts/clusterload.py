"""Background load for local clusters: ``python -m scripts.clusterload
--run-dir DIR [--rate N] [--size B] [--safe-every K] [--duration S]``.

Submits messages through one node at a steady rate until SIGTERM (or the
duration), reconnecting when the node goes away (a SIGKILL and restart in a
failure test), and prints a JSON summary of what happened at the end. The
daemon logs every submit, originate and delivery in its EVS log, so the
loader itself checks nothing: the EVS checker does.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any, Sequence

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    """Submit messages through one node at a steady rate until SIGTERM,
    reconnecting when the node goes away; print a JSON summary at the end."""
    import argparse
    import json

    from coroipc import IpcClient
    from totemd import local_codec as wire

    parser = argparse.ArgumentParser(prog="python -m scripts.clusterload")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--rate", type=float, default=200.0, help="messages per second")
    parser.add_argument("--size", type=int, default=200, help="payload bytes")
    parser.add_argument("--safe-every", type=int, default=0, help="every Nth message is safe (0: none)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0: until SIGTERM)")
    args = parser.parse_args(argv)

    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    counts = dict.fromkeys(("submitted", "try_again", "rejected", "reconnects", "errors"), 0)
    filler = os.urandom(max(0, args.size - 8))
    interval_s = 1.0 / args.rate if args.rate > 0 else 0.0
    end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    client: Any = None
    next_due = time.monotonic()
    number = 0
    while not stopping[0] and time.monotonic() < end:
        if client is None:
            try:
                client = IpcClient.connect("totem", run_dir=args.run_dir, timeout=1.0)
                client.request(wire.Function.HELLO, wire.encode_hello(False), timeout=2.0)
            except Exception:
                client = None
                counts["reconnects"] += 1
                time.sleep(0.1)
                continue
        now = time.monotonic()
        if now < next_due:
            time.sleep(min(next_due - now, 0.05))
            continue
        safe = bool(args.safe_every) and (number + 1) % args.safe_every == 0
        payload = (number + 1).to_bytes(8, "big") + filler
        try:
            reply = client.request(wire.Function.SUBMIT, wire.encode_submit(payload, safe), timeout=2.0)
            status, _sseq = wire.decode_submit_reply(reply)
        except Exception:
            counts["errors"] += 1
            try:
                client.close()
            except Exception:
                pass
            client = None
            continue
        if status == wire.Status.OK:
            number += 1
            counts["submitted"] += 1
            next_due = max(next_due + interval_s, time.monotonic() - 1.0)
        elif status == wire.Status.TRY_AGAIN:
            counts["try_again"] += 1
            time.sleep(0.01)
        else:
            counts["rejected"] += 1
            time.sleep(0.05)
    if client is not None:
        client.close()
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
