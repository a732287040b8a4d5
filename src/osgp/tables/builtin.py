"""Built-in table layouts (schemas, see osgp.tables.schema).

Sources, cited per table: [OPT] = OSGP Alliance *Optical Port Programmer's
Guide* v1.1 (printed page numbers), [MEP] = *MEP Client Developer's Guide*
v1.1, and the sections of docs/protocol.md.
Field names follow ANSI C12.19 where the guides use its names.  All
multi-byte fields are LSB first (docs/protocol.md §3.4).

Where a layout depends on other tables the reference says so: e.g. BT22
counts come from BT21 (pass BT21 in the decode context).  Dimension tables
that are absent fall back to :class:`osgp.tables.TableProfile` defaults only
for BT00 formats (TM_FORMAT, NI formats) and for ``@LP_SETS``.
"""

from __future__ import annotations

from typing import Any


def f(name: str, type_: str, **kw: Any) -> dict:
    d = {"name": name, "type": type_}
    d.update(kw)
    return d


def bits(name: str, type_: str, *subs: tuple) -> dict:
    """Integer with sub-fields: (name, bit) for BOOL(bit), (name, lo, hi) for UINT(lo..hi)."""
    out = []
    for s in subs:
        if len(s) == 2:
            out.append({"name": s[0], "bit": s[1]})
        else:
            out.append({"name": s[0], "bits": [s[1], s[2]]})
    return {"name": name, "type": type_, "bits": out}


def arr(name: str, count: Any, of: Any) -> dict:
    return {"name": name, "type": "ARRAY", "count": count, "of": of}


def if_(when: Any, *then: dict) -> dict:
    return {"type": "IF", "when": when, "then": list(then)}


def list_header(
    status: str = "LIST_STATUS",
    count: str = "UINT8",
    seq: tuple = ("LAST_ENTRY_SEQ_NUMBER", "UINT16"),
) -> list:
    """The ANSI C12.19 list header that leads a list table: the status bit
    field (order, overflow, list type, inhibit overflow), the valid entries,
    the last entry's element, the last entry's sequence number and the
    unread entries ([OPT p.28-29, 51-53], [MEP p.104]).  BT26 and ET31 count
    in UINT8; BT74 in UINT16, with a UINT32 sequence number."""
    return [
        bits(
            status,
            "UINT8",
            ("ORDER", 0),
            ("OVERFLOW_FLAG", 1),
            ("LIST_TYPE", 2),
            ("INHIBIT_OVERFLOW_FLAG", 3),
            ("FILLER", 4, 7),
        ),
        f("NBR_VALID_ENTRIES", count),
        f("LAST_ENTRY_ELEMENT", count),
        f(*seq),
        f("NBR_UNREAD_ENTRIES", count),
    ]


def table(tid: int, name: str, title: str, source: str, *fields: dict) -> dict:
    return {"id": tid, "name": name, "title": title, "source": source, "fields": list(fields)}


ET = 2048

# BT00 bitmap lengths are counts in BT00 itself (docs/protocol.md §7.1, [OPT p.48-49]).
BT00 = table(
    0,
    "BT00",
    "General Configuration",
    "[OPT p.48-49]; docs/protocol.md §7.1",
    bits(
        "FORMAT_CONTROL_1",
        "UINT8",
        ("DATA_ORDER", 0),
        ("CHAR_FORMAT", 1, 3),
        ("MODEL_SELECT", 4, 6),
        ("FILLER", 7, 7),
    ),
    bits(
        "FORMAT_CONTROL_2",
        "UINT8",
        ("TM_FORMAT", 0, 2),
        ("DATA_ACCESS_METHOD", 3, 4),
        ("ID_FORM", 5),
        ("INT_FORMAT", 6, 7),
    ),
    bits("FORMAT_CONTROL_3", "UINT8", ("NI_FORMAT1", 0, 3), ("NI_FORMAT2", 4, 7)),
    f("DEVICE_CLASS", "CHAR", length=4),
    f("NAMEPLATE_TYPE", "UINT8"),
    f("DEFAULT_SET_USED", "UINT8"),
    f("MAX_PROC_PARM_LENGTH", "UINT8"),
    f("MAX_RESP_DATA_LEN", "UINT8"),
    f("STD_VERSION_NO", "UINT8"),
    f("STD_REVISION_NO", "UINT8"),
    f("DIM_STD_TBLS_USED", "UINT8"),
    f("DIM_MFG_TBLS_USED", "UINT8"),
    f("DIM_STD_PROC_USED", "UINT8"),
    f("DIM_MFG_PROC_USED", "UINT8"),
    f("DIM_MFG_STATUS_USED", "UINT8"),
    f("NBR_PENDING", "UINT8"),
    f("STD_TBLS_USED", "SET", length="DIM_STD_TBLS_USED"),
    f("MFG_TBLS_USED", "SET", length="DIM_MFG_TBLS_USED"),
    f("STD_PROC_USED", "SET", length="DIM_STD_PROC_USED"),
    f("MFG_PROC_USED", "SET", length="DIM_MFG_PROC_USED"),
    f("STD_TBLS_WRITE", "SET", length="DIM_STD_TBLS_USED"),
    f("MFG_TBLS_WRITE", "SET", length="DIM_MFG_TBLS_USED"),
)

# BT01: ID_FORM selects CHAR[16] or BCD[8] serial number (docs/protocol.md §7.2, [OPT p.19]).
# NES packs offsets 12-13 and 14-15 as big-endian version words (offset 14 = MSB);
# they are kept as the four UINT8 of C12.19 here, see osgp.tables.firmware_version().
BT01 = table(
    1,
    "BT01",
    "General Manufacturer Identification",
    "[OPT p.19]; docs/protocol.md §7.2",
    f("MANUFACTURER", "CHAR", length=4),
    f("ED_MODEL", "CHAR", length=8),
    f("HW_VERSION_NUMBER", "UINT8"),
    f("HW_REVISION_NUMBER", "UINT8"),
    f("FW_VERSION_NUMBER", "UINT8"),
    f("FW_REVISION_NUMBER", "UINT8"),
    if_(
        {"ref": "BT00.FORMAT_CONTROL_2.ID_FORM", "eq": 0}, f("MFG_SERIAL_NUMBER", "CHAR", length=16)
    ),
    if_({"ref": "BT00.FORMAT_CONTROL_2.ID_FORM", "eq": 1}, f("MFG_SERIAL_NUMBER", "BCD", length=8)),
)

_ED_STD_STATUS1 = (
    ("UNPROGRAMMED", 0),
    ("CONFIGURATION_ERROR", 1),
    ("SELF_CHK_ERROR", 2),
    ("RAM_FAILURE", 3),
    ("ROM_FAILURE", 4),
    ("NONVOL_MEM_FAILURE", 5),
    ("CLOCK_ERROR", 6),
    ("MEASUREMENT_ERROR", 7),
    ("LOW_BATTERY", 8),
    ("LOW_LOSS_POTENTIAL", 9),
    ("DEMAND_OVERLOAD", 10),
    ("POWER_FAILURE", 11),
    ("TAMPER_DETECT", 12),
    ("REVERSE_ROTATION", 13),
    ("DATA_BACKUP_INCOMPLETE", 14),
    ("DISCONNECT_SWITCH_ERROR", 15),
)
BT03 = table(
    3,
    "BT03",
    "End Device Mode Status",
    "[OPT p.45-47]; docs/protocol.md §7.3",
    bits(
        "ED_MODE",
        "UINT8",
        ("METERING", 0),
        ("TEST_MODE", 1),
        ("METER_SHOP_MODE", 2),
        ("FACTORY", 3),
        ("FILLER", 4, 7),
    ),
    bits("ED_STD_STATUS1", "UINT16", *_ED_STD_STATUS1),
    bits(
        "ED_STD_STATUS2",
        "UINT8",
        ("LP_SET2_UNREAD", 0),
        ("LP_SET3_UNREAD", 1),
        ("LP_SET4_UNREAD", 2),
        ("NEUTRAL_CURRENT_DEVIATION", 3),
        ("FILLER", 4, 7),
    ),
    f("ED_MFG_STATUS", "SET", length="BT00.DIM_MFG_STATUS_USED"),
)

# BT04 NES layout (docs/protocol.md §7.5, [OPT p.10-11]).
BT04 = table(
    4,
    "BT04",
    "Pending Status",
    "[OPT p.10-11]; docs/protocol.md §7.5",
    f("STD_TBLS_PENDING", "SET", length="BT00.DIM_STD_TBLS_USED"),
    f("MFG_TBLS_PENDING", "SET", length="BT00.DIM_MFG_TBLS_USED"),
    f("LAST_ACTIVATION_DATE_TIME", "STIME_DATE"),
    f("NBR_PENDING_ACTIVATION", "UINT8"),
    arr(
        "PENDING_ENTRIES",
        "BT00.NBR_PENDING",
        [
            f("EVENT", "BYTES", length=6),
            bits(
                "TABLE",
                "UINT16",
                ("TBL_PROC_NBR", 0, 10),
                ("MFG_FLAG", 11),
                ("STILL_PENDING", 12),
                ("FILLER", 13, 15),
            ),
        ],
    ),
)

BT05 = table(
    5,
    "BT05",
    "Device Identification",
    "docs/protocol.md §7.4 ([TERM])",
    if_({"ref": "BT00.FORMAT_CONTROL_2.ID_FORM", "eq": 0}, f("IDENTIFICATION", "CHAR", length=20)),
    if_({"ref": "BT00.FORMAT_CONTROL_2.ID_FORM", "eq": 1}, f("IDENTIFICATION", "BCD", length=10)),
)

# BT07 / BT08 procedure request and response (docs/protocol.md §4.1, [MEP p.51-54]).
_PROC = bits("PROC", "UINT16", ("TBL_PROC_NBR", 0, 10), ("MFG_FLAG", 11), ("SELECTOR", 12, 15))
BT07 = table(
    7,
    "BT07",
    "Procedure Initiate",
    "[MEP p.51-54]; docs/protocol.md §4.1",
    _PROC,
    f("SEQ_NBR", "UINT8"),
    f("PARM_DATA", "BYTES", length={"ref": "@DATA_LEN", "add": -3}),
)
BT08 = table(
    8,
    "BT08",
    "Procedure Response",
    "[MEP p.51-54]; docs/protocol.md §4.1",
    _PROC,
    f("SEQ_NBR", "UINT8"),
    f("RESULT_CODE", "UINT8"),
    f("RESP_DATA", "BYTES", length={"ref": "@DATA_LEN", "add": -4}),
)

_BT2X_FLAGS = [
    bits(
        "REG_FUNC1_FLAGS",
        "UINT8",
        ("SEASON_INFO_FIELD_FLAG", 0),
        ("DATE_TIME_FIELD_FLAG", 1),
        ("DEMAND_RESET_CTR_FLAG", 2),
        ("DEMAND_RESET_LOCK_FLAG", 3),
        ("CUM_DEMAND_FLAG", 4),
        ("CONT_CUM_DEMAND_FLAG", 5),
        ("TIME_REMAINING_FLAG", 6),
        ("FILLER", 7, 7),
    ),
    bits(
        "REG_FUNC2_FLAGS",
        "UINT8",
        ("SELF_READ_INHIBIT_OVERFLOW_FLAG", 0),
        ("SELF_READ_SEQ_NBR_FLAG", 1),
        ("DAILY_SELF_READ_FLAG", 2),
        ("WEEKLY_SELF_READ_FLAG", 3),
        ("SELF_READ_DEMAND_RESET", 4, 5),
        ("FILLER", 6, 7),
    ),
    f("NBR_SELF_READS", "UINT8"),
    f("NBR_SUMMATIONS", "UINT8"),
    f("NBR_DEMANDS", "UINT8"),
    f("NBR_COIN_VALUES", "UINT8"),
    f("NBR_OCCUR", "UINT8"),
    f("NBR_TIERS", "UINT8"),
    f("NBR_PRESENT_DEMANDS", "UINT8"),
    f("NBR_PRESENT_VALUES", "UINT8"),
]
BT20 = table(20, "BT20", "Dimension Register", "[OPT p.20-21]; docs/protocol.md §7.9", *_BT2X_FLAGS)
BT21 = table(21, "BT21", "Actual Register", "[OPT p.21-23]; docs/protocol.md §7.9", *_BT2X_FLAGS)

BT22 = table(
    22,
    "BT22",
    "Data Selection",
    "[OPT p.23-24]",
    arr("SUMMATION_SELECT", "BT21.NBR_SUMMATIONS", {"type": "UINT8"}),
    arr("DEMAND_SELECT", "BT21.NBR_DEMANDS", {"type": "UINT8"}),
    f("MIN_OR_MAX_FLAGS", "SET", length={"ref": "BT21.NBR_DEMANDS", "add": 7, "div": 8}),
    arr("COINCIDENT_SELECT", "BT21.NBR_COIN_VALUES", {"type": "UINT8"}),
    arr("COIN_DEMAND_ASSOC", "BT21.NBR_COIN_VALUES", {"type": "UINT8"}),
)

# BT23 DATA_BLK_RCD ([OPT p.24-28]): summations, demands (DmdRcd), coincidents (CoinRcd).
_DATA_BLK = [
    arr("SUMMATIONS", "BT21.NBR_SUMMATIONS", {"type": "NI_FMAT1"}),
    arr(
        "DEMANDS",
        "BT21.NBR_DEMANDS",
        [
            if_(
                "BT21.REG_FUNC1_FLAGS.DATE_TIME_FIELD_FLAG",
                arr("EVENT_TIME", "BT21.NBR_OCCUR", {"type": "STIME_DATE"}),
            ),
            if_("BT21.REG_FUNC1_FLAGS.CUM_DEMAND_FLAG", f("CUM_DEMAND", "NI_FMAT1")),
            if_("BT21.REG_FUNC1_FLAGS.CONT_CUM_DEMAND_FLAG", f("CONT_CUM_DEMAND", "NI_FMAT1")),
            arr("DEMAND", "BT21.NBR_OCCUR", {"type": "NI_FMAT2"}),
        ],
    ),
    arr(
        "COINCIDENTS",
        "BT21.NBR_COIN_VALUES",
        [
            arr("COINCIDENT_VALUES", "BT21.NBR_OCCUR", {"type": "NI_FMAT2"}),
        ],
    ),
]
_REGISTER_DATA = [
    if_("BT21.REG_FUNC1_FLAGS.DEMAND_RESET_CTR_FLAG", f("NBR_DEMAND_RESETS", "UINT8")),
    f("TOT_DATA_BLOCK", "RECORD", fields=_DATA_BLK),
    arr("TIER_DATA_BLOCK", "BT21.NBR_TIERS", _DATA_BLK),
]
BT23 = table(23, "BT23", "Current Register Data", "[OPT p.24-28]", *_REGISTER_DATA)

# BT26 self reads: list header then entries {BIDN, STIME_DATE, season, BT23 snapshot}
# ([OPT p.28-29], docs/protocol.md §7.9; ANSI C12.19 SELF_READ_DATA_TBL field order).
BT26 = table(
    26,
    "BT26",
    "Self Read Data",
    "[OPT p.28-29]; docs/protocol.md §7.9",
    *list_header(),
    arr(
        "SELF_READS",
        "BT21.NBR_SELF_READS",
        [
            if_("BT21.REG_FUNC2_FLAGS.SELF_READ_SEQ_NBR_FLAG", f("SELF_READ_SEQ_NBR", "UINT16")),
            if_("BT21.REG_FUNC1_FLAGS.DATE_TIME_FIELD_FLAG", f("END_DATE_TIME", "STIME_DATE")),
            if_("BT21.REG_FUNC1_FLAGS.SEASON_INFO_FIELD_FLAG", f("SEASON", "UINT8")),
            f("SELF_READ_REGISTER_DATA", "RECORD", fields=_REGISTER_DATA),
        ],
    ),
)

# BT52 clock, BT53 time offset (NES), BT55 clock state (docs/protocol.md §7.6, [MEP p.224-231]).
_QUAL = bits(
    "TIME_DATE_QUAL",
    "UINT8",
    ("DAY_OF_WEEK", 0, 2),
    ("DST_FLAG", 3),
    ("GMT_FLAG", 4),
    ("TM_ZN_APPLIED_FLAG", 5),
    ("DST_APPLIED_FLAG", 6),
    ("FILLER", 7, 7),
)
BT52 = table(
    52, "BT52", "Clock", "[MEP p.224-225]", f("CLOCK_CALENDAR", "LTIME_DATE"), _QUAL
)
BT53 = table(
    53,
    "BT53",
    "Time Offset",
    "[MEP p.225]; docs/protocol.md §7.6",
    f("DST_TIME_EFF", "TIME"),
    f("DST_TIME_AMT", "UINT8"),
    f("TIME_ZONE_OFFSET", "INT16"),
)
BT55 = table(
    55,
    "BT55",
    "Clock State",
    "[MEP p.230-231]; docs/protocol.md §7.6",
    f("CLOCK_CALENDAR", "LTIME_DATE"),
    _QUAL,
    bits(
        "STATUS",
        "UINT16",
        ("CURR_TIER", 0, 2),
        ("FILLER", 3, 5),
        ("TIER_DRIVE", 6, 7),
        ("SPECIAL_SCHD_ACTIVE", 8, 11),
        ("SEASON", 12, 15),
    ),
)

# BT60 / BT61 load-profile dimensions ([OPT p.31-33], docs/protocol.md §7.7).  One set
# record per enabled data set (@LP_SETS: tables 64..67 present in BT00).
_LP_DIM = [
    f("LP_MEMORY_LEN", "UINT32"),
    bits(
        "LP_FLAGS",
        "UINT16",
        ("LP_SET1_INHIBIT_OVF_FLAG", 0),
        ("LP_SET2_INHIBIT_OVF_FLAG", 1),
        ("LP_SET3_INHIBIT_OVF_FLAG", 2),
        ("LP_SET4_INHIBIT_OVF_FLAG", 3),
        ("BLK_END_READ_FLAG", 4),
        ("BLK_END_PULSE_FLAG", 5),
        ("SCALAR_DIVISOR_FLAG_SET1", 6),
        ("SCALAR_DIVISOR_FLAG_SET2", 7),
        ("SCALAR_DIVISOR_FLAG_SET3", 8),
        ("SCALAR_DIVISOR_FLAG_SET4", 9),
        ("EXTENDED_INT_STATUS_FLAG", 10),
        ("SIMPLE_INT_STATUS_FLAG", 11),
        ("FILLER", 12, 15),
    ),
    bits(
        "LP_FMATS",
        "UINT8",
        ("INV_UINT8_FLAG", 0),
        ("INV_UINT16_FLAG", 1),
        ("INV_UINT32_FLAG", 2),
        ("INV_INT8_FLAG", 3),
        ("INV_INT16_FLAG", 4),
        ("INV_INT32_FLAG", 5),
        ("INV_NI_FMAT1_FLAG", 6),
        ("INV_NI_FMAT2_FLAG", 7),
    ),
    arr(
        "LP_DATA_SETS",
        "@LP_SETS",
        [
            f("NBR_BLKS_SET", "UINT16"),
            f("NBR_BLK_INTS_SET", "UINT16"),
            f("NBR_CHNS_SET", "UINT8"),
            f("MAX_INT_TIME_SET", "UINT8"),
        ],
    ),
]
BT60 = table(60, "BT60", "Dimension Load Profile", "[OPT p.31-33]; docs/protocol.md §7.7", *_LP_DIM)
BT61 = table(61, "BT61", "Actual Load Profile", "[OPT p.31-33]; docs/protocol.md §7.7", *_LP_DIM)


def _bt62_set(k: int) -> list:
    n = f"BT61.LP_DATA_SETS[{k}].NBR_CHNS_SET"
    sd = f"BT61.LP_FLAGS.SCALAR_DIVISOR_FLAG_SET{k + 1}"
    return [
        arr(
            f"LP_SEL_SET{k + 1}",
            n,
            [
                bits("CHNL_FLAG", "UINT8", ("END_RDG_FLAG", 0), ("FILLER", 1, 7)),
                f("LP_SOURCE_SELECT", "UINT8"),
                f("END_BLK_RDG_SOURCE_SELECT", "UINT8"),
            ],
        ),
        f(f"INT_FMT_CDE{k + 1}", "UINT8"),
        if_(
            sd,
            arr(f"SCALARS_SET{k + 1}", n, {"type": "UINT16"}),
            arr(f"DIVISOR_SET{k + 1}", n, {"type": "UINT16"}),
        ),
    ]


# BT62 ([OPT p.33-34], docs/protocol.md §7.7): one control block per enabled set.
BT62 = table(
    62,
    "BT62",
    "Load Profile Control",
    "[OPT p.33-34]; docs/protocol.md §7.7",
    # set k is present when @LP_SETS > k: (LP_SETS + 3 - k) / 4 is non-zero for LP_SETS in 1..4
    *[if_({"ref": "@LP_SETS", "add": 3 - k, "div": 4}, *_bt62_set(k)) for k in range(4)],
)

# BT63 ([OPT p.34-35], docs/protocol.md §7.7).
BT63 = table(
    63,
    "BT63",
    "Load Profile Status",
    "[OPT p.34-35]; docs/protocol.md §7.7",
    arr(
        "LP_STATUS_SETS",
        "@LP_SETS",
        [
            bits(
                "LP_SET_STATUS_FLAGS",
                "UINT8",
                ("BLOCK_ORDER", 0, 0),
                ("OVERFLOW_FLAG", 1),
                ("LIST_TYPE", 2, 2),
                ("BLOCK_INHIBIT_OVERFLOW_FLAG", 3),
                ("INTERVAL_ORDER", 4, 4),
                ("ACTIVE_MODE_FLAG", 5),
                ("TEST_MODE", 6),
                ("FILLER", 7, 7),
            ),
            f("NBR_VALID_BLOCKS", "UINT16"),
            f("LAST_BLOCK_ELEMENT", "UINT16"),
            f("LAST_BLOCK_SEQ_NBR", "UINT32"),
            f("NBR_UNREAD_BLOCKS", "UINT16"),
            f("NBR_VALID_INT", "UINT16"),
        ],
    ),
)


def _lp_data(k: int) -> dict:
    """BT64+k block array ([OPT p.35-36]).  INT_DATA uses NI_FMAT1 / fixed widths per
    INT_FMT_CDE; this generic schema covers the NES INT32 layout and the ANSI
    optional fields; osgp.loadprofile is the fast, complete decoder."""
    s = f"BT61.LP_DATA_SETS[{k}]"
    n = f"{s}.NBR_CHNS_SET"
    return table(
        64 + k,
        f"BT{64 + k}",
        f"Load Profile Data Set {k + 1}",
        "[OPT p.35-36]; docs/protocol.md §7.7",
        arr(
            "LP_BLOCKS",
            f"{s}.NBR_BLKS_SET",
            [
                f("BLK_END_TIME", "STIME_DATE"),
                arr(
                    "END_READINGS",
                    {"ref": "BT61.LP_FLAGS.BLK_END_READ_FLAG", "times": n},
                    [f("BLOCK_END_READ", "NI_FMAT1")],
                ),
                arr(
                    "END_PULSES",
                    {"ref": "BT61.LP_FLAGS.BLK_END_PULSE_FLAG", "times": n},
                    [f("BLOCK_END_PULSE", "UINT32")],
                ),
                if_(
                    "BT61.LP_FLAGS.SIMPLE_INT_STATUS_FLAG",
                    f(
                        "SIMPLE_INT_STATUS",
                        "SET",
                        length={"ref": f"{s}.NBR_BLK_INTS_SET", "add": 7, "div": 8},
                    ),
                ),
                arr(
                    "INTERVALS",
                    f"{s}.NBR_BLK_INTS_SET",
                    [
                        if_(
                            "BT61.LP_FLAGS.EXTENDED_INT_STATUS_FLAG",
                            f(
                                "EXTENDED_INT_STATUS",
                                "BYTES",
                                length={"ref": n, "add": 2, "div": 2},
                            ),
                        ),
                        arr("INT_DATA", n, {"type": "INT32"}),
                    ],
                ),
            ],
        ),
    )


BT64, BT65, BT66, BT67 = (_lp_data(k) for k in range(4))

# BT70 / BT71 log dimensions, BT74 history log (docs/protocol.md §7.8, [OPT p.50-53]).
_LOG_DIM = [
    bits(
        "LOG_FLAGS",
        "UINT8",
        ("EVENT_NUMBER_FLAG", 0),
        ("HIST_DATE_TIME_FLAG", 1),
        ("HIST_SEQ_NBR_FLAG", 2),
        ("HIST_INHIBIT_OVF_FLAG", 3),
        ("EVENT_INHIBIT_OVF_FLAG", 4),
        ("FILLER", 5, 7),
    ),
    f("NBR_STD_EVENTS", "UINT8"),
    f("NBR_MFG_EVENTS", "UINT8"),
    f("HIST_DATA_LENGTH", "UINT8"),
    f("EVENT_DATA_LENGTH", "UINT8"),
    f("NBR_HISTORY_ENTRIES", "UINT16"),
    f("NBR_EVENT_ENTRIES", "UINT16"),
]
BT70 = table(70, "BT70", "Dimension Log", "[OPT p.50-51]; docs/protocol.md §7.8", *_LOG_DIM)
BT71 = table(71, "BT71", "Actual Log", "[OPT p.50-51]; docs/protocol.md §7.8", *_LOG_DIM)
BT74 = table(
    74,
    "BT74",
    "History Log Data",
    "[OPT p.51-53]; docs/protocol.md §7.8",
    *list_header("HIST_FLAGS", "UINT16", ("LAST_ENTRY_SEQ_NBR", "UINT32")),
    arr(
        "ENTRIES",
        "BT71.NBR_HISTORY_ENTRIES",
        [
            if_("BT71.LOG_FLAGS.HIST_DATE_TIME_FLAG", f("HISTORY_TIME", "LTIME_DATE")),
            if_("BT71.LOG_FLAGS.EVENT_NUMBER_FLAG", f("EVENT_NUMBER", "UINT16")),
            if_("BT71.LOG_FLAGS.HIST_SEQ_NBR_FLAG", f("HISTORY_SEQ_NBR", "UINT16")),
            f("USER_ID", "UINT16"),
            bits(
                "HISTORY_CODE",
                "UINT16",
                ("TBL_PROC_NBR", 0, 10),
                ("STD_VS_MFG_FLAG", 11),
                ("FILLER", 12, 15),
            ),
            f("HISTORY_ARGUMENT", "BYTES", length="BT71.HIST_DATA_LENGTH"),
        ],
    ),
)

ET03 = table(
    ET + 3,
    "ET03",
    "Utility Information",
    "[OPT p.18]",
    f("UTILITY_SERIAL_NUMBER", "CHAR", length=30),
)

ET11 = table(
    ET + 11,
    "ET11",
    "MFG Dimension",
    "[OPT p.39-42]",
    *[
        f(n, t)
        for n, t in (
            ("NBR_DEVICES", "UINT8"),
            ("CONFIG_ENTRY_SIZE", "UINT8"),
            ("STATUS_ENTRY_SIZE", "UINT8"),
            ("ON_DEMAND_QUEUE_SIZE", "UINT8"),
            ("ON_DEMAND_ENTRY_SIZE", "UINT8"),
            ("DATA_ENTRY_SIZE", "UINT16"),
            ("TRANSACTION_REQUEST_LENGTH", "UINT16"),
            ("TRANSACTION_RESPONSE_LENGTH", "UINT16"),
            ("ON_DEMAND_WRITE_ENTRY_SIZE", "UINT8"),
            ("PHASE_MEASUREMENT_DATA_SIZE", "UINT8"),
            ("CONFIG_ENTRY2_SIZE", "UINT8"),
            ("METER_ONE_TIME_READ_QUEUE_SIZE", "UINT8"),
            ("MBUS_ONE_TIME_READ_QUEUE_SIZE", "UINT8"),
            ("METER_ONE_TIME_READ_ENTRY_SIZE", "UINT8"),
            ("MBUS_ONE_TIME_READ_ENTRY_SIZE", "UINT8"),
            ("NBR_GROUP_IDS", "UINT8"),
            ("NBR_HARMONICS", "UINT8"),
            ("MBUS_MULTICAST_MESSAGE_LENGTH", "UINT8"),
            ("ET22_ALARM_SIZE", "UINT8"),
            ("MEP_DATA_SOURCES", "UINT8"),
            ("ET48_ENTRY_COUNT", "UINT8"),
            # offsets 24..37, added by firmware versions 3.30 to 4.0 ([OPT p.40-41])
            ("MAX_CRITICAL_EVENT_BITMAPS", "UINT8"),
            ("ET57_ENTRY_COUNT", "UINT8"),
            ("TIME_BASED_RELAY_SWITCHES", "UINT8"),
            ("MEP_DELTA_DATA_ALERT_SOURCES", "UINT8"),
            ("RAM_ONLY_TRANSACTION_REQUEST_LENGTH", "UINT16"),
            ("RAM_ONLY_TRANSACTION_RESPONSE_LENGTH", "UINT16"),
            ("FIRMWARE_MODULE_ENTRY_COUNT", "UINT8"),
            ("FIRMWARE_MODULE_ENTRY_LENGTH", "UINT8"),
            ("MEP_CHANNEL_COUNT", "UINT8"),
            ("RESERVED_35", "UINT8"),
            ("ET17_BITMAP_SIZE", "UINT16"),
        )
    ],
)

# ET21 ([OPT p.38-40]): one record per data set; fields up to offset 30
# (sources) are present on every firmware, later ones are added by version,
# so the record is the 38-byte base form (later fields: osgp.loadprofile reads
# only the base ones).
ET21 = table(
    ET + 21,
    "ET21",
    "Load Profile Internal Configuration",
    "[OPT p.38-40]",
    arr(
        "DATA_SETS",
        "@LP_SETS",
        [
            f("CURRENT_BLOCK_ADDRESS", "UINT32"),
            f("CURRENT_INTERVAL_ADDRESS", "UINT32"),
            f("BLOCK_SIZE", "UINT32"),
            f("BLOCK_HEADER_SIZE", "UINT16"),
            f("NBR_VALID_BLOCKS", "UINT16"),
            f("NBR_VALID_INTERVALS", "UINT16"),
            f("LAST_BLOCK_INDEX", "UINT16"),
            f("LAST_INTERVAL_NUMBER", "UINT16"),
            f("SIMPLE_STATUS_OFFSET", "UINT8"),
            f("SIMPLE_STATUS_SIZE", "UINT8"),
            f("INTERVAL0_OFFSET", "UINT8"),
            f("INTERVAL_SIZE", "UINT8"),
            f("CHANNEL0_OFFSET", "UINT8"),
            f("EXTENDED_STATUS_COMMON", "UINT8"),
            f("NBR_CHANNELS", "UINT8"),
            f("INTERVAL_TIME", "UINT8"),
            arr("SOURCES", 8, {"type": "UINT8"}),
            # later firmware appends fields to each record (INFERRED record size,
            # TableProfile.et21_record_size)
            {"type": "FILL", "length": "@ET21_PAD"},
        ],
    ),
)


# BT24 previous season / BT25 previous demand reset data: a BT23 snapshot with its
# capture time and season ([MEP p.209-210]; optional fields per BT21 flags as BT26).
def _snapshot(tid: int, name: str, title: str) -> dict:
    return table(
        tid,
        name,
        title,
        "[MEP p.209-210]",
        if_("BT21.REG_FUNC1_FLAGS.DATE_TIME_FIELD_FLAG", f("END_DATE_TIME", "STIME_DATE")),
        if_("BT21.REG_FUNC1_FLAGS.SEASON_INFO_FIELD_FLAG", f("SEASON", "UINT8")),
        f("REGISTER_DATA", "RECORD", fields=_REGISTER_DATA),
    )


BT24 = _snapshot(24, "BT24", "Previous Season Data")
BT25 = _snapshot(25, "BT25", "Previous Demand Reset Data")

# BT27 present register selection, BT28 present register data ([MEP p.212-218]).
BT27 = table(
    27,
    "BT27",
    "Present Register Selection",
    "[MEP p.212-213]",
    arr("PRESENT_DEMAND_SELECT", "BT21.NBR_PRESENT_DEMANDS", {"type": "UINT8"}),
    arr("PRESENT_VALUE_SELECT", "BT21.NBR_PRESENT_VALUES", {"type": "UINT8"}),
)
BT28 = table(
    28,
    "BT28",
    "Present Register Data",
    "[MEP p.213-218]",
    arr(
        "PRESENT_DEMANDS",
        "BT21.NBR_PRESENT_DEMANDS",
        [
            if_("BT21.REG_FUNC1_FLAGS.TIME_REMAINING_FLAG", f("TIME_REMAINING", "TIME")),
            f("DEMAND_VALUE", "NI_FMAT2"),
        ],
    ),
    arr("PRESENT_VALUES", "BT21.NBR_PRESENT_VALUES", {"type": "NI_FMAT1"}),
)

# BT50 dimension time and TOU ([MEP p.220-222]).  OSGP has no BT51 (contents,
# Annex A); BT54 is sized by BT50 ([MEP p.223-227]).
BT50 = table(
    50,
    "BT50",
    "Dimension Time and TOU",
    "[MEP p.220-222]",
    bits(
        "TIME_FUNC_FLAG1",
        "UINT8",
        ("TOU_SELF_READ_FLAG", 0),
        ("SEASON_SELF_READ_FLAG", 1),
        ("SEASON_DEMAND_RESET_FLAG", 2),
        ("SEASON_CHNG_ARMED_FLAG", 3),
        ("SORT_DATE_FLAG", 4),
        ("ANCHOR_DATE_FLAG", 5),
        ("FILLER", 6, 7),
    ),
    bits(
        "TIME_FUNC_FLAG2",
        "UINT8",
        ("CAP_DST_AUTO_FLAG", 0),
        ("SEPARATE_WEEKDAYS_FLAG", 1),
        ("SEPARATE_SUM_DEMANDS_FLAG", 2),
        ("SORT_TIER_SWITCHES_FLAG", 3),
        ("CAP_TM_ZN_OFFSET_FLAG", 4),
        ("FILLER", 5, 7),
    ),
    bits("CALENDAR_FUNC", "UINT8", ("NBR_SEASONS", 0, 3), ("NBR_SPECIAL_SCHED", 4, 7)),
    f("NBR_NON_RECURR_DATES", "UINT8"),
    f("NBR_RECURR_DATES", "UINT8"),
    f("NBR_TIER_SWITCHES", "UINT16"),
    f("CALENDAR_TBL_SIZE", "UINT16"),
)

_CAL_ACTION = bits(
    "CALENDAR_ACTION",
    "UINT8",
    ("ACTION", 0, 4),
    ("DEMAND_RESET_FLAG", 5),
    ("SELF_READ_FLAG", 6),
    ("TOU_FORMAT", 7),
)
BT54 = table(
    54,
    "BT54",
    "Calendar",
    "[MEP p.223-227]; RDATE / ANSI_DATE bit layout docs/protocol.md §3.4",
    if_("BT50.TIME_FUNC_FLAG1.ANCHOR_DATE_FLAG", f("ANCHOR_DATE", "UINT16")),
    arr(
        "NON_RECURR_DATES",
        "BT50.NBR_NON_RECURR_DATES",
        [
            bits("NON_RECURR_DATE", "UINT16", ("YEAR", 0, 6), ("MONTH", 7, 10), ("DAY", 11, 15)),
            _CAL_ACTION,
        ],
    ),
    # RDATE: MONTH = bits 0..3; the other bits depend on MONTH (docs/protocol.md §3.4), so the
    # word is kept whole
    arr("RECURR_DATES", "BT50.NBR_RECURR_DATES", [f("RECURR_DATE", "UINT16"), _CAL_ACTION]),
    arr(
        "TIER_SWITCHES",
        "BT50.NBR_TIER_SWITCHES",
        [
            bits(
                "TIER_SWITCH",
                "UINT16",
                ("NEW_TIER", 0, 2),
                ("FILLER", 3, 4),
                ("SWITCH_MIN", 5, 10),
                ("SWITCH_HOUR", 11, 15),
            ),
            f("DAY_SCH_NUM", "UINT8"),
        ],
    ),
    # per season: [Saturday, Sunday, Weekday] or, with separate week days, 7 days
    # (order as [MEP p.227]), then the special schedules
    arr(
        "SEASON_SCHEDULES",
        "BT50.CALENDAR_FUNC.NBR_SEASONS",
        [
            arr(
                "DAY_SCHEDULES",
                {"ref": "BT50.TIME_FUNC_FLAG2.SEPARATE_WEEKDAYS_FLAG", "mul": 4, "add": 3},
                {"type": "UINT8"},
            ),
            arr("SPECIAL_SCHEDULES", "BT50.CALENDAR_FUNC.NBR_SPECIAL_SCHED", {"type": "UINT8"}),
        ],
    ),
    f("CALENDAR_ID", "UINT32"),
)

# ET04 System Information ([MEP p.54-67]); names shortened from the guide's field names.
ET04 = table(
    ET + 4,
    "ET04",
    "System Information",
    "[MEP p.54-67]",
    f("SEQUENCE_NUMBER", "UINT32"),
    f("TRANSCEIVER_ID", "BYTES", length=6),
    f("SUBNET_ID", "UINT8"),
    f("NODE_ID", "UINT8"),
    bits(
        "PLC_FLAGS",
        "UINT8",
        ("EXPLICIT_MESSAGE_RECEIVED", 0),
        ("FORCE_NEURON_MFG", 1),
        ("REQUEST", 2),
        ("DISABLE_PLC_ENCRYPTION", 3),
        ("DISABLE_NEURON_EEPROM", 4),
        ("NEURON_PHASE", 5, 7),
    ),
    f("RATED_FREQUENCY", "UINT8"),
    f("PROGRAM_ID", "BYTES", length=8),
    f("SELF_IDENTIFICATION", "BYTES", length=30),
    f("PK_ACCESS", "UINT8"),
    f("MAX_POWER_OUTAGES_RECORDED", "UINT8"),
    {"type": "FILL", "length": 1},
    f("MAX_NBR_TE_REGISTERS", "UINT8"),
    f("REGISTRATION_CURRENT", "UINT16"),
    f("MAX_CURRENT", "UINT16"),
    f("RATED_VOLTAGE", "UINT16"),
    bits(
        "PHASE_FLAGS",
        "UINT8",
        ("DISABLE_PHASE_L1", 0),
        ("DISABLE_PHASE_L2", 1),
        ("DISABLE_PHASE_L3", 2),
        ("SEPARATE", 3),
        ("DISABLE_PHASE_L1_B", 4),
        ("DISABLE_PHASE_L2_B", 5),
        ("DISABLE_PHASE_L3_B", 6),
        ("RESERVED", 7),
    ),
    f("DST_OFF_TIME_DELTA", "INT16"),
    f("HOUR", "UINT8"),
    f("MINUTE", "UINT8"),
    f("STOP_MODE_CONFIG", "UINT8"),
    {"type": "FILL", "length": 3},  # 68..70 manufacturer status
    bits(
        "ACCESS_FLAGS",
        "UINT8",
        ("RK_BP10_EP16_ACCESS_DISABLED", 0),
        ("TEST_POINT", 1),
        ("TEST_POINT_INTERNAL", 2),
        ("LP_USE", 3),
        ("FILLER", 4, 7),
    ),
    f("NEURON_STATE", "UINT8"),
    f("PHASE_ROTATION_CHANGED", "UINT8"),
    f("PLC_COMM_INACTIVE_TIME_THRESHOLD", "UINT16"),
    f("BROADCAST_RECEIPT", "LTIME_DATE"),
    f("BROADCAST_BASE", "UINT32"),
    f("BROADCAST_DELTA", "UINT16"),
    f("REVERSE_ENERGY_ALARM_CURRENT", "UINT16"),
    f("PLC_SIGNAL_QUALITY_STATUS", "UINT8"),
    f("AUTO_DISCOVERY_TA", "UINT16"),
    f("AUTO_DISCOVERY_TO", "UINT16"),
    f("AUTO_DISCOVERY_DISABLE", "UINT8"),
    f("AMPLIFIER_GAIN", "INT16"),
    f("EVENTS_OUTAGE_THRESHOLD", "UINT16"),
    f("NVM_SIZE", "UINT16"),
    f("SAFE_IMAGE", "UINT8"),
    f("MEP_SEQ_NBR", "UINT32"),
    {"type": "FILL", "length": 2},
    f("PREMISE_POWER_GENERATION", "UINT8"),
    f("POWER_OUTAGE_DETECTION", "UINT8"),
    f("PHASE_LOSS_THRESHOLD", "UINT8"),
    f("METER_FORM", "UINT8"),
    f("CLOCK_ERROR_TIER", "UINT8"),
    f("C1219_COMPLIANCE", "UINT16"),
    f("IDT_VERSION", "UINT8"),
    f("TILT_TIMER", "UINT8"),
    f("MIN_REGISTRATION_CURRENT", "UINT16"),
    f("REGISTRATION_CURRENT_FRACTION", "UINT8"),
    bits("PHASE_LOSS_FLAGS", "UINT8", ("CONSTANT_PHASE_LOSS_ALARM", 0), ("FILLER", 1, 7)),
    f("POWER_UP_WAIT_TIME", "UINT8"),
    f("MAX_KEY_USAGE_COUNT", "UINT32"),
    f("SECURITY_MODE", "UINT8"),
    f("FCM_MESSAGE_COUNT", "UINT8"),
    arr("MEP_SEQUENCE_NUMBERS", 2, {"type": "UINT32"}),
    f("REVERSE_ENERGY_ALARM_TIME_MS", "UINT8"),
    f("REVERSE_ENERGY_ALARM_TIME_S", "UINT16"),
)

# ET23 Miscellaneous Information ([MEP p.98-99]), firmware 3.X size (186 bytes);
# DISCONNECT_INTERNAL_STATUS: 0 closed, 1 closing, 2 opened, 3 opening [MEP p.99].
ET23 = table(
    ET + 23,
    "ET23",
    "Miscellaneous Information",
    "[MEP p.98-99]",
    f("LONTALK_MESSAGES_RECEIVED", "UINT32"),
    f("LONTALK_MESSAGES_VALIDATED", "UINT32"),
    {"type": "FILL", "length": 86},  # 8..93 internal
    f("DISCONNECT_INTERNAL_STATUS", "UINT8"),
    f("ACTIVE_CALENDAR_ID", "UINT32"),
    {"type": "FILL", "length": 87},  # 99..185 internal (4.0+: 99..217)
)

# ET54 Meter Status ([MEP p.130-137]) up to the supported security modes (offset 90);
# the per-module array after it is internal.  The guide lists offset 19 as
# BOOL(0) + BOOL(1..15) but the next field at 20: one byte is used here (INFERRED).
ET54 = table(
    ET + 54,
    "ET54",
    "Meter Status",
    "[MEP p.130-137]; docs/protocol.md §2.5, §5.1",
    bits(
        "INTERFACE",
        "UINT16",
        ("RESERVED0", 0, 1),
        ("MULTIPLE_LOAD_PROFILE", 2),
        ("RESERVED3", 3, 5),
        ("ENERGY_UNIT", 6),
        ("LCD_VALUE_ID", 7),
        ("MULTIPLE_MEP", 8),
        ("RESERVED9", 9, 15),
    ),
    {"type": "FILL", "length": 17},  # 2..18
    bits("LOAD_PROFILE_STATUS", "UINT8", ("LOAD_PROFILE_DISABLED", 0), ("RESERVED", 1, 7)),
    {"type": "FILL", "length": 24},  # 20..43
    bits(
        "TIER_DRIVE",
        "UINT8",
        ("OVER_POWER_THRESHOLD_EXCEEDED", 0),
        ("STEP_TARIFF_IN_USE", 1),
        ("RESERVED", 2, 7),
    ),
    {"type": "FILL", "length": 17},  # 45..61
    f("CONTROL_RELAY1_RANDOM_PENDING", "UINT8"),
    f("CONTROL_RELAY1_RANDOM_DURATION", "UINT16"),
    f("CONTROL_RELAY1_RANDOM_START_DURATION", "UINT16"),
    {"type": "FILL", "length": 1},  # 67
    f("MISWIRING_REASON", "UINT8"),
    f("ET74_ENTRY_COUNT", "UINT16"),
    bits(
        "COMPLIANCE_FLAGS",
        "UINT8",
        ("WELMEC_11_2", 0),
        ("DELTA_TIME_SYNC_STATUS", 1, 2),
        ("RESERVED", 3, 5),
        ("DISCONNECT_PUSH_BUTTON_LOCKED", 6),
        ("RESERVED7", 7),
    ),
    f("TIME_ADJUSTMENT_IN_LP_INTERVAL", "INT32"),
    {"type": "FILL", "length": 3},  # 76..78
    f("ET77_ENTRY_COUNT", "UINT8"),
    f("ET79_ENTRY_COUNT", "UINT16"),
    f("UNICAST_KEY_USAGE_COUNT", "UINT32"),
    f("BROADCAST_KEY_USAGE_COUNT", "UINT32"),
    f("SUPPORTED_SECURITY_MODES", "UINT8"),
)


def _transaction(tid: int, name: str, title: str) -> dict:
    # Transaction tables (docs/protocol.md §4.2, [MEP p.43-50, 130-132]): SIZE counts every
    # byte incl. itself; records are {len UINT16, message} up to the trailing copy
    # of the transaction number.  Records are returned as one byte string
    # (osgp.tables.split_transaction_records splits them).
    return table(
        tid,
        name,
        title,
        "[MEP p.43-50, 130-132]; docs/protocol.md §4.2",
        f("SIZE", "UINT16"),
        f("TYPE", "UINT8"),
        f("TRANSACTION", "UINT16"),
        if_({"ref": "TYPE", "ne": 3}, f("RECORDS", "BYTES", length={"ref": "SIZE", "add": -7})),
        if_(
            {"ref": "TYPE", "eq": 3},
            f("GROUP_COUNT", "UINT8"),
            arr("GROUP_IDS", "GROUP_COUNT", {"type": "UINT16"}),
            f("RECORDS", "BYTES", length={"ref": "SIZE", "add": -8}),
        ),
        f("TRANSACTION_CHECK", "UINT16"),
    )


ET52 = _transaction(ET + 52, "ET52", "MEP Transaction Request Table")
ET53 = _transaction(ET + 53, "ET53", "MEP Transaction Response Table")
ET27 = _transaction(ET + 27, "ET27", "Transaction Request Table")
ET28 = _transaction(ET + 28, "ET28", "Transaction Response Table")

BUILTIN = [
    BT00,
    BT01,
    BT03,
    BT04,
    BT05,
    BT07,
    BT08,
    BT20,
    BT21,
    BT22,
    BT23,
    BT24,
    BT25,
    BT26,
    BT27,
    BT28,
    BT50,
    BT52,
    BT53,
    BT54,
    BT55,
    BT60,
    BT61,
    BT62,
    BT63,
    BT64,
    BT65,
    BT66,
    BT67,
    BT70,
    BT71,
    BT74,
    ET03,
    ET04,
    ET11,
    ET21,
    ET23,
    ET27,
    ET28,
    ET52,
    ET53,
    ET54,
]
