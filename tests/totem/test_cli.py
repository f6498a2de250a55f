"""``coro sim`` and ``coro bench core`` through the real entry point."""

from __future__ import annotations

import json

import pytest

from clients.cli import main


def test_coro_sim_runs_seeds_and_writes_logs(tmp_path, capsys):
    status = main(["sim", "--nodes", "2", "--seeds", "2", "--first-seed", "3", "--json",
                   "--log-dir", str(tmp_path)])
    assert status == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["seed"] for row in rows] == [3, 4]
    assert all(row["ok"] and row["violated"] == [] for row in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed-3", "seed-4"]
    assert (tmp_path / "seed-3" / "n1.1.jsonl").is_file()


def test_coro_sim_rejects_an_unknown_fault(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "--faults", "crash,meteor"])
    assert exit_info.value.code == 2
    assert "unknown fault kind(s) meteor" in capsys.readouterr().err


def test_coro_sim_reports_a_violation_with_its_seed(monkeypatch, capsys):
    from totemd.sim import cli
    from tests.totem.test_property import SkipsFirstDeliveryAfterChange
    real = cli.run_schedule

    def broken(config, schedule, fault_ms, quiet_ms):
        return real(config, schedule, fault_ms, quiet_ms,
                    core_factory=SkipsFirstDeliveryAfterChange)
    monkeypatch.setattr(cli, "run_schedule", broken)
    status = main(["sim", "--nodes", "3", "--seeds", "5", "--faults", "crash", "--no-shrink"])
    assert status == 1
    err = capsys.readouterr().err
    assert "violated" in err and "--first-seed" in err


def test_coro_bench_core_json_rows(capsys):
    assert main(["bench", "core", "--virtual-ms", "150", "--repeat", "1", "--visits", "200",
                 "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rows = [row for row in lines if "size" in row]
    visits = [row for row in lines if "size" not in row]
    assert [row["case"] for row in visits] == ["idle visit", "loaded visit"]
    assert visits[0]["visits"] == 200 and visits[0]["us_per_visit"] > 0
    assert visits[1]["frames_per_visit"] > 0 and visits[1]["us_per_frame"] > 0
    assert [row["size"] for row in rows] == [64, 8192]
    assert all(row["frames"] > 0 and row["messages_per_s"] > 0 for row in rows)
    assert rows[0]["messages"] > rows[0]["frames"]  # 64 B messages are packed
    assert rows[1]["frames"] > rows[1]["messages"]  # 8 KiB messages are fragmented
