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
"""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["TransportError", "TransportStats", "UdpTransport", "socket_buffer_bytes"]

# Headroom over one window of frames: the token, retransmissions and a second
# rotation may all be in flight while the daemon is busy.
BUFFER_WINDOWS = 4
RECEIVE_BATCH_MAX = 256
_LOST_PACKET_ERRNOS = frozenset((errno.EAGAIN, errno.ENOBUFS, errno.ECONNREFUSED, errno.EHOSTUNREACH,
                                 errno.ENETUNREACH, errno.EPERM))


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


def socket_buffer_bytes(window_size: int, netmtu: int) -> int:
    """Bytes of socket buffer that hold BUFFER_WINDOWS windows of full frames."""
    if window_size <= 0 or netmtu <= 0:
        raise ValueError(f"window_size ({window_size}) and netmtu ({netmtu}) must be positive")
    return BUFFER_WINDOWS * window_size * netmtu


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
    """

    mode: str
    bind_address: str
    port: int
    peers: dict[int, str] = field(default_factory=dict)
    multicast_group: str | None = None
    window_size: int = 50
    netmtu: int = 1500
    multicast_ttl: int = 1
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
        for node_id, address in self.peers.items():
            self.learn_peer(node_id, address)
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
        for node_id, endpoint in self._peer_endpoints.items():
            if endpoint[0] == self.bind_address:
                continue  # never to ourselves: the core self-delivers
            connected = self._peer_sockets.get(node_id)
            if connected is not None:
                fanout.append((node_id, connected.send, ()))
            else:
                fanout.append((node_id, self._socket.sendto, (endpoint,)))
        self._fanout = fanout

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

    def _send_failed(self, exc: OSError, where: str) -> None:
        """A full send buffer or an unreachable peer is a lost packet, which
        Totem recovers from; it is counted, never raised into the loop."""
        if exc.errno not in _LOST_PACKET_ERRNOS:
            raise exc
        self.stats.send_errors += 1
        self.stats.last_send_error = f"{where}: {exc.strerror}"

    def _send(self, data: bytes, endpoint: tuple[str, int]) -> None:
        sender = self._unicast_socket or self._socket
        assert sender is not None
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
        sent = 0
        for node_id, send, extra in self._fanout:
            if skip is not None and node_id in skip:
                continue
            try:
                send(data, *extra)
            except OSError as exc:
                self._send_failed(exc, self._peer_endpoints[node_id][0])
                continue
            sent += 1
        if sent:
            stats = self.stats
            stats.packets_sent += sent
            stats.bytes_sent += sent * len(data)

    # -- receiving ---------------------------------------------------------

    def receive_batch(self, max_packets: int = RECEIVE_BATCH_MAX) -> list[tuple[bytes, str]]:
        """Drain up to max_packets waiting packets: (data, source address).

        Packets from addresses outside the nodelist (udpu) and our own looped
        back multicasts (udp) are counted and dropped here.
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
            stats = self.stats
            stats.packets_received += packets
            stats.bytes_received += received_bytes
            if dropped:
                if udpu:
                    stats.dropped_unknown_source += dropped
                else:
                    stats.dropped_own_loopback += dropped
        return received

    def close(self) -> None:
        """Close the sockets; idempotent."""
        for connected in self._peer_sockets.values():
            connected.close()
        self._peer_sockets.clear()
        self._fanout = []
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
