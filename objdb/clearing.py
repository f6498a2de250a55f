"""Trigger keys followed by the node's processes: clearing statistics on
request, as ``corosync-cmapctl -C TARGET`` does, and dumping flight data.

An administrator (``coro cmap -C totem``) writes ``stats.clear.<target>``;
the store counts such writes (``objdb.keys.TRIGGER_KEYS``). Each process that
publishes statistics (objdb itself, totemd) reads those counts when it
publishes and, for each target asked for since it last looked, restarts the
counters of that target from zero in what it publishes. The counters inside
the process go on counting (its logic and the local interface read them);
only the published values are measured from the clear. Levels (queue
lengths, connections, buffer sizes) are not counters and are never cleared.

``runtime.blackbox.dump_flight_data`` (what corosync-blackbox writes) is
followed the same way by totemd, which then writes its flight data.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from objdb.keys import CLEAR_TARGETS

__all__ = ["CLEAR_KEYS", "DUMP_FLIGHT_DATA_KEY", "Baselines", "TriggerWatch", "expand_targets"]

#: target -> its trigger key.
CLEAR_KEYS: dict[str, str] = {target: f"stats.clear.{target}" for target in CLEAR_TARGETS}
DUMP_FLIGHT_DATA_KEY = "runtime.blackbox.dump_flight_data"


def expand_targets(targets: Iterable[str]) -> set[str]:
    """``all`` stands for every target."""
    chosen = set(targets)
    return set(CLEAR_TARGETS) if "all" in chosen else chosen


class TriggerWatch:
    """Which trigger keys were written since the last look."""

    def __init__(self) -> None:
        self._seen: dict[str, int] | None = None

    def changed(self, counts: Mapping[str, int]) -> set[str]:
        """The keys (or targets) whose request count changed.

        Args:
            counts: key -> its count (0 when the key is absent).

        The first look only records the counts: a process that starts has
        fresh counters, and requests made before it started are not for it.
        """
        seen, self._seen = self._seen, dict(counts)
        if seen is None:
            return set()
        return {key for key, count in counts.items() if count != seen.get(key, 0)}


class Baselines:
    """Published counters measured from their last clear."""

    def __init__(self) -> None:
        self._base: dict[str, int] = {}

    def clear(self, counters: Mapping[str, int]) -> None:
        """From now on each of ``counters`` (key -> its current value) reads 0."""
        self._base.update(counters)

    def apply(self, key: str, value: int) -> int:
        """What to publish for a counter whose own value is ``value``."""
        base = self._base.get(key)
        return value if base is None else max(0, value - base)
