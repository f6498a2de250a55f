"""The daemon's statistics: the snapshot local programs read (``DaemonStats``),
the once-a-second tick (token rotation time, the supervisor's liveness), and
the publication of the changed keys into objdb (``stats.srp.*`` and the rest,
see ``totemd.stats``). A mixin of ``totemd.daemon.Daemon``, on its state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING

from coroconf import logsetup
from objdb.clearing import CLEAR_KEYS, DUMP_FLIGHT_DATA_KEY, TriggerWatch, expand_targets
from totemd.stats import DaemonStats, clear_target, cmap_items

if TYPE_CHECKING:
    from totemd.daemon import Daemon

__all__ = ["StatsMixin", "STATS_INTERVAL_MS", "CMAP_RETRY_MS"]

log = logging.getLogger("totemd")

STATS_INTERVAL_MS = 1000.0
CMAP_RETRY_MS = 5000.0


class StatsMixin:
    """``Daemon.stats`` and the publication of statistics into objdb."""

    def stats(self: Daemon) -> DaemonStats:
        """A snapshot for the local interface and objdb."""
        srp = self.core.stats()
        srp_dict = {name: getattr(srp, name) for name in srp.__dataclass_fields__}
        srp_dict["ring_id"] = list(srp.ring_id)
        transport = dataclasses.asdict(self.transport.stats)
        server = self.server.stats() if self.server is not None else None
        daemon = {**self._counts,
                  "loop_stall_max_ms": round(self._max_stall_ms, 3),
                  "loop_turn_max_ms": round(self._max_turn_ms, 3),
                  "send_queue_frames": self.core.queued_frames(),
                  "local_connections": server.connections if server is not None else 0,
                  "local_events_refused": server.events_refused if server is not None else 0}
        return DaemonStats(
            node_id=self.node_id, inc=self.inc, state=srp.state, ring_id=self._ring_id,
            members=self._members, last_state_change=self._last_state_change,
            token_rotation_ms=round(self._token_rotation_ms, 3), srp=srp_dict,
            transport=transport, local=self.service.stats(), daemon=daemon,
            members_detail={n: {"ip": r.ip, "join_count": r.join_count, "status": r.status}
                            for n, r in sorted(self._member_records.items())})

    def _stats_tick(self: Daemon, now: float) -> None:
        self._publish_due = False
        if now >= self._next_stats_ms:
            self._next_stats_ms = now + STATS_INTERVAL_MS
            then, tokens_then = self._token_rate
            tokens = self.core.stats().orf_token_rx
            if tokens > tokens_then and now > then:
                self._token_rotation_ms = (now - then) / (tokens - tokens_then)
            elif now > then:
                self._token_rotation_ms = 0.0
            self._token_rate = (now, tokens)
            self._check_parent()
        self._publish(now)

    def _check_parent(self: Daemon) -> None:
        parent = self.settings.extra.get("parent_pid")
        if parent and os.getppid() != parent:
            log.error("the supervisor (pid %d) is gone; stopping", parent)
            self._stop_requested = True

    def _publish(self: Daemon, now: float) -> None:
        """Write the changed statistics keys into objdb (privileged connection)."""
        from objdb.errors import ObjdbError

        if self._cmap is None:
            if now < self._cmap_retry_ms:
                return
            self._cmap_retry_ms = now + CMAP_RETRY_MS
            try:
                from clients.cmap import CmapClient
                self._cmap = CmapClient.connect(self.settings.run_dir, internal=True, timeout=1.0)
            except ObjdbError as error:
                log.debug("objdb not reachable, statistics not published: %s", error)
                return
            self._published.clear()
            self._triggers = TriggerWatch()  # another objdb: its own counts
        try:
            self._check_triggers()
        except ObjdbError as error:
            log.debug("trigger keys not read: %s", error)
        items = cmap_items(self.stats(), self.settings.config_version)
        apply = self._baselines.apply
        changed = []
        for key, (value, value_type) in items.items():
            if value_type == "u64":
                value = apply(key, value)
            if self._published.get(key) != value:
                changed.append((key, value, value_type))
        if not changed:
            return
        try:
            # One round trip for every changed key (was one per key: ~12% of
            # a loaded node's time went into waiting for objdb's answers).
            errors = self._cmap.set_many(changed)
            for (key, value, _type), error in zip(changed, errors):
                if error is None:
                    self._published[key] = value
                else:
                    self._counts["cmap_errors"] += 1
                    log.warning("publishing %s into objdb failed: %s", key, error)
        except ObjdbError as error:
            self._counts["cmap_errors"] += 1
            log.warning("publishing statistics into objdb failed: %s", error)
            self._close_cmap()

    def _check_triggers(self: Daemon) -> None:
        """The trigger keys written since the last look (objdb.clearing)."""
        names = [*CLEAR_KEYS, "dump"]
        found = self._cmap.get_many([*CLEAR_KEYS.values(), DUMP_FLIGHT_DATA_KEY])
        changed = self._triggers.changed({
            name: entry[0] if entry is not None and isinstance(entry[0], int) else 0
            for name, entry in zip(names, found)})
        if "dump" in changed:
            path = logsetup.dump_flight_data(self.settings.state_dir, "totemd")
            if path is not None:
                log.info("flight data written to %s (%s)", path, DUMP_FLIGHT_DATA_KEY)
            changed.discard("dump")
        if changed:
            self._clear_stats(expand_targets(changed))

    def _clear_stats(self: Daemon, targets: set[str]) -> None:
        """``coro cmap -C TARGET``: the counters of ``targets`` are published
        from zero on; the maxima of those targets restart."""
        items = cmap_items(self.stats(), self.settings.config_version)
        self._baselines.clear({key: value for key, (value, value_type) in items.items()
                               if value_type == "u64" and clear_target(key) in targets})
        if "schedmiss" in targets:
            self._max_stall_ms = 0.0
        if "totem" in targets:
            self._max_turn_ms = 0.0
        if "ipc" in targets:
            self.service.overflow_peak_bytes = 0
        log.info("statistics cleared: %s (stats.clear.*)", ", ".join(sorted(targets)))

    def _close_cmap(self: Daemon) -> None:
        cmap, self._cmap = self._cmap, None
        try:
            cmap.close()
        except Exception:  # noqa: BLE001 - a dead connection is already closed
            pass
