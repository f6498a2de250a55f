"""totemd's local service follows the file's uidgid entries, as objdb's cmap
does and as every corosync IPC service does: root, totemd's own uid, and the
listed uids and gids may connect; anyone else is refused at the handshake."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.daemon.daemon_helpers import REPO, Node, free_udp_port, write_config

pytestmark = [pytest.mark.multiprocess, pytest.mark.root]

CHILD = textwrap.dedent("""
    import os, sys
    from clients.totem import NotConnected, TotemClient  # as root: our files stay readable
    os.setgroups([])
    os.setgid(int(sys.argv[3]))
    os.setuid(int(sys.argv[2]))
    try:
        client = TotemClient.connect(run_dir=sys.argv[1], subscribe=False, timeout=5.0)
    except NotConnected as error:
        print("refused", error)
        sys.exit(0)
    with client:
        print("connected", client.stats()["members"])
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run clients as other uids")
def test_uidgid_entries_decide_who_may_use_the_totem_service():
    # Not under pytest's temporary directory: private to root, and the
    # clients here run as other uids.
    base = Path(tempfile.mkdtemp(prefix="coro-totem-acl-"))
    node = None
    try:
        base.chmod(0o755)
        config = write_config(base / "corosync.conf", free_udp_port(["127.0.0.1"]), {1: "127.0.0.1"})
        config.write_text(config.read_text() + "uidgid {\n    uid: 4242\n}\nuidgid {\n    gid: 4747\n}\n")
        node = Node(base, config, 1).start()
        node.wait_members([1])
        node.dir.chmod(0o755)
        node.run_dir.chmod(0o755)

        def as_user(uid: int, gid: int) -> str:
            return subprocess.run([sys.executable, "-c", CHILD, str(node.run_dir), str(uid), str(gid)],
                                  cwd=REPO, capture_output=True, text=True, timeout=60,
                                  check=True).stdout

        assert as_user(4242, 4242) == "connected [1]\n"   # a listed uid
        assert as_user(4343, 4747) == "connected [1]\n"   # a listed gid
        refused = as_user(4343, 4343)                      # neither
        assert refused.startswith("refused") and "uid 4343" in refused, refused
    finally:
        if node is not None:
            assert node.stop() == 0
        shutil.rmtree(base, ignore_errors=True)
