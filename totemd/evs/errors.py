"""Errors of the EVS checker."""

from __future__ import annotations


class EvsError(Exception):
    """Base class of the checker's errors."""


class InputError(EvsError):
    """Raised when a log cannot be read or a record does not follow the schema
    of totem.md §1.1 (not JSON, a missing or mistyped field, a record after
    ``stop``, a file name that does not match its records). It names the file
    (or in-memory incarnation) and the line. ``coro check-evs`` exits with 2.

    Attributes:
        source: the file path or ``<memory n<node>.<inc>>``.
        line: 1-based line (record) number, or 0 for the file as a whole.
        reason: what is wrong.
    """

    def __init__(self, source: str, line: int, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")
