"""The receiving half of ``totemd.transport.UdpTransport`` (``ReceiveMixin``).

Reads drain the transport's receiving sockets (udp: the group's, then the
node's own), check every datagram's source (udpu: a nodelist address; udp:
not our own looped-back multicast), cut coalesced GRO reads back into their
frames (``gso.split_coalesced``), open sealed datagrams (``totemd.crypto``:
what does not open is counted in ``dropped_crypto``), join the pieces of
knet mode's long frames (``totemd.linkfrag.Reassembler``), and stop right
after a token when asked to (see ``receive_frames``). Counters move once per
batch.
"""

from __future__ import annotations

from typing import Any, Callable

from totemd.gso import GRO_ANCILLARY_BYTES, split_coalesced
from totemd.linkfrag import FRAGMENT_TYPE
from totemd.udp_sockets import TransportError

__all__ = ["RECEIVE_BATCH_MAX", "RECEIVE_BUFFER_BYTES", "ReceiveMixin"]

RECEIVE_BATCH_MAX = 256
RECEIVE_BUFFER_BYTES = 65536


def _ends_with_type(frames: list[bytes], type_byte: int) -> bool:
    """True if the last frame has ``type_byte`` at offset 3 (Totem's type)."""
    if not frames:
        return False
    last = frames[-1]
    return len(last) > 3 and last[3] == type_byte


class ReceiveMixin:
    """``receive_frames``, ``receive_batch`` and the two readers, over the
    fields of ``UdpTransport`` (mode, bind_address, crypto, stats,
    _known_sources, _readers)."""

    __slots__ = ()
    mode: str
    bind_address: str
    crypto: Any
    stats: Any
    _known_sources: set[str]
    _readers: list[Any]
    _reassembler: Any

    def receive_frames(self, max_packets: int = RECEIVE_BATCH_MAX, sources: list[str] | None = None,
                       stop_type: int | None = None) -> list[bytes]:
        """Drain up to max_packets waiting frames, without their sources.

        What ``receive_batch`` returns, without the pair per frame: every
        frame returned passed the source check (udpu: a nodelist address;
        udp: not our own looped-back multicast).

        Args:
            max_packets: datagrams to read at most; the last read may carry
                the batch past it by at most GRO_MAX_SEGMENTS - 1 frames
                (nothing read is held back: the daemon waits on the socket,
                not on us).
            sources: if a list, each returned frame's source address is
                appended to it (udp learns peers from them).
            stop_type: stop once an accepted datagram has this byte at
                offset 3 (the Totem type: the token), so that it goes on
                without the check for more that would otherwise follow its
                read; what follows it stays for the next call.

        Returns:
            The frames in arrival order (udp: the group's first).

        Raises:
            TransportError: the transport is not open.
        """
        readers = self._readers
        if not readers:
            raise TransportError("transport is not open")
        frames: list[bytes] = []
        for drain in readers:
            # The budget counts what was accepted (udp: our own looped-back
            # frames must not keep the token on the unicast socket unread).
            budget = max_packets - len(frames)
            if budget <= 0:
                break
            drain(budget, frames, sources, stop_type)
            if stop_type is not None and _ends_with_type(frames, stop_type):
                break
        return frames

    def receive_batch(self, max_packets: int = RECEIVE_BATCH_MAX) -> list[tuple[bytes, str]]:
        """Drain up to max_packets waiting packets: (data, source address).

        One entry per datagram (per Totem frame), coalesced reads cut back
        into their frames, as ``receive_frames`` (see there). Packets from
        addresses outside the nodelist (udpu) and our own looped back
        multicasts (udp) are counted and dropped here, as are coalesced
        reads that cannot be cut (``split_coalesced``). udp reads the group's
        frames first, then the token: on one host a frame sent before the
        token is already queued when the token arrives; reading it first
        spares a retransmission request.
        """
        sources: list[str] = []
        frames = self.receive_frames(max_packets, sources)
        return list(zip(frames, sources))

    def _read_plain(self, recvfrom: Callable[[int], tuple[bytes, Any]], budget: int, frames: list[bytes],
                    sources: list[str] | None, stop_type: int | None = None) -> None:
        """Read datagrams one by one until EAGAIN or ``budget`` reads (or an
        accepted one of type ``stop_type``, see ``receive_frames``),
        appending the accepted ones to frames (and their sources to
        sources, if given)."""
        append = frames.append
        udpu = self.mode == "udpu"
        known = self._known_sources
        own = self.bind_address
        packets = received_bytes = dropped = unopened = 0
        crypto = self.crypto
        joiner = self._reassembler
        # Counters move once per batch, not per packet.
        for _ in range(budget):
            try:
                data, address = recvfrom(RECEIVE_BUFFER_BYTES)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                continue  # an ICMP error for an earlier send; nothing to read
            packets += 1
            received_bytes += len(data)
            source = address[0]
            if (source not in known) if udpu else (source == own):
                dropped += 1
                continue
            if crypto is not None:
                data = crypto.open(data, source)
                if data is None:
                    unopened += 1
                    continue
            if joiner is not None and len(data) > 3 and data[3] == FRAGMENT_TYPE:
                joined: list[bytes] = []
                joiner.feed((data,), source, joined)  # a piece: its frame, once complete
                if not joined:
                    continue
                data = joined[0]
            append(data)
            if sources is not None:
                sources.append(source)
            if stop_type is not None and len(data) > 3 and data[3] == stop_type:
                break
        if packets:
            self._count_reads(packets, packets, received_bytes, 0, dropped, 0, unopened)

    def _read_coalesced(self, recvmsg: Callable[..., tuple[bytes, list[tuple[int, int, bytes]], int, Any]],
                        more: Callable[[int], list] | None, budget: int, frames: list[bytes],
                        sources: list[str] | None, stop_type: int | None = None) -> None:
        """``_read_plain`` for a UDP_GRO socket: a read may hold several
        datagrams, cut by the segment size in its control message.

        Args:
            recvmsg: the socket's (anything's) ``recvmsg``.
            more: ``poll`` of the socket, asked (timeout 0) before each read
                but the first: a poll is cheaper than the failed read that
                would otherwise end the loop. None: read until EAGAIN.
            budget: datagrams wanted; reading stops once it is reached.
            frames, sources: where the accepted frames (and their sources,
                if sources is not None) are appended.
            stop_type: see ``receive_frames`` (checked after each read).
        """
        append = frames.append
        extend = frames.extend
        udpu = self.mode == "udpu"
        known = self._known_sources
        own = self.bind_address
        reads = count = received_bytes = dropped = coalesced = bad = unopened = 0
        crypto = self.crypto
        joiner = self._reassembler
        for attempt in range(budget):
            if count >= budget or (attempt and more is not None and not more(0)):
                break
            try:
                data, ancillary, flags, address = recvmsg(RECEIVE_BUFFER_BYTES, GRO_ANCILLARY_BYTES)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                continue  # an ICMP error for an earlier send; nothing to read
            reads += 1
            received_bytes += len(data)
            pieces: list[bytes] | None = None
            segments = 1
            if ancillary or flags:
                pieces = split_coalesced(data, ancillary, flags)
                if pieces is None:
                    bad += 1
                    continue
                segments = len(pieces)
                if segments > 1:
                    coalesced += 1
            count += segments
            source = address[0]
            if (source not in known) if udpu else (source == own):
                dropped += segments
                continue
            if crypto is not None:
                opened = crypto.open_many([data] if pieces is None else pieces, source)
                unopened += segments - len(opened)
                segments = len(opened)
                pieces = opened
            if joiner is not None:
                # knet mode: pieces of long frames become their frames (in place, once complete).
                joined: list[bytes] = []
                joiner.feed([data] if pieces is None else pieces, source, joined)
                pieces = joined
                segments = len(joined)
            if pieces is None:
                append(data)
            else:
                extend(pieces)
            if sources is not None:
                sources += [source] * segments
            if stop_type is not None and _ends_with_type(frames, stop_type):
                break
        if reads:
            self._count_reads(reads, count, received_bytes, coalesced, dropped, bad, unopened)

    def _count_reads(self, reads: int, packets: int, received_bytes: int, coalesced: int,
                     dropped: int, bad: int, unopened: int) -> None:
        """A batch's counters, moved once: reads and the datagrams they held;
        those dropped by source (udpu: not from the nodelist; udp: our own
        looped back), coalesced reads that could not be cut, and datagrams
        that did not open (crypto)."""
        stats = self.stats
        stats.receive_reads += reads
        stats.packets_received += packets
        stats.bytes_received += received_bytes
        if coalesced:
            stats.receive_coalesced_reads += coalesced
        if dropped:
            if self.mode == "udpu":
                stats.dropped_unknown_source += dropped
            else:
                stats.dropped_own_loopback += dropped
        if bad:
            stats.dropped_bad_coalesced += bad
        if unopened:
            stats.dropped_crypto += unopened
            stats.dropped_crypto_throttled = self.crypto.throttled
