"""corosync's ``system.sched_rr`` and ``system.priority``, applied to totemd.

corosync takes SCHED_RR at the maximal real-time priority unless told not
to (falling back to the maximal nice priority when that is refused), and
otherwise sets ``system.priority`` as a nice value. totemd does the same
when the file *says* ``sched_rr: yes``; when it does not say, totemd keeps
the normal policy: measured on a 2-CPU machine, real-time totemds take the
CPU from their local clients (a closed-loop client's latency +40%), though
they order more (docs/architecture.md, "Fourth round"). A refusal (no
privilege, a container) is logged and the node runs on: scheduling is a
preference, never a reason not to start.
"""

from __future__ import annotations

import logging
import os

__all__ = ["apply_scheduling", "nice_value"]

log = logging.getLogger("totemd")

NICE_MAX_PRIORITY = -20
NICE_MIN_PRIORITY = 19


def nice_value(priority: str) -> int:
    """corosync's ``priority``: "max" is nice -20, "min" nice 19, else the number.

    Raises:
        ValueError: not a number (the configuration checks it first).
    """
    if priority == "max":
        return NICE_MAX_PRIORITY
    if priority == "min":
        return NICE_MIN_PRIORITY
    return int(priority)


def apply_scheduling(sched_rr: bool | None, priority: str | None) -> str:
    """Set this process's scheduling as the configuration asks.

    Args:
        sched_rr: ``system.sched_rr`` (None: not set: nothing changes).
        priority: ``system.priority`` (used unless ``sched_rr`` is True).

    Returns:
        What the process runs with now, for the log and the tests:
        "SCHED_RR N", "nice N" or "unchanged".
    """
    if sched_rr:
        top = os.sched_get_priority_max(os.SCHED_RR)
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(top))
        except OSError as error:
            log.warning("could not set SCHED_RR (%s); trying the maximal nice priority instead",
                        error.strerror or error)
            return _set_nice(NICE_MAX_PRIORITY)
        log.info("scheduling: SCHED_RR priority %d (system.sched_rr)", top)
        return f"SCHED_RR {top}"
    if priority is not None:
        return _set_nice(nice_value(priority))
    return "unchanged"


def _set_nice(nice: int) -> str:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as error:
        log.warning("could not set the nice value %d (%s); running with %d", nice,
                    error.strerror or error, os.getpriority(os.PRIO_PROCESS, 0))
        return "unchanged"
    log.info("scheduling: nice %d (system.priority)", nice)
    return f"nice {nice}"
