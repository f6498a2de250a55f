"""coroipc: shared-memory IPC between coro processes and their clients.

Import from here::

    from coroipc import Ring, IpcServer, IpcClient, Service, errors
"""

from coroipc import errors
from coroipc.client import ClientStats, IpcClient
from coroipc.ring import Ring, RingStats
from coroipc.server import Connection, ConnectionStats, IpcServer, ServerStats, Service

__all__ = ["Ring", "RingStats", "IpcServer", "IpcClient", "Service", "Connection", "ServerStats",
           "ConnectionStats", "ClientStats", "errors"]
