"""The EVS event log: one JSONL file per node incarnation (totem.md §1.1).

Every record carries ``node``, ``inc`` (the incarnation, bumped at every
process start), ``t`` (nanoseconds on the node's monotonic clock, or the
simulator's virtual clock) and ``ev``, plus the fields of its kind::

    conf       kind ("REG"|"TRANS"), id, members
    submit     mid, sseq, safe, crc, deps
    originate  mid, ring, seq, sseq
    deliver    mid, sender, sinc, sseq, orig_ring, seq, safe, crc, in_conf
    crash      (written by the harness when it kills the process)
    stop       (clean shutdown)

A ring id is ``[rep, seq]``, a TRANS id ``[[old_rep, old_seq], [new_rep,
new_seq]]``, ``members`` a sorted list of node ids, ``crc`` the unsigned
``zlib.crc32`` of the payload, ``deps`` a list of mids or null. The file of
node 3's second incarnation is ``n3.2.jsonl``. The checker is totemd.evs.

Writing policy. Records are buffered and written with one ``os.write`` when
``flush()`` is called, when the buffer holds ``flush_every`` records, and at
``stop``/``crash``/``close``. A daemon calls ``flush()`` once per event-loop
iteration *before it sends packets*: whatever another node can observe of this
node (an originated message, a token) is then in the kernel before the packet
leaves, and a SIGKILL loses only records nobody else saw the effect of.

In memory. With ``directory=None`` nothing is written: the records stay in
``EventLog.records`` as dicts (the simulator checks thousands of seeds and
hands ``{(node, inc): log.records}`` straight to ``totemd.evs.check_records``).

Harness records (``{"ev": "quiet", "start": t0, "end": t1}``, see
totemd.evs) go to ``harness.jsonl`` in the same directory; ``write_quiet``
writes one.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from totemd.durable import write_text_durably

__all__ = [
    "EventLog",
    "HARNESS_FILE",
    "append_crash",
    "incarnation_file_name",
    "next_incarnation",
    "write_quiet",
]

HARNESS_FILE = "harness.jsonl"
INCARNATION_FILE = "incarnation"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# A mid made of these characters is written into the JSON text as is (the
# daemon's mids are "<node>.<inc>.<sseq>" and "unframed.<node>.<crc>"); any
# other goes through the JSON encoder.
_PLAIN_MID = re.compile(r"[0-9A-Za-z._:-]*").fullmatch


def incarnation_file_name(node: int, inc: int) -> str:
    """The log file name of one node incarnation, ``n<node>.<inc>.jsonl``."""
    return f"n{node}.{inc}.jsonl"


def _ring(ring_id: Sequence[int]) -> list[int]:
    rep, seq = ring_id
    return [int(rep), int(seq)]


def _conf_id(kind: str, conf_id: Any) -> list[Any]:
    if kind == "REG":
        return _ring(conf_id)
    old, new = conf_id
    return [_ring(old), _ring(new)]


class EventLog:
    """The event log of one node incarnation.

    Use it as a context manager, or call ``close()``. Methods take an
    explicit ``t`` (the simulator's virtual clock); without it the clock given
    at construction is read.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        node: int,
        inc: int,
        clock: Callable[[], int] = time.monotonic_ns,
        *,
        flush_every: int = 512,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Open (create or append to) ``<directory>/n<node>.<inc>.jsonl``.

        Args:
            directory: where to write; None keeps the records in memory
                (unless ``path`` is given).
            node: this node's id.
            inc: this process's incarnation (>= 1).
            clock: nanosecond clock used when a method gets no ``t``.
            flush_every: write the buffer out once it holds this many records.
            path: write to this file instead (``--evs-log FILE``); only with
                ``directory=None``.

        Raises:
            ValueError: node or inc out of range, or both directory and path.
            OSError: the file cannot be opened.
        """
        if node < 1 or inc < 1:
            raise ValueError(f"node and inc must be >= 1, got node={node} inc={inc}")
        self.node = node
        self.inc = inc
        self._clock = clock
        self._flush_every = max(1, flush_every)
        self._buffer: list[str] = []
        self._closed = False
        self.records: list[dict[str, Any]] | None = None
        self.path: Path | None = None
        self._fd = -1
        if directory is not None and path is not None:
            raise ValueError("give the event log a directory or a path, not both")
        if path is not None:
            self.path = Path(path)
        elif directory is not None:
            self.path = Path(directory) / incarnation_file_name(node, inc)
        if self.path is None:
            self.records = []
        else:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # Writing to a file, the hot record kinds are formatted as text directly.
        self._fast = self.records is None
        self._head = f'{{"node":{int(node)},"inc":{int(inc)},"t":'
        self._conf_key: Any = object()
        self._conf_text = "null"

    # -- the record kinds -------------------------------------------------

    def conf(self, kind: str, id: Any, members: Iterable[int], t: int | None = None) -> None:  # noqa: A002
        """A configuration delivered: kind "REG" (id = ring id) or "TRANS"
        (id = (old ring id, new ring id))."""
        if kind not in ("REG", "TRANS"):
            raise ValueError(f"conf kind must be REG or TRANS, got {kind!r}")
        self._add(t, "conf", {"kind": kind, "id": _conf_id(kind, id),
                              "members": sorted(int(m) for m in members)})

    def submit(self, mid: str, sseq: int, safe: bool, crc: int, deps: Sequence[str] | None,
               t: int | None = None) -> None:
        """The application called send (sseq counts from 1 per incarnation)."""
        if self._fast and _PLAIN_MID(mid):
            self._line(t, f'"submit","mid":"{mid}","sseq":{int(sseq)},'
                          f'"safe":{"true" if safe else "false"},"crc":{int(crc)},"deps":'
                          + ("null}" if deps is None else _deps_text(deps) + "}"))
            return
        self._add(t, "submit", {"mid": mid, "sseq": sseq, "safe": bool(safe), "crc": crc,
                                "deps": None if deps is None else list(deps)})

    def originate(self, mid: str, ring: Sequence[int], seq: int, sseq: int,
                  t: int | None = None) -> None:
        """The protocol gave the message a sequence number on the token."""
        if self._fast and _PLAIN_MID(mid):
            rep, ring_seq = ring
            self._line(t, f'"originate","mid":"{mid}","ring":[{int(rep)},{int(ring_seq)}],'
                          f'"seq":{int(seq)},"sseq":{int(sseq)}}}')
            return
        self._add(t, "originate", {"mid": mid, "ring": _ring(ring), "seq": seq, "sseq": sseq})

    def deliver(self, mid: str, sender: int, sinc: int, sseq: int, orig_ring: Sequence[int],
                seq: int, safe: bool, crc: int, in_conf: Any, t: int | None = None) -> None:
        """The message was delivered to the application here. ``in_conf`` is
        the id of the last conf this incarnation delivered (a ring id or a
        TRANS id; None before any)."""
        if self._fast and _PLAIN_MID(mid):
            if type(in_conf) is not tuple:  # noqa: E721 - only an immutable id is cached
                conf_text = _dumps(_any_conf_id(in_conf))
            elif in_conf == self._conf_key:
                conf_text = self._conf_text
            else:
                conf_text = self._conf_text = _dumps(_any_conf_id(in_conf))
                self._conf_key = in_conf
            rep, ring_seq = orig_ring
            self._line(t, f'"deliver","mid":"{mid}","sender":{int(sender)},"sinc":{int(sinc)},'
                          f'"sseq":{int(sseq)},"orig_ring":[{int(rep)},{int(ring_seq)}],'
                          f'"seq":{int(seq)},"safe":{"true" if safe else "false"},"crc":{int(crc)},'
                          f'"in_conf":{conf_text}}}')
            return
        self._add(t, "deliver", {
            "mid": mid, "sender": sender, "sinc": sinc, "sseq": sseq,
            "orig_ring": _ring(orig_ring), "seq": seq, "safe": bool(safe), "crc": crc,
            "in_conf": _any_conf_id(in_conf),
        })

    def crash(self, t: int | None = None) -> None:
        """The harness killed this incarnation (last record; then close)."""
        self._add(t, "crash", {})
        self.close()

    def stop(self, t: int | None = None) -> None:
        """Clean shutdown (last record; then close)."""
        self._add(t, "stop", {})
        self.close()

    # -- buffering --------------------------------------------------------

    def _line(self, t: int | None, rest: str) -> None:
        """Buffer one record written as text: the common head, then ``rest``
        (``"<ev>", <fields>}``). The same bytes ``_add`` would produce, at a
        fraction of the cost (no dict, no encoder walk)."""
        if self._closed:
            raise ValueError(f"event log of node {self.node} inc {self.inc} is closed")
        self._buffer.append(f'{self._head}{int(self._clock() if t is None else t)},"ev":{rest}')
        if len(self._buffer) >= self._flush_every:
            self.flush()

    def _add(self, t: int | None, ev: str, fields: dict[str, Any]) -> None:
        if self._closed:
            raise ValueError(f"event log of node {self.node} inc {self.inc} is closed")
        record = {"node": self.node, "inc": self.inc,
                  "t": int(self._clock() if t is None else t), "ev": ev}
        record.update(fields)
        if self.records is not None:
            self.records.append(record)
            return
        self._buffer.append(_dumps(record))
        if len(self._buffer) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records to the file with one write."""
        if not self._buffer or self._fd < 0:
            return
        data = ("\n".join(self._buffer) + "\n").encode()
        self._buffer.clear()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _deps_text(deps: Sequence[str]) -> str:
    """The JSON list of ``deps`` (plain mids joined directly)."""
    if all(_PLAIN_MID(mid) for mid in deps):
        return '["' + '","'.join(deps) + '"]' if deps else "[]"
    return _dumps(list(deps))


def _any_conf_id(conf_id: Any) -> list[Any] | None:
    """A ring id ``[rep, seq]`` or a TRANS id ``[[..], [..]]``; None (a
    delivery before any configuration, a bug the checker's S6 reports) is
    written as null rather than crashing the node that logs it."""
    if conf_id is None:
        return None
    first = conf_id[0]
    if isinstance(first, (list, tuple)):
        return _conf_id("TRANS", conf_id)
    return _ring(conf_id)


def next_incarnation(state_dir: str | os.PathLike[str]) -> int:
    """Read the incarnation counter kept in ``state_dir``, add one, store it
    durably (write to a temporary file, fsync, rename) and return it.

    The first call on an empty directory returns 1.

    Raises:
        ValueError: the counter file exists but does not hold a positive
            integer (never guess: a wrong incarnation would merge two
            processes' logs).
        OSError: the directory cannot be read or written.
    """
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / INCARNATION_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        current = 0
    else:
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{path}: incarnation counter is not a positive integer: {text!r}")
        current = int(text)
    new = current + 1
    write_text_durably(path, f"{new}\n")
    return new


def append_crash(directory: str | os.PathLike[str], node: int, inc: int, t: int) -> None:
    """Append a ``crash`` record to an incarnation's file (the harness calls
    this after it killed the process; the process cannot write it itself)."""
    record = {"node": node, "inc": inc, "t": int(t), "ev": "crash"}
    path = Path(directory) / incarnation_file_name(node, inc)
    _append_line(path, _dumps(record))


def write_quiet(directory: str | os.PathLike[str], start: int, end: int, drain: int = 0) -> None:
    """Declare a quiet window for the liveness rules (see totemd.evs): the
    network is healed and stable and the cluster converged by ``start``;
    nothing fails until ``end``; messages submitted up to ``end - drain`` must
    be delivered by ``end``. Times are on the clock of the node records."""
    if end < start or drain < 0 or drain > end - start:
        raise ValueError(f"bad quiet window start={start} end={end} drain={drain}")
    record: dict[str, Any] = {"ev": "quiet", "start": int(start), "end": int(end)}
    if drain:
        record["drain"] = int(drain)
    _append_line(Path(directory) / HARNESS_FILE, _dumps(record))


def _append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
