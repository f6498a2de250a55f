"""``coro bench core`` times a replay of one node's recorded calls: the
replay must do exactly what the recorded core did, or the number measures
something else."""

from __future__ import annotations

from totemd.sim.bench import record, replay


def test_replay_ends_in_the_recorded_state():
    for size, rate in ((64, 20_000.0), (8192, 1_500.0)):
        recording = record(size, rate, virtual_ms=100.0)
        result = replay(recording)
        assert result["frames"] > 0 and result["messages"] > 0
        assert result["stats"] == recording.final_stats
