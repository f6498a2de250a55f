"""Flow control arithmetic of the regular token (totem.md §2.2 steps 3 and 8).

Pure functions, so the table tests can pin them down.
"""

from __future__ import annotations

from totemd.srp.params import SORT_QUEUE_MAX
from totemd.srp.seqnum import seq_diff

__all__ = ["transmits_allowed", "sort_queue_room", "update_fcc", "update_backlog"]


def transmits_allowed(max_messages: int, window_size: int, token_fcc: int, token_backlog: int,
                      my_backlog: int, my_previous_backlog: int) -> int:
    """Frames this node may send on this visit (corosync's fcc_calculate).

    Args:
        max_messages: per-visit cap.
        window_size: ring-wide cap per rotation.
        token_fcc: frames sent ring-wide during the last rotation.
        token_backlog: frames queued ring-wide, as the token says.
        my_backlog: frames this node has queued now.
        my_previous_backlog: what this node added to the token last visit.

    Returns:
        The budget, never negative. With a backlog, each node gets a share of
        the window proportional to its part of the ring's backlog.
    """
    allowed = min(max_messages, max(0, window_size - token_fcc))
    ring_backlog = token_backlog + my_backlog - my_previous_backlog
    if ring_backlog > 0:
        share = (window_size * my_backlog) // ring_backlog
        if 0 < share < allowed:
            allowed = share
    return allowed


def sort_queue_room(token_seq: int, token_aru: int, window_size: int) -> int:
    """Frames that may still be originated without any node's sort queue
    holding more than SORT_QUEUE_MAX frames (corosync's fcc_rtr_limit)."""
    return max(0, SORT_QUEUE_MAX - window_size - seq_diff(token_seq, token_aru))


def update_fcc(token_fcc: int, sent_now: int, sent_last_visit: int) -> int:
    """The token's fcc after this visit: replace what this node counted last
    rotation by what it sent now (never negative)."""
    return max(0, token_fcc + sent_now - sent_last_visit)


def update_backlog(token_backlog: int, backlog_now: int, backlog_last_visit: int) -> int:
    """The token's ring backlog after this visit (never negative, c:8f281418)."""
    return max(0, token_backlog + backlog_now - backlog_last_visit)
