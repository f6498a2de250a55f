"""Small durable files: a value a node must never lose or see half-written
(the ring seq, the incarnation counter)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_text_durably"]


def write_text_durably(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves either the old or
    the new content: write a temporary file, fsync it, rename it over ``path``,
    then fsync the directory so the rename itself survives a power cut.

    Raises:
        OSError: the directory cannot be written.
    """
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
