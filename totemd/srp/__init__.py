"""Totem SRP: the protocol core as a pure state machine (see core.py).

Names are loaded lazily so that ``totemd.codec`` (which needs the message
types) and the core (which needs the codec) can import each other's modules.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Action": "actions", "CancelTimer": "actions", "ConfChange": "actions",
    "ConfKind": "actions", "Deliver": "actions", "DeliverFrame": "actions",
    "GatherReason": "actions",
    "Originated": "actions", "PersistRingSeq": "actions", "SendMulticast": "actions",
    "SendUnicast": "actions", "SetTimer": "actions", "State": "actions",
    "StateChanged": "actions", "Timer": "actions", "TokenWarning": "actions",
    "SrpCore": "core", "SrpStats": "core",
    "DecodeError": "errors", "NotStarted": "errors", "ParamsError": "errors",
    "SrpError": "errors", "SubmitRejected": "errors",
    "RingId": "messages", "TotemParams": "params",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'totemd.srp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"totemd.srp.{module}"), name)
    globals()[name] = value
    return value
