"""Event backlogs and their deadlines (a mixin of IpcServer).

``send_event`` never blocks: an event that does not fit in the client's
event ring waits in a per-connection backlog bounded in messages and bytes
(``_backlog_event``), an answer that does not fit in the response ring
waits likewise (``IpcServer._respond``); the server asks the client to ring
it when it frees space (``_watch_space``) and moves what waits into the
rings as room appears (``_flush``). A client whose full backlog makes no
progress for ``event_stall_timeout_s``, or a handshake that does not finish
in time, is dropped by ``_check_deadlines``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from coroipc import codec
from coroipc.errors import ConnectionLost, NotConnected, RingCorrupted, WouldBlock

if TYPE_CHECKING:
    from coroipc._connection import Connection

__all__ = ["BacklogMixin"]

RefuseCode = codec.RefuseCode


class BacklogMixin:
    """The backlog half of :class:`coroipc.server.IpcServer` (its state is
    set up in ``IpcServer.__init__``)."""

    def _backlog_event(self, conn: Connection, message: bytes) -> None:
        if (len(conn.event_backlog) >= self.event_backlog_messages
                or conn.event_backlog_bytes + len(message) > self.event_backlog_bytes):
            conn.counts["events_refused"] += 1
            self._counts["events_refused"] += 1
            conn.refused_in_a_row += 1
            if conn.refused_in_a_row >= self.event_refusal_limit:
                self._disconnect(conn, RefuseCode.STALLED, f"{conn.refused_in_a_row} events refused in a row: "
                                                           "the client does not read its events")
                raise NotConnected(f"connection {conn.id} was closed: the client does not read its events")
            raise WouldBlock(f"connection {conn.id}: event ring and backlog of "
                             f"{len(conn.event_backlog)} events are full")
        conn.event_backlog.append(message)
        conn.event_backlog_bytes += len(message)
        if len(conn.event_backlog) > conn.counts["event_backlog_peak"]:
            conn.counts["event_backlog_peak"] = len(conn.event_backlog)
        if conn.stalled_since is None:
            conn.stalled_since = now = time.monotonic()
            self._stall_check_at = min(self._stall_check_at, now + self.event_stall_timeout_s)
        self._backlogged.add(conn)
        self._watch_space(conn)
        if conn.closed:
            raise NotConnected(f"connection {conn.id} was closed: its rings are unusable")

    def _watch_space(self, conn: Connection) -> None:
        """Have the client ring us when it frees space in its response/event rings."""
        try:
            for ring in (conn.response_ring, conn.event_ring):
                fd = ring.writer_fileno()
                if fd not in conn.selector_fds:
                    self._selector.register(fd, ("space", conn))
                    conn.selector_fds.append(fd)
                ring.arm_writer()
        except RingCorrupted as error:
            self._disconnect(conn, RefuseCode.CORRUPTED, f"response or event ring corrupted: {error}")

    def _flush(self, conn: Connection) -> int:
        """Move backlogged responses and events into their rings; returns how many."""
        done = 0
        try:
            for backlog, ring in ((conn.response_backlog, conn.response_ring), (conn.event_backlog, conn.event_ring)):
                if not backlog:
                    continue
                written = ring.write_batch(list(backlog))
                for _ in range(written):
                    message = backlog.popleft()
                    if backlog is conn.event_backlog:
                        conn.event_backlog_bytes -= len(message)
                done += written
                if backlog:
                    ring.arm_writer()
        except ConnectionLost as error:
            self._disconnect(conn, RefuseCode.SHUTTING_DOWN, f"client closed its rings: {error}")
            return done
        except RingCorrupted as error:
            self._disconnect(conn, RefuseCode.CORRUPTED, f"response or event ring corrupted: {error}")
            return done
        if done:
            conn.stalled_since = time.monotonic() if conn.event_backlog else None
            conn.refused_in_a_row = 0
        if not conn.event_backlog:
            self._backlogged.discard(conn)
        return done

    def _check_deadlines(self) -> None:
        """Fail late handshakes; disconnect clients whose backlog is stalled.

        Called only while there are handshakes or backlogs. The stalled
        clients are looked at only once ``_stall_check_at`` (the earliest
        moment one can be late: a backlog's progress only moves its own
        deadline later) has passed.
        """
        now = time.monotonic()
        if self._handshakes:
            for pending in list(self._handshakes.values()):
                if now > pending.deadline:
                    self._fail_handshake(pending, f"no handshake within {self.handshake_timeout_s} s",
                                         refuse=RefuseCode.BAD_HANDSHAKE)
        if not self._backlogged or now < self._stall_check_at:
            return
        timeout = self.event_stall_timeout_s
        earliest = math.inf
        for conn in list(self._backlogged):
            since = conn.stalled_since
            if since is None:
                continue
            if now - since > timeout:
                self._disconnect(conn, RefuseCode.STALLED, f"the client read no events for "
                                                           f"{timeout} s with its backlog full")
            else:
                earliest = min(earliest, since + timeout)
        self._stall_check_at = earliest
