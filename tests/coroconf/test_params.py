"""The Totem core's parameters from the config, checked against totemd.srp."""

from __future__ import annotations

import dataclasses

import pytest

import coroconf

from .helpers import load_udpu, nodes, udpu

srp = pytest.importorskip("totemd.srp", reason="the Totem core (totemd.srp) is not in this tree")


def test_every_kwarg_is_a_totem_params_field():
    names = {field.name for field in dataclasses.fields(srp.TotemParams)}
    assert set(coroconf.totem_params_kwargs(load_udpu())) <= names


@pytest.mark.parametrize("count,extra", [(2, ""), (3, ""), (5, "\ttoken: 1000\n"),
                                         (4, "\ttoken_retransmits_before_loss_const: 10\n")])
def test_core_runs_with_corosyncs_numbers(count, extra):
    config = coroconf.loads(udpu(extra, nodes(count)))
    params = coroconf.totem_params(config)
    assert params.effective_token_ms == config.totem.token_ms
    assert (params.token_retransmit_ms, params.hold_ms, params.consensus_ms) == (
        config.totem.token_retransmit_ms, config.totem.hold_ms, config.totem.consensus_ms)
    assert (params.join_ms, params.merge_ms, params.window_size, params.netmtu) == (
        config.totem.join_ms, config.totem.merge_ms, config.totem.window_size,
        config.totem.netmtu)


def test_core_objections_surface_as_its_error():
    config = load_udpu("\twindow_size: 10\n\tmax_messages: 20\n")
    with pytest.raises(srp.ParamsError, match="max_messages"):
        coroconf.totem_params(config)


def test_send_join_reaches_the_core_and_is_not_reported_unimplemented():
    config = load_udpu("\tsend_join: 80\n")
    assert coroconf.totem_params(config).send_join_ms == 80
    assert not any("send_join" in warning for warning in config.warnings)


@pytest.mark.parametrize("extra,percent,warning_ms", [
    ("", 75, 750.0), ("\ttoken_warning: 40\n", 40, 400.0), ("\ttoken_warning: 0\n", 0, 0.0),
    ("\ttoken_warning: 100\n", 100, 1000.0)])
def test_token_warning_reaches_the_core_and_is_not_reported_unimplemented(extra, percent,
                                                                          warning_ms):
    config = load_udpu("\ttoken: 1000\n" + extra)
    params = coroconf.totem_params(config)
    assert (params.token_warning_percent, params.token_warning_ms) == (percent, warning_ms)
    assert not any("token_warning" in warning for warning in config.warnings)


def test_token_warning_is_a_share_of_the_token_with_its_coefficient():
    config = coroconf.loads(udpu("\ttoken_warning: 50\n", nodes(4)))
    params = coroconf.totem_params(config)
    totem = config.totem
    assert totem.token_ms == totem.token_base_ms + 2 * totem.token_coefficient_ms > 0
    assert params.token_warning_ms == 0.5 * totem.token_ms
