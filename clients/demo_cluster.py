"""The cluster story of ``coro demo``: three real nodes on 127.0.0.1-3.

As root the nodes run in a private network namespace (nothing reaches the
host's network); otherwise on the host's loopback, on a free port. The story:
the cluster forms (each node's own report of ring and members), node 3 is
killed and the others form a new ring, node 3 comes back and the rings merge,
every node sends messages and all three deliver them in the same order, a few
``runtime.*`` keys from objdb (what ``coro cmap`` shows), and everything stops
with nothing left behind. Plain sentences on stdout; exit 0 when every step
happened as told.

The functions ``exchange`` and ``runtime_keys`` run inside the namespace (a
NamespaceWorker calls them): local clients must live where their node lives.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

__all__ = ["run_cluster_demo", "exchange", "runtime_keys"]

NODES = 3
MESSAGES_PER_NODE = 3
SHOWN_KEYS = ("runtime.totem.ring_id", "runtime.totem.members", "runtime.totem.state",
              "runtime.totem.token_rotation_ms", "runtime.members.3.join_count")


# -- run inside the namespace ------------------------------------------------------------

def exchange(run_dirs: dict[str, str], per_node: int, timeout_s: float = 20.0) -> dict[str, list[list[Any]]]:
    """Subscribe to every node, have each send ``per_node`` messages, and
    collect what each node delivers, in order.

    Returns:
        {node: [[mid, text], ...]} in delivery order, for the messages sent here.
    """
    from clients.totem import DeliverEvent, TotemClient, TryAgain

    clients = {node: TotemClient.connect(run_dir, subscribe=True) for node, run_dir in run_dirs.items()}
    try:
        expected = per_node * len(clients)
        tag = f"demo-{os.getpid()}-{time.monotonic_ns()}:"
        delivered: dict[str, list[list[Any]]] = {node: [] for node in clients}
        for number in range(1, per_node + 1):
            for node, client in clients.items():
                text = f"{tag}message {number} from node {node}"
                for _ in range(100):
                    try:
                        client.submit(text.encode())
                        break
                    except TryAgain:
                        time.sleep(0.01)
        deadline = time.monotonic() + timeout_s
        while any(len(got) < expected for got in delivered.values()):
            if time.monotonic() > deadline:
                break
            for node, client in clients.items():
                def keep(event: Any, node: str = node) -> None:
                    if isinstance(event, DeliverEvent) and event.data.startswith(tag.encode()):
                        delivered[node].append([event.mid, event.data[len(tag):].decode()])
                client.dispatch(keep, timeout=0.05)
        return delivered
    finally:
        for client in clients.values():
            client.close()


def runtime_keys(run_dir: str, keys: list[str]) -> list[list[Any]]:
    """[key, type, value] for each of ``keys`` that objdb has (run inside)."""
    from clients.cmap import CmapClient

    found = []
    with CmapClient.connect(run_dir=run_dir) as cmap:
        for key in keys:
            try:
                value, value_type = cmap.get(key)
            except Exception:  # a key this build does not publish: leave it out
                continue
            found.append([key, getattr(value_type, "name", str(value_type)).lower(), value])
    return found


def cfgtool_status(run_dir: str) -> list[str]:
    """What ``coro cfgtool -s`` prints for the node (run inside)."""
    from clients.cfgtool import read_view, status_lines

    return status_lines(read_view(run_dir))


# -- the story ---------------------------------------------------------------------------

class _Say:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def _ring(ring: tuple[int, int] | None) -> str:
    return "none" if ring is None else f"{ring[0]:x}.{ring[1]:x}"


def _show_views(cluster: Any, say: _Say) -> None:
    for node_id, view in sorted(cluster.views().items()):
        members = ", ".join(str(m) for m in view.members)
        say(f"  Node {node_id} reports ring {_ring(view.ring)} with members {members} ({view.state}).")


def run_cluster_demo(out: TextIO = sys.stdout, *, base_dir: str | None = None,
                     token_ms: int = 1000, namespace: bool = True) -> int:
    """Tell the three-node story; returns 0 when every step went as told.

    Args:
        out: where the sentences go.
        base_dir: where configs, logs and run directories go (default: a new
            temporary directory, removed at the end).
        token_ms: the token timeout of the demo cluster.
        namespace: use a private network namespace when root (False: the
            host's loopback, as without root).
    """
    from scripts.localcluster import ClusterError, ClusterSettings, LocalCluster
    from scripts.netns import NetnsError, is_root

    say = _Say(out)
    own_dir = base_dir is None
    root = Path(base_dir) if base_dir is not None else Path(tempfile.mkdtemp(prefix="coro-demo-"))
    # Encrypted, as corosync clusters are run (pcs writes aes256 + sha256).
    settings = ClusterSettings(nodes=NODES, token_ms=token_ms, consensus_ms=int(token_ms * 1.2),
                               use_namespace=namespace, crypto_cipher="aes256", crypto_hash="sha256")
    cluster = LocalCluster(root, settings)
    status = 1
    try:
        cluster.setup()
        if cluster.namespaced:
            assert cluster.namespace is not None
            say(f"Starting a {NODES}-node cluster on 127.0.0.1-{NODES} inside the private network "
                f"namespace {cluster.namespace.name} (we are root, so nothing reaches the host's network).")
        else:
            why = "we are not root" if not is_root() else "namespaces were not asked for"
            say(f"Starting a {NODES}-node cluster on the host's loopback, 127.0.0.1-{NODES} port "
                f"{cluster.settings.port} ({why}, so no private namespace).")
        say(f"Each node runs `coro start` with its own corosync.conf (udpu, token {token_ms} ms, "
            "crypto_cipher aes256 and crypto_hash sha256 with one key written by `coro keygen`: "
            "every packet is encrypted and authenticated).")
        cluster.start()
        ring = cluster.wait_converged()
        say(f"The cluster formed: ring {_ring(ring)}. Each node's own report:")
        _show_views(cluster, say)

        say("Killing node 3 with SIGKILL.")
        cluster.kill(3)
        ring = cluster.wait_converged()
        say(f"Nodes 1 and 2 noticed the token was lost and formed ring {_ring(ring)} without it:")
        _show_views(cluster, say)
        _cfgtool_story(cluster, say)

        say("Starting node 3 again (a new incarnation).")
        cluster.restart(3)
        ring = cluster.wait_converged()
        say(f"Node 3 joined and the rings merged into ring {_ring(ring)}:")
        _show_views(cluster, say)

        status = _message_story(cluster, say)
        _cmap_story(cluster, say)

        say("Stopping the nodes (each leaves the ring) and tearing everything down.")
        cluster.stop(cluster.running())
        forced = cluster.close()
        if forced:
            say("Had to force: " + "; ".join(forced))
            status = 1
        left = [str(p) for p in root.rglob("*") if p.is_socket()]
        if left:
            say(f"Socket files left behind: {left}")
            status = 1
        else:
            where = "the namespace is deleted, " if cluster.namespaced else ""
            say(f"Everything is stopped: no node process is left, {where}no socket file remains.")
    except (ClusterError, NetnsError, OSError) as error:
        say(f"The demo failed: {error}")
        for node_id in cluster.nodes:
            say(f"--- node {node_id} output ---\n{cluster.output(node_id, 15)}")
        status = 1
    finally:
        cluster.close()
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
    return status


def _message_story(cluster: Any, say: _Say) -> int:
    say(f"Every node sends {MESSAGES_PER_NODE} messages at the same time; each node delivers them:")
    run_dirs = {str(n): str(node.run_dir) for n, node in cluster.nodes.items()}
    delivered = cluster.worker.call("clients.demo_cluster:exchange", run_dirs, MESSAGES_PER_NODE,
                                    timeout_s=60.0)
    orders = {node: [mid for mid, _text in got] for node, got in delivered.items()}
    for node in sorted(delivered, key=int):
        say(f"  Node {node} delivered {len(orders[node])}: {', '.join(orders[node])}.")
    some_node = min(delivered, key=int)
    say("  (mid = sender.incarnation.sseq; in that order the texts are: "
        + "; ".join(text for _mid, text in delivered[some_node]) + ")")
    first = next(iter(orders.values()))
    expected = MESSAGES_PER_NODE * len(orders)
    if all(order == first for order in orders.values()) and len(first) == expected:
        say(f"All {len(orders)} nodes delivered the {expected} messages in the same total order.")
        return 0
    say("The nodes did NOT deliver the same sequence: " + repr(orders))
    return 1


def _cfgtool_story(cluster: Any, say: _Say) -> None:
    try:
        lines = cluster.worker.call("clients.demo_cluster:cfgtool_status",
                                    str(cluster.nodes[1].run_dir), timeout_s=10.0)
    except Exception as error:  # objdb is optional for the story
        say(f"`coro cfgtool -s` did not answer ({error}); skipping it.")
        return
    say("What an operator sees on node 1 with `coro cfgtool -s` (corosync-cfgtool -s):")
    for line in lines:
        say("  " + line.replace("\t", "    "))


def _cmap_story(cluster: Any, say: _Say) -> None:
    try:
        rows = cluster.worker.call("clients.demo_cluster:runtime_keys", str(cluster.nodes[1].run_dir),
                                   list(SHOWN_KEYS), timeout_s=10.0)
    except Exception as error:  # objdb is optional for the story
        say(f"objdb did not answer ({error}); skipping the runtime keys.")
        return
    if not rows:
        say("objdb holds no runtime keys yet; skipping them.")
        return
    say("Node 1's runtime keys in objdb, as `coro cmap` shows them:")
    for key, value_type, value in rows:
        say(f"  {key} ({value_type}) = {value}")
