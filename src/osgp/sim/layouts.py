"""Procedure parameter layouts and event codes of the simulated meter: every
choice the public record leaves open, in one place.

Procedure numbers and names are those of the CLC/TS 50586 contents (Annex C
basic procedures BPnn = nn, Annex D extended procedures EPnn = 2048 + nn;
``osgp.tables.catalogue``).  The BT07 request and BT08 response framing is
CONFIRMED (MEP guide p.51-54).  The parameter bytes after the PSN are not in
the public OSGP guides: each layout below says where it comes from and is
**INFERRED** unless it says otherwise.  All integers are LSB first (docs/protocol.md §3.4:
every multi-byte OSGP table field is little endian).

==========  =====================================================  ================
procedure   parameters (after proc id and PSN)                     response data
==========  =====================================================  ================
BP05        LIST:UINT8, ENTRIES_READ:UINT16 -- ANSI C12.19           --
            UPDATE_LAST_READ_ENTRY; LIST: 1 history log (BT74),
            2 self reads (BT26), 3..6 load-profile data set 1..4
BP10        SET_MASK:UINT8 (b0 time, b1 date, b2 qualifier),        --
            DATE_TIME:LTIME_DATE, TIME_DATE_QUAL:UINT8 -- C12.19
            SET_DATE_TIME; the last 7 bytes are a BT52 image
BP12        none (activate every pending table)                    --
BP13        TABLE:UINT16 (BTnn = nn, ETnn = 2048 + nn)              --
BP14        none (discard every pending table)                     --
BP15        TABLE:UINT16                                           --
EP11        SET:UINT8 (0 = data set 1), ACTION:UINT8: 0 reset the    --
            data set, 1 configure (+ INTERVAL_MIN:UINT8 dividing
            1440, NBR_CHNS:UINT8 1..2, then reset), 2 stop, 3 start
EP12        none (record a self read now)                          SEQ_NBR:UINT16
EP16        DELTA:INT32 seconds added to the clock                  --
EP23        ACTION:UINT8: 0 open the contactor (disconnect),         STATE:UINT8
            1 close it (reconnect); slow: BT08 reads "accepted"
            (result 1) until the contactor has moved
EP27        ACTION:UINT8 (0 add, 1 remove, 2 remove all),            NBR_GROUPS:UINT8
            GROUP_ID:UINT16 (absent for 2); at most 10 groups
            (ET11 NBR_GROUP_IDS, Optical guide p.41: CONFIRMED)
EP34        none (demand reset)                                    NBR_RESETS:UINT8
EP45        ACTION:UINT8: 1 stage a new key, 2 status; the rest   STATUS: KEY_ID,
            in osgp.services.key_renewal                           STAGED, STAGED_ID
EP08        IMAGE_LENGTH:UINT32, PACKET_SIZE:UINT8, VERSION:UINT16, HELD:UINT16
            CHECK_TYPE:UINT8, CHECK:16 (osgp.services.firmware)
EP09        PACKET:UINT16, DATA (osgp.services.firmware)             --
EP10        AT:UINT32 meter-clock epoch second (0 = now)            --
==========  =====================================================  ================

Result codes are C12.19's (MEP guide p.53): 0 completed, 1 accepted, 2 invalid
parameter (wrong length or value), 3 conflicts with the current setup (an
eleventh group, activating a table that has nothing pending).

Event codes and names (``EVENTS``, ``MFG_EVENTS``) come from the catalogue in
:mod:`osgp.tables.events`: C12.19 standard numbering (INFERRED for OSGP) and
the simulator's own manufacturer events.  HISTORY_ARGUMENT is 6 bytes (BT71 HIST_DATA_LENGTH):
``table or procedure id:UINT16, result:UINT8`` for procedure and table events,
the meter clock before the change as UINT32 epoch seconds for clock events,
zeros otherwise.
"""

from __future__ import annotations

from typing import Dict, Tuple

from osgp.tables.events import EVENTS, MFG_EVENTS  # the event catalogue (osgp.tables.events)

__all__ = [
    "BP05",
    "BP10",
    "BP12",
    "BP13",
    "BP14",
    "BP15",
    "EP11",
    "EP12",
    "EP16",
    "EP23",
    "EP27",
    "EP34",
    "EP45",
    "EP08",
    "EP09",
    "EP10",
    "EP",
    "EVENTS",
    "MFG_EVENTS",
    "LIST_HISTORY",
    "LIST_SELF_READS",
    "LIST_LP_SET1",
    "MAX_GROUPS",
    "SET_TIME",
    "SET_DATE",
    "SET_QUAL",
    "PARAMETER_SIZES",
]

EP = 2048  # manufacturer flag in the procedure id (BT07 bit 11)
BP05, BP10, BP12, BP13, BP14, BP15 = 5, 10, 12, 13, 14, 15
EP11, EP12, EP16, EP23, EP27, EP34 = EP + 11, EP + 12, EP + 16, EP + 23, EP + 27, EP + 34
EP45 = EP + 45  # key renewal: layouts in osgp.services.key_renewal (INFERRED)
EP08, EP09, EP10 = EP + 8, EP + 9, EP + 10  # firmware download (osgp.services.firmware)

LIST_HISTORY, LIST_SELF_READS, LIST_LP_SET1 = 1, 2, 3
SET_TIME, SET_DATE, SET_QUAL = 1, 2, 4
MAX_GROUPS = 10

#: Allowed parameter lengths per procedure (a call with another length ends
#: with result 2).
PARAMETER_SIZES: Dict[int, Tuple[int, ...]] = {
    BP05: (3,),
    BP10: (8,),
    BP12: (0,),
    BP13: (2,),
    BP14: (0,),
    BP15: (2,),
    EP11: (2, 4),
    EP12: (0,),
    EP16: (4,),
    EP23: (1,),
    EP27: (1, 3),
    EP34: (0,),
    EP45: (1, 20, 24, 28),  # STATUS; STAGE of an AES, PLC legacy, MEP legacy key
    EP08: (24,),
    EP09: tuple(range(3, 73)),
    EP10: (4,),
}

#: Control outputs and one-time reads (layouts in osgp.sim.control and
#: osgp.sim.onetime, which add their procedures to PARAMETER_SIZES; their events
#: are in osgp.tables.events):
#: ET11 METER_ONE_TIME_READ_QUEUE_SIZE (ET19 entries) and
#: TIME_BASED_RELAY_SWITCHES (ET61 records per relay, [MEP p.79]; 80 there).
ONE_TIME_QUEUE, RELAY_SWITCHES = 4, 10
EP02, EP21, EP22, EP24, EP36, EP42 = EP + 2, EP + 21, EP + 22, EP + 24, EP + 36, EP + 42
