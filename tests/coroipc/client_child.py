"""Client children that die at awkward moments (run with -m)."""

from __future__ import annotations

import os
import signal
import socket
import sys

from coroipc import IpcClient, codec
from coroipc.server import socket_path


def die_mid_write(run_dir: str) -> None:
    """Connect, send one good request, reserve a second one, fill half of it, SIGKILL."""
    client = IpcClient.connect("test", run_dir=run_dir)
    assert client.request(1, b"before", timeout=10) == b"before"
    view = client.request_ring.reserve(200)
    view[:16] = codec.MESSAGE_HEADER.pack(1, 0, 99)
    view[16:100] = b"p" * 84
    print("writing", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def die_mid_handshake(run_dir: str, stage: str) -> None:
    """Send half a HELLO (stage 'hello') or a whole one and die before READY ('ready')."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path(run_dir, "test"))
    hello = codec.encode_handshake(codec.Hello(service="test"))
    if stage == "hello":
        sock.sendall(hello[:7])
    else:
        sock.sendall(hello)
        sock.recv(4096)  # the ACCEPT: the segments exist now
    print("handshaking", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    if sys.argv[1] == "write":
        die_mid_write(sys.argv[2])
    else:
        die_mid_handshake(sys.argv[2], sys.argv[3])
