"""``coro bench ipc``: its output schema, its checks, and that it cleans up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scripts import bench_ipc, bench_ipc_harness, bench_ipc_mq, bench_ipc_peers
from scripts.bench_ipc_harness import (
    END_MARKER, CaseFailed, CorruptDelivery, PayloadTable, consume, run_case,
)

ROOT = Path(__file__).resolve().parents[1]
CORO = [sys.executable, "-m", "clients.cli"]
REQUIRED = {"impl": str, "mode": str, "size": int}
NUMBERS = ("msgs_per_s", "mb_per_s")


def _environment(tmp_path: Path) -> dict[str, str]:
    # TMPDIR under pytest's tmp dir: the leak audit then sees any socket file
    # the benchmark leaves, and we can look for leftover directories.
    bench_tmp = tmp_path / "tmp"
    bench_tmp.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(bench_tmp), "PYTHONPATH": str(ROOT)}


def _tagged_shm() -> list[str]:
    tag = os.environ["CORO_RESOURCE_TAG"]
    return [name for name in os.listdir("/dev/shm") if tag in name]


# ---------------------------------------------------------------- the whole run


@pytest.mark.slow
@pytest.mark.multiprocess
def test_json_rows_cover_every_impl_and_follow_the_schema(tmp_path: Path) -> None:
    before = set(_tagged_shm())
    completed = subprocess.run(
        [*CORO, "bench", "ipc", "--json", "--quick", "--duration", "0.1"],
        cwd=ROOT, env=_environment(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr + completed.stdout
    rows = [json.loads(line) for line in completed.stdout.splitlines()]
    impls = bench_ipc.all_impls()
    expected = {(name, "throughput", size) for name, impl in impls.items()
                if "throughput" in impl.modes for size in bench_ipc.DEFAULT_SIZES}
    expected |= {(name, "latency", 64) for name, impl in impls.items() if "latency" in impl.modes}
    assert {(row["impl"], row["mode"], row["size"]) for row in rows} == expected
    assert len(rows) == len(expected)
    for row in rows:
        for key, kind in REQUIRED.items():
            assert isinstance(row[key], kind), row
        assert "error" not in row, row
        if "skipped" in row:
            # Only an optional peer may be missing, and it must say why.
            assert not row["impl"].startswith("coroipc"), row
            assert row["skipped"] and row["msgs_per_s"] is None, row
            continue
        for key in NUMBERS:
            assert isinstance(row[key], float) and row[key] > 0, row
        assert row["mb_per_s"] == pytest.approx(row["msgs_per_s"] * row["size"] / 1e6, rel=1e-3, abs=0.01)
        if row["mode"] == "latency":
            assert 0 < row["p50_us"] <= row["p99_us"], row
        else:
            assert "p50_us" not in row and "p99_us" not in row, row
    # Nothing left: no segment, no temporary directory (zmq sockets live there).
    assert set(_tagged_shm()) == before
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.multiprocess
def test_table_output_and_option_errors(tmp_path: Path) -> None:
    completed = subprocess.run(
        [*CORO, "bench", "ipc", "--impls", "os-pipe", "--sizes", "1K", "--no-latency",
         "--duration", "0.1"],
        cwd=ROOT, env=_environment(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("coro bench ipc: ") and "load average" in lines[0]
    assert any(line.split()[:4] == ["os-pipe", "one-way", "1", "KiB"] for line in lines)
    wrong = subprocess.run([*CORO, "bench", "ipc", "--impls", "carrier-pigeon"], cwd=ROOT,
                           env=_environment(tmp_path), capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "unknown implementation carrier-pigeon" in wrong.stderr


def test_size_parsing() -> None:
    assert bench_ipc._parse_sizes("64,1K,64KiB") == (64, 1024, 65536)
    with pytest.raises(Exception, match="not a size"):
        bench_ipc._parse_sizes("lots")
    with pytest.raises(Exception, match="outside"):
        bench_ipc._parse_sizes("8")


# ---------------------------------------------------------------- the checks


class _ListChannel:
    """A fake transport that delivers a prepared list of messages."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = iter(messages)

    def recv(self) -> bytes:
        return next(self.messages)

    def recv_many(self) -> list[bytes]:
        return [next(self.messages)]


def _stream(table: PayloadTable, count: int) -> list[bytes]:
    return [table.payloads[index & table.mask] for index in range(count)]


@pytest.mark.parametrize("batched", [False, True])
def test_consumer_accepts_a_correct_stream(batched: bool) -> None:
    table = PayloadTable(64)
    report = consume(_ListChannel(_stream(table, 300) + [END_MARKER]), table, batched)
    assert report["received"] == 300
    assert report["timed"] == 299


@pytest.mark.parametrize("batched", [False, True])
def test_consumer_catches_a_flipped_byte_anywhere(batched: bool) -> None:
    table = PayloadTable(1024)
    for offset in (0, 511, 1023):  # the head, the middle and the last byte
        stream = _stream(table, 100)
        damaged = bytearray(stream[70])
        damaged[offset] ^= 0x01
        stream[70] = bytes(damaged)
        with pytest.raises(CorruptDelivery, match=f"message 70: first wrong byte at offset {offset}"):
            consume(_ListChannel(stream + [END_MARKER]), table, batched)


def test_consumer_catches_loss_duplication_reordering_and_truncation() -> None:
    table = PayloadTable(64)
    stream = _stream(table, 100)
    cases = {  # the damaged stream, and the first message that must be caught
        "lost": (stream[:40] + stream[41:], 40),
        "duplicated": (stream[:41] + stream[40:], 41),
        "reordered": (stream[:40] + [stream[41], stream[40]] + stream[42:], 40),
        "truncated": (stream[:40] + [stream[40][:-1]] + stream[41:], 40),
    }
    for damaged, caught in cases.values():
        with pytest.raises(CorruptDelivery, match=f"message {caught}: "):
            consume(_ListChannel(damaged + [END_MARKER]), table, False)


def test_payload_table_is_deterministic_distinct_and_cache_sized() -> None:
    for size in (64, 1024, 65536):
        table = PayloadTable(size)
        assert table.payloads == PayloadTable(size).payloads  # both processes agree
        assert len(set(table.payloads)) == len(table.payloads)
        assert all(len(payload) == size for payload in table.payloads)
        assert len(table.payloads) * size <= bench_ipc_harness.BUFFER_BYTES
        assert len(table.payloads) & table.mask == 0  # a power of two


class _CorruptingPipe(bench_ipc_peers.OsPipe):
    """os.pipe that damages one byte of message 1000 on its way (the fork keeps the class)."""

    name = "corrupting-pipe"
    batched = False

    def sender(self, link):
        writer = super().sender(link)
        plain_send, count = writer.send, [0]

        def send(data: bytes) -> None:
            if count[0] == 1000:
                data = data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]
            count[0] += 1
            plain_send(data)

        writer.send = send
        return writer


class _LosingPipe(bench_ipc_peers.MultiprocessingPipe):
    """A pipe that holds each message back by one and drops the last before the marker."""

    name = "losing-pipe"

    def sender(self, link):
        channel = super().sender(link)
        plain_send, held = channel.send, []

        def send(data: bytes) -> None:
            if data == END_MARKER:
                plain_send(data)  # the held message is never sent
                return
            if held:
                plain_send(held[0])
            held[:] = [data]

        channel.send = send
        return channel


@pytest.mark.multiprocess
def test_corrupt_delivery_between_processes_fails_the_case() -> None:
    with pytest.raises(CorruptDelivery, match="message 1000: first wrong byte at offset 10"):
        run_case(_CorruptingPipe(), 64, "throughput", 0.2)


@pytest.mark.multiprocess
def test_a_lost_message_fails_the_case_by_its_count() -> None:
    with pytest.raises(CorruptDelivery, match="messages sent, .* received"):
        run_case(_LosingPipe(), 64, "throughput", 0.1)


class _BrokenEndpoint(bench_ipc_peers.OsPipe):
    """The consumer cannot open its end: the case must fail, children stop, teardown runs."""

    name = "broken"
    torn_down = False

    def endpoint(self, state, role):
        if role == "consumer":
            raise RuntimeError("cannot open the consumer end")
        return super().endpoint(state, role)

    def teardown(self, state) -> None:
        super().teardown(state)
        type(self).torn_down = True


@pytest.mark.multiprocess
def test_a_failing_child_fails_the_case_and_everything_is_stopped() -> None:
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    with pytest.raises(CaseFailed, match="consumer: RuntimeError: cannot open the consumer end"):
        run_case(_BrokenEndpoint(), 64, "throughput", 5.0)
    assert time.monotonic() - started < 10.0
    assert _BrokenEndpoint.torn_down
    left = {child.pid for child in psutil.Process().children(recursive=True)
            if child.status() != psutil.STATUS_ZOMBIE} - before
    assert not left


@pytest.mark.multiprocess
def test_coroipc_rings_are_removed_after_a_case() -> None:
    before = set(_tagged_shm())
    result = run_case(bench_ipc.all_impls()["coroipc-batch"], 1024, "throughput", 0.1)
    assert result.messages > 0 and result.msgs_per_s > 0
    assert set(_tagged_shm()) == before


def test_message_queue_names_carry_the_resource_tag() -> None:
    name = bench_ipc_mq.resource_name("mq")
    assert name.startswith("/coro-") and os.environ["CORO_RESOURCE_TAG"] in name


def test_message_queue_without_root_says_why_it_skips_64k(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_ipc_mq.PosixMessageQueue, "can_use_namespace", staticmethod(lambda: False))
    monkeypatch.setattr(bench_ipc_mq, "_read_limit", lambda name: 8192)
    reason = bench_ipc_mq.PosixMessageQueue().unavailable(65536, "throughput")
    assert reason and "fs.mqueue.msgsize_max=8192" in reason
    assert bench_ipc_mq.PosixMessageQueue().unavailable(1024, "throughput") is None


@pytest.mark.multiprocess
def test_ctrl_c_stops_every_child_and_removes_every_resource(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    before = set(_tagged_shm())
    process = subprocess.Popen(
        [*CORO, "bench", "ipc", "--impls", "coroipc-batch,pyzmq,posix_ipc-mq", "--duration", "3"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # Ctrl-C reaches the whole process group, as at a terminal
    )
    try:
        # Wait until a case is running (a child exists), then press Ctrl-C.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not psutil.Process(process.pid).children():
            time.sleep(0.05)
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, out + err
    assert set(_tagged_shm()) == before
    assert list((tmp_path / "tmp").iterdir()) == []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _group_processes(process.pid):
        time.sleep(0.05)
    assert not _group_processes(process.pid)


def _group_processes(session: int) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == session and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _row(impl: str, mode: str, size: int, messages: int, latency_us: float = 0.0) -> bench_ipc.Row:
    latencies = (int(latency_us * 1000),) * 10 if mode == "latency" else ()
    result = bench_ipc_harness.CaseResult(impl=impl, mode=mode, size=size, messages=messages,
                                          elapsed_s=1.0, latencies_ns=latencies)
    return bench_ipc.Row(impl, mode, size, result=result)


def test_summary_compares_with_the_best_peer_and_checks_the_targets() -> None:
    rows = [
        _row("coroipc-batch", "throughput", 64, 3_000_000),
        _row("os-pipe", "throughput", 64, 1_500_000),
        _row("pyzmq", "throughput", 64, 1_000_000),
        _row("coroipc-batch", "throughput", 1024, 1_000_000),
        _row("os-pipe", "throughput", 1024, 1_250_000),
        _row("coroipc-request", "latency", 64, 50_000, latency_us=30.0),
        _row("os-pipe", "latency", 64, 90_000, latency_us=9.0),
        bench_ipc.Row("faster-fifo", "throughput", 64, skipped="not installed"),
    ]
    lines = bench_ipc.summary(rows)
    assert "64 B one-way: coroipc-batch 2.00x the best peer (os-pipe, 1,500,000 msgs/s)" in lines
    assert "1 KiB one-way: coroipc-batch 0.80x the best peer (os-pipe, 1,250,000 msgs/s)" in lines
    assert "64 B round trip: coroipc-request p50 30.0 us, best peer os-pipe 9.0 us" in lines
    assert "target: coroipc-batch 64 B msgs/s >= 2,000,000: 3,000,000 (met)" in lines
    assert "target: coroipc-batch 1 KiB msgs/s >= 1,500,000: 1,000,000 (NOT met)" in lines
    assert "target: coroipc-request 64 B p50 us < 25: 30.0 (NOT met)" in lines
    assert not any("64 KiB" in line for line in lines)  # nothing measured there


@pytest.mark.multiprocess
def test_message_queue_on_host_limits_runs_and_unlinks_its_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    import posix_ipc

    names: list[str] = []

    def recorded_name(kind: str) -> str:
        names.append(f"/coro-{os.environ['CORO_RESOURCE_TAG']}-bench-test-{len(names)}")
        return names[-1]

    monkeypatch.setattr(bench_ipc_mq.PosixMessageQueue, "can_use_namespace", staticmethod(lambda: False))
    monkeypatch.setattr(bench_ipc_mq, "resource_name", recorded_name)
    impl = bench_ipc_mq.PosixMessageQueue()
    result = impl.run_case(64, "latency", 0.1)
    assert result.messages > 0 and result.percentile_us(0.5) > 0
    assert impl.note(64, "latency").startswith("host limits, queue depth")
    assert len(names) == 2  # one queue per direction
    for name in names:
        with pytest.raises(posix_ipc.ExistentialError):
            posix_ipc.MessageQueue(name)


def test_repeat_keeps_the_median_run(monkeypatch: pytest.MonkeyPatch) -> None:
    rates = iter([300, 100, 200])

    def fake_run_case(impl, size, mode, duration_s):
        return bench_ipc_harness.CaseResult(impl=impl.name, mode=mode, size=size,
                                            messages=next(rates), elapsed_s=1.0)

    monkeypatch.setattr(bench_ipc, "run_case", fake_run_case)
    row = bench_ipc.measure(bench_ipc_peers.OsPipe(), 64, "throughput", 0.1, repeat=3)
    assert row.result.msgs_per_s == 200
    assert row.as_json()["runs"] == 3


def test_message_queue_halves_its_depth_while_the_kernel_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    impl = bench_ipc_mq.PosixMessageQueue(inside_namespace=True)
    made: list[int] = []

    def make_link(size: int) -> int:
        if impl.depth > 100:
            raise OSError("This process already has the maximum number of files open")
        made.append(impl.depth)
        return impl.depth

    monkeypatch.setattr(impl, "make_link", make_link)
    monkeypatch.setattr(impl, "remove_link", lambda link: None)
    monkeypatch.setattr(bench_ipc_mq, "tuned_depth", lambda size, queues: 1000)
    assert impl.setup(64, "latency") == [62, 62]  # 1000 -> 500 -> 250 -> 125 -> 62
    assert impl.note(64, "latency").endswith("queue depth 62")
