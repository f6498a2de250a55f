"""The event log writer (totemd.evslog): file and in-memory forms, the
schema, buffering, the incarnation counter."""

from __future__ import annotations

import json
import zlib

import pytest

from totemd.evslog import (
    EventLog,
    append_crash,
    incarnation_file_name,
    next_incarnation,
    write_quiet,
)


def _write_sample(log: EventLog) -> None:
    crc = zlib.crc32(b"hello")
    log.conf("REG", (1, 4), [3, 1, 2], t=0)
    log.submit("1.1.1", 1, False, crc, None, t=1000)
    log.originate("1.1.1", (1, 4), 1, 1, t=3000)
    log.deliver("1.1.1", 1, 1, 1, (1, 4), 1, False, crc, (1, 4), t=5000)
    log.conf("TRANS", ((1, 4), (1, 8)), [1, 2], t=35000)
    log.conf("REG", [1, 8], (1, 2), t=36000)


EXPECTED = [
    {"node": 1, "inc": 1, "t": 0, "ev": "conf", "kind": "REG", "id": [1, 4], "members": [1, 2, 3]},
    {"node": 1, "inc": 1, "t": 1000, "ev": "submit", "mid": "1.1.1", "sseq": 1, "safe": False,
     "crc": 907060870, "deps": None},
    {"node": 1, "inc": 1, "t": 3000, "ev": "originate", "mid": "1.1.1", "ring": [1, 4], "seq": 1,
     "sseq": 1},
    {"node": 1, "inc": 1, "t": 5000, "ev": "deliver", "mid": "1.1.1", "sender": 1, "sinc": 1,
     "sseq": 1, "orig_ring": [1, 4], "seq": 1, "safe": False, "crc": 907060870, "in_conf": [1, 4]},
    {"node": 1, "inc": 1, "t": 35000, "ev": "conf", "kind": "TRANS", "id": [[1, 4], [1, 8]],
     "members": [1, 2]},
    {"node": 1, "inc": 1, "t": 36000, "ev": "conf", "kind": "REG", "id": [1, 8], "members": [1, 2]},
]


def test_file_log_follows_the_schema_and_flushes_on_stop(tmp_path) -> None:
    log = EventLog(tmp_path, 1, 1)
    _write_sample(log)
    path = tmp_path / "n1.1.jsonl"
    # Buffered: nothing reaches the file before a flush.
    assert path.read_text() == ""
    log.stop(t=99000)
    assert log.closed
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == EXPECTED + [
        {"node": 1, "inc": 1, "t": 99000, "ev": "stop"}]
    # Compact separators, key order node, inc, t, ev first.
    assert lines[0].startswith('{"node":1,"inc":1,"t":0,"ev":"conf"')
    with pytest.raises(ValueError, match="closed"):
        log.conf("REG", (1, 12), [1], t=1)


def test_delivery_before_any_configuration_is_logged_not_raised() -> None:
    log = EventLog(None, 1, 1)
    log.deliver("1.1.1", 1, 1, 1, (1, 4), 1, False, 0, None, t=5)
    assert log.records[0]["in_conf"] is None


def test_memory_log_keeps_the_same_records() -> None:
    log = EventLog(None, 1, 1)
    _write_sample(log)
    assert log.records == EXPECTED
    assert log.path is None


def test_flush_every_and_explicit_flush(tmp_path) -> None:
    ticks = iter(range(100, 10_000, 100))
    with EventLog(tmp_path, 2, 3, clock=lambda: next(ticks), flush_every=2) as log:
        log.conf("REG", (2, 4), [2])
        assert (tmp_path / "n2.3.jsonl").read_text() == ""
        log.submit("2.3.1", 1, True, 5, ["1.1.1"])
        assert len((tmp_path / "n2.3.jsonl").read_text().splitlines()) == 2
        log.originate("2.3.1", (2, 4), 7, 1)
        log.flush()
        records = [json.loads(x) for x in (tmp_path / "n2.3.jsonl").read_text().splitlines()]
    assert [r["t"] for r in records] == [100, 200, 300]
    assert records[1]["deps"] == ["1.1.1"] and records[1]["safe"] is True


def test_crash_record_by_the_harness(tmp_path) -> None:
    log = EventLog(tmp_path, 3, 1)
    log.conf("REG", (3, 4), [3], t=10)
    log.flush()  # what a daemon does before sending; then it is killed
    append_crash(tmp_path, 3, 1, t=20)
    records = [json.loads(x) for x in (tmp_path / "n3.1.jsonl").read_text().splitlines()]
    assert [r["ev"] for r in records] == ["conf", "crash"]
    log.close()


def test_bad_arguments_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="node and inc"):
        EventLog(tmp_path, 0, 1)
    log = EventLog(None, 1, 1)
    with pytest.raises(ValueError, match="REG or TRANS"):
        log.conf("OTHER", (1, 4), [1])


def test_incarnation_counter_starts_at_one_and_grows(tmp_path) -> None:
    state = tmp_path / "state"
    assert next_incarnation(state) == 1
    assert next_incarnation(state) == 2
    assert next_incarnation(state) == 3
    assert (state / "incarnation").read_text() == "3\n"
    assert not (state / "incarnation.tmp").exists()
    (state / "incarnation").write_text("garbage")
    with pytest.raises(ValueError, match="not a positive integer"):
        next_incarnation(state)


def test_quiet_record(tmp_path) -> None:
    write_quiet(tmp_path, 100, 900, drain=50)
    assert json.loads((tmp_path / "harness.jsonl").read_text()) == {
        "ev": "quiet", "start": 100, "end": 900, "drain": 50}
    with pytest.raises(ValueError, match="bad quiet window"):
        write_quiet(tmp_path, 900, 100)
    assert incarnation_file_name(4, 7) == "n4.7.jsonl"
