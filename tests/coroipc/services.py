"""Services and helpers shared by the coroipc server/client tests."""

from __future__ import annotations

import sys
import threading
import time

from coroipc import IpcServer, Service, errors

ECHO = 1
NO_REPLY = 2  # never answers (the client blocks)
FLOOD = 3  # send events until refused; answer with how many went in
FAIL = 4  # raise inside the service
EVENTS = 5  # send N events (payload: N as ASCII)
WHO = 6  # answer "pid uid gid" as the server saw them
DEFER = 7  # answer later, when RELEASE arrives
RELEASE = 8  # one-way: answer the deferred requests
BAD_RESPONSE = 9  # return something that is not bytes


class TestService(Service):
    """The test service (also runs in child processes)."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "test") -> None:
        self.name = name
        self.connected: list = []
        self.disconnected: list = []
        self.refusals = 0
        self.deferred: list = []
        self.posted: list[bytes] = []

    def on_connect(self, conn) -> None:
        self.connected.append(conn)

    def on_disconnect(self, conn) -> None:
        self.disconnected.append(conn)

    def on_request(self, conn, function: int, payload: memoryview) -> bytes | None:
        if function == ECHO:
            return bytes(payload)
        if function == NO_REPLY:
            return None
        if function == FLOOD:
            sent = 0
            try:
                while sent < 100_000:
                    conn.send_event(9, b"e" * 100)
                    sent += 1
            except errors.WouldBlock:
                self.refusals += 1
            return str(sent).encode()
        if function == FAIL:
            raise RuntimeError("the service broke")
        if function == EVENTS:
            for index in range(int(bytes(payload))):
                conn.send_event(index, str(index).encode())
            return b"ok"
        if function == DEFER:
            self.deferred.append((conn, conn.current_request_id))
            return None
        if function == RELEASE:
            self.posted.append(bytes(payload))
            for waiting, request_id in self.deferred:
                waiting.respond(request_id, b"later:" + bytes(payload), function=DEFER)
            self.deferred.clear()
            return b"ignored: this was posted one-way"
        if function == BAD_RESPONSE:
            return 12345
        if function == WHO:
            return f"{conn.pid} {conn.uid} {conn.gid}".encode()
        return b"?"


class ServerThread:
    """Run an IpcServer in a thread for the duration of a ``with`` block."""

    def __init__(self, server: IpcServer) -> None:
        self.server = server
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="coroipc-test-server")
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.serve_forever(self.stop, poll_interval_s=0.02)
        except BaseException as error:  # surfaced by __exit__
            self.error = error

    def __enter__(self) -> IpcServer:
        self.server.start()
        self.thread.start()
        return self.server

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.server.close()
        if self.error is not None:
            raise self.error


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def serve_in_child(run_dir: str) -> None:
    """Entry point of a server child: serve until killed or stdin closes."""
    service = TestService()
    server = IpcServer(run_dir, [service], event_stall_timeout_s=60.0)
    server.start()
    print("ready", flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    try:
        server.serve_forever(stop, poll_interval_s=0.05)
    finally:
        server.close()


if __name__ == "__main__":
    serve_in_child(sys.argv[1])
