"""The receiving side of the packing layer (totemd.pg): ``Unpacker`` turns
delivered frame payloads back into application messages, reassembling
fragmented ones, one assembly per sender.

Rules (the module docstring of totemd.pg says how they pair with the Packer):

* At every configuration change the receiver calls ``Unpacker.reset``: every
  partial assembly is dropped and counted, so a message is never stitched
  together from parts sent in two rings (totem.md §2.5 #9).
* A continuation whose head was not seen (or whose index is not the next one)
  puts the sender's assembly in throw-away mode: the parts of that message are
  dropped and counted until a frame that does not continue it. Complete entries
  of the same frame are still delivered: the lengths delimit them exactly, so
  they cannot be corrupted by the missing head.
* ``Unpacker.feed`` never raises on peer data. A malformed payload is counted,
  its text kept in ``stats().last_error``, and dropped whole (nothing from it is
  delivered), and the sender's open assembly is dropped as well, since the bad
  frame may have carried its next part. ``decode_payload`` is the strict,
  raising form for tools and tests.

Speed: ``feed`` unpacks the header and first length once and takes the
frame kinds it sees often by the shortest path: a middle fragment (most
frames of a large message) appends one slice to the assembly; whole
messages are cut out by ``pg_codec.split_entries``; the frame between two
large messages (the last part of one, the head of the next) and a last part
alone are handled without an entry list. Each path makes the checks
``pg_codec.decode`` makes for that kind, and whatever fails them goes
through ``decode`` itself, which names the fault: the fast paths accept
exactly what ``decode`` accepts (tests/totem/test_pg.py compares them with a
plain reference model on random, damaged and hand-made frames). A message's
parts are joined once, when its last part arrives.

Once a message's first middle fragment has passed those checks (or from its
head on, when the sender's fragment size is known from its last message),
its assembly expects the next frames exactly: the same size and header but
for the next index. ``feed`` holds such a frame as is (the header unpack
it makes for every frame, no slice, no call) and adds the held ones to the message, in one
``map`` of slices, at the sender's next other frame: usually the frame
that ends the message and opens the next, which then has its own short
path (``_between``). A held frame is one the middle-fragment path would
have taken without a fault or a count, and at most ``_HOLD_MAX`` are held
per sender, none past max_message_size, so holding changes neither what is
delivered nor any counter (tests/totem/test_pg_unpack_hold.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Sequence

from totemd.pg_codec import (
    DEFAULT_MAX_MESSAGE_SIZE,
    FLAG_FIRST_IS_CONTINUATION,
    FLAG_LAST_CONTINUES,
    HEADER_SIZE,
    KNOWN_FLAGS,
    LENGTH_SIZE,
    MIDDLE,
    ONE_ENTRY,
    ONE_ENTRY_SIZE,
    VERSION,
    DecodeError,
    decode,
    split_entries,
)

__all__ = ["Unpacker", "UnpackerStats", "unpack_all"]

# feed holds at most this many middle fragments of a sender's message
# before adding them to it (see _arm).
_HOLD_MAX = 64
# An assembly's slots after its parts while it holds nothing and does not
# know its sender's fragment size (see the layout in Unpacker.__init__).
_UNARMED = (-1, 0, 1, (), 0, -1)
_DATA_OF = itemgetter(slice(ONE_ENTRY_SIZE, None))
_INDEX_END = 0x10000  # continued_index is a u16
_ONE_ENTRY_UNPACK = ONE_ENTRY.unpack_from
# The header and both lengths of a frame of two entries.
_BETWEEN_MIN = ONE_ENTRY_SIZE + LENGTH_SIZE


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackerStats:
    """Counters of an Unpacker.

    Attributes:
        frames: payloads fed.
        messages_delivered: complete messages returned by feed.
        bytes_delivered: their total size.
        malformed_frames: payloads dropped whole because they did not decode.
        orphan_fragments: continuation entries dropped because their head was
            not seen or their index was not the next one (throw-away mode).
        assemblies_dropped_on_reset: partial messages dropped by reset().
        assemblies_abandoned: partial messages dropped because the sender
            started something else without finishing them, or a malformed
            frame from that sender may have carried their next part.
        oversized_dropped: partial messages dropped for growing past
            max_message_size.
        open_assemblies: partial messages held now.
        last_error: text of the last malformed payload error, or "".
    """

    frames: int
    messages_delivered: int
    bytes_delivered: int
    malformed_frames: int
    orphan_fragments: int
    assemblies_dropped_on_reset: int
    assemblies_abandoned: int
    oversized_dropped: int
    open_assemblies: int
    last_error: str


class Unpacker:
    """Unpacks frame payloads into application messages, one assembly per
    sender. Feed it the frames in delivery order; call ``reset`` at every
    configuration change."""

    __slots__ = (
        "_max_message_size",
        "_assemblies",
        "_frames",
        "_messages_delivered",
        "_bytes_delivered",
        "_malformed",
        "_orphans",
        "_dropped_on_reset",
        "_abandoned",
        "_oversized",
        "_last_error",
    )

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        """Create an unpacker with no assemblies.

        Args:
            max_message_size: a partial message that grows past this is
                dropped (counted) and its remaining parts thrown away.

        Raises:
            ValueError: max_message_size is negative.
        """
        if max_message_size < 0:
            raise ValueError(f"max_message_size must be >= 0, got {max_message_size}")
        self._max_message_size = max_message_size
        # sender -> the message being reassembled from its fragments (a list
        # rather than an object: one is made per fragmented message):
        # [0] fragment id, [1] next index, [2] size so far, [3] parts (joined
        # once, when the last one arrives), then what feed expects (_arm):
        # [4] the size of a frame it may hold (-1: none), [5] a middle
        # fragment's data length, [6] the next index counting the held
        # frames (always [1] + len([7])), [7] the held frames (a list, or
        # () before any), [8] the last index that may be held, [9] the
        # sender's middle fragment size (-1: unknown).
        self._assemblies: dict[int, list[Any]] = {}
        self._frames = 0
        self._messages_delivered = 0
        self._bytes_delivered = 0
        self._malformed = 0
        self._orphans = 0
        self._dropped_on_reset = 0
        self._abandoned = 0
        self._oversized = 0
        self._last_error = ""

    def feed(self, sender: int, payload: bytes) -> list[bytes]:
        """Take one delivered frame payload from ``sender``.

        Args:
            sender: the sending node id (the key of the assembly).
            payload: the frame payload.

        Returns:
            The messages completed by this frame, in order (a fresh list,
            possibly empty). Never raises on bad payloads: they are counted
            and dropped (see the module docstring).
        """
        if type(payload) is not bytes:
            payload = bytes(payload)
        total = len(payload)
        assembly = self._assemblies.get(sender) if self._assemblies else None
        if total < ONE_ENTRY_SIZE:
            if assembly is not None and assembly[7]:
                self._frames += _settle(assembly)
            self._frames += 1
            return self._feed_checked(sender, payload)
        version, flags, count, continued_id, continued_index, open_id, length = _ONE_ENTRY_UNPACK(payload)
        if assembly is not None:
            # The frames that continue the sender's message as expected (see _arm):
            if count == 1:
                if (continued_index == assembly[6] and total == assembly[4] and flags == MIDDLE
                        and continued_id == assembly[0] and open_id == continued_id
                        and length == assembly[5] and version == VERSION):
                    # its next middle fragment: held, and added to the
                    # message at the sender's next other frame (and
                    # counted in _frames then: _settle);
                    assembly[6] = continued_index + 1
                    assembly[7].append(payload)
                    if continued_index == assembly[8]:
                        assembly[4] = -1  # the last index _arm allowed
                    return []
            elif (count == 2 and continued_index == assembly[6] and flags == MIDDLE
                    and continued_id == assembly[0] and open_id and open_id != continued_id
                    and version == VERSION):
                # the frame that ends it and opens the next.
                messages = self._between(sender, assembly, payload, total, open_id, length)
                if messages is not None:
                    return messages
            if assembly[7]:
                self._frames += _settle(assembly)
        self._frames += 1
        if (flags == MIDDLE and count == 1 and version == VERSION and continued_id
                and open_id == continued_id and continued_index
                and ONE_ENTRY_SIZE + length == total):
            # A middle fragment that was not held (the first of a message).
            if (assembly is not None and assembly[0] == continued_id
                    and assembly[1] == continued_index
                    and assembly[2] + length <= self._max_message_size):
                # _continue's common case, written out; the next ones can be held.
                assembly[1] = continued_index + 1
                assembly[2] += length
                assembly[3].append(payload[ONE_ENTRY_SIZE:])
                _arm(assembly, payload, length, self._max_message_size)
            else:
                self._continue(sender, continued_id, continued_index,
                               payload[ONE_ENTRY_SIZE:], True)
            return []
        if version != VERSION or not count:
            return self._feed_checked(sender, payload)
        if not flags:
            # Whole messages only (every frame of small messages).
            if continued_id or continued_index or open_id:
                return self._feed_checked(sender, payload)
            if count == 1:
                if ONE_ENTRY_SIZE + length != total:
                    return self._feed_checked(sender, payload)
                entries = [payload[ONE_ENTRY_SIZE:]]
            else:
                entries = split_entries(payload, count, total)
                if entries is None:
                    return self._feed_checked(sender, payload)
            if assembly is not None:
                # The sender started afresh without finishing: it gave up on
                # that message (its own configuration change). Never join
                # across that.
                del self._assemblies[sender]
                self._abandoned += 1
            self._messages_delivered += count
            self._bytes_delivered += total - HEADER_SIZE - LENGTH_SIZE * count
            return entries
        return self._feed_flagged(sender, payload, total, flags, count, continued_id,
                                  continued_index, open_id, length)

    def _between(self, sender: int, assembly: list[Any], payload: bytes, total: int, open_id: int,
                 length: int) -> list[bytes] | None:
        """feed for a frame of two entries that ends the sender's message
        with its first (the next index, its id: checked by feed) and opens
        message ``open_id`` (another id, not 0: checked) with the second,
        after the middle fragments held for it: the message, or None (then
        feed takes the frame the general way) if the lengths do not add up
        or the message is too large.
        """
        if total < _BETWEEN_MIN:
            return None
        part_end = _BETWEEN_MIN + length
        head_size = (payload[ONE_ENTRY_SIZE] << 8) | payload[ONE_ENTRY_SIZE + 1]
        held = assembly[7]
        count = len(held)
        middle_length = assembly[5]
        size = assembly[2] + count * middle_length + length
        limit = self._max_message_size
        if part_end + head_size != total or size > limit:
            return None
        parts = assembly[3]
        if count:
            parts.extend(map(_DATA_OF, held))
            held.clear()
        parts.append(payload[_BETWEEN_MIN:part_end])
        self._frames += count + 1
        self._messages_delivered += 1
        self._bytes_delivered += size
        if head_size + _HOLD_MAX * middle_length <= limit:
            # The next message's middle fragments have this one's size
            # (the held list is reused).
            self._assemblies[sender] = [open_id, 1, head_size, [payload[part_end:]], assembly[9],
                                        middle_length, 1, held, _HOLD_MAX, assembly[9]]
        elif head_size > limit:
            self._oversized += 1
            del self._assemblies[sender]
        else:  # near the size limit: fewer may be held
            self._assemblies[sender] = _new_assembly(open_id, payload[part_end:], assembly[9], limit)
        return [b"".join(parts)]

    def _feed_flagged(self, sender: int, payload: bytes, total: int, flags: int, count: int,
                      continued_id: int, continued_index: int, open_id: int,
                      length: int) -> list[bytes]:
        """feed for a frame with a continuation flag but not a middle
        fragment (version and count checked): fast paths for a frame that
        completes one message and opens another (two entries: between two
        large messages; more: small ones) and for a last part alone, then
        the general case."""
        if flags == MIDDLE:
            # decode's checks for a frame that completes one message and
            # opens another (a middle fragment, count 1, was handled by feed).
            if (not continued_id or not continued_index or not open_id
                    or open_id == continued_id or count == 1):
                return self._feed_checked(sender, payload)
            if count == 2 and total >= ONE_ENTRY_SIZE + LENGTH_SIZE:
                part_end = ONE_ENTRY_SIZE + LENGTH_SIZE + length
                head_size = (payload[ONE_ENTRY_SIZE] << 8) | payload[ONE_ENTRY_SIZE + 1]
                if part_end + head_size != total:
                    return self._feed_checked(sender, payload)
                message = self._continue(sender, continued_id, continued_index,
                                         payload[ONE_ENTRY_SIZE + LENGTH_SIZE:part_end], False)
                if head_size > self._max_message_size:
                    self._oversized += 1
                else:
                    self._assemblies[sender] = [open_id, 1, head_size, [payload[part_end:]], *_UNARMED]
                if message is None:
                    return []
                self._messages_delivered += 1
                self._bytes_delivered += len(message)
                return [message]
            # The last part of one message, whole ones, the head of another
            # (most frames of small messages): _flagged for this case.
            entries = split_entries(payload, count, total)
            if entries is None:
                return self._feed_checked(sender, payload)
            head = entries.pop()
            part = entries[0]
            message = self._continue(sender, continued_id, continued_index, part, False)
            size = total - HEADER_SIZE - LENGTH_SIZE * count - len(head) - len(part)
            if message is None:
                del entries[0]
            else:
                entries[0] = message
                size += len(message)
            self._open(sender, open_id, head)
            if entries:
                self._messages_delivered += len(entries)
                self._bytes_delivered += size
            return entries
        elif flags == FLAG_FIRST_IS_CONTINUATION and count == 1:
            # The last part of a fragmented message alone in its frame.
            if ONE_ENTRY_SIZE + length != total or not continued_id or not continued_index \
                    or open_id:
                return self._feed_checked(sender, payload)
            message = self._continue(sender, continued_id, continued_index,
                                     payload[ONE_ENTRY_SIZE:], False)
            if message is None:
                return []
            self._messages_delivered += 1
            self._bytes_delivered += len(message)
            return [message]
        elif not _flagged_header_ok(flags, count, continued_id, continued_index, open_id):
            return self._feed_checked(sender, payload)
        entries = split_entries(payload, count, total)
        if entries is None:
            return self._feed_checked(sender, payload)
        return self._flagged(sender, flags, continued_id, continued_index, open_id, entries,
                             total - HEADER_SIZE - LENGTH_SIZE * count)

    def _feed_checked(self, sender: int, payload: bytes) -> list[bytes]:
        """feed through the strict decoder: what the fast checks turned
        away, a malformed payload (counted, dropped) or a rare valid one."""
        try:
            flags, continued_id, continued_index, open_id, entries = decode(payload)
        except DecodeError as error:
            self._malformed += 1
            self._last_error = f"from node {sender}: {error}"
            if self._assemblies.pop(sender, None) is not None:
                self._abandoned += 1
            return []
        data_size = len(payload) - HEADER_SIZE - LENGTH_SIZE * len(entries)
        if not flags:
            if self._assemblies.pop(sender, None) is not None:
                self._abandoned += 1
            self._messages_delivered += len(entries)
            self._bytes_delivered += data_size
            return entries
        return self._flagged(sender, flags, continued_id, continued_index, open_id, entries,
                             data_size)

    def _flagged(self, sender: int, flags: int, continued_id: int, continued_index: int,
                 open_id: int, entries: list[bytes], data_size: int) -> list[bytes]:
        """Deliver the entries of a valid frame with a continuation flag.

        ``entries`` (a fresh list, ``data_size`` bytes in all) becomes the
        list of messages returned: the continuation is replaced by the
        message it completes (or taken out), the open head taken out.
        """
        head = None
        if flags & FLAG_LAST_CONTINUES and (len(entries) > 1
                                            or not flags & FLAG_FIRST_IS_CONTINUATION):
            head = entries.pop()
            data_size -= len(head)
        if flags & FLAG_FIRST_IS_CONTINUATION:
            middle = head is None and flags & FLAG_LAST_CONTINUES
            part = entries[0]
            data_size -= len(part)
            message = self._continue(sender, continued_id, continued_index, part, middle)
            if message is None:
                del entries[0]
            else:
                entries[0] = message
                data_size += len(message)
        elif self._assemblies.pop(sender, None) is not None:
            self._abandoned += 1
        if head is not None:
            self._open(sender, open_id, head)
        if entries:
            self._messages_delivered += len(entries)
            self._bytes_delivered += data_size
        return entries

    def _open(self, sender: int, open_id: int, head: bytes) -> None:
        """Start the sender's assembly of message ``open_id`` with its head
        (a head already over max_message_size is counted and dropped)."""
        if len(head) > self._max_message_size:
            self._oversized += 1
        else:
            self._assemblies[sender] = [open_id, 1, len(head), [head], *_UNARMED]

    def _continue(self, sender: int, continued_id: int, continued_index: int, part: bytes,
                  middle: bool) -> bytes | None:
        """Add the first entry of a continuing frame to the sender's assembly.

        Returns the completed message, or None (middle part, or thrown away).
        """
        assembly = self._assemblies.get(sender)
        if assembly is None or assembly[0] != continued_id or assembly[1] != continued_index:
            # Throw-away mode: the head (or a middle part) of this message was
            # not seen here; drop its parts until the sender starts afresh.
            self._orphans += 1
            if assembly is not None:
                del self._assemblies[sender]
                self._abandoned += 1
            return None
        size = assembly[2] + len(part)
        if size > self._max_message_size:
            del self._assemblies[sender]
            self._oversized += 1
            return None
        parts = assembly[3]
        parts.append(part)
        if middle:
            # assembly[6] kept equal to assembly[1] (nothing is held here): a
            # valid middle fragment takes the fast path, so this is defensive.
            assembly[1] = assembly[6] = continued_index + 1
            assembly[2] = size
            return None
        del self._assemblies[sender]
        return b"".join(parts)

    def reset(self) -> None:
        """Drop every partial assembly (at a configuration change), counted."""
        self._frames += sum(len(assembly[7]) for assembly in self._assemblies.values())
        self._dropped_on_reset += len(self._assemblies)
        self._assemblies.clear()

    def stats(self) -> UnpackerStats:
        """A snapshot of the counters."""
        return UnpackerStats(
            frames=self._frames + sum(len(assembly[7]) for assembly in self._assemblies.values()),
            messages_delivered=self._messages_delivered,
            bytes_delivered=self._bytes_delivered,
            malformed_frames=self._malformed,
            orphan_fragments=self._orphans,
            assemblies_dropped_on_reset=self._dropped_on_reset,
            assemblies_abandoned=self._abandoned,
            oversized_dropped=self._oversized,
            open_assemblies=len(self._assemblies),
            last_error=self._last_error,
        )


def _flagged_header_ok(flags: int, count: int, continued_id: int, continued_index: int,
                       open_id: int) -> bool:
    """decode's header checks for a frame with flags != 0 and count >= 1
    (the version already checked)."""
    if flags & ~KNOWN_FLAGS:
        return False
    if flags & FLAG_FIRST_IS_CONTINUATION:
        if not continued_id or not continued_index:
            return False
    elif continued_id or continued_index:
        return False
    if flags & FLAG_LAST_CONTINUES:
        if not open_id:
            return False
        if flags & FLAG_FIRST_IS_CONTINUATION:
            # A middle fragment continues and leaves open the same id; any
            # other frame must not.
            return (open_id == continued_id) == (count == 1)
        return True
    return not open_id and flags == FLAG_FIRST_IS_CONTINUATION


def _arm(assembly: list[Any], payload: bytes, length: int, max_message_size: int) -> None:
    """Let feed hold the next middle fragments of ``assembly``, whose last
    part, the middle fragment ``payload`` of ``length`` bytes of data, was
    just added by the middle-fragment path (its checks passed).

    The assembly then expects a frame of the same size whose header is
    the same but for the next index (as two u64: version, flags, count
    and continued id; index, open id and length), for at most _HOLD_MAX
    frames, none past max_message_size or the last u16 index: exactly the
    frames the middle-fragment path would take without a fault or a count.
    """
    count = min(_HOLD_MAX, (max_message_size - assembly[2]) // length if length else 0,
                _INDEX_END - assembly[1])
    assembly[6] = assembly[1]
    if count <= 0:
        assembly[4] = -1
        return
    if not assembly[7]:
        assembly[7] = []  # () until then (nothing held, nothing to allocate)
    assembly[4] = assembly[9] = length + ONE_ENTRY_SIZE
    assembly[5] = length
    assembly[8] = assembly[1] + count - 1


def _new_assembly(open_id: int, head: bytes, frame_size: int, max_message_size: int) -> list[Any]:
    """The assembly of message ``open_id`` from its ``head``, ready to hold
    its middle fragments if they have ``frame_size`` bytes (the size of the
    sender's last middle fragment, -1 if none was seen): see _arm."""
    size = len(head)
    length = frame_size - ONE_ENTRY_SIZE
    if length > 0:
        count = min(_HOLD_MAX, (max_message_size - size) // length)
        if count > 0:
            return [open_id, 1, size, [head], frame_size, length, 1, [], count, frame_size]
    return [open_id, 1, size, [head], *_UNARMED]


def _settle(assembly: list[Any]) -> int:
    """Add the middle fragments feed held for ``assembly`` to its message
    (each was checked when it came: see _arm); how many."""
    held = assembly[7]
    count = len(held)
    assembly[1] += count
    assembly[2] += count * (len(held[0]) - ONE_ENTRY_SIZE)
    assembly[3].extend(map(_DATA_OF, held))
    held.clear()
    assembly[4] = -1  # the next middle fragment goes through the checks (and arms again)
    return count


def unpack_all(unpacker: Unpacker, sender: int, payloads: Sequence[bytes]) -> list[bytes]:
    """Feed payloads from one sender in order and collect the messages."""
    out: list[bytes] = []
    for payload in payloads:
        out.extend(unpacker.feed(sender, payload))
    return out
