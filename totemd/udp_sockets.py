"""Making the transport's UDP sockets: buffers, binding, multicast group
membership and the connected send-only sockets of udpu.

Setup only (nothing here is on the per-packet path); ``totemd.transport``
decides which sockets it needs and re-exports ``TransportError`` and
``socket_buffer_bytes``.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["BUFFER_WINDOWS", "TransportError", "bind", "connected_socket", "family_of", "join_group",
           "set_buffers", "set_multicast_sender", "socket_buffer_bytes"]

# Headroom over one window of frames: the token, retransmissions and a second
# rotation may all be in flight while the daemon is busy.
BUFFER_WINDOWS = 4
# A connected send-only socket is never sent to: a small receive buffer.
_SEND_ONLY_RECEIVE_BUFFER_BYTES = 4096


class TransportError(Exception):
    """The transport could not be set up (address, bind, multicast join)."""


def socket_buffer_bytes(window_size: int, netmtu: int) -> int:
    """Bytes of socket buffer that hold BUFFER_WINDOWS windows of full frames.

    Raises:
        ValueError: window_size or netmtu is not positive.
    """
    if window_size <= 0 or netmtu <= 0:
        raise ValueError(f"window_size ({window_size}) and netmtu ({netmtu}) must be positive")
    return BUFFER_WINDOWS * window_size * netmtu


def family_of(address: str) -> socket.AddressFamily:
    """AF_INET or AF_INET6 for an IP address.

    Raises:
        TransportError: address is not an IP address.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError as exc:
        raise TransportError(f"{address!r} is not an IP address") from exc
    return socket.AF_INET6 if parsed.version == 6 else socket.AF_INET


# Linux's SO_RCVBUFFORCE / SO_SNDBUFFORCE (not in every Python's socket module).
_FORCED = {socket.SO_RCVBUF: getattr(socket, "SO_RCVBUFFORCE", 33),
           socket.SO_SNDBUF: getattr(socket, "SO_SNDBUFFORCE", 32)}


def set_buffers(sock: socket.socket, wanted_bytes: int) -> None:
    """Ask for receive and send buffers of wanted_bytes: past net.core's
    rmem_max/wmem_max where we may (CAP_NET_ADMIN, as knet does: a knet
    mode visit is ~1 MiB per peer), else what the kernel clamps to (read
    back with getsockopt for the real size)."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, _FORCED[option], wanted_bytes)
            continue
        except OSError:
            pass  # not privileged: the plain option, clamped
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, wanted_bytes)
        except OSError:
            pass  # the kernel clamps


def bind(sock: socket.socket, host: str, port: int) -> None:
    """Bind, naming the address in the error.

    Raises:
        TransportError: the kernel refused (address in use, not local, ...).
    """
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise TransportError(f"cannot bind {host}:{port}: {exc.strerror}") from exc


def set_multicast_sender(sock: socket.socket, local_address: str, ttl: int) -> None:
    """Send multicast from local_address's interface, ttl hops, looped back
    to this host's members (nodes on one host share the group).

    Raises:
        TransportError: the kernel refused an option.
    """
    local = socket.inet_aton(local_address)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    except OSError as exc:
        raise TransportError(f"cannot send multicast from {local_address}: {exc.strerror}") from exc


def join_group(sock: socket.socket, family: socket.AddressFamily, group: str, local_address: str,
               ttl: int) -> None:
    """Join the IPv4 multicast group on local_address's interface (and send
    to it from there, as ``set_multicast_sender``).

    Raises:
        TransportError: not IPv4, or the kernel refused (multicast off or
            not routed on the interface).
    """
    if family != socket.AF_INET:
        raise TransportError("transport udp supports IPv4 multicast groups only")
    group_bytes = socket.inet_aton(group)
    local = socket.inet_aton(local_address)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group_bytes + local)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    except OSError as exc:
        raise TransportError(
            f"cannot join multicast group {group} on {local_address}: "
            f"{exc.strerror} (is multicast enabled on the interface and routed?)"
        ) from exc


def connected_socket(bind_address: str, endpoint: tuple[str, int], send_buffer_bytes: int) -> socket.socket | None:
    """A non-blocking send-only socket bound to bind_address (ephemeral
    port) and connected to endpoint, or None if the kernel refuses (the
    caller then uses sendto on its bound socket)."""
    try:
        sock = socket.socket(family_of(bind_address), socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        except OSError:
            pass  # the kernel clamps
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SEND_ONLY_RECEIVE_BUFFER_BYTES)
        sock.bind((bind_address, 0))
        sock.connect(endpoint)
        sock.setblocking(False)
    except OSError:
        sock.close()
        return None
    return sock
