"""corosync.conf's ``logging`` section applied to a process's Python logging.

The one part of coroconf with side effects: each of a node's processes
(supervisor, totemd, objdb) calls :func:`configure` once it has loaded the
file, and from then on writes where corosync would:

- targets: stderr (``to_stderr``, default yes), the ``logfile`` (``to_logfile``,
  default no; reopened by itself when logrotate moves it), syslog
  (``to_syslog``, default yes; ``syslog_facility``, /dev/log, never blocking:
  a full syslog socket drops the line and counts it);
- thresholds, as corosync's logsys sets them: stderr and the file take
  ``logfile_priority``, syslog ``syslog_priority`` (both default info);
  ``debug: on`` lowers every target to debug, ``debug: trace`` to trace;
- ``timestamp`` (on, hires: with milliseconds, off), ``fileline`` and
  ``function_name`` shape the stderr and file lines (syslog stamps its own);
- ``logger_subsys { subsys: TOTEM ... }`` overrides any of the above for
  one subsystem: the loggers of totemd's core, transport and crypto are
  TOTEM, coroipc's QB, objdb's CMAP, the rest MAIN (``SUBSYSTEMS``).

A line reads like corosync's: ``Nov 25 14:25:01.123 [1234] totemd notice
[TOTEM ] A new membership (1.2c) was formed. Members joined: 3``.

``blackbox: on`` (corosync's default) keeps a flight recorder: the last
``FLIGHT_RECORDS`` lines of every subsystem at debug, whatever the targets'
thresholds, in memory. SIGUSR2 (``coro blackbox``) makes the process write
them to ``<state_dir>/fdata-<process>-<pid>``, as corosync-blackbox makes
corosync write its fdata file.
"""

from __future__ import annotations

import collections
import logging
import logging.handlers
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from .model import LoggingConfig

__all__ = ["NOTICE", "TRACE", "LEVELS", "SUBSYSTEMS", "FLIGHT_RECORDS", "Route", "apply", "configure",
           "dump_flight_data", "flight_data_path", "install_dump", "recorder", "routes", "subsystem_of"]

NOTICE = 25
TRACE = 5
logging.addLevelName(NOTICE, "NOTICE")
logging.addLevelName(TRACE, "TRACE")

#: corosync's priority names -> Python levels
LEVELS: dict[str, int] = {"emerg": logging.CRITICAL, "alert": logging.CRITICAL,
                          "crit": logging.CRITICAL, "err": logging.ERROR, "error": logging.ERROR,
                          "warning": logging.WARNING, "notice": NOTICE, "info": logging.INFO,
                          "debug": logging.DEBUG, "trace": TRACE}
_NAMES = {logging.CRITICAL: "crit", logging.ERROR: "error", logging.WARNING: "warning",
          NOTICE: "notice", logging.INFO: "info", logging.DEBUG: "debug", TRACE: "trace"}

#: logger name (or dotted prefix) -> corosync subsystem; anything else is MAIN
SUBSYSTEMS: dict[str, str] = {"totemd.srp": "TOTEM", "totemd.transport": "TOTEM",
                              "totemd.crypto": "TOTEM", "coroipc": "QB", "objdb": "CMAP"}
_FACILITIES = {"daemon": logging.handlers.SysLogHandler.LOG_DAEMON,
               **{f"local{n}": getattr(logging.handlers.SysLogHandler, f"LOG_LOCAL{n}")
                  for n in range(8)}}
SYSLOG_ADDRESS = "/dev/log"
FLIGHT_RECORDS = 4096  # lines the flight recorder keeps (bounded: a deque)


def subsystem_of(logger_name: str) -> str:
    """The corosync subsystem a logger writes under (longest matching prefix)."""
    name = logger_name
    while name:
        found = SUBSYSTEMS.get(name)
        if found is not None:
            return found
        name = name.rpartition(".")[0]
    return "MAIN"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one subsystem's records go: each target's threshold, or None (off)."""

    stderr: int | None
    logfile: tuple[str, int] | None
    syslog: tuple[str, int] | None


def routes(config: LoggingConfig) -> dict[str, Route]:
    """The route of every subsystem the file names, and the default ("")."""
    def route(over: Any | None) -> Route:
        def pick(name: str) -> Any:
            value = getattr(over, name, None) if over is not None else None
            return getattr(config, name) if value is None else value
        debug = pick("debug")
        floor = {"on": logging.DEBUG, "trace": TRACE}.get(debug)
        file_level = floor if floor is not None else LEVELS.get(pick("logfile_priority"), logging.INFO)
        syslog_level = floor if floor is not None else LEVELS.get(pick("syslog_priority"), logging.INFO)
        path = pick("logfile")
        return Route(stderr=file_level if pick("to_stderr") else None,
                     logfile=(path, file_level) if pick("to_logfile") and path else None,
                     syslog=(pick("syslog_facility"), syslog_level) if pick("to_syslog") else None)
    table = {"": route(None)}
    for subsys in config.subsystems:
        table[subsys.subsys] = route(subsys)
    return table


def _annotate(record: logging.LogRecord) -> str:
    """Give a record the fields the lines show: its subsystem (returned) and
    corosync's name of its priority."""
    subsys = getattr(record, "subsys", None)
    if subsys is None:
        subsys = record.subsys = subsystem_of(record.name)  # type: ignore[attr-defined]
    record.priority = _NAMES.get(record.levelno, record.levelname.lower())  # type: ignore[attr-defined]
    return subsys


def _write_replacing(path: str, text: str) -> None:
    """``text`` to ``path``, replacing the file at once (a reader never sees half)."""
    with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(f"{path}.tmp", path)


class _Route(logging.Filter):
    """Lets a record through to one target if its subsystem's route says so."""

    def __init__(self, table: dict[str, Route], target: str, key: Any) -> None:
        super().__init__()
        self._table = table
        self._target = target
        self._key = key

    def filter(self, record: logging.LogRecord) -> bool:
        subsys = _annotate(record)
        route = self._table.get(subsys) or self._table[""]
        setting = getattr(route, self._target)
        if setting is None:
            return False
        if self._target == "stderr":
            return record.levelno >= setting
        key, level = setting
        return key == self._key and record.levelno >= level


class _SysLog(logging.handlers.SysLogHandler):
    """SysLogHandler that never blocks the daemon's loop: a datagram the
    syslog socket cannot take now is dropped and counted."""

    dropped = 0

    def __init__(self, facility: int) -> None:
        super().__init__(address=SYSLOG_ADDRESS, facility=facility,
                         socktype=socket.SOCK_DGRAM)
        self.socket.setblocking(False)

    def mapPriority(self, levelName: str) -> str:  # noqa: N802 - logging's name
        return {"NOTICE": "notice", "TRACE": "debug"}.get(levelName, super().mapPriority(levelName))

    def emit(self, record: logging.LogRecord) -> None:
        # SysLogHandler.emit reconnects (blocking) after a failed send; here
        # a send that fails drops the line, and the socket stays as it is.
        try:
            priority = self.encodePriority(self.facility, self.mapPriority(record.levelname))
            data = f"<{priority}>{self.format(record)}\000".encode("utf-8", "replace")
            self.socket.send(data)
        except OSError:
            _SysLog.dropped += 1
        except Exception:  # a record that cannot be formatted: logging's way
            self.handleError(record)


class FlightRecorder(logging.Handler):
    """The blackbox: the last ``FLIGHT_RECORDS`` lines, every level down to debug."""

    def __init__(self, records: int | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[str] = collections.deque(maxlen=records or FLIGHT_RECORDS)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _annotate(record)
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted
            self.handleError(record)

    def dump(self, path: str) -> str:
        """Write the lines to ``path`` (replaced atomically); returns the path."""
        _write_replacing(path, "".join(line + "\n" for line in list(self.lines)))
        return path


def flight_data_path(state_dir: str, process: str, pid: int) -> str:
    """Where a process writes its flight data when asked (SIGUSR2)."""
    return os.path.join(state_dir, f"fdata-{process}-{pid}")


_recorder: FlightRecorder | None = None


def recorder() -> FlightRecorder | None:
    """This process's flight recorder (None: blackbox off, or not configured)."""
    return _recorder


def _format(config: LoggingConfig, process: str) -> str:
    where = ""
    if config.fileline:
        where += "%(filename)s:%(lineno)d "
    if config.function_name:
        where += "%(funcName)s() "
    return f"[%(process)d] {process} %(priority)-7s [%(subsys)-5s] {where}%(message)s"


class _Stamp(logging.Formatter):
    def __init__(self, fmt: str, timestamp: str) -> None:
        self._timestamp = timestamp
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if self._timestamp == "off":
            return line
        stamp = self.formatTime(record, "%b %d %H:%M:%S")
        if self._timestamp == "hires":
            stamp += f".{int(record.msecs):03d}"
        return f"{stamp} {line}"


def configure(config: LoggingConfig, process: str, *, stderr_level: int | None = None,
              stream: Any = None) -> list[str]:
    """Replace the root logger's handlers with the file's targets.

    Args:
        config: the ``logging`` section (``coroconf.load(...).logging``).
        process: the name in each line ("coro", "totemd", "objdb").
        stderr_level: a command line's ``--log-level``: stderr on, at this
            threshold, whatever the file says.
        stream: stderr's stand-in (tests).

    Returns:
        Problems that left a target off (a log file that cannot be opened,
        no syslog socket), one line each; the caller reports them.
    """
    table = routes(config)
    if stderr_level is not None:
        table = {name: Route(stderr_level, r.logfile, r.syslog) for name, r in table.items()}
    problems: list[str] = []
    handlers: list[logging.Handler] = []
    fmt = _format(config, process)
    if any(r.stderr is not None for r in table.values()):
        handler: logging.Handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(_Stamp(fmt, config.timestamp))
        handler.addFilter(_Route(table, "stderr", None))
        handlers.append(handler)
    for path in sorted({r.logfile[0] for r in table.values() if r.logfile is not None}):
        try:
            handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        except OSError as error:
            problems.append(f"logfile {path}: {error.strerror}: not logging to it")
            continue
        handler.setFormatter(_Stamp(fmt, config.timestamp))
        handler.addFilter(_Route(table, "logfile", path))
        handlers.append(handler)
    for facility in sorted({r.syslog[0] for r in table.values() if r.syslog is not None}):
        if not os.path.exists(SYSLOG_ADDRESS):
            problems.append(f"syslog: no socket at {SYSLOG_ADDRESS} (no syslog daemon?): "
                            "not logging to it")
            break
        try:
            handler = _SysLog(_FACILITIES.get(facility, _FACILITIES["daemon"]))
        except OSError as error:
            problems.append(f"syslog ({SYSLOG_ADDRESS}): {error.strerror or error}: not logging to it")
            continue
        handler.setFormatter(logging.Formatter(f"{process}[%(process)d]: %(priority)s "
                                               "[%(subsys)s] %(message)s"))
        handler.addFilter(_Route(table, "syslog", facility))
        handlers.append(handler)
    global _recorder
    _recorder = None
    if config.blackbox:
        _recorder = FlightRecorder()
        _recorder.setFormatter(_Stamp(fmt, "hires"))
        handlers.append(_recorder)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    levels = [level for r in table.values()
              for level in (r.stderr, r.logfile and r.logfile[1], r.syslog and r.syslog[1])
              if level]
    if _recorder is not None:
        levels.append(logging.DEBUG)
    root.setLevel(min(levels) if levels else logging.CRITICAL + 1)
    for handler in handlers:
        root.addHandler(handler)
    return problems



def apply(config: LoggingConfig | None, process: str, log_level: str | None = None,
          state_dir: str | None = None) -> None:
    """:func:`configure` for a process's start: the file's targets (nothing
    changes without a file), ``log_level`` (a ``--log-level`` name such as
    "DEBUG") forcing stderr on at that level, each problem logged; with
    ``state_dir``, SIGUSR2 dumps the flight data there (install_dump)."""
    if config is None:
        return
    level = logging.getLevelName(log_level) if log_level else None
    for problem in configure(config, process, stderr_level=level):
        logging.getLogger(process).warning("logging: %s", problem)
    if state_dir is not None:
        install_dump(state_dir, process)


def install_dump(state_dir: str, process: str) -> None:
    """SIGUSR2 writes this process's flight data to ``flight_data_path``
    (one line saying so when the blackbox is off): installed in every
    process of a node, so ``coro blackbox`` can never kill one with it."""
    def dump(_signum: int, _frame: object) -> None:
        dump_flight_data(state_dir, process)
    signal.signal(signal.SIGUSR2, dump)


def dump_flight_data(state_dir: str, process: str) -> str | None:
    """Write this process's flight data to ``flight_data_path`` (one line
    saying so when the blackbox is off); the path, or None if it could not be
    written (logged)."""
    path = flight_data_path(state_dir, process, os.getpid())
    try:
        if _recorder is not None:
            _recorder.dump(path)
        else:
            _write_replacing(path, "blackbox is off (logging.blackbox: off): no flight data\n")
    except OSError as error:
        logging.getLogger(process).warning("flight data not written to %s: %s", path,
                                           error.strerror)
        return None
    return path
