"""Flat items to the Config object: the sections other than totem, and the
order in which everything is built and checked."""

from __future__ import annotations

import re

from . import defaults as d
from ._flatten import Flattened
from ._nodes import build_nodelist
from ._source import Source
from ._totem import build_totem, transport_of
from .model import (Config, LoggerSubsysConfig, LoggingConfig, NozzleConfig, QuorumConfig,
                    QuorumDeviceConfig, ResourcesConfig, SystemConfig, UidGidConfig)

__all__ = ["build_config"]

_ON = ("yes", "on")


def _switch(src: Source, key: str, default: bool) -> bool:
    value = src.get(key)
    return default if value is None else value in _ON


def _optional_switch(src: Source, key: str) -> bool | None:
    value = src.get(key)
    return None if value is None else value in _ON


def _device(src: Source) -> QuorumDeviceConfig | None:
    settings = tuple((key[len("quorum.device."):], str(src.get(key)))
                     for _match, key in src.keys(r"quorum\.device\.(net|heuristics)\..+"))
    if not any(src.has(f"quorum.device.{k}") for k in ("model", "votes", "timeout",
                                                        "sync_timeout", "master_wins")) \
            and not settings:
        return None
    model = src.text("quorum.device.model")
    src.warn(f"quorum.device (model {model}): qdevice is not implemented; the device casts "
             "no votes", "quorum.device.model")
    return QuorumDeviceConfig(
        model=model, votes=src.integer("quorum.device.votes", d.DEVICE_VOTES),
        timeout_ms=src.integer("quorum.device.timeout", d.DEVICE_TIMEOUT_MS),
        sync_timeout_ms=src.integer("quorum.device.sync_timeout", d.DEVICE_SYNC_TIMEOUT_MS),
        master_wins=bool(src.integer("quorum.device.master_wins", 0)), settings=settings)


def _quorum(src: Source, node_count: int) -> QuorumConfig:
    two_node = bool(src.integer("quorum.two_node", 0))
    if two_node and node_count > 2:
        src.warn(f"quorum.two_node is set but the nodelist has {node_count} nodes; votequorum "
                 "ignores two_node with more than 2 nodes", "quorum.two_node")
    atb_node = src.text("quorum.auto_tie_breaker_node", d.AUTO_TIE_BREAKER_NODE) or "lowest"
    if atb_node not in ("lowest", "highest") and not re.fullmatch(r"\d+( +\d+)*", atb_node):
        raise src.fail(f"auto_tie_breaker_node must be lowest, highest or a list of node ids, "
                       f"not '{atb_node}'", "quorum.auto_tie_breaker_node")
    expected = src.get("quorum.expected_votes")
    votes = src.get("quorum.votes")
    leaving = src.get("quorum.leaving_timeout")
    provider = src.text("quorum.provider")
    if provider is not None:
        # The service engine (votequorum among its services) has no issue yet.
        src.warn(f"quorum.provider {provider}: the quorum service is not built yet; no node "
                 "computes quorum or blocks on its loss", "quorum.provider")
    return QuorumConfig(
        provider=provider,
        expected_votes=None if expected is None else int(str(expected)),
        votes=None if votes is None else int(str(votes)),
        two_node=two_node,
        wait_for_all=bool(src.integer("quorum.wait_for_all", int(two_node))),
        last_man_standing=bool(src.integer("quorum.last_man_standing", 0)),
        last_man_standing_window_ms=src.integer("quorum.last_man_standing_window",
                                            d.LAST_MAN_STANDING_WINDOW_MS),
        auto_tie_breaker=bool(src.integer("quorum.auto_tie_breaker", 0)),
        auto_tie_breaker_node=atb_node,
        allow_downscale=bool(src.integer("quorum.allow_downscale", 0)),
        expected_votes_tracking=bool(src.integer("quorum.expected_votes_tracking", 0)),
        leaving_timeout_ms=None if leaving is None else int(str(leaving)),
        device=_device(src))


def _subsystems(src: Source) -> tuple[LoggerSubsysConfig, ...]:
    found = []
    for match, _key in src.keys(r"logging\.logger_subsys\.([^.]+)\.subsys"):
        prefix = f"logging.logger_subsys.{match.group(1)}"
        to_logfile = _optional_switch(src, f"{prefix}.to_logfile")
        if to_logfile is None:
            to_logfile = _optional_switch(src, f"{prefix}.to_file")
        found.append(LoggerSubsysConfig(
            subsys=match.group(1), to_stderr=_optional_switch(src, f"{prefix}.to_stderr"),
            to_logfile=to_logfile, to_syslog=_optional_switch(src, f"{prefix}.to_syslog"),
            logfile=src.text(f"{prefix}.logfile"),
            logfile_priority=src.text(f"{prefix}.logfile_priority"),
            syslog_facility=src.text(f"{prefix}.syslog_facility"),
            syslog_priority=src.text(f"{prefix}.syslog_priority",
                                    src.text(f"{prefix}.syslog_level")),
            debug=src.text(f"{prefix}.debug")))
    return tuple(found)


def _logging(src: Source) -> LoggingConfig:
    to_logfile = _switch(src, "logging.to_logfile", _switch(src, "logging.to_file", d.TO_LOGFILE))
    if to_logfile and src.text("logging.logfile") is None:
        src.warn("to_logfile is on but no logfile is set: nothing is written to a file",
                 "logging.to_logfile" if src.has("logging.to_logfile") else "logging.to_file")
    return LoggingConfig(
        timestamp=src.text("logging.timestamp", d.TIMESTAMP) or d.TIMESTAMP,
        fileline=_switch(src, "logging.fileline", d.FILELINE),
        function_name=_switch(src, "logging.function_name", d.FUNCTION_NAME),
        blackbox=_switch(src, "logging.blackbox", d.BLACKBOX),
        to_stderr=_switch(src, "logging.to_stderr", d.TO_STDERR),
        to_logfile=to_logfile,
        to_syslog=_switch(src, "logging.to_syslog", d.TO_SYSLOG),
        logfile=src.text("logging.logfile"),
        logfile_priority=src.text("logging.logfile_priority", d.LOGFILE_PRIORITY) or "info",
        syslog_facility=src.text("logging.syslog_facility", d.SYSLOG_FACILITY) or "daemon",
        syslog_priority=(src.text("logging.syslog_priority") or src.text("logging.syslog_level")
                         or d.SYSLOG_PRIORITY),
        debug=src.text("logging.debug", d.DEBUG) or d.DEBUG,
        subsystems=_subsystems(src))


def _priority(src: Source, sched_rr: bool | None) -> str | None:
    """system.priority: corosync's nice value (-20..19), max or min."""
    priority = src.text("system.priority")
    if priority is None:
        return None
    if priority not in ("max", "min"):
        try:
            nice = int(priority)
        except ValueError:
            nice = None
        if nice is None or not -20 <= nice <= 19:
            raise src.fail(f"system.priority: {priority!r} is not a nice value (-20..19), "
                           "max or min", "system.priority")
    if sched_rr:
        src.warn("system.priority: no effect with sched_rr: yes (as in corosync: the "
                 "real-time priority is the maximal one)", "system.priority")
    return priority


def _system(src: Source) -> SystemConfig:
    sched_rr = _optional_switch(src, "system.sched_rr")
    if src.text("system.qb_ipc_type") == "socket":
        src.warn("qb_ipc_type socket is not implemented: local clients use shared memory",
                 "system.qb_ipc_type")
    if src.text("system.move_to_root_cgroup") == "yes":
        src.warn("move_to_root_cgroup is not implemented: totemd stays in its cgroup",
                 "system.move_to_root_cgroup")
    return SystemConfig(
        qb_ipc_type=src.text("system.qb_ipc_type", d.QB_IPC_TYPE) or d.QB_IPC_TYPE,
        sched_rr=sched_rr,
        priority=_priority(src, sched_rr),
        move_to_root_cgroup=src.text("system.move_to_root_cgroup", d.MOVE_TO_ROOT_CGROUP)
        or d.MOVE_TO_ROOT_CGROUP,
        allow_knet_handle_fallback=_switch(src, "system.allow_knet_handle_fallback",
                                           d.ALLOW_KNET_HANDLE_FALLBACK),
        state_dir=src.text("system.state_dir", d.STATE_DIR) or d.STATE_DIR,
        run_dir=src.text("system.run_dir", d.RUN_DIR) or d.RUN_DIR)


def _resources(src: Source) -> ResourcesConfig:
    device = src.text("resources.watchdog_device")
    if device not in (None, "", "off"):
        src.warn(f"resources.watchdog_device {device}: no watchdog is driven (not implemented)",
                 "resources.watchdog_device")
    for _match, key in src.keys(r"resources\.(system|process)\.memory_used\..+"):
        src.warn("resources memory_used monitoring is not implemented", key)
        break
    timeout = src.get("resources.watchdog_timeout")
    return ResourcesConfig(watchdog_device=device,
                           watchdog_timeout_s=None if timeout is None else int(str(timeout)))


def _nozzle(src: Source) -> NozzleConfig | None:
    keys = [key for _match, key in src.keys(r"nozzle\..+")]
    if not keys:
        return None
    src.warn("nozzle: the knet tap device is not implemented; no device is created", keys[0])
    return NozzleConfig(name=src.text("nozzle.name"), ipaddr=src.text("nozzle.ipaddr"),
                        ipprefix=src.text("nozzle.ipprefix"), macaddr=src.text("nozzle.macaddr"))


def _uidgid(src: Source) -> UidGidConfig:
    uids = sorted({int(m.group(1)) for m, _k in src.keys(r"uidgid\.config\.uid\.(\d+)")})
    gids = sorted({int(m.group(1)) for m, _k in src.keys(r"uidgid\.config\.gid\.(\d+)")})
    return UidGidConfig(uids=tuple(uids), gids=tuple(gids))


def build_config(flat: Flattened, filename: str) -> Config:
    """Build the frozen, checked configuration from the file's items.

    Args:
        flat: from :func:`coroconf._flatten.flatten` (main file and uidgid.d).
        filename: for messages.

    Returns:
        The configuration, with warnings.

    Raises:
        ConfigConsistencyError: the keys do not fit together.
    """
    src = Source(flat, filename)
    transport = transport_of(src)
    nodelist = build_nodelist(src, transport, src.get("totem.clear_node_high_bit") == "yes")
    totem = build_totem(src, nodelist)
    return Config(
        filename=filename, totem=totem, nodelist=nodelist,
        quorum=_quorum(src, len(nodelist)), logging=_logging(src), system=_system(src),
        resources=_resources(src), nozzle=_nozzle(src), uidgid=_uidgid(src),
        warnings=tuple(src.warnings), source_items=tuple(flat.items))
