"""From the totem section to the Totem core's parameter object.

The core (``totemd.srp.TotemParams``) takes the configured token with the
coefficient and node count separately and derives the effective token
itself; the values it would derive (token_retransmit, hold, consensus) are
passed as corosync computes them (truncated to whole milliseconds), so the
core runs with exactly the numbers ``coro config show`` prints and
``runtime.config.totem.*`` publishes.
"""

from __future__ import annotations

import importlib
from typing import Any

from .model import Config

__all__ = ["totem_params_kwargs", "totem_params"]


def totem_params_kwargs(config: Config) -> dict[str, Any]:
    """Keyword arguments for ``totemd.srp.TotemParams``, durations in ms.

    Args:
        config: from :func:`coroconf.load`.

    Returns:
        token_ms (the file's token, before the coefficient),
        token_coefficient_ms, nodes (nodelist size, at least 1), and the
        effective token_retransmit_ms, hold_ms, consensus_ms, join_ms,
        merge_ms, token_retransmits_before_loss_const, fail_recv_const,
        seqno_unchanged_const, window_size, max_messages, miss_count_const,
        netmtu, cancel_token_hold_on_retransmit, send_join_ms and
        token_warning_percent. The other
        totem values (downcheck, max_network_delay, ...) are on
        ``config.totem``.
    """
    totem = config.totem
    return {
        "token_ms": totem.token_base_ms,
        "token_coefficient_ms": totem.token_coefficient_ms,
        "nodes": max(1, len(config.nodelist)),
        "token_retransmits_before_loss_const": totem.token_retransmits_before_loss_const,
        "token_retransmit_ms": totem.token_retransmit_ms,
        "hold_ms": totem.hold_ms,
        "join_ms": totem.join_ms,
        "consensus_ms": totem.consensus_ms,
        "merge_ms": totem.merge_ms,
        "fail_recv_const": totem.fail_recv_const,
        "seqno_unchanged_const": totem.seqno_unchanged_const,
        "window_size": totem.window_size,
        "max_messages": totem.max_messages,
        "miss_count_const": totem.miss_count_const,
        "netmtu": totem.netmtu,
        "cancel_token_hold_on_retransmit": totem.cancel_token_hold_on_retransmit,
        "send_join_ms": totem.send_join_ms,
        "token_warning_percent": totem.token_warning_percent,
    }


def totem_params(config: Config, **overrides: Any) -> Any:
    """Build ``totemd.srp.TotemParams`` from the config.

    Args:
        config: from :func:`coroconf.load`.
        overrides: fields to set besides (max_message_size, ...).

    Returns:
        The core's frozen parameter object.

    Raises:
        ImportError: the Totem core is not in this tree.
        totemd.srp.errors.ParamsError: the core refuses the values.
    """
    params_class = importlib.import_module("totemd.srp").TotemParams
    return params_class(**{**totem_params_kwargs(config), **overrides})
