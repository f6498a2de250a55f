"""UDP transports for the Totem daemon: ``udpu`` (unicast to every node) and
``udp`` (IP multicast).

The protocol core never touches a socket; the daemon hands it the bytes this
module receives and executes its send actions through it. The transport knows
nothing of Totem beyond one fact: it must be able to unicast the token to a
node id and multicast a frame to every node.

- ``udpu`` sends a multicast frame once per configured peer (corosync's udpu
  does the same), and accepts packets only from nodelist addresses: a packet
  from anywhere else is counted and dropped before it reaches the core.
  Sending goes through one connected send-only socket per peer (bound to the
  local address, ephemeral port, never read): ``send`` on a connected socket
  skips the address parsing and the route lookup of ``sendto``, about 0.7 µs
  of the ~2.7 µs a send costs. The receiver filters by source address only,
  so the source port does not matter. If such a socket cannot be made, that
  peer is sent to with ``sendto`` on the bound socket, as before.
- ``udp`` joins a multicast group; the group delivers to every node, the sender
  included (IP_MULTICAST_LOOP), so discovery needs no nodelist. Unicast
  addresses of peers are learned from the source of their packets. It uses
  two sockets, as corosync's udp transport does: one bound to the group
  address (it receives only the group's frames, so several nodes on one
  host can share the port) and one bound to the node's own address and the
  same port, which receives the unicast token and sends everything. Sending
  from the bound unicast socket makes every packet's source the node's own
  address; from the group socket the kernel would pick the route's source
  (127.0.0.1 for every node on one ``lo``), so peers would unicast to the
  wrong node and node 1 would drop everyone's packets as its own. The two
  sockets sit behind one epoll descriptor, so the daemon still waits on one
  file descriptor.

knet mode (``transport: knet``, ``link_mtu`` set; udpu underneath): frames
longer than a datagram may be on the link (link MTU less the IP/UDP headers
and the seal) leave as their pieces (``totemd.linkfrag.Splitter``), every
piece sealed on its own; the readers join them again (``Reassembler``)
before any caller sees a frame. Tokens and short frames go whole.

Self-delivery: the core delivers its own multicasts without a round trip
through the network, so the transport never needs to loop frames back; for
``udp`` the looped-back copy is recognised by source address and dropped.

Socket buffers are sized for ``window_size x netmtu`` frames with headroom
(corosync sizes them the same way), past net.core's maxima where the daemon
may (SO_RCVBUFFORCE, as knet does), else clamped by what the kernel allows. The
sockets are made in ``totemd.udp_sockets`` (setup only).

Batched I/O (Linux UDP GSO and GRO, planned and cut in ``totemd.gso``):

- Sending: ``multicast_many`` hands a list of frames to each peer (udpu) or
  to the group (udp) in as few ``sendmsg`` calls as GSO allows (one per run
  of frames of one length, see ``gso.plan_batches``); a frame alone goes by
  a plain send. ``send_visit`` does the same and puts the token in the
  successor's last GSO send. Frames to one peer leave in the given order,
  through the same socket the token is unicast on, so a token sent after a
  batch arrives after it.
- Fallback: GSO is probed once at open; a GSO send refused as unsupported
  (EINVAL, EIO, ENOPROTOOPT, EOPNOTSUPP, EMSGSIZE: old kernel, no checksum
  offload on the route's device, a frame above the device MTU, ...) turns
  GSO off for good: logged once, counted in ``send_gso_fallbacks``, and the
  refused frames are sent again one by one, so nothing is lost.
- Receiving: the receiving sockets ask for ``UDP_GRO``; a GSO batch then
  arrives as one read, cut back into its frames (``gso.split_coalesced``),
  so callers still get one entry per frame: ``receive_batch`` gives
  ``(bytes, source)`` pairs, ``receive_frames`` the frames alone (cheaper:
  no pair per frame; the sources were already checked here). A read that
  cannot be cut safely is counted in ``dropped_bad_coalesced`` and dropped.
  After a GRO read, whether another is waiting is asked with ``poll`` (about
  0.5 us) instead of a read that fails with EAGAIN (about 2-3 us: a raised
  ``BlockingIOError`` and a 64 KiB buffer), since a visit usually arrives
  as one read. A socket without GRO gets the datagrams one by one, read
  until EAGAIN as before.
"""

from __future__ import annotations

import errno
import functools
import logging
import select
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from totemd.gso import (
    GRO_MAX_SEGMENTS,
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    GSO_UNSUPPORTED_ERRNOS,
    SOL_UDP,
    UDP_GRO,
    UDP_SEGMENT,
    plan_batches,
    plan_runs,
    segment_ancillary,
    split_coalesced,
    token_joins,
)
from totemd.gso import enable_gro as _enable_gro
from totemd.gso import gso_supported as _gso_supported
from totemd.linkfrag import PIECES_MAX, FragmentStats, Reassembler, Splitter
from totemd.udp_receive import RECEIVE_BATCH_MAX, ReceiveMixin
from totemd.udp_sockets import (
    BUFFER_WINDOWS,
    TransportError,
    bind,
    connected_socket,
    family_of,
    join_group,
    set_buffers,
    set_multicast_sender,
    socket_buffer_bytes,
)

__all__ = ["BUFFER_WINDOWS", "GRO_MAX_SEGMENTS", "GSO_MAX_BYTES", "GSO_MAX_SEGMENTS", "RECEIVE_BATCH_MAX",
           "SOL_UDP", "TransportError", "TransportStats", "UDP_GRO", "UDP_SEGMENT", "UdpTransport",
           "plan_batches", "socket_buffer_bytes", "split_coalesced"]

log = logging.getLogger("totemd.transport")

# knet mode's datagram bound: the link MTU less these, at most UDP_PAYLOAD_MAX.
IP_UDP_HEADER_BYTES = {socket.AF_INET: 20 + 8, socket.AF_INET6: 40 + 8}
UDP_PAYLOAD_MAX = 65507

_LOST_PACKET_ERRNOS = frozenset((errno.EAGAIN, errno.ENOBUFS, errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                 errno.ENETUNREACH, errno.EPERM))

# A destination of the batched fan-out: (node id, address for messages,
# send, its extra arguments, sendmsg, its extra arguments).
_Destination = tuple[int, str, Any, tuple, Any, tuple]
# A receiving socket's drain: (budget, frames, sources or None) -> None,
# ``_read_coalesced`` or ``_read_plain`` bound to the socket.
_Reader = Callable[[int, list, "list[str] | None"], None]


@dataclass(slots=True)
class TransportStats(FragmentStats):
    """Counters, readable by local programs through the daemon's statistics."""

    packets_sent: int = 0
    bytes_sent: int = 0
    packets_received: int = 0
    bytes_received: int = 0
    dropped_unknown_source: int = 0
    dropped_own_loopback: int = 0
    send_errors: int = 0
    last_send_error: str = ""
    receive_buffer_bytes: int = 0
    send_buffer_bytes: int = 0
    # Batched I/O: syscalls against frames show the gain (packets_* count
    # frames; a GSO send or a coalesced read carries several).
    send_calls: int = 0
    send_gso_calls: int = 0
    send_gso_fallbacks: int = 0
    receive_reads: int = 0
    receive_coalesced_reads: int = 0
    dropped_bad_coalesced: int = 0
    gso_enabled: int = 0
    gro_enabled: int = 0
    # totem.crypto_*: datagrams that did not open (another key, other
    # settings, not sealed, altered), counted and dropped before the core.
    crypto_enabled: int = 0
    dropped_crypto: int = 0
    # of dropped_crypto: unknown sessions over the key-derivation budget
    # (a flood of forged datagrams; totemd.crypto.DeriveBudget)
    dropped_crypto_throttled: int = 0
    # knet mode: the link MTU frames are cut for (0: no cutting); the
    # cutting and joining counters are FragmentStats' (totemd.linkfrag).
    link_mtu: int = 0


@dataclass(slots=True)
class UdpTransport(ReceiveMixin):
    """One bound UDP socket plus the node id -> address map.

    Args:
        mode: "udpu" or "udp".
        bind_address: local address to bind (from the nodelist entry that
            matches a local address, or totem.interface.bindnetaddr).
        port: UDP port (corosync's mcastport, default 5405).
        peers: node id -> address for every node of the nodelist (udpu);
            may be empty for udp, where peers are learned.
        multicast_group: the group address (udp mode only).
        window_size, netmtu: for socket buffer sizing.
        multicast_ttl: hops for multicast frames (udp mode).
        gso: batch ``multicast_many`` with UDP GSO where the kernel can
            (False: one send per frame and peer, as ``multicast``).
        gro: ask the kernel for coalesced reads (UDP_GRO) where it can.
        crypto: a ``totemd.crypto.PacketCrypto``: every datagram sent is
            sealed with it and every one received opened (None: clear).
        link_mtu: knet mode (udpu only): frames whose datagram would not fit
            this MTU travel cut into pieces (``totemd.linkfrag``) and are
            joined again before anyone reads them (None: never cut).
        node_id: our node id, in the pieces' headers (knet mode).
    """

    mode: str
    bind_address: str
    port: int
    peers: dict[int, str] = field(default_factory=dict)
    multicast_group: str | None = None
    window_size: int = 50
    netmtu: int = 1500
    multicast_ttl: int = 1
    gso: bool = True
    gro: bool = True
    crypto: Any = None
    link_mtu: int | None = None
    node_id: int = 0
    stats: TransportStats = field(default_factory=TransportStats)
    # knet mode: cuts long frames (send) and joins their pieces (receive).
    _splitter: Splitter | None = None
    _reassembler: Reassembler | None = None
    _socket: socket.socket | None = None
    _peer_endpoints: dict[int, tuple[str, int]] = field(default_factory=dict)
    _known_sources: set[str] = field(default_factory=set)
    # udpu: node id -> connected send-only socket (absent: use sendto).
    _peer_sockets: dict[int, socket.socket] = field(default_factory=dict)
    # The multicast fan-out, rebuilt when a peer is learned: (node id,
    # bound send method, argument tuple) so the loop does no lookups.
    _fanout: list[tuple[int, object, tuple]] = field(default_factory=list)
    # udp: the socket bound to our own address (unicast in, everything out)
    # and the epoll descriptor over both sockets that fileno() returns.
    _unicast_socket: socket.socket | None = None
    _poller: "select.epoll | None" = None
    # multicast_many's and send_visit's fan-out: one _Destination per peer
    # (udpu) or the group (udp), and udpu's peers by node id.
    _batch_fanout: list[_Destination] = field(default_factory=list)
    _destinations: dict[int, _Destination] = field(default_factory=dict)
    # send_visit's order of the other peers for a successor: ring order after it.
    _after_successor: dict[int, list[_Destination]] = field(default_factory=dict)
    # Where unicast sends, by node id: (address, send, endpoint for
    # sendto or None for a connected socket's send).
    _routes: dict[int, tuple[str, Any, tuple[str, int] | None]] = field(default_factory=dict)
    _gso_active: bool = False
    # The receiving sockets in reading order (udp: the group's, then ours).
    _readers: list[_Reader] = field(default_factory=list)

    def open(self) -> "UdpTransport":
        """Create and bind the socket. Raises TransportError with the reason."""
        if self.mode not in ("udpu", "udp"):
            raise TransportError(f"transport {self.mode!r} is not one of udpu, udp")
        if self.mode == "udp" and not self.multicast_group:
            raise TransportError("transport udp needs a multicast group (totem.interface.mcastaddr)")
        family = family_of(self.bind_address)
        if self.link_mtu is not None:
            if self.mode != "udpu":
                raise TransportError("link fragmentation (knet mode) runs over udpu only")
            self._open_fragmentation(family)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._configure(sock, family)
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        if self.mode == "udp":
            try:
                self._open_unicast(family)
            except BaseException:
                self.close()
                raise
        self._gso_active = self.gso and _gso_supported(sock)
        self.stats.gso_enabled = int(self._gso_active)
        receivers = [receiver for receiver in (sock, self._unicast_socket) if receiver is not None]
        coalescing = [self.gro and _enable_gro(receiver) for receiver in receivers]
        self._readers = [self._reader(receiver, gro) for receiver, gro in zip(receivers, coalescing)]
        self.stats.gro_enabled = int(any(coalescing))
        self.stats.crypto_enabled = int(self.crypto is not None)
        for node_id, address in self.peers.items():
            self.learn_peer(node_id, address)
        self._rebuild_fanout()
        return self

    def _open_fragmentation(self, family: socket.AddressFamily) -> None:
        """knet mode: the datagram bound is the link MTU less the IP and UDP
        headers (and the seal), at most what one UDP datagram can carry."""
        assert self.link_mtu is not None
        if not self.node_id:
            raise TransportError("link fragmentation (knet mode) needs our node id for the pieces")
        header = IP_UDP_HEADER_BYTES[family]
        datagram = min(self.link_mtu - header, UDP_PAYLOAD_MAX)
        if self.crypto is not None:
            datagram -= self.crypto.overhead
        try:
            self._splitter = Splitter(self.node_id, datagram, self.stats)
        except ValueError as error:
            raise TransportError(f"link MTU {self.link_mtu} is too small: {error}") from None
        if -(-self.netmtu // self._splitter.piece_bytes) > PIECES_MAX:
            raise TransportError(f"link MTU {self.link_mtu} is too small: a frame of netmtu "
                                 f"{self.netmtu} would need more than {PIECES_MAX} pieces")
        self._reassembler = Reassembler(self.stats)
        self.stats.link_mtu = self.link_mtu

    def _reader(self, sock: socket.socket, gro: bool) -> _Reader:
        """How to drain sock: recvmsg, and a readiness poll between reads,
        with GRO on; else recvfrom until EAGAIN (each read one datagram: a
        poll per read would cost more than the one failed read)."""
        if not gro:
            return functools.partial(self._read_plain, sock.recvfrom)
        waiting = select.poll()
        waiting.register(sock.fileno(), select.POLLIN)
        return functools.partial(self._read_coalesced, sock.recvmsg, waiting.poll)

    def _configure(self, sock: socket.socket, family: socket.AddressFamily) -> None:
        set_buffers(sock, socket_buffer_bytes(self.window_size, self.netmtu))
        # Linux reports double the requested size (bookkeeping overhead).
        self.stats.receive_buffer_bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.stats.send_buffer_bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        if self.mode == "udp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind(sock, self.multicast_group if self.mode == "udp" else self.bind_address, self.port)
        if self.mode == "udp":
            assert self.multicast_group is not None  # checked in open()
            if self.port == 0:
                self.port = int(sock.getsockname()[1])  # the unicast socket takes the same port
            join_group(sock, family, self.multicast_group, self.bind_address, self.multicast_ttl)
        sock.setblocking(False)

    def _open_unicast(self, family: socket.AddressFamily) -> None:
        """udp: bind the unicast socket to (bind_address, port), make it the
        multicast sender, and put both sockets behind one epoll descriptor."""
        assert self._socket is not None
        sock = socket.socket(family, socket.SOCK_DGRAM)
        self._unicast_socket = sock
        set_buffers(sock, socket_buffer_bytes(self.window_size, self.netmtu))
        bind(sock, self.bind_address, self.port)
        set_multicast_sender(sock, self.bind_address, self.multicast_ttl)
        sock.setblocking(False)
        self._poller = select.epoll()
        self._poller.register(self._socket.fileno(), select.EPOLLIN)
        self._poller.register(sock.fileno(), select.EPOLLIN)

    # -- addresses ---------------------------------------------------------

    def learn_peer(self, node_id: int, address: str) -> None:
        """Record where node_id is reached (nodelist, or a udp packet's source)."""
        endpoint = (address, self.port)
        if self._peer_endpoints.get(node_id) == endpoint and node_id in self._peer_sockets:
            return
        self._peer_endpoints[node_id] = endpoint
        self._known_sources.add(address)
        old = self._peer_sockets.pop(node_id, None)
        if old is not None:
            old.close()
        if self.mode == "udpu" and self._socket is not None and address != self.bind_address:
            connected = connected_socket(self.bind_address, endpoint,
                                         socket_buffer_bytes(self.window_size, self.netmtu))
            if connected is not None:
                self._peer_sockets[node_id] = connected
        self._rebuild_fanout()

    def _rebuild_fanout(self) -> None:
        if self._socket is None:
            return  # open() learns every configured peer again
        fanout: list[tuple[int, object, tuple]] = []
        batch_fanout: list[_Destination] = []
        for node_id, endpoint in self._peer_endpoints.items():
            if endpoint[0] == self.bind_address:
                continue  # never to ourselves: the core self-delivers
            connected = self._peer_sockets.get(node_id)
            if connected is not None:
                fanout.append((node_id, connected.send, ()))
                batch_fanout.append((node_id, endpoint[0], connected.send, (), connected.sendmsg, ()))
            else:
                fanout.append((node_id, self._socket.sendto, (endpoint,)))
                batch_fanout.append((node_id, endpoint[0], self._socket.sendto, (endpoint,),
                                     self._socket.sendmsg, (0, endpoint)))
        self._fanout = fanout
        sender = self._unicast_socket or self._socket
        self._routes = {
            node_id: ((endpoint[0], self._peer_sockets[node_id].send, None) if node_id in self._peer_sockets
                      else (endpoint[0], sender.sendto, endpoint))
            for node_id, endpoint in self._peer_endpoints.items()}
        if self.mode == "udp":
            sender = self._unicast_socket or self._socket
            assert self.multicast_group is not None
            group = (self.multicast_group, self.port)
            batch_fanout = [(0, self.multicast_group, sender.sendto, (group,), sender.sendmsg,
                             (0, group))]
        self._batch_fanout = batch_fanout
        self._destinations = {entry[0]: entry for entry in batch_fanout} if self.mode == "udpu" else {}
        self._after_successor = {}

    def peer_ids(self) -> list[int]:
        return sorted(self._peer_endpoints)

    # -- sending -----------------------------------------------------------

    def fileno(self) -> int:
        """The descriptor to wait on for incoming packets (udp: an epoll
        descriptor over both sockets, readable when either is)."""
        if self._socket is None:
            raise TransportError("transport is not open")
        if self._poller is not None:
            return self._poller.fileno()
        return self._socket.fileno()

    def _send_failed(self, exc: OSError, where: str, frames: int = 1) -> None:
        """A full send buffer or an unreachable peer is a lost packet (frames
        lost packets for a GSO send), which Totem recovers from; it is
        counted, never raised into the loop."""
        if exc.errno not in _LOST_PACKET_ERRNOS:
            raise exc
        self.stats.send_errors += frames
        self.stats.last_send_error = f"{where}: {exc.strerror}"

    def unicast(self, node_id: int, data: bytes) -> bool:
        """Send to one node. Returns False if the node's address is unknown."""
        splitter = self._splitter
        if splitter is not None and len(data) > splitter.datagram_bytes:
            if node_id not in self._routes:
                return False
            pieces = splitter.expand((data,))
            if self.crypto is not None:
                pieces = self.crypto.seal_many(pieces)
            for piece in pieces:
                self._unicast(node_id, piece)
            return True
        if self.crypto is not None:
            data = self.crypto.seal(data)
        return self._unicast(node_id, data)

    def _unicast(self, node_id: int, data: bytes) -> bool:
        route = self._routes.get(node_id)
        if route is None:
            return False
        where, send, endpoint = route
        stats = self.stats
        stats.send_calls += 1
        try:
            if endpoint is None:
                send(data)  # a connected socket (a direct call: no argument tuple to build)
            else:
                send(data, endpoint)
        except OSError as exc:
            self._send_failed(exc, where)
            return True
        stats.packets_sent += 1
        stats.bytes_sent += len(data)
        return True

    def multicast(self, data: bytes, exclude: Iterable[int] = ()) -> None:
        """Send to every node (never back to ourselves; the core self-delivers).

        The same bytes go to every peer; the counters move once per call.
        """
        splitter = self._splitter
        if splitter is not None and len(data) > splitter.datagram_bytes:
            pieces = splitter.expand((data,))
            if self.crypto is not None:
                pieces = self.crypto.seal_many(pieces)
            for piece in pieces:
                self._multicast(piece, exclude)
            return
        if self.crypto is not None:
            data = self.crypto.seal(data)
        self._multicast(data, exclude)

    def _multicast(self, data: bytes, exclude: Iterable[int] = ()) -> None:
        if self.mode == "udp":
            self._send_to(self._batch_fanout[0], (data,), len(data), len(data))
            return
        skip = set(exclude) if exclude else None
        sent = calls = 0
        for node_id, send, extra in self._fanout:
            if skip is not None and node_id in skip:
                continue
            calls += 1
            try:
                send(data, *extra)
            except OSError as exc:
                self._send_failed(exc, self._peer_endpoints[node_id][0])
                continue
            sent += 1
        stats = self.stats
        stats.send_calls += calls
        if sent:
            stats.packets_sent += sent
            stats.bytes_sent += sent * len(data)

    def multicast_many(self, frames: Sequence[bytes]) -> None:
        """Send frames, in order, to every node (never back to ourselves), in
        as few system calls as GSO allows (see the module docstring).

        The same as ``multicast`` for each frame in turn, as far as any peer
        can tell: the same datagrams, in the same order per peer, through the
        socket the token is unicast on. Send errors are counted per frame.

        Args:
            frames: encoded Totem frames, each at most netmtu on the wire
                (knet mode: cut into pieces where longer than a datagram).
        """
        splitter = self._splitter
        if splitter is not None and splitter.needed(frames):
            frames = splitter.expand(frames)
        if self.crypto is not None:
            frames = self.crypto.seal_many(frames)
        self._multicast_many(frames)

    def _multicast_many(self, frames: Sequence[bytes]) -> None:
        if len(frames) < 2 or not self._gso_active:
            for data in frames:
                self._multicast(data)
            return
        self._send_runs(frames, plan_runs(frames), self._batch_fanout)

    def send_visit(self, frames: Sequence[bytes], dest: int, token: bytes) -> bool:
        """A token visit's frames to every node, then the token to ``dest``.

        The same datagrams in the same order per peer as ``multicast_many``
        then ``unicast``; with udpu and GSO the token rides in the last GSO
        send to ``dest`` (it is never longer than a frame): one system call
        and one wake-up fewer for the node that takes the token, which then
        reads the frames and the token together. The frames are planned
        once for every peer. ``dest`` is sent to first, then the others in
        ring order after it: the token's next holder is woken first and
        does not wait for a CPU behind the peers woken only to store frames
        (lan, one sender of 8 KiB, ten alternated clusters each: 69.7 ->
        72.5 MB/s); each later peer still gets the frames before the token
        can reach it through the ring.

        knet mode: frames longer than a datagram go as their pieces (each
        frame one run); a token never is.

        Returns:
            False if ``dest``'s address is unknown (the frames are sent anyway).
        """
        splitter = self._splitter
        if splitter is not None:
            if len(token) > splitter.datagram_bytes:
                self.multicast_many(frames)
                return self.unicast(dest, token)
            if splitter.needed(frames):
                frames = splitter.expand(frames)
        crypto = self.crypto
        if crypto is not None:
            frames = crypto.seal_many(frames)
            token = crypto.seal(token)
        successor = self._destinations.get(dest)
        if successor is None or not frames:
            if len(frames) == 1:
                self._multicast(frames[0])
            elif frames:
                self._multicast_many(frames)
            return self._unicast(dest, token)
        runs = plan_runs(frames)
        send_to = self._send_to
        for start, stop, size, run_bytes in runs[:-1]:
            send_to(successor, frames[start:stop], size, run_bytes)
        last = runs[-1]
        start, _stop, size, run_bytes = last
        batch = frames[start:] if start else frames
        token_bytes = len(token)
        if token_joins(frames, last, token_bytes):
            send_to(successor, [*batch, token], size, run_bytes + token_bytes)
        else:
            send_to(successor, batch, size, run_bytes)
            send_to(successor, (token,), token_bytes, token_bytes)
        others = self._after_successor.get(dest)
        if others is None:
            others = self._after_successor[dest] = self._ring_order_after(dest)
        self._send_runs(frames, runs, others)
        return True

    def _ring_order_after(self, dest: int) -> list[_Destination]:
        """The peers but ``dest``, in ring order (ascending node id, wrapping)
        from the one after ``dest``."""
        peers = [entry for entry in self._batch_fanout if entry[0] != dest]
        return sorted(peers, key=lambda entry: (entry[0] - dest) % (1 << 32))

    def _send_runs(self, frames: Sequence[bytes], runs: list[tuple[int, int, int, int]],
                   fanout: list[_Destination]) -> None:
        """The runs of ``plan_runs(frames)`` to each destination of ``fanout``
        in turn: a run of one frame by plain sends, the others by GSO."""
        send_to = self._send_to
        whole = len(frames)
        for start, stop, size, run_bytes in runs:
            batch = frames if stop - start == whole else frames[start:stop]
            for entry in fanout:
                send_to(entry, batch, size, run_bytes)

    def _send_to(self, entry: _Destination, batch: Sequence[bytes], segment_size: int, batch_bytes: int) -> None:
        """A run of datagrams (``batch_bytes`` in all) to one destination of
        ``_batch_fanout``: one GSO send (if active and more than one), else
        one by one, which is also what follows a GSO refusal (GSO then
        stays off)."""
        _node_id, where, send, send_args, sendmsg, sendmsg_args = entry
        stats = self.stats
        count = len(batch)
        if count > 1 and self._gso_active:
            stats.send_calls += 1
            stats.send_gso_calls += 1
            try:
                sendmsg(batch, segment_ancillary(segment_size), *sendmsg_args)
            except OSError as exc:
                if exc.errno not in GSO_UNSUPPORTED_ERRNOS:
                    self._send_failed(exc, where, count)
                    return
                self._gso_refused(exc, where)
            else:
                stats.packets_sent += count
                stats.bytes_sent += batch_bytes
                return
        sent = sent_bytes = 0
        for data in batch:
            stats.send_calls += 1
            try:
                send(data, *send_args)
            except OSError as exc:
                self._send_failed(exc, where)
                continue
            sent += 1
            sent_bytes += len(data)
        stats.packets_sent += sent
        stats.bytes_sent += sent_bytes

    def _gso_refused(self, exc: OSError, where: str) -> None:
        """GSO does not work here: off for good, logged once."""
        self._gso_active = False
        self.stats.gso_enabled = 0
        self.stats.send_gso_fallbacks += 1
        log.warning("UDP GSO send to %s refused (%s): sending one datagram per frame from now on",
                    where, exc.strerror or exc)

    # -- receiving: ReceiveMixin (totemd/udp_receive.py) ----------------------

    def close(self) -> None:
        """Close the sockets; idempotent."""
        for connected in self._peer_sockets.values():
            connected.close()
        self._peer_sockets.clear()
        self._fanout = []
        self._batch_fanout = []
        self._destinations = {}
        self._after_successor = {}
        self._routes = {}
        self._readers = []
        self._gso_active = False
        if self._poller is not None:
            self._poller.close()
            self._poller = None
        if self._unicast_socket is not None:
            self._unicast_socket.close()
            self._unicast_socket = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "UdpTransport":
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()
