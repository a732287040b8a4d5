"""Exports of collected readings: Parquet, CSV and JSON read back with other readers
(the stdlib csv and json modules; Parquet through pyarrow's reader)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from osgp import loadprofile
from osgp.concentrator import Store
from osgp.concentrator.export import export, flag_names, to_arrow
from osgp.errors import ConfigurationError

T0 = 1_764_547_200  # 2025-12-01T00:00:00Z


@pytest.fixture
def filled(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'x.db'}") as st:
        a = st.upsert_device(
            bytes.fromhex("04a1b2c3d4e5"), serial="M-1", meta={"channel_units": ["Wh", "varh"]}
        )
        b = st.upsert_device(bytes.fromhex("04a1b2c3d4e6"), serial="M-2")
        pf_fwd = loadprofile.FLAG_POWER_FAIL | loadprofile.FLAG_CLOCK_FORWARD
        st.commit_intervals(
            a,
            [
                (T0 + 900, 0, 12.5, 125, 0),
                (T0 + 900, 1, 3.0, 30, pf_fwd),
                (T0 + 1800, 0, 7.0, 70, 2 << 4),
            ],
        )
        st.commit_intervals(b, [(T0 + 900, 0, 1.0, 10, loadprofile.FLAG_CLOCK_BACKWARD)])
        st.commit_registers(a, T0 + 60, {"fwd_active_wh": (1234.5, "Wh")})
        st.commit_events(a, [(T0 + 5, 1, 1, "power down", b"\x01\xff")])
        yield st, a, b


def test_flag_names():
    assert flag_names(0) == ""
    assert flag_names(loadprofile.FLAG_POWER_FAIL | loadprofile.FLAG_CLOCK_BACKWARD) == (
        "power fail|clock backward"
    )


def test_to_arrow_names_meters_units_and_status(filled):
    st, a, b = filled
    t = to_arrow(st, "intervals")
    assert t.schema.field("ts_utc").type == pa.timestamp("s", tz="UTC")
    rows = t.to_pylist()
    assert [(r["neuron_id"], r["serial"], r["unit"]) for r in rows] == [
        ("04a1b2c3d4e5", "M-1", "Wh"),
        ("04a1b2c3d4e5", "M-1", "Wh"),
        ("04a1b2c3d4e5", "M-1", "varh"),
        ("04a1b2c3d4e6", "M-2", None),
    ]
    assert [r["flags"] for r in rows] == ["", "", "power fail|clock forward", "clock backward"]
    assert [r["channel_status"] for r in rows] == [
        "no status",
        "partial interval",
        "no status",
        "no status",
    ]
    assert rows[0]["ts_utc"] == datetime(2025, 12, 1, 0, 15, tzinfo=timezone.utc)
    assert to_arrow(st, "intervals", device_ids=[b]).num_rows == 1
    assert to_arrow(st, "events")["arg"].to_pylist() == ["01ff"]
    with pytest.raises(ConfigurationError):
        to_arrow(st, "frames")


def test_an_empty_store_exports_empty_tables(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'e.db'}") as st:
        out = export(st, tmp_path / "out", formats=["parquet", "json"])
        assert pq.read_table(out["intervals"][0]).num_rows == 0
        assert "flags" in pq.read_table(out["intervals"][0]).column_names
        assert json.loads(out["events"][1].read_text()) == []


def test_export_files(filled, tmp_path):
    st, a, b = filled
    out = export(st, tmp_path / "out")
    assert {k: [p.name for p in v] for k, v in out.items()} == {
        k: [f"{k}.parquet", f"{k}.csv", f"{k}.json"] for k in ("intervals", "registers", "events")
    }
    pt = pq.read_table(out["intervals"][0])
    # Parquet has no seconds unit: UTC-adjusted milliseconds, the same instants
    assert pt.schema.field("ts_utc").type == pa.timestamp("ms", tz="UTC") and pt.num_rows == 4
    assert pt["ts_utc"].to_pylist() == to_arrow(st, "intervals")["ts_utc"].to_pylist()
    logical = pq.ParquetFile(out["intervals"][0]).schema.column(4).logical_type
    assert logical.type == "TIMESTAMP" and json.loads(logical.to_json())["isAdjustedToUTC"]
    with open(out["intervals"][1], newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[2]["ts_utc"] == "2025-12-01T00:15:00Z" and rows[2]["unit"] == "varh"
    assert rows[2]["flags"] == "power fail|clock forward" and float(rows[2]["value"]) == 3.0
    reg = json.loads(out["registers"][2].read_text())
    assert reg == [
        {
            "device_id": a,
            "neuron_id": "04a1b2c3d4e5",
            "serial": "M-1",
            "name": "fwd_active_wh",
            "read_at": "2025-12-01T00:01:00.000Z",
            "value": 1234.5,
            "unit": "Wh",
        }
    ]
    ev = json.loads(out["events"][2].read_text())
    assert ev[0]["ts_utc"] == "2025-12-01T00:00:05Z" and ev[0]["arg"] == "01ff"
    only = export(st, tmp_path / "b", formats=["csv"], device_ids=[b])
    with open(only["intervals"][0], newline="") as f:
        assert [r["serial"] for r in csv.DictReader(f)] == ["M-2"]
    with pytest.raises(ConfigurationError):
        export(st, tmp_path / "c", formats=["xlsx"])
