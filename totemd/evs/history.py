"""Reading and indexing event logs for the EVS rules.

``load_directory`` reads ``n<node>.<inc>.jsonl`` files (and ``harness.jsonl``)
and ``build_history`` validates records against the schema of totem.md §1.1
and builds the indexes the rules share, in one pass over every record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .errors import InputError

RingId = tuple[int, int]
TransId = tuple[RingId, RingId]
# A configuration key: ("REG", ring id) or ("TRANS", (old ring id, new ring id)).
ConfKey = tuple[str, Any]

# in_conf of a delivery logged before any configuration (JSON null).
NO_CONF: ConfKey = ("NONE", None)

FILE_PATTERN = re.compile(r"^n(\d+)\.(\d+)\.jsonl$")
HARNESS_FILE = "harness.jsonl"


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """A quiet window for the liveness rules (times on the records' clock).

    The harness declares: the network was healed and stable, and the cluster
    had time to converge, by ``start``; no fault happens until ``end``;
    messages submitted up to ``end - drain`` must be delivered by ``end``.
    """

    start: int
    end: int
    drain: int = 0


@dataclass(slots=True)
class Conf:
    """One conf record of an incarnation."""

    kind: str
    id: Any
    members: tuple[int, ...]
    t: int
    index: int  # position in the incarnation's conf list

    @property
    def key(self) -> ConfKey:
        return (self.kind, self.id)


@dataclass(slots=True)
class Delivery:
    """One deliver record, with the conf it happened in (by this log)."""

    mid: str
    sender: int
    sinc: int
    sseq: int
    orig_ring: RingId
    seq: int
    safe: bool
    crc: int
    in_conf: ConfKey
    t: int
    line: int
    conf: Conf | None  # the last conf before it in this log
    # A repeat of a mid this incarnation already delivered: S2 reports it and
    # the other rules look only at first deliveries, so one duplicate is
    # reported once.
    duplicate: bool = False


@dataclass(slots=True)
class Incarnation:
    """Everything one node incarnation logged, indexed."""

    node: int
    inc: int
    source: str
    confs: list[Conf] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    submits: dict[str, dict[str, Any]] = field(default_factory=dict)
    originates: list[dict[str, Any]] = field(default_factory=list)
    delivered_mids: set[str] = field(default_factory=set)
    # Conf records and deliveries in log order: ("conf", ConfKey) / ("msg", mid).
    sequence: list[tuple[str, Any]] = field(default_factory=list)
    stopped: bool = False
    crash_logged: bool = False
    first_t: int = 0
    end_t: int = 0
    records: int = 0

    @property
    def name(self) -> str:
        return f"n{self.node}.{self.inc}"

    @property
    def crashed(self) -> bool:
        """Crashed: a crash record, or the file ends without stop."""
        return not self.stopped

    @property
    def first_deliveries(self) -> list[Delivery]:
        """Deliveries without repeats (see Delivery.duplicate)."""
        return [d for d in self.deliveries if not d.duplicate]

    def delivered_in(self) -> dict[ConfKey, list[Delivery]]:
        """First deliveries grouped by the conf they happened in (by this log)."""
        grouped: dict[ConfKey, list[Delivery]] = {}
        for delivery in self.deliveries:
            if delivery.conf is not None and not delivery.duplicate:
                grouped.setdefault(delivery.conf.key, []).append(delivery)
        return grouped

    def running_at(self, t: int) -> bool:
        return self.first_t <= t <= self.end_t


@dataclass(slots=True)
class History:
    """All incarnations plus shared indexes."""

    incarnations: list[Incarnation]
    quiet: list[QuietWindow]
    notes: list[str]
    by_key: dict[tuple[int, int], Incarnation] = field(default_factory=dict)
    by_node: dict[int, list[Incarnation]] = field(default_factory=dict)
    # ConfKey -> incarnations that installed it (in order of incarnations).
    installed: dict[ConfKey, list[Incarnation]] = field(default_factory=dict)
    # mid -> (incarnation, submit record), for every submit (S1 needs all).
    submits: dict[str, list[tuple[Incarnation, dict[str, Any]]]] = field(default_factory=dict)
    # (sender, sinc, ring) -> mids in origination order.
    originations: dict[tuple[int, int, RingId], list[str]] = field(default_factory=dict)
    # mid -> origin ring, from deliveries and originations.
    origin_ring: dict[str, RingId] = field(default_factory=dict)
    records: int = 0


def conf_label(key: ConfKey) -> str:
    """``REG [1,4]`` / ``TRANS [[1,4],[1,8]]`` for witnesses."""
    kind, conf_id = key
    if conf_id is None:
        return "no configuration (null)"
    return f"{kind} {json.dumps(conf_id, separators=(',', ':'))}".replace("(", "[").replace(")", "]")


def ring_label(ring: RingId) -> str:
    return f"[{ring[0]},{ring[1]}]"


# -- validation -------------------------------------------------------------


class _Checker:
    """Field validation for one source; raises InputError with the line."""

    __slots__ = ("source", "line")

    def __init__(self, source: str) -> None:
        self.source = source
        self.line = 0

    def fail(self, reason: str) -> InputError:
        return InputError(self.source, self.line, reason)

    def field(self, record: Mapping[str, Any], name: str) -> Any:
        try:
            return record[name]
        except KeyError:
            raise self.fail(f"{record.get('ev', 'record')} record has no {name!r} field") from None

    def integer(self, record: Mapping[str, Any], name: str) -> int:
        value = self.field(record, name)
        if type(value) is not int:
            raise self.fail(f"{name!r} must be an integer, got {value!r}")
        return value

    def boolean(self, record: Mapping[str, Any], name: str) -> bool:
        value = self.field(record, name)
        if type(value) is not bool:
            raise self.fail(f"{name!r} must be true or false, got {value!r}")
        return value

    def string(self, record: Mapping[str, Any], name: str) -> str:
        value = self.field(record, name)
        if type(value) is not str or not value:
            raise self.fail(f"{name!r} must be a non-empty string, got {value!r}")
        return value

    def ring(self, value: Any, name: str) -> RingId:
        if (
            isinstance(value, (list, tuple)) and len(value) == 2
            and type(value[0]) is int and type(value[1]) is int
        ):
            return (value[0], value[1])
        raise self.fail(f"{name!r} must be a ring id [rep, seq], got {value!r}")

    def conf_key(self, value: Any, name: str) -> ConfKey:
        """A REG ring id or a TRANS id, told apart by shape; null (a delivery
        before any configuration, which S6 reports) is ("NONE", None)."""
        if value is None:
            return NO_CONF
        if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(
            value[0], (list, tuple)
        ):
            return ("TRANS", (self.ring(value[0], name), self.ring(value[1], name)))
        return ("REG", self.ring(value, name))


def _records_of_file(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(source, 0, f"cannot read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(source, line, "not UTF-8") from None
    lines = text.split("\n")
    torn_allowed = not text.endswith("\n")
    if not torn_allowed:
        lines.pop()
        fast = _parse_all_at_once(lines)
        if fast is not None:
            return fast
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if torn_allowed and number == len(lines):
                # A last line cut short by a kill: the process died mid-write.
                notes.append(f"{source}:{number}: torn last line ignored (crashed mid-write)")
                break
            raise InputError(source, number, f"not JSON: {error.msg}") from None
        if not isinstance(record, dict):
            raise InputError(source, number, "a record must be a JSON object")
        record["__line"] = number
        records.append(record)
    return records


def _parse_all_at_once(lines: list[str]) -> list[dict[str, Any]] | None:
    """Parse a well-formed file in one json.loads (several times faster than
    line by line). None when anything is unusual (a blank line, bad JSON, a
    non-object): the caller then goes line by line and can name the line.
    Records keep their position, so line number = index + 1."""
    if not lines or any(not line or line.isspace() for line in lines):
        return None
    try:
        records = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        return None
    if len(records) != len(lines) or any(type(r) is not dict for r in records):
        return None
    return records


def load_directory(
    path: str | Path,
) -> tuple[dict[tuple[int, int], list[dict[str, Any]]], list[QuietWindow], list[str], dict[tuple[int, int], str]]:
    """Read every incarnation file and the harness file of a directory.

    Returns:
        (records by (node, inc), quiet windows, notes, source file by (node, inc)).

    Raises:
        InputError: the directory or a file cannot be read or parsed.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise InputError(str(directory), 0, "not a directory")
    notes: list[str] = []
    by_incarnation: dict[tuple[int, int], list[dict[str, Any]]] = {}
    sources: dict[tuple[int, int], str] = {}
    for entry in sorted(directory.iterdir()):
        match = FILE_PATTERN.match(entry.name)
        if match is None:
            continue
        key = (int(match.group(1)), int(match.group(2)))
        by_incarnation[key] = _records_of_file(entry, notes)
        sources[key] = str(entry)
    if not by_incarnation:
        raise InputError(str(directory), 0, "no n<node>.<inc>.jsonl files")
    quiet: list[QuietWindow] = []
    harness = directory / HARNESS_FILE
    if harness.exists():
        quiet = parse_quiet(_records_of_file(harness, notes), str(harness))
    return by_incarnation, quiet, notes, sources


def parse_quiet(records: Iterable[Mapping[str, Any]], source: str = "<harness>") -> list[QuietWindow]:
    """Quiet windows from harness records (other harness records are ignored)."""
    check = _Checker(source)
    windows = []
    for number, record in enumerate(records, start=1):
        check.line = record.get("__line", number)
        if record.get("ev") != "quiet":
            continue
        start, end = check.integer(record, "start"), check.integer(record, "end")
        drain = record.get("drain", 0)
        if type(drain) is not int or drain < 0 or end < start or drain > end - start:
            raise check.fail(f"bad quiet window start={start} end={end} drain={drain!r}")
        windows.append(QuietWindow(start, end, drain))
    return windows


# -- indexing -----------------------------------------------------------------

_EVENTS = frozenset({"conf", "submit", "originate", "deliver", "crash", "stop"})


def build_history(
    records_by_incarnation: Mapping[tuple[int, int], Sequence[Mapping[str, Any]]],
    quiet: Sequence[QuietWindow] = (),
    notes: Sequence[str] = (),
    sources: Mapping[tuple[int, int], str] | None = None,
) -> History:
    """Validate all records and build the shared indexes.

    Raises:
        InputError: a record does not follow the schema.
    """
    history = History(incarnations=[], quiet=list(quiet), notes=list(notes))
    for key in sorted(records_by_incarnation):
        node, inc = key
        source = (sources or {}).get(key, f"<memory n{node}.{inc}>")
        incarnation = _index_incarnation(node, inc, source, records_by_incarnation[key], history)
        history.incarnations.append(incarnation)
        history.by_key[key] = incarnation
        history.by_node.setdefault(node, []).append(incarnation)
        history.records += incarnation.records
    return history


def _index_incarnation(
    node: int, inc: int, source: str, records: Sequence[Mapping[str, Any]], history: History
) -> Incarnation:
    check = _Checker(source)
    incarnation = Incarnation(node=node, inc=inc, source=source)
    current: Conf | None = None
    ended = False
    for number, record in enumerate(records, start=1):
        if type(record) is not dict and not isinstance(record, Mapping):
            check.line = number
            raise check.fail("a record must be a JSON object")
        check.line = record.get("__line", number)
        if record.get("node") != node or record.get("inc") != inc:
            check.integer(record, "node")
            check.integer(record, "inc")
            raise check.fail(
                f"record of node {record['node']} inc {record['inc']} in the log of n{node}.{inc}"
            )
        t = record.get("t")
        if type(t) is not int:
            t = check.integer(record, "t")
        ev = check.field(record, "ev")
        if ev not in _EVENTS:
            raise check.fail(f"unknown event {ev!r}")
        if ended:
            raise check.fail(f"{ev} record after the incarnation ended (stop/crash)")
        if incarnation.records == 0:
            incarnation.first_t = t
        incarnation.end_t = t
        incarnation.records += 1
        if ev == "conf":
            current = _add_conf(check, record, t, incarnation, history)
        elif ev == "deliver":
            _add_delivery(check, record, t, incarnation, current, history)
        elif ev == "submit":
            _add_submit(check, record, incarnation, history)
        elif ev == "originate":
            _add_originate(check, record, incarnation, history)
        elif ev == "stop":
            incarnation.stopped = True
            ended = True
        else:  # crash
            incarnation.crash_logged = True
            ended = True
    return incarnation


def _add_conf(check: _Checker, record: Mapping[str, Any], t: int, incarnation: Incarnation,
              history: History) -> Conf:
    kind = check.field(record, "kind")
    if kind == "REG":
        conf_id: Any = check.ring(check.field(record, "id"), "id")
    elif kind == "TRANS":
        raw = check.field(record, "id")
        if not (isinstance(raw, (list, tuple)) and len(raw) == 2):
            raise check.fail(f"TRANS id must be [[rep, seq], [rep, seq]], got {raw!r}")
        conf_id = (check.ring(raw[0], "id"), check.ring(raw[1], "id"))
    else:
        raise check.fail(f"conf kind must be REG or TRANS, got {kind!r}")
    members = check.field(record, "members")
    if not isinstance(members, (list, tuple)) or any(type(m) is not int for m in members):
        raise check.fail(f"'members' must be a list of node ids, got {members!r}")
    if len(set(members)) != len(members):
        raise check.fail(f"'members' lists a node twice: {members!r}")
    conf = Conf(kind, conf_id, tuple(sorted(members)), t, len(incarnation.confs))
    incarnation.confs.append(conf)
    incarnation.sequence.append(("conf", conf.key))
    history.installed.setdefault(conf.key, []).append(incarnation)
    return conf


def _fast_ring(value: Any) -> RingId | None:
    if (type(value) is list or type(value) is tuple) and len(value) == 2:
        rep, seq = value
        if type(rep) is int and type(seq) is int:
            return (rep, seq)
    return None


def _fast_delivery(record: Mapping[str, Any], t: int, line: int,
                   current: Conf | None) -> Delivery | None:
    """The common case without per-field calls; None sends the record to the
    careful path, which names what is wrong."""
    try:
        mid, sender, sinc, sseq = record["mid"], record["sender"], record["sinc"], record["sseq"]
        seq, safe, crc = record["seq"], record["safe"], record["crc"]
        orig_ring, raw_conf = _fast_ring(record["orig_ring"]), record["in_conf"]
    except KeyError:
        return None
    if not (type(mid) is str and mid and type(sender) is int and type(sinc) is int
            and type(sseq) is int and type(seq) is int and type(safe) is bool
            and type(crc) is int and orig_ring is not None):
        return None
    in_conf: ConfKey
    reg = _fast_ring(raw_conf)
    if reg is not None:
        in_conf = ("REG", reg)
    elif (type(raw_conf) is list or type(raw_conf) is tuple) and len(raw_conf) == 2:
        old, new = _fast_ring(raw_conf[0]), _fast_ring(raw_conf[1])
        if old is None or new is None:
            return None
        in_conf = ("TRANS", (old, new))
    else:
        return None
    return Delivery(mid, sender, sinc, sseq, orig_ring, seq, safe, crc, in_conf, t, line, current)


def _add_delivery(check: _Checker, record: Mapping[str, Any], t: int, incarnation: Incarnation,
                  current: Conf | None, history: History) -> None:
    delivery = _fast_delivery(record, t, check.line, current) or Delivery(
        mid=check.string(record, "mid"),
        sender=check.integer(record, "sender"),
        sinc=check.integer(record, "sinc"),
        sseq=check.integer(record, "sseq"),
        orig_ring=check.ring(check.field(record, "orig_ring"), "orig_ring"),
        seq=check.integer(record, "seq"),
        safe=check.boolean(record, "safe"),
        crc=check.integer(record, "crc"),
        in_conf=check.conf_key(check.field(record, "in_conf"), "in_conf"),
        t=t,
        line=check.line,
        conf=current,
    )
    if delivery.mid in incarnation.delivered_mids:
        delivery.duplicate = True
    else:
        incarnation.delivered_mids.add(delivery.mid)
        incarnation.sequence.append(("msg", delivery.mid))
    incarnation.deliveries.append(delivery)
    history.origin_ring.setdefault(delivery.mid, delivery.orig_ring)


def _add_submit(check: _Checker, record: Mapping[str, Any], incarnation: Incarnation,
                history: History) -> None:
    mid = check.string(record, "mid")
    check.integer(record, "sseq")
    check.boolean(record, "safe")
    check.integer(record, "crc")
    deps = check.field(record, "deps")
    if deps is not None and (
        not isinstance(deps, (list, tuple)) or any(type(d) is not str for d in deps)
    ):
        raise check.fail(f"'deps' must be a list of mids or null, got {deps!r}")
    submit = dict(record)
    submit["__line"] = check.line
    incarnation.submits.setdefault(mid, submit)
    history.submits.setdefault(mid, []).append((incarnation, submit))


def _add_originate(check: _Checker, record: Mapping[str, Any], incarnation: Incarnation,
                   history: History) -> None:
    mid = check.string(record, "mid")
    ring = check.ring(check.field(record, "ring"), "ring")
    check.integer(record, "seq")
    check.integer(record, "sseq")
    originate = dict(record)
    originate["ring"] = ring
    originate["__line"] = check.line
    incarnation.originates.append(originate)
    history.originations.setdefault((incarnation.node, incarnation.inc, ring), []).append(mid)
    history.origin_ring[mid] = ring
