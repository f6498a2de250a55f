"""The per-node corosync.conf the local cluster writes: coroconf accepts it
and reads back the layout and timers that were asked for."""

from __future__ import annotations

import pytest

import coroconf
from scripts.localcluster import ClusterSettings, render_node_config


@pytest.mark.parametrize("nodes", [1, 3, 5])
def test_coroconf_accepts_the_node_config(nodes, tmp_path):
    settings = ClusterSettings(nodes=nodes, token_ms=1000, consensus_ms=1200, join_ms=50,
                               port=5999, netmtu=1400)
    text = render_node_config(settings, run_dir=str(tmp_path / "run"),
                              state_dir=str(tmp_path / "state"))
    config = coroconf.loads(text, "node.conf")
    assert config.warnings == ()
    totem = config.totem
    assert totem.network_transport == "udpu"
    # token_coefficient 0: the token timeout is exactly what the tests reason with.
    assert (totem.token_ms, totem.consensus_ms, totem.join_ms) == (1000, 1200, 50)
    assert totem.netmtu == 1400
    assert totem.interfaces[0].mcastport == 5999
    assert [(node.nodeid, node.ring_addrs) for node in config.nodelist] == [
        (i, (f"127.0.0.{i}",)) for i in range(1, nodes + 1)]
    assert config.system.run_dir == str(tmp_path / "run")
    assert config.system.state_dir == str(tmp_path / "state")


def test_convergence_budget_grows_with_the_timers():
    short = ClusterSettings(token_ms=1000, consensus_ms=1200)
    long = ClusterSettings(token_ms=3000, consensus_ms=3600)
    assert short.convergence_budget_s() >= 2.4
    assert long.convergence_budget_s() - short.convergence_budget_s() == pytest.approx(4.4)
