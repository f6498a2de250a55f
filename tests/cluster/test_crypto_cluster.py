"""A real cluster with totem.crypto_cipher / crypto_hash: it forms, orders
under load through a node's restart with every EVS rule holding, and a node
with another key (or in clear) never gets in."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import pytest

from tests.cluster.harness import TEST_SETTINGS, Harness
from totemd.crypto import write_key

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]


def _settings(cipher: str, hash_: str):
    settings = replace(TEST_SETTINGS, crypto_cipher=cipher, crypto_hash=hash_)
    return settings if os.geteuid() == 0 else replace(settings, use_namespace=False)


@pytest.mark.parametrize("cipher,hash_", [("aes256", "sha256"), ("none", "sha1")],
                         ids=["encrypted", "signed"])
def test_an_encrypted_cluster_orders_through_a_restart(tmp_path, cipher, hash_):
    with Harness(tmp_path, _settings(cipher, hash_)) as harness:
        harness.start()
        harness.converge()
        harness.start_load(rate=200)
        harness.kill(2)
        harness.converge()
        harness.restart(2)
        harness.converge()
        harness.start_load([2], rate=200)
        harness.quiet(2.0)
        views = harness.cluster.views()
        for view in views.values():
            transport = view.raw["transport"]
            assert transport["crypto_enabled"] == 1
            assert transport["dropped_crypto"] == 0
            assert view.raw["srp"]["messages_delivered"] > 100
        harness.finish()  # every EVS rule over all logs, liveness included


def test_a_node_with_another_key_stays_out(tmp_path):
    with Harness(tmp_path, _settings("aes256", "sha256")) as harness:
        cluster = harness.cluster
        stranger_key = tmp_path / "stranger.key"
        write_key(str(stranger_key))
        config = cluster.nodes[3].config_path
        text = config.read_text()
        assert f"keyfile: {tmp_path / 'authkey'}" in text
        config.write_text(text.replace(str(tmp_path / "authkey"), str(stranger_key)))
        harness.start()
        rings = harness.sides([[1, 2], [3]])
        assert rings[0][0] == 1 and rings[1][0] == 3
        # Each side's representative multicasts a merge detect every merge_ms
        # (200): the other side drops it before its core, and stays apart.
        deadline = time.monotonic() + 10.0
        views = cluster.views()
        while time.monotonic() < deadline and not all(
                views[n].raw["transport"]["dropped_crypto"] >= 3 for n in (1, 2, 3)):
            time.sleep(0.2)
            views = cluster.views()
        assert [views[n].raw["transport"]["dropped_crypto"] >= 3 for n in (1, 2, 3)] == [True] * 3, \
            {n: v.raw["transport"] for n, v in views.items()}
        assert views[1].members == (1, 2) and views[3].members == (3,)
        assert views[1].ring == rings[0] and views[3].ring == rings[1]  # no merge was tried
        assert "did not open: failed authentication" in cluster.output(1, tail_lines=200)
