"""The ``posix_ipc-mq`` peer of ``coro bench ipc``, and its private IPC namespace.

Linux limits a POSIX message queue to ``fs.mqueue.msgsize_max`` bytes per
message (8 KiB by default) and ``fs.mqueue.msg_max`` messages (10), which
would keep the peer from the 64 KiB case and starve it at small sizes. Both
limits belong to the IPC namespace, so as root we run each posix_ipc case
in a fresh one (``unshare --ipc``), raise them there to the message size and
to the 1 MiB buffer budget every transport gets, and leave the host's
settings alone. The namespace, and any queue in it, vanishes with its last
process; we still unlink the queue.

Without root (or without ``unshare``) the case runs here with the host's
limits, and sizes above ``msgsize_max`` are skipped with that reason.

Run as ``python -m scripts.bench_ipc_mq SIZE MODE DURATION`` it is the
process inside the namespace: it prints the case's result as one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
from typing import Any

from scripts.bench_ipc_harness import (
    BUFFER_BYTES, CASE_SLACK_S, CaseFailed, CaseResult, CorruptDelivery, run_case,
)
from scripts.bench_ipc_peers import _PairedPeer, _Wrapped

MQUEUE_SYSCTL = "/proc/sys/fs/mqueue"
HARD_MESSAGES_MAX = 65536  # the kernel's ceiling for msg_max
TAG_ENV = "CORO_RESOURCE_TAG"


def resource_name(kind: str) -> str:
    """A unique name for a segment or queue that carries CORO_RESOURCE_TAG when set."""
    parts = ["coro", os.environ.get(TAG_ENV, ""), "bench", kind, str(os.getpid()),
             secrets.token_hex(4)]
    return "/" + "-".join(part for part in parts if part)


def _read_limit(name: str) -> int:
    try:
        with open(os.path.join(MQUEUE_SYSCTL, name)) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 0


def tuned_depth(size: int, queues: int = 2) -> int:
    """Queue depth in a private namespace: the shared buffer budget where it fits.

    The kernel charges each queue's memory (messages plus about 96 bytes of
    bookkeeping each) to the user's RLIMIT_MSGQUEUE, which we may not be
    allowed to raise (800 KiB by default), so ``queues`` queues must fit.
    """
    soft_limit, _hard = resource.getrlimit(resource.RLIMIT_MSGQUEUE)
    depth = max(10, BUFFER_BYTES // size)
    if soft_limit != resource.RLIM_INFINITY:
        # The limit is per user across every namespace: leave room for another
        # run (or anyone else's queues); setup() halves the depth if still short.
        depth = min(depth, int(soft_limit * 0.4 / queues) // (size + 96))
    return max(1, min(HARD_MESSAGES_MAX, depth))


class PosixMessageQueue(_PairedPeer):
    """posix_ipc.MessageQueue send/receive, one queue per direction.

    Args:
        inside_namespace: True in the process that already runs in the
            private namespace with raised limits.
    """

    name = "posix_ipc-mq"

    def __init__(self, inside_namespace: bool = False) -> None:
        self.inside_namespace = inside_namespace
        self.depth = 0

    @staticmethod
    def can_use_namespace() -> bool:
        return os.geteuid() == 0 and shutil.which("unshare") is not None

    def unavailable(self, size: int, mode: str) -> str | None:
        try:
            import posix_ipc  # noqa: F401
        except ImportError:
            return "posix_ipc is not installed"
        if self.inside_namespace or self.can_use_namespace():
            return None
        limit = _read_limit("msgsize_max")
        if size > limit:
            return (f"{size}-byte messages exceed fs.mqueue.msgsize_max={limit}; run as root "
                    f"to measure in a private IPC namespace with the limit raised")
        return None

    def note(self, size: int, mode: str) -> str:
        where = "private IPC namespace" if self.inside_namespace or self.can_use_namespace() \
            else "host limits"
        return f"{where}, queue depth {self.depth}"

    def run_case(self, size: int, mode: str, duration_s: float) -> CaseResult:
        """Run the case in a private IPC namespace when we can, else here."""
        if self.inside_namespace or not self.can_use_namespace():
            return run_case(self, size, mode, duration_s)
        result, self.depth = _run_in_namespace(size, mode, duration_s)
        return result

    def setup(self, size: int, mode: str) -> Any:
        queues = 2 if mode == "latency" else 1
        if self.inside_namespace:
            self.depth = tuned_depth(size, queues)
        else:
            self.depth = max(1, min(10, _read_limit("msg_max") or 10))
        while True:
            try:
                return super().setup(size, mode)
            except OSError:
                # EMFILE: the user's RLIMIT_MSGQUEUE bytes are taken (by queues of
                # other processes): try a shallower queue, down to one message.
                if self.depth == 1:
                    raise
                self.depth = max(1, self.depth // 2)

    def make_link(self, size: int) -> Any:
        import posix_ipc

        return posix_ipc.MessageQueue(resource_name("mq"), posix_ipc.O_CREX,
                                      max_messages=self.depth, max_message_size=size)

    def sender(self, link: Any) -> Any:
        return _Wrapped(send=link.send, close=link.close)

    def receiver(self, link: Any) -> Any:
        receive = link.receive

        def recv() -> bytes:
            return receive()[0]

        return _Wrapped(recv=recv, close=link.close)

    def remove_link(self, link: Any) -> None:
        import posix_ipc

        try:
            link.unlink()
        except posix_ipc.ExistentialError:
            pass
        link.close()


def _run_in_namespace(size: int, mode: str, duration_s: float) -> tuple[CaseResult, int]:
    """Run one case in ``unshare --ipc``; returns the result and the queue depth used."""
    command = ["unshare", "--ipc", "--", sys.executable, "-m", "scripts.bench_ipc_mq",
               str(size), mode, repr(duration_s)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=root)
    try:
        out, err = process.communicate(timeout=duration_s + 2 * CASE_SLACK_S)
    except subprocess.TimeoutExpired:
        raise CaseFailed("the private-namespace run did not finish in time") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise CaseFailed(f"the private-namespace run failed: {err.strip()[-400:]}")
    report = json.loads(lines[-1])
    if "error" in report:
        raise (CorruptDelivery if report.get("corrupt") else CaseFailed)(report["error"])
    result = CaseResult(impl=PosixMessageQueue.name, mode=mode, size=size,
                        messages=report["messages"], elapsed_s=report["elapsed_s"],
                        latencies_ns=tuple(report["latencies_ns"]))
    return result, report["depth"]


def _raise_limits(size: int, mode: str) -> None:
    """Inside the namespace: let queues hold ``size``-byte messages, budget-deep."""
    # The per-user byte limit (800 KiB by default) counts queue memory too. Raising
    # it needs CAP_SYS_RESOURCE; without it tuned_depth() keeps the queues inside it.
    try:
        resource.setrlimit(resource.RLIMIT_MSGQUEUE,
                           (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass
    with open(os.path.join(MQUEUE_SYSCTL, "msgsize_max"), "w") as handle:
        handle.write(str(max(size, _read_limit("msgsize_max"))))
    with open(os.path.join(MQUEUE_SYSCTL, "msg_max"), "w") as handle:
        handle.write(str(max(tuned_depth(size, queues=1), _read_limit("msg_max"))))


def main(argv: list[str]) -> int:
    size, mode, duration_s = int(argv[0]), argv[1], float(argv[2])
    try:
        _raise_limits(size, mode)
        impl = PosixMessageQueue(inside_namespace=True)
        result = run_case(impl, size, mode, duration_s)
    except CorruptDelivery as error:
        print(json.dumps({"error": str(error), "corrupt": True}))
        return 1
    except (CaseFailed, OSError, ValueError) as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 1
    print(json.dumps({"messages": result.messages, "elapsed_s": result.elapsed_s,
                      "latencies_ns": list(result.latencies_ns), "depth": impl.depth}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
