"""A read-only shared-memory mirror of the store: gets without a round trip.

objdb (the only writer) keeps a copy of every key in shared memory; a client
of the same uid (or root) maps it read-only and answers ``get`` from it. The
store itself stays in objdb's Python dict: the mirror is written, never read,
by objdb, so nothing done to the mapping can change objdb's state.

The memory. An anonymous memory file (``memfd_create``), not a named
``/dev/shm`` segment: it has no name to leak, even when objdb is killed with
SIGKILL (the memory goes with the last mapping), and no name to guess. objdb
keeps its descriptor open; a client opens ``/proc/<objdb pid>/fd/<fd>``,
which the kernel allows only to objdb's uid and root (the same check as for
ptrace), and checks a random 64-bit token in the header against the one
objdb gave it. The file is sealed once objdb has mapped it:
``F_SEAL_SHRINK | F_SEAL_GROW`` (nobody can truncate it, which would make
objdb's next store a SIGBUS) and ``F_SEAL_FUTURE_WRITE`` (Linux 5.1: no
writable mapping or write(2) by anyone; objdb's own mapping predates the seal
and stays writable). Its pages are reserved with ``posix_fallocate``.

Layout (little-endian; every word 8-byte aligned; the mirror is disabled on a
big-endian host because readers load the sequence words natively)::

    header (128 bytes)
      0  u32 magic 0x544D424F ("OBMT")   4  u16 version 1   6  u16 slot size
      8  u64 state: 0 live, 1 retired (a newer generation exists: ask objdb
             where), 2 closed (objdb stopped or gave the mirror up)
     16  u64 generation   24 u32 capacity (slots, a power of two)  28 u32 0
     32  u64 slots offset 40 u64 heap offset  48 u64 heap size  56 u64 keys
     64  u64 token (random; the client checks it is the table it was told of)
    slots (capacity x 40 bytes), open addressing, linear probing
      0  u64 sequence (seqlock: odd while the writer changes the slot)
      8  u32 hash (zlib.crc32 of the key's ASCII bytes; never Python's hash())
     12  u16 key length  14 u8 state (0 empty, 1 live, 2 deleted)  15 u8 type
     16  u32 key offset in the heap  20 u32 value length  24 u32 value offset
     28  u32 0  32  8 bytes: a numeric value, in its wire format (types.py)
    heap: key bytes and string/binary values (bump-allocated, 8-aligned)

Seqlock. The writer makes a slot's sequence odd, writes the slot (and its
heap bytes), then makes it even. A reader loads the sequence, the slot and the
value, then the sequence again; it keeps the value only if both loads are
equal and even, else retries (a bounded number of times, then the caller
falls back to a round trip). A heap area is only reused after the slot that
owned it moved on (its sequence changed), so a reader that read freed bytes
always sees a changed sequence. This relies on x86's ordering (stores are
seen in program order, loads are not reordered with other loads), the same
assumption as coroipc's rings (``coroipc/_doorbell.py``): on weakly ordered
CPUs (ARM) the seqlock would need barriers Python cannot issue, and a torn
value could be returned. The sequence words are aligned 8-byte loads/stores
(memoryview 'Q'), so a sequence itself is never torn.

Growth. Entries never move inside a generation (deletions leave tombstones).
When the slots would pass half full (live + deleted) or the heap is
exhausted, the writer builds a new generation (a new memory file) sized for
the live data, then marks the old header retired and closes its descriptor
and mapping. A reader seeing "retired" asks objdb where the new one is (one
round trip) and remaps; its old mapping stays valid and frozen until then,
so a read of it is a read of the state at the moment of retirement.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from objdb.store import Entry
from objdb.types import NUMERIC_STRUCTS, Value, ValueType

MAGIC = 0x544D424F
VERSION = 1
HEADER = struct.Struct("<IHHQQIIQQQQQ")
HEADER_SIZE = 128
SLOT = struct.Struct("<QIHBBIII4x")
SLOT_SIZE = 40
INLINE_OFFSET = 32
STATE_LIVE, STATE_RETIRED, STATE_CLOSED = 0, 1, 2
SLOT_EMPTY, SLOT_LIVE, SLOT_DELETED = 0, 1, 2
#: Starting sizes of a table; it grows as needed.
INITIAL_SLOTS = 1024
INITIAL_HEAP_BYTES = 64 * 1024
#: Seqlock retries per slot before the reader gives up (the caller then asks objdb).
MAX_READ_RETRIES = 64
#: Largest segment the writer will build (past it the mirror is given up).
MAX_SEGMENT_BYTES = 1 << 31
SUPPORTED = sys.byteorder == "little"

_VALUE_TYPES = {int(value_type): value_type for value_type in ValueType}
_NUMERIC_BY_CODE = {int(value_type): layout for value_type, layout in NUMERIC_STRUCTS.items()}
_STRING = int(ValueType.STRING)

#: F_SEAL_FUTURE_WRITE (Linux 5.1; not in Python's fcntl module yet): no new
#: writable mapping or write(2) by anyone, while objdb's own mapping stays writable.
F_SEAL_FUTURE_WRITE = 0x10
MEMFD_NAME = "coro-objdb-table"

assert HEADER.size <= HEADER_SIZE and SLOT.size + 8 == SLOT_SIZE


class TableUnavailable(Exception):
    """The table cannot be mapped or is not a valid table (the caller falls back)."""


#: ``lookup`` result for a key the table does not hold.
MISS = object()


def key_hash(raw_key: bytes) -> int:
    """The table's stable hash of a key's ASCII bytes."""
    return zlib.crc32(raw_key)


def _align(size: int) -> int:
    return (size + 7) & ~7


@dataclass(frozen=True, slots=True, kw_only=True)
class TableLocator:
    """Where a client finds the table: objdb's descriptor number for it and
    the random token the table's header must carry (so a descriptor number
    reused for something else is never taken for the table)."""

    fd: int
    token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TableStats:
    """The writer's counters."""

    fd: int
    generation: int
    capacity: int
    keys: int
    heap_bytes: int
    heap_used: int
    regenerations: int
    writes: int


class _Segment:
    """One generation: a created (writer: it keeps the descriptor, which is
    how clients reach the table) or opened (reader) mapping."""

    def __init__(self, mapping: mmap.mmap, fd: int = -1, token: int = 0) -> None:
        self.fd = fd
        self.token = token
        self.mapping = mapping
        self.bytes_view = memoryview(mapping)
        self.words = self.bytes_view.cast("Q")

    def release(self) -> None:
        self.words.release()
        self.bytes_view.release()
        self.mapping.close()
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class ShmTableWriter:
    """objdb's side: mirrors puts and removes into the current generation.

    Args:
        initial_slots: slots of the first generation (a power of two).
        initial_heap_bytes: heap of the first generation.

    Raises:
        TableUnavailable: shared memory cannot be created here.
    """

    def __init__(self, *, initial_slots: int = INITIAL_SLOTS,
                 initial_heap_bytes: int = INITIAL_HEAP_BYTES) -> None:
        if not SUPPORTED:
            raise TableUnavailable("the shared-memory table needs a little-endian host")
        if initial_slots < 8 or initial_slots & (initial_slots - 1):
            raise ValueError(f"initial_slots must be a power of two >= 8, not {initial_slots}")
        self._initial_slots = initial_slots
        self._initial_heap = _align(max(initial_heap_bytes, 1024))
        self._entries: dict[str, Entry] = {}
        self._generation = 0
        self._regenerations = 0
        self._writes = 0
        self._segment: _Segment | None = None
        self._build(self._initial_slots, self._initial_heap)

    # -- public ------------------------------------------------------------------

    @property
    def locator(self) -> TableLocator | None:
        """Where clients find the current generation (None once closed)."""
        segment = self._segment
        if segment is None:
            return None
        return TableLocator(fd=segment.fd, token=segment.token)

    def put(self, key: str, entry: Entry) -> None:
        """Mirror ``key`` = ``entry`` (a no-op if that very entry is mirrored already).

        Raises:
            TableUnavailable: the table had to grow and could not (closed by then).
        """
        old = self._entries.get(key)
        if old is entry or self._segment is None:
            return
        self._entries[key] = entry
        if old is not None and old[0] is entry[0]:
            layout = NUMERIC_STRUCTS.get(entry[0])
            if layout is not None:
                self._write_number(self._slot_of[key], layout, entry[1])
                return
        raw_key, raw_value = key.encode("ascii"), _raw_value(entry)
        slot = self._slot_of.get(key)
        if slot is None:
            if not self._fits_new(len(raw_key), raw_value):
                self._regenerate()
                return
            self._insert(key, raw_key, entry, raw_value)
            return
        if raw_value is not None and len(raw_value) > self._value_capacity[slot]:
            if self._heap_top + _align(len(raw_value)) > self._heap_size:
                self._regenerate()
                return
            self._value_offset[slot] = self._allocate(len(raw_value))
            self._value_capacity[slot] = _align(len(raw_value))
        self._write_slot(slot, SLOT_LIVE, b"", entry, raw_value)

    def put_many(self, pairs: list[tuple[str, Entry]]) -> None:
        """:meth:`put` each (key, entry) in order; a batch's same-type numeric
        updates (the commonest change) are written inline here.

        Raises:
            TableUnavailable: as :meth:`put`.
        """
        entries, slot_of, sequences = self._entries, self._slot_of, self._sequence
        numeric = NUMERIC_STRUCTS
        segment = self._segment
        inline = 0
        for key, entry in pairs:
            if segment is None:
                return
            old = entries.get(key)
            if old is entry:
                continue
            if old is not None and old[0] is entry[0]:
                layout = numeric.get(entry[0])
                if layout is not None:
                    entries[key] = entry
                    slot = slot_of[key]
                    offset = HEADER_SIZE + slot * SLOT_SIZE
                    word = offset >> 3
                    words = segment.words
                    sequence = sequences[slot] + 1
                    words[word] = sequence          # odd: readers retry
                    layout.pack_into(segment.mapping, offset + INLINE_OFFSET, entry[1])
                    sequence += 1
                    words[word] = sequence          # even: stable
                    sequences[slot] = sequence
                    inline += 1
                    continue
            self.put(key, entry)
            segment = self._segment   # a put may have moved to a new generation
            sequences = self._sequence
        self._writes += inline

    def remove(self, key: str) -> None:
        """Mirror the deletion of ``key`` (a no-op if it is not mirrored)."""
        if self._entries.pop(key, None) is None or self._segment is None:
            return
        slot = self._slot_of.pop(key)
        self._write_slot(slot, SLOT_DELETED, b"", None, None)
        self._live -= 1

    def close(self) -> None:
        """Mark the table closed (readers fall back), unmap it and close its
        descriptor. Idempotent."""
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.words[1] = STATE_CLOSED
        segment.release()

    def stats(self) -> TableStats:
        """The writer's counters."""
        return TableStats(fd=self._segment.fd if self._segment is not None else -1,
                          generation=self._generation,
                          capacity=self._capacity, keys=self._live,
                          heap_bytes=self._heap_size, heap_used=self._heap_top,
                          regenerations=self._regenerations, writes=self._writes)

    # -- generations ---------------------------------------------------------------

    def _build(self, capacity: int, heap_size: int) -> None:
        slots_offset = HEADER_SIZE
        heap_offset = slots_offset + capacity * SLOT_SIZE
        total = heap_offset + heap_size
        if total > MAX_SEGMENT_BYTES:
            raise TableUnavailable(f"a {total}-byte table is past the {MAX_SEGMENT_BYTES} limit")
        fd, mapping = _create_sealed(total)
        token = int.from_bytes(os.urandom(8), "little") | 1
        self._generation += 1
        HEADER.pack_into(mapping, 0, MAGIC, VERSION, SLOT_SIZE, STATE_LIVE, self._generation,
                         capacity, 0, slots_offset, heap_offset, heap_size, 0, token)
        self._segment = _Segment(mapping, fd, token)
        self._capacity, self._mask = capacity, capacity - 1
        self._slots_offset, self._heap_offset, self._heap_size = slots_offset, heap_offset, heap_size
        self._heap_top = 0
        self._live = self._used = 0
        self._slot_of: dict[str, int] = {}
        self._sequence = [0] * capacity
        self._value_offset = [0] * capacity
        self._value_capacity = [0] * capacity
        self._key_offset = [0] * capacity
        self._hash = [0] * capacity
        self._key_length = [0] * capacity
        self._slot_states = bytearray(capacity)
        for key, entry in self._entries.items():
            self._insert(key, key.encode("ascii"), entry, _raw_value(entry))

    def _regenerate(self) -> None:
        """A new generation sized for the live data; the old one retired and closed."""
        old = self._segment
        assert old is not None
        live = len(self._entries)
        capacity = self._initial_slots
        while capacity < 4 * (live + 1):
            capacity *= 2
        needed = sum(_align(len(key)) + _align(len(_raw_value(entry) or b""))
                     for key, entry in self._entries.items())
        heap_size = max(self._initial_heap, _align(2 * needed + 1024))
        try:
            self._build(capacity, heap_size)
        except TableUnavailable:
            self._segment = old
            self.close()
            raise
        self._regenerations += 1
        old.words[1] = STATE_RETIRED
        old.release()   # readers keep their own mappings of it, frozen
        self._write_header_keys()

    # -- slots -------------------------------------------------------------------------

    def _fits_new(self, key_length: int, raw_value: bytes | None) -> bool:
        needed = _align(key_length) + (_align(len(raw_value)) if raw_value is not None else 0)
        return (self._used + 1) * 2 <= self._capacity and self._heap_top + needed <= self._heap_size

    def _allocate(self, size: int) -> int:
        offset = self._heap_top
        self._heap_top += _align(size)
        return offset

    def _insert(self, key: str, raw_key: bytes, entry: Entry, raw_value: bytes | None) -> None:
        hashed = key_hash(raw_key)
        slot = hashed & self._mask
        states = self._slot_states   # the writer's own record, never the shared bytes
        while states[slot] == SLOT_LIVE:
            slot = (slot + 1) & self._mask
        state = states[slot]
        if state == SLOT_EMPTY:
            self._used += 1
        self._key_offset[slot] = self._allocate(len(raw_key))
        if raw_value is not None:
            self._value_offset[slot] = self._allocate(len(raw_value))
            self._value_capacity[slot] = _align(len(raw_value))
        else:
            self._value_capacity[slot] = 0
        self._slot_of[key] = slot
        self._hash[slot] = hashed
        self._live += 1
        self._write_slot(slot, SLOT_LIVE, raw_key, entry, raw_value)
        self._write_header_keys()

    def _write_slot(self, slot: int, state: int, raw_key: bytes, entry: Entry | None,
                    raw_value: bytes | None) -> None:
        segment = self._segment
        assert segment is not None
        mapping, words = segment.mapping, segment.words
        offset = self._slots_offset + slot * SLOT_SIZE
        sequence = self._sequence[slot] + 1
        words[offset >> 3] = sequence           # odd: readers retry
        key_offset = self._key_offset[slot]
        value_offset = self._value_offset[slot]
        if state == SLOT_LIVE and entry is not None:
            if raw_key:   # an insert (an update leaves the key's bytes as they are)
                start = self._heap_offset + key_offset
                mapping[start:start + len(raw_key)] = raw_key
                self._key_length[slot] = len(raw_key)
            code = int(entry.value_type)
            hashed, key_length = self._hash[slot], self._key_length[slot]
            if raw_value is None:
                SLOT.pack_into(mapping, offset, sequence, hashed, key_length,
                               SLOT_LIVE, code, key_offset, 0, 0)
                NUMERIC_STRUCTS[entry.value_type].pack_into(mapping, offset + INLINE_OFFSET,
                                                            entry.value)
            else:
                start = self._heap_offset + value_offset
                mapping[start:start + len(raw_value)] = raw_value
                SLOT.pack_into(mapping, offset, sequence, hashed, key_length,
                               SLOT_LIVE, code, key_offset, len(raw_value), value_offset)
        else:
            SLOT.pack_into(mapping, offset, sequence, 0, 0, SLOT_DELETED, 0, 0, 0, 0)
        self._slot_states[slot] = state
        sequence += 1
        words[offset >> 3] = sequence           # even: stable
        self._sequence[slot] = sequence
        self._writes += 1

    def _write_number(self, slot: int, layout: struct.Struct, value: Value) -> None:
        """The commonest write: a new value of the same numeric type (inline only)."""
        segment = self._segment
        offset = self._slots_offset + slot * SLOT_SIZE
        word = offset >> 3
        sequence = self._sequence[slot] + 1
        words = segment.words  # type: ignore[union-attr]
        words[word] = sequence                  # odd: readers retry
        layout.pack_into(segment.mapping, offset + INLINE_OFFSET, value)  # type: ignore[union-attr]
        sequence += 1
        words[word] = sequence                  # even: stable
        self._sequence[slot] = sequence
        self._writes += 1

    def _write_header_keys(self) -> None:
        segment = self._segment
        if segment is not None:
            segment.words[7] = self._live


def _create_sealed(size: int) -> tuple[int, mmap.mmap]:
    """An anonymous memory file of ``size`` bytes, mapped read-write here and
    sealed so nobody else can ever write it, shrink it or grow it.

    Raises:
        TableUnavailable: memfd, the reservation or the mapping failed.
    """
    try:
        fd = os.memfd_create(MEMFD_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except (OSError, AttributeError) as error:
        raise TableUnavailable(f"cannot create the shared-memory table: {error}") from error
    try:
        os.ftruncate(fd, size)
        # Reserve the pages now: a page tmpfs cannot supply later would be
        # SIGBUS on a store rather than an error here.
        os.posix_fallocate(fd, 0, size)
        mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as error:
        os.close(fd)
        raise TableUnavailable(f"cannot set up a {size}-byte table: {error}") from error
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | F_SEAL_FUTURE_WRITE)
    except OSError:
        # A kernel before 5.1: at least nobody can shrink it under us (SIGBUS).
        try:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        except OSError as error:
            mapping.close()
            os.close(fd)
            raise TableUnavailable(f"cannot seal the table: {error}") from error
    return fd, mapping


def _raw_value(entry: Entry) -> bytes | None:
    """A string or binary value's heap bytes; None for a numeric (inline) value."""
    if entry.value_type in NUMERIC_STRUCTS:
        return None
    if entry.value_type is ValueType.STRING:
        return entry.value.encode("utf-8")  # type: ignore[union-attr]
    return bytes(entry.value)  # type: ignore[arg-type]


class ShmTableReader:
    """A client's read-only view of the table.

    Opened through ``/proc/<objdb pid>/fd/<fd>``: the kernel lets only objdb's
    uid (or root) open another process's descriptors, and the seals refuse a
    writable mapping to everyone but objdb, so a client can only read.

    Args:
        pid: objdb's pid as this process sees it (coroipc's peer credentials).
        locator: the descriptor and token objdb gave (TABLE_INFO).

    Raises:
        TableUnavailable: it cannot be opened (another uid: permission denied;
            objdb gone) or is not the table the token names.
    """

    def __init__(self, pid: int, locator: TableLocator) -> None:
        if not SUPPORTED:
            raise TableUnavailable("the shared-memory table needs a little-endian host")
        path = f"/proc/{int(pid)}/fd/{int(locator.fd)}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise TableUnavailable(f"cannot open the table at {path}: {error}") from error
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise TableUnavailable(f"{path} is {size} bytes, too small for a table")
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError as error:
            raise TableUnavailable(f"cannot map the table at {path}: {error}") from error
        finally:
            os.close(fd)
        segment = _Segment(mapping)
        try:
            self._validate(segment, size, locator.token)
        except TableUnavailable:
            segment.release()
            raise
        self._segment: _Segment | None = segment

    def _validate(self, segment: _Segment, size: int, token: int) -> None:
        (magic, version, slot_size, _state, generation, capacity, _zero, slots_offset,
         heap_offset, heap_size, _keys, found_token) = HEADER.unpack_from(segment.mapping, 0)
        if magic != MAGIC or version != VERSION or slot_size != SLOT_SIZE:
            raise TableUnavailable(f"not a version-{VERSION} objdb table "
                                   f"(magic {magic:#x}, version {version})")
        if found_token != token:
            raise TableUnavailable("the descriptor holds another table than the one named")
        if (capacity < 1 or capacity & (capacity - 1) or slots_offset != HEADER_SIZE
                or heap_offset != slots_offset + capacity * SLOT_SIZE
                or heap_offset + heap_size > size):
            raise TableUnavailable("the table's header does not match its size")
        self.generation = generation
        self._bytes = segment.mapping
        self._words = segment.words
        self._mask = capacity - 1
        self._capacity = capacity
        self._heap_offset = heap_offset
        self._heap_end = heap_offset + heap_size

    @property
    def state(self) -> int:
        """STATE_LIVE, STATE_RETIRED or STATE_CLOSED (as the writer last set it)."""
        return self._words[1] if self._segment is not None else STATE_CLOSED

    def lookup(self, raw_key: bytes, hashed: int) -> tuple[Value, ValueType] | object | None:
        """(value, type) of the key, :data:`MISS` if the table does not hold it,
        or None if the table cannot answer now (retired or closed: see
        :attr:`state`; or the seqlock retries ran out; or a slot makes no sense).

        Args:
            raw_key: the key's ASCII bytes.
            hashed: :func:`key_hash` of them.
        """
        words = self._words
        if words[1] != STATE_LIVE:
            return None
        mapping, mask, heap = self._bytes, self._mask, self._heap_offset
        slot = hashed & mask
        unpack_slot = SLOT.unpack_from
        for _probe in range(self._capacity):
            offset = HEADER_SIZE + slot * SLOT_SIZE
            word = offset >> 3
            for _attempt in range(MAX_READ_RETRIES):
                sequence = words[word]
                if sequence & 1:
                    continue
                (_seq, found_hash, key_length, state, code, key_offset, value_length,
                 value_offset) = unpack_slot(mapping, offset)
                if state == SLOT_EMPTY:
                    if words[word] == sequence:
                        return MISS
                    continue
                if state == SLOT_LIVE and found_hash == hashed and key_length == len(raw_key):
                    start = heap + key_offset
                    if mapping[start:start + key_length] == raw_key:
                        result = self._value(code, offset, value_offset, value_length)
                        if words[word] == sequence:
                            return result
                        continue
                if words[word] == sequence:
                    break    # a stable slot holding another key: probe on
            else:
                return None  # the writer kept this slot busy: ask objdb
            slot = (slot + 1) & mask
        return MISS

    def _value(self, code: int, offset: int, value_offset: int,
               value_length: int) -> tuple[Value, ValueType] | None:
        layout = _NUMERIC_BY_CODE.get(code)
        if layout is not None:
            return layout.unpack_from(self._bytes, offset + INLINE_OFFSET)[0], _VALUE_TYPES[code]
        value_type = _VALUE_TYPES.get(code)
        start = self._heap_offset + value_offset
        end = start + value_length
        if value_type is None or end > self._heap_end:
            return None   # torn (the sequence check will say so) or not ours
        raw = self._bytes[start:end]
        if code == _STRING:
            try:
                return raw.decode("utf-8"), value_type
            except UnicodeDecodeError:
                return None
        return raw, value_type

    def close(self) -> None:
        """Unmap (idempotent)."""
        segment, self._segment = self._segment, None
        if segment is not None:
            segment.release()
