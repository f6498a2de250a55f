"""The coroipc rows of ``coro bench ipc``.

- ``coroipc``: one ring (1 MiB, the budget every transport gets), the plain
  per-message API: ``Ring.write(data)`` and ``Ring.read()`` (a copy out).
- ``coroipc-batch``: the same ring through the batched API:
  ``write_batch(batch)`` (as many as fit; when none fit, a blocking
  ``write`` of the next one waits for room) and ``read_batch()`` (every
  waiting message, copied out; ``wait_readable()`` when there is none).
- ``coroipc-ring-pingpong`` (latency only): two raw rings, one per
  direction, with a blocking write and read on each side. This is the
  transport alone, without the connection, framing of requests and
  dispatch that a real client goes through.
- ``coroipc-request`` (latency only): a real ``IpcClient.request()`` to an
  echo service in an ``IpcServer`` driven by ``process()``: the handshake,
  the request and response rings, message headers and request ids, and the
  service dispatch, all in the timed round trip.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

from coroipc import IpcClient, IpcServer, Ring, Service, errors
from scripts.bench_ipc_harness import BUFFER_BYTES, CASE_SLACK_S, END_MARKER

ECHO_SERVICE = "bench-echo"
ECHO = 1


class _RingChannel:
    """One end of one or two rings: ``out`` is written, ``into`` is read."""

    def __init__(self, out: str | None, into: str | None) -> None:
        self.out = Ring.attach(out) if out else None
        self.into = Ring.attach(into) if into else None
        if self.out is not None:
            self.send = self.out.write
        if self.into is not None:
            self.recv = self.into.read

    def send_many(self, batch: list[bytes]) -> None:
        write_batch, write = self.out.write_batch, self.out.write
        done, total = 0, len(batch)
        while done < total:
            written = write_batch(batch[done:] if done else batch)
            if written == 0:
                # Full: wait for room for the next message (and write it).
                write(batch[done])
                written = 1
            done += written

    def recv_many(self) -> list[bytes]:
        read_batch = self.into.read_batch
        batch = read_batch()
        while not batch:
            self.into.wait_readable()
            batch = read_batch()
        return batch

    def close(self) -> None:
        for ring in (self.out, self.into):
            if ring is not None:
                ring.close()


class CoroipcRing:
    """A ring per direction, owned by the parent, attached by name in the children.

    Args:
        name: the row's label.
        batched: use the batched API in throughput.
        modes: "throughput", "latency" or both.
    """

    def __init__(self, name: str, batched: bool, modes: frozenset[str], note: str) -> None:
        self.name, self.batched, self.modes, self.note = name, batched, modes, note

    def unavailable(self, size: int, mode: str) -> str | None:
        return None

    def setup(self, size: int, mode: str) -> list[Ring]:
        rings: list[Ring] = []
        try:
            for _ in range(2 if mode == "latency" else 1):
                rings.append(Ring.create(capacity=BUFFER_BYTES))
        except BaseException:
            self.teardown(rings)
            raise
        return rings

    def endpoint(self, state: list[Ring], role: str) -> Any:
        names = [ring.name for ring in state]
        # Forked children inherit the parent's mappings; they use their own attachments.
        if role == "producer":
            return _RingChannel(out=names[0], into=None)
        if role == "consumer":
            return _RingChannel(out=None, into=names[0])
        if role == "client":
            return _RingChannel(out=names[0], into=names[1])
        return _RingChannel(out=names[1], into=names[0])

    def teardown(self, state: list[Ring]) -> None:
        for ring in state:
            ring.close()  # the owner's close also unlinks the segment


class _EchoService(Service):
    """Answers every request with its payload; notes when the end marker came."""

    name = ECHO_SERVICE

    def __init__(self) -> None:
        self.finished = False
        self.served = 0

    def on_request(self, conn: Any, function: int, payload: memoryview) -> bytes:
        data = bytes(payload)  # the view is only valid during this call
        if data == END_MARKER:
            self.finished = True
        else:
            self.served += 1
        return data


class _ServerChannel:
    """The server child: an IpcServer listening before the start barrier."""

    def __init__(self, run_dir: str) -> None:
        self.service = _EchoService()
        self.server = IpcServer(run_dir, [self.service], ring_size=BUFFER_BYTES)
        self.server.start()

    def serve(self) -> int:
        service, process = self.service, self.server.process
        while not service.finished:
            process(timeout=0.1)
        process(timeout=0.0)  # the end marker's response goes out in the same turn
        return service.served

    def close(self) -> None:
        self.server.close()


class _ClientChannel:
    """The client child: connects after the barrier (the server only handshakes
    while it serves), then ``request`` is a real IpcClient round trip."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.client: IpcClient | None = None

    def connect(self) -> None:
        deadline = time.monotonic() + CASE_SLACK_S
        while True:
            try:
                self.client = IpcClient.connect(ECHO_SERVICE, run_dir=self.run_dir, timeout=5.0,
                                                ring_size=BUFFER_BYTES)
                break
            except errors.NotConnected:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        client_request = self.client.request

        def request(payload: bytes) -> bytes:
            return client_request(ECHO, payload)

        self.request = request

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class CoroipcRequest:
    """``IpcClient.request()`` round trips to an echo service (latency only)."""

    name = "coroipc-request"
    modes = frozenset({"latency"})
    batched = False
    note = "IpcClient.request() to an IpcServer echo service"

    def unavailable(self, size: int, mode: str) -> str | None:
        return None

    def setup(self, size: int, mode: str) -> str:
        return tempfile.mkdtemp(prefix="coro-bench-ipc-")

    def endpoint(self, state: str, role: str) -> Any:
        return _ServerChannel(state) if role == "server" else _ClientChannel(state)

    def teardown(self, state: str) -> None:
        # The server removes its socket and unlinks each connection's segments
        # once the handshake is done; a killed server leaves at most the socket.
        shutil.rmtree(state, ignore_errors=True)


IMPLS = [
    CoroipcRing("coroipc", batched=False, modes=frozenset({"throughput"}),
                note="Ring.write/Ring.read"),
    CoroipcRing("coroipc-batch", batched=True, modes=frozenset({"throughput"}),
                note="Ring.write_batch/Ring.read_batch"),
    CoroipcRing("coroipc-ring-pingpong", batched=False, modes=frozenset({"latency"}),
                note="two raw rings, no server: the transport alone"),
    CoroipcRequest(),
]
