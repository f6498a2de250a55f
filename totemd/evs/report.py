"""The checker's result: one RuleResult per rule, and a Report around them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# Rule names in report order, with a one-line title each.
RULES: dict[str, str] = {
    "S1": "integrity: every delivery matches its one submit (sender, sseq, safe, crc)",
    "S2": "no duplication: a node delivers a message at most once",
    "S3": "self-inclusion: every configuration contains its node",
    "S4": "configuration structure: REG, then TRANS/REG alternating, ids chain, ring seq grows",
    "S5": "configuration agreement: one id, one membership",
    "S6": "message stays in its configuration: delivered in REG of its origin ring",
    "S7": "agreed order: deliveries in one configuration are prefixes of each other",
    "S8": "systemwide total order: the delivery+configuration graph is acyclic",
    "S9": "virtual synchrony: nodes moving together delivered the same messages",
    "S10": "per-sender FIFO: deliveries from a sender are a prefix of its originations",
    "S11": "causal order: a message's deps from the same ring are delivered first",
    "S12": "self-delivery: a process that does not crash delivers what it submitted",
    "S13": "safe delivery: a safe message reaches every member (or the member fails)",
    "S14": "transitional contents: TRANS delivers only messages of the old ring",
    "S15": "install-or-excluded: members of a REG install it, fail, or are left out next",
    "S16": "membership sanity: members come from the nodelist and ran at some time",
    "L1": "convergence: at the end of a quiet window all running nodes share one REG",
    "L2": "delivery: messages submitted in a quiet window are delivered by its end",
    "L3": "no flapping: at most one REG install per node inside a quiet window",
}

WITNESSES_KEPT = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleResult:
    """The verdict of one rule.

    Attributes:
        name: "S1" .. "S16", "L1" .. "L3".
        title: what the rule checks, in one line.
        ok: no violation found (also True when not evaluated).
        evaluated: False when the rule had nothing to look at (L rules
            without a quiet window); ``note`` says why.
        violations: how many violations were found.
        witnesses: the first few violations, each a self-contained sentence;
            the first is the minimal witness.
        note: extra information ("not evaluated: ...").
    """

    name: str
    title: str
    ok: bool
    evaluated: bool = True
    violations: int = 0
    witnesses: tuple[str, ...] = ()
    note: str = ""

    @property
    def witness(self) -> str:
        """The first witness, or "" when the rule holds."""
        return self.witnesses[0] if self.witnesses else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.name, "title": self.title, "ok": self.ok,
            "evaluated": self.evaluated, "violations": self.violations,
            "witnesses": list(self.witnesses), "note": self.note,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """All rule verdicts for one history.

    Attributes:
        results: one RuleResult per rule, in RULES order.
        incarnations: how many node incarnations were checked.
        records: how many records they held.
        notes: remarks about the input (e.g. a torn last line ignored).
    """

    results: tuple[RuleResult, ...]
    incarnations: int
    records: int
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when no rule is violated."""
        return all(result.ok for result in self.results)

    def result(self, name: str) -> RuleResult:
        """The verdict of one rule by name ("S7")."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    @property
    def violated(self) -> tuple[str, ...]:
        """Names of the violated rules."""
        return tuple(result.name for result in self.results if not result.ok)

    def format(self) -> str:
        """A human-readable report, one line per rule plus witnesses."""
        lines = [f"EVS check of {self.incarnations} incarnations, {self.records} records"]
        lines.extend(f"note: {note}" for note in self.notes)
        for result in self.results:
            if not result.evaluated:
                status = "-- " + result.note
            elif result.ok:
                status = "OK"
            else:
                status = f"VIOLATED ({result.violations})"
            lines.append(f"{result.name:<4} {status:<12} {result.title}" if result.evaluated
                         else f"{result.name:<4} {status}")
            for witness in result.witnesses:
                lines.append(f"       witness: {witness}")
        lines.append("RESULT: OK" if self.ok else "RESULT: VIOLATED " + " ".join(self.violated))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "incarnations": self.incarnations, "records": self.records,
            "notes": list(self.notes), "results": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


class Findings:
    """Collects the violations of one rule while it runs: a count and the
    first WITNESSES_KEPT witness texts."""

    __slots__ = ("name", "count", "witnesses")

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.witnesses: list[str] = []

    def add(self, witness: str) -> None:
        self.count += 1
        if len(self.witnesses) < WITNESSES_KEPT:
            self.witnesses.append(witness)

    def result(self) -> RuleResult:
        return RuleResult(name=self.name, title=RULES[self.name], ok=self.count == 0,
                          violations=self.count, witnesses=tuple(self.witnesses))


def not_evaluated(name: str, note: str) -> RuleResult:
    """A verdict for a rule that had nothing to check."""
    return RuleResult(name=name, title=RULES[name], ok=True, evaluated=False, note=note)
