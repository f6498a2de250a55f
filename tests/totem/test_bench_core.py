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


def test_visit_bench_drives_a_formed_ring():
    """The visit rows time what they claim: one token forwarded per idle
    visit (none dropped as a duplicate), and a loaded visit receives,
    originates and delivers its frames."""
    import copy

    from totemd.sim import visit_bench
    from totemd.srp import SendUnicast, State, TotemParams

    params = TotemParams(nodes=3)
    formed = visit_bench.form_ring(params)
    assert formed.state is State.OPERATIONAL and formed.members == (1, 2, 3)
    core = copy.deepcopy(formed)
    tokens = visit_bench.idle_visits(formed, 20)
    before = core.stats()
    for token in tokens:
        core.receive_many([token], formed._now + 1.0, False)
        assert [type(a) for a in core.take_actions()].count(SendUnicast) == 1
    after = core.stats()
    assert after.orf_token_tx - before.orf_token_tx == 20
    assert after.token_duplicate == before.token_duplicate

    visits = 10
    core = copy.deepcopy(formed)
    before = core.stats()
    _cpu, sent = visit_bench._time_loaded(core, visit_bench.loaded_visits(formed, visits, params),
                                          formed._now + 1.0)
    after = core.stats()
    frames = visit_bench.FRAMES_IN + visit_bench.FRAMES_OUT
    assert sent == visits * visit_bench.FRAMES_OUT
    assert after.frames_delivered - before.frames_delivered == visits * frames
    assert after.messages_delivered - before.messages_delivered > visits * frames // 7
    assert after.mcast_duplicate == before.mcast_duplicate
    rows = visit_bench.measure_visits(idle_count=50, loaded_count=5, repeat=1)
    assert [row["case"] for row in rows] == ["idle visit", "loaded visit"]
    assert all(row["us_per_visit"] > 0 for row in rows)
