"""From the totem section to the Totem core's parameter object.

The core (totemd.srp) takes a frozen ``TotemParams`` whose fields are named
like corosync's with units last. :func:`totem_params_kwargs` gives every
value the core may want; :func:`totem_params` builds the core's object from
the fields it actually declares, so the two packages can evolve apart.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from .model import Config, TotemConfig

__all__ = ["totem_params_kwargs", "totem_params"]


def totem_params_kwargs(config: Config | TotemConfig) -> dict[str, Any]:
    """The Totem core's parameters, in milliseconds, from the config.

    Args:
        config: a whole Config, or its totem section.

    Returns:
        A dict with keys token_ms (effective: token_coefficient already
        added), token_retransmit_ms, token_retransmits_before_loss_const,
        hold_ms, join_ms, send_join_ms, consensus_ms, merge_ms,
        downcheck_ms, fail_recv_const, seqno_unchanged_const,
        max_network_delay_ms, heartbeat_failures_allowed, window_size,
        max_messages, miss_count_const, netmtu, token_warning_percent,
        cancel_token_hold_on_retransmit.
    """
    totem = config.totem if isinstance(config, Config) else config
    return {
        "token_ms": totem.token_ms,
        "token_retransmit_ms": totem.token_retransmit_ms,
        "token_retransmits_before_loss_const": totem.token_retransmits_before_loss_const,
        "hold_ms": totem.hold_ms,
        "join_ms": totem.join_ms,
        "send_join_ms": totem.send_join_ms,
        "consensus_ms": totem.consensus_ms,
        "merge_ms": totem.merge_ms,
        "downcheck_ms": totem.downcheck_ms,
        "fail_recv_const": totem.fail_recv_const,
        "seqno_unchanged_const": totem.seqno_unchanged_const,
        "max_network_delay_ms": totem.max_network_delay_ms,
        "heartbeat_failures_allowed": totem.heartbeat_failures_allowed,
        "window_size": totem.window_size,
        "max_messages": totem.max_messages,
        "miss_count_const": totem.miss_count_const,
        "netmtu": totem.netmtu,
        "token_warning_percent": totem.token_warning_percent,
        "cancel_token_hold_on_retransmit": totem.cancel_token_hold_on_retransmit,
    }


def totem_params(config: Config | TotemConfig, **overrides: Any) -> Any:
    """Build ``totemd.srp.TotemParams`` from the config.

    Only the fields TotemParams declares are passed; ``overrides`` (for
    example ``node_id``) are added as given.

    Raises:
        ImportError: the Totem core is not installed in this tree.
        TypeError: TotemParams needs a field neither the config nor
            ``overrides`` provide.
    """
    module = importlib.import_module("totemd.srp")
    params_class = module.TotemParams
    names = {field.name for field in dataclasses.fields(params_class)}
    kwargs = {key: value for key, value in totem_params_kwargs(config).items() if key in names}
    kwargs.update(overrides)
    return params_class(**kwargs)
