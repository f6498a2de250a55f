"""The EVS checker: one hand-made history per rule that breaks exactly that
rule (and the witness names the culprit), and valid histories that pass every
rule."""

from __future__ import annotations

from typing import Callable

import pytest

from totemd.evs import check_records
from totemd.evslog import EventLog

from .histories import R4, R8, R16, History, valid_history

# Each builder returns (history, nodelist or None, substrings the first witness must contain).
Case = tuple[History, "list[int] | None", "list[str]"]


def s1_wrong_crc() -> Case:
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    m = n1.send(R4)
    n1.deliver(m).stop()
    n2.deliver(m, crc=m.crc ^ 1).stop()
    return h, None, ["n2.1", m.mid, "crc"]


def s1_invented_message() -> Case:
    h = History()
    n1 = h.node(1).reg(R4, [1])
    m = n1.send(R4)
    n1.deliver(m).deliver(m, mid="1.1.99", sseq=99).stop()
    return h, None, ["1.1.99", "no incarnation ever submitted it"]


def s2_delivered_twice() -> Case:
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    a, b = n1.send(R4), n2.send(R4)
    n1.deliver_all([a, b, b]).stop()
    n2.deliver_all([a, b]).stop()
    return h, None, ["node 1", b.mid, "twice"]


def s3_not_self_included() -> Case:
    h = History()
    h.node(1).reg(R4, [2]).stop()
    h.node(2).reg(R4, [2]).stop()
    return h, None, ["n1.1", "does not contain node 1"]


def s4_reg_after_reg() -> Case:
    h = History()
    h.node(1).reg(R4, [1]).reg(R8, [1]).stop()
    return h, None, ["n1.1", "REG [1,4]", "REG [1,8]", "alternate"]


def s4_trans_names_wrong_old_ring() -> Case:
    h = History()
    h.node(1).reg(R4, [1]).trans((1, 2), R8, [1]).reg(R8, [1]).stop()
    return h, None, ["n1.1", "old ring [1,2]"]


def s4_ring_seq_goes_back_after_restart() -> Case:
    h = History()
    h.node(1, 1).reg(R8, [1]).crash()
    h.node(1, 2).reg(R4, [1]).stop()
    return h, None, ["node 1", "n1.1", "n1.2", "REG [1,4]"]


def s5_same_id_other_members() -> Case:
    h = History()
    h.node(1).reg(R4, [1, 2]).stop()
    h.node(2).reg(R4, [2]).stop()
    return h, None, ["REG [1,4]", "[1,2]", "[2]"]


def s6_delivered_before_its_ring() -> Case:
    h = History()
    n1 = h.node(1).reg(R4, [1])
    m = n1.send(R8)  # stamped with a ring not yet installed here
    n1.deliver(m).stop()
    return h, None, ["n1.1", m.mid, "REG [1,4]", "[1,8]"]


def s6_in_conf_disagrees_with_log() -> Case:
    h = History()
    n1 = h.node(1).reg(R4, [1])
    m = n1.send(R4)
    n1.deliver(m, in_conf=[1, 2]).stop()
    return h, None, ["in_conf REG [1,2]", "REG [1,4]"]


def s6_delivered_before_any_configuration() -> Case:
    h = History()
    n1 = h.node(1)
    m = n1.send(R4)
    n1.deliver(m, in_conf=None).reg(R4, [1]).stop()
    return h, None, ["n1.1", m.mid, "before installing any configuration"]


def s7_not_prefixes() -> Case:
    h = History()
    n1, n2, n3 = (h.node(i).reg(R4, [1, 2, 3]) for i in (1, 2, 3))
    a, b, c = n1.send(R4), n2.send(R4), n3.send(R4)
    n1.deliver_all([a, b]).crash()
    n2.deliver_all([a, c]).crash()
    n3.crash()
    return h, None, ["REG [1,4]", "delivery #1", b.mid, c.mid]


def s7_gap_in_regular_delivery() -> Case:
    """n2 originated x and died; n1 delivered the later y in the same REG
    without ever delivering x: agreed delivery skipped a message."""
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    x = n2.send(R4)
    n2.crash()
    y = n1.send(R4)
    n1.deliver(y).stop()
    return h, None, ["n1.1", "seq 2", x.mid, "seq 1", "gap"]


def s8_cycle_from_disagreeing_seqs() -> Case:
    """Two nodes split from one ring and each delivers the old ring's two
    messages in its own TRANS, in opposite orders and with seqs that agree
    with each one's order. No local rule sees it; the global order does."""
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    a = n1.originate(n1.submit(), R4, seq=5)
    b = n2.originate(n2.submit(), R4, seq=6)
    n1.trans(R4, R8, [1]).deliver_all([a, b]).reg(R8, [1]).stop()
    n2.trans(R4, (2, 8), [2]).deliver(b, seq=4).deliver(a, seq=7).reg((2, 8), [2]).stop()
    return h, None, ["cycle", a.mid, b.mid, "n1.1", "n2.1"]


def s9_moved_together_delivered_differently() -> Case:
    h = History()
    n1, n2, n3 = (h.node(i).reg(R4, [1, 2, 3]) for i in (1, 2, 3))
    a = n3.send(R4)
    n3.deliver(a).crash()
    n1.deliver(a).trans(R4, R8, [1, 2]).reg(R8, [1, 2]).stop()
    n2.trans(R4, R8, [1, 2]).reg(R8, [1, 2]).stop()
    return h, None, ["n1.1 and n2.1", a.mid, "REG [1,4]", "TRANS [[1,4],[1,8]]"]


def s10_gap_in_a_senders_stream() -> Case:
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    b1, b2 = n2.send(R4), n2.send(R4)
    n2.deliver_all([b1, b2]).crash()
    n1.trans(R4, R8, [1]).deliver(b2).reg(R8, [1]).stop()
    return h, None, ["n1.1", b2.mid, "#0", b1.mid]


def s11_dependency_skipped() -> Case:
    h = History()
    n1, n2, n3 = (h.node(i).reg(R4, [1, 2, 3]) for i in (1, 2, 3))
    m = n1.send(R4)
    n2.deliver(m)
    m2 = n2.send(R4, deps=[m.mid])
    n1.deliver_all([m, m2]).stop()
    n2.deliver(m2).stop()
    n3.trans(R4, (3, 8), [3]).deliver(m2).reg((3, 8), [3]).stop()
    return h, None, ["n3.1", m2.mid, "depends on " + m.mid, "never"]


def s12_submitted_never_sent() -> Case:
    h = History()
    n1 = h.node(1).reg(R4, [1])
    m = n1.submit()
    n1.stop()
    return h, None, ["n1.1", m.mid, "without originating"]


def s13_safe_message_missed_by_a_member() -> Case:
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    m = n1.send(R4, safe=True)
    n1.deliver(m).stop()
    n2.trans(R4, (2, 8), [2]).reg((2, 8), [2]).stop()
    return h, None, ["safe " + m.mid, "member n2.1"]


def s14_trans_delivers_new_ring_message() -> Case:
    h = History()
    n1 = h.node(1).reg(R4, [1])
    m = n1.send(R8)
    n1.trans(R4, R8, [1]).deliver(m).reg(R8, [1]).stop()
    return h, None, ["n1.1", m.mid, "TRANS [[1,4],[1,8]]", "old ring [1,4]"]


def s15_member_never_installed() -> Case:
    h = History()
    h.node(1).reg(R4, [1, 2]).trans(R4, R8, [1, 2]).reg(R8, [1, 2]).stop()
    h.node(2).reg((2, 4), [2]).stop()
    return h, None, ["n1.1", "REG [1,4]", "node 2", "never installed"]


def s16_member_outside_nodelist() -> Case:
    h = History()
    for i in (1, 2):
        h.node(i).reg(R4, [1, 2]).stop()
    h.node(3).reg((3, 4), [3]).stop()
    return h, [1, 2], ["n3.1", "node(s) [3]", "nodelist [1,2]"]


def s16_member_that_never_ran() -> Case:
    h = History()
    h.node(1).reg(R4, [1, 5]).stop()
    return h, None, ["node(s) [5]", "never ran"]


def l1_not_converged() -> Case:
    h = History()
    h.node(1).reg(R8, [1])
    h.node(2).reg((2, 8), [2])
    start = h.clock
    h.tick()
    h.mark_quiet(start, h.clock)
    h.node(1).stop()
    h.node(2).stop()
    return h, None, ["n1.1", "n2.1", "REG [1,8]", "REG [2,8]"]


def l2_message_not_delivered() -> Case:
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    start = h.clock
    m = n1.send(R4)
    n1.deliver(m)
    h.mark_quiet(start, h.clock)
    n1.stop()
    n2.stop()
    return h, None, [m.mid, "not delivered by n2.1"]


def l3_flapping() -> Case:
    h = History()
    start = h.clock
    for i in (1, 2):
        h.node(i).reg(R4, [1, 2]).trans(R4, R8, [1, 2]).reg(R8, [1, 2])
    h.mark_quiet(start, h.clock)
    for i in (1, 2):
        h.node(i).stop()
    return h, None, ["n1.1", "installed 2 REG", "REG [1,4]", "REG [1,8]"]


CASES: dict[str, list[Callable[[], Case]]] = {
    "S1": [s1_wrong_crc, s1_invented_message],
    "S2": [s2_delivered_twice],
    "S3": [s3_not_self_included],
    "S4": [s4_reg_after_reg, s4_trans_names_wrong_old_ring, s4_ring_seq_goes_back_after_restart],
    "S5": [s5_same_id_other_members],
    "S6": [s6_delivered_before_its_ring, s6_in_conf_disagrees_with_log,
           s6_delivered_before_any_configuration],
    "S7": [s7_not_prefixes, s7_gap_in_regular_delivery],
    "S8": [s8_cycle_from_disagreeing_seqs],
    "S9": [s9_moved_together_delivered_differently],
    "S10": [s10_gap_in_a_senders_stream],
    "S11": [s11_dependency_skipped],
    "S12": [s12_submitted_never_sent],
    "S13": [s13_safe_message_missed_by_a_member],
    "S14": [s14_trans_delivers_new_ring_message],
    "S15": [s15_member_never_installed],
    "S16": [s16_member_outside_nodelist, s16_member_that_never_ran],
    "L1": [l1_not_converged],
    "L2": [l2_message_not_delivered],
    "L3": [l3_flapping],
}


@pytest.mark.parametrize(
    ("rule", "build"),
    [(rule, build) for rule, builders in CASES.items() for build in builders],
    ids=[build.__name__ for builders in CASES.values() for build in builders],
)
def test_each_rule_flags_its_violation_and_only_it(rule: str, build: Callable[[], Case]) -> None:
    history, nodes, expected = build()
    report = check_records(history.records(), quiet=history.quiet, nodes=nodes)
    assert report.violated == (rule,), report.format()
    witness = report.result(rule).witness
    for text in expected:
        assert text in witness, f"{text!r} not in witness {witness!r}"
    assert not report.ok
    assert f"VIOLATED" in report.format() and witness in report.format()


def test_every_rule_has_a_violating_history() -> None:
    from totemd.evs import RULES

    assert set(CASES) == set(RULES)


def test_valid_history_with_partition_crash_restart_and_safe_messages_passes() -> None:
    history = valid_history()
    report = check_records(history.records(), quiet=history.quiet, nodes=[1, 2, 3])
    assert report.ok, report.format()
    assert all(result.evaluated for result in report.results)
    assert report.incarnations == 4


def test_liveness_is_not_evaluated_without_a_quiet_window() -> None:
    history = valid_history()
    report = check_records(history.records())
    assert report.ok
    assert [r.name for r in report.results if not r.evaluated] == ["L1", "L2", "L3"]
    assert "no quiet window" in report.format()


def test_ring_seq_across_restarts_can_be_relaxed() -> None:
    history, _, _ = s4_ring_seq_goes_back_after_restart()
    assert check_records(history.records(), ring_seq_persisted=False).ok


def test_incarnation_without_stop_is_crashed_so_self_delivery_is_excused() -> None:
    h = History()
    n1 = h.node(1).reg(R4, [1])
    n1.submit()  # killed before it went out: no stop record
    assert check_records(h.records()).ok


def test_witnesses_are_counted_and_capped() -> None:
    h = History()
    n1 = h.node(1).reg(R4, [1])
    for _ in range(10):
        n1.submit()
    n1.stop()
    result = check_records(h.records()).result("S12")
    assert result.violations == 10 and len(result.witnesses) == 3


def test_memory_event_logs_feed_the_checker_directly() -> None:
    """The simulator's path: EventLog(None, ...) records into check_records."""
    logs = {n: EventLog(None, n, 1, clock=iter(range(0, 10**9, 10)).__next__) for n in (1, 2)}
    for log in logs.values():
        log.conf("REG", R4, [1, 2])
    crc = 12345
    logs[1].submit("1.1.1", 1, False, crc, None)
    logs[1].originate("1.1.1", R4, 1, 1)
    for log in logs.values():
        log.deliver("1.1.1", 1, 1, 1, R4, 1, False, crc, R4)
        log.conf("TRANS", (R4, R16), [1, 2])
        log.conf("REG", R16, [1, 2])
        log.stop()
    records = {(n, 1): log.records for n, log in logs.items()}
    assert check_records(records).ok
    # The same logs with node 2 missing the message break S9.
    del records[(2, 1)][1]
    assert check_records(records).violated == ("S9",)


def test_long_cycle_is_found_without_recursion() -> None:
    """S8 is iterative: a cycle through 20 000 messages (far past Python's
    recursion limit) is found, and its witness is that cycle."""
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    messages = [n1.send(R4) for _ in range(20_000)]
    n1.trans(R4, R8, [1]).deliver_all(messages).reg(R8, [1]).stop()
    n2.trans(R4, (2, 8), [2]).deliver(messages[-1], seq=0).deliver(messages[0], seq=1)
    n2.reg((2, 8), [2]).stop()
    report = check_records(h.records())
    s8 = report.result("S8")
    assert not s8.ok
    assert "cycle of 20000 edges" in s8.witness
    assert "19989 more edges" in s8.witness and len(s8.witness) < 2000


def test_packed_messages_share_a_seq_only_from_one_sender() -> None:
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    a = n1.originate(n1.submit(), R4, seq=1)
    b = n1.originate(n1.submit(), R4, seq=1)  # packed in the same frame
    for node in (n1, n2):
        node.deliver_all([a, b])
    assert check_records(h.records()).ok
    c = n2.originate(n2.submit(), R4, seq=1)  # another sender cannot share it
    n1.deliver(c)
    report = check_records(h.records())
    assert "S7" in report.violated
    assert "seq order broken" in report.result("S7").witness


def test_safe_delivery_excuses_a_member_that_crashed_before_moving_on() -> None:
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    m = n1.send(R4, safe=True)
    n1.deliver(m).trans(R4, R8, [1]).reg(R8, [1]).stop()
    n2.crash()  # still in REG [1,4] when it died
    assert check_records(h.records()).ok


def test_install_or_excluded_accepts_a_member_that_crashed_while_the_ring_formed() -> None:
    def build(end_of_node_2: str) -> History:
        h = History()
        h.node(1).reg(R4, [1]).trans(R4, R8, [1]).reg(R8, [1, 2]).trans(R8, R16, [1, 2])
        h.node(1).reg(R16, [1, 2]).stop()
        node_2 = h.node(2).reg((2, 4), [2])
        getattr(node_2, end_of_node_2)()
        return h

    assert check_records(build("crash").records()).ok  # died before installing [1,8]
    report = check_records(build("stop").records())
    assert report.violated == ("S15",)
    assert "REG [1,8] with node 2" in report.result("S15").witness


def test_virtual_synchrony_ignores_transitional_sets_of_a_process_that_died_in_them() -> None:
    h = History()
    n1, n2, n3 = (h.node(i).reg(R4, [1, 2, 3]) for i in (1, 2, 3))
    a, b = n3.send(R4), n3.send(R4)
    n3.deliver_all([a, b]).crash()
    n1.trans(R4, R8, [1, 2]).deliver_all([a, b]).reg(R8, [1, 2]).stop()
    n2.trans(R4, R8, [1, 2]).deliver(a).crash()  # killed halfway through TRANS
    assert check_records(h.records()).ok


def test_l2_ignores_messages_submitted_in_the_drain() -> None:
    h = History()
    n1, n2 = h.node(1).reg(R4, [1, 2]), h.node(2).reg(R4, [1, 2])
    start = h.clock
    early = n1.send(R4)
    n1.deliver(early)
    n2.deliver(early)
    drain_from = h.clock
    late = n1.send(R4)
    n1.deliver(late)  # n2 has not delivered it yet when the window ends
    end = h.clock
    n1.stop()
    n2.stop()
    assert check_records(h.records(), quiet=[
        {"ev": "quiet", "start": start, "end": end, "drain": end - drain_from}]).ok
    report = check_records(h.records(), quiet=[{"ev": "quiet", "start": start, "end": end}])
    assert report.violated == ("L2",) and late.mid in report.result("L2").witness


def test_quiet_windows_can_be_given_as_objects() -> None:
    from totemd.evs import QuietWindow

    history, _, _ = l1_not_converged()
    window = history.quiet[0]
    report = check_records(history.records(),
                           quiet=[QuietWindow(window["start"], window["end"])])
    assert report.violated == ("L1",)
