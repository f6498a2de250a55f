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

Self-delivery: the core delivers its own multicasts without a round trip
through the network, so the transport never needs to loop frames back; for
``udp`` the looped-back copy is recognised by source address and dropped.

Socket buffers are sized for ``window_size x netmtu`` frames with headroom
(corosync sizes them the same way), clamped by what the kernel allows.

Batched I/O (Linux UDP GSO and GRO; ``multicast_many``, ``receive_batch``):

- Sending: ``multicast_many`` hands a list of frames to each peer (udpu) or to
  the group (udp) in as few ``sendmsg`` calls as it can. A run of frames of
  one length, optionally closed by one shorter frame, goes in ONE ``sendmsg``
  with the ``UDP_SEGMENT`` control message (the frames as its iovec, the
  length as the segment size): the kernel cuts it into datagrams of exactly
  those frames, each on the wire as if sent alone (never larger than netmtu).
  A run holds at most ``GSO_MAX_SEGMENTS`` frames and ``GSO_MAX_BYTES``
  bytes (see their comments). A frame alone goes by a plain send. Frames to
  one peer leave in the given order, through the same socket the token is
  unicast on, so a token sent after a batch arrives after it.
- Fallback: GSO is probed once at open (``getsockopt(UDP_SEGMENT)``); a GSO
  send refused as unsupported (EINVAL, EIO, ENOPROTOOPT, EOPNOTSUPP,
  EMSGSIZE: old kernel, no checksum offload on the route's device, a frame
  above the device MTU, ...) turns GSO off for good: logged once, counted in
  ``send_gso_fallbacks``, and the refused frames are sent again one by one,
  so nothing is lost.
- Receiving: the receiving sockets ask for ``UDP_GRO``; the kernel then hands
  over a GSO batch (or datagrams a NIC coalesced) as one buffer with a
  control message giving the segment size, and ``receive_batch`` cuts it back
  into the frames, so callers still get one ``(bytes, source)`` per frame. A
  socket without GRO gets the datagrams one by one, as before; a sender
  without GSO is received as before. A coalesced buffer that cannot be cut
  safely (bad or missing segment size, truncated, too many segments) is
  counted in ``dropped_bad_coalesced`` and dropped.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import select
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

__all__ = ["TransportError", "TransportStats", "UdpTransport", "plan_batches", "socket_buffer_bytes",
           "split_coalesced"]

log = logging.getLogger("totemd.transport")

# Headroom over one window of frames: the token, retransmissions and a second
# rotation may all be in flight while the daemon is busy.
BUFFER_WINDOWS = 4
RECEIVE_BATCH_MAX = 256
_LOST_PACKET_ERRNOS = frozenset((errno.EAGAIN, errno.ENOBUFS, errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                 errno.ENETUNREACH, errno.EPERM))

# Linux UDP segmentation offload (linux/udp.h); Python 3.11 names neither option.
SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
# Frames per GSO send: the kernel's UDP_MAX_SEGMENTS is 64 from 4.18 (128
# in recent kernels); 64 works on every kernel with GSO.
GSO_MAX_SEGMENTS = 64
# Payload bytes per GSO send. The kernel refuses more than 65507 (IPv4:
# 65535 minus IP and UDP headers; EMSGSIZE), and on loopback a GSO packet
# above 65493 (IPv4) / 65473 (IPv6) bytes reaches a GRO socket cut into
# datagrams again (measured on 6.18): the IPv6 bound keeps every batch one
# read on both families.
GSO_MAX_BYTES = 65473
# A coalesced read with more segments than this is not something the kernel
# makes (at most UDP_MAX_SEGMENTS per GSO packet, 64 per NIC GRO batch).
GRO_MAX_SEGMENTS = 128
RECEIVE_BUFFER_BYTES = 65536
_GRO_ANCILLARY_BYTES = socket.CMSG_SPACE(4)  # one int: the segment size
# A GSO send refused with one of these means "not here": send one by one.
_GSO_UNSUPPORTED_ERRNOS = frozenset((errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP,
                                     errno.EMSGSIZE))
_TRUNCATED = getattr(socket, "MSG_TRUNC", 0x20) | getattr(socket, "MSG_CTRUNC", 0x08)
_SEGMENT_SIZE = struct.Struct("=H")  # UDP_SEGMENT's value: a native u16
_GRO_SEGMENT_SIZE = struct.Struct("=i")  # UDP_GRO's value on a read: a native int


class TransportError(Exception):
    """The transport could not be set up (address, bind, multicast join)."""


@dataclass(slots=True)
class TransportStats:
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


def socket_buffer_bytes(window_size: int, netmtu: int) -> int:
    """Bytes of socket buffer that hold BUFFER_WINDOWS windows of full frames."""
    if window_size <= 0 or netmtu <= 0:
        raise ValueError(f"window_size ({window_size}) and netmtu ({netmtu}) must be positive")
    return BUFFER_WINDOWS * window_size * netmtu


def plan_batches(frames: Sequence[bytes], max_segments: int = GSO_MAX_SEGMENTS,
                 max_bytes: int = GSO_MAX_BYTES) -> list[tuple[int, int, int]]:
    """Cut a list of frames into GSO sends, in order.

    A batch is a run of frames of one length, optionally closed by one
    shorter (non-empty) frame, of at most max_segments frames and max_bytes
    bytes; the kernel cuts it back into exactly those frames.

    Args:
        frames: the frames to send, in order.
        max_segments, max_bytes: limits of one batch.

    Returns:
        (start, stop, segment size) per batch, covering frames in order; a
        batch with stop - start == 1 is a frame to send alone.
    """
    batches: list[tuple[int, int, int]] = []
    count = len(frames)
    start = 0
    while start < count:
        size = len(frames[start])
        stop = start + 1
        if 0 < size <= max_bytes:
            total = size
            limit = min(count, start + max_segments)
            while stop < limit:
                length = len(frames[stop])
                if length > size or length == 0 or total + length > max_bytes:
                    break
                total += length
                stop += 1
                if length < size:
                    break  # only the last segment may be shorter
        batches.append((start, stop, size))
        start = stop
    return batches


def split_coalesced(data: bytes, ancillary: Sequence[tuple[int, int, bytes]], flags: int) -> list[bytes] | None:
    """Cut one read of a UDP_GRO socket back into the datagrams it holds.

    Args:
        data: the bytes read.
        ancillary: the read's control messages; (SOL_UDP, UDP_GRO, native
            int) gives the segment size of a coalesced read.
        flags: the read's message flags.

    Returns:
        The datagrams in order (one when nothing was coalesced), or None if
        the read cannot be cut safely: truncated data or control data, a
        segment size that is not one positive native int, or more than
        GRO_MAX_SEGMENTS segments.
    """
    if flags & _TRUNCATED:
        return None
    segment = 0
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO:
            if len(value) != _GRO_SEGMENT_SIZE.size:
                return None
            (segment,) = _GRO_SEGMENT_SIZE.unpack(value)
            if segment <= 0:
                return None
    length = len(data)
    if not segment or segment >= length:
        return [data]
    if length > segment * GRO_MAX_SEGMENTS:
        return None
    return [data[offset:offset + segment] for offset in range(0, length, segment)]


def _gso_supported(sock: socket.socket) -> bool:
    """True if the kernel knows UDP_SEGMENT (Linux 4.18 and later)."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def _enable_gro(sock: socket.socket) -> bool:
    """Ask for coalesced reads (Linux 5.0 and later); False if refused."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def _family(address: str) -> socket.AddressFamily:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError as exc:
        raise TransportError(f"{address!r} is not an IP address") from exc
    return socket.AF_INET6 if parsed.version == 6 else socket.AF_INET


@dataclass(slots=True)
class UdpTransport:
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
    stats: TransportStats = field(default_factory=TransportStats)
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
    # multicast_many's fan-out: (where, send, send args, sendmsg, sendmsg
    # args) per destination (udpu: each peer; udp: the group).
    _batch_fanout: list[tuple[int, str, Any, tuple, Any, tuple]] = field(default_factory=list)
    _gso_active: bool = False
    # File descriptors of the sockets that have UDP_GRO on.
    _gro_fds: set[int] = field(default_factory=set)

    def open(self) -> "UdpTransport":
        """Create and bind the socket. Raises TransportError with the reason."""
        if self.mode not in ("udpu", "udp"):
            raise TransportError(f"transport {self.mode!r} is not one of udpu, udp")
        if self.mode == "udp" and not self.multicast_group:
            raise TransportError("transport udp needs a multicast group (totem.interface.mcastaddr)")
        family = _family(self.bind_address)
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
        for receiver in (sock, self._unicast_socket):
            if receiver is not None and self.gro and _enable_gro(receiver):
                self._gro_fds.add(receiver.fileno())
        self.stats.gro_enabled = int(bool(self._gro_fds))
        for node_id, address in self.peers.items():
            self.learn_peer(node_id, address)
        self._rebuild_fanout()
        return self

    def _configure(self, sock: socket.socket, family: socket.AddressFamily) -> None:
        wanted = socket_buffer_bytes(self.window_size, self.netmtu)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, wanted)
            except OSError:
                pass  # the kernel clamps; what we got is recorded below
        # Linux reports double the requested size (bookkeeping overhead).
        self.stats.receive_buffer_bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.stats.send_buffer_bytes = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        if self.mode == "udp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        bind_host = self.multicast_group if self.mode == "udp" else self.bind_address
        try:
            sock.bind((bind_host, self.port))
        except OSError as exc:
            raise TransportError(f"cannot bind {bind_host}:{self.port}: {exc.strerror}") from exc
        if self.mode == "udp":
            if self.port == 0:
                self.port = int(sock.getsockname()[1])  # the unicast socket takes the same port
            self._join_group(sock, family)
        sock.setblocking(False)

    def _open_unicast(self, family: socket.AddressFamily) -> None:
        """udp: bind the unicast socket to (bind_address, port), make it the
        multicast sender, and put both sockets behind one epoll descriptor."""
        assert self._socket is not None
        sock = socket.socket(family, socket.SOCK_DGRAM)
        self._unicast_socket = sock
        wanted = socket_buffer_bytes(self.window_size, self.netmtu)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, wanted)
            except OSError:
                pass  # the kernel clamps
        try:
            sock.bind((self.bind_address, self.port))
        except OSError as exc:
            raise TransportError(f"cannot bind {self.bind_address}:{self.port}: {exc.strerror}") from exc
        self._set_multicast_sender(sock)
        sock.setblocking(False)
        self._poller = select.epoll()
        self._poller.register(self._socket.fileno(), select.EPOLLIN)
        self._poller.register(sock.fileno(), select.EPOLLIN)

    def _set_multicast_sender(self, sock: socket.socket) -> None:
        local = socket.inet_aton(self.bind_address)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.multicast_ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        except OSError as exc:
            raise TransportError(f"cannot send multicast from {self.bind_address}: {exc.strerror}") from exc

    def _join_group(self, sock: socket.socket, family: socket.AddressFamily) -> None:
        assert self.multicast_group is not None
        if family != socket.AF_INET:
            raise TransportError("transport udp supports IPv4 multicast groups only")
        group = socket.inet_aton(self.multicast_group)
        local = socket.inet_aton(self.bind_address)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group + local)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.multicast_ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        except OSError as exc:
            raise TransportError(
                f"cannot join multicast group {self.multicast_group} on {self.bind_address}: "
                f"{exc.strerror} (is multicast enabled on the interface and routed?)"
            ) from exc

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
            connected = self._connected_socket(endpoint)
            if connected is not None:
                self._peer_sockets[node_id] = connected
        self._rebuild_fanout()

    def _connected_socket(self, endpoint: tuple[str, int]) -> socket.socket | None:
        """A send-only socket bound to our address and connected to endpoint,
        or None if the kernel refuses (then sendto on the bound socket)."""
        try:
            sock = socket.socket(_family(self.bind_address), socket.SOCK_DGRAM)
        except OSError:
            return None
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                socket_buffer_bytes(self.window_size, self.netmtu))
            except OSError:
                pass  # the kernel clamps
            # Nothing is ever sent to its port: keep its receive buffer small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind((self.bind_address, 0))
            sock.connect(endpoint)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return None
        return sock

    def _rebuild_fanout(self) -> None:
        if self._socket is None:
            return  # open() learns every configured peer again
        fanout: list[tuple[int, object, tuple]] = []
        batch_fanout: list[tuple[int, str, Any, tuple, Any, tuple]] = []
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
        if self.mode == "udp":
            sender = self._unicast_socket or self._socket
            assert self.multicast_group is not None
            group = (self.multicast_group, self.port)
            batch_fanout = [(0, self.multicast_group, sender.sendto, (group,), sender.sendmsg,
                             (0, group))]
        self._batch_fanout = batch_fanout

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

    def _send(self, data: bytes, endpoint: tuple[str, int]) -> None:
        sender = self._unicast_socket or self._socket
        assert sender is not None
        self.stats.send_calls += 1
        try:
            sender.sendto(data, endpoint)
        except OSError as exc:
            self._send_failed(exc, endpoint[0])
            return
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(data)

    def unicast(self, node_id: int, data: bytes) -> bool:
        """Send to one node. Returns False if the node's address is unknown."""
        endpoint = self._peer_endpoints.get(node_id)
        if endpoint is None:
            return False
        connected = self._peer_sockets.get(node_id)
        if connected is None:
            self._send(data, endpoint)
            return True
        self.stats.send_calls += 1
        try:
            connected.send(data)
        except OSError as exc:
            self._send_failed(exc, endpoint[0])
            return True
        self.stats.packets_sent += 1
        self.stats.bytes_sent += len(data)
        return True

    def multicast(self, data: bytes, exclude: Iterable[int] = ()) -> None:
        """Send to every node (never back to ourselves; the core self-delivers).

        The same bytes go to every peer; the counters move once per call.
        """
        if self.mode == "udp":
            assert self.multicast_group is not None
            self._send(data, (self.multicast_group, self.port))
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
            frames: encoded Totem frames, each at most netmtu on the wire.
        """
        if len(frames) < 2 or not self._gso_active:
            for data in frames:
                self.multicast(data)
            return
        multicast = self.multicast
        for start, stop, size in plan_batches(frames):
            if stop - start == 1 or not self._gso_active:
                for index in range(start, stop):
                    multicast(frames[index])
                continue
            self._send_batch(frames[start:stop], size)

    def send_visit(self, frames: Sequence[bytes], dest: int, token: bytes) -> bool:
        """A token visit's frames to every node, then the token to ``dest``.

        The same datagrams in the same order per peer as ``multicast_many``
        then ``unicast``; with udpu and GSO the token rides in the last GSO
        send to ``dest`` (it is never longer than a frame): one system call
        and one wake-up fewer for the node that takes the token, which then
        reads the frames and the token together.

        Returns:
            False if ``dest``'s address is unknown (the frames are sent anyway).
        """
        successor = None
        if self.mode == "udpu" and dest in self._peer_sockets:
            successor = next((entry for entry in self._batch_fanout if entry[0] == dest), None)
        if successor is None or not self._gso_active or not frames:
            if len(frames) == 1:
                self.multicast(frames[0])
            elif frames:
                self.multicast_many(frames)
            return self.unicast(dest, token)
        for start, stop, size in plan_batches(frames):
            if stop - start == 1:
                self.multicast(frames[start], exclude=(dest,))
            else:
                self._send_batch(frames[start:stop], size, skip=dest)
        datagrams = [*frames, token]
        for start, stop, size in plan_batches(datagrams):
            self._send_to(successor, datagrams[start:stop], size)
        return True

    def _send_batch(self, batch: Sequence[bytes], segment_size: int, skip: int = 0) -> None:
        """One GSO send of batch to each destination (but node ``skip``)."""
        for entry in self._batch_fanout:
            if entry[0] != skip or not skip:
                self._send_to(entry, batch, segment_size)

    def _send_to(self, entry: tuple[int, str, Any, tuple, Any, tuple], batch: Sequence[bytes],
                 segment_size: int) -> None:
        """A run of datagrams to one destination of ``_batch_fanout``: one GSO
        send (if active and more than one), else one by one, which is also
        what follows a GSO refusal (GSO then stays off)."""
        _node_id, where, send, send_args, sendmsg, sendmsg_args = entry
        stats = self.stats
        count = len(batch)
        if count > 1 and self._gso_active:
            stats.send_calls += 1
            stats.send_gso_calls += 1
            try:
                sendmsg(batch, [(SOL_UDP, UDP_SEGMENT, _SEGMENT_SIZE.pack(segment_size))],
                        *sendmsg_args)
            except OSError as exc:
                if exc.errno not in _GSO_UNSUPPORTED_ERRNOS:
                    self._send_failed(exc, where, count)
                    return
                self._gso_refused(exc, where)
            else:
                stats.packets_sent += count
                stats.bytes_sent += sum(map(len, batch))
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

    # -- receiving ---------------------------------------------------------

    def receive_batch(self, max_packets: int = RECEIVE_BATCH_MAX) -> list[tuple[bytes, str]]:
        """Drain up to max_packets waiting packets: (data, source address).

        One entry per datagram (per Totem frame), coalesced reads cut back
        into their frames; the last read may carry the batch past
        max_packets by at most GRO_MAX_SEGMENTS - 1 frames (nothing read is
        held back: the daemon waits on the socket, not on us).
        Packets from addresses outside the nodelist (udpu) and our own looped
        back multicasts (udp) are counted and dropped here, as are coalesced
        reads that cannot be cut (``split_coalesced``).
        """
        assert self._socket is not None
        if self._unicast_socket is not None:
            # udp: the group's frames first, then the token. On one host a
            # frame sent before the token is already queued when the token
            # arrives; reading it first spares a retransmission request.
            received = self._receive_from(self._socket, max_packets)
            if len(received) < max_packets:
                received += self._receive_from(self._unicast_socket, max_packets - len(received))
            return received
        return self._receive_from(self._socket, max_packets)

    def _receive_from(self, sock: socket.socket, max_packets: int) -> list[tuple[bytes, str]]:
        if self._gro_fds and sock.fileno() in self._gro_fds:
            return self._receive_coalesced(sock, max_packets)
        received: list[tuple[bytes, str]] = []
        append = received.append
        recvfrom = sock.recvfrom
        udpu = self.mode == "udpu"
        known = self._known_sources
        own = self.bind_address
        packets = received_bytes = dropped = 0
        # Counters move once per batch, not per packet.
        for _ in range(max_packets):
            try:
                data, (source, _port, *_rest) = recvfrom(65536)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                continue  # an ICMP error for an earlier send; nothing to read
            packets += 1
            received_bytes += len(data)
            if udpu:
                if source not in known:
                    dropped += 1
                    continue
            elif source == own:
                dropped += 1
                continue
            append((data, source))
        if packets:
            self._count_received(packets, packets, received_bytes, dropped)
        return received

    def _count_received(self, reads: int, frames: int, received_bytes: int, dropped: int) -> None:
        stats = self.stats
        stats.receive_reads += reads
        stats.packets_received += frames
        stats.bytes_received += received_bytes
        if dropped:
            if self.mode == "udpu":
                stats.dropped_unknown_source += dropped
            else:
                stats.dropped_own_loopback += dropped

    def _receive_coalesced(self, sock: Any, max_packets: int) -> list[tuple[bytes, str]]:
        """``_receive_from`` for a UDP_GRO socket: a read may hold several
        datagrams, cut by the segment size in its control message.

        Args:
            sock: the socket (anything with ``recvmsg``).
            max_packets: frames wanted; reading stops once it is reached.
        """
        received: list[tuple[bytes, str]] = []
        append = received.append
        recvmsg: Callable[..., tuple[bytes, list[tuple[int, int, bytes]], int, Any]] = sock.recvmsg
        udpu = self.mode == "udpu"
        known = self._known_sources
        own = self.bind_address
        reads = frames = received_bytes = dropped = coalesced = bad = 0
        for _ in range(max_packets):
            if frames >= max_packets:
                break
            try:
                data, ancillary, flags, address = recvmsg(RECEIVE_BUFFER_BYTES, _GRO_ANCILLARY_BYTES)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                continue  # an ICMP error for an earlier send; nothing to read
            reads += 1
            received_bytes += len(data)
            pieces: list[bytes] | None = None
            if ancillary or flags:
                pieces = split_coalesced(data, ancillary, flags)
                if pieces is None:
                    bad += 1
                    continue
            count = 1 if pieces is None else len(pieces)
            frames += count
            if count > 1:
                coalesced += 1
            source = address[0]
            if udpu:
                if source not in known:
                    dropped += count
                    continue
            elif source == own:
                dropped += count
                continue
            if pieces is None:
                append((data, source))
            else:
                received.extend([(piece, source) for piece in pieces])
        if reads:
            self._count_received(reads, frames, received_bytes, dropped)
            if coalesced:
                self.stats.receive_coalesced_reads += coalesced
            if bad:
                self.stats.dropped_bad_coalesced += bad
        return received

    def close(self) -> None:
        """Close the sockets; idempotent."""
        for connected in self._peer_sockets.values():
            connected.close()
        self._peer_sockets.clear()
        self._fanout = []
        self._batch_fanout = []
        self._gro_fds.clear()
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
