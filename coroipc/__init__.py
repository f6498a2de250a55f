"""coroipc: shared-memory IPC between coro processes and their clients.

Import from here::

    from coroipc import Ring, IpcServer, IpcClient, Service, errors
"""

from coroipc import errors
from coroipc.ring import Ring, RingStats

__all__ = ["Ring", "RingStats", "errors"]
