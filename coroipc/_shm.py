"""POSIX shared-memory segments under /dev/shm: naming, creation, sweeping.

Name policy (one place, so the sweeper and the creators agree)::

    /coro-[<CORO_RESOURCE_TAG>-]<owner pid>-<16 hex random>

The owner pid lets a restarted server (or any sweeper) tell a dead owner's
leftovers from a live one's; the random part (``secrets.token_hex``) makes the
name unguessable; the tag lets a test session find exactly its own segments.
Segments are created with ``O_CREAT | O_EXCL`` and mode 0600. A segment that
fails half-way through creation is unlinked before the error propagates.
"""

from __future__ import annotations

import mmap
import os
import re
import secrets

__all__ = ["SHM_DIR", "PREFIX", "new_name", "create_segment", "open_segment", "unlink", "sweep_dead", "pid_alive"]

SHM_DIR = "/dev/shm"
PREFIX = "coro-"
TAG_ENV = "CORO_RESOURCE_TAG"
#: Linux allows 255 bytes for a file name; we keep well inside that.
MAX_NAME_LENGTH = 200
_NAME_PATTERN = re.compile(r"^coro-(?:(?P<tag>[A-Za-z0-9_.]+)-)?(?P<pid>\d+)-(?P<token>[0-9a-f]{16})$")


def resource_tag() -> str:
    """The CORO_RESOURCE_TAG of this process, validated ('' when unset)."""
    tag = os.environ.get(TAG_ENV, "")
    if tag and not re.fullmatch(r"[A-Za-z0-9_.]+", tag):
        raise ValueError(f"{TAG_ENV}={tag!r} must contain only letters, digits, '_' and '.'")
    return tag


def new_name() -> str:
    """A fresh unguessable segment name ('/coro-...') owned by this pid."""
    tag = resource_tag()
    middle = f"{tag}-" if tag else ""
    name = f"/{PREFIX}{middle}{os.getpid()}-{secrets.token_hex(8)}"
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"segment name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    return name


def _path(name: str) -> str:
    if not name.startswith("/") or "/" in name[1:] or name in ("/", "/.", "/.."):
        raise ValueError(f"bad shared-memory name {name!r}: expected '/<name>' without other slashes")
    return SHM_DIR + name


def create_segment(name: str, size: int, owner: tuple[int, int] | None = None) -> tuple[int, mmap.mmap]:
    """Create, size and map a new segment (exclusive, mode 0600).

    Args:
        name: from :func:`new_name`.
        size: bytes.
        owner: (uid, gid) to ``fchown`` to; only honoured when running as root.

    Returns:
        (fd, mmap). The caller owns both and the name.

    Raises:
        FileExistsError: the name exists already. OSError: creation failed
        (the half-built segment is unlinked first).
    """
    path = _path(name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # umask can only narrow, but be explicit
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, owner[0], owner[1])
        os.ftruncate(fd, size)
        mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    return fd, mapping


def open_segment(name: str) -> tuple[int, mmap.mmap]:
    """Open and map an existing segment by name (its whole size)."""
    fd = os.open(_path(name), os.O_RDWR | os.O_CLOEXEC)
    try:
        mapping = map_fd(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, mapping


def map_fd(fd: int) -> mmap.mmap:
    """Map the whole of an already open segment file descriptor."""
    size = os.fstat(fd).st_size
    if size <= 0:
        raise OSError(f"shared-memory segment on fd {fd} is empty")
    return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


def unlink(name: str) -> bool:
    """Remove a segment's name; True if it existed. Mappings stay valid."""
    try:
        os.unlink(_path(name))
    except FileNotFoundError:
        return False
    return True


def owner_pid(file_name: str) -> int | None:
    """The owner pid encoded in a /dev/shm file name of ours, else None."""
    match = _NAME_PATTERN.match(file_name)
    return int(match.group("pid")) if match else None


def pid_alive(pid: int) -> bool:
    """True unless no process has this pid (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead(tag: str | None = None) -> list[str]:
    """Unlink our segments whose owner process is dead.

    Only names that match our policy, belong to this uid and (when ``tag`` is
    given) carry that tag are considered, so a sweep never touches another
    user's or another test session's live segments.

    Returns:
        the names removed ('/coro-...').
    """
    removed: list[str] = []
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return removed
    uid = os.geteuid()
    for file_name in entries:
        match = _NAME_PATTERN.match(file_name)
        if match is None or (tag is not None and match.group("tag") != (tag or None)):
            continue
        if pid_alive(int(match.group("pid"))):
            continue
        try:
            if os.stat(os.path.join(SHM_DIR, file_name)).st_uid != uid:
                continue
        except FileNotFoundError:
            continue
        if unlink("/" + file_name):
            removed.append("/" + file_name)
    return removed
