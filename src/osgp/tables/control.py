"""Layouts of the control-output, one-time-read and group tables: ET05, ET19,
ET30, ET31, ET33, ET46 and ET61.

Sources: [MEP] = OSGP Alliance *MEP Client Developer's Guide* v1.1 (printed
pages).  What the guide prints is marked CONFIRMED; everything else is the
simulator's reconstruction (``osgp.sim.control``, ``osgp.sim.onetime``) and
is **INFERRED**, with the reasoning next to it.  All multi-byte fields are
LSB first (docs/protocol.md §3.4).
"""

from __future__ import annotations

from osgp.tables.builtin import _REGISTER_DATA as REGISTER_DATA
from osgp.tables.builtin import ET, arr, bits, f, if_, list_header, table

__all__ = ["ET05", "ET19", "ET30", "ET31", "ET33", "ET46", "ET61", "SCHEMAS"]

# ET05 Control Output Settings: MAK-writable ([MEP p.260], CONFIRMED).  CONFIRMED offsets:
# 0 the primary maximum power level in W ([MEP p.183] "ET05.0"), 8..23 the prepay
# conversion rates of tiers 1..4 in Wh of credit per kWh ([MEP p.154] "ET05.8...ET05.23"),
# 25 bit 0 "Enable Maximum Power/Current Level Thresholds" ([MEP p.121] "ET05.25.0").
# INFERRED: the secondary level at 4 (EP22 switches between two levels, so the second
# one sits beside the first), the prepay flags in the free byte 24, the per-relay mode
# of the time-based calendar ([MEP p.166]: "configured in ET05") at 26..27.
ET05 = table(
    ET + 5,
    "ET05",
    "Control Output Settings",
    "[MEP p.121, 154, 166, 183, 260]; INFERRED offsets 4, 24, 26..27",
    f("PRIMARY_MAX_LEVEL", "UINT32"),
    f("SECONDARY_MAX_LEVEL", "UINT32"),
    arr("PREPAY_TIER_RATES", 4, {"type": "UINT32"}),
    bits(
        "PREPAY_CONTROL",
        "UINT8",
        ("PREPAY_ENABLED", 0),
        ("DISCONNECT_ON_EXHAUSTED", 1),
        ("NEGATIVE_CREDIT_ENABLED", 2),
        ("RESERVED", 3, 7),
    ),
    bits("LEVEL_CONTROL", "UINT8", ("ENABLE_MAX_LEVEL_THRESHOLDS", 0), ("RESERVED", 1, 7)),
    arr("RELAY_MODES", 2, {"type": "UINT8"}),
)

# ET19 Meter One-Time Read Queue: only its title is public (CLC/TS 50586 B.19); its size
# comes from ET11 METER_ONE_TIME_READ_QUEUE_SIZE ([OPT p.39-42]).  Entries INFERRED:
# the request id EP24 was called with, its state and the capture time asked for.
ET19 = table(
    ET + 19,
    "ET19",
    "Meter One-Time Read Queue",
    "CLC/TS 50586 B.19 (title); entries INFERRED",
    arr(
        "ENTRIES",
        "ET11.METER_ONE_TIME_READ_QUEUE_SIZE",
        [
            f("REQUEST_ID", "UINT16"),
            f("STATE", "UINT8"),  # 0 free, 1 waiting for its time, 2 captured in ET31
            f("READ_TIME", "LTIME_DATE"),
            f("LOG_SEQ_NBR", "UINT16"),  # the ET31 LAST_ENTRY_SEQ_NUMBER of the capture
        ],
    ),
)

# ET30 Maximum power or current level control: read-only ([MEP p.261], CONFIRMED); its
# fields are not public.  INFERRED: the state of every automatic contactor control
# (the active level EP22 chose, the measured value it is compared with, how often it
# opened the contactor, and the disconnect lock EP36 schedules).
ET30 = table(
    ET + 30,
    "ET30",
    "Maximum power or current level control",
    "[MEP p.261] (read-only); fields INFERRED",
    f("ACTIVE_LEVEL", "UINT8"),  # 0 primary, 1 secondary
    f("ACTIVE_THRESHOLD", "UINT32"),
    f("MEASURED", "UINT32"),
    f("EXCEEDED_COUNT", "UINT16"),
    f("LOCK_STATE", "UINT8"),  # 0 none, 1 scheduled, 2 locked open
    f("LOCK_START", "LTIME_DATE"),
    f("LOCK_END", "LTIME_DATE"),  # all zero: until cancelled
)

# ET31 Meter One-time-read Log ([MEP p.104-105], CONFIRMED): a C12.19 list header, then
# BT21.NBR_SELF_READS records {BIDN if BT21.NBR_DEMANDS != 0, STIME_DATE, season, BT23}.
ET31 = table(
    ET + 31,
    "ET31",
    "Meter One-Time Read Log",
    "[MEP p.104-105]",
    *list_header(),
    arr(
        "ONE_TIME_READS",
        "BT21.NBR_SELF_READS",
        [
            if_({"ref": "BT21.NBR_DEMANDS", "ne": 0}, f("BIDN", "UINT16")),
            f("END_DATE_TIME", "STIME_DATE"),
            f("SEASON", "UINT8"),
            f("REGISTER_DATA", "RECORD", fields=REGISTER_DATA),
        ],
    ),
)

# ET46 Control Output Read-Only Data ([MEP p.121-122], CONFIRMED offsets 11, 13, 17).
# Bytes 0..10 are "reserved" there; the simulator keeps the prepay state in 0..8
# (INFERRED: the table already holds the prepay negative credit, so the balance and the
# last credit transaction sit beside it).
ET46 = table(
    ET + 46,
    "ET46",
    "Control Output Read Only Data",
    "[MEP p.121-122]; INFERRED offsets 0..8",
    f("PREPAY_BALANCE", "INT32"),  # Wh of credit left (negative: overflow credit used)
    f("PREPAY_LAST_TRANSACTION", "UINT32"),
    bits(
        "PREPAY_STATUS",
        "UINT8",
        ("CREDIT_EXHAUSTED", 0),
        ("DISCONNECTED_BY_PREPAY", 1),
        ("RESERVED", 2, 7),
    ),
    {"type": "FILL", "length": 2},  # 9..10 reserved
    f("DISCONNECT_CONTROL_TYPE", "UINT8"),  # 0 power, 1 current measurements
    {"type": "FILL", "length": 1},  # 12 reserved
    f("PREPAY_NEGATIVE_CREDIT", "INT32"),
    f("MAX_LEVEL_DISCONNECT_OPEN_TIME", "LTIME_DATE"),
)

# ET61 Time-Based Relay Control ([MEP p.166-167], CONFIRMED): two relays ("Relay Control",
# here records of one field), each ET11 TIME_BASED_RELAY_SWITCHES records of {state b0
# (0 open, 1 closed), minute b5..10, hour b11..15}.  An hour past 23 marks an unused
# record (INFERRED).
ET61 = table(
    ET + 61,
    "ET61",
    "Time-Based Relay Control",
    "[MEP p.166-167]",
    arr(
        "RELAY_CONTROL",
        2,
        [
            arr(
                "SWITCHES",
                "ET11.TIME_BASED_RELAY_SWITCHES",
                bits(
                    "SWITCH",
                    "UINT16",
                    ("STATE", 0),
                    ("FILLER", 1, 4),
                    ("MINUTE", 5, 10),
                    ("HOUR", 11, 15),
                ),
            )
        ],
    ),
)

# ET33 Group Configuration: only its title is public (CLC/TS 50586 B.29).  INFERRED: the
# number of groups the device belongs to, then ET11 NBR_GROUP_IDS group ids ([OPT p.41]:
# up to 10), UINT16 as EP27 takes them and as the ET52 group-broadcast list carries them
# ([MEP p.131]); unused entries 0x0000, which that list calls an invalid group id.
ET33 = table(
    ET + 33,
    "ET33",
    "Group Configuration",
    "CLC/TS 50586 B.29 (title); layout INFERRED",
    f("NBR_GROUPS", "UINT8"),
    arr("GROUP_IDS", "ET11.NBR_GROUP_IDS", {"type": "UINT16"}),
)

SCHEMAS = [ET05, ET19, ET30, ET31, ET33, ET46, ET61]
