"""``osgp demo`` end to end on a small fleet: every meter found, commissioned
and read, the stored day equal to what the simulated meters recorded, the
exports and plots written."""

from __future__ import annotations

import stat

import numpy as np
import pyarrow.parquet as pq

from osgp import loadprofile
from osgp.cli import main
from osgp.demo import DemoConfig, run_demo


def stored_intervals(path):
    """The exported intervals as (neuron id hex, UTC second, channel) -> raw, each once."""
    iv = pq.read_table(path)
    got = {}
    for nid, ts, ch, raw in zip(
        iv.column("neuron_id").to_pylist(),
        iv.column("ts_utc").cast("int64").to_pylist(),
        iv.column("channel").to_pylist(),
        iv.column("raw").to_pylist(),
    ):
        key = (nid, ts // 1000 if ts > 10**11 else ts, ch)
        assert key not in got, f"stored twice: {key}"
        got[key] = raw
    return got


def day_truth(meter, day_end):
    """The meter's own BT64 intervals up to ``day_end``: (UTC second, channel) -> value."""
    img = {t: meter.image(t) for t in (0, 61, 62, 63, 64)}
    lp = loadprofile.decode(img[61], img[62], img[63], img[64], bt00=img[0])
    ts = lp.timestamps.astype("int64")
    day = ts <= day_end
    return {(t, c): int(row[c]) for t, row in zip(ts[day].tolist(), lp.values[day])
            for c in range(lp.channels)}  # fmt: skip


def test_demo_collects_the_fleets_day(tmp_path):
    stale = tmp_path / "master.key"  # left by an earlier run, readable by everyone
    stale.write_text("00\n")
    stale.chmod(0o644)
    res = run_demo(DemoConfig(meters=60, segments=2, seed=5, out=tmp_path), show=False)
    fleet = res.fleet
    assert res.found == res.commissioned == len(fleet.meters) == 60
    assert all(r.done and r.ok == r.meters for r in res.rounds[:2])
    # the truth: each simulated meter's own BT64 ring, decoded in full
    got = stored_intervals(tmp_path / "export" / "intervals.parquet")
    day_end = int(fleet.network.utc(0)) + 86400
    for nid, meter in fleet.meters.items():
        want = day_truth(meter, day_end)
        assert len({t for t, _ in want}) >= 96  # a whole day of 15-minute intervals
        for (t, c), v in want.items():
            assert got.get((nid.hex(), t, c)) == v, (nid.hex(), t, c)
    for name in ("load_profile.png", "fleet_consumption.png", "topology.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert (tmp_path / "export" / "registers.csv").stat().st_size > 0
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600  # owner only
    for c in res.channel.values():
        assert 0.0 < c["efficiency"] <= 1.0


def test_demo_command_prints_its_summary(tmp_path, capsys):
    code = main(
        [
            "demo",
            "--meters",
            "20",
            "--segments",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
            "--no-plots",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "discovered 20, commissioned 20" in out and str(tmp_path) in out
    assert np.isfinite(float(out.split("efficiency ")[1].split("%")[0]))
