"""What a node of a local cluster reports about itself, asked through its
coroipc ``totem`` service (STATS).

``node_view``/``node_views`` run inside the cluster's network namespace, in a
NamespaceWorker (coroipc doorbells are abstract Unix sockets, which exist per
namespace); ``view_from_stats`` turns an answer into a ``NodeView``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["NodeView", "node_view", "node_views", "view_from_stats"]


@dataclass(frozen=True, slots=True)
class NodeView:
    """What one node reports about itself (from its STATS)."""

    node: int
    ring: tuple[int, int] | None
    members: tuple[int, ...]
    state: str
    raw: dict[str, Any]


_view_clients: dict[str, Any] = {}


def node_view(run_dir: str) -> dict[str, Any]:
    """The statistics of the node whose sockets are in ``run_dir`` (a JSON
    object), or {"error": "..."} when it does not answer. The connection is
    kept for the next call (the worker is long-lived) and dropped on error."""
    import json

    from coroipc import IpcClient
    from totemd import local_codec as wire

    client = _view_clients.get(run_dir)
    try:
        if client is None:
            client = IpcClient.connect("totem", run_dir=run_dir, timeout=2.0)
            _view_clients[run_dir] = client
        return dict(json.loads(bytes(client.request(wire.Function.STATS, b"", timeout=2.0))))
    except Exception as exc:  # a node that is down or starting is a normal answer here
        _view_clients.pop(run_dir, None)
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
        return {"error": f"{type(exc).__name__}: {exc}"}


def node_views(run_dirs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """node_view for several nodes in one call ({node: run_dir})."""
    return {node: node_view(run_dir) for node, run_dir in run_dirs.items()}


def view_from_stats(node: int, stats: dict[str, Any]) -> NodeView:
    ring_value = stats.get("ring_id") or stats.get("ring")
    ring: tuple[int, int] | None = None
    if isinstance(ring_value, (list, tuple)) and len(ring_value) == 2:
        ring = (int(ring_value[0]), int(ring_value[1]))
    elif isinstance(ring_value, dict):
        ring = (int(ring_value.get("rep", 0)), int(ring_value.get("seq", 0)))
    members = tuple(sorted(int(m) for m in stats.get("members", ()) or ()))
    state = str(stats.get("state", stats.get("error", "unknown")))
    return NodeView(node=node, ring=ring, members=members, state=state, raw=stats)
