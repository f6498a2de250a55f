"""The errors coroconf raises.

Every problem with a configuration file is a :class:`ConfigError`; the
subclasses say which stage found it, so a caller (``coro config check``,
the node supervisor) can print the sentence and exit, and a test can tell a
typo from an inconsistency. The message always starts with where the problem
is (``corosync.conf:12:``, or just the file name for problems that belong to
no single line) and is a whole sentence a user can act on.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConfigSyntaxError", "ConfigValueError", "ConfigConsistencyError"]


class ConfigError(Exception):
    """A configuration file cannot be used.

    Raised by :func:`coroconf.load` and :func:`coroconf.loads`. The string form
    is the full message ("corosync.conf:12: unknown key 'tokn' in section
    'totem' (did you mean 'token'?)"). Nothing is partly applied: a file that
    raises this yields no configuration at all.

    Attributes:
        filename: the file named in the message ("<string>" for text).
        line: the 1-based line of the problem, or None when it belongs to no
            single line (a missing required key, two keys that disagree).
        key: the dotted key concerned ("totem.token"), or None.
        reason: the sentence without the "file:line:" prefix.
    """

    def __init__(self, reason: str, *, filename: str, line: int | None = None,
                 key: str | None = None) -> None:
        self.reason = reason
        self.filename = filename
        self.line = line
        self.key = key
        where = f"{filename}:{line}" if line is not None else filename
        super().__init__(f"{where}: {reason}")


class ConfigSyntaxError(ConfigError):
    """The text is not in the corosync.conf shape.

    Raised for an unbalanced brace, a line that is neither ``key: value``,
    ``name {`` nor ``}``, a section without a name, or text after a brace:
    the same shapes corosync's own parser refuses. Fix the line named.
    """


class ConfigValueError(ConfigError):
    """One key is unknown, misplaced, or has a value it cannot take.

    Raised for an unknown key or section (the message suggests the nearest
    valid name), a number out of range or with a unit attached ("3s"), a
    word outside the allowed set, or an address that does not parse. The
    line of the key is always known.
    """


class ConfigConsistencyError(ConfigError):
    """Each key is fine alone but together they cannot work.

    Raised for a timeout below corosync's minimum or below another one it
    must exceed (consensus below join), duplicate node ids, a node without
    the nodeid its transport needs, a missing ``totem { version: 2 }``,
    crypto on a transport that has none, and similar. The message names the
    keys and values with their units; the line is given when one key is to
    blame.
    """
