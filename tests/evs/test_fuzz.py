"""The checker never fails on schema-valid input, however wrong the history:
random records give a Report (or InputError), never another exception."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from totemd.evs import InputError, check_records

NODES = st.integers(1, 3)
RING = st.tuples(st.integers(1, 3), st.sampled_from([4, 8, 12])).map(list)
MID = st.sampled_from([f"{n}.1.{s}" for n in (1, 2, 3) for s in (1, 2, 3)])


def _record(ev: str, fields: dict) -> dict:
    return {"ev": ev, **fields}


RECORD = st.one_of(
    st.builds(lambda kind, ring, other, members: _record("conf", {
        "kind": kind, "id": ring if kind == "REG" else [other, ring], "members": members}),
        st.sampled_from(["REG", "TRANS"]), RING, RING,
        st.lists(NODES, unique=True, max_size=3).map(sorted)),
    st.builds(lambda mid, safe, crc, deps: _record("submit", {
        "mid": mid, "sseq": int(mid.split(".")[2]), "safe": safe, "crc": crc, "deps": deps}),
        MID, st.booleans(), st.integers(0, 2), st.one_of(st.none(), st.lists(MID, max_size=2))),
    st.builds(lambda mid, ring, seq: _record("originate", {
        "mid": mid, "ring": ring, "seq": seq, "sseq": int(mid.split(".")[2])}),
        MID, RING, st.integers(0, 5)),
    st.builds(lambda mid, ring, seq, safe, crc, in_conf: _record("deliver", {
        "mid": mid, "sender": int(mid.split(".")[0]), "sinc": 1, "sseq": int(mid.split(".")[2]),
        "orig_ring": ring, "seq": seq, "safe": safe, "crc": crc, "in_conf": in_conf}),
        MID, RING, st.integers(0, 5), st.booleans(), st.integers(0, 2),
        st.one_of(RING, st.tuples(RING, RING).map(list))),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    logs=st.dictionaries(
        st.tuples(NODES, st.integers(1, 2)),
        st.tuples(st.lists(RECORD, max_size=12), st.sampled_from(["stop", "crash", None])),
        min_size=1, max_size=4,
    ),
    window=st.one_of(st.none(), st.tuples(st.integers(0, 20_000), st.integers(0, 20_000))),
    nodes=st.one_of(st.none(), st.lists(NODES, unique=True, min_size=1)),
)
def test_random_histories_never_crash_the_checker(logs, window, nodes) -> None:
    records = {}
    for (node, inc), (body, ending) in logs.items():
        items = body + ([{"ev": ending}] if ending else [])
        records[(node, inc)] = [
            {"node": node, "inc": inc, "t": 1000 * (i + 1), **r} for i, r in enumerate(items)]
    quiet = []
    if window is not None:
        start, end = sorted(window)
        quiet = [{"ev": "quiet", "start": start, "end": end}]
    try:
        report = check_records(records, quiet=quiet, nodes=nodes)
    except InputError:
        return
    assert len(report.results) == 19
    assert report.ok == all(result.ok for result in report.results)
    report.format()
    report.to_json()
