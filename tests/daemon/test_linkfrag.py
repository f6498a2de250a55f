"""Link-level fragmentation (knet mode, ``totemd.linkfrag``): the cutter, the
splitter's numbering and the reassembler's joining, bounds and counters."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from totemd.codec import MAGIC, VERSION
from totemd.linkfrag import (
    FRAGMENT_TYPE,
    FRAME_MAX_BYTES,
    HEADER_SIZE,
    PARTIAL_MAX,
    PIECES_MAX,
    FragmentStats,
    Reassembler,
    Splitter,
    split,
)

# The wire format of a piece, written out here so that a change to it shows.
PIECE_HEADER = struct.Struct("!HBBBIIHH")  # magic, version, type, flags, sender, serial, index, count
SOURCE = "127.0.0.1"
UDP_PAYLOAD_MAX = 65507
FRAME_SIZE_MAX = 65476


def _frame(size: int, seed: int) -> bytes:
    """A frame of ``size`` bytes whose content depends on the seed (never a
    piece itself: the type byte at offset 3 is a Totem MCAST's)."""
    body = random.Random(seed).randbytes(size)
    if size > 3:
        body = body[:3] + b"\x01" + body[4:]
    return body


def _piece(sender: int = 7, serial: int = 1, index: int = 0, count: int = 2, payload: bytes = b"payload",
           magic: int = MAGIC, version: int = VERSION, kind: int = FRAGMENT_TYPE, flags: int = 0) -> bytes:
    return PIECE_HEADER.pack(magic, version, kind, flags, sender, serial, index, count) + payload


def _header(piece: bytes) -> tuple[int, ...]:
    return PIECE_HEADER.unpack_from(piece)


def _feed_one_by_one(reassembler: Reassembler, datagrams: list[bytes], source: str = SOURCE) -> list[bytes]:
    out: list[bytes] = []
    for data in datagrams:
        reassembler.feed([data], source, out)
    return out


def test_the_piece_header_is_the_totem_header_then_serial_index_count():
    assert HEADER_SIZE == PIECE_HEADER.size == 17
    assert FRAGMENT_TYPE == 0x10 and PIECES_MAX == 1024 and FRAME_MAX_BYTES == 65536 and PARTIAL_MAX == 64
    frame = bytes(range(256)) * 3  # 768 bytes
    pieces = split(frame, 0x01020304, 0xA0B0C0D0, 300)
    assert len(pieces) == 3
    for index, piece in enumerate(pieces):
        assert type(piece) is bytes
        assert _header(piece) == (MAGIC, VERSION, FRAGMENT_TYPE, 0, 0x01020304, 0xA0B0C0D0, index, 3)
        assert piece[HEADER_SIZE:] == frame[index * 300:(index + 1) * 300]
    assert pieces[0][:4] == b"\xc0\x71\x01\x10"
    assert [len(piece) for piece in pieces] == [HEADER_SIZE + 300] * 2 + [HEADER_SIZE + 168]


# -- round trips -----------------------------------------------------------------------------


@st.composite
def _frames_and_bound(draw, max_frames: int = 8):
    """A datagram bound and frames that fit PIECES_MAX pieces of it (the rest
    is ValueError, tested apart); sizes gather near the bound and the edges."""
    bound = draw(st.one_of(st.integers(min_value=64, max_value=UDP_PAYLOAD_MAX),
                           st.sampled_from([64, 81, 1472, 1436, 9000, UDP_PAYLOAD_MAX])))
    largest = min(FRAME_SIZE_MAX, PIECES_MAX * (bound - HEADER_SIZE))
    size = st.one_of(st.integers(min_value=0, max_value=largest),
                     st.sampled_from([0, 1, 4, min(bound, largest), min(bound + 1, largest), largest]),
                     st.integers(min_value=min(max(0, bound - 2), largest), max_value=min(bound + 2, largest)))
    sizes = draw(st.lists(size, max_size=max_frames))
    return bound, sizes  # the frames are built in the test (short reports on failure)


def _frames(sizes: list[int]) -> list[bytes]:
    return [_frame(length, index) for index, length in enumerate(sizes)]


@settings(max_examples=150)
@given(case=_frames_and_bound(), one_by_one=st.booleans())
# 81 bytes: the largest frame takes exactly PIECES_MAX pieces of 64 bytes.
@example(case=(81, [FRAME_SIZE_MAX, 0, 81, 82, 1]), one_by_one=False)
@example(case=(64, [PIECES_MAX * (64 - HEADER_SIZE), 64, 65]), one_by_one=False)
@example(case=(UDP_PAYLOAD_MAX, [FRAME_SIZE_MAX, UDP_PAYLOAD_MAX, FRAME_MAX_BYTES]), one_by_one=True)
def test_expand_then_feed_gives_back_the_frames_in_order(case, one_by_one):
    bound, sizes = case
    frames = _frames(sizes)
    sent, received = FragmentStats(), FragmentStats()
    splitter = Splitter(9, bound, sent)
    long_frames = [frame for frame in frames if len(frame) > bound]
    assert splitter.needed(frames) == bool(long_frames)
    datagrams = splitter.expand(frames)
    assert all(len(data) <= bound for data in datagrams)
    piece_count = sum(-(-len(frame) // (bound - HEADER_SIZE)) for frame in long_frames)
    assert len(datagrams) == len(frames) - len(long_frames) + piece_count
    assert (sent.frames_split, sent.fragments_sent) == (len(long_frames), piece_count)

    reassembler = Reassembler(received)
    if one_by_one:
        out = _feed_one_by_one(reassembler, datagrams)
    else:
        out = []
        reassembler.feed(datagrams, SOURCE, out)
    assert out == frames
    assert all(type(frame) is bytes for frame in out)
    assert reassembler.partial_frames == 0
    assert received == FragmentStats(fragments_received=piece_count, frames_joined=len(long_frames))


def test_short_frames_go_unchanged_and_the_bound_is_inclusive():
    splitter = Splitter(1, 100)
    frames = [b"", b"x", _frame(99, 1), _frame(100, 2)]
    assert not splitter.needed(frames)
    assert splitter.expand(frames) == frames
    assert splitter.expand(tuple(frames)) == frames
    assert splitter.stats == FragmentStats()
    longer = _frame(101, 3)
    assert splitter.needed([b"x", longer])
    pieces = splitter.expand([longer])
    assert [len(piece) for piece in pieces] == [100, HEADER_SIZE + 101 - (100 - HEADER_SIZE)]
    assert splitter.piece_bytes == 100 - HEADER_SIZE and splitter.datagram_bytes == 100


@settings(max_examples=150)
@given(case=_frames_and_bound(max_frames=4), sender=st.integers(min_value=1, max_value=2**32 - 1))
def test_pieces_of_a_frame_are_equal_but_the_last_and_never_pass_the_bound(case, sender):
    bound, sizes = case
    frames = _frames(sizes)
    splitter = Splitter(sender, bound, serial=0)
    datagrams = splitter.expand(frames)
    serial = 0
    position = 0
    for frame in frames:
        if len(frame) <= bound:
            assert datagrams[position] is frame or datagrams[position] == frame
            position += 1
            continue
        serial += 1
        count = _header(datagrams[position])[7]
        pieces = datagrams[position:position + count]
        position += count
        assert count == -(-len(frame) // (bound - HEADER_SIZE)) >= 2
        assert all(len(piece) == bound for piece in pieces[:-1])
        assert HEADER_SIZE < len(pieces[-1]) <= bound
        assert [_header(piece) for piece in pieces] == [
            (MAGIC, VERSION, FRAGMENT_TYPE, 0, sender, serial, index, count) for index in range(count)]
        assert b"".join(piece[HEADER_SIZE:] for piece in pieces) == frame
    assert position == len(datagrams)


@settings(max_examples=150)
@given(data=st.data(), size=st.integers(min_value=2, max_value=FRAME_SIZE_MAX),
       bound=st.integers(min_value=64, max_value=4000))
def test_pieces_in_any_order_join_to_the_frame_once_the_last_arrives(data, size, bound):
    frame = _frame(size, size)
    # At most 200 pieces: permutations stay cheap (and within PIECES_MAX).
    pieces = split(frame, 3, 77, max(bound - HEADER_SIZE, -(-size // 200)))
    order = data.draw(st.permutations(range(len(pieces))))
    reassembler = Reassembler()
    out: list[bytes] = []
    for step, index in enumerate(order):
        reassembler.feed([pieces[index]], SOURCE, out)
        if step < len(order) - 1:
            assert out == [] and reassembler.partial_frames == (1 if len(pieces) > 1 else 0)
    assert out == [frame]
    assert reassembler.partial_frames == 0
    assert reassembler.stats.frames_joined == 1
    assert reassembler.stats.fragments_received == len(pieces)


@settings(max_examples=100)
@given(data=st.data(), sizes=st.lists(st.integers(min_value=200, max_value=3000), min_size=1, max_size=6))
def test_interleaved_pieces_of_several_frames_each_join_when_their_last_arrives(data, sizes):
    splitter = Splitter(4, 181)
    frames = [_frame(size, index) for index, size in enumerate(sizes)]
    per_frame = [splitter.expand([frame]) for frame in frames]
    tagged = [(number, piece) for number, pieces in enumerate(per_frame) for piece in pieces]
    shuffled = data.draw(st.permutations(tagged))
    remaining = [len(pieces) for pieces in per_frame]
    expected: list[bytes] = []
    for number, _piece_data in shuffled:
        remaining[number] -= 1
        if remaining[number] == 0:
            expected.append(frames[number])
    reassembler = Reassembler()
    out: list[bytes] = []
    reassembler.feed([piece for _number, piece in shuffled], SOURCE, out)
    assert out == expected
    assert reassembler.partial_frames == 0


def test_other_datagrams_pass_through_in_place_between_pieces():
    splitter = Splitter(2, 100)
    first, second = _frame(240, 1), _frame(160, 2)
    a, b = splitter.expand([first]), splitter.expand([second])
    token = b"\xc0\x71\x01\x02token"
    short = [b"", b"ab", b"\x00\x00\x10"]  # too short to carry a type byte: never a piece
    datagrams = [a[0], short[0], b[0], a[1], short[1], b[1], token, a[2], short[2]]
    reassembler = Reassembler()
    out: list[bytes] = []
    reassembler.feed(datagrams, SOURCE, out)
    assert out == [b"", b"ab", second, token, first, b"\x00\x00\x10"]
    assert reassembler.stats.fragments_received == len(a) + len(b)


# -- loss, memory, duplicates ----------------------------------------------------------------


def test_a_lost_piece_loses_the_frame_and_the_oldest_partial_frame_is_evicted():
    partial_max = 4
    splitter = Splitter(5, 64)
    reassembler = Reassembler(partial_max=partial_max)
    stats = reassembler.stats
    frames = [_frame(200, index) for index in range(partial_max + 2)]
    held_back = []
    out: list[bytes] = []
    for number, frame in enumerate(frames[:partial_max]):
        pieces = splitter.expand([frame])
        held_back.append(pieces[-1])
        reassembler.feed(pieces[:-1], SOURCE, out)  # the last piece is lost
        assert reassembler.partial_frames == number + 1
    assert out == [] and stats.fragment_partials_evicted == 0 and stats.frames_joined == 0
    # One more partial frame: the oldest (frame 0) goes, counted.
    pieces = splitter.expand([frames[partial_max]])
    reassembler.feed(pieces[:1], SOURCE, out)
    assert stats.fragment_partials_evicted == 1
    assert reassembler.partial_frames == partial_max
    # Frame 0's late piece no longer completes it (a new partial, evicting frame 1);
    # frame 2's does.
    reassembler.feed([held_back[0]], SOURCE, out)
    assert out == [] and stats.fragment_partials_evicted == 2
    reassembler.feed([held_back[2]], SOURCE, out)
    assert out == [frames[2]]
    reassembler.feed([held_back[1]], SOURCE, out)
    assert out == [frames[2]]
    assert reassembler.partial_frames <= partial_max
    assert stats.fragments_malformed == stats.fragments_duplicate == 0


@settings(max_examples=100)
@given(seed=st.integers(min_value=0, max_value=2**32), partial_max=st.integers(min_value=1, max_value=8),
       frames=st.integers(min_value=1, max_value=40))
def test_memory_stays_bounded_whatever_pieces_are_lost(seed, partial_max, frames):
    rng = random.Random(seed)
    splitter = Splitter(1, 80)
    reassembler = Reassembler(partial_max=partial_max)
    out: list[bytes] = []
    # The model: every frame's first piece opens a partial frame (evicting the
    # oldest when partial_max are held); a complete frame's closes it again.
    held: list[int] = []
    evicted = complete = 0
    for number in range(frames):
        pieces = splitter.expand([_frame(rng.randrange(100, 600), number)])
        lose = rng.random() < 0.5
        if lose:
            del pieces[rng.randrange(len(pieces))]
        if len(held) >= partial_max:
            held.pop(0)
            evicted += 1
        if lose:
            held.append(number)
        else:
            complete += 1
        reassembler.feed(pieces, rng.choice(["127.0.0.1", "127.0.0.2"]), out)
        assert reassembler.partial_frames == len(held) <= partial_max
    assert len(out) == complete == reassembler.stats.frames_joined
    assert reassembler.stats.fragment_partials_evicted == evicted


def test_the_default_bound_on_partial_frames_is_partial_max():
    splitter = Splitter(1, 64)
    reassembler = Reassembler()
    for number in range(PARTIAL_MAX + 10):
        reassembler.feed(splitter.expand([_frame(100, number)])[:1], SOURCE, [])
    assert reassembler.partial_frames == PARTIAL_MAX
    assert reassembler.stats.fragment_partials_evicted == 10


def test_duplicate_pieces_are_counted_and_ignored():
    frame = _frame(500, 1)
    pieces = split(frame, 6, 10, 150)
    assert len(pieces) == 4
    reassembler = Reassembler()
    forged = pieces[1][:HEADER_SIZE] + b"z" * 150  # same piece number, other bytes: the first one wins
    out = _feed_one_by_one(reassembler, [pieces[0], pieces[1], pieces[0], forged, pieces[2], pieces[2]])
    assert out == [] and reassembler.partial_frames == 1
    assert reassembler.stats.fragments_duplicate == 3
    out = _feed_one_by_one(reassembler, [pieces[3]])
    assert out == [frame]
    stats = reassembler.stats
    assert (stats.fragments_received, stats.frames_joined, stats.fragments_duplicate,
            stats.fragments_malformed) == (7, 1, 3, 0)


# -- malformed pieces ------------------------------------------------------------------------

_MALFORMED = {
    "type byte only": b"\xc0\x71\x01\x10",
    "truncated header": _piece()[:HEADER_SIZE - 1],
    "header without payload": _piece(payload=b""),
    "bad magic": _piece(magic=0xC072),
    "bad version": _piece(version=VERSION + 1),
    "flags set": _piece(flags=1),
    "sender 0": _piece(sender=0),
    "index == count": _piece(index=2, count=2),
    "index > count": _piece(index=0xFFFF, count=3),
    "count 0": _piece(index=0, count=0),
    "count > PIECES_MAX": _piece(index=0, count=PIECES_MAX + 1),
    "one piece beyond FRAME_MAX_BYTES": _piece(index=0, count=2, payload=b"x" * (FRAME_MAX_BYTES + 1)),
}


@pytest.mark.parametrize("data", list(_MALFORMED.values()), ids=list(_MALFORMED))
def test_a_malformed_piece_is_counted_and_dropped(data):
    reassembler = Reassembler()
    out: list[bytes] = []
    reassembler.feed([data], SOURCE, out)
    assert out == []
    assert reassembler.partial_frames == 0
    assert reassembler.stats == FragmentStats(fragments_received=1, fragments_malformed=1)
    # The reassembler goes on: a good frame still joins.
    frame = _frame(300, 5)
    reassembler.feed(split(frame, 7, 1, 100), SOURCE, out)
    assert out == [frame]


def test_the_truncated_header_is_malformed_at_every_length():
    piece = _piece()
    reassembler = Reassembler()
    out: list[bytes] = []
    lengths = range(4, HEADER_SIZE + 1)
    reassembler.feed([piece[:length] for length in lengths], SOURCE, out)
    assert out == []
    assert reassembler.stats.fragments_malformed == reassembler.stats.fragments_received == len(lengths)


def test_a_piece_count_that_disagrees_with_earlier_pieces_is_malformed():
    frame = _frame(300, 1)
    pieces = split(frame, 7, 1, 100)
    reassembler = Reassembler()
    out: list[bytes] = []
    reassembler.feed([pieces[0], _piece(sender=7, serial=1, index=1, count=4, payload=b"y" * 100),
                      _piece(sender=7, serial=1, index=3, count=4, payload=b"y" * 100)], SOURCE, out)
    assert out == [] and reassembler.stats.fragments_malformed == 2
    # The frame's own pieces still complete it.
    reassembler.feed(pieces[1:], SOURCE, out)
    assert out == [frame]
    assert reassembler.stats.fragments_duplicate == 0 and reassembler.partial_frames == 0


def test_a_frame_beyond_frame_max_bytes_is_dropped_and_its_pieces_forgotten():
    half = FRAME_MAX_BYTES // 2
    reassembler = Reassembler()
    out: list[bytes] = []
    reassembler.feed([_piece(serial=1, index=0, count=2, payload=b"a" * half),
                      _piece(serial=1, index=1, count=2, payload=b"b" * (half + 1))], SOURCE, out)
    assert out == [] and reassembler.partial_frames == 0
    assert reassembler.stats.fragments_malformed == 1 and reassembler.stats.frames_joined == 0
    # Exactly FRAME_MAX_BYTES joins.
    reassembler.feed([_piece(serial=2, index=1, count=2, payload=b"b" * half),
                      _piece(serial=2, index=0, count=2, payload=b"a" * half)], SOURCE, out)
    assert out == [b"a" * half + b"b" * half]
    # Many small pieces that add up past the bound: the one crossing it drops the frame.
    count = PIECES_MAX
    payload = b"c" * (FRAME_MAX_BYTES // count + 1)
    for index in range(count):
        reassembler.feed([_piece(serial=3, index=index, count=count, payload=payload)], SOURCE, out)
    assert len(out) == 1 and reassembler.partial_frames == 1  # the pieces after it start over
    assert reassembler.stats.fragments_malformed == 2


@settings(max_examples=300)
@given(body=st.binary(min_size=0, max_size=60), head=st.binary(min_size=3, max_size=3))
def test_garbage_with_the_piece_type_never_raises(body, head):
    data = head + bytes([FRAGMENT_TYPE]) + body
    reassembler = Reassembler(partial_max=2)
    out: list[bytes] = []
    reassembler.feed([data, data, data[:-1] if body else data], SOURCE, out)
    stats = reassembler.stats
    assert stats.fragments_received == 3
    assert reassembler.partial_frames <= 2
    assert stats.frames_joined + stats.fragments_malformed + stats.fragments_duplicate <= 3
    assert len(out) == stats.frames_joined


@settings(max_examples=200)
@given(seed=st.integers(min_value=0, max_value=2**32), flips=st.integers(min_value=1, max_value=6))
def test_pieces_with_corrupted_headers_never_raise_and_memory_stays_bounded(seed, flips):
    rng = random.Random(seed)
    frames = [_frame(rng.randrange(61, 400), seed + n) for n in range(5)]  # all cut
    datagrams = Splitter(3, 60).expand(frames)
    for _ in range(flips):
        position = rng.randrange(len(datagrams))
        damaged = bytearray(datagrams[position])
        spot = rng.choice([0, 1, 2, 4, 5, 8, 9, 12, 13, 14, 15, 16])
        damaged[spot] = rng.randrange(256)
        datagrams[position] = bytes(damaged)
    reassembler = Reassembler(partial_max=3)
    out: list[bytes] = []
    reassembler.feed(datagrams, SOURCE, out)
    assert reassembler.partial_frames <= 3
    assert reassembler.stats.fragments_received == len(datagrams)
    assert len(out) == reassembler.stats.frames_joined


# -- keys: source, sender, serial ------------------------------------------------------------


def test_pieces_from_two_sources_with_the_same_sender_and_serial_do_not_mix():
    first, second = _frame(400, 1), _frame(400, 2)
    from_one = split(first, 1, 5, 100)
    from_two = split(second, 1, 5, 100)
    assert [_header(piece) for piece in from_one] == [_header(piece) for piece in from_two]
    reassembler = Reassembler()
    out: list[bytes] = []
    for one, two in zip(from_one[:-1], from_two[:-1]):
        reassembler.feed([one], "127.0.0.1", out)
        reassembler.feed([two], "127.0.0.2", out)
    assert out == [] and reassembler.partial_frames == 2
    reassembler.feed([from_two[-1]], "127.0.0.2", out)
    reassembler.feed([from_one[-1]], "127.0.0.1", out)
    assert out == [second, first]
    assert reassembler.stats.fragments_duplicate == reassembler.stats.fragments_malformed == 0
    # A piece from the wrong source completes nothing.
    out.clear()
    reassembler.feed(from_one[:-1], "127.0.0.1", out)
    reassembler.feed([from_one[-1]], "127.0.0.2", out)
    assert out == [] and reassembler.partial_frames == 2


def test_other_senders_and_serials_are_other_frames():
    first, second, third = _frame(300, 1), _frame(300, 2), _frame(300, 3)
    pieces = [split(first, 1, 9, 100), split(second, 2, 9, 100), split(third, 1, 10, 100)]
    reassembler = Reassembler()
    out: list[bytes] = []
    reassembler.feed([group[index] for index in range(3) for group in pieces], SOURCE, out)
    assert out == [first, second, third]
    assert reassembler.stats.fragments_duplicate == 0


def test_the_serial_wraps_at_2_to_the_32():
    assert _header(split(b"x" * 10, 1, 2**32 + 7, 5)[0])[5] == 7
    assert _header(split(b"x" * 10, 1, -1, 5)[0])[5] == 2**32 - 1
    splitter = Splitter(8, 64)
    splitter._serial = 2**32 - 2
    frames = [_frame(100, n) for n in range(3)]
    datagrams = splitter.expand(frames)
    serials = []
    for data in datagrams:
        if _header(data)[5] not in serials:
            serials.append(_header(data)[5])
    assert serials == [2**32 - 1, 0, 1]
    reassembler = Reassembler()
    out: list[bytes] = []
    reassembler.feed(datagrams, SOURCE, out)
    assert out == frames


def test_each_cut_frame_takes_the_next_serial_and_short_ones_take_none():
    splitter = Splitter(8, 64, serial=0)
    datagrams = splitter.expand([_frame(100, 1), b"short", _frame(100, 2), _frame(64, 3), _frame(65, 4)])
    serials = [_header(data)[5] for data in datagrams if len(data) > 3 and data[3] == FRAGMENT_TYPE]
    assert sorted(set(serials)) == [1, 2, 3]
    assert splitter.expand([_frame(200, 5)])[0][9:13] == (4).to_bytes(4, "big")


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("datagram_bytes", [-1, 0, 1, HEADER_SIZE - 1, HEADER_SIZE])
def test_splitter_refuses_a_datagram_without_room_for_a_piece(datagram_bytes):
    with pytest.raises(ValueError, match="no room"):
        Splitter(1, datagram_bytes)


def test_the_smallest_datagram_carries_one_byte_per_piece():
    splitter = Splitter(1, HEADER_SIZE + 1)
    frame = b"abcdefghijklmnopqrstuvwxyz"
    pieces = splitter.expand([frame])
    assert len(pieces) == len(frame) and all(len(piece) == HEADER_SIZE + 1 for piece in pieces)
    out: list[bytes] = []
    Reassembler().feed(pieces, SOURCE, out)
    assert out == [frame]


def test_split_refuses_more_than_pieces_max_pieces_and_frames_beyond_frame_max_bytes():
    assert len(split(b"x" * PIECES_MAX, 1, 1, 1)) == PIECES_MAX
    with pytest.raises(ValueError, match="does not fit"):
        split(b"x" * (PIECES_MAX + 1), 1, 1, 1)
    with pytest.raises(ValueError, match="does not fit"):
        split(b"x" * (64 * PIECES_MAX + 1), 1, 1, 64)
    assert len(split(b"x" * FRAME_MAX_BYTES, 1, 1, UDP_PAYLOAD_MAX - HEADER_SIZE)) == 2
    with pytest.raises(ValueError, match="does not fit"):
        split(b"x" * (FRAME_MAX_BYTES + 1), 1, 1, UDP_PAYLOAD_MAX - HEADER_SIZE)
    for piece_bytes in (0, -5):
        with pytest.raises(ValueError, match="must be positive"):
            split(b"x" * 10, 1, 1, piece_bytes)
    # Through the splitter too: a frame too long for PIECES_MAX pieces of its datagrams.
    splitter = Splitter(1, HEADER_SIZE + 10)
    with pytest.raises(ValueError, match="does not fit"):
        splitter.expand([b"x" * (10 * PIECES_MAX + 1)])
    assert splitter.stats.frames_split == splitter.stats.fragments_sent == 0


def test_stats_default_to_their_own_and_may_be_shared():
    assert Reassembler().stats == FragmentStats() and Splitter(1, 100).stats == FragmentStats()
    shared = FragmentStats()
    splitter, reassembler = Splitter(1, 100, shared), Reassembler(shared)
    out: list[bytes] = []
    reassembler.feed(splitter.expand([_frame(498, 1)]), SOURCE, out)
    assert shared == FragmentStats(frames_split=1, fragments_sent=6, fragments_received=6, frames_joined=1)


def test_reassembler_needs_room_for_one_partial_frame():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="partial_max"):
            Reassembler(partial_max=bad)


def test_a_new_splitter_does_not_number_frames_as_the_last_one_did():
    # A restarted node: its pieces must not join a partial frame its last
    # incarnation left (same sender, same serial) at the receivers.
    first = [Splitter(7, 100).expand([b"x" * 500])[0][9:13] for _ in range(4)]
    assert len(set(first)) > 1
