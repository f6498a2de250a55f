"""The cmap service: the store behind coroipc.

One :class:`CmapService` serves every connection of the objdb process. It
decodes a request (``objdb.codec``), applies it to the
:class:`~objdb.store.Store`, answers, and sends the notifications a change
caused to the connections that track the key, as coroipc events.

Privilege. A connection is unprivileged until it sends HELLO with the
``internal`` option *and* its peer uid (SO_PEERCRED, from coroipc) is the
daemon's own effective uid or root. Privileged connections may change
read-only keys; that is how totemd, the quorum service and the supervisor
publish ``runtime.*`` keys. Anyone else asking for ``internal`` gets a
:class:`~objdb.errors.ReadOnly` error from HELLO.

Bounds. Each connection may hold at most ``max_trackers`` trackers.
Notifications go out through coroipc's bounded event ring: when a tracker's
ring is full (it stopped reading), ``send_event`` raises WouldBlock and the
service drops that connection (its trackers are removed, it is counted in
``dropped_slow``); other connections are unaffected. A request that does
not decode is answered with InvalidRequest and counted; after
``max_bad_requests`` of them the connection is dropped (``dropped_garbage``).

Mirror. Given a :class:`~objdb.shm_table.ShmTableWriter`, every change
(set, set_many, nowait sets, delete, adjust, the daemon's own publishing) is
written to the shared-memory table right after the store accepted it and
*before* the reply and the notifications go out. So a client that got its
reply (read-your-writes), or a tracker that got a notification, and then
reads the table sees the new value. If the table cannot grow any more it
closes itself (clients fall back to round trips) and the service goes on
without it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

from coroipc import errors as ipc_errors
from objdb import codec
from objdb.clearing import CLEAR_KEYS, Baselines, TriggerWatch, expand_targets
from objdb.errors import CmapError, DecodeError, InvalidRequest, LimitReached, ReadOnly
from objdb.keys import check_key
from objdb.shm_table import ShmTableWriter, TableLocator, TableUnavailable
from objdb.store import Notification, SetOutcome, Store
from objdb.types import MAX_VALUE_BYTES, Value, ValueType

LOG = logging.getLogger("objdb.service")

SERVICE_NAME = "cmap"
#: Where the daemon publishes its own counters (read-only for clients).
STATS_PREFIX = "stats.objdb."
# Of the stats.objdb.* values, the current levels (not counters: never cleared).
_LEVELS = frozenset({"connections", "keys", "trackers"})
DEFAULT_MAX_TRACKERS = 1024
DEFAULT_MAX_BAD_REQUESTS = 8
# Plain ints: comparing with IntEnum members costs a lookup and a call per request.
_GET = int(codec.Function.GET)
_SET = int(codec.Function.SET)
_SET_NOWAIT = int(codec.Function.SET_NOWAIT)
_SET_NOWAIT_MANY = int(codec.Function.SET_NOWAIT_MANY)
_SET_MANY = int(codec.Function.SET_MANY)
#: GET replies cached by the fast path (cleared when full).
GET_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStats:
    """Counters of the cmap service since start."""

    connections: int
    requests: int
    refused: int
    bad_requests: int
    events_sent: int
    dropped_slow: int
    dropped_garbage: int


class _ConnectionState:
    """What the service knows about one connection (also the store's tracker owner)."""

    __slots__ = ("connection", "privileged", "bad_requests", "dropped", "nowait_failed",
                 "nowait_first_error")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.privileged = False
        self.bad_requests = 0
        self.dropped = False
        self.nowait_failed = 0     # SET_NOWAIT failures since the last SYNC
        self.nowait_first_error: CmapError | None = None


class CmapService:
    """coroipc service ``cmap`` over a :class:`Store`.

    Args:
        store: the store it serves.
        max_trackers: most trackers one connection may hold.
        max_bad_requests: malformed requests tolerated per connection before it is dropped.
        daemon_uid: the uid whose connections may become privileged (default: ours).
        mirror: the shared-memory table to keep current (None: no mirror).
    """

    name = SERVICE_NAME

    def __init__(self, store: Store, *, max_trackers: int = DEFAULT_MAX_TRACKERS,
                 max_bad_requests: int = DEFAULT_MAX_BAD_REQUESTS,
                 daemon_uid: int | None = None, mirror: ShmTableWriter | None = None) -> None:
        self.store = store
        self._mirror = mirror
        if mirror is not None:
            for key, entry in store.items():
                self._mirror_key(key, entry)
        self._max_trackers = max_trackers
        self._max_bad_requests = max_bad_requests
        self._daemon_uid = os.geteuid() if daemon_uid is None else daemon_uid
        self._states: dict[int, _ConnectionState] = {}
        self._get_cache: dict[bytes, tuple[str, Any, bytes]] = {}
        self._counts = {"requests": 0, "refused": 0, "bad_requests": 0, "events_sent": 0,
                        "dropped_slow": 0, "dropped_garbage": 0}
        # coro cmap -C ipc|all (objdb.clearing): what stats_items publishes.
        self._triggers = TriggerWatch()
        self._baselines = Baselines()
        self._handlers: dict[type, Callable[[_ConnectionState, Any], bytes | None]] = {
            codec.Get: self._get, codec.Set: self._set, codec.Delete: self._delete,
            codec.Adjust: self._adjust, codec.Iterate: self._iterate,
            codec.TrackAdd: self._track_add, codec.TrackDelete: self._track_delete,
            codec.Hello: self._hello, codec.SetMany: self._set_many,
            codec.SetNowait: self._set_nowait, codec.Sync: self._sync,
            codec.TableInfo: self._table_info, codec.SetNowaitMany: self._set_nowait_many,
            codec.GetMany: self._get_many,
        }

    # -- coroipc Service interface ---------------------------------------------

    def on_connect(self, connection: Any) -> None:
        self._states[id(connection)] = _ConnectionState(connection)

    def on_disconnect(self, connection: Any) -> None:
        state = self._states.pop(id(connection), None)
        if state is not None:
            state.dropped = True
            self.store.drop_owner(state)

    def on_request(self, connection: Any, function: int, payload: Any) -> bytes | None:
        """Answer one request. Never raises for anything the client sent."""
        state = self._states.get(id(connection))
        if state is None:  # a server that did not call on_connect: adopt it
            state = _ConnectionState(connection)
            self._states[id(connection)] = state
        self._counts["requests"] += 1
        if function == _GET:
            reply = self._fast_get(payload)
            if reply is not None:
                return reply
        try:
            if function == _SET_NOWAIT_MANY:
                # The pipelining path: no request object, no reply.
                return self._apply_nowait_many(state, codec.decode_set_items(payload))
            if function == _SET_MANY:
                return self._apply_set_many(state, codec.decode_set_items(payload))
            if function == _SET or function == _SET_NOWAIT:
                # No request object for the second commonest requests.
                item = codec.decode_set_item(payload)
                if function == _SET:
                    return self._apply_set(state, item)
                return self._apply_nowait(state, item)
            request = codec.decode_request(function, payload)
        except DecodeError as error:
            return self._bad_request(state, error)
        except CmapError as error:
            self._counts["refused"] += 1
            return codec.encode_error(error)
        try:
            reply = self._handlers[type(request)](state, request)
        except CmapError as error:
            self._counts["refused"] += 1
            return codec.encode_error(error)
        return reply

    def _fast_get(self, payload: Any) -> bytes | None:
        """The reply to a well-formed GET of an existing key, else None (general path).

        The commonest request, so: the reply is cached per request body and
        reused while the key still holds the same Entry object (entries are
        immutable and every change stores a new one, so identity means "unchanged").
        """
        body = bytes(payload[4:])
        cached = self._get_cache.get(body)
        if cached is not None and payload[:4] == codec.REQUEST_HEADER:
            key, entry, reply = cached
            if self.store.peek(key) is entry:
                return reply
        key = codec.fast_get_key(payload)
        current = self.store.peek(key) if key is not None else None
        if current is None:
            return None
        reply = codec.encode_value_response(current)
        if len(self._get_cache) >= GET_CACHE_SIZE:
            self._get_cache.clear()
        self._get_cache[body] = (key, current, reply)
        return reply

    # -- handlers ----------------------------------------------------------------

    def _mirror_key(self, key: str, entry: Any = None) -> None:
        """Write ``key``'s current entry (or its absence) to the shared-memory table."""
        mirror = self._mirror
        if mirror is None:
            return
        if entry is None:
            entry = self.store.peek(key)
        try:
            if entry is None:
                mirror.remove(key)
            else:
                mirror.put(key, entry)
        except TableUnavailable as error:
            self._give_up_mirror(error)

    def _give_up_mirror(self, error: TableUnavailable) -> None:
        # The writer closed the table already: clients see it closed and ask objdb.
        LOG.warning("giving up the shared-memory table (clients use round trips): %s", error)
        self._mirror = None

    @property
    def table_locator(self) -> TableLocator | None:
        """Where clients find the shared-memory table (None if there is none)."""
        return self._mirror.locator if self._mirror is not None else None

    def _table_info(self, state: _ConnectionState, request: codec.TableInfo) -> bytes:
        locator = self.table_locator
        if locator is None:
            return codec.encode_table_info_response(None)
        return codec.encode_table_info_response(locator.fd, locator.token)

    def _hello(self, state: _ConnectionState, request: codec.Hello) -> bytes:
        if request.options & ~codec.HELLO_INTERNAL:
            raise InvalidRequest(f"unknown hello options {request.options:#x}")
        if request.options & codec.HELLO_INTERNAL:
            uid = getattr(state.connection, "uid", None)
            if uid not in (0, self._daemon_uid):
                raise ReadOnly(f"uid {uid} may not open an internal (privileged) cmap connection")
            state.privileged = True
        return codec.encode_hello_response(state.privileged, MAX_VALUE_BYTES)

    def _get(self, state: _ConnectionState, request: codec.Get) -> bytes:
        return codec.encode_value_response(self.store.get(request.key))

    def _get_many(self, state: _ConnectionState, request: codec.GetMany) -> bytes:
        peek = self.store.peek
        entries = []
        for key in request.keys:
            entry = peek(key)
            if entry is None:
                check_key(key)   # a name no key can have is InvalidKey, as for GET
            entries.append(entry)
        return codec.encode_get_many_response(entries)

    def _set(self, state: _ConnectionState, request: codec.Set) -> bytes:
        return self._apply_set(state, request)

    def _apply_set(self, state: _ConnectionState, item: codec.Set | codec.SetItem) -> bytes:
        outcome = self.store.set_many(
            ((item.key, item.value_type, item.value, item.force_type),),
            privileged=state.privileged)
        if outcome.errors:
            raise outcome.errors[0][1]
        self._mirror_and_deliver(outcome)
        return codec.RESPONSE_OK

    def _set_nowait(self, state: _ConnectionState, request: codec.SetNowait) -> bytes | None:
        return self._apply_nowait(state, request.set)

    def _apply_nowait(self, state: _ConnectionState, item: codec.SetItem) -> None:
        try:
            self._apply_set(state, item)
        except CmapError as error:
            self._counts["refused"] += 1
            state.nowait_failed += 1
            if state.nowait_first_error is None:
                state.nowait_first_error = error
        return None   # posted: the client waits for no answer

    def _set_nowait_many(self, state: _ConnectionState, request: codec.SetNowaitMany) -> None:
        return self._apply_nowait_many(state, request.sets)

    def _apply_nowait_many(self, state: _ConnectionState, items: Any) -> None:
        """Apply (key, type, value, force_type) sets in order, each on its own;
        failures are kept for the next SYNC."""
        outcome = self.store.set_many(items, privileged=state.privileged)
        if outcome.errors:
            self._counts["refused"] += len(outcome.errors)
            state.nowait_failed += len(outcome.errors)
            if state.nowait_first_error is None:
                state.nowait_first_error = outcome.errors[0][1]
        self._mirror_and_deliver(outcome)
        return None   # posted: failures are reported by the next SYNC

    def _mirror_and_deliver(self, outcome: SetOutcome) -> None:
        """Write a batch's changes to the table, then send its notifications:
        a tracker only hears of a change the table already holds."""
        mirror = self._mirror
        if mirror is not None and outcome.changed:
            try:
                mirror.put_many(outcome.changed)
            except TableUnavailable as error:
                self._give_up_mirror(error)
        for notifications in outcome.notifications:
            self._deliver(notifications)

    def _sync(self, state: _ConnectionState, request: codec.Sync) -> bytes:
        # Requests of one connection are handled in order, so answering now
        # means every earlier SET_NOWAIT has been applied.
        reply = codec.encode_sync_response(state.nowait_failed, state.nowait_first_error)
        state.nowait_failed, state.nowait_first_error = 0, None
        return reply

    def _set_many(self, state: _ConnectionState, request: codec.SetMany) -> bytes:
        return self._apply_set_many(state, request.sets)

    def _apply_set_many(self, state: _ConnectionState, items: Any) -> bytes:
        items = list(items)
        outcome = self.store.set_many(items, privileged=state.privileged)
        statuses = [0] * len(items)
        for index, error in outcome.errors:
            statuses[index] = error.status
        self._counts["refused"] += len(outcome.errors)
        self._mirror_and_deliver(outcome)
        return codec.encode_statuses_response(statuses)

    def _delete(self, state: _ConnectionState, request: codec.Delete) -> bytes:
        notifications = self.store.delete(request.key, privileged=state.privileged)
        self._mirror_key(request.key)
        self._deliver(notifications)
        return codec.RESPONSE_OK

    def _adjust(self, state: _ConnectionState, request: codec.Adjust) -> bytes:
        entry, notifications = self.store.adjust(request.key, request.step,
                                                 privileged=state.privileged)
        self._mirror_key(request.key, entry)
        self._deliver(notifications)
        return codec.encode_value_response(entry)

    def _iterate(self, state: _ConnectionState, request: codec.Iterate) -> bytes:
        items = self.store.items(request.prefix, after=request.after, limit=request.max_count + 1)
        more = len(items) > request.max_count
        return codec.encode_iterate_response(items[:request.max_count], more)

    def _track_add(self, state: _ConnectionState, request: codec.TrackAdd) -> bytes:
        if len(self.store.trackers(state)) >= self._max_trackers:
            raise LimitReached(f"a connection may hold at most {self._max_trackers} trackers")
        tracker = self.store.track_add(state, request.key, request.flags)
        return codec.encode_u64_response(tracker.tracker_id)

    def _track_delete(self, state: _ConnectionState, request: codec.TrackDelete) -> bytes:
        self.store.track_delete(request.tracker_id, owner=state)
        return codec.RESPONSE_OK

    # -- delivery and dropping ---------------------------------------------------

    def _deliver(self, notifications: list[Notification]) -> None:
        # All notifications in the list come from one change: encode it once.
        change = b""
        for note in notifications:
            state = note.owner
            assert isinstance(state, _ConnectionState)
            if state.dropped:
                continue
            if not change:
                change = codec.encode_notify_change(note.event, note.key, note.new, note.old)
            payload = codec.notify_prefix(note.tracker_id) + change
            try:
                state.connection.send_event(codec.Function.NOTIFY, payload)
            except ipc_errors.WouldBlock:
                LOG.warning("dropping cmap connection (pid %s): it does not read its events",
                            getattr(state.connection, "pid", "?"))
                self._counts["dropped_slow"] += 1
                self._drop(state)
            except ipc_errors.MessageTooLarge:
                # The client asked for rings too small for this key's values.
                LOG.warning("dropping cmap connection (pid %s): a %d-byte event exceeds its "
                            "maximum message size", getattr(state.connection, "pid", "?"),
                            len(payload))
                self._drop(state)
            except ipc_errors.IpcError:
                self._drop(state)   # already gone
            else:
                self._counts["events_sent"] += 1

    def _bad_request(self, state: _ConnectionState, error: DecodeError) -> bytes | None:
        self._counts["bad_requests"] += 1
        state.bad_requests += 1
        if state.bad_requests > self._max_bad_requests:
            LOG.warning("dropping cmap connection (pid %s) after %d malformed requests",
                        getattr(state.connection, "pid", "?"), state.bad_requests)
            self._counts["dropped_garbage"] += 1
            self._drop(state)
            return None
        return codec.encode_error(InvalidRequest(f"malformed request: {error}"))

    def _drop(self, state: _ConnectionState) -> None:
        if state.dropped:
            return
        state.dropped = True
        self.store.drop_owner(state)
        self._states.pop(id(state.connection), None)
        close = getattr(state.connection, "close", None)
        if close is not None:
            try:
                close()
            except ipc_errors.IpcError:
                pass

    def stats(self) -> ServiceStats:
        """The service's counters."""
        return ServiceStats(connections=len(self._states), **self._counts)

    def publish(self, items: list[tuple[str, ValueType, Value]]) -> None:
        """Set keys as the daemon itself (privileged), notifying their trackers.

        Raises:
            CmapError: an item is not valid (a bug in the caller).
        """
        outcome = self.store.set_many([(key, value_type, value, True)
                                       for key, value_type, value in items], privileged=True)
        self._mirror_and_deliver(outcome)
        if outcome.errors:
            raise outcome.errors[0][1]

    def stats_items(self, server_stats: Any = None) -> list[tuple[str, ValueType, Value]]:
        """The ``stats.objdb.*`` keys: the service's, the store's and (if given) coroipc's counters."""
        service, store = self.stats(), self.store.stats()
        numbers = {
            "connections": service.connections, "requests": service.requests,
            "refused": service.refused, "bad_requests": service.bad_requests,
            "events_sent": service.events_sent, "dropped_slow": service.dropped_slow,
            "dropped_garbage": service.dropped_garbage, "keys": store.keys,
            "trackers": store.trackers, "notifications": store.notifications,
        }
        if server_stats is not None:
            numbers["ipc.connections_total"] = server_stats.connections_total
            numbers["ipc.handshakes_failed"] = server_stats.handshakes_failed
            numbers["ipc.refused"] = server_stats.refused
            numbers["ipc.events_refused"] = server_stats.events_refused
        counters = {name: int(value) for name, value in numbers.items() if name not in _LEVELS}
        if "ipc" in expand_targets(self._triggers.changed(self._clear_counts())):
            self._baselines.clear(counters)
        apply = self._baselines.apply
        return [(f"{STATS_PREFIX}{name}", ValueType.UINT64,
                 apply(name, counters[name]) if name in counters else int(value))
                for name, value in sorted(numbers.items())]

    def _clear_counts(self) -> dict[str, int]:
        """target -> how many times ``stats.clear.<target>`` was written."""
        counts = {}
        for target, key in CLEAR_KEYS.items():
            entry = self.store.peek(key)
            counts[target] = entry.value if entry is not None and isinstance(entry.value, int) else 0
        return counts
