"""32-bit Totem sequence numbers that wrap (totem.md §2.1).

Two seqs are compared inside a window: ``a`` precedes ``b`` when the signed
32-bit difference ``b - a`` is positive. Never compare seqs with ``<``
(corosync c:ecb97392, c:be835fb3). Every seq of one ring lies within 2**31 of
every other, which the sort-queue bound guarantees.
"""

from __future__ import annotations

__all__ = ["SEQ_MASK", "SEQ_HALF", "seq_add", "seq_diff", "seq_lt", "seq_le", "seq_gt", "seq_ge",
           "seq_max", "seq_min"]

SEQ_MASK = 0xFFFFFFFF
SEQ_HALF = 0x80000000  # a is before b when 0 < (b - a) & SEQ_MASK <= SEQ_HALF
_HALF = SEQ_HALF


def seq_add(seq: int, count: int) -> int:
    """``seq + count`` modulo 2**32."""
    return (seq + count) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance ``a - b`` in (-2**31, 2**31]."""
    d = (a - b) & SEQ_MASK
    return d - 0x100000000 if d > _HALF else d


def seq_lt(a: int, b: int) -> bool:
    """``a`` strictly precedes ``b``."""
    d = (b - a) & SEQ_MASK
    return 0 < d <= _HALF


def seq_le(a: int, b: int) -> bool:
    """``a`` precedes or equals ``b``."""
    return ((b - a) & SEQ_MASK) <= _HALF


def seq_gt(a: int, b: int) -> bool:
    """``a`` strictly follows ``b``."""
    d = (a - b) & SEQ_MASK
    return 0 < d <= _HALF


def seq_ge(a: int, b: int) -> bool:
    """``a`` follows or equals ``b``."""
    return ((a - b) & SEQ_MASK) <= _HALF


def seq_max(a: int, b: int) -> int:
    """The later of two seqs."""
    return b if seq_lt(a, b) else a


def seq_min(a: int, b: int) -> int:
    """The earlier of two seqs."""
    return a if seq_lt(a, b) else b
