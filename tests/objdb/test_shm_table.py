"""The shared-memory mirror of the store (objdb/shm_table.py), writer and reader in-process
and across processes."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import textwrap
import time
import zlib

import pytest

from objdb.shm_table import (F_SEAL_FUTURE_WRITE, MISS, STATE_CLOSED, STATE_LIVE, STATE_RETIRED,
                             ShmTableReader, ShmTableWriter, TableLocator, TableUnavailable,
                             key_hash)
from objdb.store import Entry
from objdb.types import ValueType


def entry(value_type: ValueType, value: object) -> Entry:
    return Entry(value_type=value_type, value=value)


def open_reader(writer: ShmTableWriter) -> ShmTableReader:
    """A reader of ``writer``'s current table (here, in the writer's process)."""
    return ShmTableReader(os.getpid(), writer.locator)


def read(reader: ShmTableReader, key: str) -> object:
    raw = key.encode("ascii")
    return reader.lookup(raw, key_hash(raw))


@pytest.fixture
def writer():
    table = ShmTableWriter(initial_slots=8, initial_heap_bytes=1024)
    try:
        yield table
    finally:
        table.close()


def test_reader_sees_sets_updates_deletes_and_type_changes(writer) -> None:
    reader = open_reader(writer)
    try:
        assert read(reader, "app.a") is MISS
        writer.put("app.a", entry(ValueType.UINT32, 7))
        assert read(reader, "app.a") == (7, ValueType.UINT32)
        writer.put("app.a", entry(ValueType.UINT32, 8))
        assert read(reader, "app.a") == (8, ValueType.UINT32)
        writer.put("app.a", entry(ValueType.STRING, "seven"))          # type change
        assert read(reader, "app.a") == ("seven", ValueType.STRING)
        writer.put("app.a", entry(ValueType.STRING, "a longer string than before"))
        assert read(reader, "app.a") == ("a longer string than before", ValueType.STRING)
        writer.put("app.a", entry(ValueType.DOUBLE, -2.5))
        assert read(reader, "app.a") == (-2.5, ValueType.DOUBLE)
        writer.put("app.b", entry(ValueType.BINARY, b"\x00\xff"))
        assert read(reader, "app.b") == (b"\x00\xff", ValueType.BINARY)
        writer.put("app.i", entry(ValueType.INT8, -128))
        assert read(reader, "app.i") == (-128, ValueType.INT8)
        writer.remove("app.a")
        assert read(reader, "app.a") is MISS
        assert read(reader, "app.b") == (b"\x00\xff", ValueType.BINARY)
        writer.put("app.a", entry(ValueType.UINT8, 1))                 # re-added after delete
        assert read(reader, "app.a") == (1, ValueType.UINT8)
        assert reader.state == STATE_LIVE
    finally:
        reader.close()


def test_growth_builds_a_new_generation_and_unlinks_the_old(writer) -> None:
    reader = open_reader(writer)
    first = writer.locator
    try:
        writer.put("app.first", entry(ValueType.UINT64, 1))
        for index in range(40):   # 8 slots, 1 KiB heap: several generations
            writer.put(f"app.key.{index}", entry(ValueType.STRING, "x" * index))
        assert writer.stats().regenerations >= 2
        assert writer.locator != first
        with pytest.raises(TableUnavailable):   # its descriptor is closed (or reused)
            ShmTableReader(os.getpid(), first)
        # The old mapping stays valid and frozen; it says to ask for the new name.
        assert reader.state == STATE_RETIRED
        assert read(reader, "app.first") is None
        reader.close()
        reader = open_reader(writer)
        assert read(reader, "app.first") == (1, ValueType.UINT64)
        for index in range(40):
            assert read(reader, f"app.key.{index}") == ("x" * index, ValueType.STRING)
        assert reader.generation == writer.stats().generation
    finally:
        reader.close()


def test_heap_exhaustion_by_updates_regenerates_with_compaction(writer) -> None:
    writer.put("app.blob", entry(ValueType.BINARY, b""))
    for size in range(1, 300, 7):   # each bigger value needs a new heap area
        writer.put("app.blob", entry(ValueType.BINARY, bytes([size % 256]) * size))
    stats = writer.stats()
    assert stats.regenerations >= 1 and stats.keys == 1
    reader = open_reader(writer)
    try:
        assert read(reader, "app.blob") == (bytes([295 % 256]) * 295, ValueType.BINARY)
    finally:
        reader.close()


def test_closed_table_tells_readers_and_is_gone() -> None:
    writer = ShmTableWriter()
    locator = writer.locator
    writer.put("app.a", entry(ValueType.UINT8, 1))
    reader = open_reader(writer)
    writer.close()
    writer.close()   # idempotent
    try:
        assert writer.locator is None
        assert reader.state == STATE_CLOSED
        assert read(reader, "app.a") is None
        with pytest.raises(TableUnavailable):
            ShmTableReader(os.getpid(), locator)
    finally:
        reader.close()


def test_nobody_but_the_writer_can_write_shrink_or_grow_the_table(writer) -> None:
    import fcntl

    seals = fcntl.fcntl(writer.locator.fd, fcntl.F_GET_SEALS)
    assert seals & (fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | F_SEAL_FUTURE_WRITE) == (
        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | F_SEAL_FUTURE_WRITE)
    writer.put("app.a", entry(ValueType.UINT32, 5))
    reader = open_reader(writer)
    path = f"/proc/self/fd/{writer.locator.fd}"
    handle = os.open(path, os.O_RDWR)   # opening for writing is not enough...
    try:
        with pytest.raises(PermissionError):
            mmap.mmap(handle, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        with pytest.raises(PermissionError):
            os.write(handle, b"x")
        with pytest.raises(PermissionError):
            os.ftruncate(handle, 0)
        with pytest.raises(TypeError):
            reader._bytes[0] = 0            # the reader's mapping is PROT_READ
        with pytest.raises(TypeError):
            reader._words[1] = 0            # and so is every view of it
        assert read(reader, "app.a") == (5, ValueType.UINT32)
        writer.put("app.a", entry(ValueType.UINT32, 6))   # the writer still can
        assert read(reader, "app.a") == (6, ValueType.UINT32)
    finally:
        os.close(handle)
        reader.close()


def test_a_descriptor_that_is_not_the_table_is_refused(writer) -> None:
    with pytest.raises(TableUnavailable, match="another table"):
        ShmTableReader(os.getpid(), TableLocator(fd=writer.locator.fd,
                                                 token=writer.locator.token ^ 2))
    garbage = os.memfd_create("not-a-table")
    try:
        os.write(garbage, b"\x00" * 4096)
        with pytest.raises(TableUnavailable, match="not a version-1 objdb table"):
            ShmTableReader(os.getpid(), TableLocator(fd=garbage, token=1))
    finally:
        os.close(garbage)
    with pytest.raises(TableUnavailable):
        ShmTableReader(os.getpid(), TableLocator(fd=987654, token=1))


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try the table as another uid")
def test_another_uid_cannot_map_the_table(writer) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        from objdb.shm_table import ShmTableReader, TableLocator, TableUnavailable
        os.setgid(65534); os.setuid(65534)   # after the imports: nobody cannot read root's pyenv
        try:
            ShmTableReader({os.getpid()}, TableLocator(fd={writer.locator.fd},
                                                      token={writer.locator.token}))
        except TableUnavailable as error:
            print("unavailable:", error)
        else:
            print("mapped")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unavailable:") and "Permission denied" in result.stdout


# -- a writer process against a reader: never a torn value ----------------------

WRITER = textwrap.dedent("""
    import json, os, random, sys, time, zlib
    from objdb.shm_table import ShmTableWriter
    from objdb.store import Entry
    from objdb.types import ValueType
    name_file = sys.argv[1]
    table = ShmTableWriter(initial_slots=64, initial_heap_bytes=16 * 1024)

    def publish():
        with open(name_file + ".tmp", "w") as handle:
            handle.write(f"{os.getpid()} {table.locator.fd} {table.locator.token}")
        os.replace(name_file + ".tmp", name_file)

    publish()
    generation = table.stats().generation
    rng = random.Random(7)
    deadline = time.monotonic() + float(sys.argv[2])
    writes = 0
    while time.monotonic() < deadline:
        for index in range(8):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(16, 400)))
            table.put(f"torn.bin.{index}", Entry(value_type=ValueType.BINARY,
                                                  value=zlib.crc32(body).to_bytes(4, "little") + body))
            half = rng.getrandbits(32)
            table.put(f"torn.num.{index}", Entry(value_type=ValueType.UINT64,
                                                  value=half << 32 | half))
            writes += 2
        if writes % 400 == 0:   # new keys: the table keeps growing
            table.put(f"torn.extra.{writes}", Entry(value_type=ValueType.UINT8, value=1))
        if table.stats().generation != generation:
            generation = table.stats().generation
            publish()
    stats = table.stats()
    table.close()
    print(json.dumps({"writes": writes, "regenerations": stats.regenerations}))
""")


@pytest.mark.multiprocess
def test_a_concurrent_writer_never_shows_a_torn_value(tmp_path) -> None:
    name_file = tmp_path / "table-name"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(name_file), "3.0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not name_file.exists():
            assert time.monotonic() < deadline and child.poll() is None, "writer did not start"
            time.sleep(0.01)
        reader = _open_published(name_file)
        checked = unanswered = remaps = 0
        keys = [(f"torn.{kind}.{index}".encode(), kind) for index in range(8)
                for kind in ("bin", "num")]
        stop_at = time.monotonic() + 2.5
        while time.monotonic() < stop_at and checked < 2_000_000:
            for raw, kind in keys:
                found = reader.lookup(raw, key_hash(raw))
                if found is MISS:
                    continue
                if found is None:
                    unanswered += 1
                    if reader.state != STATE_LIVE:
                        reader = _remap(reader, name_file)
                        remaps += 1
                    continue
                value, value_type = found
                if kind == "bin":
                    assert value_type is ValueType.BINARY
                    assert int.from_bytes(value[:4], "little") == zlib.crc32(value[4:]), "torn value"
                else:
                    assert value_type is ValueType.UINT64
                    assert value >> 32 == value & 0xFFFFFFFF, "torn number"
                checked += 1
        reader.close()
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    summary = json.loads(out)
    assert checked > 1000, f"only {checked} values read"
    assert summary["regenerations"] >= 1 and remaps >= 1, (summary, remaps)


def _remap(reader: ShmTableReader, name_file) -> ShmTableReader:
    """Reopen the writer's current generation (the test's stand-in for TABLE_INFO)."""
    reader.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            fresh = _open_published(name_file)
        except (TableUnavailable, FileNotFoundError, ValueError):
            assert time.monotonic() < deadline, "the writer's new generation never appeared"
            time.sleep(0.001)
            continue
        if fresh.state == STATE_LIVE or time.monotonic() > deadline:
            return fresh
        fresh.close()


def _open_published(name_file) -> ShmTableReader:
    pid, fd, token = (int(field) for field in name_file.read_text().split())
    return ShmTableReader(pid, TableLocator(fd=fd, token=token))
