"""``coro demo``: the local demonstration.

By default it tells the three-node cluster story (clients/demo_cluster.py:
form, kill, merge back, ordered delivery, runtime keys, clean stop).
``coro demo --ipc`` shows the IPC layer (:func:`run_ipc_demo`): a coroipc
server with a small service in a child process, a client that makes a
request, receives events through a descriptor it ``poll()``s, and asks what
credentials the server saw; then a few rows of ``coro bench ipc``; then
everything is stopped and checked gone.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import select
import shutil
import sys
import tempfile
import time
from typing import Any, TextIO

SERVICE_NAME = "demo"
# Request functions of the demo service.
ECHO = 1  # reply with the payload
WHO_AM_I = 2  # reply with the pid, uid and gid the server saw for this connection
SUBSCRIBE = 3  # payload: how many events (ASCII); they follow, one every EVENT_INTERVAL_S
EVENT_TICK = 100  # the function number of the events
EVENT_INTERVAL_S = 0.1
START_TIMEOUT_S = 10.0
# Every segment the project creates carries this tag; the demo sets one of its
# own when none is set, so it can tell its segments from anyone else's.
TAG_ENV = "CORO_RESOURCE_TAG"

# The benchmark rows the demo runs: (impl, mode, size).
BENCH_ROWS = (
    ("coroipc-batch", "throughput", 64),
    ("os-pipe", "throughput", 64),
    ("coroipc-batch", "throughput", 65536),
    ("faster-fifo", "throughput", 65536),
    ("coroipc-request", "latency", 64),
    ("os-pipe", "latency", 64),
)


def demo_service() -> Any:
    """A new demo service: echo, who-am-I, and timed events for subscribers.

    coroipc is imported here, not at module level, so ``coro --help`` works
    in a tree where coroipc is broken or half-built.
    """
    from coroipc import Service

    class DemoService(Service):
        name = SERVICE_NAME

        def __init__(self) -> None:
            super().__init__()
            self.subscribers: dict[Any, list[int]] = {}  # conn -> [sent, wanted]
            self.next_event_at = 0.0

        def on_request(self, conn: Any, function: int, payload: memoryview) -> bytes | None:
            if function == ECHO:
                return bytes(payload)
            if function == WHO_AM_I:
                return f"{conn.pid} {conn.uid} {conn.gid}".encode()
            if function == SUBSCRIBE:
                try:
                    wanted = max(0, min(100, int(bytes(payload))))
                except ValueError:
                    return b"error: the payload must be a number of events"
                self.subscribers[conn] = [0, wanted]
                self.next_event_at = time.monotonic() + EVENT_INTERVAL_S
                return f"subscribed to {wanted} events".encode()
            return b"error: unknown function"

        def on_disconnect(self, conn: Any) -> None:
            self.subscribers.pop(conn, None)

        def tick(self) -> None:
            """Send each subscriber its next event when it is due."""
            if not self.subscribers or time.monotonic() < self.next_event_at:
                return
            self.next_event_at = time.monotonic() + EVENT_INTERVAL_S
            for conn, progress in list(self.subscribers.items()):
                progress[0] += 1
                conn.send_event(EVENT_TICK, f"tick {progress[0]} of {progress[1]}".encode())
                if progress[0] >= progress[1]:
                    del self.subscribers[conn]

    return DemoService()


def _serve(run_dir: str, ready: Any, stop: Any) -> None:
    """The server child: serve until ``stop`` is set, then close (removing its files)."""
    from coroipc import IpcServer

    service = demo_service()
    server = IpcServer(run_dir, [service])
    try:
        server.start()
        ready.set()
        while not stop.is_set():
            server.process(timeout=0.02)
            service.tick()
    finally:
        server.close()


class _Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, sentence: str) -> None:
        self.out.write(sentence + "\n")
        self.out.flush()


def run_ipc_demo(out: TextIO = sys.stdout, bench_duration_s: float = 0.3,
                 bench: bool = True) -> int:
    """Show coroipc end to end, then a few benchmark rows; leave nothing behind.

    Args:
        out: where the story is told.
        bench_duration_s: seconds per benchmark row.
        bench: run the benchmark rows.

    Returns:
        0 when every step worked and nothing was left behind, else 1.
    """
    say = _Narrator(out)
    os.environ.setdefault(TAG_ENV, f"demo{os.getpid()}")
    run_dir = tempfile.mkdtemp(prefix="coro-demo-")
    context = multiprocessing.get_context("fork")
    ready, stop = context.Event(), context.Event()
    server = context.Process(target=_serve, args=(run_dir, ready, stop), name="coro-demo-server")
    segments_before = _tagged_segments()
    try:
        say(f"Starting a coroipc server with a '{SERVICE_NAME}' service in a child process;"
            f" its run directory is {run_dir}.")
        server.start()
        if not ready.wait(START_TIMEOUT_S):
            say("The server did not start in time.")
            return 1
        say(f"The server (pid {server.pid}) is listening on its Unix socket in the run directory.")
        from coroipc import errors

        try:
            story_complete = _client_story(run_dir, say)
        except errors.IpcError as error:
            say(f"The client failed: {type(error).__name__}: {error}.")
            story_complete = False
    finally:
        stop.set()
        server.join(timeout=5.0)
        if server.is_alive():
            server.terminate()
            server.join(timeout=5.0)
        shutil.rmtree(run_dir, ignore_errors=True)
    say(f"The server stopped (exit status {server.exitcode}) and the run directory is removed.")
    status = 0 if server.exitcode == 0 and story_complete else 1
    if bench:
        status |= _bench_rows(out, say, bench_duration_s)
    return status | _check_nothing_left(say, run_dir, segments_before)


def _client_story(run_dir: str, say: _Narrator) -> bool:
    """Connect, request, ask for credentials, receive events; True if all of it happened."""
    from coroipc import IpcClient

    with IpcClient.connect(SERVICE_NAME, run_dir=run_dir, timeout=5.0) as client:
        say(f"A client connected to the '{SERVICE_NAME}' service: the handshake went over the"
            " socket, the messages go over shared-memory rings.")
        greeting = b"hello, coro"
        reply = client.request(ECHO, greeting, timeout=5.0)
        say(f"Request/response: the client sent {greeting!r} to the echo function and got"
            f" {reply!r} back.")
        pid, uid, gid = (int(part) for part in client.request(WHO_AM_I, b"", timeout=5.0).split())
        mine = (os.getpid(), os.getuid(), os.getgid())
        verdict = "they are ours" if (pid, uid, gid) == mine else f"ours are {mine}"
        say(f"The server saw the client's credentials from the kernel (SO_PEERCRED):"
            f" pid {pid}, uid {uid}, gid {gid}; {verdict}.")
        wanted = 3
        say(client.request(SUBSCRIBE, str(wanted).encode(), timeout=5.0).decode().capitalize()
            + f"; the server will send one every {EVENT_INTERVAL_S:g} s.")
        received = _wait_for_events(client, wanted)
        for number, (function, payload, waited) in enumerate(received, 1):
            say(f"Event {number}: poll() on the client's descriptor {client.fileno()} woke"
                f" {waited * 1000:.0f} ms after the previous step; dispatch() delivered"
                f" function {function}, payload {payload!r}.")
        if len(received) < wanted:
            say(f"Only {len(received)} of {wanted} events arrived in time.")
    say("The client disconnected.")
    return reply == greeting and len(received) == wanted


def _wait_for_events(client: Any, wanted: int, timeout_s: float = 5.0) -> list[tuple]:
    received: list[tuple] = []
    poller = select.poll()
    poller.register(client.fileno(), select.POLLIN)
    deadline = time.monotonic() + timeout_s
    waited_from = time.monotonic()

    def on_event(function: int, payload: Any) -> None:
        nonlocal waited_from
        received.append((function, bytes(payload), time.monotonic() - waited_from))
        waited_from = time.monotonic()

    while len(received) < wanted and time.monotonic() < deadline:
        remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if poller.poll(remaining_ms):
            client.dispatch(on_event)
    return received


def _bench_rows(out: TextIO, say: _Narrator, duration_s: float) -> int:
    from scripts import bench_ipc

    say("")
    say(f"Now a few rows of `coro bench ipc` ({duration_s:g} s each; the full run is"
        " `coro bench ipc`):")
    impls = bench_ipc.all_impls()
    printer = bench_ipc.TablePrinter(out, duration_s)
    rows = []
    for name, mode, size in BENCH_ROWS:
        if name not in impls:
            continue
        row = bench_ipc.measure(impls[name], size, mode, duration_s)
        printer.row(row)
        rows.append(row)
    printer.finish(rows)
    return 1 if any(row.error for row in rows) else 0


def _tagged_segments() -> set[str]:
    tag = os.environ.get(TAG_ENV, "")
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        return set()
    return {name for name in names if name.startswith("coro-") and tag in name}


def _check_nothing_left(say: _Narrator, run_dir: str, segments_before: set[str]) -> int:
    leftovers = []
    if os.path.exists(run_dir):
        leftovers.append(f"the run directory {run_dir}")
    leftovers += [f"/dev/shm/{name}" for name in sorted(_tagged_segments() - segments_before)]
    leftovers += [f"child process {child.pid}" for child in multiprocessing.active_children()]
    if leftovers:
        say("Left behind: " + ", ".join(leftovers) + ".")
        return 1
    say("Everything is stopped: no child process, no shared-memory segment and no socket file"
        " is left.")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ipc", action="store_true",
                        help="the IPC demonstration instead of the three-node cluster story")
    parser.add_argument("--no-bench", action="store_true", help="(--ipc) skip the benchmark rows")
    parser.add_argument("--bench-duration", type=float, default=0.3, metavar="SECONDS",
                        help="(--ipc) seconds per benchmark row (default 0.3)")
    parser.add_argument("--token", type=int, default=1000, metavar="MS",
                        help="token timeout of the demo cluster (default 1000 ms)")


def run(args: argparse.Namespace) -> int:
    if args.ipc:
        return run_ipc_demo(sys.stdout, bench_duration_s=args.bench_duration, bench=not args.no_bench)
    from clients.demo_cluster import run_cluster_demo

    return run_cluster_demo(sys.stdout, token_ms=args.token)
