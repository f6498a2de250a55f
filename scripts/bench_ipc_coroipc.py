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
  echo service in an ``IpcServer`` (see scripts/bench_ipc_service.py).
"""

from __future__ import annotations

from typing import Any

from coroipc import Ring
from scripts.bench_ipc_harness import BUFFER_BYTES


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

    def __init__(self, name: str, batched: bool, modes: frozenset[str]) -> None:
        self.name, self.batched, self.modes = name, batched, modes

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


IMPLS = [
    CoroipcRing("coroipc", batched=False, modes=frozenset({"throughput"})),
    CoroipcRing("coroipc-batch", batched=True, modes=frozenset({"throughput"})),
    CoroipcRing("coroipc-ring-pingpong", batched=False, modes=frozenset({"latency"})),
]
