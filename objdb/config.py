"""What objdb loads at start: the configuration as cmap items.

The parsing is coroconf's (``coroconf.load``); this module only turns a
config file into the (key, type name, value) items the store loads, and finds
the node's run directory in it.
"""

from __future__ import annotations

import os
from typing import Iterable

Item = tuple[str, str, object]


class ConfigUnavailable(Exception):
    """The configuration could not be loaded; the message says why (file, line, fix)."""


def _load(path: str | os.PathLike[str]) -> object:
    try:
        import coroconf
    except ImportError as error:  # pragma: no cover - coroconf is part of the tree
        raise ConfigUnavailable(f"coroconf is not available: {error}") from error
    try:
        return coroconf.load(os.fspath(path))  # type: ignore[attr-defined]
    except OSError as error:
        raise ConfigUnavailable(f"cannot read {os.fspath(path)}: {error.strerror}") from error
    except Exception as error:
        # coroconf.ConfigError and friends: their message names the line and the fix.
        if type(error).__module__.startswith("coroconf"):
            raise ConfigUnavailable(str(error)) from error
        raise


def items_from_config(path: str | os.PathLike[str]) -> list[Item]:
    """The cmap items of a corosync.conf: its keys, then the runtime.config.* ones.

    Raises:
        ConfigUnavailable: the file is missing or not a valid configuration.
    """
    import coroconf

    config = _load(path)
    items: list[Item] = list(coroconf.to_cmap_items(config))  # type: ignore[attr-defined]
    runtime_items = getattr(coroconf, "runtime_config_items", None)
    if runtime_items is not None:
        items.extend(runtime_items(config))
    return items


def run_dir_from_items(items: Iterable[Item]) -> str | None:
    """``system.run_dir`` among ``items``, if set."""
    for key, _type_name, value in items:
        if key == "system.run_dir" and isinstance(value, str) and value:
            return value
    return None


def run_dir_from_config(path: str | os.PathLike[str]) -> str | None:
    """The node's run directory as a configuration file names it (system.run_dir).

    Raises:
        ConfigUnavailable: the file is missing or not a valid configuration.
    """
    return run_dir_from_items(items_from_config(path))
