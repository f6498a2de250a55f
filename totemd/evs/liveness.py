"""Liveness rules L1-L3, evaluated only over declared quiet windows.

A quiet window ``{"ev": "quiet", "start": S, "end": E, "drain": D}`` (in
``harness.jsonl``, or ``--quiet-from``/``--quiet-until`` on the command line)
is the harness's promise: the network was healed and stable, and the cluster
had time to converge (T_conv), by S; no fault happens until E; the load
stops early enough that messages submitted up to E - D can be delivered by E.
Liveness compares times of different nodes, which the safety rules never do,
so it needs one clock: the simulator's virtual clock or one host's
CLOCK_MONOTONIC. An incarnation runs from its first record to its last
(``stop``, ``crash``, or wherever its file ends).

- L1: at E, every running incarnation's last conf is a REG, all the same
  one, whose members are exactly the running nodes.
- L2: a message submitted in [S, E - D] by an incarnation running through
  [S, E] was originated by E, and every incarnation running at E that
  installed its origin ring delivered it by E.
- L3: no incarnation installs more than one REG inside [S, E].
"""

from __future__ import annotations

from .history import Conf, History, Incarnation, QuietWindow, conf_label, ring_label
from .report import Findings, RuleResult, not_evaluated

NO_WINDOW = "not evaluated: no quiet window declared"


def check_liveness(history: History) -> list[RuleResult]:
    """L1, L2, L3 over every quiet window of the history."""
    if not history.quiet:
        return [not_evaluated(name, NO_WINDOW) for name in ("L1", "L2", "L3")]
    l1, l2, l3 = Findings("L1"), Findings("L2"), Findings("L3")
    for window in history.quiet:
        _check_l1(history, window, l1)
        _check_l2(history, window, l2)
        _check_l3(history, window, l3)
    return [l1.result(), l2.result(), l3.result()]


def _window(window: QuietWindow) -> str:
    return f"quiet window [{window.start}, {window.end}]"


def _last_conf_at(incarnation: Incarnation, t: int) -> Conf | None:
    last = None
    for conf in incarnation.confs:
        if conf.t > t:
            break
        last = conf
    return last


def _check_l1(history: History, window: QuietWindow, findings: Findings) -> None:
    running = [i for i in history.incarnations if i.running_at(window.end)]
    if not running:
        findings.add(f"{_window(window)}: no incarnation is running at its end")
        return
    nodes = tuple(sorted({i.node for i in running}))
    reference: tuple[Incarnation, Conf] | None = None
    for incarnation in running:
        conf = _last_conf_at(incarnation, window.end)
        if conf is None or conf.kind != "REG":
            state = "no configuration" if conf is None else conf_label(conf.key)
            findings.add(f"{_window(window)}: {incarnation.name} is in {state} at the end")
            return
        if reference is None:
            reference = (incarnation, conf)
        elif conf.key != reference[1].key:
            findings.add(f"{_window(window)}: at the end {reference[0].name} is in "
                         f"{conf_label(reference[1].key)} but {incarnation.name} is in "
                         f"{conf_label(conf.key)}")
            return
    assert reference is not None
    if reference[1].members != nodes:
        findings.add(f"{_window(window)}: the final {conf_label(reference[1].key)} has members "
                     f"{list(reference[1].members)} but the running nodes are {list(nodes)}")


def _check_l2(history: History, window: QuietWindow, findings: Findings) -> None:
    cutoff = window.end - window.drain
    at_end = [
        (other, {c.id for c in other.confs if c.kind == "REG"},
         {d.mid: d.t for d in other.deliveries})
        for other in history.incarnations if other.running_at(window.end)
    ]
    for incarnation in history.incarnations:
        if not (incarnation.first_t <= window.start and incarnation.end_t >= window.end):
            continue
        originated = {o["mid"]: o for o in incarnation.originates}
        for mid, submit in incarnation.submits.items():
            if not window.start <= submit["t"] <= cutoff:
                continue
            origination = originated.get(mid)
            if origination is None or origination["t"] > window.end:
                findings.add(f"{_window(window)}: {incarnation.name} submitted {mid} at "
                             f"{submit['t']} and it was not originated by the end")
                return
            ring = origination["ring"]
            for other, rings, delivered_at in at_end:
                if ring not in rings:
                    continue
                if delivered_at.get(mid, window.end + 1) > window.end:
                    findings.add(f"{_window(window)}: {mid} (submitted by {incarnation.name} "
                                 f"at {submit['t']}, ring {ring_label(ring)}) was not delivered "
                                 f"by {other.name} by the end")
                    return


def _check_l3(history: History, window: QuietWindow, findings: Findings) -> None:
    for incarnation in history.incarnations:
        installs = [c for c in incarnation.confs
                    if c.kind == "REG" and window.start <= c.t <= window.end]
        if len(installs) > 1:
            findings.add(f"{_window(window)}: {incarnation.name} installed {len(installs)} REG "
                         f"configurations inside it: "
                         + ", ".join(f"{conf_label(c.key)} at {c.t}" for c in installs))
