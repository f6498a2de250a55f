"""A node follows corosync.conf's logging section: every process of it
(supervisor, objdb, totemd) writes to the logfile at the file's priorities,
a logger_subsys raises one subsystem to debug, and stderr stays quiet when
to_stderr is off."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.daemon_helpers import REPO, Node, free_udp_port, write_config

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


@pytest.mark.parametrize("blackbox", ["on", "off"])
def test_coro_blackbox_prints_every_process_flight_data_and_kills_nothing(tmp_path: Path, blackbox):
    port = free_udp_port(["127.0.0.1"])
    config = write_config(tmp_path / "corosync.conf", port, {1: "127.0.0.1"})
    config.write_text(config.read_text().replace(
        "logging {\n    to_syslog: no\n}\n", f"logging {{\n    to_syslog: no\n    blackbox: {blackbox}\n}}\n"))
    node = Node(tmp_path, config, 1).start()
    try:
        node.wait_members([1])
        command = [sys.executable, "-m", "clients.cli", "blackbox", "--run-dir", str(node.run_dir),
                   "--state-dir", str(node.state_dir)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        headers = re.findall(r"^=== (coro|objdb|totemd) \(pid (\d+)\): (\S+)$", done.stdout, re.M)
        assert [name for name, _pid, _path in headers] == ["coro", "objdb", "totemd"]
        if blackbox == "on":
            assert re.search(r"totemd info    \[MAIN \] A new membership", done.stdout)
            # Debug lines are kept though stderr is at info: objdb's cmap connection.
            assert re.search(r"objdb debug   \[QB   \] .* connected", done.stdout)
        else:
            assert done.stdout.count("blackbox is off (logging.blackbox: off): no flight data") == 3
        node.wait_members([1])  # SIGUSR2 killed nothing: the node still answers
    finally:
        assert node.stop() == 0
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no node runs with run directory" in done.stderr


def test_a_failing_totemd_leaves_its_flight_data(tmp_path: Path, capsys):
    """totemd.process dumps the recorder when the loop raises (as corosync
    writes its blackbox when it dies); the supervisor then stops the node."""
    import logging
    import os

    import coroconf
    from coroconf import logsetup
    from tests.coroconf.helpers import udpu
    from totemd import process

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logsetup.configure(coroconf.loads(udpu() + "logging {\n\tto_stderr: no\n\tto_syslog: no\n}\n")
                           .logging, "totemd")
        logging.getLogger("totemd.srp").debug("the last thing it did")
        process._dump_flight_data(str(tmp_path))
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    path = tmp_path / f"fdata-totemd-{os.getpid()}"
    assert "[TOTEM] the last thing it did" in path.read_text()
    assert f"flight data written to {path}" in capsys.readouterr().err
