"""Which sections and keys exist, and how each value is read.

One table per section path. A :class:`KeySpec` says how corosync stores the
key in cmap (its type name), how we check the value, and its unit, so that
an error can say "milliseconds". Corosync itself stores any unknown key as a
string and ignores it; we refuse unknown keys instead, because a typo
("tokn") silently ignored is a cluster that runs with defaults nobody chose.
Keys that older corosync versions knew and 3.x ignores are accepted with a
warning (``legacy``), so old files still load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["KeySpec", "SECTIONS", "SUBSECTIONS", "FREEFORM_SECTIONS", "LEGACY_SECTIONS",
           "INTEGER_RANGES", "RING_ADDR", "MAX_RING_NUMBER", "key_spec"]

#: cmap integer types and the values they hold.
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "i8": (-2**7, 2**7 - 1), "u8": (0, 2**8 - 1),
    "i16": (-2**15, 2**15 - 1), "u16": (0, 2**16 - 1),
    "i32": (-2**31, 2**31 - 1), "u32": (0, 2**32 - 1),
    "i64": (-2**63, 2**63 - 1), "u64": (0, 2**64 - 1),
}

UNIT_WORDS = {"ms": "milliseconds", "s": "seconds", "%": "percent of token",
              "bytes": "bytes", "": ""}


@dataclass(frozen=True, slots=True)
class KeySpec:
    """How one key is read.

    Attributes:
        cmap_type: the cmap type corosync's parser stores it as ("u32",
            "str", ...). Integer types also bound the value.
        kind: "int", "str", "choice" (one of ``choices``), "yesno" (yes|no),
            "onoff" (on|off), "switch" (yes|no|on|off), "dscp" (0..63 or a
            DSCP name), "addr" (an IP address or host name), "flag" (an
            integer where non-zero means on, as votequorum reads it).
        unit: "ms", "s", "%", "bytes" or "" (for messages and docs).
        legacy: when set, the key is accepted, ignored, and this sentence is
            a warning.
        alias: the current name of a renamed key (ringnumber -> linknumber).
    """

    cmap_type: str
    kind: str
    choices: tuple[str, ...] = ()
    unit: str = ""
    legacy: str = ""
    alias: str = ""

    @property
    def unit_words(self) -> str:
        return UNIT_WORDS[self.unit]


def _ms() -> KeySpec:
    return KeySpec("u32", "int", unit="ms")


def _count() -> KeySpec:
    return KeySpec("u32", "int")


def _str() -> KeySpec:
    return KeySpec("str", "str")


def _choice(*choices: str) -> KeySpec:
    return KeySpec("str", "choice", choices)


def _legacy(note: str, cmap_type: str = "str", kind: str = "str") -> KeySpec:
    return KeySpec(cmap_type, kind, legacy=note)


_YESNO = KeySpec("str", "yesno", ("yes", "no"))
_ONOFF = KeySpec("str", "onoff", ("on", "off"))
_SWITCH = KeySpec("str", "switch", ("yes", "no", "on", "off"))
_FLAG = KeySpec("u8", "flag")
_PRIORITIES = ("alert", "crit", "debug", "emerg", "err", "error", "info", "notice",
               "warning", "warn")
_FACILITIES = ("daemon", "local0", "local1", "local2", "local3", "local4", "local5",
               "local6", "local7", "user", "auth", "authpriv", "syslog", "kern", "mail",
               "lpr", "news", "uucp", "cron", "ftp")

TOTEM: dict[str, KeySpec] = {
    "version": _count(),
    "cluster_name": _str(),
    "cluster_uuid": _str(),  # written by pcs; corosync stores it and ignores it
    "config_version": KeySpec("u64", "int"),
    "transport": _choice("knet", "udpu", "udp"),
    "ip_version": _choice("ipv4", "ipv6", "ipv4-6", "ipv6-4"),
    "ip_dscp": KeySpec("u8", "dscp"),
    "clear_node_high_bit": _YESNO,
    "crypto_model": _choice("nss", "openssl", "gcrypt"),
    "crypto_cipher": _choice("none", "aes256", "aes192", "aes128"),
    "crypto_hash": _choice("none", "md5", "sha1", "sha256", "sha384", "sha512"),
    "secauth": KeySpec("str", "str"),  # only "on" means on, as in corosync
    "keyfile": _str(),
    "key": _str(),
    "link_mode": _choice("passive", "active", "rr"),
    "netmtu": KeySpec("u32", "int", unit="bytes"),
    "token": _ms(),
    "token_coefficient": _ms(),
    "token_warning": KeySpec("u32", "int", unit="%"),
    "token_retransmit": _ms(),
    "token_retransmits_before_loss_const": _count(),
    "hold": _ms(),
    "join": _ms(),
    "send_join": _ms(),
    "consensus": _ms(),
    "merge": _ms(),
    "downcheck": _ms(),
    "fail_recv_const": _count(),
    "seqno_unchanged_const": _count(),
    "heartbeat_failures_allowed": _count(),
    "max_network_delay": _ms(),
    "window_size": _count(),
    "max_messages": _count(),
    "miss_count_const": _count(),
    "block_unlisted_ips": _YESNO,
    "cancel_token_hold_on_retransmit": _YESNO,
    "knet_pmtud_interval": KeySpec("u32", "int", unit="s"),
    "knet_mtu": KeySpec("u32", "int", unit="bytes"),
    "knet_compression_model": _choice("none", "zlib", "lz4", "lz4hc", "lzo2", "lzma",
                                      "bzip2", "zstd"),
    "knet_compression_threshold": KeySpec("u32", "int", unit="bytes"),
    "knet_compression_level": KeySpec("i32", "int"),
    # corosync 1.x/2.x keys that 3.x ignores
    "nodeid": _legacy("totem.nodeid is ignored by corosync 3; set nodeid in nodelist.node",
                      "u32", "int"),
    "threads": _legacy("totem.threads is a corosync 1/2 option and is ignored", "u32", "int"),
    "rrp_mode": _legacy("totem.rrp_mode is the corosync 2 redundant ring option and is "
                        "ignored (knet's link_mode replaced it)"),
    "vsftype": _legacy("totem.vsftype is a corosync 1 option and is ignored"),
    "rrp_problem_count_timeout": _legacy("totem.rrp_problem_count_timeout is a corosync 2 "
                                         "option and is ignored", "u32", "int"),
    "rrp_problem_count_threshold": _legacy("totem.rrp_problem_count_threshold is a corosync 2 "
                                           "option and is ignored", "u32", "int"),
    "rrp_problem_count_mcast_threshold": _legacy("totem.rrp_problem_count_mcast_threshold is a "
                                                 "corosync 2 option and is ignored", "u32", "int"),
    "rrp_token_expired_timeout": _legacy("totem.rrp_token_expired_timeout is a corosync 2 "
                                         "option and is ignored", "u32", "int"),
    "rrp_autorecovery_check_timeout": _legacy("totem.rrp_autorecovery_check_timeout is a "
                                              "corosync 2 option and is ignored", "u32", "int"),
}

INTERFACE: dict[str, KeySpec] = {
    "linknumber": KeySpec("u8", "int"),
    "ringnumber": KeySpec("u8", "int", alias="linknumber",
                          legacy="totem.interface.ringnumber is the corosync 2 name of "
                                 "linknumber; read as linknumber"),
    "bindnetaddr": KeySpec("str", "addr"),
    "mcastaddr": KeySpec("str", "addr"),
    "broadcast": _YESNO,
    "mcastport": KeySpec("u16", "int"),
    "ttl": KeySpec("u8", "int"),
    "knet_link_priority": KeySpec("u8", "int"),
    "knet_ping_interval": KeySpec("u32", "int", unit="ms"),
    "knet_ping_timeout": KeySpec("u32", "int", unit="ms"),
    "knet_ping_precision": _count(),
    "knet_pong_count": _count(),
    "knet_transport": _choice("udp", "sctp"),
}

MEMBER: dict[str, KeySpec] = {"memberaddr": KeySpec("str", "addr")}

RING_ADDR = re.compile(r"ring(\d+)_addr")
MAX_RING_NUMBER = 7

NODE: dict[str, KeySpec] = {
    **{f"ring{number}_addr": KeySpec("str", "addr") for number in range(MAX_RING_NUMBER + 1)},
    "nodeid": _count(),
    "name": _str(),
    "quorum_votes": _count(),
}

QUORUM: dict[str, KeySpec] = {
    "provider": _choice("corosync_votequorum"),
    "expected_votes": _count(),
    "votes": _count(),
    "two_node": _FLAG,
    "wait_for_all": _FLAG,
    "last_man_standing": _FLAG,
    "last_man_standing_window": KeySpec("u32", "int", unit="ms"),
    "auto_tie_breaker": _FLAG,
    "auto_tie_breaker_node": _str(),
    "allow_downscale": _FLAG,
    "expected_votes_tracking": _FLAG,
    "leaving_timeout": KeySpec("u32", "int", unit="ms"),
}

DEVICE: dict[str, KeySpec] = {
    "model": _str(),
    "votes": _count(),
    "timeout": KeySpec("u32", "int", unit="ms"),
    "sync_timeout": KeySpec("u32", "int", unit="ms"),
    "master_wins": _FLAG,
}

_LOG_COMMON: dict[str, KeySpec] = {
    "to_stderr": _SWITCH,
    "to_logfile": _SWITCH,
    "to_syslog": _SWITCH,
    "to_file": KeySpec("str", "switch", ("yes", "no", "on", "off"), alias="to_logfile",
                       legacy="logging.to_file is obsolete; read as to_logfile"),
    "logfile": _str(),
    "logfile_priority": _choice(*_PRIORITIES),
    "syslog_facility": _choice(*_FACILITIES),
    "syslog_priority": _choice(*_PRIORITIES),
    "syslog_level": KeySpec("str", "choice", _PRIORITIES, alias="syslog_priority",
                            legacy="logging.syslog_level is obsolete; read as syslog_priority"),
    "debug": _choice("on", "off", "trace"),
    "tags": _legacy("logging.tags is a corosync 1 option and is ignored"),
}

LOGGING: dict[str, KeySpec] = {
    **_LOG_COMMON,
    "timestamp": _choice("on", "off", "hires"),
    "fileline": _ONOFF,
    "function_name": _ONOFF,
    "blackbox": _ONOFF,
}

LOGGER_SUBSYS: dict[str, KeySpec] = {**_LOG_COMMON, "subsys": _str()}

SYSTEM: dict[str, KeySpec] = {
    "qb_ipc_type": _choice("native", "shm", "socket"),
    "sched_rr": _YESNO,
    "priority": _str(),
    "move_to_root_cgroup": _choice("yes", "no", "auto"),
    "allow_knet_handle_fallback": _YESNO,
    "state_dir": _str(),
    "run_dir": _str(),  # ours, not corosync's
}

RESOURCES: dict[str, KeySpec] = {
    "watchdog_device": _str(),
    "watchdog_timeout": KeySpec("u32", "int", unit="s"),
}

MEMORY_USED: dict[str, KeySpec] = {
    "poll_period": KeySpec("u64", "int", unit="ms"),
    "recovery": _str(),
}

NOZZLE: dict[str, KeySpec] = {
    "name": _str(), "ipaddr": _str(), "ipprefix": _str(), "macaddr": _str(),
}

UIDGID: dict[str, KeySpec] = {"uid": _str(), "gid": _str()}

#: section path -> its keys
SECTIONS: dict[str, dict[str, KeySpec]] = {
    "": {},
    "totem": TOTEM,
    "totem.interface": INTERFACE,
    "totem.interface.member": MEMBER,
    "nodelist": {},
    "nodelist.node": NODE,
    "quorum": QUORUM,
    "quorum.device": DEVICE,
    "logging": LOGGING,
    "logging.logger_subsys": LOGGER_SUBSYS,
    "system": SYSTEM,
    "resources": RESOURCES,
    "resources.system": {},
    "resources.process": {},
    "resources.system.memory_used": MEMORY_USED,
    "resources.process.memory_used": MEMORY_USED,
    "nozzle": NOZZLE,
    "uidgid": UIDGID,
}

#: section path -> the subsections it may hold
SUBSECTIONS: dict[str, tuple[str, ...]] = {
    "": ("totem", "nodelist", "quorum", "logging", "system", "resources", "nozzle", "uidgid"),
    "totem": ("interface",),
    "totem.interface": ("member",),
    "nodelist": ("node",),
    "quorum": ("device",),
    "quorum.device": ("net", "heuristics"),
    "logging": ("logger_subsys",),
    "resources": ("system", "process"),
    "resources.system": ("memory_used",),
    "resources.process": ("memory_used",),
}

#: sections whose keys are free-form strings (qdevice's own settings, which
#: corosync-qdevice reads; heuristics keys are exec_<name>).
FREEFORM_SECTIONS = frozenset({"quorum.device.net", "quorum.device.heuristics"})

#: sections from corosync 1.x / openais that 3.x ignores: section path -> note
LEGACY_SECTIONS: dict[str, str] = {
    "aisexec": "section 'aisexec' is from openais/corosync 1 and is ignored",
    "amf": "section 'amf' is from openais/corosync 1 and is ignored",
    "service": "section 'service' is from corosync 1 (pacemaker now starts on its own) "
               "and is ignored",
    "pload": "section 'pload' is a corosync 2 test service and is ignored",
    "logging.logging_daemon": "section 'logging.logging_daemon' is from corosync 1 and is "
                              "ignored",
}


def key_spec(section: str, key: str) -> KeySpec | None:
    """The spec of ``key`` in ``section``, or None if there is no such key."""
    if section in FREEFORM_SECTIONS:
        return KeySpec("str", "str")
    return SECTIONS.get(section, {}).get(key)
