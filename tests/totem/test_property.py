"""Property tests over fault schedules (hypothesis), and proof that a broken
core is caught and its failing schedule shrunk to a minimal one."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from totemd.sim.faults import FAULT_KINDS, Fault
from totemd.sim.runner import run_schedule, seed_config, shrink_schedule
from totemd.srp import ConfChange, ConfKind, Deliver, DeliverFrame, SrpCore

NODES = 3
# CI explores the same examples every run (no flaky CI); `make soak` explores new ones.
SOAK = os.environ.get("CORO_SOAK") == "1"


@st.composite
def fault_schedules(draw, kinds=FAULT_KINDS, max_size=6):
    """A shrinkable fault schedule: fewer faults, earlier, simpler values."""
    size = draw(st.integers(0, max_size))
    faults = []
    for _ in range(size):
        kind = draw(st.sampled_from(kinds))
        at = draw(st.integers(0, 99)) * 10.0
        node = draw(st.integers(1, NODES))
        other = draw(st.integers(1, (1 << NODES) - 2)) if kind == "partition" else \
            draw(st.integers(1, NODES))
        value = {"pause": draw(st.sampled_from((50.0, 250.0, 600.0))),
                 "skew": draw(st.sampled_from((0.8, 1.2))),
                 "restart": draw(st.sampled_from((1.0, 0.0))),
                 "loss": draw(st.sampled_from((0.1, 0.3))),
                 "token_loss": draw(st.sampled_from((0.1, 0.3))),
                 "duplicate": 0.05, "reorder": 5.0}.get(kind, 0.0)
        faults.append(Fault(at_ms=at, kind=kind, node=node, other=other, value=value))
    return tuple(sorted(faults, key=lambda f: f.at_ms))


@given(fault_schedules(), st.integers(0, 2**16))
@settings(max_examples=500 if SOAK else 25, deadline=None, database=None,
          derandomize=not SOAK, suppress_health_check=[HealthCheck.too_slow])
def test_any_fault_schedule_keeps_every_evs_rule(schedule, seed):
    config, _ = seed_config(seed, NODES)
    result = run_schedule(config, schedule)
    assert result.ok, result.witness()


class SkipsFirstDeliveryAfterChange(SrpCore):
    """A deliberately broken core: after every configuration change but the
    first it skips one delivery, a message or a frame's worth (the bug needs
    a fault to show)."""

    _regular_changes = 0
    _skip_next = False

    def take_actions(self):
        kept = []
        for action in super().take_actions():
            if isinstance(action, ConfChange) and action.kind is ConfKind.REG:
                self._regular_changes += 1
                self._skip_next = self._regular_changes > 1
            elif isinstance(action, (Deliver, DeliverFrame)) and self._skip_next:
                self._skip_next = False
                continue
            kept.append(action)
        return kept


CRASHY = ("crash", "restart", "partition", "heal_partition", "loss")


def test_broken_core_is_caught_and_the_schedule_shrunk():
    failing: list[tuple[Fault, ...]] = []

    @given(fault_schedules(kinds=CRASHY, max_size=5))
    @settings(max_examples=20, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    def broken_core_keeps_evs(schedule):
        config, _ = seed_config(5, NODES, cluster_rate_per_s=200.0)
        result = run_schedule(config, schedule, 600.0, 500.0,
                              core_factory=SkipsFirstDeliveryAfterChange)
        if not result.ok:
            failing.append(schedule)
        assert result.ok, result.witness()

    try:
        broken_core_keeps_evs()
    except AssertionError as error:
        caught = str(error)
    else:
        raise AssertionError("hypothesis did not catch the broken core")
    assert "violated" in caught
    largest = max(len(schedule) for schedule in failing)
    minimal = failing[-1]  # hypothesis replays its shrunk example last
    assert 1 <= len(minimal) <= 2 and len(minimal) <= largest


def test_greedy_shrinker_finds_a_minimal_witness():
    config, _ = seed_config(5, NODES, cluster_rate_per_s=200.0)
    noisy = (Fault(at_ms=50.0, kind="skew", node=2, value=1.2),
             Fault(at_ms=120.0, kind="duplicate", value=0.05),
             Fault(at_ms=300.0, kind="crash", node=3),
             Fault(at_ms=420.0, kind="reorder", value=5.0))
    result = shrink_schedule(config, noisy, core_factory=SkipsFirstDeliveryAfterChange)
    assert not result.ok
    assert [f.kind for f in result.schedule] == ["crash"]
    # The same schedule passes with the real core.
    assert run_schedule(config, result.schedule).ok
