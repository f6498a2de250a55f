"""objdb: the node's object database (corosync's cmap), as its own process.

- :mod:`objdb.store`: the pure store (typed values under dotted keys, read-only
  rules, tracking with old and new values);
- :mod:`objdb.types`, :mod:`objdb.keys`: value types and limits, key rules;
- :mod:`objdb.codec`: the versioned wire codec of the ``cmap`` coroipc service
  (with :mod:`objdb.codec_fields` and :mod:`objdb.codec_responses`, whose names
  it re-exports);
- :mod:`objdb.service`: the service over coroipc (privilege, bounds);
- :mod:`objdb.daemon` (``python -m objdb``) and :mod:`objdb.process` (start
  and stop it from a supervisor).

Clients use :mod:`clients.cmap`; the tool is ``coro cmap``.
"""
