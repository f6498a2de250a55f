"""A node follows corosync.conf's logging section: every process of it
(supervisor, objdb, totemd) writes to the logfile at the file's priorities,
a logger_subsys raises one subsystem to debug, and stderr stays quiet when
to_stderr is off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.daemon.daemon_helpers import Node, free_udp_port, write_config

pytestmark = pytest.mark.multiprocess


def test_a_node_writes_where_the_logging_section_says(tmp_path: Path):
    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    logfile = tmp_path / "corosync.log"
    text = config.read_text().replace("logging {\n    to_syslog: no\n}\n", f"""logging {{
    to_syslog: no
    to_stderr: no
    to_logfile: yes
    logfile: {logfile}
    timestamp: on
    logger_subsys {{
        subsys: TOTEM
        debug: on
    }}
}}
""")
    assert "to_logfile: yes" in text
    config.write_text(text)
    node = Node(tmp_path, config, 1).start()
    try:
        node.wait_members([1])
    finally:
        assert node.stop() == 0
    lines = logfile.read_text().splitlines()
    assert all(re.match(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \[\d+\] (coro|objdb|totemd) ", line)
               for line in lines), lines
    joined = "\n".join(lines)
    assert re.search(r"totemd info    \[MAIN \] A new membership \([0-9a-f]+\.[0-9a-f]+\) was formed", joined)
    # The core's state changes print the ring id in hex, as the membership line does.
    assert re.search(r"totemd info    \[TOTEM\] node 1 entered OPERATIONAL \(ring 1\.[0-9a-f]+\)", joined)
    assert re.search(r"coro info    \[MAIN \] objdb serving", joined)
    assert re.search(r"objdb info    \[CMAP \] objdb stopping", joined)  # info: the file's priority
    # TOTEM at debug, MAIN not: the core's debug lines (if any) are TOTEM's only.
    assert not re.search(r" debug   \[(MAIN |CMAP |QB   )\]", joined)
    assert "A new membership" not in node.log_text()  # to_stderr: no
