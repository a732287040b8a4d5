"""``osgp demo`` with a meter moved to another segment between the rounds:
the scheduled re-evaluation finds it, re-homes it, and the midnight round
reads it there, every interval stored once and equal to the meter's own."""

from __future__ import annotations

from osgp.cli import main
from osgp.concentrator import KeyVault, Store
from osgp.demo import DemoConfig, run_demo, summary
from osgp.link import lon
from tests.test_demo import day_truth, stored_intervals


def test_the_demo_finds_a_moved_meter_and_reads_it_on_its_new_segment(tmp_path):
    cfg = DemoConfig(
        meters=40, segments=2, seed=5, out=tmp_path, plots=False, move_meter=True,
        reevaluate=True,
    )  # fmt: skip
    res = run_demo(cfg, show=False)
    fleet, nid = res.fleet, res.moved
    first, second = (s.name for s in fleet.segments)
    assert nid is not None and fleet.node(nid).segment.name == second
    (r,) = res.reevaluations
    mine = [(c.reason, c.old_segment, c.new_segment) for c in r.changes if c.nid == nid]
    assert mine == [("moved", first, second)]
    # the others stay on their segments (a sweep may find a meter a better path, or miss one)
    assert all(c.reason in ("path", "lost") and c.old_segment in (first, second)
               for c in r.changes if c.nid != nid)  # fmt: skip
    assert all(c.new_segment in (c.old_segment, None) for c in r.changes if c.nid != nid)
    assert r.moved == [nid] and not r.failed and r.finished is not None
    assert "re-evaluation: 1 moved (1 re-homed, 0 not commissioned there)" in summary(res)
    assert all(x.done and x.ok == x.meters == 40 for x in res.rounds[:2])
    # the store's address is the one the meter itself answers at, on its new segment
    master = bytes.fromhex((tmp_path / "master.key").read_text().strip())
    store = Store(f"sqlite:///{tmp_path / 'concentrator.db'}", vault=KeyVault(master))
    try:
        d = store.device_by_neuron(nid)
        assert d.segment == second
        assert fleet.node(nid).address == lon.SubnetNode(d.subnet, d.node)
    finally:
        store.close()
    # nothing lost, nothing doubled: the day of the meter's own BT64, each interval once
    got = stored_intervals(tmp_path / "export" / "intervals.parquet")
    want = day_truth(fleet.meters[nid], int(fleet.network.utc(0)) + 86400)
    assert len({t for t, _ in want}) >= 96
    assert {k: got.get((nid.hex(), *k)) for k in want} == want


def test_without_the_re_evaluation_the_moved_meter_is_missed(tmp_path):
    cfg = DemoConfig(
        meters=40, segments=2, seed=5, out=tmp_path, plots=False, move_meter=True
    )  # re-evaluation off: the default
    res = run_demo(cfg, show=False)
    assert not res.reevaluations and "re-evaluation" not in summary(res)
    noon, midnight = res.rounds[:2]
    assert noon.ok == 40 and midnight.ok == 39
    (dev,) = midnight.missed
    master = bytes.fromhex((tmp_path / "master.key").read_text().strip())
    store = Store(f"sqlite:///{tmp_path / 'concentrator.db'}", vault=KeyVault(master))
    try:
        d = store.device(dev)
        assert d.neuron_id == res.moved and d.segment == res.fleet.segments[0].name
    finally:
        store.close()


def test_the_demo_command_re_evaluates_on_request(tmp_path, capsys):
    args = ["demo", "--meters", "20", "--segments", "2", "--out", str(tmp_path), "--quiet",
            "--no-plots", "--reevaluate", "--move-meter"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "moved to another segment at 13 h" in out
    assert "re-evaluation: 1 moved (1 re-homed, 0 not commissioned there)" in out
