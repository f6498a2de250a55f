"""totemd/scheduling.py: corosync's sched_rr/priority, and what a refusal does."""

from __future__ import annotations

import os

import pytest

from totemd.scheduling import apply_scheduling, nice_value


def test_priority_words_are_corosyncs_nice_values():
    assert nice_value("max") == -20 and nice_value("min") == 19 and nice_value("-3") == -3
    with pytest.raises(ValueError):
        nice_value("high")


def test_nothing_changes_when_the_file_says_nothing(monkeypatch):
    def refuse(*_args):
        raise AssertionError("no scheduling call expected")
    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(os, "setpriority", refuse)
    assert apply_scheduling(None, None) == "unchanged"
    assert apply_scheduling(False, None) == "unchanged"


def test_a_refused_sched_rr_falls_back_to_the_maximal_nice_priority(monkeypatch, caplog):
    calls = []

    def no_rr(*_args):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "sched_setscheduler", no_rr)
    monkeypatch.setattr(os, "setpriority", lambda *args: calls.append(args))
    assert apply_scheduling(True, "5") == "nice -20"  # priority has no say with sched_rr
    assert calls == [(os.PRIO_PROCESS, 0, -20)]
    assert "could not set SCHED_RR (Operation not permitted)" in caplog.text


def test_a_refused_nice_value_is_logged_and_the_node_runs_on(monkeypatch, caplog):
    def no_nice(*_args):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "setpriority", no_nice)
    assert apply_scheduling(False, "max") == "unchanged"
    assert "could not set the nice value -20 (Permission denied)" in caplog.text


def test_sched_rr_is_asked_at_the_maximal_real_time_priority(monkeypatch):
    asked = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda pid, policy, param: asked.append(
        (pid, policy, param.sched_priority)))
    top = os.sched_get_priority_max(os.SCHED_RR)
    assert apply_scheduling(True, None) == f"SCHED_RR {top}"
    assert asked == [(0, os.SCHED_RR, top)]
