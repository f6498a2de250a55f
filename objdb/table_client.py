"""A cmap client's side of objdb's shared-memory table (``objdb.shm_table``).

:class:`TableFollower` finds the table (objdb's TABLE_INFO answer), maps it
if this uid may, follows it to each new generation, and tells the client when
a get must ask objdb instead of reading it. ``clients.cmap`` owns the hot
path (``reader.lookup``); this module owns everything around it.
"""

from __future__ import annotations

import os
import select
import time
from typing import Callable

from objdb.errors import CmapError
from objdb.shm_table import STATE_LIVE, STATE_RETIRED, ShmTableReader, TableLocator, TableUnavailable

#: How often (seconds) a client reading the table checks that objdb still
#: runs and that its connection has nothing to say.
LIVENESS_INTERVAL_S = 0.05
#: Tries to map the table: objdb may move it between its answer and our open.
TABLE_OPEN_ATTEMPTS = 3


class TableFollower:
    """One client's view of the table.

    Args:
        ask: asks objdb where the table is: (fd, token), or None if it has
            none; raises CmapError (e.g. an objdb that does not know the request).
        server_pid: objdb's pid as this process sees it (None: unknown, no table).
        event_fd: the connection's pollable descriptor, readable when events
            wait or objdb hung up.
    """

    def __init__(self, ask: Callable[[], tuple[int, int] | None], server_pid: int | None,
                 event_fd: Callable[[], int]) -> None:
        self._ask = ask
        self._server_pid = server_pid
        self._event_fd = event_fd
        self._poller: select.poll | None = None
        #: The mapped table, or None (then every get is a round trip).
        self.reader: ShmTableReader | None = None
        #: Why there is no table ('' while it is used).
        self.unavailable = "not asked for"
        #: Until this time.monotonic() the connection counts as confirmed alive.
        self.alive_until = 0.0

    def open(self) -> None:
        """Ask objdb where the table is and map it (up to TABLE_OPEN_ATTEMPTS tries).

        Raises:
            ObjdbError: the request itself failed (connection lost, ...), except
                CmapError, which means objdb has no table for us.
        """
        for _attempt in range(TABLE_OPEN_ATTEMPTS):
            try:
                where = self._ask()
            except CmapError as error:
                self.unavailable = f"objdb has no shared table: {error}"
                return
            if where is None:
                self.unavailable = "objdb has no shared table"
                return
            if not self._server_pid:
                self.unavailable = "objdb's pid is not known"
                return
            try:
                self.reader = ShmTableReader(self._server_pid,
                                             TableLocator(fd=where[0], token=where[1]))
            except TableUnavailable as error:
                self.unavailable = str(error)
                continue
            self.unavailable = ""
            return

    def missed(self) -> None:
        """The table could not answer: remap if objdb moved to a new generation,
        let go of it if objdb closed it; else (a busy slot, or the liveness
        check failed) keep it, and this get asks objdb."""
        reader = self.reader
        if reader is None:
            return
        state = reader.state
        if state == STATE_LIVE:
            return
        reader.close()
        self.reader = None
        if state == STATE_RETIRED:
            self.open()
        else:
            self.unavailable = "objdb closed its shared table"

    def check_alive(self) -> bool:
        """False if a get should ask objdb now: its process is gone, or the
        connection has something to say (events waiting, or objdb dropped us,
        e.g. because our trackers stopped reading). Callers skip this while
        ``time.monotonic() < alive_until``."""
        pid = self._server_pid
        if pid:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
        try:
            if self._poller is None:   # poll, not select: descriptors may pass 1024
                self._poller = select.poll()
                self._poller.register(self._event_fd(), select.POLLIN)
            if self._poller.poll(0):
                return False
        except Exception:   # noqa: BLE001 - a closed connection: ask objdb, which says so
            return False
        self.alive_until = time.monotonic() + LIVENESS_INTERVAL_S
        return True

    def close(self) -> None:
        """Unmap (idempotent)."""
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.close()
        self.unavailable = "closed"
