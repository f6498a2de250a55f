"""What objdb loads at start: the configuration as cmap items.

The parsing is coroconf's (``coroconf.load``); this module only turns a
config file into the (key, type name, value) items the store loads, adds the
host-specific ``nodelist.local_node_pos``, and finds the node's run
directory in it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

Item = tuple[str, str, object]


class ConfigUnavailable(Exception):
    """The configuration could not be loaded; the message says why (file, line, fix)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedConfig:
    """A configuration as objdb uses it."""

    items: list[Item]
    run_dir: str
    warnings: tuple[str, ...]
    logging: Any = None  # the logging section (coroconf.LoggingConfig)
    state_dir: str | None = None


def host_addresses() -> list[str]:
    """This host's addresses and name (to find its nodelist entry)."""
    addresses = [socket.gethostname()]
    try:
        import psutil

        for interface_addresses in psutil.net_if_addrs().values():
            for address in interface_addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    addresses.append(address.address.split("%", 1)[0])
    except (ImportError, OSError):  # pragma: no cover - psutil is a dependency
        pass
    return addresses


def load_config(path: str | os.PathLike[str],
                local_addresses: Sequence[str] | None = None) -> LoadedConfig:
    """Load a corosync.conf as objdb's start-up items.

    Args:
        path: the file.
        local_addresses: addresses that identify this node in the nodelist
            (a supervisor running several nodes on one host passes each
            node's own); default: every address of this host.

    Returns:
        The file's keys, then ``runtime.config.*``, then
        ``nodelist.local_node_pos`` when this node is in the nodelist.

    Raises:
        ConfigUnavailable: the file is missing or not a valid configuration.
    """
    import coroconf

    try:
        config = coroconf.load(path)
    except coroconf.ConfigError as error:
        raise ConfigUnavailable(str(error)) from error
    items: list[Item] = list(coroconf.to_cmap_items(config))
    items.extend(coroconf.runtime_config_items(config))
    addresses = list(local_addresses) if local_addresses else host_addresses()
    local = config.local_node(addresses)
    if local is not None:
        items.append(("nodelist.local_node_pos", "u32", local.position))
    return LoadedConfig(items=items, run_dir=config.system.run_dir,
                        warnings=tuple(config.warnings), logging=config.logging,
                        state_dir=config.system.state_dir)


def items_from_config(path: str | os.PathLike[str]) -> list[Item]:
    """The cmap items of a corosync.conf (see :func:`load_config`)."""
    return load_config(path).items


def run_dir_from_items(items: Iterable[Item]) -> str | None:
    """``system.run_dir`` among ``items``, if set."""
    for key, _type_name, value in items:
        if key == "system.run_dir" and isinstance(value, str) and value:
            return value
    return None


def run_dir_from_config(path: str | os.PathLike[str]) -> str:
    """The node's run directory as a configuration names it (system.run_dir or its default).

    Raises:
        ConfigUnavailable: the file is missing or not a valid configuration.
    """
    import coroconf

    try:
        return coroconf.load(path).system.run_dir
    except coroconf.ConfigError as error:
        raise ConfigUnavailable(str(error)) from error
