"""totemd.crypto: sealing and opening Totem datagrams, the shared key."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from totemd import crypto as crypto_module
from totemd.crypto import (DERIVE_SOURCE_BURST, DERIVE_SOURCE_RATE, DERIVE_TOTAL_BURST,
                           HEADER_BYTES, KEY_MAX_BYTES, KEY_MIN_BYTES, CryptoSettings, DeriveBudget,
                           KeyError_, PacketCrypto, load_key, overhead_bytes, write_key)

KEY = bytes(range(256))
OTHER_KEY = bytes(reversed(range(256)))
COMBOS = [(cipher, hash_) for cipher in ("none", "aes128", "aes192", "aes256")
          for hash_ in ("md5", "sha1", "sha256", "sha384", "sha512")]


def _pair(cipher: str = "aes256", hash_: str = "sha256", key: bytes = KEY,
          other: bytes | None = None) -> tuple[PacketCrypto, PacketCrypto]:
    return (PacketCrypto(CryptoSettings(cipher, hash_, key)),
            PacketCrypto(CryptoSettings(cipher, hash_, key if other is None else other)))


@pytest.mark.parametrize("cipher,hash_", COMBOS)
def test_every_setting_round_trips_and_adds_its_overhead(cipher, hash_):
    sender, receiver = _pair(cipher, hash_)
    for packet in (b"", b"x", bytes(range(256)) * 5):
        sealed = sender.seal(packet)
        assert len(sealed) == len(packet) + overhead_bytes(cipher, hash_) == len(packet) + sender.overhead
        assert receiver.open(sealed) == packet
    assert receiver.opened == 3 and receiver.failed == receiver.mismatched == 0


def test_a_cipher_hides_the_packet_and_a_hash_alone_only_signs_it():
    packet = b"TOTEM-PAYLOAD-" * 20
    encrypted = PacketCrypto(CryptoSettings("aes256", "sha256", KEY)).seal(packet)
    signed = PacketCrypto(CryptoSettings("none", "sha256", KEY)).seal(packet)
    assert b"TOTEM-PAYLOAD-" not in encrypted
    assert signed[HEADER_BYTES:HEADER_BYTES + len(packet)] == packet


@pytest.mark.parametrize("cipher,hash_", [("aes256", "sha256"), ("none", "sha1"), ("aes128", "md5")])
def test_any_altered_byte_is_refused_and_counted(cipher, hash_):
    sender, receiver = _pair(cipher, hash_)
    sealed = sender.seal(b"a token or a frame" * 4)
    for index in range(len(sealed)):
        altered = bytearray(sealed)
        altered[index] ^= 0x01
        # each from its own address: the derivation budget is not the point here
        assert receiver.open(bytes(altered), f"10.0.1.{index}") is None
    assert receiver.failed + receiver.mismatched == len(sealed)
    assert receiver.opened == 0
    assert receiver.open(sealed) is not None  # the unaltered one still opens


def test_truncated_and_clear_packets_are_refused():
    sender, receiver = _pair()
    sealed = sender.seal(b"frame")
    for cut in (0, 3, HEADER_BYTES, len(sealed) - 1):
        assert receiver.open(sealed[:cut]) is None
    assert receiver.open(b"\xc0\x70\x01\x03" + bytes(60)) is None  # a Totem packet in clear
    assert receiver.opened == 0 and receiver.mismatched + receiver.failed == 5


def test_another_key_does_not_open():
    sender, receiver = _pair(other=OTHER_KEY)
    assert receiver.open(sender.seal(b"frame")) is None
    assert receiver.failed == 1


@pytest.mark.parametrize("theirs", [("aes128", "sha256"), ("aes256", "sha1"), ("none", "sha256")])
def test_other_settings_are_told_apart_from_another_key(theirs):
    sender = PacketCrypto(CryptoSettings(*theirs, KEY))
    receiver = PacketCrypto(CryptoSettings("aes256", "sha256", KEY))
    assert receiver.open(sender.seal(b"frame")) is None
    assert (receiver.mismatched, receiver.failed) == (1, 0)


def test_each_process_has_its_own_session_and_counts_its_packets():
    one, two = _pair()
    first, second = one.seal(b"a"), one.seal(b"a")
    assert first[4:12] == second[4:12] != two.seal(b"a")[4:12]  # session ids: random per process
    assert int.from_bytes(second[12:20], "big") == int.from_bytes(first[12:20], "big") + 1
    assert first != second  # same packet, another nonce
    receiver = PacketCrypto(CryptoSettings("aes256", "sha256", KEY))
    assert [receiver.open(first), receiver.open(second), receiver.open(two.seal(b"b"))] == [b"a", b"a", b"b"]
    assert len(receiver._sessions) == 2  # one derived key per sender session


def test_a_new_session_starts_before_the_counter_runs_out(monkeypatch):
    monkeypatch.setattr(crypto_module, "SESSION_PACKETS", 3)
    sender, receiver = _pair()
    sealed = [sender.seal(b"%d" % n) for n in range(5)] + sender.seal_many([b"x"] * 4)
    sessions = [packet[4:12] for packet in sealed]
    assert len(set(sessions)) >= 3
    assert [receiver.open(packet) for packet in sealed] == [b"%d" % n for n in range(5)] + [b"x"] * 4


def test_seal_many_keeps_order_and_equal_sizes_equal():
    sender, receiver = _pair()
    frames = [bytes([n]) * 1400 for n in range(10)] + [b"short"]
    sealed = sender.seal_many(frames)
    assert len({len(s) for s in sealed[:10]}) == 1  # GSO cuts a run of equal datagrams
    assert receiver.open_many(sealed) == frames
    assert receiver.open_many([sealed[0], b"junk", sealed[1]]) == frames[:2]
    assert receiver.mismatched == 1


def test_the_session_cache_is_bounded_and_garbage_never_enters_it(monkeypatch):
    monkeypatch.setattr(crypto_module, "SESSION_CACHE", 4)
    receiver = PacketCrypto(CryptoSettings("aes256", "sha256", KEY))
    stranger = PacketCrypto(CryptoSettings("aes256", "sha256", OTHER_KEY))
    for _ in range(20):
        receiver.open(stranger.seal(b"x"))
    assert len(receiver._sessions) == 0
    for n in range(10):
        sealed = PacketCrypto(CryptoSettings("aes256", "sha256", KEY)).seal(b"y")
        assert receiver.open(sealed, f"10.0.0.{n}") == b"y"
    assert len(receiver._sessions) == 4


def _forged(session: int) -> bytes:
    """A datagram with the right ids, a random-looking session and garbage."""
    return bytes((0xC7, 1, 3, 3)) + session.to_bytes(8, "big") + bytes(8) + b"x" * 64


def _counting_derive(monkeypatch) -> list[int]:
    calls = [0]
    real = crypto_module._derive

    def derive(*args):
        calls[0] += 1
        return real(*args)
    monkeypatch.setattr(crypto_module, "_derive", derive)
    return calls


def test_forged_sessions_are_throttled_per_source_and_members_still_open(monkeypatch):
    """A flood of random session ids costs a few derivations per source; a
    member whose session is known, and a new one from elsewhere, still open."""
    clock = [50.0]
    receiver = PacketCrypto(CryptoSettings("aes256", "sha256", KEY), clock=lambda: clock[0])
    member, newcomer, late, later = (PacketCrypto(CryptoSettings("aes256", "sha256", KEY))
                                     for _ in range(4))
    derives = _counting_derive(monkeypatch)   # the receiver's derivations from here on
    assert receiver.open(member.seal(b"hello"), "10.0.0.2") == b"hello"
    for session in range(1000):
        assert receiver.open(_forged(session), "10.0.0.2") is None
    assert derives[0] == DERIVE_SOURCE_BURST           # the member's one, then 7 forged
    assert receiver.throttled == 1000 - (DERIVE_SOURCE_BURST - 1)
    assert receiver.failed == DERIVE_SOURCE_BURST - 1
    assert receiver.open(member.seal(b"still"), "10.0.0.2") == b"still"
    assert receiver.open(newcomer.seal(b"new"), "10.0.0.3") == b"new"
    clock[0] += 1.0 / DERIVE_SOURCE_RATE              # one derivation's worth of time
    assert receiver.open(late.seal(b"late"), "10.0.0.2") == b"late"
    assert receiver.open(later.seal(b"z"), "10.0.0.2") is None   # the refill was spent


def test_the_budget_over_all_sources_bounds_a_flood_from_random_addresses():
    clock = [0.0]
    budget = DeriveBudget(lambda: clock[0])
    granted = sum(budget.take(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}") for n in range(5000))
    assert granted == DERIVE_TOTAL_BURST
    assert len(budget._sources) <= crypto_module.DERIVE_SOURCES_TRACKED
    clock[0] += 1.0
    assert budget.take("192.0.2.1")                     # refilled with time


def test_a_peer_with_another_key_costs_one_derivation_and_is_reported_as_such(monkeypatch,
                                                                              caplog):
    sender, receiver = _pair(other=OTHER_KEY)
    derives = _counting_derive(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="totemd.crypto"):
        for _ in range(100):
            assert receiver.open(sender.seal(b"x"), "10.0.0.9") is None
    assert derives[0] == 1 and receiver.failed == 100 and receiver.throttled == 0
    assert "failed authentication" in caplog.records[0].getMessage()


def test_an_altered_first_packet_does_not_lock_out_its_session():
    """Garbage under a real session id (a tampered copy seen first) must not
    stop the sender's genuine packets from opening."""
    sender, receiver = _pair()
    sealed = sender.seal(b"genuine")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert receiver.open(tampered, "10.0.0.2") is None
    assert receiver.open(sealed, "10.0.0.2") == b"genuine"
    assert receiver.open(sender.seal(b"next"), "10.0.0.2") == b"next"


@settings(max_examples=60, deadline=None)
@given(packet=st.binary(max_size=3000), cipher=st.sampled_from(["none", "aes128", "aes256"]))
def test_round_trip_of_any_packet(packet, cipher):
    sender, receiver = _pair(cipher, "sha256")
    assert receiver.open(sender.seal(packet)) == packet


def test_failures_are_logged_once_then_summarised(caplog, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(crypto_module.time, "monotonic", lambda: clock[0])
    sender, receiver = _pair(other=OTHER_KEY)
    with caplog.at_level(logging.WARNING, logger="totemd.crypto"):
        for _ in range(50):
            receiver.open(sender.seal(b"x"))
        clock[0] += 11.0
        receiver.open(sender.seal(b"x"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("dropped 1 datagram(s) that did not open: failed authentication")
    assert lines[1].startswith("dropped 50 datagram(s)")


def test_settings_are_checked():
    with pytest.raises(ValueError, match="neither"):
        PacketCrypto(CryptoSettings("none", "none", KEY))
    with pytest.raises(ValueError, match="crypto_cipher"):
        PacketCrypto(CryptoSettings("des", "sha256", KEY))
    with pytest.raises(KeyError_, match="at least 128"):
        PacketCrypto(CryptoSettings("aes256", "sha256", b"short"))
    assert "key=<256 bytes>" in repr(CryptoSettings("aes256", "sha256", KEY))
    assert KEY.hex()[:16] not in repr(CryptoSettings("aes256", "sha256", KEY))


# -- the key file --------------------------------------------------------------------------

def test_write_key_makes_a_private_random_key_and_replaces_an_old_one(tmp_path):
    path = tmp_path / "authkey"
    write_key(str(path))
    first = path.read_bytes()
    assert len(first) == 256 and stat.S_IMODE(path.stat().st_mode) == 0o400
    write_key(str(path), KEY_MIN_BYTES)
    assert len(path.read_bytes()) == KEY_MIN_BYTES and path.read_bytes() != first[:KEY_MIN_BYTES]
    assert load_key(str(path)) == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authkey"]  # no temp file left
    with pytest.raises(KeyError_, match="128..4096"):
        write_key(str(path), KEY_MAX_BYTES + 1)


def test_load_key_names_the_file_and_the_fix(tmp_path, caplog):
    missing = tmp_path / "nope"
    with pytest.raises(KeyError_, match=f"key file {missing} does not exist .*coro keygen"):
        load_key(str(missing))
    short = tmp_path / "short"
    short.write_bytes(b"k" * 100)
    with pytest.raises(KeyError_, match="holds 100 bytes; a key needs at least 128"):
        load_key(str(short))
    long = tmp_path / "long"
    long.write_bytes(b"k" * (KEY_MAX_BYTES + 1))
    with pytest.raises(KeyError_, match="more than 4096"):
        load_key(str(long))
    with pytest.raises(KeyError_, match="not a regular file"):
        load_key(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(KeyError_, match="not a regular file"):
        load_key(str(fifo))  # and does not hang
    loose = tmp_path / "loose"
    loose.write_bytes(KEY)
    os.chmod(loose, 0o644)
    with caplog.at_level(logging.WARNING, logger="totemd.crypto"):
        assert load_key(str(loose)) == KEY
    assert "accessible by group or others (mode 644)" in caplog.text
