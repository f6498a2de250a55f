"""The process harness behind ``coro bench ipc``: one case, two processes.

A *case* is one implementation (``impl``) measured at one message size in
one mode:

- ``throughput``: a producer process sends messages for ``duration_s``
  seconds, then an end marker; a consumer process receives every message,
  checks it byte for byte, and times the stream from the moment its first
  receive returned to the moment the end marker arrived.
- ``latency``: a client process sends a request and waits for the echoed
  response, again and again; a server process echoes. The client times
  each round trip.

Every implementation gives the same work to the consumer: it must end up
holding each message as a ``bytes`` object (copied out of whatever the
transport delivered) and compare all of it with what the producer sent
(:class:`PayloadTable`). A transport that delivered a corrupted, lost,
duplicated or reordered message fails the case with
:class:`CorruptDelivery`; it does not produce a number.

The parent owns every resource (queues, pipes, segments, socket files,
message queue names): it creates them before starting the children, and
its ``finally`` stops the children and removes the resources whatever
happened (an error, a timeout, Ctrl-C). Children also ask the kernel to
kill them if the parent dies (``PR_SET_PDEATHSIG``), so a killed benchmark
does not leave a producer spinning.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

# The producer sends this after its last message. It is shorter than any
# measured message (64 B and up), so it can never be confused with one.
END_MARKER = b"E"

# Round trips dropped at the start of a latency case (first-touch page
# faults, caches, the peer's first wake-up).
LATENCY_WARMUP_ROUND_TRIPS = 100

# Time granted on top of the measured duration for the children to start,
# set up, drain and report, before the parent gives up on a case.
CASE_SLACK_S = 20.0

# The message-buffer budget every transport gets where it can be set (ring
# capacity, pipe buffer, queue bytes): the same for all, so none wins by
# buffering more.
BUFFER_BYTES = 1 << 20

_PR_SET_PDEATHSIG = 1


class CorruptDelivery(Exception):
    """A consumer received a message that differs from the one sent.

    Raised (in the child, reported to the parent, raised again there) when a
    message's bytes, its length or its place in the stream are wrong, or
    when the consumer's count differs from the producer's.
    """


class CaseFailed(Exception):
    """A case could not be measured: a child failed, hung or died."""


class PayloadTable:
    """The messages a producer cycles through, and the check a consumer runs.

    Message ``i`` of a stream is ``payloads[i & mask]``. Every payload is
    distinct random bytes (a fixed seed, so both processes build the same
    table) with its index in the first bytes. The consumer compares each
    received message with the payload it expects with one ``==`` (a length
    test and a ``memcmp``), which touches every byte; any corruption, loss,
    duplication or reordering within a table cycle makes the comparison
    fail, and a lost whole cycle shows in the count.

    Args:
        size: bytes per message (at least 16).
    """

    def __init__(self, size: int) -> None:
        if size < 16:
            raise ValueError(f"message size must be at least 16 bytes, not {size}")
        self.size = size
        # Up to 64 distinct payloads, but no more than about 1 MiB of them,
        # so the producer's source stays cache-sized at every message size.
        count = 64
        while count > 8 and count * size > BUFFER_BYTES:
            count //= 2
        self.mask = count - 1
        generator = random.Random(size)
        self.payloads = [
            index.to_bytes(8, "little") + generator.randbytes(size - 8) for index in range(count)
        ]

    def batches(self) -> list[list[bytes]]:
        """The producer's batches for one or more whole table cycles, in order.

        A batch is 256 messages or 256 KiB, whichever is less, for every
        transport with a batched API (a quarter of the buffer budget, so a
        batch always fits in every transport's buffer).
        """
        per_batch = max(1, min(256, (BUFFER_BYTES // 4) // self.size))
        count = len(self.payloads)
        if per_batch >= count:
            return [self.payloads * (per_batch // count)]
        return [self.payloads[start:start + per_batch] for start in range(0, count, per_batch)]

    def explain(self, index: int, data: Any) -> CorruptDelivery:
        """Describe how message ``index`` differs from what was sent.

        Args:
            index: the position of the message in the stream.
            data: what was received.

        Returns:
            The error to raise.
        """
        expected = self.payloads[index & self.mask]
        received = bytes(data)
        if len(received) != len(expected):
            return CorruptDelivery(
                f"message {index}: {len(received)} bytes received, {len(expected)} sent"
            )
        offset = next(pos for pos in range(len(expected)) if received[pos] != expected[pos])
        return CorruptDelivery(
            f"message {index}: first wrong byte at offset {offset} of {len(expected)}"
            f" (received {received[offset]:#04x}, sent {expected[offset]:#04x})"
        )


class Channel(Protocol):
    """One end of a transport, as the measuring loops use it.

    ``send`` and ``recv`` block. ``send_many`` blocks until the whole batch
    is sent; ``recv_many`` blocks until at least one message is there and
    returns every message it got. A transport without a batched API may
    leave the ``*_many`` methods out; a channel for a request/response
    transport may provide ``request`` (send, then wait for the reply) and
    ``serve`` (echo until the end marker) instead of building them from
    ``send`` and ``recv``.
    """

    def send(self, data: bytes) -> Any: ...

    def recv(self) -> bytes: ...

    def close(self) -> None: ...


class Impl(Protocol):
    """One measured implementation (see scripts/bench_ipc_peers.py).

    Attributes:
        name: the label in the table and in ``--json`` rows.
        modes: which of "throughput" and "latency" it measures.
        batched: whether the throughput loops use ``send_many``/``recv_many``.
    """

    name: str
    modes: frozenset[str]
    batched: bool

    def unavailable(self, size: int, mode: str) -> str | None:
        """Why this case cannot run here (a missing module, a limit), or None."""

    def setup(self, size: int, mode: str) -> Any:
        """Create the transport's resources in the parent; return a state for the children."""

    def endpoint(self, state: Any, role: str) -> Channel:
        """In a child: the channel for ``role`` (producer, consumer, client, server)."""

    def teardown(self, state: Any) -> None:
        """In the parent: remove every resource; idempotent, called whatever happened."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """What one case measured.

    Attributes:
        impl: the implementation's label.
        mode: "throughput" or "latency".
        size: bytes per message.
        messages: messages (or round trips) timed.
        elapsed_s: the timed interval.
        latencies_ns: sorted round-trip times (latency mode only).
    """

    impl: str
    mode: str
    size: int
    messages: int
    elapsed_s: float
    latencies_ns: tuple[int, ...] = field(default=(), repr=False)

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.msgs_per_s * self.size / 1e6

    def percentile_us(self, fraction: float) -> float:
        """The round-trip time below which ``fraction`` of the samples fall, in µs."""
        if not self.latencies_ns:
            raise ValueError("no latency samples in a throughput case")
        index = min(len(self.latencies_ns) - 1, int(fraction * len(self.latencies_ns)))
        return self.latencies_ns[index] / 1000.0


# --------------------------------------------------------------------------
# The measuring loops (run in the children)


def produce(channel: Any, table: PayloadTable, duration_s: float, batched: bool) -> int:
    """Send whole table cycles until ``duration_s`` is over, then the end marker.

    Returns:
        How many messages were sent (not counting the end marker).
    """
    sent = 0
    deadline = time.monotonic() + duration_s
    if batched:
        send_many = channel.send_many
        batches = table.batches()
        while True:
            for batch in batches:
                send_many(batch)
                sent += len(batch)
            if time.monotonic() >= deadline:
                break
    else:
        send = channel.send
        payloads = table.payloads
        while True:
            for payload in payloads:
                send(payload)
            sent += len(payloads)
            if time.monotonic() >= deadline:
                break
    channel.send(END_MARKER)
    return sent


def consume(channel: Any, table: PayloadTable, batched: bool) -> dict[str, Any]:
    """Receive and check every message until the end marker.

    Returns:
        ``received`` (all data messages), ``timed`` (those received after
        the first receive returned) and ``elapsed_s`` (first receive to end
        marker).

    Raises:
        CorruptDelivery: a message differs from the one sent.
    """
    payloads, mask = table.payloads, table.mask
    index = 0
    if batched:
        recv_many = channel.recv_many
        batch = recv_many()
        started = time.perf_counter()
        first = len(batch)
        while True:
            for data in batch:
                if data != payloads[index & mask]:
                    if data == END_MARKER:
                        return _consumed(index, first, started)
                    raise table.explain(index, data)
                index += 1
            batch = recv_many()
    recv = channel.recv
    data = recv()
    started = time.perf_counter()
    while True:
        if data != payloads[index & mask]:
            if data == END_MARKER:
                return _consumed(index, 1, started)
            raise table.explain(index, data)
        index += 1
        data = recv()


def _consumed(received: int, untimed: int, started: float) -> dict[str, Any]:
    elapsed = time.perf_counter() - started
    # The end marker may have come in the first receive (an empty stream).
    return {"received": received, "timed": max(0, received - untimed), "elapsed_s": elapsed}


def request_loop(channel: Any, table: PayloadTable, duration_s: float) -> dict[str, Any]:
    """Time request/response round trips until ``duration_s`` is over.

    Returns:
        ``latencies_ns`` (after the warm-up), ``timed`` and ``elapsed_s``.

    Raises:
        CorruptDelivery: a response differs from its request.
    """
    request = getattr(channel, "request", None) or _send_then_recv(channel)
    payloads, mask = table.payloads, table.mask
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    index = 0
    deadline = clock() + int(duration_s * 1e9)
    while True:
        payload = payloads[index & mask]
        before = clock()
        reply = request(payload)
        after = clock()
        if reply != payload:
            raise table.explain(index, reply)
        append(after - before)
        index += 1
        if after >= deadline:
            break
    request(END_MARKER)
    # A short run keeps at least its second half.
    timed = samples[min(LATENCY_WARMUP_ROUND_TRIPS, len(samples) // 2):]
    return {"latencies_ns": timed, "timed": len(timed), "elapsed_s": sum(timed) / 1e9}


def _send_then_recv(channel: Any) -> Callable[[bytes], bytes]:
    send, recv = channel.send, channel.recv

    def request(payload: bytes) -> bytes:
        send(payload)
        return recv()

    return request


def serve_loop(channel: Any) -> dict[str, Any]:
    """Echo every request until (and including) the end marker."""
    serve = getattr(channel, "serve", None)
    if serve is not None:
        return {"served": serve()}
    send, recv = channel.send, channel.recv
    served = 0
    while True:
        data = recv()
        send(data)
        if data == END_MARKER:
            return {"served": served}
        served += 1


# --------------------------------------------------------------------------
# The two processes and the parent that owns them


PROFILE_ENV = "CORO_BENCH_PROFILE_DIR"


def _start_profile() -> Any:
    """Profile this child when CORO_BENCH_PROFILE_DIR names a directory (a tuning aid)."""
    if not os.environ.get(PROFILE_ENV):
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _stop_profile(profiler: Any, impl: str, role: str, size: int) -> None:
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.path.join(os.environ[PROFILE_ENV], f"{impl}-{size}-{role}.prof"))


def _die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's finally still stops us
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the prctl took effect


def _child_main(
    impl: Impl, state: Any, role: str, size: int, duration_s: float, barrier: Any,
    finished: Any, result: multiprocessing.connection.Connection, parent_pid: int,
) -> None:
    """A child: set up its end, meet its peer at the barrier, run its loop, report.

    After reporting it keeps its end open until the parent has both reports
    (``finished``), so neither side ever sees its peer vanish mid-case.
    """
    _die_with_parent(parent_pid)
    channel = None
    profiler = _start_profile()
    try:
        table = PayloadTable(size)
        channel = impl.endpoint(state, role)
        barrier.wait(timeout=CASE_SLACK_S)
        connect = getattr(channel, "connect", None)
        if connect is not None:  # a client that can only connect once its server serves
            connect()
        if role == "producer":
            report: dict[str, Any] = {"sent": produce(channel, table, duration_s, impl.batched)}
        elif role == "consumer":
            report = consume(channel, table, impl.batched)
        elif role == "client":
            report = request_loop(channel, table, duration_s)
        else:
            report = serve_loop(channel)
        _stop_profile(profiler, impl.name, role, size)
        result.send(report)
        finished.wait(timeout=CASE_SLACK_S)
    except KeyboardInterrupt:
        os._exit(130)
    except BaseException as error:  # reported to the parent, which raises it
        try:
            result.send({"error": f"{role}: {type(error).__name__}: {error}",
                         "corrupt": isinstance(error, CorruptDelivery)})
        except OSError:
            pass
    finally:
        if channel is not None:
            try:
                channel.close()
            except Exception:
                pass
        result.close()


def run_case(impl: Impl, size: int, mode: str, duration_s: float) -> CaseResult:
    """Measure one case in two fresh child processes.

    Args:
        impl: the implementation.
        size: bytes per message.
        mode: "throughput" or "latency".
        duration_s: how long the producer (or client) runs.

    Returns:
        The measurement.

    Raises:
        CorruptDelivery: the consumer (or client) received a wrong message.
        CaseFailed: a child failed, died or did not finish in time.
    """
    roles = ("producer", "consumer") if mode == "throughput" else ("client", "server")
    context = multiprocessing.get_context("fork")
    state = None
    children: list[Any] = []
    reports: dict[str, dict] = {}
    try:
        state = impl.setup(size, mode)
        barrier, finished = context.Barrier(2), context.Event()
        pipes = {}
        for role in roles:
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(
                target=_child_main, name=f"bench-{impl.name}-{role}", daemon=True,
                args=(impl, state, role, size, duration_s, barrier, finished, sender,
                      os.getpid()),
            )
            child.start()
            sender.close()
            children.append(child)
            pipes[role] = receiver
        try:
            reports = _collect(pipes, children, duration_s + CASE_SLACK_S)
        finally:
            finished.set()
    finally:
        # After a failure a child may be stuck on a full or empty transport.
        _stop(children, grace_s=2.0 if len(reports) == len(roles) else 0.2)
        if state is not None:
            impl.teardown(state)
    return _result(impl, size, mode, reports)


def _collect(pipes: dict[str, Any], children: list[Any], timeout_s: float) -> dict[str, dict]:
    """Wait for one report per role; fail fast on an error or a dead child."""
    reports: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    pending = dict(pipes)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CaseFailed(f"no report from {', '.join(pending)} within {timeout_s:.0f} s")
        ready = multiprocessing.connection.wait(list(pending.values()), timeout=min(remaining, 0.5))
        for role, pipe in list(pending.items()):
            if pipe not in ready:
                continue
            try:
                report = pipe.recv()
            except EOFError:
                raise CaseFailed(f"the {role} process exited without a report") from None
            del pending[role]
            if "error" in report:
                error_type = CorruptDelivery if report.get("corrupt") else CaseFailed
                raise error_type(report["error"])
            reports[role] = report
    return reports


def _stop(children: list[Any], grace_s: float) -> None:
    """Make sure every child is gone: a polite wait, then SIGTERM, then SIGKILL."""
    deadline = time.monotonic() + grace_s
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive():
            child.terminate()
            child.join(timeout=2.0)
        if child.is_alive():
            child.kill()
            child.join(timeout=2.0)


def _result(impl: Impl, size: int, mode: str, reports: dict[str, dict]) -> CaseResult:
    if mode == "throughput":
        sent, consumed = reports["producer"]["sent"], reports["consumer"]
        if consumed["received"] != sent:
            raise CorruptDelivery(f"{sent} messages sent, {consumed['received']} received")
        return CaseResult(impl=impl.name, mode=mode, size=size,
                          messages=consumed["timed"], elapsed_s=consumed["elapsed_s"])
    client = reports["client"]
    return CaseResult(impl=impl.name, mode=mode, size=size, messages=client["timed"],
                      elapsed_s=client["elapsed_s"],
                      latencies_ns=tuple(sorted(client["latencies_ns"])))
