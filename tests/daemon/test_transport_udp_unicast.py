"""transport udp between nodes on one host: the token (unicast) reaches the
right node and every packet carries its sender's own address, so no node
drops another's packets as its own looped-back multicast."""

from __future__ import annotations

import os
import shutil
import textwrap

import pytest

from tests.daemon.daemon_helpers import run_in_multicast_namespace

SCRIPT = textwrap.dedent(
    """
    import json, select, time
    from totemd.transport import UdpTransport

    def wait(transport, want):
        got, deadline = [], time.monotonic() + 5
        while len(got) < want and time.monotonic() < deadline:
            select.select([transport.fileno()], [], [], 0.1)
            got += transport.receive_batch()
        return [[data.decode(), source] for data, source in got]

    def wait_dropped(transport, want):
        # Our own multicast must come back over lo and be dropped: wait for
        # the drop to be counted (it arrives at once), not out a deadline
        # for a packet that must never be returned.
        got, deadline = [], time.monotonic() + 5
        while transport.stats.dropped_own_loopback < want and time.monotonic() < deadline:
            select.select([transport.fileno()], [], [], 0.1)
            got += transport.receive_batch()
        return [[data.decode(), source] for data, source in got]

    group = "239.192.7.8"
    a = UdpTransport(mode="udp", bind_address="127.0.0.1", port=5405, multicast_group=group,
                     peers={2: "127.0.0.2"}).open()
    b = UdpTransport(mode="udp", bind_address="127.0.0.2", port=5405, multicast_group=group,
                     peers={1: "127.0.0.1"}).open()
    result = {}
    assert a.unicast(2, b"token-to-2")
    result["b_unicast"] = wait(b, 1)
    assert b.unicast(1, b"token-to-1")
    result["a_unicast"] = wait(a, 1)
    b.multicast(b"frame-from-2")
    result["a_multicast"] = wait(a, 1)
    result["b_own"] = wait_dropped(b, 1)
    result["dropped"] = [a.stats.dropped_own_loopback, b.stats.dropped_own_loopback]
    a.close(); b.close()
    print(json.dumps(result))
    """
)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="udp multicast between two addresses runs in a private network namespace, "
                           "which needs root and iproute2")
def test_udp_unicast_reaches_the_right_node_from_its_own_address():
    result = run_in_multicast_namespace(SCRIPT)
    # The token to node 2 arrives at node 2 (not at a group-bound socket that
    # never sees unicasts), from node 1's address.
    assert result["b_unicast"] == [["token-to-2", "127.0.0.1"]]
    # Node 2's token to node 1 comes from 127.0.0.2, not from the route's
    # source 127.0.0.1, which node 1 would drop as its own packet.
    assert result["a_unicast"] == [["token-to-1", "127.0.0.2"]]
    assert result["a_multicast"] == [["frame-from-2", "127.0.0.2"]]
    # Node 2's own multicast came back over lo and was dropped; node 1 dropped nothing.
    assert result["b_own"] == []
    assert result["dropped"] == [0, 1]
