"""Totem SRP: the protocol core as a pure state machine (see core.py)."""

from totemd.srp.actions import (Action, CancelTimer, ConfChange, ConfKind, Deliver, GatherReason,
                                Originated, PersistRingSeq, SendMulticast, SendUnicast, SetTimer,
                                State, StateChanged, Timer)
from totemd.srp.core import SrpCore, SrpStats
from totemd.srp.errors import DecodeError, NotStarted, ParamsError, SrpError, SubmitRejected
from totemd.srp.messages import RingId
from totemd.srp.params import TotemParams

__all__ = ["Action", "CancelTimer", "ConfChange", "ConfKind", "Deliver", "GatherReason",
           "Originated", "PersistRingSeq", "SendMulticast", "SendUnicast", "SetTimer", "State",
           "StateChanged", "Timer", "SrpCore", "SrpStats", "DecodeError", "NotStarted",
           "ParamsError", "SrpError", "SubmitRejected", "RingId", "TotemParams"]
