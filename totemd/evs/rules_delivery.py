"""Delivery rules: S1, S2, S6, S7, S10, S11, S12, S13, S14 (totem.md §1.2).

Each rule is one pass over the deliveries (or a grouping of them), so the cost
is O(records) plus, for S11, the total length of the ``deps`` lists.
"""

from __future__ import annotations

from typing import Sequence

from .history import ConfKey, Delivery, History, Incarnation, conf_label, ring_label
from .report import Findings, RuleResult


def check_s1(history: History) -> RuleResult:
    """Every delivered mid has exactly one submit, at (sender, sinc), with the
    same sseq, safe and crc."""
    findings = Findings("S1")
    for mid, submits in history.submits.items():
        if len(submits) > 1:
            places = ", ".join(f"{i.name} line {s['__line']}" for i, s in submits[:2])
            findings.add(f"{mid} submitted {len(submits)} times ({places})")
    for incarnation in history.incarnations:
        for delivery in incarnation.deliveries:
            problem = _integrity_problem(history, delivery)
            if problem:
                findings.add(f"{incarnation.name} line {delivery.line} delivered {delivery.mid}: "
                             f"{problem}")
    return findings.result()


def _integrity_problem(history: History, delivery: Delivery) -> str:
    submits = history.submits.get(delivery.mid)
    if not submits:
        return "no incarnation ever submitted it"
    sender, submit = submits[0]
    if (sender.node, sender.inc) != (delivery.sender, delivery.sinc):
        return (f"the delivery names sender n{delivery.sender}.{delivery.sinc} but "
                f"{sender.name} submitted it")
    for name in ("sseq", "safe", "crc"):
        if submit[name] != getattr(delivery, name):
            return f"{name} is {getattr(delivery, name)!r} here but {submit[name]!r} at submit"
    return ""


def check_s2(history: History) -> RuleResult:
    """Each node delivers each mid at most once (across its incarnations)."""
    findings = Findings("S2")
    for node in sorted(history.by_node):
        seen: dict[str, tuple[Incarnation, Delivery]] = {}
        for incarnation in sorted(history.by_node[node], key=lambda i: i.inc):
            for delivery in incarnation.deliveries:
                earlier = seen.get(delivery.mid)
                if earlier is None:
                    seen[delivery.mid] = (incarnation, delivery)
                    continue
                findings.add(
                    f"node {node} delivered {delivery.mid} twice: {earlier[0].name} line "
                    f"{earlier[1].line} and {incarnation.name} line {delivery.line}"
                )
    return findings.result()


def check_s6(history: History) -> RuleResult:
    """A delivery happens after a conf, its in_conf is that conf, and in a
    REG it is the REG the message was originated in. (Deliveries in a TRANS
    are S14's.)"""
    findings = Findings("S6")
    for incarnation in history.incarnations:
        for delivery in incarnation.deliveries:
            where = f"{incarnation.name} line {delivery.line} delivered {delivery.mid}"
            conf = delivery.conf
            if conf is None:
                findings.add(f"{where} before installing any configuration")
                continue
            if delivery.in_conf != conf.key:
                findings.add(f"{where} with in_conf {conf_label(delivery.in_conf)} but its last "
                             f"configuration was {conf_label(conf.key)}")
                continue
            if conf.kind == "REG" and conf.id != delivery.orig_ring:
                findings.add(f"{where} in {conf_label(conf.key)} but it was originated in ring "
                             f"{ring_label(delivery.orig_ring)}")
    return findings.result()


def check_s14(history: History) -> RuleResult:
    """Everything delivered in TRANS t was originated in t's old ring."""
    findings = Findings("S14")
    for incarnation in history.incarnations:
        for delivery in incarnation.deliveries:
            conf = delivery.conf
            if conf is not None and conf.kind == "TRANS" and conf.id[0] != delivery.orig_ring:
                findings.add(
                    f"{incarnation.name} line {delivery.line} delivered {delivery.mid} in "
                    f"{conf_label(conf.key)} but it was originated in ring "
                    f"{ring_label(delivery.orig_ring)}, not the old ring {ring_label(conf.id[0])}"
                )
    return findings.result()


def check_s7(history: History) -> RuleResult:
    """Within one conf, every node's delivery list is a prefix of the longest
    one; seq never goes down within a list, and two messages with one seq
    (one packed frame) come from one sender. In a REG there are no gaps: a
    node that delivered seq b there delivered every message originated there
    with a lower seq."""
    findings = Findings("S7")
    lists: dict[ConfKey, list[tuple[Incarnation, list[Delivery]]]] = {}
    originated = _originated_by_ring(history)
    for incarnation in history.incarnations:
        for key, deliveries in incarnation.delivered_in().items():
            lists.setdefault(key, []).append((incarnation, deliveries))
    _check_prefixes(lists, findings)
    for key, entries in lists.items():
        for incarnation, deliveries in entries:
            _check_seq_order(incarnation, key, deliveries, findings)
            if key[0] == "REG":
                _check_no_gap(incarnation, key, deliveries, originated.get(key[1], ()), findings)
    return findings.result()


def _check_prefixes(lists: dict[ConfKey, list[tuple[Incarnation, list[Delivery]]]],
                    findings: Findings) -> None:
    for key in sorted(lists, key=repr):
        entries = lists[key]
        longest_owner, longest = max(entries, key=lambda entry: len(entry[1]))
        for incarnation, deliveries in entries:
            for index, delivery in enumerate(deliveries):
                if delivery.mid != longest[index].mid:
                    findings.add(
                        f"in {conf_label(key)} {incarnation.name} and {longest_owner.name} differ "
                        f"at delivery #{index}: {delivery.mid} (line {delivery.line}) vs "
                        f"{longest[index].mid} (line {longest[index].line})"
                    )
                    break


def _originated_by_ring(history: History) -> dict[tuple[int, int], list[tuple[int, str, str]]]:
    """ring -> [(seq, mid, originator)] sorted by seq, from originate records."""
    by_ring: dict[tuple[int, int], list[tuple[int, str, str]]] = {}
    for incarnation in history.incarnations:
        for originate in incarnation.originates:
            by_ring.setdefault(originate["ring"], []).append(
                (originate["seq"], originate["mid"], incarnation.name))
    for entries in by_ring.values():
        entries.sort()
    return by_ring


def _check_no_gap(incarnation: Incarnation, key: ConfKey, deliveries: list[Delivery],
                  originated: Sequence[tuple[int, str, str]], findings: Findings) -> None:
    # Only below the highest seq delivered: a process killed in the middle
    # of delivering one packed frame may miss the rest of that frame.
    top = max(delivery.seq for delivery in deliveries)
    delivered = {delivery.mid for delivery in deliveries}
    for seq, mid, originator in originated:
        if seq >= top:
            return
        if mid not in delivered:
            findings.add(f"{incarnation.name} delivered seq {top} in {conf_label(key)} but never "
                         f"delivered {mid} (seq {seq}, originated there by {originator}) there: "
                         f"a gap in agreed delivery")
            return


def _check_seq_order(incarnation: Incarnation, key: ConfKey, deliveries: list[Delivery],
                     findings: Findings) -> None:
    for before, after in zip(deliveries, deliveries[1:]):
        if after.seq < before.seq or (
            after.seq == before.seq and (after.sender, after.sinc) != (before.sender, before.sinc)
        ):
            findings.add(
                f"{incarnation.name} in {conf_label(key)} delivered {before.mid} (seq {before.seq}) "
                f"then {after.mid} (seq {after.seq}, line {after.line}): seq order broken"
            )
            return


def check_s10(history: History) -> RuleResult:
    """Per receiver, origin ring and sender incarnation, the deliveries are
    a prefix of the sender's originations in that ring (which themselves go
    in sseq order). A mid nobody submitted is S1's and is skipped here."""
    findings = Findings("S10")
    for (sender, sinc, ring), mids in history.originations.items():
        source = history.by_key[(sender, sinc)]
        sseqs = [source.submits[m]["sseq"] for m in mids if m in source.submits]
        for a, b in zip(sseqs, sseqs[1:]):
            if b <= a:
                findings.add(f"n{sender}.{sinc} originated sseq {b} after sseq {a} in ring "
                             f"{ring_label(ring)}")
                break
    for incarnation in history.incarnations:
        streams: dict[tuple[int, int, tuple[int, int]], list[Delivery]] = {}
        for delivery in incarnation.first_deliveries:
            if delivery.mid not in history.submits:
                continue  # never submitted at all: S1 reports it
            streams.setdefault((delivery.sender, delivery.sinc, delivery.orig_ring), []).append(
                delivery)
        for (sender, sinc, ring), deliveries in streams.items():
            originated = history.originations.get((sender, sinc, ring), [])
            for index, delivery in enumerate(deliveries):
                expected = originated[index] if index < len(originated) else None
                if delivery.mid != expected:
                    what = (f"n{sender}.{sinc}'s origination #{index} in that ring is {expected}"
                            if expected else
                            f"n{sender}.{sinc} originated only {len(originated)} message(s) there")
                    findings.add(
                        f"{incarnation.name} line {delivery.line} delivered {delivery.mid} as its "
                        f"message #{index} from n{sender}.{sinc} in ring {ring_label(ring)}, "
                        f"but {what}"
                    )
                    break
    return findings.result()


def check_s11(history: History) -> RuleResult:
    """If m' lists m in deps and both come from the same ring, whoever
    delivers m' delivered m first. (Same-sender order is S10's.)"""
    findings = Findings("S11")
    for incarnation in history.incarnations:
        deliveries = incarnation.first_deliveries
        position = {d.mid: index for index, d in enumerate(deliveries)}
        for index, delivery in enumerate(deliveries):
            submits = history.submits.get(delivery.mid)
            deps = submits[0][1].get("deps") if submits else None
            if not deps:
                continue
            for dep in deps:
                if history.origin_ring.get(dep) != delivery.orig_ring:
                    continue
                at = position.get(dep)
                if at is None or at > index:
                    state = "never" if at is None else f"only later (line {deliveries[at].line})"
                    findings.add(
                        f"{incarnation.name} line {delivery.line} delivered {delivery.mid}, which "
                        f"depends on {dep} from the same ring {ring_label(delivery.orig_ring)}, "
                        f"but delivered {dep} {state}"
                    )
                    break
    return findings.result()


def check_s12(history: History) -> RuleResult:
    """An incarnation that does not crash originates and delivers everything
    it submitted."""
    findings = Findings("S12")
    for incarnation in history.incarnations:
        if incarnation.crashed:
            continue
        originated = {o["mid"]: o for o in incarnation.originates}
        delivered = {d.mid for d in incarnation.deliveries}
        for mid, submit in incarnation.submits.items():
            if mid not in originated:
                findings.add(f"{incarnation.name} submitted {mid} (line {submit['__line']}) and "
                             f"stopped without originating it")
            elif mid not in delivered:
                ring = ring_label(originated[mid]["ring"])
                findings.add(f"{incarnation.name} originated {mid} in ring {ring} and stopped "
                             f"without delivering it")
    return findings.result()


def check_s13(history: History) -> RuleResult:
    """A safe message delivered in REG c reaches every member of c; one
    delivered in TRANS t reaches every member of t. A member is excused when
    its incarnation ends (crash or stop) before it installs the next REG."""
    findings = Findings("S13")
    delivered_by: dict[tuple[int, int], set[str]] = {}
    moved_on: dict[tuple[int, int, ConfKey], bool] = {}
    for incarnation in history.incarnations:
        for delivery in incarnation.first_deliveries:
            if not delivery.safe or delivery.conf is None:
                continue
            conf = delivery.conf
            for member in conf.members:
                if member == incarnation.node:
                    continue
                missing = _safe_missing_at(history, member, conf.key, delivery.mid,
                                           delivered_by, moved_on)
                if missing:
                    findings.add(
                        f"{incarnation.name} line {delivery.line} delivered safe {delivery.mid} "
                        f"in {conf_label(conf.key)}, but member {missing} moved on to the next "
                        f"REG without delivering it"
                    )
                    break
    return findings.result()


def _safe_missing_at(history: History, member: int, key: ConfKey, mid: str,
                     delivered_by: dict[tuple[int, int], set[str]],
                     moved_on: dict[tuple[int, int, ConfKey], bool]) -> str:
    """The name of ``member``'s incarnation that installed ``key``, went on to
    a later REG and never delivered ``mid``; "" otherwise."""
    for other in history.installed.get(key, ()):
        if other.node != member:
            continue
        cached = moved_on.get((other.node, other.inc, key))
        if cached is None:
            index = next(i for i, c in enumerate(other.confs) if c.key == key)
            cached = any(c.kind == "REG" for c in other.confs[index + 1:])
            moved_on[(other.node, other.inc, key)] = cached
        if not cached:
            return ""
        delivered = delivered_by.get((other.node, other.inc))
        if delivered is None:
            delivered = delivered_by[(other.node, other.inc)] = {d.mid for d in other.deliveries}
        return "" if mid in delivered else other.name
    return ""
