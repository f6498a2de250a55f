"""The Python IPC peers that ``coro bench ipc`` measures coroipc against.

Each peer is used the way a careful user would use it for this job, batched
where its API has a batched form, with the same buffer budget where it can
be set (``BUFFER_BYTES``), and with its consumer ending up holding each
message as a ``bytes`` object:

- ``mp-queue``: ``multiprocessing.Queue`` put/get (pickles; no batch API).
- ``mp-pipe``: ``multiprocessing.Pipe`` ``send_bytes``/``recv_bytes``.
- ``os-pipe``: ``os.pipe`` with a 4-byte length before each message. The
  producer joins a batch of frames into one ``write``; the consumer reads up
  to 1 MiB at a time and cuts it into messages (it is a byte stream, so
  that is how anyone would use it), with the pipe buffer raised to 1 MiB.
- ``posix_ipc-mq``: ``posix_ipc.MessageQueue`` send/receive (no batch API).
  Linux caps a message at 8 KiB by default, so when we are root we run the
  whole case in a private IPC namespace (``unshare --ipc``) with the limits
  raised (see scripts/bench_ipc_mq.py).
- ``pyzmq``: a PAIR socket pair over ``ipc://`` in a temporary directory,
  ``copy=False`` on the sending side from 64 KiB (zmq's own threshold for
  a zero-copy send); the receiver takes ``bytes`` (``copy=True``).
- ``faster-fifo``: ``faster_fifo.Queue`` with ``put_many``/``get_many`` and
  raw bytes in and out instead of pickle (``dumps`` passes the bytes through,
  ``loads`` copies them out of the queue's buffer).

For latency every peer gets two one-way channels, one per direction.
"""

from __future__ import annotations

import fcntl
import importlib.util
import multiprocessing
import os
import shutil
import struct
import tempfile
from typing import Any

from scripts.bench_ipc_harness import BUFFER_BYTES

_FRAME = struct.Struct("<I")
_CONTEXT = multiprocessing.get_context("fork")


def _missing(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[bench]')"
    return None


class _Duplex:
    """Two one-way channels as one request/response endpoint."""

    def __init__(self, outgoing: Any, incoming: Any) -> None:
        self.outgoing, self.incoming = outgoing, incoming
        self.send, self.recv = outgoing.send, incoming.recv

    def close(self) -> None:
        self.outgoing.close()
        self.incoming.close()


class _PairedPeer:
    """A peer whose state is a pair of one-way channels (one per direction).

    Subclasses provide ``make_link()`` (parent: one one-way link),
    ``sender(link)``/``receiver(link)`` (child: its end as a channel) and
    may override ``remove_link(link)``.
    """

    name = ""
    modes = frozenset({"throughput", "latency"})
    batched = False

    def unavailable(self, size: int, mode: str) -> str | None:
        return None

    def setup(self, size: int, mode: str) -> Any:
        links: list[Any] = []
        try:
            for _ in range(2 if mode == "latency" else 1):
                links.append(self.make_link(size))
        except BaseException:
            self.teardown(links)  # the first link, when the second failed
            raise
        return links

    def endpoint(self, state: Any, role: str) -> Any:
        if role == "producer":
            return self.sender(state[0])
        if role == "consumer":
            return self.receiver(state[0])
        if role == "client":
            return _Duplex(self.sender(state[0]), self.receiver(state[1]))
        return _Duplex(self.sender(state[1]), self.receiver(state[0]))

    def teardown(self, state: Any) -> None:
        for link in state:
            self.remove_link(link)

    def make_link(self, size: int) -> Any:
        raise NotImplementedError

    def sender(self, link: Any) -> Any:
        raise NotImplementedError

    def receiver(self, link: Any) -> Any:
        raise NotImplementedError

    def remove_link(self, link: Any) -> None:
        pass


class _Wrapped:
    """A channel made of two callables and a closer."""

    def __init__(self, send: Any = None, recv: Any = None, close: Any = None, **many: Any) -> None:
        self.send, self.recv, self._close = send, recv, close
        for name, method in many.items():
            setattr(self, name, method)

    def close(self) -> None:
        if self._close is not None:
            self._close()


# --------------------------------------------------------------------------


class MultiprocessingQueue(_PairedPeer):
    name = "mp-queue"
    note = "put/get, pickled, bounded"

    def make_link(self, size: int) -> Any:
        # Bounded like every other transport: unbounded, put() only appends to
        # the feeder thread's list and the producer runs far ahead of delivery.
        return _CONTEXT.Queue(maxsize=max(16, BUFFER_BYTES // size))

    def sender(self, link: Any) -> Any:
        # join_thread: the feeder thread must flush before the child exits.
        return _Wrapped(send=link.put, close=lambda: (link.close(), link.join_thread()))

    def receiver(self, link: Any) -> Any:
        return _Wrapped(recv=link.get, close=link.close)

    def remove_link(self, link: Any) -> None:
        link.close()
        link.cancel_join_thread()


class MultiprocessingPipe(_PairedPeer):
    name = "mp-pipe"
    note = "send_bytes/recv_bytes"

    def make_link(self, size: int) -> Any:
        return _CONTEXT.Pipe(duplex=False)

    def sender(self, link: Any) -> Any:
        link[0].close()
        return _Wrapped(send=link[1].send_bytes, close=link[1].close)

    def receiver(self, link: Any) -> Any:
        link[1].close()
        return _Wrapped(recv=link[0].recv_bytes, close=link[0].close)

    def remove_link(self, link: Any) -> None:
        link[0].close()
        link[1].close()


class _PipeWriter:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, data: bytes) -> None:
        self._write_all(_FRAME.pack(len(data)) + data)

    def send_many(self, batch: list[bytes]) -> None:
        pack = _FRAME.pack
        self._write_all(b"".join([part for data in batch for part in (pack(len(data)), data)]))

    def _write_all(self, buffer: bytes) -> None:
        view = memoryview(buffer)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        os.close(self.fd)


class _PipeReader:
    """Cuts the byte stream into messages; each comes out as a new bytes object."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def recv_many(self) -> list[bytes]:
        messages: list[bytes] = []
        while not messages:
            chunk = os.read(self.fd, BUFFER_BYTES)
            if not chunk:
                raise EOFError("the writer closed the pipe")
            buffer = self.pending + chunk if self.pending else chunk
            offset, end = 0, len(buffer)
            unpack = _FRAME.unpack_from
            while end - offset >= 4:
                (length,) = unpack(buffer, offset)
                if end - offset - 4 < length:
                    break
                messages.append(buffer[offset + 4:offset + 4 + length])
                offset += 4 + length
            self.pending = buffer[offset:]
        return messages

    def recv(self) -> bytes:
        header = self._read_exactly(4)
        return self._read_exactly(_FRAME.unpack(header)[0])

    def _read_exactly(self, count: int) -> bytes:
        parts, missing = [], count
        while missing:
            part = os.read(self.fd, missing)
            if not part:
                raise EOFError("the writer closed the pipe")
            parts.append(part)
            missing -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        os.close(self.fd)


class OsPipe(_PairedPeer):
    """Length-framed ``os.pipe``; batched in throughput, one frame per write in latency."""

    name = "os-pipe"
    batched = True
    note = "length-framed; a batch is one write"

    def make_link(self, size: int) -> Any:
        read_fd, write_fd = os.pipe()
        try:
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, BUFFER_BYTES)
        except OSError:
            pass  # an unprivileged user over pipe-user-pages-soft: keep the default
        return (read_fd, write_fd)

    def sender(self, link: Any) -> Any:
        os.close(link[0])
        return _PipeWriter(link[1])

    def receiver(self, link: Any) -> Any:
        os.close(link[1])
        return _PipeReader(link[0])

    def remove_link(self, link: Any) -> None:
        for fd in link:
            try:
                os.close(fd)
            except OSError:
                pass


class Zmq(_PairedPeer):
    """A zmq PAIR pair over ipc:// in a private temporary directory."""

    name = "pyzmq"
    note = "PAIR over ipc://"

    def unavailable(self, size: int, mode: str) -> str | None:
        return _missing("zmq")

    def setup(self, size: int, mode: str) -> Any:
        directory = tempfile.mkdtemp(prefix="coro-bench-zmq-")
        count = 2 if mode == "latency" else 1
        return [{"address": f"ipc://{directory}/pair{number}.sock", "directory": directory,
                 "copy": size < 65536} for number in range(count)]

    def _socket(self, link: dict, bind: bool) -> tuple[Any, Any]:
        import zmq

        context = zmq.Context(io_threads=1)
        socket = context.socket(zmq.PAIR)
        if bind:
            socket.bind(link["address"])
        else:
            socket.connect(link["address"])
        return context, socket

    def sender(self, link: Any) -> Any:
        # The receiving side binds; messages sent before the connection is up wait in
        # the sender's queue. Linger lets the end marker leave before the sender exits.
        context, socket = self._socket(link, bind=False)
        send, copy = socket.send, link["copy"]

        def send_message(data: bytes) -> None:
            send(data, copy=False)

        def close() -> None:
            socket.close(linger=5000)
            context.term()

        return _Wrapped(send=send if copy else send_message, close=close)

    def receiver(self, link: Any) -> Any:
        context, socket = self._socket(link, bind=True)

        def close() -> None:
            socket.close(linger=0)
            context.term()

        return _Wrapped(recv=socket.recv, close=close)

    def teardown(self, state: Any) -> None:
        shutil.rmtree(state[0]["directory"], ignore_errors=True)


class FasterFifo(_PairedPeer):
    name = "faster-fifo"
    batched = True
    note = "put_many/get_many, raw bytes"

    def unavailable(self, size: int, mode: str) -> str | None:
        return _missing("faster_fifo")

    def make_link(self, size: int) -> Any:
        import faster_fifo

        return faster_fifo.Queue(max_size_bytes=BUFFER_BYTES, loads=bytes, dumps=_identity)

    def sender(self, link: Any) -> Any:
        # A batch must fit in the queue's buffer with room to spare, or put_many
        # could never succeed; split large batches.
        def send_many(batch: list[bytes]) -> None:
            step = max(1, (BUFFER_BYTES // 4) // max(1, len(batch[0])))
            for start in range(0, len(batch), step):
                link.put_many(batch[start:start + step], block=True, timeout=1e9)

        return _Wrapped(send=lambda data: link.put(data, block=True, timeout=1e9),
                        send_many=send_many, close=None)

    def receiver(self, link: Any) -> Any:
        return _Wrapped(recv=lambda: link.get(block=True, timeout=1e9),
                        recv_many=lambda: link.get_many(block=True, timeout=1e9), close=None)

    def remove_link(self, link: Any) -> None:
        link.close()


def _identity(data: bytes) -> bytes:
    return data
