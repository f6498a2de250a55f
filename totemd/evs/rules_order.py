"""Global order rules: S8 (acyclic systemwide order) and S9 (virtual
synchrony), both linear in the number of records."""

from __future__ import annotations

from collections import deque
from typing import Any

from .history import ConfKey, History, Incarnation, conf_label
from .report import Findings, RuleResult

# A longer cycle is shown as its first and last edges.
MAX_CYCLE_STEPS_SHOWN = 12


def _label(vertex: tuple[str, Any]) -> str:
    kind, value = vertex
    return conf_label(value) if kind == "conf" else value


def check_s8(history: History) -> RuleResult:
    """Mids and conf ids are vertices; each incarnation's delivery+conf
    sequence adds an edge between consecutive events. The graph must be
    acyclic. Kahn's algorithm (iterative) finds whether it is; the witness is
    the shortest cycle through one vertex left over, with the incarnation
    that contributed each edge.

    A mid repeated inside one incarnation is S2's violation; only its first
    delivery is in the sequence, so one duplicate is not reported twice.
    """
    findings = Findings("S8")
    index: dict[tuple[str, Any], int] = {}
    vertices: list[tuple[str, Any]] = []
    successors: list[list[int]] = []
    edge_source: dict[tuple[int, int], Incarnation] = {}
    for incarnation in history.incarnations:
        previous = -1
        for event in incarnation.sequence:
            vertex = index.get(event)
            if vertex is None:
                vertex = index[event] = len(vertices)
                vertices.append(event)
                successors.append([])
            if previous >= 0 and previous != vertex and (previous, vertex) not in edge_source:
                edge_source[(previous, vertex)] = incarnation
                successors[previous].append(vertex)
            previous = vertex
    indegree = [0] * len(vertices)
    for targets in successors:
        for target in targets:
            indegree[target] += 1
    ready = deque(v for v, degree in enumerate(indegree) if degree == 0)
    removed = 0
    while ready:
        vertex = ready.popleft()
        removed += 1
        for target in successors[vertex]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if removed == len(vertices):
        return findings.result()
    cycle = _shortest_cycle(successors, indegree)
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        steps.append(f"{_label(vertices[a])} -> {_label(vertices[b])} ({edge_source[(a, b)].name})")
    if len(steps) > MAX_CYCLE_STEPS_SHOWN:
        hidden = len(steps) - MAX_CYCLE_STEPS_SHOWN + 1
        steps = [*steps[: MAX_CYCLE_STEPS_SHOWN - 3], f"... {hidden} more edges ...", *steps[-2:]]
    findings.add(f"cycle of {len(cycle) - 1} edges: " + "; ".join(steps))
    return findings.result()


def _shortest_cycle(successors: list[list[int]], indegree: list[int]) -> list[int]:
    """A shortest cycle through one vertex Kahn's algorithm could not remove.

    Every such vertex lies on a cycle or downstream of one; walking
    predecessors inside the leftover set must revisit a vertex, which is on a
    cycle. A breadth-first search from it then finds the shortest way back.
    """
    leftover = {v for v, degree in enumerate(indegree) if degree > 0}
    predecessors: dict[int, int] = {}
    for vertex in leftover:
        for target in successors[vertex]:
            if target in leftover:
                predecessors.setdefault(target, vertex)
    start = min(leftover)
    seen: set[int] = set()
    while start not in seen:
        seen.add(start)
        start = predecessors[start]
    parent = {start: -1}
    queue = deque([start])
    while queue:
        vertex = queue.popleft()
        for target in successors[vertex]:
            if target == start:
                path = [start]
                while vertex != -1:
                    path.append(vertex)
                    vertex = parent[vertex]
                path.reverse()  # start ... vertex, then start again
                return path
            if target in leftover and target not in parent:
                parent[target] = vertex
                queue.append(target)
    raise AssertionError("a leftover vertex of Kahn's algorithm lies on no cycle")


def check_s9(history: History) -> RuleResult:
    """Incarnations that go from REG c to the same TRANS t delivered the same
    set of messages in c, and (those that reached the next REG) the same set
    in t."""
    findings = Findings("S9")
    groups: dict[tuple[ConfKey, ConfKey], list[tuple[Incarnation, set[str], set[str] | None]]] = {}
    for incarnation in history.incarnations:
        confs = incarnation.confs
        grouped = incarnation.delivered_in()
        for position, conf in enumerate(confs[:-1]):
            following = confs[position + 1]
            if conf.kind != "REG" or following.kind != "TRANS":
                continue
            in_c = {d.mid for d in grouped.get(conf.key, ())}
            reached_next = position + 2 < len(confs)
            in_t = {d.mid for d in grouped.get(following.key, ())} if reached_next else None
            groups.setdefault((conf.key, following.key), []).append((incarnation, in_c, in_t))
    for (c_key, t_key), members in groups.items():
        first, first_c, _ = members[0]
        for other, other_c, _ in members[1:]:
            if other_c != first_c:
                findings.add(_difference(first, first_c, other, other_c, c_key, c_key, t_key))
                break
        with_t = [(i, t) for i, _, t in members if t is not None]
        for other, other_t in with_t[1:]:
            if other_t != with_t[0][1]:
                findings.add(_difference(with_t[0][0], with_t[0][1], other, other_t, t_key,
                                         c_key, t_key))
                break
    return findings.result()


def _difference(a: Incarnation, a_set: set[str], b: Incarnation, b_set: set[str],
                where: ConfKey, c_key: ConfKey, t_key: ConfKey) -> str:
    only_a = sorted(a_set - b_set)
    only_b = sorted(b_set - a_set)
    if only_a:
        mid, owner, other = only_a[0], a, b
    else:
        mid, owner, other = only_b[0], b, a
    return (f"{a.name} and {b.name} both went {conf_label(c_key)} -> {conf_label(t_key)}, but "
            f"{owner.name} delivered {mid} in {conf_label(where)} and {other.name} did not "
            f"({len(only_a) + len(only_b)} message(s) differ)")
