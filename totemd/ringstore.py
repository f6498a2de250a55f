"""The persisted ring seq: ``<state_dir>/ringid_<nodeid>`` (corosync's file name).

A ring id must never be reused (totem.md §2.4): after a restart the core
bumps the stored seq, so the stored value must be on disk before anything
that carries it leaves the node. ``store`` therefore writes a temporary file,
fsyncs it, renames it over the old one and fsyncs the directory; the daemon
calls it for every ``PersistRingSeq`` action before it executes the actions
that follow.

The file holds the seq as decimal text and a newline. Corosync writes a raw
64-bit integer; text is easier to read and to repair by hand, and a file in
the wrong format is reported, never guessed at.
"""

from __future__ import annotations

import os
from pathlib import Path

from totemd.durable import write_text_durably

__all__ = ["RingStoreError", "ring_seq_path", "load_ring_seq", "store_ring_seq"]

_MAX_SEQ = (1 << 64) - 1


class RingStoreError(Exception):
    """The ring seq file exists but does not hold a seq (bad content), or the
    state directory cannot be written. The message names the file."""


def ring_seq_path(state_dir: str | os.PathLike[str], node_id: int) -> Path:
    """``<state_dir>/ringid_<node_id>``."""
    return Path(state_dir) / f"ringid_{node_id}"


def load_ring_seq(state_dir: str | os.PathLike[str], node_id: int) -> int | None:
    """The stored ring seq, or None when there is no file (first start).

    Raises:
        RingStoreError: the file exists but is not a decimal seq in 0..2**64-1.
    """
    path = ring_seq_path(state_dir, node_id)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise RingStoreError(f"{path}: cannot read the ring seq: {error}") from error
    if not text.isdigit() or int(text) > _MAX_SEQ:
        raise RingStoreError(f"{path}: does not hold a ring seq (got {text[:40]!r}); "
                             "remove it to start over from seq 0")
    return int(text)


def store_ring_seq(state_dir: str | os.PathLike[str], node_id: int, ring_seq: int) -> None:
    """Store ``ring_seq`` durably: temporary file, fsync, rename, fsync the directory.

    Raises:
        ValueError: ring_seq out of range (a bug of the caller).
        RingStoreError: the state directory cannot be written.
    """
    if not 0 <= ring_seq <= _MAX_SEQ:
        raise ValueError(f"ring seq {ring_seq} is outside 0..2**64-1")
    directory = Path(state_dir)
    path = ring_seq_path(directory, node_id)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_text_durably(path, f"{ring_seq}\n")
    except OSError as error:
        raise RingStoreError(f"{path}: cannot store ring seq {ring_seq}: {error.strerror}") from error
