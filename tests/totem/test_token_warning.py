"""token_warning: the core reports a token not received for token_warning
percent of the token timeout (corosync's "Token has not been received in N
ms"), armed with the token loss timer, re-armed by every token, off at 0."""

from __future__ import annotations

import pytest

from totemd.srp import (ParamsError, SetTimer, SrpCore, State, Timer, TokenWarning,
                        TotemParams)

from tests.totem.helpers import Net

TOKEN_MS = 1000.0


def _net(percent: int, nodes: int = 3, net_class: type[Net] = Net) -> Net:
    net = net_class(nodes, TotemParams(token_ms=TOKEN_MS, token_coefficient_ms=0.0, nodes=nodes,
                                       token_warning_percent=percent))
    net.form_ring()
    assert all(core.state is State.OPERATIONAL for core in net.cores.values())
    return net


def _drop_everything(net: Net) -> dict[int, float]:
    """Cut the network; the token loss deadline each node has from then on."""
    net.filter = lambda _src, _dest, _packet: False
    return {node: timers[Timer.TOKEN_LOSS] for node, timers in net.timers.items()}


def test_the_warning_is_a_percentage_of_the_effective_token():
    assert TotemParams().token_warning_percent == 75
    # 5 nodes with corosync's defaults: 3000 + 3 x 650 = 4950 ms, 75 % of it
    # is corosync's familiar "Token has not been received in 3712 ms".
    assert TotemParams(nodes=5).token_warning_ms == pytest.approx(3712.5)
    assert TotemParams(token_warning_percent=0).token_warning_ms == 0.0
    assert TotemParams(token_warning_percent=100).token_warning_ms == 3000.0
    with pytest.raises(ParamsError, match="token_warning_percent"):
        TotemParams(token_warning_percent=101)


def test_armed_with_the_token_loss_timer_in_operational():
    net = _net(75)
    for timers in net.timers.values():
        assert Timer.TOKEN_WARNING in timers
        # Lazy: it may be behind the last token, never after its deadline.
        assert timers[Timer.TOKEN_WARNING] <= timers[Timer.TOKEN_LOSS] - 0.25 * TOKEN_MS + 1e-6


def test_warns_once_at_75_percent_then_the_token_is_lost_and_the_timer_disarmed():
    net = _net(75)
    loss = _drop_everything(net)
    net.run_timers(max(loss.values()))
    for node, core in net.cores.items():
        assert core.state is State.GATHER
        [(when, warning)] = net.warnings[node]
        assert warning.elapsed_ms == pytest.approx(750.0)
        assert when == pytest.approx(loss[node] - 250.0)
        assert warning.token_timeout_ms == TOKEN_MS and warning.state is State.OPERATIONAL
        assert core.stats().token_warnings == 1
        assert Timer.TOKEN_WARNING not in net.timers[node]


def test_repeats_every_period_until_the_token_is_lost():
    net = _net(30)
    loss = _drop_everything(net)
    net.run_timers(max(loss.values()))
    for node in net.cores:
        times = [when for when, _warning in net.warnings[node]]
        assert times == pytest.approx([loss[node] - 700, loss[node] - 400, loss[node] - 100])
        assert [w.elapsed_ms for _when, w in net.warnings[node]] == pytest.approx([300, 600, 900])


def test_a_token_re_arms_it_and_a_healthy_ring_never_warns():
    net = _net(40)
    start = net.now
    net.run_timers(start + 5000.0)
    assert net.now > start + 4000.0  # the token kept moving (hold releases)
    assert all(not warnings for warnings in net.warnings.values())
    gathers = {node: core.stats().gather_entered for node, core in net.cores.items()}
    # Now the token stops for a while: each node warns once (at 400 ms) ...
    loss = _drop_everything(net)
    net.run_timers(min(loss.values()) - 550.0)
    assert [len(net.warnings[node]) for node in net.cores] == [1, 1, 1]
    # ... then a token retransmission gets through and the ring carries on:
    # no further warning, no token loss.
    net.filter = None
    net.run_timers(net.now + 5000.0)
    assert [len(net.warnings[node]) for node in net.cores] == [1, 1, 1]
    for node, core in net.cores.items():
        assert core.state is State.OPERATIONAL
        assert core.stats().gather_entered == gathers[node]
        assert net.timers[node][Timer.TOKEN_LOSS] > loss[node]


def test_a_busy_singleton_ring_never_warns_the_lazy_timer_follows_the_token():
    core = SrpCore(1, TotemParams(token_ms=TOKEN_MS, token_coefficient_ms=0.0, nodes=1))
    core.start(0.0, None)
    deadline_of = {}
    for now in range(0, 5000, 10):  # a singleton ring: the token visits by loopback
        for action in core.take_actions():
            if type(action) is SetTimer:
                deadline_of[action.timer] = action.deadline_ms
            elif type(action).__name__ == "SendUnicast":
                core.receive(action.data, float(now))
        for timer, deadline in list(deadline_of.items()):
            if deadline <= now:
                del deadline_of[timer]
                core.timer_expired(timer, float(now))
    assert core.state is State.OPERATIONAL
    assert core.stats().token_warnings == 0
    assert deadline_of[Timer.TOKEN_WARNING] > 4000.0


def test_off_at_zero():
    net = _net(0)
    assert all(Timer.TOKEN_WARNING not in timers for timers in net.timers.values())
    loss = _drop_everything(net)
    net.run_timers(max(loss.values()) + 3000.0)
    assert all(not warnings for warnings in net.warnings.values())
    assert all(core.stats().token_warnings == 0 for core in net.cores.values())


class _CheckedNet(Net):
    """Checks after every event that the warning is armed exactly when the
    token loss timer is, and notes the states it is armed in."""

    def __init__(self, *args, **kwargs) -> None:
        self.armed_in: set[State] = set()
        super().__init__(*args, **kwargs)

    def collect(self, node: int) -> None:
        super().collect(node)
        timers = self.timers[node]
        assert (Timer.TOKEN_WARNING in timers) == (Timer.TOKEN_LOSS in timers), (node, timers)
        if Timer.TOKEN_WARNING in timers:
            self.armed_in.add(self.cores[node].state)


def test_armed_with_token_loss_in_commit_and_recovery_too_never_in_gather():
    net = _net(75, net_class=_CheckedNet)
    net.down.add(3)
    net.run_timers(net.now + 6000.0)
    for node in (1, 2):
        assert net.cores[node].state is State.OPERATIONAL
        assert net.cores[node].members == (1, 2)
        assert any(w.state is State.OPERATIONAL for _when, w in net.warnings[node])
    assert net.armed_in == {State.OPERATIONAL, State.COMMIT, State.RECOVERY}


def test_leave_disarms_it():
    net = _net(75)
    net.cores[1].leave(net.now)
    net.collect(1)
    assert Timer.TOKEN_WARNING not in net.timers[1]


def test_warning_is_a_frozen_value():
    warning = TokenWarning(elapsed_ms=750.0, token_timeout_ms=1000.0, state=State.OPERATIONAL)
    with pytest.raises(AttributeError):
        warning.elapsed_ms = 1.0  # type: ignore[misc]
