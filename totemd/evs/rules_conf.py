"""Configuration rules: S3, S4, S5, S15, S16 (totem.md §1.2)."""

from __future__ import annotations

from typing import Iterable

from .history import Conf, ConfKey, History, Incarnation, conf_label, ring_label
from .report import Findings, RuleResult


def _members(members: Iterable[int]) -> str:
    return "[" + ",".join(map(str, members)) + "]"


def check_s3(history: History) -> RuleResult:
    """Every conf at p contains p."""
    findings = Findings("S3")
    for incarnation in history.incarnations:
        for conf in incarnation.confs:
            if incarnation.node not in conf.members:
                findings.add(
                    f"{incarnation.name} delivered {conf_label(conf.key)} with members "
                    f"{_members(conf.members)}, which does not contain node {incarnation.node}"
                )
    return findings.result()


def check_s4(history: History, ring_seq_persisted: bool = True) -> RuleResult:
    """C(p) starts with REG and alternates TRANS/REG; a TRANS between c1 and
    c2 has id (c1, c2) and members within both; ring seq grows along C(p),
    and across a node's incarnations when the ring seq is persisted."""
    findings = Findings("S4")
    for incarnation in history.incarnations:
        _check_structure(incarnation, findings)
    if ring_seq_persisted:
        for node in sorted(history.by_node):
            _check_across_incarnations(history.by_node[node], findings)
    return findings.result()


def _check_structure(incarnation: Incarnation, findings: Findings) -> None:
    confs = incarnation.confs
    name = incarnation.name
    last_reg: Conf | None = None
    for index, conf in enumerate(confs):
        previous = confs[index - 1] if index else None
        if previous is None:
            if conf.kind != "REG":
                findings.add(f"{name}: first configuration is {conf_label(conf.key)}, not a REG")
            else:
                last_reg = conf
            continue
        if conf.kind == previous.kind:
            findings.add(
                f"{name}: {conf_label(previous.key)} is followed by {conf_label(conf.key)} "
                f"(conf #{index}); REG and TRANS must alternate"
            )
        if conf.kind == "TRANS" and previous.kind == "REG":
            old, _new = conf.id
            if old != previous.id:
                findings.add(f"{name}: {conf_label(conf.key)} follows {conf_label(previous.key)} "
                             f"but names old ring {ring_label(old)}")
            if not set(conf.members) <= set(previous.members):
                findings.add(f"{name}: {conf_label(conf.key)} members {_members(conf.members)} "
                             f"not within old {conf_label(previous.key)} {_members(previous.members)}")
        if conf.kind == "REG":
            if previous.kind == "TRANS":
                _old, new = previous.id
                if new != conf.id:
                    findings.add(f"{name}: {conf_label(previous.key)} is followed by "
                                 f"{conf_label(conf.key)}, not by REG {ring_label(new)}")
                if not set(previous.members) <= set(conf.members):
                    findings.add(
                        f"{name}: {conf_label(previous.key)} members {_members(previous.members)} "
                        f"not within new {conf_label(conf.key)} {_members(conf.members)}")
            if last_reg is not None and conf.id[1] <= last_reg.id[1]:
                findings.add(f"{name}: ring seq does not grow: {conf_label(last_reg.key)} then "
                             f"{conf_label(conf.key)}")
            last_reg = conf


def _check_across_incarnations(incarnations: list[Incarnation], findings: Findings) -> None:
    previous: tuple[Incarnation, Conf] | None = None
    for incarnation in sorted(incarnations, key=lambda i: i.inc):
        regs = [conf for conf in incarnation.confs if conf.kind == "REG"]
        if not regs:
            continue
        if previous is not None and regs[0].id[1] <= previous[1].id[1]:
            findings.add(
                f"ring seq does not grow across restarts of node {incarnation.node}: "
                f"{previous[0].name} ended in {conf_label(previous[1].key)}, "
                f"{incarnation.name} starts with {conf_label(regs[0].key)}"
            )
        previous = (incarnation, regs[-1])


def check_s5(history: History) -> RuleResult:
    """Two confs with the same id have the same members (kind is fixed by
    the id's shape)."""
    findings = Findings("S5")
    first_seen: dict[ConfKey, tuple[Incarnation, Conf]] = {}
    for incarnation in history.incarnations:
        for conf in incarnation.confs:
            seen = first_seen.get(conf.key)
            if seen is None:
                first_seen[conf.key] = (incarnation, conf)
            elif seen[1].members != conf.members:
                findings.add(
                    f"{conf_label(conf.key)} has members {_members(seen[1].members)} at "
                    f"{seen[0].name} but {_members(conf.members)} at {incarnation.name}"
                )
    return findings.result()


def check_s15(history: History) -> RuleResult:
    """If p installs REG c and q is in c, q installs c, or q crashed before
    getting past c, or p's next TRANS leaves q out, or p's log ends."""
    findings = Findings("S15")
    for incarnation in history.incarnations:
        confs = incarnation.confs
        for index, conf in enumerate(confs):
            if conf.kind != "REG" or index + 1 >= len(confs):
                continue
            following = confs[index + 1]
            installers = {i.node for i in history.installed.get(conf.key, ())}
            for member in conf.members:
                if member in installers:
                    continue
                if following.kind == "TRANS" and member not in following.members:
                    continue
                if _crashed_before(history, member, conf.id[1]):
                    continue
                findings.add(
                    f"{incarnation.name} installed {conf_label(conf.key)} with node {member}, "
                    f"which never installed it, did not crash, and is still in "
                    f"{incarnation.name}'s next configuration {conf_label(following.key)}"
                )
    return findings.result()


def _crashed_before(history: History, node: int, ring_seq: int) -> bool:
    """Some incarnation of ``node`` crashed without reaching a ring past
    ``ring_seq`` (so it may have died while that ring formed)."""
    for incarnation in history.by_node.get(node, ()):
        if not incarnation.crashed:
            continue
        if all(conf.id[1] < ring_seq for conf in incarnation.confs if conf.kind == "REG"):
            return True
    return False


def check_s16(history: History, nodes: Iterable[int] | None = None) -> RuleResult:
    """Members come from the nodelist; a REG names only nodes that ran.

    Args:
        nodes: the configured nodelist; None infers it from the incarnations
            present (then both halves of the rule are the same check).
    """
    findings = Findings("S16")
    ran = set(history.by_node)
    nodelist = set(nodes) if nodes is not None else None
    for incarnation in history.incarnations:
        for conf in incarnation.confs:
            strangers = [m for m in conf.members if nodelist is not None and m not in nodelist]
            if strangers:
                findings.add(f"{incarnation.name} delivered {conf_label(conf.key)} naming node(s) "
                             f"{_members(strangers)}, not in the nodelist {_members(sorted(nodelist or ()))}")
                continue
            if conf.kind == "REG" or nodelist is None:
                ghosts = [m for m in conf.members if m not in ran]
                if ghosts:
                    findings.add(f"{incarnation.name} delivered {conf_label(conf.key)} naming "
                                 f"node(s) {_members(ghosts)}, which never ran (no log)")
    return findings.result()
