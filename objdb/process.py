"""Start and stop the objdb process from a supervisor (``coro start``) or a test.

::

    with ObjdbProcess.start(run_dir=run_dir, config_path="corosync.conf") as objdb:
        ...                      # objdb serves cmap in run_dir
    # stopped: SIGTERM, then SIGKILL after the timeout; socket and segments gone

``start`` returns once the daemon says it is serving (a line on a pipe), or
raises :class:`ObjdbStartError` with its exit status and stderr.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time


class ObjdbStartError(Exception):
    """objdb exited or did not become ready in time; the message has its stderr."""


class ObjdbProcess:
    """A running objdb daemon (a child process of ours)."""

    def __init__(self, popen: subprocess.Popen[bytes], run_dir: str, stderr_file: object) -> None:
        self._popen = popen
        self.run_dir = run_dir
        self._stderr_file = stderr_file

    @property
    def pid(self) -> int:
        return self._popen.pid

    @classmethod
    def start(cls, *, run_dir: str | os.PathLike[str] | None = None,
              config_path: str | os.PathLike[str] | None = None,
              local_addresses: list[str] | None = None,
              ready_timeout: float = 15.0, log_level: str = "WARNING",
              state_dir: str | os.PathLike[str] | None = None,
              env: dict[str, str] | None = None) -> "ObjdbProcess":
        """Start ``python -m objdb`` and wait until it serves.

        Args:
            run_dir: where to serve (default: the configuration's system.run_dir).
            config_path: corosync.conf to load (None: start empty).
            local_addresses: this node's addresses in the nodelist (default:
                the host's; pass them when several nodes share a host).
            ready_timeout: seconds to wait for readiness.
            log_level: the daemon's log level.
            state_dir: where its flight data goes when asked (default: the
                configuration's system.state_dir).
            env: environment for the child (default: ours).

        Raises:
            ObjdbStartError: it exited, or was not ready in ``ready_timeout``.
        """
        # -P: the working directory is not on sys.path, so a directory holding
        # packages named like ours cannot stand in for the installed code.
        command = [sys.executable, "-P", "-m", "objdb", "--log-level", log_level,
                   "--parent-pid", str(os.getpid())]
        if config_path is not None:
            command += ["-c", os.fspath(config_path)]
        if run_dir is not None:
            command += ["--run-dir", os.fspath(run_dir)]
        if state_dir is not None:
            command += ["--state-dir", os.fspath(state_dir)]
        for address in local_addresses or ():
            command += ["--local-address", address]
        read_end, write_end = os.pipe()
        stderr_file = tempfile.TemporaryFile()
        try:
            popen = subprocess.Popen(command + ["--ready-fd", str(write_end)],
                                     pass_fds=(write_end,), stdin=subprocess.DEVNULL,
                                     stderr=stderr_file, env=env)
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            stderr_file.close()
            raise
        os.close(write_end)
        process = cls(popen, os.fspath(run_dir) if run_dir is not None else "", stderr_file)
        if run_dir is None and config_path is not None:
            from objdb.config import ConfigUnavailable, run_dir_from_config

            try:
                process.run_dir = run_dir_from_config(config_path)
            except ConfigUnavailable:
                pass  # the daemon reports the bad file itself
        try:
            line = _read_line(read_end, ready_timeout)
        finally:
            os.close(read_end)
        if not line.startswith(b"ready"):
            process.stop()
            message = process.stderr_text().strip() or "no message"
            process.close()
            raise ObjdbStartError(f"objdb did not start (exit status {popen.returncode}): {message}")
        return process

    def stderr_text(self) -> str:
        """What the daemon wrote to stderr so far."""
        handle = self._stderr_file
        handle.seek(0)  # type: ignore[attr-defined]
        return handle.read().decode("utf-8", errors="replace")  # type: ignore[attr-defined]

    def is_running(self) -> bool:
        return self._popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit status. Idempotent."""
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        return self._popen.returncode

    def kill(self) -> int:
        """SIGKILL without a chance to clean up (for crash tests). Returns the exit status."""
        if self._popen.poll() is None:
            self._popen.kill()
        return self._popen.wait()

    def close(self) -> None:
        """Stop (if running) and release the stderr capture. Idempotent."""
        self.stop()
        if not self._stderr_file.closed:  # type: ignore[attr-defined]
            self._stderr_file.close()  # type: ignore[attr-defined]  # type: ignore[attr-defined]

    def __enter__(self) -> "ObjdbProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_line(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _w, _x = select.select([fd], [], [], remaining)
        if not readable:
            break
        chunk = os.read(fd, 256)
        if not chunk:   # the child exited (or closed the fd) without saying ready
            break
        data += chunk
    return data
