"""The catalogue of history-log event codes and their names, for every layer
that shows a BT74 entry (the simulator that writes them, the concentrator's
store and exports, batch decoding, the Wireshark dissector's constants).

A BT74 HISTORY_CODE is a 16-bit word: TBL_PROC_NBR (bits 0-10) and
STD_VS_MFG_FLAG (bit 11) [OPT p.51-53].  Standard events (flag 0) follow the
ANSI C12.19 standard event numbering; the OSGP guides name the events without
their numbers, so the numbers are INFERRED.  Manufacturer events (flag 1) are
those of osgp's simulated meter (``osgp.sim``): no manufacturer's list is
public.
"""

from __future__ import annotations

from typing import Dict

__all__ = ["EVENTS", "MFG_EVENTS", "MFG_FLAG", "event_name", "names"]

#: STD_VS_MFG_FLAG in a HISTORY_CODE word [OPT p.51-53].
MFG_FLAG = 0x800

#: ANSI C12.19 standard event numbers by name (INFERRED for OSGP, see above).
EVENTS: Dict[str, int] = {
    "power down": 1,
    "power up": 2,
    "time changed (old time)": 3,
    "time changed (new time)": 4,
    "procedure invoked": 9,
    "table written": 10,
    "updated list pointers": 15,
    "demand reset": 20,
    "self read": 21,
    "pending table activation": 28,
    "pending table clear": 29,
    "clock error": 42,
    "tamper attempt": 47,
}

#: The manufacturer events of osgp's simulated meter (STD_VS_MFG_FLAG = 1).
MFG_EVENTS: Dict[str, int] = {
    "contactor opened": 1,
    "contactor closed": 2,
    "group added": 3,
    "group removed": 4,
    "load profile reset": 5,
    # key renewal (osgp.sim.keys)
    "key staged": 6,
    "key renewed": 7,
    "key usage warning": 8,
    # control outputs, prepay and one-time reads (osgp.sim.control, osgp.sim.onetime)
    "credit added": 64,
    "credit exhausted": 65,
    "max level exceeded": 66,
    "disconnect locked": 67,
    "disconnect unlocked": 68,
    "control relay opened": 69,
    "control relay closed": 70,
    "one-time read": 71,
    # firmware download (osgp.sim.firmware)
    "code bank changed": 72,
    "firmware rejected": 73,
}

_BY_CODE = {False: {c: n for n, c in EVENTS.items()}, True: {c: n for n, c in MFG_EVENTS.items()}}


def names(mfg: bool = False) -> Dict[int, str]:
    """Event names by code, standard or manufacturer."""
    return dict(_BY_CODE[bool(mfg)])


def event_name(code: int, mfg: bool = False) -> str:
    """The name of an event: ``code`` is TBL_PROC_NBR (or a whole HISTORY_CODE
    word, whose bit 11 then sets ``mfg``).  Codes outside the catalogue read
    "std event N" / "mfg event N"."""
    mfg = bool(mfg) or bool(code & MFG_FLAG)
    code &= MFG_FLAG - 1
    name = _BY_CODE[mfg].get(code)
    return name if name is not None else f"{'mfg' if mfg else 'std'} event {code}"
