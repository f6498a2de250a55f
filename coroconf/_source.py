"""Read access to the flat items while building the config object."""

from __future__ import annotations

import re
from typing import Iterator

from ._flatten import Flattened
from .errors import ConfigConsistencyError

__all__ = ["Source"]


class Source:
    """The file's keys by cmap name, with their lines, plus the warnings."""

    def __init__(self, flat: Flattened, filename: str) -> None:
        self.flat = flat
        self.filename = filename
        self.warnings: list[str] = list(flat.warnings)

    def get(self, key: str, default: object = None) -> object:
        """The value the file set for ``key``, else ``default``."""
        item = self.flat.by_key.get(key)
        return default if item is None else item.value

    def integer(self, key: str, default: int) -> int:
        value = self.get(key, default)
        assert isinstance(value, int), key  # integer keys are converted in _flatten
        return value

    def nonzero(self, key: str, default: int) -> int:
        """Like :meth:`integer`, but 0 means the default (corosync's rule for
        most totem timers and counters)."""
        value = self.integer(key, default)
        return value if value else default

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key, default)
        return None if value is None else str(value)

    def has(self, key: str) -> bool:
        return key in self.flat.by_key

    def line(self, key: str) -> int | None:
        item = self.flat.by_key.get(key)
        return None if item is None else item.line

    def where(self, key: str) -> str:
        """"file:line: " for a key the file set, else "file: "."""
        line = self.line(key)
        return f"{self.filename}:{line}: " if line is not None else f"{self.filename}: "

    def warn(self, sentence: str, key: str | None = None) -> None:
        prefix = self.where(key) if key else f"{self.filename}: "
        self.warnings.append(prefix + sentence)

    def fail(self, sentence: str, key: str | None = None) -> ConfigConsistencyError:
        """The error to raise, pointing at ``key``'s line when it was set."""
        return ConfigConsistencyError(sentence, filename=self.filename,
                                      line=self.line(key) if key else None, key=key)

    def keys(self, pattern: str) -> Iterator[tuple[re.Match[str], str]]:
        """Keys matching a regular expression, in file order."""
        compiled = re.compile(pattern)
        for item in self.flat.items:
            match = compiled.fullmatch(item.key)
            if match:
                yield match, item.key
