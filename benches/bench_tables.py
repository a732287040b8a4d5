"""Generic table decode (osgp.tables.decode of BT23 with 8 tiers) against a
pure-Python struct loop producing the same nested dicts (group "table-decode"),
and the columnar decode of many BT23 images (group "table-columns", below)."""

from __future__ import annotations

import struct

import pytest

from osgp import _backend, tables

# BT21: demand reset counter + date/time + cumulative demand; 19 summations, 8 demands,
# 16 coincidents, 1 occurrence, 8 tiers (NES maxima, [OPT p.20-23])
BT21 = bytes([0b10111, 0b10, 12, 19, 8, 16, 1, 8, 8, 41])
CTX = {"BT00": None, "BT21": None}


def blk_size():
    return 19 * 4 + 8 * (5 + 4 + 4) + 16 * 4


DATA = bytes(range(256)) * ((1 + 9 * blk_size()) // 256 + 1)
DATA = DATA[: 1 + 9 * blk_size()]


def struct_loop(data):
    pos = 1
    out = {"NBR_DEMAND_RESETS": data[0]}

    def block(pos):
        summ = struct.unpack_from("<19i", data, pos)
        pos += 76
        dem = []
        for _ in range(8):
            y, mo, d, h, mi = data[pos : pos + 5]
            cum, dmd = struct.unpack_from("<ii", data, pos + 5)
            dem.append(
                {"EVENT_TIME": ((2000 + y, mo, d, h, mi, 0),), "CUM_DEMAND": cum, "DEMAND": (dmd,)}
            )
            pos += 13
        coin = [{"COINCIDENT_VALUES": (v,)} for v in struct.unpack_from("<16i", data, pos)]
        pos += 64
        return {"SUMMATIONS": summ, "DEMANDS": tuple(dem), "COINCIDENTS": tuple(coin)}, pos

    out["TOT_DATA_BLOCK"], pos = block(pos)
    tiers = []
    for _ in range(8):
        b, pos = block(pos)
        tiers.append(b)
    out["TIER_DATA_BLOCK"] = tuple(tiers)
    return out


def kernels():
    out = [pytest.param(_backend.reference("tables"), id="twin")]
    nat = _backend.native_module("tables")
    if nat is not None:
        out.insert(0, pytest.param(nat, id="native"))
    return out


@pytest.mark.benchmark(group="table-decode")
@pytest.mark.parametrize("mod", kernels())
def test_bt23_osgp(benchmark, mod, monkeypatch):
    monkeypatch.setattr(tables, "_kernel", mod)
    ctx = {"BT21": tables.decode("BT21", BT21)}
    got = benchmark(tables.decode, "BT23", DATA, ctx)
    want = struct_loop(DATA)
    assert got["TOT_DATA_BLOCK"]["SUMMATIONS"] == want["TOT_DATA_BLOCK"]["SUMMATIONS"]
    assert (
        got["TIER_DATA_BLOCK"][7]["COINCIDENTS"][15]["COINCIDENT_VALUES"]
        == want["TIER_DATA_BLOCK"][7]["COINCIDENTS"][15]["COINCIDENT_VALUES"]
    )


@pytest.mark.benchmark(group="table-decode")
def test_bt23_struct_loop(benchmark):
    benchmark(struct_loop, DATA)


# ---- columnar decode (osgp.tables.decode_columns) -------------------------------------------
#
# Group "table-columns": N BT23 images (the 8-tier NES layout above, 2197 bytes each)
# decoded to columns by decode_columns, vs a vectorised numpy structured-dtype decode
# producing the same columns (contiguous arrays; EVENT_TIME to datetime64[s] with
# vectorised calendar arithmetic, NaT for impossible dates), vs the per-record
# tables.decode (on PER_RECORD images; compare rows/s in extra_info).

import numpy as np  # noqa: E402

COLUMN_IMAGES = 100_000  # 220 MB of images; 1,000,000 would be 2.2 GB in and out
PER_RECORD = 1_000
CTX_COLS = {"BT21": BT21}


def _blk_dtype():
    return [
        ("SUMMATIONS", "<i4", (19,)),
        (
            "DEMANDS",
            [("EVENT_TIME", "u1", (1, 5)), ("CUM_DEMAND", "<i4"), ("DEMAND", "<i4", (1,))],
            (8,),
        ),
        ("COINCIDENTS", [("COINCIDENT_VALUES", "<i4", (1,))], (16,)),
    ]


BT23_DTYPE = np.dtype(
    [("NBR_DEMAND_RESETS", "u1"), ("TOT", _blk_dtype()), ("TIER", _blk_dtype(), (8,))]
)


def _days(y, m, d):
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


_DIM = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _stime(e):
    """STIME_DATE (TM_FORMAT 2) bytes (..., 5) -> datetime64[s], NaT if impossible."""
    y, m, d, h, mi = (e[..., k].astype(np.int64) for k in range(5))
    y = y + 2000
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    mc = np.clip(m, 0, 12)
    ok = (m >= 1) & (m <= 12) & (d >= 1) & (d <= _DIM[mc] + ((mc == 2) & leap)) & (h <= 23)
    ok &= mi <= 59
    t = _days(y, np.clip(m, 1, 12), d) * 86400 + h * 3600 + mi * 60
    return np.where(ok, t, np.iinfo(np.int64).min).view("datetime64[s]")


def numpy_columns(buf, n):
    a = np.frombuffer(buf, BT23_DTYPE, count=n)
    out = {"NBR_DEMAND_RESETS": a["NBR_DEMAND_RESETS"].copy()}
    for pre, part in (("TOT_DATA_BLOCK", a["TOT"]), ("TIER_DATA_BLOCK", a["TIER"])):
        d = part["DEMANDS"]
        out[f"{pre}.SUMMATIONS"] = np.ascontiguousarray(part["SUMMATIONS"])
        out[f"{pre}.DEMANDS.EVENT_TIME"] = _stime(d["EVENT_TIME"])
        out[f"{pre}.DEMANDS.CUM_DEMAND"] = np.ascontiguousarray(d["CUM_DEMAND"])
        out[f"{pre}.DEMANDS.DEMAND"] = np.ascontiguousarray(d["DEMAND"])
        out[f"{pre}.COINCIDENTS.COINCIDENT_VALUES"] = np.ascontiguousarray(
            part["COINCIDENTS"]["COINCIDENT_VALUES"]
        )
    return out


@pytest.fixture(scope="module")
def bt23_images():
    rng = np.random.default_rng(23)
    raw = rng.integers(0, 256, size=(COLUMN_IMAGES, BT23_DTYPE.itemsize), dtype=np.uint8)
    raw[:, 1::7] %= 29  # a share of plausible calendar bytes
    return raw.tobytes()


def _rows_per_s(benchmark, n):
    benchmark.extra_info["images"] = n
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["rows_per_s"] = n / benchmark.stats.stats.min


@pytest.mark.benchmark(group="table-columns")
def test_bt23_columns_osgp(benchmark, bt23_images):
    if _backend.native_module("tables") is None:
        pytest.skip("native extensions not built")
    offs = np.arange(COLUMN_IMAGES, dtype=np.int64) * BT23_DTYPE.itemsize
    cols = benchmark.pedantic(
        tables.decode_columns, ("BT23", bt23_images, CTX_COLS), {"offsets": offs}, rounds=5
    )
    _rows_per_s(benchmark, COLUMN_IMAGES)
    want = numpy_columns(bt23_images, COLUMN_IMAGES)
    assert set(cols) == set(want)
    for k in want:
        np.testing.assert_array_equal(cols[k], want[k])


@pytest.mark.benchmark(group="table-columns")
def test_bt23_columns_numpy_structured(benchmark, bt23_images):
    benchmark.pedantic(numpy_columns, (bt23_images, COLUMN_IMAGES), rounds=5)
    _rows_per_s(benchmark, COLUMN_IMAGES)


@pytest.mark.benchmark(group="table-columns")
def test_bt23_columns_per_record(benchmark, bt23_images):
    """tables.decode of PER_RECORD images (rows/s in extra_info).  Each mapping is
    dropped at once: keeping them all (a list of 1,000) costs several times more
    here, as the cyclic GC then walks every nested mapping again and again."""
    size = BT23_DTYPE.itemsize
    ctx = {"BT21": tables.decode("BT21", BT21)}
    imgs = [bt23_images[i * size : (i + 1) * size] for i in range(PER_RECORD)]

    def loop():
        for im in imgs:
            tables.decode("BT23", im, ctx)

    benchmark.pedantic(loop, rounds=5)
    _rows_per_s(benchmark, PER_RECORD)
