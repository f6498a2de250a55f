"""Fault schedules for the simulator: a seeded generator and a value that
hypothesis can shrink.

A schedule is a tuple of ``Fault(at_ms, kind, node, other, value)`` sorted by
time. Kinds:

- ``crash`` node; ``restart`` node (value 1: keep the persisted ring seq,
  0: the file was lost); ``pause`` node for value ms; ``skew`` node's clock
  rate to value; ``leave`` node gracefully (then it is down)
- ``partition`` into two sides: nodes whose bit is set in ``other`` vs the rest
- ``heal_partition``; ``oneway`` drop every packet node -> other;
  ``heal_oneway``
- ``loss`` / ``duplicate`` probability value on every link; ``reorder``
  jitter value ms; ``token_loss`` probability value for token packets only
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Fault", "FaultSchedule", "FAULT_KINDS", "random_schedule"]

FAULT_KINDS = ("crash", "restart", "pause", "skew", "leave", "partition", "heal_partition",
               "oneway", "heal_oneway", "loss", "duplicate", "reorder", "token_loss")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One fault injected at virtual time ``at_ms``."""

    at_ms: float
    kind: str
    node: int = 0
    other: int = 0
    value: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


FaultSchedule = tuple[Fault, ...]


def random_schedule(rng: random.Random, nodes: int, duration_ms: float, token_ms: float,
                    kinds: tuple[str, ...] = FAULT_KINDS, count: int | None = None) -> FaultSchedule:
    """A random fault schedule within [0, duration_ms).

    Args:
        rng: the seed's generator.
        nodes: cluster size (node ids 1..nodes).
        duration_ms: the fault phase length.
        token_ms: the token timeout (pause lengths scale with it).
        kinds: the fault kinds allowed.
        count: number of faults (random when None).

    Returns:
        The schedule, sorted by time.
    """
    if count is None:
        count = rng.randint(1, 8)
    faults = []
    for _ in range(count):
        kind = rng.choice(kinds)
        at = rng.uniform(0, duration_ms)
        node = rng.randint(1, nodes)
        other = rng.randint(1, nodes)
        value = 0.0
        if kind == "restart":
            value = 1.0 if rng.random() < 0.85 else 0.0
        elif kind == "pause":
            value = rng.choice((0.2, 0.5, 1.0, 1.5, 3.0, 5.0)) * token_ms
        elif kind == "skew":
            value = rng.uniform(0.8, 1.2)
        elif kind == "partition":
            other = rng.randint(1, (1 << nodes) - 2) if nodes > 1 else 0
        elif kind in ("loss", "token_loss"):
            value = rng.choice((0.01, 0.05, 0.1, 0.2, 0.3))
        elif kind == "duplicate":
            value = rng.choice((0.01, 0.05))
        elif kind == "reorder":
            value = rng.choice((1.0, 5.0, 10.0))
        faults.append(Fault(at_ms=round(at, 3), kind=kind, node=node, other=other, value=value))
    return tuple(sorted(faults, key=lambda f: f.at_ms))
