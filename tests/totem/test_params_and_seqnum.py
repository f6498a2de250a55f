"""TotemParams (totem.md §2.3) and 32-bit seq arithmetic (§2.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totemd.srp import ParamsError, TotemParams
from totemd.srp.seqnum import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt, seq_max, seq_min


def test_corosync_defaults_and_derivations():
    params = TotemParams()
    assert params.token_ms == 3000 and params.token_coefficient_ms == 650
    assert params.join_ms == 50 and params.merge_ms == 200
    assert params.fail_recv_const == 2500 and params.seqno_unchanged_const == 30
    assert params.window_size == 50 and params.max_messages == 17
    assert params.miss_count_const == 5 and params.netmtu == 1500
    assert params.token_retransmit_ms == pytest.approx(3000 / 4.2)
    assert params.hold_ms == pytest.approx(0.8 * 3000 / 4.2 - 10)
    assert params.consensus_ms == pytest.approx(3600)


def test_token_coefficient_per_node_above_two():
    params = TotemParams(nodes=5)
    assert params.effective_token_ms == 3000 + 3 * 650
    assert params.consensus_ms == pytest.approx(1.2 * 4950)
    assert params.token_retransmit_ms == pytest.approx(4950 / 4.2)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_messages": 60}, r"^max_messages \(60\) must not exceed window_size \(50\)$"),
    ({"consensus_ms": 10.0, "join_ms": 50.0, "nodes": 2},
     r"^consensus_ms \(10.0 ms\) must be at least join_ms \(50.0 ms\)$"),
    ({"consensus_ms": 3000.0, "nodes": 3},
     r"^consensus_ms \(3000.0 ms\) must be at least 1.2 x token \(4380.0 ms\) with 3 or more nodes$"),
    ({"netmtu": 100}, r"^netmtu \(100 bytes\) must be within 256..65536$"),
    ({"window_size": -1}, r"^window_size \(-1\) must not be negative$"),
])
def test_invalid_params_are_named(kwargs, message):
    with pytest.raises(ParamsError, match=message):
        TotemParams(**kwargs)


def test_frozen():
    with pytest.raises(AttributeError):
        TotemParams().token_ms = 5  # type: ignore[misc]


def test_seq_wraps_around():
    top = 0xFFFFFFFF
    assert seq_add(top, 1) == 0
    assert seq_lt(top, 0) and seq_gt(0, top)
    assert seq_lt(top - 5, 3) and not seq_lt(3, top - 5)
    assert seq_diff(2, top - 1) == 4 and seq_diff(top - 1, 2) == -4
    assert seq_max(top, 2) == 2 and seq_min(top, 2) == top
    assert seq_le(5, 5) and seq_ge(5, 5) and not seq_lt(5, 5)


@given(st.integers(0, 0xFFFFFFFF), st.integers(1, 2**31 - 1))
def test_seq_order_is_translation_invariant(base, distance):
    later = seq_add(base, distance)
    assert seq_lt(base, later) and seq_gt(later, base)
    assert seq_diff(later, base) == distance
    assert not seq_lt(later, base)
