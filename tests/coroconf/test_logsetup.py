"""coroconf.logsetup: the logging section applied to Python logging (targets,
priorities, debug, subsystems, line format, syslog that never blocks)."""

from __future__ import annotations

import io
import logging
import os
import re
import socket

import pytest

import coroconf
from coroconf import logsetup
from coroconf.logsetup import NOTICE, TRACE, Route, configure, routes, subsystem_of
from tests.coroconf.helpers import udpu


def _logging(section: str) -> coroconf.LoggingConfig:
    return coroconf.loads(udpu() + f"logging {{\n{section}}}\n").logging


@pytest.fixture(autouse=True)
def _restore_root_logging():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def test_subsystems_by_logger_name():
    assert [subsystem_of(name) for name in ("totemd.srp", "totemd.srp.core", "totemd.transport",
                                            "totemd.crypto", "coroipc.server", "objdb.service",
                                            "totemd", "totemd.local", "coro.supervisor")] == \
        ["TOTEM", "TOTEM", "TOTEM", "TOTEM", "QB", "CMAP", "MAIN", "MAIN", "MAIN"]


def test_routes_follow_corosyncs_defaults_priorities_and_debug():
    assert routes(_logging("")) == {"": Route(stderr=logging.INFO, logfile=None,
                                              syslog=("daemon", logging.INFO))}
    table = routes(_logging("\tto_logfile: yes\n\tlogfile: /l\n\tlogfile_priority: notice\n"
                            "\tsyslog_priority: warning\n\tsyslog_facility: local3\n"
                            "\tto_stderr: no\n"))
    assert table[""] == Route(stderr=None, logfile=("/l", NOTICE), syslog=("local3", logging.WARNING))
    debug = routes(_logging("\tdebug: on\n\tto_logfile: yes\n\tlogfile: /l\n\tsyslog_priority: err\n"))
    assert debug[""] == Route(logging.DEBUG, ("/l", logging.DEBUG), ("daemon", logging.DEBUG))
    assert routes(_logging("\tdebug: trace\n"))[""].stderr == TRACE


def test_a_logger_subsys_overrides_only_what_it_sets():
    table = routes(_logging("\tto_logfile: yes\n\tlogfile: /main.log\n\tto_syslog: no\n"
                            "\tlogger_subsys {\n\t\tsubsys: TOTEM\n\t\tdebug: on\n\t}\n"
                            "\tlogger_subsys {\n\t\tsubsys: QB\n\t\tlogfile: /qb.log\n"
                            "\t\tto_stderr: no\n\t\tlogfile_priority: err\n\t}\n"))
    assert table["TOTEM"] == Route(logging.DEBUG, ("/main.log", logging.DEBUG), None)
    assert table["QB"] == Route(None, ("/qb.log", logging.ERROR), None)
    assert table[""] == Route(logging.INFO, ("/main.log", logging.INFO), None)


def test_records_go_where_their_subsystem_says(tmp_path):
    main_log, qb_log = tmp_path / "main.log", tmp_path / "qb.log"
    config = _logging(f"\tto_logfile: yes\n\tlogfile: {main_log}\n\tto_syslog: no\n\ttimestamp: off\n"
                      "\tlogger_subsys {\n\t\tsubsys: TOTEM\n\t\tdebug: on\n\t}\n"
                      f"\tlogger_subsys {{\n\t\tsubsys: QB\n\t\tlogfile: {qb_log}\n"
                      "\t\tto_stderr: no\n\t}\n")
    stderr = io.StringIO()
    assert configure(config, "totemd", stream=stderr) == []
    logging.getLogger("totemd.srp").debug("token seen")        # TOTEM: debug on
    logging.getLogger("totemd").debug("a main debug line")     # MAIN: info, dropped
    logging.getLogger("totemd").info("A new membership (1.2c) was formed")
    logging.getLogger("coroipc.server").warning("stale socket")  # QB: its own file only
    logging.getLogger("totemd").log(NOTICE, "noticed")
    pid = os.getpid()
    assert main_log.read_text().splitlines() == [
        f"[{pid}] totemd debug   [TOTEM] token seen",
        f"[{pid}] totemd info    [MAIN ] A new membership (1.2c) was formed",
        f"[{pid}] totemd notice  [MAIN ] noticed"]
    assert qb_log.read_text().splitlines() == [f"[{pid}] totemd warning [QB   ] stale socket"]
    assert stderr.getvalue().splitlines() == main_log.read_text().splitlines()


@pytest.mark.parametrize("timestamp,pattern", [
    ("on", r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \["),
    ("hires", r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d{3} \["),
    ("off", r"^\[\d+\] ")])
def test_timestamps_fileline_and_function_name(timestamp, pattern):
    stderr = io.StringIO()
    configure(_logging(f"\ttimestamp: {timestamp}\n\tfileline: on\n\tfunction_name: on\n"
                       "\tto_syslog: no\n"), "objdb", stream=stderr)
    logging.getLogger("objdb").warning("hello")
    line = stderr.getvalue().splitlines()[0]
    assert re.match(pattern, line), line
    assert re.search(r"objdb warning \[CMAP \] test_logsetup\.py:\d+ "
                     r"test_timestamps_fileline_and_function_name\(\) hello$", line), line


def test_command_line_level_forces_stderr_on():
    stderr = io.StringIO()
    configure(_logging("\tto_stderr: no\n\tto_syslog: no\n"), "coro", stderr_level=logging.DEBUG,
              stream=stderr)
    logging.getLogger("coro.supervisor").debug("detail")
    assert stderr.getvalue().endswith("[MAIN ] detail\n")


def test_a_log_file_that_cannot_be_opened_is_a_problem_not_a_crash(tmp_path):
    stderr = io.StringIO()
    problems = configure(_logging(f"\tto_logfile: yes\n\tlogfile: {tmp_path}/no/such/dir.log\n"
                                  "\tto_syslog: no\n"), "totemd", stream=stderr)
    assert problems == [f"logfile {tmp_path}/no/such/dir.log: No such file or directory: "
                        "not logging to it"]
    logging.getLogger("totemd").info("still on stderr")
    assert "still on stderr" in stderr.getvalue()


def test_a_rotated_log_file_is_reopened(tmp_path):
    path = tmp_path / "corosync.log"
    configure(_logging(f"\tto_logfile: yes\n\tlogfile: {path}\n\tto_stderr: no\n\tto_syslog: no\n"),
              "totemd")
    logging.getLogger("totemd").info("before")
    path.rename(tmp_path / "corosync.log.1")  # what logrotate does
    logging.getLogger("totemd").info("after")
    assert "before" in (tmp_path / "corosync.log.1").read_text()
    assert "after" in path.read_text() and "before" not in path.read_text()


def test_syslog_gets_facility_and_priority_and_never_blocks(tmp_path, monkeypatch):
    address = str(tmp_path / "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    monkeypatch.setattr(logsetup, "SYSLOG_ADDRESS", address)
    try:
        assert configure(_logging("\tto_stderr: no\n\tsyslog_facility: local2\n"
                                  "\tsyslog_priority: notice\n"), "totemd") == []
        logging.getLogger("totemd").info("not sent: below notice")
        logging.getLogger("totemd.srp").log(NOTICE, "A new membership")
        server.settimeout(2)
        data = server.recv(4096).decode()
        # <facility * 8 + severity>: local2 = 18, notice = 5
        assert data.startswith(f"<{18 * 8 + 5}>totemd[{os.getpid()}]: notice [TOTEM] A new membership")
        before = logsetup._SysLog.dropped
        for _ in range(5000):  # nobody reads: the socket fills, and the loop goes on
            logging.getLogger("totemd").warning("x" * 200)
        assert logsetup._SysLog.dropped > before
    finally:
        server.close()
        os.unlink(address)


def test_no_syslog_socket_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(logsetup, "SYSLOG_ADDRESS", str(tmp_path / "none"))
    problems = configure(_logging("\tto_stderr: no\n"), "coro")
    assert problems == [f"syslog: no socket at {tmp_path / 'none'} (no syslog daemon?): "
                        "not logging to it"]


def test_what_the_section_cannot_do_is_reported():
    warnings = [str(w) for w in coroconf.loads(udpu() + "logging {\n\tto_logfile: yes\n"
                                                         "\tblackbox: on\n}\n").warnings]
    assert warnings == [
        "<string>:16: to_logfile is on but no logfile is set: nothing is written to a file"]


@pytest.fixture
def _usr2():
    import signal
    previous = signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGUSR2, previous)


def test_the_flight_recorder_keeps_the_last_lines_at_debug_and_dumps_on_sigusr2(tmp_path, monkeypatch,
                                                                                _usr2):
    import signal
    monkeypatch.setattr(logsetup, "FLIGHT_RECORDS", 5)
    stderr = io.StringIO()
    configure(_logging("\tto_syslog: no\n"), "totemd", stream=stderr)  # blackbox: on by default
    for n in range(8):
        logging.getLogger("totemd.srp").debug("detail %d", n)
    logging.getLogger("totemd").info("membership")
    assert "detail" not in stderr.getvalue() and "membership" in stderr.getvalue()
    logsetup.install_dump(str(tmp_path), "totemd")
    os.kill(os.getpid(), signal.SIGUSR2)
    lines = (tmp_path / f"fdata-totemd-{os.getpid()}").read_text().splitlines()
    assert [line.split("] ", 2)[-1] for line in lines] == [
        "detail 4", "detail 5", "detail 6", "detail 7", "membership"]
    assert all(re.match(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d{3} \[\d+\] totemd ", line)
               for line in lines)


def test_with_the_blackbox_off_sigusr2_still_answers_and_kills_nothing(tmp_path, _usr2):
    import signal
    logsetup.apply(_logging("\tto_syslog: no\n\tblackbox: off\n"), "objdb", None, str(tmp_path))
    assert logsetup.recorder() is None
    os.kill(os.getpid(), signal.SIGUSR2)
    assert (tmp_path / f"fdata-objdb-{os.getpid()}").read_text() == \
        "blackbox is off (logging.blackbox: off): no flight data\n"
