"""Packet encryption and authentication for the Totem transport (totem.crypto_*).

Every datagram a node sends is sealed with the cluster's shared key (the
``totem.keyfile``, default /etc/corosync/authkey, written by ``coro
keygen``); every datagram it receives is opened before anything else looks
at it, and one that fails is counted and dropped (a node with another key,
or other crypto settings, never gets a packet into our core).

The settings are corosync's: ``crypto_cipher`` (none, aes128, aes192,
aes256) and ``crypto_hash`` (none, md5, sha1, sha256, sha384, sha512); a
cipher needs a hash. What we do with them, on the wire (version 1):

    0     1        2          3         4 .. 11      12 .. 19
    0xC7  version  cipher id  hash id   session id   counter (big endian)
    then: cipher set  -> AES-GCM(ciphertext + 16-byte tag), key of the cipher's size
          hash only   -> the plaintext + HMAC-<hash>(header + plaintext)

- With a cipher the packet is AES-GCM: confidentiality and authentication
  in one pass (corosync 2 did AES-CBC then an HMAC; GCM is both, and here
  7x cheaper per packet than a separate CTR pass and HMAC). The hash is
  required as corosync requires it, and is checked to match between nodes
  (its id is in the header), but adds no second tag.
- With a hash alone (cipher none) the packet travels in clear, signed.
- Keys: each process draws a random 8-byte session id at start (and a new
  one every 2**40 packets) and derives its session key from the shared key
  with HKDF-SHA256 (salt: the session id; info: the version and algorithm).
  The GCM nonce is the packet counter, so a (key, nonce) pair never repeats
  within a session, and sessions never share a key (a random id per start:
  no state on disk to lose). Receivers derive a sender's session key once
  and keep it (a bounded cache; only a packet that opened is cached, so
  garbage cannot fill it; sessions derived that did not open yet wait in
  a second one, so a peer with another key costs one derivation).
- Deriving a key for an unknown session costs ~9 us (HKDF, a cipher object,
  a failed open), so a flood of forged datagrams with random session ids
  could eat a daemon's CPU. Derivations are budgeted (``DeriveBudget``): a
  few per second per source address and a few hundred per second in all; a
  datagram over budget is dropped at the cost of a dict lookup (counted in
  ``throttled``). A sender needs one derivation per process start, so a
  member's packets still open during such a flood (its session is cached);
  only a node starting up behind a flood from its own address must wait.
- The header is authenticated (GCM's associated data, or under the HMAC).
- No replay window: Totem drops what it has seen (seqs, token seqs), as with
  corosync's own crypto, which has none either.

The overhead per datagram (36 bytes with a cipher, 20 + digest size with a
hash alone) comes off netmtu before frames are sized, so sealed datagrams
still fit the MTU (``totemd.settings``).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CIPHERS", "HASHES", "KEY_MIN_BYTES", "KEY_MAX_BYTES", "KEY_DEFAULT_BYTES",
           "CryptoSettings", "KeyError_", "PacketCrypto", "load_key", "write_key"]

log = logging.getLogger("totemd.crypto")

MARKER = 0xC7
VERSION = 1
# cipher name -> (id on the wire, key bytes)
CIPHERS: dict[str, tuple[int, int]] = {"aes128": (1, 16), "aes192": (2, 24), "aes256": (3, 32)}
# hash name -> (id on the wire, digest bytes)
HASHES: dict[str, tuple[int, int]] = {"md5": (1, 16), "sha1": (2, 20), "sha256": (3, 32),
                                      "sha384": (4, 48), "sha512": (5, 64)}
# knet's bounds on the shared key (corosync-keygen: 256 bytes by default).
KEY_MIN_BYTES = 128
KEY_MAX_BYTES = 4096
KEY_DEFAULT_BYTES = 256

_HEADER = struct.Struct("!BBBB8sQ")
HEADER_BYTES = _HEADER.size  # 20
_PREFIX = struct.Struct("!BBBB8s")
_COUNTER = struct.Struct("!Q")
GCM_TAG_BYTES = 16
SESSION_PACKETS = 1 << 40  # a new session (and key) long before the counter could wrap
SESSION_CACHE = 256        # senders' session keys kept by a receiver
# New-session derivations (see DeriveBudget): per source and in all, a burst
# and a rate per second; the sources tracked are bounded too.
DERIVE_SOURCE_BURST = 8
DERIVE_SOURCE_RATE = 2.0
DERIVE_TOTAL_BURST = 64
DERIVE_TOTAL_RATE = 200.0
DERIVE_SOURCES_TRACKED = 1024
_FAILURE_LOG_INTERVAL_S = 10.0


class KeyError_(Exception):  # noqa: N801 - "KeyError" is a builtin
    """The shared key cannot be used: missing, unreadable, or of a bad size.
    The message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class CryptoSettings:
    """What a node seals with: corosync's names, and the key's bytes."""

    cipher: str
    hash: str
    key: bytes

    def __repr__(self) -> str:  # never print the key
        return f"CryptoSettings(cipher={self.cipher!r}, hash={self.hash!r}, key=<{len(self.key)} bytes>)"

    @property
    def enabled(self) -> bool:
        return self.cipher != "none" or self.hash != "none"


def overhead_bytes(cipher: str, hash_: str) -> int:
    """Bytes a sealed datagram has on top of the Totem packet (0: no crypto)."""
    if cipher != "none":
        return HEADER_BYTES + GCM_TAG_BYTES
    if hash_ != "none":
        return HEADER_BYTES + HASHES[hash_][1]
    return 0


def load_key(path: str) -> bytes:
    """The shared key in ``path``, checked for size (KEY_MIN_BYTES..KEY_MAX_BYTES).

    A key readable by group or others is used, with a warning: it is a secret.

    Raises:
        KeyError_: with the file and the fix in the message.
    """
    try:
        # O_NONBLOCK: a FIFO put there must not hang the start.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise KeyError_(f"key file {path} is not a regular file")
            key = os.read(fd, KEY_MAX_BYTES + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise KeyError_(f"key file {path} does not exist (create it with 'coro keygen -k {path}' "
                        "and copy it to every node)") from None
    except OSError as error:
        raise KeyError_(f"cannot read key file {path}: {error.strerror}") from None
    check_key(key, f"key file {path}")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is accessible by group or others (mode %o): it should be 0400",
                    path, stat.S_IMODE(info.st_mode))
    return key


def check_key(key: bytes, what: str) -> None:
    """Raise KeyError_ if ``key`` is not KEY_MIN_BYTES..KEY_MAX_BYTES long."""
    if len(key) < KEY_MIN_BYTES:
        raise KeyError_(f"{what} holds {len(key)} bytes; a key needs at least {KEY_MIN_BYTES} "
                        f"({KEY_MIN_BYTES * 8} bits): write a new one with 'coro keygen'")
    if len(key) > KEY_MAX_BYTES:
        raise KeyError_(f"{what} holds more than {KEY_MAX_BYTES} bytes, the largest key")


def write_key(path: str, size: int = KEY_DEFAULT_BYTES) -> None:
    """Write ``size`` random bytes to ``path``, mode 0400 (replacing any file there
    atomically, as corosync-keygen replaces the old key)."""
    if not KEY_MIN_BYTES <= size <= KEY_MAX_BYTES:
        raise KeyError_(f"a key is {KEY_MIN_BYTES}..{KEY_MAX_BYTES} bytes, not {size}")
    directory = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.fchmod(fd, 0o400)  # whatever the umask
            view = memoryview(secrets.token_bytes(size))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as error:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise KeyError_(f"cannot write key file {path}: {error.strerror}") from None


def _derive(key: bytes, session: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=session, info=info).derive(key)


class DeriveBudget:
    """Token buckets for new-session key derivations: one per source address
    (at most ``DERIVE_SOURCES_TRACKED``, the least recently used forgotten)
    and one for all sources. ``take(source)`` is True if a derivation may run
    now, and spends a token of both buckets.

    Args:
        clock: monotonic seconds (injectable for tests).
    """

    __slots__ = ("_clock", "_total", "_sources")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._total = [float(DERIVE_TOTAL_BURST), clock()]
        self._sources: OrderedDict[str | None, list[float]] = OrderedDict()

    @staticmethod
    def _refill(bucket: list[float], now: float, burst: int, rate: float) -> None:
        bucket[0] = min(float(burst), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now

    def take(self, source: str | None) -> bool:
        now = self._clock()
        total = self._total
        self._refill(total, now, DERIVE_TOTAL_BURST, DERIVE_TOTAL_RATE)
        sources = self._sources
        bucket = sources.get(source)
        if bucket is None:
            bucket = sources[source] = [float(DERIVE_SOURCE_BURST), now]
            if len(sources) > DERIVE_SOURCES_TRACKED:
                sources.popitem(last=False)
        else:
            sources.move_to_end(source)
            self._refill(bucket, now, DERIVE_SOURCE_BURST, DERIVE_SOURCE_RATE)
        if bucket[0] < 1.0 or total[0] < 1.0:
            return False
        bucket[0] -= 1.0
        total[0] -= 1.0
        return True


class PacketCrypto:
    """Seals and opens datagrams for one node (see the module docstring).

    Counters (read by the transport's statistics): ``opened``,
    ``failed`` (did not authenticate: another key, or tampered),
    ``mismatched`` (other crypto settings or not sealed at all),
    ``throttled`` (an unknown session over the derivation budget).

    Args:
        settings: the cipher, hash and key.
        clock: monotonic seconds, for the derivation budget (tests inject one).
    """

    __slots__ = ("cipher", "hash", "overhead", "opened", "failed", "mismatched", "throttled",
                 "_key", "_ids", "_info", "_key_bytes", "_digest", "_digest_bytes", "_prefix",
                 "_counter", "_session_end", "_seal_one", "_sessions", "_tried", "_budget",
                 "_last_log", "_unlogged")

    def __init__(self, settings: CryptoSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not settings.enabled:
            raise ValueError("crypto settings with neither a cipher nor a hash")
        if settings.cipher != "none" and settings.cipher not in CIPHERS:
            raise ValueError(f"unknown crypto_cipher {settings.cipher!r}")
        if settings.hash not in HASHES:
            raise ValueError(f"unknown crypto_hash {settings.hash!r}")
        check_key(settings.key, "the key")
        self.cipher = settings.cipher
        self.hash = settings.hash
        self.overhead = overhead_bytes(settings.cipher, settings.hash)
        self.opened = self.failed = self.mismatched = self.throttled = 0
        self._key = settings.key
        cipher_id, self._key_bytes = CIPHERS.get(settings.cipher, (0, 0))
        hash_id, self._digest_bytes = HASHES[settings.hash]
        self._ids = bytes((MARKER, VERSION, cipher_id, hash_id))
        self._digest = settings.hash
        algorithm = f"aes{self._key_bytes * 8}-gcm" if cipher_id else f"hmac-{settings.hash}"
        self._info = f"coro totem v{VERSION} {algorithm}".encode()
        # session id -> opener (an AESGCM, or an HMAC key), most recent last
        self._sessions: OrderedDict[bytes, Any] = OrderedDict()
        # sessions derived whose packets have not opened yet (another key,
        # forged or altered packets): a repeat costs no derivation, and
        # garbage filling this cache cannot push out an authenticated sender
        self._tried: OrderedDict[bytes, Any] = OrderedDict()
        self._budget = DeriveBudget(clock)
        self._last_log = 0.0
        self._unlogged = 0
        self._new_session()

    def _new_session(self) -> None:
        session = secrets.token_bytes(8)
        self._prefix = _PREFIX.pack(MARKER, VERSION, self._ids[2], self._ids[3], session)
        self._counter = 0
        self._session_end = SESSION_PACKETS
        secret = _derive(self._key, session, self._info, self._key_bytes or self._digest_bytes)
        if self._key_bytes:
            gcm = AESGCM(secret)
            self._seal_one = self._gcm_sealer(gcm)
        else:
            self._seal_one = self._hmac_sealer(secret)

    def _gcm_sealer(self, gcm: AESGCM) -> Callable[[bytes], bytes]:
        encrypt = gcm.encrypt
        pack = _COUNTER.pack

        def seal(data: bytes) -> bytes:
            counter = self._counter = self._counter + 1
            tail = pack(counter)
            header = self._prefix + tail
            return header + encrypt(b"\0\0\0\0" + tail, data, header)
        return seal

    def _hmac_sealer(self, secret: bytes) -> Callable[[bytes], bytes]:
        pack = _COUNTER.pack
        digest = hmac.digest
        name = self._digest

        def seal(data: bytes) -> bytes:
            counter = self._counter = self._counter + 1
            signed = self._prefix + pack(counter) + data
            return signed + digest(secret, signed, name)
        return seal

    # -- sending ---------------------------------------------------------------

    def seal(self, data: bytes) -> bytes:
        """One Totem packet as a sealed datagram."""
        if self._counter >= self._session_end:
            self._new_session()
        return self._seal_one(data)

    def seal_many(self, packets: Any) -> list[bytes]:
        """``seal`` for each packet, in order (equal sizes stay equal: GSO)."""
        if self._counter + len(packets) >= self._session_end:
            return [self.seal(data) for data in packets]
        return list(map(self._seal_one, packets))

    # -- receiving -------------------------------------------------------------

    def open(self, data: bytes, source: str | None = None) -> bytes | None:
        """The Totem packet in a sealed datagram, or None (counted) if it does
        not open: not sealed, other settings, another key, altered, or of an
        unknown session over the derivation budget of its ``source`` address
        (or of all sources)."""
        overhead = self.overhead
        if len(data) < overhead or data[:4] != self._ids:
            self.mismatched += 1
            self._note_failure("sealed with other crypto settings, or not sealed")
            return None
        session = data[4:12]
        opener = self._sessions.get(session)
        known = opener is not None
        if not known:
            opener = self._tried.get(session)
            if opener is None:
                if not self._budget.take(source):
                    self.throttled += 1
                    self._note_failure("new sender sessions arrive faster than a few per "
                                       "second (forged datagrams?)")
                    return None
                secret = _derive(self._key, session, self._info,
                                 self._key_bytes or self._digest_bytes)
                opener = AESGCM(secret) if self._key_bytes else secret
                self._remember(self._tried, session, opener)
        if self._key_bytes:
            try:
                plain = opener.decrypt(b"\0\0\0\0" + data[12:HEADER_BYTES], data[HEADER_BYTES:],
                                       data[:HEADER_BYTES])
            except InvalidTag:
                plain = None
        else:
            cut = len(data) - self._digest_bytes
            expected = hmac.digest(opener, data[:cut], self._digest)
            plain = data[HEADER_BYTES:cut] if hmac.compare_digest(expected, data[cut:]) else None
        if plain is None:
            self.failed += 1
            self._note_failure("failed authentication (another key?)")
            return None
        if not known:
            del self._tried[session]
            self._remember(self._sessions, session, opener)
        self.opened += 1
        return plain

    @staticmethod
    def _remember(cache: OrderedDict[bytes, Any], session: bytes, opener: Any) -> None:
        cache[session] = opener
        if len(cache) > SESSION_CACHE:
            cache.popitem(last=False)

    def open_many(self, datagrams: list[bytes], source: str | None = None) -> list[bytes]:
        """The packets of the datagrams (all from ``source``) that open, in
        order (the rest counted)."""
        opened = [self.open(data, source) for data in datagrams]
        if None in opened:
            return [plain for plain in opened if plain is not None]
        return opened  # type: ignore[return-value]

    def _note_failure(self, why: str) -> None:
        """Log the first failure, then at most one line per interval with the count."""
        now = time.monotonic()
        self._unlogged += 1
        if now - self._last_log >= _FAILURE_LOG_INTERVAL_S:
            log.warning("dropped %d datagram(s) that did not open: %s (crypto_cipher %s, "
                        "crypto_hash %s here)", self._unlogged, why, self.cipher, self.hash)
            self._last_log = now
            self._unlogged = 0
