"""osgp.tables: schema language, built-in layouts, catalogue; native == twin."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osgp import _backend, tables
from osgp.errors import ConfigurationError, DecodeError, MalformedError, OSGPError, TruncatedError
from osgp.tables import TimeDate, builtin

from .conftest import load_vectors

VEC = load_vectors("tables.json")


def bt00_bytes(tm_format=2, ni=0x88, id_form=0):
    std = bytearray(10)
    for t in (0, 1, 3, 52, 61, 62, 63, 64):
        std[t // 8] |= 1 << (t % 8)
    head = (
        bytes([0x02, tm_format | (1 << 3) | (id_form << 5), ni])
        + b"NES "
        + bytes([2, 0, 255, 12, 1, 0, 10, 13, 2, 12, 4, 2])
    )
    return head + bytes(std) + bytes(13) + bytes(2) + bytes(12) + bytes(std) + bytes(13)


# BT21: date/time, demand reset counter, cumulative demand on; 2 self reads, 3 summations,
# 2 demands, 1 coincident, 1 occurrence, 2 tiers (field order [OPT p.21-23])
BT21 = bytes([0b10111, 0b10, 2, 3, 2, 1, 1, 2, 0, 0])
BT61 = struct.pack("<IHB", 100, (1 << 10) | (1 << 11) | (1 << 6), 0x20) + struct.pack(
    "<HHBB", 2, 3, 2, 15
)
BT71 = struct.pack("<BBBBBHH", 0b110, 10, 20, 2, 0, 3, 0)
# BT50 ([MEP p.220-222]): 4 seasons, 2 special schedules, 3 non-recurring and 4 recurring
# dates, 5 tier switches
BT50 = bytes([0b11, 0b11000, 4 | (2 << 4), 3, 4]) + struct.pack("<HH", 5, 100)
CTX = {"BT00": bt00_bytes(), "BT21": BT21, "BT50": BT50, "BT61": BT61, "BT71": BT71}


@pytest.fixture(params=["native", "reference"])
def both(request, monkeypatch):
    mod = (
        _backend.native_module("tables")
        if request.param == "native"
        else _backend.reference("tables")
    )
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    monkeypatch.setattr(tables, "_kernel", mod)
    return mod


def test_bt52_published_example(both):
    v = VEC["bt52_clock"]
    got = tables.decode("BT52", bytes.fromhex(v["hex"]) + b"\x00")
    assert tuple(got["CLOCK_CALENDAR"]) == tuple(v["expected"]["CLOCK_CALENDAR"])
    assert got["CLOCK_CALENDAR"].to_datetime() == dt.datetime(
        2004, 2, 16, 15, 59, 55, tzinfo=dt.timezone.utc
    )
    assert tables.encode("BT52", got) == bytes.fromhex(v["hex"]) + b"\x00"


def test_bt01_firmware_version(both):
    for word, want in VEC["bt01_versions"]["words"].items():
        raw = b"ELON" + b"MODEL   " + bytes([0, 0]) + bytes.fromhex(word) + b"1234567890123456"
        got = tables.decode("BT01", raw)
        assert tables.firmware_version(got) == tuple(want)
        assert got["MFG_SERIAL_NUMBER"] == "1234567890123456"
    bcd = tables.decode(
        "BT01", raw[:16] + bytes.fromhex("0000001234567890"), {"BT00": bt00_bytes(id_form=1)}
    )
    assert bcd["MFG_SERIAL_NUMBER"] == "0000001234567890"


def test_bt61_nes_defaults(both):
    v = VEC["bt61_nes_defaults"]
    got = tables.decode("BT61", bytes.fromhex(v["hex"].replace(" ", "")))
    merged = {**got["LP_FLAGS"], **got["LP_FMATS"]}
    for k, want in v["fields"].items():
        assert merged[k] is want
    s = got["LP_DATA_SETS"][0]
    assert (s["NBR_BLKS_SET"], s["NBR_BLK_INTS_SET"], s["NBR_CHNS_SET"], s["MAX_INT_TIME_SET"]) == (
        40,
        96,
        2,
        15,
    )


def test_bt00_fields(both):
    got = tables.decode("BT00", bt00_bytes())
    assert got["FORMAT_CONTROL_2"]["TM_FORMAT"] == 2
    assert got["FORMAT_CONTROL_2"]["DATA_ACCESS_METHOD"] == 1
    assert got["FORMAT_CONTROL_3"] == {"NI_FORMAT1": 8, "NI_FORMAT2": 8}
    assert got["DEVICE_CLASS"] == "NES "
    used = got["STD_TBLS_USED"]
    # bit i of byte p is table 8p + i (docs/protocol.md §7.1: all 8 bits)
    assert [t for t, flag in enumerate(used) if flag] == [0, 1, 3, 52, 61, 62, 63, 64]
    assert len(got["MFG_TBLS_USED"]) == 13 * 8
    with pytest.raises(TypeError):
        got["DEVICE_CLASS"] = "x"  # read-only mapping


def _epoch(y, mo, d, h, mi, s):
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


@pytest.mark.parametrize(
    "tm,ltime",
    [
        (1, bytes.fromhex("240229235958")),  # BCD YY MM DD hh mm ss
        (2, bytes([24, 2, 29, 23, 59, 58])),
        (3, struct.pack("<IB", _epoch(2024, 2, 29, 23, 59, 0) // 60, 58)),  # minutes + seconds
        (4, struct.pack("<I", _epoch(2024, 2, 29, 23, 59, 58))),  # seconds
    ],
)
def test_ltime_every_tm_format(both, tm, ltime):
    got = tables.decode("BT52", ltime + b"\x00", {"BT00": bt00_bytes(tm)})
    assert got["CLOCK_CALENDAR"] == TimeDate(2024, 2, 29, 23, 59, 58)
    assert tables.encode("BT52", got, {"BT00": bt00_bytes(tm)}) == ltime + b"\x00"


def test_tm_format_0_and_stime(both):
    got = tables.decode("BT52", b"\x05", {"BT00": bt00_bytes(0)})
    assert got["CLOCK_CALENDAR"] == TimeDate(0, 0, 0, 0, 0, 0)
    assert got["TIME_DATE_QUAL"]["DAY_OF_WEEK"] == 5
    # STIME_DATE in TM_FORMAT 3 is UINT32 minutes only (docs/protocol.md §7.1)
    ctx = {"BT00": bt00_bytes(3), "BT61": BT61}
    minutes = _epoch(2030, 1, 2, 3, 4, 0) // 60
    blk = struct.pack("<I", minutes) + bytes(1) + bytes(3 * (2 + 8))
    got = tables.decode("BT64", blk * 2, ctx)
    assert got["LP_BLOCKS"][0]["BLK_END_TIME"] == TimeDate(2030, 1, 2, 3, 4, 0)


def test_bcd_time_rejects_bad_digits(both):
    with pytest.raises(MalformedError) as ei:
        tables.decode("BT52", bytes.fromhex("2402FF235958") + b"\x00", {"BT00": bt00_bytes(1)})
    assert ei.value.layer == "table BT52" and ei.value.offset == 0
    assert ei.value.field == "CLOCK_CALENDAR"


@pytest.mark.parametrize(
    "ni,raw,want",
    [
        (8, struct.pack("<i", -7), -7),
        (7, (-5).to_bytes(3, "little", signed=True), -5),
        (9, (2**38).to_bytes(5, "little", signed=True), 2**38),
        (11, struct.pack("<q", -(2**60)), -(2**60)),
        (0, struct.pack("<d", 1.25), 1.25),
        (1, struct.pack("<f", -0.5), -0.5),
        (4, struct.pack("<i", 123456), 12.3456),
        (5, bytes.fromhex("000000012345"), 12345),
        (3, b"  12.5", 12.5),
        (2, b"-1.5E+03    ", -1500.0),
    ],
)
def test_ni_formats(both, ni, raw, want):
    bt00 = bt00_bytes(ni=ni | (ni << 4))
    bt21 = bytes([0, 0, 0, 1, 0, 0, 0, 0, 0, 0])  # one summation, nothing else
    ctx = {"BT00": bt00, "BT21": bt21}
    got = tables.decode("BT23", raw, ctx)
    assert got["TOT_DATA_BLOCK"]["SUMMATIONS"] == (pytest.approx(want),)
    again = tables.decode("BT23", tables.encode("BT23", got, ctx), ctx)
    assert again == got


def test_pending_image(both):
    # BT53 pending (4096 + 53): PED code 0 = absolute STIME_DATE (docs/protocol.md §3.4)
    ped = bytes([0x10]) + bytes([25, 3, 30, 1, 0])
    body = bytes([2, 0, 0, 60]) + struct.pack("<h", -60)
    got = tables.decode(4096 + 53, ped + body)
    assert got["PENDING_EVENT"]["EVENT_CONTROL"]["SELF_READ_FLAG"] is True
    assert got["PENDING_EVENT"]["ACTIVATION_TIME"] == TimeDate(2025, 3, 30, 1, 0, 0)
    assert got["TIME_ZONE_OFFSET"] == -60
    assert tables.encode(4149, got) == ped + body
    rel = tables.decode(4149, bytes([1, 0, 1, 2, 3, 4]) + body)
    assert [rel["PENDING_EVENT"][k] for k in ("WEEKS", "DAYS", "HOURS", "MINUTES", "SECONDS")] == [
        0,
        1,
        2,
        3,
        4,
    ]
    opaque = tables.decode(4149, bytes([2, 9, 9, 9, 9, 9]) + body)
    assert opaque["PENDING_EVENT"]["EVENT_STORAGE"] == b"\x09" * 5


def test_transaction_table(both):
    recs = struct.pack("<H", 6) + bytes.fromhex("3f0017000000") + struct.pack("<H", 1) + b"\x30"
    size = 2 + 1 + 2 + len(recs) + 2
    raw = struct.pack("<HBH", size, 0, 0x1234) + recs + struct.pack("<H", 0x1234) + bytes(20)
    got = tables.decode("ET52", raw)
    assert got["TRANSACTION"] == got["TRANSACTION_CHECK"] == 0x1234
    assert tables.split_transaction_records(got["RECORDS"]) == [
        bytes.fromhex("3f0017000000"),
        b"\x30",
    ]
    with pytest.raises(TruncatedError):
        tables.split_transaction_records(recs[:-1])


def test_truncation_names_table_field_offset(both):
    raw = bytes.fromhex(VEC["bt61_nes_defaults"]["hex"].replace(" ", ""))
    for cut in range(len(raw)):
        with pytest.raises(TruncatedError) as ei:
            tables.decode("BT61", raw[:cut])
        e = ei.value
        assert e.layer == "table BT61" and e.table == "BT61"
        assert e.offset <= cut and e.remaining == cut - e.offset
        assert e.field != "?"
    with pytest.raises(TruncatedError) as ei:
        tables.decode("BT61", raw[:5])
    assert ei.value.field == "LP_FLAGS" and ei.value.offset == 4 and ei.value.needed == 2


def test_et04_et54_published_offsets(both):
    # ET04 [MEP p.54-67] / docs/protocol.md §2.5, §5.1, §6.1: sequence number @0, transceiver ID @4,
    # subnet/node @10/11, Neuron state @72, max key usage @123, security mode @127
    raw = bytearray(140)
    raw[0:4] = struct.pack("<I", 0x01020304)
    raw[4:10] = bytes.fromhex("0a0b0c0d0e0f")
    raw[10], raw[11], raw[72], raw[127] = 7, 9, 4, 2
    raw[123:127] = struct.pack("<I", 1_000_000)
    raw[76:82] = bytes([24, 1, 2, 3, 4, 5])
    et04 = tables.decode("ET04", bytes(raw))
    assert et04["SEQUENCE_NUMBER"] == 0x01020304
    assert et04["TRANSCEIVER_ID"] == bytes.fromhex("0a0b0c0d0e0f")
    assert (et04["SUBNET_ID"], et04["NODE_ID"], et04["NEURON_STATE"]) == (7, 9, 4)
    assert et04["MAX_KEY_USAGE_COUNT"] == 1_000_000 and et04["SECURITY_MODE"] == 2
    assert et04["BROADCAST_RECEIPT"] == TimeDate(2024, 1, 2, 3, 4, 5)
    assert tables.encode("ET04", et04) == bytes(raw)
    # ET54 [MEP p.130-137]: unicast / broadcast key usage @82/@86, security modes @90
    raw = bytearray(91)
    raw[82:86] = struct.pack("<I", 11)
    raw[86:90] = struct.pack("<I", 22)
    raw[90] = 0x05
    et54 = tables.decode("ET54", bytes(raw))
    assert (et54["UNICAST_KEY_USAGE_COUNT"], et54["BROADCAST_KEY_USAGE_COUNT"]) == (11, 22)
    assert et54["SUPPORTED_SECURITY_MODES"] == 0x05
    # ET23 [MEP p.98-99]: LonTalk counters @0/@4, disconnect status @94, active calendar ID @95
    raw = bytearray(186)
    raw[4:8] = struct.pack("<I", 5)
    raw[94] = 2  # opened
    raw[95:99] = struct.pack("<I", 0xCAFE)
    et23 = tables.decode("ET23", bytes(raw))
    assert et23["LONTALK_MESSAGES_VALIDATED"] == 5 and et23["ACTIVE_CALENDAR_ID"] == 0xCAFE
    assert et23["DISCONNECT_INTERNAL_STATUS"] == 2


def test_bt54_calendar_and_pending_image(both):
    # BT54 sized by BT50 ([MEP p.223-227]); 4150 = pending BT54 (contents A.41)
    ctx = {"BT50": BT50}
    nonrec = struct.pack("<H", 25 | (12 << 7) | (24 << 11)) + bytes([0x43])  # 2025-12-24
    rec = struct.pack("<H", 3) + bytes([1])
    tier = struct.pack("<H", 2 | (30 << 5) | (7 << 11)) + bytes([0])  # tier 2 at 07:30
    season = bytes([1, 2, 3, 4, 5])
    raw = nonrec * 3 + rec * 4 + tier * 5 + season * 4 + struct.pack("<I", 77)
    got = tables.decode("BT54", raw, ctx)
    d = got["NON_RECURR_DATES"][0]
    nrd = d["NON_RECURR_DATE"]
    assert (nrd["YEAR"], nrd["MONTH"], nrd["DAY"]) == (25, 12, 24)
    assert d["CALENDAR_ACTION"]["ACTION"] == 3 and d["CALENDAR_ACTION"]["SELF_READ_FLAG"]
    t = got["TIER_SWITCHES"][4]["TIER_SWITCH"]
    assert (t["NEW_TIER"], t["SWITCH_HOUR"], t["SWITCH_MIN"]) == (2, 7, 30)
    assert got["SEASON_SCHEDULES"][3] == {"DAY_SCHEDULES": (1, 2, 3), "SPECIAL_SCHEDULES": (4, 5)}
    assert got["CALENDAR_ID"] == 77
    ped = bytes([0x20, 25, 12, 31, 23, 0])
    pend = tables.decode(4150, ped + raw, ctx)
    assert pend["PENDING_EVENT"]["EVENT_CONTROL"]["DEMAND_RESET_FLAG"] is True
    assert pend["CALENDAR_ID"] == 77
    assert tables.catalogue_entry(4150).built_in


def test_missing_context_is_configuration_error(both):
    with pytest.raises(ConfigurationError, match="BT21"):
        tables.decode("BT22", b"\x00" * 10)


def test_catalogue():
    t = tables.catalogue("table")
    p = tables.catalogue("procedure")
    # CLC/TS 50586:2019 contents: Annex A lists 41 basic tables, Annex B 67 extended
    # tables, Annex C 8 basic and Annex D 45 extended procedures.
    assert sum(e.name.startswith("BT") for e in t) == 41
    assert sum(e.name.startswith("ET") for e in t) == 67
    assert sum(e.name.startswith("BP") for e in p) == 8
    assert sum(e.name.startswith("EP") for e in p) == 45
    assert tables.catalogue_entry("ET21").id == 2069
    assert tables.catalogue_entry("ET21").built_in
    assert tables.catalogue_entry("EP17").id == 2065
    assert tables.catalogue_entry(4150).pending_of == 54
    assert not tables.catalogue_entry("BT02").built_in
    with pytest.raises(ConfigurationError):
        tables.catalogue_entry("BT99")


def test_register_file(both, tmp_path):
    layout = {
        "id": 2048 + 38,
        "name": "ET38",
        "title": "test layout",
        "fields": [
            {"name": "COUNT", "type": "UINT8"},
            {
                "name": "ITEMS",
                "type": "ARRAY",
                "count": "COUNT",
                "of": [
                    {"name": "A", "type": "INT16"},
                    {
                        "name": "F",
                        "type": "UINT8",
                        "bits": [{"name": "X", "bit": 7}, {"name": "Y", "bits": [0, 3]}],
                    },
                ],
            },
            {"name": "TAIL", "type": "CHAR", "length": {"ref": "COUNT", "mul": 2}},
        ],
    }
    path = tmp_path / "layouts.json"
    path.write_text(json.dumps([layout]))
    tables.register_file(path, replace=True)
    raw = (
        bytes([2])
        + struct.pack("<h", -2)
        + bytes([0x85])
        + struct.pack("<h", 7)
        + bytes([3])
        + b"abcd"
    )
    got = tables.decode("ET38", raw)
    assert got["ITEMS"][0] == {"A": -2, "F": {"X": True, "Y": 5}}
    assert got["ITEMS"][1]["A"] == 7 and got["TAIL"] == "abcd"
    assert tables.encode("ET38", got) == raw
    with pytest.raises(ConfigurationError, match="2 elements"):
        tables.encode("ET38", {"COUNT": 3, "ITEMS": got["ITEMS"], "TAIL": "abcdef"})


@pytest.mark.parametrize(
    "bad",
    [
        {"id": 3000, "fields": [{"name": "A", "type": "UINT12"}]},
        {
            "id": 3000,
            "fields": [{"name": "A", "type": "ARRAY", "count": "NOPE", "of": {"type": "UINT8"}}],
        },
        {
            "id": 3000,
            "fields": [{"name": "A", "type": "UINT8", "bits": [{"name": "B", "bits": [3, 9]}]}],
        },
    ],
)
def test_bad_schemas(bad):
    with pytest.raises(ConfigurationError):
        tables.compile_schema(bad)


def test_built_in_list_covers_issue():
    names = {s["name"] for s in builtin.BUILTIN}
    for n in (
        "BT00",
        "BT01",
        "BT03",
        "BT04",
        "BT05",
        "BT07",
        "BT08",
        "BT20",
        "BT21",
        "BT22",
        "BT23",
        "BT24",
        "BT25",
        "BT26",
        "BT27",
        "BT28",
        "BT50",
        "BT52",
        "BT53",
        "BT54",
        "BT55",
        "BT60",
        "BT61",
        "BT62",
        "BT63",
        "BT64",
        "BT70",
        "BT71",
        "BT74",
        "ET03",
        "ET04",
        "ET11",
        "ET21",
        "ET23",
        "ET27",
        "ET28",
        "ET52",
        "ET53",
        "ET54",
    ):
        assert n in names


# ---- properties over every built-in layout ---------------------------------------------

BUILTIN_IDS = [s["id"] for s in builtin.BUILTIN]


def _both_modules():
    mods = [_backend.reference("tables")]
    nat = _backend.native_module("tables")
    if nat is not None:
        mods.insert(0, nat)
    return mods


def _outcome(mod, tid, data):
    old = tables._kernel
    tables._kernel = mod
    try:
        return ("ok", tables.decode(tid, data, CTX))
    except DecodeError as e:
        return (type(e).__name__, e.offset, getattr(e, "field", None))
    finally:
        tables._kernel = old


@pytest.mark.parametrize("tid", BUILTIN_IDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=0, max_size=900))
def test_round_trip_and_twins(tid, data):
    outs = [_outcome(m, tid, data) for m in _both_modules()]
    assert all(o == outs[0] for o in outs), outs
    if outs[0][0] != "ok":
        return
    decoded = outs[0][1]
    enc = tables.encode(tid, decoded, CTX)
    assert tables.decode(tid, enc, CTX) == decoded
    if tid not in (7, 8):
        assert len(enc) <= len(data)


@pytest.mark.parametrize("tid", [t for t in BUILTIN_IDS if t not in (7, 8)])
def test_every_truncation(both, tid):
    full = tables.encode(tid, _defaults(tid), CTX)
    for cut in range(len(full)):
        with pytest.raises(DecodeError) as ei:
            tables.decode(tid, full[:cut], CTX)
        assert ei.value.layer == f"table {tables.table_name(tid)}"
        assert ei.value.offset is not None and ei.value.offset <= cut


def _defaults(tid):
    prog = tables.program(tid)
    ctx = tables._Context(CTX, tables.DEFAULT_PROFILE, tables.DEFAULT_SET)
    params = {r: ctx.value(r, 0) for r in prog.params if r != "@DATA_LEN"}
    from osgp.tables.schema import _Env

    env = _Env(params)
    out = bytearray()
    # transaction tables: SIZE counts the 7 fixed bytes (docs/protocol.md §4.2)
    prog.root.encode({"SIZE": 7} if tid in (2075, 2076, 2100, 2101) else {}, out, env)
    return tables.decode(tid, bytes(out), CTX)


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.integers(0, 2**32 - 1), max_size=40),
    data=st.binary(max_size=64),
    nregs=st.integers(0, 4),
)
def test_corrupt_programs_never_crash(words, data, nregs):
    prog = struct.pack(f"<{len(words)}I", *words)
    outs = []
    for mod in _both_modules():
        try:
            outs.append(("ok",) + tuple(mod.table_run(prog, [1] * nregs, data, nregs)))
        except OSGPError as e:
            outs.append((type(e).__name__, getattr(e, "pc", None)))
    assert all(o == outs[0] for o in outs), outs


@settings(max_examples=200, deadline=None)
@given(flip=st.integers(0, 8 * 13 - 1))
def test_bit_flips_same_on_both(flip):
    raw = bytearray(bytes.fromhex(VEC["bt61_nes_defaults"]["hex"].replace(" ", "")))
    raw[flip // 8] ^= 1 << (flip % 8)
    outs = [_outcome(m, 61, bytes(raw)) for m in _both_modules()]
    assert all(o == outs[0] for o in outs)


def test_native_kernel_in_use_when_built():
    """docs/conventions.md §4: with extensions enabled and built, osgp.tables runs the C
    interpreter."""
    import osgp.loadprofile as lp

    if _backend.FORCED_REFERENCE or _backend.native_module("tables") is None:
        assert tables._kernel is _backend.reference("tables")
    else:
        assert tables._kernel is _backend.native_module("tables")
        assert lp._kernel is tables._kernel


def test_huge_counts_are_malformed(both):
    layout = {
        "id": 3999,
        "name": "ET1951",
        "fields": [
            {"name": "N", "type": "UINT64"},
            {
                "name": "ITEMS",
                "type": "ARRAY",
                "count": {"ref": "N", "mul": 1000, "times": "N"},
                "of": {"type": "UINT8"},
            },
            {"name": "TEXT", "type": "CHAR", "length": {"ref": "N", "mul": -7}},
        ],
    }
    tables.register(layout, replace=True)
    for n in (2**63 - 1, 2**64 - 1, 2**63, 2**41):
        with pytest.raises(MalformedError) as ei:
            tables.decode(3999, struct.pack("<Q", n) + bytes(16))
        assert ei.value.field == "ITEMS" and ei.value.offset == 8
    got = tables.decode(3999, struct.pack("<Q", 0))
    assert got["N"] == 0 and got["ITEMS"] == () and got["TEXT"] == ""
    tables.register(
        {
            "id": 3998,
            "fields": [
                {"name": "U", "type": "UINT64"},
                {"name": "B", "type": "UINT64", "bits": [{"name": "ALL", "bits": [0, 63]}]},
            ],
        },
        replace=True,
    )
    big = tables.decode(3998, struct.pack("<QQ", 2**64 - 2, 2**63 + 5))
    assert big["U"] == 2**64 - 2 and big["B"]["ALL"] == 2**63 + 5
    # counts that fit but exceed the data are truncations
    with pytest.raises(TruncatedError) as ei:
        tables.decode(3999, struct.pack("<Q", 3) + bytes(4))
    assert ei.value.needed == 9000 and ei.value.offset == 8


@pytest.mark.parametrize("module", ["osgp._reference.tables", "osgp._native.tables"])
def test_table_kernels_do_not_import_the_data_model(module):
    """Kernels sit below osgp.tables: a kernel decodes a program (here BT52,
    whose CLOCK_CALENDAR is an LTIME_DATE) with osgp.tables made unimportable."""
    import subprocess
    import sys

    if module.startswith("osgp._native") and _backend.native_module("tables") is None:
        pytest.skip("native extensions disabled or not built")
    prog = tables.program(52)
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "osgp.tables" or name.startswith("osgp.tables."):
            raise ImportError("data-model layer imported by a kernel: " + name)
sys.meta_path.insert(0, Block())
import importlib
m = importlib.import_module({module!r})
got = m.table_decode({bytes(prog.code)!r}, {prog.shape!r}, [2] * {len(prog.params)},
                     bytes.fromhex("0402100f3b3700"), {prog.nregs})
assert tuple(got["CLOCK_CALENDAR"]) == (2004, 2, 16, 15, 59, 55), got
assert type(got["CLOCK_CALENDAR"]).__module__ == "osgp._reference._values"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("count", "a", "b", "error"),
    [
        # found by fuzz/c/fuzz_table_run.c: two operands inside the 2^40 limit whose
        # product overflowed int64 in the C kernel (undefined behaviour)
        ({"ref": "A", "times": "B"}, 2**40, 2**40, MalformedError),
        ({"ref": "A", "times": "B"}, 2**31, 2**31 + 1, MalformedError),
        ({"ref": "A", "times": "B"}, 2**31, 2**31, TruncatedError),  # 2^62: still a count
        ({"ref": "A", "mul": 2**31 - 1}, 2**40, 0, MalformedError),
        ({"ref": "A", "mul": -(2**31)}, 2**31, 0, MalformedError),  # -2^62: negative
        ({"ref": "A", "mul": 2**31 - 1, "add": 2**31 - 1}, 2**31 + 2, 0, MalformedError),
    ],
)
def test_count_products_beyond_2_62_are_malformed(both, count, a, b, error):
    tables.register(
        {
            "id": 3997,
            "name": "ET1949",
            "fields": [
                {"name": "A", "type": "UINT64"},
                {"name": "B", "type": "UINT64"},
                {"name": "X", "type": "BYTES", "length": count},
            ],
        },
        replace=True,
    )
    with pytest.raises(error) as ei:
        tables.decode(3997, struct.pack("<QQ", a, b) + bytes(8))
    assert ei.value.offset == 16 and ei.value.layer == "table ET1949"


def test_an_array_of_constant_lengths_with_a_divisor_fits_its_image(both):
    # each element is 9 // 3 = 3 bytes: the array's up-front size check must
    # count 3 per element, not the 9 before the division
    tables.register(
        {
            "id": 3996,
            "fields": [
                {
                    "name": "ITEMS",
                    "type": "ARRAY",
                    "count": 2,
                    "of": {"type": "BYTES", "length": {"add": 9, "div": 3}},
                },
            ],
        },
        replace=True,
    )
    assert tables.decode(3996, b"abcdef")["ITEMS"] == (b"abc", b"def")
    with pytest.raises(TruncatedError) as ei:
        tables.decode(3996, b"abcde")
    assert ei.value.offset == 0


@pytest.mark.parametrize(("outer", "inner", "ok"), [(400, 400, True), (3000, 3000, False)])
def test_nested_empty_arrays_are_bounded(both, outer, inner, ok):
    # arrays of records that hold no bytes consume no input, so counts taken
    # from a peer's image multiplied unchecked (3000 x 3000 empty records took
    # 15 s, 65535 x 65535 would exhaust memory); a run allows 2^20 such iterations
    tables.register(
        {
            "id": 3996,
            "name": "ET1948",
            "fields": [
                {"name": "A", "type": "UINT16"},
                {"name": "B", "type": "UINT16"},
                {
                    "name": "X",
                    "type": "ARRAY",
                    "count": {"ref": "A"},
                    "of": {
                        "name": "ROW",
                        "type": "ARRAY",
                        "count": {"ref": "B"},
                        "of": {"name": "EMPTY", "type": "RECORD", "fields": []},
                    },
                },
            ],
        },
        replace=True,
    )
    image = struct.pack("<HH", outer, inner)
    if ok:
        assert len(tables.decode(3996, image)["X"]) == outer
    else:
        with pytest.raises(MalformedError) as ei:
            tables.decode(3996, image)
        assert ei.value.layer == "table ET1948"


def test_list_headers_bt26_et31_bt74(both):
    # ANSI C12.19 list header: status bits (b0 order, b1 overflow, b2 list type, b3 inhibit
    # overflow), valid entries, last element, last sequence number, unread entries;
    # UINT8 counts in BT26 [OPT p.28-29] and ET31 [MEP p.104], UINT16 and a UINT32
    # sequence number in BT74 [OPT p.51-53]; no entries (BT21/BT71 counts of zero)
    bt00 = tables.encode(0, {})
    ctx = {"BT00": bt00, "BT21": tables.encode(21, {}, {"BT00": bt00})}
    ctx["BT71"] = tables.encode(71, {}, ctx)
    narrow = bytes([0b1010, 3, 2]) + struct.pack("<H", 0x1234) + bytes([1])
    for tid in (26, builtin.ET + 31):
        d = tables.decode(tid, narrow, ctx)
        assert dict(d["LIST_STATUS"]) == {"ORDER": False, "OVERFLOW_FLAG": True, "LIST_TYPE": False,
                                   "INHIBIT_OVERFLOW_FLAG": True, "FILLER": 0}  # fmt: skip
        assert (d["NBR_VALID_ENTRIES"], d["LAST_ENTRY_ELEMENT"]) == (3, 2)
        assert d["LAST_ENTRY_SEQ_NUMBER"] == 0x1234
        assert d["NBR_UNREAD_ENTRIES"] == 1 and tables.encode(tid, d, ctx) == narrow
    wide = bytes([0b0101]) + struct.pack("<HHIH", 300, 299, 0x12345678, 7)
    d = tables.decode(74, wide, ctx)
    assert d["HIST_FLAGS"]["ORDER"] and d["HIST_FLAGS"]["LIST_TYPE"]
    assert (d["NBR_VALID_ENTRIES"], d["LAST_ENTRY_ELEMENT"]) == (300, 299)
    assert (d["LAST_ENTRY_SEQ_NBR"], d["NBR_UNREAD_ENTRIES"]) == (0x12345678, 7)
    assert tables.encode(74, d, ctx) == wide
