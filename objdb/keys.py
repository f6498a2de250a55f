"""Key names and which of them are read-only.

Key names follow cmap: 3 to 255 characters of ``[A-Za-z0-9._/:-]``. Keys are
flat strings; the dots only make a hierarchy by convention, and "iterate by
prefix" is a plain string prefix (``totem.`` matches ``totem.token``; ``totem``
also matches ``totemx.y``, as in corosync).

Read-only keys: clients cannot set, delete, increment or decrement them;
only privileged connections (the node's own processes, see
``objdb.service``) can. The rules follow corosync's ``set_icmap_ro_keys_flag``
(exec/main.c), widened in one place: all of ``runtime.`` is read-only here
(corosync lists ``runtime.services.``, ``runtime.config.`` and
``runtime.totem.``) because in coro every ``runtime.`` key is written by a
node process (members, quorum state, statistics); the two trigger keys
corosync lets an administrator write stay writable.
"""

from __future__ import annotations

import re

from objdb.errors import InvalidKey

KEY_MIN_LENGTH = 3
KEY_MAX_LENGTH = 255

_KEY_PATTERN = re.compile(r"[A-Za-z0-9._/:\-]{3,255}")
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9._/:\-]{0,255}")

#: Read-only by prefix.
READ_ONLY_PREFIXES: tuple[str, ...] = (
    "internal_configuration.",
    "runtime.",
    "uidgid.config.",
    "system.",
    "nodelist.",
    "stats.",
)

#: Read-only exact keys: configuration that cannot change while the node runs.
READ_ONLY_KEYS: frozenset[str] = frozenset({
    "totem.crypto_cipher", "totem.crypto_hash", "totem.crypto_model", "totem.keyfile",
    "totem.key", "totem.secauth", "totem.ip_version", "totem.ip_dscp", "totem.transport",
    "totem.cluster_name", "totem.netmtu", "totem.threads", "totem.version", "totem.nodeid",
    "totem.clear_node_high_bit", "config.reload_in_progress",
    "config.totemconfig_reload_in_progress",
})

#: What ``stats.clear.<target>`` clears (corosync-cmapctl -C TARGET): totem
#: (stats.srp.*, stats.totemd.*), knet (the links: stats.transport.*), ipc (the
#: local clients' counters), schedmiss (loop stalls), all.
CLEAR_TARGETS: tuple[str, ...] = ("totem", "knet", "ipc", "schedmiss", "all")

#: Keys written to ask for an action, not to hold a value: every client write
#: is the request, and the store keeps how many there were (u64, whatever was
#: written), so a process that reads the key sees each request as a change.
TRIGGER_KEYS: frozenset[str] = frozenset(
    {f"stats.clear.{target}" for target in CLEAR_TARGETS} | {"runtime.blackbox.dump_flight_data"})

#: Exceptions to the prefixes: keys an administrator writes to trigger an action.
WRITABLE_KEYS: frozenset[str] = TRIGGER_KEYS | {"runtime.force_gather"}


def check_key(key: object) -> str:
    """Validate a key name.

    Returns:
        The key, unchanged.

    Raises:
        InvalidKey: not a string of 3-255 characters of ``[A-Za-z0-9._/:-]``.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"a key name is a string, not {type(key).__name__}")
    if _KEY_PATTERN.fullmatch(key) is None:
        if not KEY_MIN_LENGTH <= len(key) <= KEY_MAX_LENGTH:
            raise InvalidKey(
                f"key name is {len(key)} characters long; it must be "
                f"{KEY_MIN_LENGTH} to {KEY_MAX_LENGTH}"
            )
        bad = next(char for char in key if _KEY_PATTERN.fullmatch(char * 3) is None)
        raise InvalidKey(
            f"key name {key!r} contains {bad!r}; only letters, digits and . _ - / : are allowed"
        )
    return key


def check_prefix(prefix: object) -> str:
    """Validate a prefix for iteration or tracking (may be empty: everything).

    Raises:
        InvalidKey: longer than 255 characters or with a character a key cannot hold.
    """
    if not isinstance(prefix, str) or _PREFIX_PATTERN.fullmatch(prefix) is None:
        raise InvalidKey(
            f"prefix {prefix!r} is not up to {KEY_MAX_LENGTH} characters of "
            "letters, digits and . _ - / :"
        )
    return prefix


def is_read_only(key: str) -> bool:
    """True if clients without privilege may not change ``key``."""
    if key in WRITABLE_KEYS:
        return False
    if key in READ_ONLY_KEYS:
        return True
    return key.startswith(READ_ONLY_PREFIXES)
