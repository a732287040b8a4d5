"""Generic table decode (osgp.tables.decode of BT23 with 8 tiers) against a
pure-Python struct loop producing the same nested dicts.  Group "table-decode"."""

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
