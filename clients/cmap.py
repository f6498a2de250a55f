"""The cmap client API: libcmap's shape, in Python.

::

    from clients.cmap import CmapClient, TrackFlags, ValueType

    with CmapClient.connect(run_dir="/run/coro") as cmap:
        value, value_type = cmap.get("totem.token")       # (3000, ValueType.UINT32)
        token = cmap.get_u32("totem.token")                # WrongType if it is not u32
        cmap.set("my.counter", 0, ValueType.UINT64)
        cmap.inc("my.counter")                             # -> 1
        for key, value, value_type in cmap.iter("nodelist."):
            ...
        handle = cmap.track_add("totem.", TrackFlags.all_changes() | TrackFlags.PREFIX,
                                on_change)                 # on_change(notification)
        cmap.dispatch(timeout=1.0)                         # runs on_change for waiting events

Callbacks run on the thread that calls :meth:`CmapClient.dispatch`, never
elsewhere; a notification carries the tracker handle, the event (ADD, DELETE
or MODIFY), the key, and the new and old value (``None`` where there is none).

asyncio: the client is not thread-safe and does no I/O of its own in the
background, so give its descriptor to the loop and dispatch when it is
readable::

    loop.add_reader(cmap.fileno(), cmap.dispatch)

Requests (get, set, ...) block for their reply (microseconds on a live
daemon); run them in the loop's thread or use one client per thread.

Gets from shared memory. objdb keeps a read-only shared-memory mirror of the
store (``objdb.shm_table``); a client of objdb's uid (or root) maps it at
connect and answers :meth:`CmapClient.get` from it without a round trip. It
still asks objdb when: the table cannot be mapped (another uid), the writer
kept the key's slot busy for too many retries, objdb moved to a new table
generation (the client remaps), or this client has :meth:`set_nowait` calls
not yet confirmed by a round trip (so it reads its own writes). objdb updates
the table before it replies to a change and before it notifies trackers, so
what a reply or a notification announced is what the table holds. Every
``objdb.table_client.LIVENESS_INTERVAL_S`` (50 ms) the client checks that
objdb still runs and that its connection has nothing waiting (events, or a
hang-up), so a killed objdb, or a connection objdb dropped, turns gets into
:class:`ConnectionLost` as before.
:attr:`CmapClient.shared_gets` / :attr:`CmapClient.round_trip_gets` count
the two paths.

Pipelining. :meth:`set_nowait` checks and encodes its set and buffers it;
the buffer goes to objdb as one message (SET_NOWAIT_MANY) on :meth:`sync`,
:meth:`flush`, any other request, :meth:`dispatch`, :meth:`close`, or when
it reaches :data:`NOWAIT_FLUSH_COUNT` sets or ``codec.BATCH_BYTES_BUDGET``
bytes. Failures are reported by the next :meth:`sync`, as before.

Errors: every failure is an :class:`objdb.errors.ObjdbError` subclass:
:class:`NoSuchKey`, :class:`WrongType`, :class:`ReadOnly`, :class:`TooLong`,
:class:`InvalidKey`, :class:`InvalidValue`, :class:`LimitReached`,
:class:`NotConnected` (closed, or nothing to connect to) and
:class:`ConnectionLost` (the daemon died or dropped us, e.g. because a
tracker stopped reading its events).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator, NamedTuple

from clients._cmap_typed import TypedAccessors
from coroipc import IpcClient
from coroipc import errors as ipc_errors
from objdb import codec
from objdb.errors import (ERROR_BY_STATUS, CmapError, ConnectionLost, DecodeError, InvalidKey,
                          InvalidValue, LimitReached, NoSuchKey, NotConnected, ObjdbError,
                          ReadOnly, RequestTimeout, TooLong, WrongType)
from objdb.keys import check_key, check_prefix
from objdb.service import SERVICE_NAME
from objdb.shm_table import MISS, key_hash
from objdb.table_client import LIVENESS_INTERVAL_S, TableFollower
from objdb.store import Entry, TrackFlags
from objdb.types import INTEGER_BOUNDS, NUMERIC_STRUCTS, Value, ValueType, check_value

__all__ = [
    "CmapClient", "Notification", "TrackFlags", "ValueType", "Entry", "CmapError",
    "ConnectionLost", "InvalidKey", "InvalidValue", "LimitReached", "NoSuchKey",
    "NotConnected", "ObjdbError", "ReadOnly", "RequestTimeout", "TooLong", "WrongType", "run_dir_from_env",
]

#: A change notification: ``tracker_id`` (the handle), ``event``, ``key``, ``new``, ``old``.
Notification = codec.NotifyEvent
Callback = Callable[[Notification], None]

#: Entries fetched per ITERATE round trip.
ITERATE_PAGE = 256
RUN_DIR_ENV = "CORO_RUN_DIR"
#: Keys whose checks and encodings a client keeps (cleared when full).
GET_CACHE_SIZE = 4096
#: Longest a close waits for objdb to confirm this client's pipelined sets.
CLOSE_SYNC_TIMEOUT_S = 2.0
_GET = int(codec.Function.GET)
_SET = int(codec.Function.SET)
_SET_NOWAIT_MANY = int(codec.Function.SET_NOWAIT_MANY)
_monotonic = time.monotonic
#: Buffered set_nowait calls are sent once this many are waiting: small
#: enough that objdb applies one message while the client encodes the next
#: (the two overlap on two cores), large enough to share one ring write.
NOWAIT_FLUSH_COUNT = 64
#: ``u8 type, u32 length`` of each numeric type's value (a constant per type).
_NOWAIT_START = codec.REQUEST_HEADER + b"\x00\x00"
_NUMERIC_HEADS = {value_type: codec._VALUE_HEAD.pack(int(value_type), layout.size)
                  for value_type, layout in NUMERIC_STRUCTS.items()}


class _KeyInfo(NamedTuple):
    """A checked key's encodings: the GET payload, its ASCII bytes, the
    table hash, and its wire form (``u8 length`` + bytes)."""

    get_payload: bytes
    raw: bytes
    hashed: int
    wire: bytes


def run_dir_from_env() -> str | None:
    """The run directory named by env ``CORO_RUN_DIR``, if set."""
    return os.environ.get(RUN_DIR_ENV) or None


def _chunks(items: list[bytes]) -> Iterator[list[bytes]]:
    """Split encoded sets into SET_MANY requests within the count and byte budgets."""
    chunk: list[bytes] = []
    size = 0
    for item in items:
        if chunk and (len(chunk) >= codec.MAX_SET_MANY_COUNT or size >= codec.BATCH_BYTES_BUDGET):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item)
    if chunk:
        yield chunk


class CmapClient(TypedAccessors):
    """A connection to the node's objdb (the ``cmap`` coroipc service).

    Make one with :meth:`connect`; use it as a context manager or call
    :meth:`close`.
    """

    def __init__(self, ipc_client: object, *, privileged: bool,
                 request_timeout: float = 30.0) -> None:
        self._ipc = ipc_client
        self._request_timeout = request_timeout
        self._privileged = privileged
        self._callbacks: dict[int, Callback] = {}
        self._keys: dict[str, _KeyInfo] = {}
        self._follower = TableFollower(self._ask_table, getattr(ipc_client, "server_pid", None),
                                       getattr(ipc_client, "fileno", lambda: -1))
        # Buffered set_nowait calls: a SET_NOWAIT_MANY payload being built
        # (its count is filled in when it is sent).
        self._nowait_buffer = bytearray(_NOWAIT_START)
        self._nowait_count = 0
        self._set_heads: dict[str, tuple[ValueType, bytes, object, int, int]] = {}
        self._unconfirmed = False   # set_nowait calls no round trip has confirmed yet
        self.shared_gets = 0      # gets answered from the shared table
        self.round_trip_gets = 0  # gets answered by objdb
        self.unknown_events = 0   # notifications for handles already deleted (a benign race)

    @classmethod
    def connect(cls, run_dir: str | os.PathLike[str] | None = None, *, internal: bool = False,
                timeout: float = 5.0, request_timeout: float = 30.0,
                shared_table: bool = True) -> "CmapClient":
        """Connect to objdb.

        Args:
            run_dir: the node's run directory (default: env ``CORO_RUN_DIR``).
            internal: ask for a privileged connection that may write read-only
                keys; granted only to the daemon's own uid or root.
            timeout: seconds to wait for the daemon.
            request_timeout: seconds a request may wait for its reply before
                :class:`RequestTimeout` (the daemon is wedged).
            shared_table: map objdb's shared-memory table for gets if
                permitted (False: every get is a round trip).

        Raises:
            NotConnected: no objdb answers in ``run_dir``.
            ReadOnly: ``internal`` was asked for by a uid that may not have it.
        """
        directory = run_dir if run_dir is not None else run_dir_from_env()
        if directory is None:
            raise NotConnected("no run directory: pass run_dir or set CORO_RUN_DIR")
        try:
            ipc = IpcClient.connect(SERVICE_NAME, run_dir=os.fspath(directory), timeout=timeout)
        except (ipc_errors.IpcError, OSError) as error:
            raise NotConnected(f"cannot reach objdb in {os.fspath(directory)}: {error}") from error
        client = cls(ipc, privileged=False, request_timeout=request_timeout)
        try:
            options = codec.HELLO_INTERNAL if internal else 0
            reply = client._call(codec.Hello(options=options))
            _version, client._privileged, _max_value = codec.decode_hello_response(reply)
            if shared_table:
                client._follower.open()
        except BaseException:
            client.close()
            raise
        return client

    # -- plumbing ----------------------------------------------------------------

    def _call(self, request: codec.Request) -> bytes:
        return self._call_raw(*codec.encode_request(request))

    def _call_raw(self, function: int, payload: bytes) -> bytes:
        if self._ipc is None:
            raise NotConnected("the cmap client is closed")
        if self._nowait_count:
            self.flush()
        try:
            reply = self._ipc.request(function, payload,  # type: ignore[attr-defined]
                                      timeout=self._request_timeout)
        except ipc_errors.NotConnected as error:
            raise NotConnected(str(error)) from error
        except ipc_errors.Timeout as error:
            raise RequestTimeout(f"objdb did not answer in {self._request_timeout} s") from error
        except ipc_errors.ServiceError as error:
            raise CmapError(f"objdb failed on this request: {error}") from error
        except ipc_errors.IpcError as error:
            raise ConnectionLost(f"objdb connection lost: {error}") from error
        # objdb handles a connection's requests in order: everything sent
        # before this request has been applied (and mirrored) by now.
        self._unconfirmed = False
        self._follower.alive_until = _monotonic() + LIVENESS_INTERVAL_S
        return reply

    def _key_info(self, key: str) -> _KeyInfo:
        info = self._keys.get(key) if key.__class__ is str else None
        if info is None:
            # Checked and encoded once per key: the same keys are the hot
            # loop of most readers and writers (the cache is bounded).
            check_key(key)
            raw = key.encode("ascii")
            wire = codec.encode_key(key)
            info = _KeyInfo(codec.REQUEST_HEADER + wire, raw, key_hash(raw), wire)
            if len(self._keys) >= GET_CACHE_SIZE:
                self._keys.clear()
            self._keys[key] = info
        return info

    def _ask_table(self) -> tuple[int, int] | None:
        return codec.decode_table_info_response(self._call(codec.TableInfo()))

    @property
    def table_unavailable(self) -> str:
        """Why gets use round trips only ('' while the shared table is used)."""
        return self._follower.unavailable

    def flush(self) -> None:
        """Send the buffered :meth:`set_nowait` calls now (without waiting).

        Raises:
            NotConnected, ConnectionLost: as :meth:`set_nowait`.
        """
        if not self._nowait_count:
            return
        if self._ipc is None:
            raise NotConnected("the cmap client is closed")
        payload, count = self._nowait_buffer, self._nowait_count
        self._nowait_buffer, self._nowait_count = bytearray(_NOWAIT_START), 0
        codec._U16.pack_into(payload, len(codec.REQUEST_HEADER), count)
        try:
            self._ipc.post(_SET_NOWAIT_MANY, payload,  # type: ignore[attr-defined]
                           timeout=self._request_timeout)
        except ipc_errors.NotConnected as error:
            raise NotConnected(str(error)) from error
        except ipc_errors.IpcError as error:
            raise ConnectionLost(f"objdb connection lost: {error}") from error

    def close(self) -> None:
        """Disconnect (idempotent). The daemon removes this client's trackers.

        Buffered or unconfirmed :meth:`set_nowait` calls are sent and waited
        for first, at most :data:`CLOSE_SYNC_TIMEOUT_S` (objdb drops what is
        still in the rings of a connection that goes away); their failures,
        which only :meth:`sync` reports, are not raised here.
        """
        if self._ipc is not None and self._unconfirmed:
            timeout, self._request_timeout = self._request_timeout, min(
                self._request_timeout, CLOSE_SYNC_TIMEOUT_S)
            try:
                self._call(codec.Sync())
            except ObjdbError:
                pass   # the connection is gone (or objdb is wedged): close anyway
            finally:
                self._request_timeout = timeout
        ipc, self._ipc = self._ipc, None
        self._callbacks.clear()
        self._follower.close()
        if ipc is not None:
            ipc.close()  # type: ignore[attr-defined]

    def __enter__(self) -> "CmapClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def privileged(self) -> bool:
        """True if this connection may change read-only keys."""
        return self._privileged

    # -- reading -----------------------------------------------------------------

    def get_entry(self, key: str) -> Entry:
        """The typed entry under ``key``.

        Raises:
            InvalidKey: not a valid key name (checked before anything is sent).
            NoSuchKey: no such key.
        """
        value, value_type = self.get(key)
        return Entry(value_type=value_type, value=value)

    def get(self, key: str) -> tuple[Value, ValueType]:
        """(value, type) of ``key``; raises like :meth:`get_entry`.

        Answered from the shared table when it is mapped (see the module
        docstring), else by a round trip.
        """
        info = self._keys.get(key) if key.__class__ is str else None
        if info is None:
            info = self._key_info(key)
        follower = self._follower
        table = follower.reader
        if table is not None and not self._unconfirmed:
            found = table.lookup(info.raw, info.hashed)
            if found is not None and (_monotonic() < follower.alive_until
                                      or follower.check_alive()):
                if found is MISS:
                    raise NoSuchKey(f"no key {key!r}")
                self.shared_gets += 1
                return found  # type: ignore[return-value]
            follower.missed()
        self.round_trip_gets += 1
        return codec.decode_value_reply(self._call_raw(_GET, info.get_payload))

    def get_many(self, keys: "list[str]") -> "list[tuple[Value, ValueType] | None]":
        """(value, type) of each key, in order, None for a key that does not exist.

        From the shared table when it is mapped (as :meth:`get`); the keys it
        cannot answer, or all of them without a table, go to objdb in
        GET_MANY round trips (up to ``codec.MAX_GET_MANY_COUNT`` keys each,
        fewer when the values are large).

        Raises:
            InvalidKey: a key name is not valid (checked before anything is read).
        """
        infos = [self._key_info(key) for key in keys]
        results: list[tuple[Value, ValueType] | None] = [None] * len(infos)
        ask: list[int] = list(range(len(infos)))
        follower = self._follower
        table = follower.reader
        if (table is not None and not self._unconfirmed and infos
                and (_monotonic() < follower.alive_until or follower.check_alive())):
            ask = []
            for index, info in enumerate(infos):
                found = table.lookup(info.raw, info.hashed)
                if found is None:
                    ask.append(index)
                elif found is not MISS:
                    results[index] = found  # type: ignore[assignment]
            self.shared_gets += len(infos) - len(ask)
            if ask:
                follower.missed()
        while ask:
            chunk = ask[:codec.MAX_GET_MANY_COUNT]
            request = codec.GetMany(keys=tuple(keys[index] for index in chunk))
            answered = codec.decode_get_many_response(self._call(request))
            if not answered or len(answered) > len(chunk):
                raise DecodeError(f"get_many reply answered {len(answered)} of {len(chunk)} keys")
            for index, entry in zip(chunk, answered):
                results[index] = None if entry is None else (entry.value, entry.value_type)
            self.round_trip_gets += len(answered)
            ask = ask[len(answered):]
        return results

    def get_typed(self, key: str, value_type: ValueType) -> Value:
        """The value of ``key``, which must have type ``value_type``.

        Raises:
            WrongType: the key has another type.
            NoSuchKey, InvalidKey: as :meth:`get_entry`.
        """
        value, found_type = self.get(key)
        if found_type is not value_type:
            raise WrongType(f"key {key!r} is {found_type.short_name}, "
                            f"not {value_type.short_name}")
        return value

    def iter(self, prefix: str = "") -> Iterator[tuple[str, Value, ValueType]]:
        """(key, value, type) for every key starting with ``prefix``, sorted.

        Fetched in pages of :data:`ITERATE_PAGE`; a key added or removed
        during the iteration may or may not be seen, as with corosync.

        Raises:
            InvalidKey: the prefix is not valid.
        """
        check_prefix(prefix)
        after: str | None = None
        while True:
            reply = self._call(codec.Iterate(prefix=prefix, after=after, max_count=ITERATE_PAGE))
            items, more = codec.decode_iterate_response(reply)
            for key, entry in items:
                yield key, entry.value, entry.value_type
            if not more or not items:
                return
            after = items[-1][0]

    # -- changing ----------------------------------------------------------------

    def set(self, key: str, value: Value, value_type: ValueType | str, *,
            force_type: bool = False) -> None:
        """Store ``value`` of ``value_type`` under ``key``.

        Args:
            key: the key (created if missing).
            value: a Python value fitting the type.
            value_type: a :class:`ValueType` or its name (``"u32"``).
            force_type: allow changing an existing key's type.

        Raises:
            InvalidKey, InvalidValue, TooLong: checked here before sending.
            ReadOnly: read-only key on an unprivileged connection.
            WrongType: the key has another type and ``force_type`` is False.
        """
        check_key(key)
        if not isinstance(value_type, ValueType):
            value_type = ValueType.from_name(str(value_type))
        value = check_value(value_type, value)
        reply = self._call_raw(codec.Function.SET,
                               codec.encode_set(key, value_type, value, force_type))
        if reply != codec.RESPONSE_OK:
            codec.decode_empty_response(reply)

    def set_many(self, items: "list[tuple[str, Value, ValueType | str]]", *,
                 force_type: bool = False) -> list[CmapError | None]:
        """Set many keys in one round trip (in order; each succeeds or fails on its own).

        Args:
            items: (key, value, type) triples, at most ``codec.MAX_SET_MANY_COUNT``
                per round trip (longer lists are sent in chunks).
            force_type: allow changing existing keys' types.

        Returns:
            One entry per item: None if it was set, else the error it got.

        Raises:
            InvalidKey, InvalidValue, TooLong: an item is invalid (checked before
                anything is sent, so then nothing is set).
        """
        keys, encoded = [], []
        heads = self._set_heads
        for key, value, value_type in items:
            fast = heads.get(key) if key.__class__ is str else None
            if (fast is not None and fast[0] is value_type and not force_type
                    and value.__class__ is int and fast[3] <= value <= fast[4]):
                encoded.append(fast[1] + fast[2].pack(value))   # as in set_nowait
            else:
                encoded.append(self._encode_item(key, value, value_type, force_type))
            keys.append(key)
        statuses: list[int] = []
        for chunk in _chunks(encoded):
            reply = self._call_raw(codec.Function.SET_MANY, codec.encode_set_many(chunk))
            chunk_statuses = codec.decode_statuses_response(reply)
            if len(chunk_statuses) != len(chunk):
                raise DecodeError(f"{len(chunk_statuses)} statuses for {len(chunk)} sets")
            statuses.extend(chunk_statuses)
        return [None if status == 0 else ERROR_BY_STATUS[status](f"set of {key!r} refused")
                for key, status in zip(keys, statuses)]

    def set_nowait(self, key: str, value: Value, value_type: ValueType | str, *,
                   force_type: bool = False) -> None:
        """Queue a set without waiting for its answer (pipelining).

        Sets of one connection are applied in the order sent. The set is
        buffered and sent with others (see the module docstring); a failure
        (a read-only key, a type change) is kept by the daemon and raised by
        the next :meth:`sync`. The key and value are checked here first, as
        for :meth:`set`.

        Raises:
            InvalidKey, InvalidValue, TooLong: checked here before buffering.
            NotConnected, ConnectionLost: the buffer was due and could not be sent.
        """
        if self._ipc is None:
            raise NotConnected("the cmap client is closed")
        fast = self._set_heads.get(key) if key.__class__ is str else None
        if (fast is not None and fast[0] is value_type and not force_type
                and value.__class__ is int and fast[3] <= value <= fast[4]):
            # The same key with the same integer type as last time: its item
            # is a cached head and the packed number.
            item = fast[1] + fast[2].pack(value)
        else:
            item = self._encode_item(key, value, value_type, force_type)
        buffer = self._nowait_buffer
        buffer += item
        self._nowait_count += 1
        self._unconfirmed = True
        if self._nowait_count >= NOWAIT_FLUSH_COUNT or len(buffer) >= codec.BATCH_BYTES_BUDGET:
            self.flush()

    def _encode_item(self, key: str, value: Value, value_type: ValueType | str,
                       force_type: bool) -> bytes:
        """Check and encode one set (the general path of :meth:`set_nowait` and
        :meth:`set_many`); remembers an integer key's head for their fast path."""
        info = self._key_info(key)
        if value_type.__class__ is not ValueType:
            value_type = ValueType.from_name(str(value_type))
        value = check_value(value_type, value)  # type: ignore[arg-type]
        bounds = INTEGER_BOUNDS.get(value_type)  # type: ignore[call-overload]
        if bounds is None:
            return codec.encode_set_item(key, value_type, value, force_type)  # type: ignore[arg-type]
        head = b"".join((b"\x01" if force_type else b"\x00", info.wire,
                         _NUMERIC_HEADS[value_type]))  # type: ignore[index]
        layout = NUMERIC_STRUCTS[value_type]  # type: ignore[index]
        if not force_type:
            if len(self._set_heads) >= GET_CACHE_SIZE:
                self._set_heads.clear()
            self._set_heads[key] = (value_type, head, layout, bounds[0], bounds[1])
        return head + layout.pack(value)

    def sync(self) -> None:
        """Wait until every earlier :meth:`set_nowait` was applied.

        Raises:
            CmapError: (the first failure's class) if any of them failed; the
                message says how many.
        """
        failed, first = codec.decode_sync_response(self._call(codec.Sync()))
        if first is not None:
            raise type(first)(f"{failed} pipelined set(s) failed; the first: {first}")

    def delete(self, key: str) -> None:
        """Remove ``key``. Raises NoSuchKey, ReadOnly, InvalidKey."""
        check_key(key)
        codec.decode_empty_response(self._call(codec.Delete(key=key)))

    def adjust(self, key: str, step: int) -> Value:
        """Add ``step`` to an integer key (wrapping like corosync); returns the new value.

        Raises:
            NoSuchKey, ReadOnly, InvalidKey: as for set.
            WrongType: the key is not of an integer type.
        """
        check_key(key)
        return codec.decode_value_response(self._call(codec.Adjust(key=key, step=step))).value

    def inc(self, key: str) -> Value:
        """Increment an integer key by one; returns the new value."""
        return self.adjust(key, 1)

    def dec(self, key: str) -> Value:
        """Decrement an integer key by one; returns the new value."""
        return self.adjust(key, -1)

    # -- tracking ----------------------------------------------------------------

    def track_add(self, key_or_prefix: str, flags: int, callback: Callback) -> int:
        """Call ``callback(notification)`` on changes of a key or of keys under a prefix.

        Args:
            key_or_prefix: an exact key, or a prefix when ``flags`` has PREFIX.
            flags: ADD / DELETE / MODIFY (at least one), optionally PREFIX.
            callback: run by :meth:`dispatch` for each notification.

        Returns:
            The tracker handle (for :meth:`track_delete`).

        Raises:
            InvalidKey: bad key or prefix.
            InvalidRequest: bad flags.
            LimitReached: this connection already holds the most trackers allowed.
        """
        if int(flags) & TrackFlags.PREFIX:
            check_prefix(key_or_prefix)
        else:
            check_key(key_or_prefix)
        reply = self._call(codec.TrackAdd(key=key_or_prefix, flags=int(flags)))
        handle = codec.decode_u64_response(reply)
        self._callbacks[handle] = callback
        return handle

    def track_delete(self, handle: int) -> None:
        """Stop a tracker. Raises NoSuchKey for an unknown handle."""
        codec.decode_empty_response(self._call(codec.TrackDelete(tracker_id=handle)))
        self._callbacks.pop(handle, None)

    def fileno(self) -> int:
        """A descriptor that polls readable when notifications are waiting."""
        if self._ipc is None:
            raise NotConnected("the cmap client is closed")
        return self._ipc.fileno()  # type: ignore[attr-defined]

    def dispatch(self, max_count: int | None = None, timeout: float = 0.0) -> int:
        """Run the callbacks of waiting notifications.

        Args:
            max_count: at most this many (None: all that are waiting).
            timeout: seconds to wait for the first one (0: do not wait).

        Returns:
            How many notifications were handled.

        Raises:
            ConnectionLost: the daemon went away or dropped this connection.
            DecodeError: the daemon sent a malformed event (a bug; not expected).
        """
        if self._ipc is None:
            raise NotConnected("the cmap client is closed")
        if self._nowait_count:
            self.flush()
        try:
            return self._ipc.dispatch(self._on_event, max_count=max_count,  # type: ignore[attr-defined]
                                      timeout=timeout)
        except ipc_errors.NotConnected as error:
            raise NotConnected(str(error)) from error
        except ipc_errors.IpcError as error:
            raise ConnectionLost(f"objdb connection lost: {error}") from error

    def _on_event(self, function: int, payload: bytes | memoryview) -> None:
        if function != codec.Function.NOTIFY:
            raise DecodeError(f"unexpected cmap event function {function}")
        notification = codec.decode_notify(payload)
        callback = self._callbacks.get(notification.tracker_id)
        if callback is None:
            self.unknown_events += 1
            return
        callback(notification)
