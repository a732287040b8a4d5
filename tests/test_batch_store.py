"""The concentrator's raw-frame store as a batch input: a CN/IP collection
from simulated meters keeps its frames (``keep_frames=True``), and ``osgp
decode store:URL`` decodes from them what the meters hold."""

from __future__ import annotations

import asyncio
import json

import pytest

from osgp.batch import decode_captures
from osgp.concentrator import KeyVault, Store
from osgp.concentrator.aio import commission, run_collection
from osgp.concentrator.engine import StatusPolicy
from osgp.errors import ConfigurationError
from osgp.sim.serve import CnipMeterServer

from .test_concentrator_aio import FAST, MASTER, truth

ds = pytest.importorskip("pyarrow.dataset")


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    url = f"sqlite:///{d / 'c.db'}"
    store = Store(url, vault=KeyVault(MASTER))
    with CnipMeterServer(3, seed=5, speed=900.0, start_offset=86400.0) as server:
        commission(store, "s1", server.fleet)
        policy = StatusPolicy(attempts=4, retry_s=0.2)
        rounds = asyncio.run(
            run_collection(
                store, {"s1": server.url}, rounds=1, policy=policy, profile=FAST, keep_frames=True
            )
        )
        with server.lock:
            facts = {
                (m["subnet"], m["node"]): truth(meter)
                for m, meter in zip(server.fleet, server.meters)
            }
        fleet = list(server.fleet)
    kept = store.frames("s1")
    store.close()
    keys = d / "keys.json"
    keys.write_text(json.dumps({f"{m['subnet']}/{m['node']}": m["key"] for m in fleet}))
    return d, url, keys, rounds, facts, kept


def test_the_collection_kept_every_frame_it_moved(collected):
    _, _, _, rounds, _, kept = collected
    assert rounds[0].ok == 3
    assert {d for _, d, _ in kept} == {"tx", "rx"}
    assert len(kept) > 6


def test_decoding_the_store_gives_the_meters_intervals(collected):
    d, url, keys, _, facts, kept = collected
    out = d / "out"
    r = decode_captures([f"store:{url}#s1"], str(out), keys=str(keys), jobs=1)
    assert r.packets == len(kept) and r.verified > 0
    lp = ds.dataset(out / "load_profile", format="parquet", partitioning="hive").to_table()
    got = {}
    for dev, t, ch, v in zip(*(lp[c].to_pylist() for c in ("device", "time", "channel", "value"))):
        got.setdefault(dev, {})[(int(t.timestamp()), ch)] = v
    for (subnet, node), (intervals, *_rest) in facts.items():
        mine = got[f"{subnet}.{node}"]
        # the intervals read from the meter are the meter's own (same time and channel)
        common = set(mine) & set(intervals)
        assert len(common) > 0
        assert all(mine[k] == intervals[k] for k in common)


def test_a_store_without_frames_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="no raw frames"):
        decode_captures([f"store:sqlite:///{tmp_path / 'none.db'}"], None, jobs=1)
