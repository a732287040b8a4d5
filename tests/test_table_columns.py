"""Columnar table decode (osgp.tables.decode_columns) against the per-record
tables.decode of every qualifying built-in table, against independent numpy
structured-dtype decodes of BT23 and BT28 written here from the documented
layouts ([OPT p.21-28], [MEP p.213-218]), and native against its twin."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from osgp import _backend, tables
from osgp.errors import ConfigurationError, MalformedError, TruncatedError
from osgp.tables import TimeDate
from osgp.tables.columns import Plan
from tests.test_loadprofile import bt00_bytes, bt61_bytes

# BT21 (docs/protocol.md §7.9, [OPT p.21-23]): REG_FUNC1 bits 0-2, 4 (season, date/time,
# demand reset counter, cumulative demand) and 6 (time remaining); 12 self reads,
# 19 summations, 8 demands, 16 coincidents, 1 occurrence, 8 tiers, 8 present
# demands, 41 present values
BT21 = bytes([0b1010111, 0b10, 12, 19, 8, 16, 1, 8, 8, 41])
# BT50 [MEP p.220-222]: anchor date flag, 2 seasons / 1 special schedule, 2
# non-recurring and 2 recurring dates, 3 tier switches, calendar size 16
BT50 = bytes([0x20, 0, 0x12, 2, 2, 3, 0, 16, 0]) + bytes(16)
# BT71 [OPT p.50-51]: event number, date/time and sequence number flags, 4-byte
# argument, 5 history entries
BT71 = bytes([0b111, 8, 0, 4, 0, 5, 0, 0, 0])
CONTEXT = {"BT00": bt00_bytes(), "BT21": BT21, "BT61": bt61_bytes(), "BT50": BT50, "BT71": BT71}
# ET11 ([OPT p.39-42], [MEP p.79]): 3 one-time read queue entries (offset 14), the default
# 80 time-based relay switches (offset 26), a 25-byte ET17 bitmap (offset 36, UINT16)
CONTEXT["ET11"] = bytes(14) + b"\x03" + bytes(11) + b"\x50" + bytes(9) + b"\x19\x00"

# Layouts whose offsets depend on their own fields or on the table length
VARIABLE = {"BT00", "BT07", "BT08", "ET27", "ET28", "ET52", "ET53"}


def _program_size(tid, context):
    ctx = tables._Context(context, tables.DEFAULT_PROFILE, tables.DEFAULT_SET)
    prog = tables.program(tid)
    return Plan(prog, tables._fixed_params(prog, ctx)).size


def _leaf(v, dtype):
    """The column value a per-record value stands for (module docstring of
    osgp.tables.columns), converted here from the mapping alone."""
    if isinstance(v, TimeDate):
        if dtype.kind == "m":
            return np.timedelta64(v.hour * 3600 + v.minute * 60 + v.second, "s")
        d = v.to_datetime()
        return np.datetime64("NaT") if d is None else np.datetime64(int(d.timestamp()), "s")
    if isinstance(v, tuple):
        return [_leaf(x, dtype) for x in v]
    if isinstance(v, bytes):
        return list(v)
    if isinstance(v, str) and dtype.kind == "U":
        return v.rstrip("\0")  # numpy U strings drop trailing NULs
    return v


def _extract(v, parts, dtype):
    if isinstance(v, tuple) and not isinstance(v, TimeDate) and parts:
        return [_extract(x, parts, dtype) for x in v]
    if not parts:
        return _leaf(v, dtype)
    return _extract(v[parts[0]], parts[1:], dtype)


def _check_against_records(tid, images, context, cols):
    recs = [tables.decode(tid, bytes(im), context) for im in images]
    names = set()
    for rec in recs:
        _names(rec, "", names)
    # every named scalar of the record has its column; an empty array of records
    # shows no field names in the mapping, its columns have a zero axis
    extra, missing = set(cols) - names, names - set(cols)
    assert all(cols[x].size == 0 and any(x.startswith(m + ".") for m in missing) for x in extra)
    assert all(any(x.startswith(m + ".") for x in extra) for m in missing)
    for name, col in cols.items():
        assert col.shape[0] == len(images)
        want = [_extract(r, name.split("."), col.dtype) for r in recs]
        np.testing.assert_array_equal(col, np.array(want, dtype=col.dtype).reshape(col.shape))


def _names(v, prefix, out):
    """Dotted names of the scalars of a decoded mapping (arrays of records: one
    name per field)."""
    for k, x in v.items():
        if hasattr(x, "items"):
            _names(x, f"{prefix}{k}.", out)
        elif isinstance(x, tuple) and x and hasattr(x[0], "items"):
            for e in x:
                _names(e, f"{prefix}{k}.", out)
        else:
            out.add(f"{prefix}{k}")


def _qualifying():
    out = []
    for tid in tables.DEFAULT_SET.ids():
        if tables.table_name(tid) not in VARIABLE:
            out.append(tables.table_name(tid))
    return out


@pytest.mark.parametrize("name", _qualifying())
def test_every_qualifying_builtin_matches_records(tables_backend, name):
    size = _program_size(name, CONTEXT)
    rng = np.random.default_rng(sum(name.encode()))
    images = rng.integers(0, 256, size=(24, size + 3), dtype=np.uint8)
    # a few images with valid dates: every byte a small number
    images[:6] = rng.integers(0, 12, size=(6, size + 3), dtype=np.uint8) + 1
    cols = tables.decode_columns(name, images, CONTEXT)
    _check_against_records(name, images, CONTEXT, cols)


@pytest.mark.parametrize("name", sorted(VARIABLE))
def test_variable_layouts_refused(name):
    with pytest.raises(ConfigurationError, match="fixed layouts"):
        tables.decode_columns(name, [bytes(64)], CONTEXT)


def test_float_char_refused():
    with pytest.raises(ConfigurationError, match="FLOAT_CHAR"):
        tables.decode_columns("BT23", [bytes(4000)], {**CONTEXT, "BT00": bt00_bytes(ni=0x33)})


# ---- independent structured-dtype decodes --------------------------------------------------


def _calendar(e):
    """STIME_DATE (TM_FORMAT 2: YY MM DD hh mm, docs/protocol.md §3.4) of a (..., 5) uint8
    array as datetime64[s] through numpy's calendar; NaT for impossible dates."""
    e = e.astype(np.int64)
    months = np.datetime64("2000-01", "M") + (e[..., 0] * 12 + np.clip(e[..., 1], 1, 12) - 1)
    first = months.astype("datetime64[D]")
    days_in = ((months + 1).astype("datetime64[D]") - first).astype(np.int64)
    ok = (e[..., 1] >= 1) & (e[..., 1] <= 12) & (e[..., 2] >= 1) & (e[..., 2] <= days_in)
    ok &= (e[..., 3] <= 23) & (e[..., 4] <= 59)
    t = first.astype("datetime64[s]") + (e[..., 2] - 1) * 86400 + e[..., 3] * 3600 + e[..., 4] * 60
    return np.where(ok, t, np.datetime64("NaT"))


def _bt23_dtype(tiers=8, sums=19, dmds=8, coins=16, occ=1):
    blk = [
        ("SUMMATIONS", "<i4", (sums,)),
        (
            "DEMANDS",
            [("EVENT_TIME", "u1", (occ, 5)), ("CUM_DEMAND", "<i4"), ("DEMAND", "<i4", (occ,))],
            (dmds,),
        ),
        ("COINCIDENTS", [("COINCIDENT_VALUES", "<i4", (occ,))], (coins,)),
    ]
    return np.dtype([("NBR_DEMAND_RESETS", "u1"), ("TOT", blk), ("TIER", blk, (tiers,))])


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_bt23_matches_structured_dtype(backend, monkeypatch):
    mod = _backend.native_module("tables") if backend == "native" else _backend.reference("tables")
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    monkeypatch.setattr(tables, "_kernel", mod)
    dtype = _bt23_dtype()
    rng = np.random.default_rng(23)
    raw = rng.integers(0, 256, size=(300, dtype.itemsize), dtype=np.uint8)
    raw[::3, :] %= 24  # plenty of valid dates too
    a = raw.reshape(-1).view(dtype)
    cols = tables.decode_columns("BT23", raw, CONTEXT)
    np.testing.assert_array_equal(cols["NBR_DEMAND_RESETS"], a["NBR_DEMAND_RESETS"])
    for pre, part in (("TOT_DATA_BLOCK", a["TOT"]), ("TIER_DATA_BLOCK", a["TIER"])):
        np.testing.assert_array_equal(cols[f"{pre}.SUMMATIONS"], part["SUMMATIONS"])
        d = part["DEMANDS"]
        np.testing.assert_array_equal(cols[f"{pre}.DEMANDS.CUM_DEMAND"], d["CUM_DEMAND"])
        np.testing.assert_array_equal(cols[f"{pre}.DEMANDS.DEMAND"], d["DEMAND"])
        np.testing.assert_array_equal(cols[f"{pre}.DEMANDS.EVENT_TIME"], _calendar(d["EVENT_TIME"]))
        np.testing.assert_array_equal(
            cols[f"{pre}.COINCIDENTS.COINCIDENT_VALUES"], part["COINCIDENTS"]["COINCIDENT_VALUES"]
        )
    assert not np.isnat(cols["TOT_DATA_BLOCK.DEMANDS.EVENT_TIME"]).all()


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_bt28_matches_structured_dtype(backend, monkeypatch):
    mod = _backend.native_module("tables") if backend == "native" else _backend.reference("tables")
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    monkeypatch.setattr(tables, "_kernel", mod)
    # [MEP p.213-218]: PRESENT_DEMANDS {TIME_REMAINING TIME (h m s), DEMAND_VALUE
    # NI_FMAT2}, PRESENT_VALUES NI_FMAT1 (NES: INT32)
    dtype = np.dtype(
        [
            ("PD", [("TIME", "u1", (3,)), ("DEMAND_VALUE", "<i4")], (8,)),
            ("PV", "<i4", (41,)),
        ]
    )
    rng = np.random.default_rng(28)
    raw = rng.integers(0, 256, size=(500, dtype.itemsize), dtype=np.uint8)
    a = raw.reshape(-1).view(dtype)
    images = [r.tobytes() for r in raw]  # the sequence-of-images form
    cols = tables.decode_columns("BT28", images, CONTEXT)
    h, m, s = (a["PD"]["TIME"][..., k].astype(np.int64) for k in range(3))
    np.testing.assert_array_equal(
        cols["PRESENT_DEMANDS.TIME_REMAINING"], (h * 3600 + m * 60 + s).astype("timedelta64[s]")
    )
    np.testing.assert_array_equal(cols["PRESENT_DEMANDS.DEMAND_VALUE"], a["PD"]["DEMAND_VALUE"])
    np.testing.assert_array_equal(cols["PRESENT_VALUES"], a["PV"])


# ---- every cell kind, native against twin and against the records --------------------------

KINDS = {
    "id": 2296,
    "name": "ET248",
    "fields": [
        {"name": "U8", "type": "UINT8"},
        {"name": "I16", "type": "INT16"},
        {"name": "U24", "type": "UINT24"},
        {"name": "I24", "type": "INT24"},
        {"name": "I40", "type": "INT40"},
        {"name": "U56", "type": "UINT56"},
        {"name": "U64", "type": "UINT64"},
        {"name": "I64", "type": "INT64"},
        {
            "name": "FLAGS",
            "type": "UINT16",
            "bits": [{"name": "A", "bit": 0}, {"name": "B", "bits": [1, 10]}, {"bits": [11, 15]}],
        },
        {"name": "F4", "type": "FLOAT32"},
        {"name": "F8", "type": "FLOAT64"},
        {"name": "N1", "type": "NI_FMAT1"},
        {"name": "N2", "type": "NI_FMAT2"},
        {"name": "LT", "type": "LTIME_DATE"},
        {"name": "ST", "type": "STIME_DATE"},
        {"name": "TM", "type": "TIME"},
        {"name": "RAW", "type": "BYTES", "length": 3},
        {"name": "TXT", "type": "CHAR", "length": 4},
        {"name": "DIG", "type": "BCD", "length": 2},
        {"name": "BITSET", "type": "SET", "length": 2},
        {"type": "FILL", "length": 2},
        {
            "type": "IF",
            "when": {"ref": "BT21.NBR_OCCUR", "eq": 1},
            "then": [{"name": "YES", "type": "UINT8"}],
        },
        {
            "type": "IF",
            "when": {"ref": "BT21.NBR_OCCUR", "eq": 2},
            "then": [{"name": "NO", "type": "UINT8"}],
        },
        {
            "name": "GRID",
            "type": "ARRAY",
            "count": 2,
            "of": [
                {"name": "V", "type": "ARRAY", "count": 3, "of": {"type": "INT16"}},
                {"name": "W", "type": "UINT32"},
                {"name": "R", "type": "RECORD", "fields": [{"name": "Z", "type": "UINT8"}]},
            ],
        },
        {"name": "NONE", "type": "ARRAY", "count": "BT21.NBR_SELF_READS", "of": {"type": "UINT16"}},
    ],
}
SET = tables.DEFAULT_SET.derive([KINDS], name="kinds")


def _ctx(tm, ni1, ni2, self_reads=0):
    bt21 = bytearray(BT21)
    bt21[2] = self_reads
    return {
        "BT21": bytes(bt21),
        "BT00.FORMAT_CONTROL_2.TM_FORMAT": tm,
        "BT00.FORMAT_CONTROL_3.NI_FORMAT1": ni1,
        "BT00.FORMAT_CONTROL_3.NI_FORMAT2": ni2,
    }


def _kernels():
    mods = [_backend.reference("tables")]
    nat = _backend.native_module("tables")
    if nat is not None:
        mods.insert(0, nat)
    return mods


def _run(mod, monkeypatch, ctx, images):
    monkeypatch.setattr(tables, "_kernel", mod)
    try:
        return SET.decode_columns("ET248", images, ctx)
    except (TruncatedError, MalformedError) as e:
        return (type(e).__name__, e.image, e.offset)


@pytest.mark.parametrize("tm", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("ni", [(0, 1), (4, 5), (6, 7), (8, 9), (10, 11), (12, 8)])
def test_every_kind_twins_and_records(monkeypatch, tm, ni):
    ctx = _ctx(tm, *ni)
    size = Plan(
        SET.program("ET248"),
        tables._fixed_params(
            SET.program("ET248"), tables._Context(ctx, tables.DEFAULT_PROFILE, SET)
        ),
    ).size
    rng = np.random.default_rng(tm * 100 + ni[0])
    images = rng.integers(0, 256, size=(40, size), dtype=np.uint8)
    if tm == 1 or ni[0] in (5, 6, 12) or ni[1] in (5, 6, 12):
        images[:30] = rng.integers(0, 10, size=(30, size), dtype=np.uint8) * 0x11  # BCD digits
    else:
        images[:30] %= 13
    outs = [_run(m, monkeypatch, ctx, images) for m in _kernels()]
    for o in outs[1:]:
        if isinstance(o, tuple):
            assert o == outs[0]
        else:
            assert set(o) == set(outs[0])
            for k in o:
                np.testing.assert_array_equal(o[k], outs[0][k])
    # the records agree wherever every image decodes
    good = []
    for im in images:
        try:
            SET.decode("ET248", im.tobytes(), ctx)
            good.append(im)
        except MalformedError:
            pass
    assert len(good) >= 30
    for m in _kernels():
        monkeypatch.setattr(tables, "_kernel", m)
        cols = SET.decode_columns("ET248", np.array(good), ctx)
        recs = [SET.decode("ET248", im.tobytes(), ctx) for im in good]
        for name, col in cols.items():
            if name == "NONE":
                assert col.shape == (len(good), 0)
                continue
            want = [_extract(r, name.split("."), col.dtype) for r in recs]
            np.testing.assert_array_equal(col, np.array(want, dtype=col.dtype).reshape(col.shape))
        assert "NO" not in cols and "YES" in cols
        assert cols["GRID.V"].shape == (len(good), 2, 3) and cols["GRID.R.Z"].shape == (
            len(good),
            2,
        )


def test_zero_count_array_has_a_column(monkeypatch):
    ctx = _ctx(2, 8, 8, self_reads=3)
    cols = SET.decode_columns("ET248", [bytes(300)], ctx)
    assert cols["NONE"].shape == (1, 3)
    assert SET.decode_columns("ET248", [bytes(300)], _ctx(2, 8, 8))["NONE"].shape == (1, 0)


@pytest.mark.parametrize("mod", _kernels(), ids=lambda m: m.__name__.split(".")[1])
def test_errors_name_image_and_offset(mod, monkeypatch):
    monkeypatch.setattr(tables, "_kernel", mod)
    good = bytes([0x24, 0x03, 0x15, 0x10, 0x30, 0x00, 0x12])  # BT52, TM_FORMAT 1 (BCD)
    ctx = {"BT00.FORMAT_CONTROL_2.TM_FORMAT": 1}
    cols = tables.decode_columns("BT52", [good, good], ctx)
    assert cols["CLOCK_CALENDAR"][0] == np.datetime64("2024-03-15T10:30:00")
    bad = good[:2] + b"\x1a" + good[3:]
    with pytest.raises(MalformedError) as ei:
        tables.decode_columns("BT52", [good, good, bad], ctx)
    with pytest.raises(MalformedError) as per_record:
        tables.decode("BT52", bad, ctx)
    assert ei.value.image == 2 and ei.value.offset == per_record.value.offset == 0
    with pytest.raises(TruncatedError) as ei:
        tables.decode_columns("BT52", [good, good[:5]], ctx)
    assert ei.value.image == 1 and ei.value.remaining == 5 and ei.value.needed == 7
    with pytest.raises(TruncatedError):
        tables.decode_columns("BT52", good + good, offsets=[0, 9])
    with pytest.raises(TruncatedError):
        tables.decode_columns("BT52", good, offsets=[-1])


def test_input_forms_agree():
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 30, size=(50, 7), dtype=np.uint8)
    buf = b"".join(r.tobytes() + b"\xff" for r in raw)  # 1 byte of padding after each
    forms = [
        tables.decode_columns("BT52", raw),
        tables.decode_columns("BT52", [r.tobytes() for r in raw]),
        tables.decode_columns("BT52", buf, offsets=np.arange(50) * 8),
    ]
    for f in forms[1:]:
        for k in forms[0]:
            np.testing.assert_array_equal(f[k], forms[0][k])
    assert tables.decode_columns("BT52", [])["CLOCK_CALENDAR"].shape == (0,)
    with pytest.raises(ConfigurationError):
        tables.decode_columns("BT52", buf)


def test_arrow_form():
    pa = pytest.importorskip("pyarrow")
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 256, size=(20, _program_size("BT23", CONTEXT)), dtype=np.uint8)
    raw[:10] %= 12
    raw[:10] += 1
    cols = tables.decode_columns("BT23", raw, CONTEXT)
    t = tables.decode_arrow("BT23", raw, CONTEXT)
    assert isinstance(t, pa.Table) and t.num_rows == 20 and t.column_names == list(cols)
    ev = cols["TIER_DATA_BLOCK.DEMANDS.EVENT_TIME"]
    got = t.column("TIER_DATA_BLOCK.DEMANDS.EVENT_TIME").to_pylist()
    for i in (0, 15):
        for k in range(8):
            for j in range(8):
                v = got[i][k][j][0]
                want = ev[i, k, j, 0]
                if np.isnat(want):
                    assert v is None
                else:
                    assert v == dt.datetime.fromtimestamp(
                        int(want.astype(np.int64)), dt.timezone.utc
                    )
    assert t.column("TOT_DATA_BLOCK.SUMMATIONS").to_pylist()[3] == list(
        cols["TOT_DATA_BLOCK.SUMMATIONS"][3]
    )
