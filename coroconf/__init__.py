"""coroconf: corosync.conf parsed once into one frozen, validated object.

    config = coroconf.load("/etc/corosync/corosync.conf")
    config.totem.token_ms, config.totem.network_transport   # (3000, 'udpu')
    config.warnings   # ('/etc/corosync/corosync.conf:4: transport knet: running as udpu
                      #   over link 0; ring1_addr ignored',)

The stages: :mod:`._parser` (text to a tree, with lines), :mod:`._flatten`
(tree to cmap keys, as corosync's coroparse does, refusing unknown keys),
:mod:`._nodes`/:mod:`._totem`/:mod:`._build` (defaults, derivations,
checks, warnings) into the dataclasses of :mod:`.model`. Defaults are in
:mod:`.defaults`; formulas in :mod:`._derive`.
"""

from __future__ import annotations

import os

from ._build import build_config
from ._flatten import Flattened, SourceItem, flatten
from ._parser import parse_text
from .cmap import CMAP_TYPES, runtime_config_items, to_cmap_items
from .errors import ConfigConsistencyError, ConfigError, ConfigSyntaxError, ConfigValueError
from .model import (Config, InterfaceConfig, LoggerSubsysConfig, LoggingConfig, NodeConfig,
                    Nodelist, NozzleConfig, QuorumConfig, QuorumDeviceConfig, ResourcesConfig,
                    SystemConfig, TotemConfig, UidGidConfig)
from .params import totem_params, totem_params_kwargs
from .render import render

__all__ = [
    "load", "loads", "render", "to_cmap_items", "runtime_config_items", "totem_params_kwargs",
    "totem_params", "CMAP_TYPES", "Config", "TotemConfig", "InterfaceConfig", "NodeConfig",
    "Nodelist", "QuorumConfig", "QuorumDeviceConfig", "LoggingConfig", "LoggerSubsysConfig",
    "SystemConfig", "ResourcesConfig", "NozzleConfig", "UidGidConfig", "SourceItem",
    "ConfigError", "ConfigSyntaxError", "ConfigValueError", "ConfigConsistencyError",
]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        raise ConfigError(f"cannot read the file: {error.strerror}", filename=path) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"the file is not UTF-8 text (byte {error.start})",
                          filename=path) from None


def _uidgid_files(directory: str) -> list[str]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []  # corosync: no uidgid.d directory is fine
    return [os.path.join(directory, name) for name in names
            if os.path.isfile(os.path.join(directory, name))]


def loads(text: str, filename: str = "<string>", *, uidgid_dir: str | None = None) -> Config:
    """Parse and check corosync.conf text.

    Args:
        text: the file's content.
        filename: used in messages ("corosync.conf:12: ...").
        uidgid_dir: a directory of extra uidgid files (corosync reads
            ``uidgid.d`` next to corosync.conf); None for none.

    Returns:
        The frozen configuration; ``Config.warnings`` lists what is accepted
        but not honoured.

    Raises:
        ConfigError: the first problem, as a sentence with file and line.
    """
    flat = flatten(parse_text(text, filename), filename, Flattened())
    if uidgid_dir is not None:
        for path in _uidgid_files(uidgid_dir):
            flatten(parse_text(_read(path), path), path, flat, uidgid_only=True)
    return build_config(flat, filename)


def load(path: str | os.PathLike[str]) -> Config:
    """Read, parse and check a corosync.conf file (and its uidgid.d).

    Args:
        path: the file. Messages name it as given.

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: the file cannot be read or is not valid.
    """
    name = os.fspath(path)
    return loads(_read(name), name,
                 uidgid_dir=os.path.join(os.path.dirname(os.path.abspath(name)), "uidgid.d"))
