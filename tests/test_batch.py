"""``osgp decode`` of a simulated feeder's capture reproduces what the
sessions read; damaged, tampered and unkeyed traffic shows in the report."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest

from osgp import _backend, loadprofile, tables
from osgp.batch import FATES, KeyFile, StaticKeys, decode_captures, read_frames
from osgp.cli import main
from osgp.errors import ConfigurationError
from osgp.tables.events import EVENTS, MFG_EVENTS

from .batch_feeder import DIMS, build

pa = pytest.importorskip("pyarrow")
ds = pytest.importorskip("pyarrow.dataset")
_frames, _ = _backend.load("frames")


@pytest.fixture(scope="module")
def feeder():
    return build(4, seed=7)


@pytest.fixture(scope="module")
def files(tmp_path_factory, feeder):
    d = tmp_path_factory.mktemp("batch")
    cap = d / "feeder.pcapng"
    cap.write_bytes(feeder.capture)
    keys = d / "keys.json"
    keys.write_text(json.dumps({f"{s}/{n}": k.hex() for (s, n), k in feeder.keys.items()}))
    return d, cap, keys


@pytest.fixture(scope="module")
def decoded(files):
    d, cap, keys = files
    out = d / "out"
    report = decode_captures([cap], str(out), keys=str(keys), jobs=1)
    return report, out


def rows(out, name):
    t = ds.dataset(out / name, format="parquet", partitioning="hive").to_table()
    for i, f in enumerate(t.schema):
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns":  # past datetime's reach
            t = t.set_column(i, f.name, t[f.name].cast(pa.int64()))
    return t.to_pylist()


def dev(k):
    return f"{k[0]}.{k[1]}"


# ---- what the sessions read --------------------------------------------------------------------
def test_every_image_the_sessions_read_is_in_the_dataset(feeder, decoded):
    report, out = decoded
    got = {}
    for r in sorted(rows(out, "images"), key=lambda r: r["time"]):
        got[(r["device"], r["table"])] = r["data"]  # the latest image of each table
    want = {(dev(k), t): img for k, imgs in feeder.read.items() for t, img in imgs.items()}
    assert got == want
    # the static tables are the meters' own
    for k, m in feeder.meters.items():
        for t in DIMS:
            assert got[(dev(k), t)] == m.image(t)


def test_load_profile_rows_are_the_sessions_decode(feeder, decoded):
    _, out = decoded
    got = rows(out, "load_profile")
    for k, r in feeder.read.items():
        lp = loadprofile.decode(r[61], r[62], r[63], r[64], bt00=r[0])
        mine = sorted(
            (x["time"].timestamp(), x["channel"], x["value"], x["status"], x["flags"])
            for x in got
            if x["device"] == dev(k)
        )
        t = lp.timestamps.astype("datetime64[s]").astype(np.int64)
        want = sorted(
            (float(t[i]), c, int(lp.values[i, c]), int(lp.status[i, c]), int(lp.flags[i]))
            for i in range(len(lp))
            for c in range(lp.channels)
        )
        assert mine == want and len(want) > 100


def _register_rows(feeder, out, table):
    """Per meter: its latest image of ``table`` decoded, and the dataset's
    register rows of that table as field -> value (the latest read wins)."""
    got = rows(out, "registers")
    for k, r in feeder.read.items():
        d = tables.decode(table, r[table], {"BT00": r[0], "BT21": r[21]})
        mine = [x for x in got if x["device"] == dev(k) and x["table"] == table]
        yield d, {x["field"]: x["value"] for x in mine}


def test_registers_are_the_sessions_bt23(feeder, decoded):
    for d, mine in _register_rows(feeder, decoded[1], 23):
        tot = d["TOT_DATA_BLOCK"]["SUMMATIONS"]
        assert [mine[f"TOT_DATA_BLOCK.SUMMATIONS[{i}]"] for i in range(len(tot))] == list(tot)
        for b, block in enumerate(d["TIER_DATA_BLOCK"]):
            for i, v in enumerate(block["SUMMATIONS"]):
                assert mine[f"TIER_DATA_BLOCK.SUMMATIONS[{b}][{i}]"] == v
        assert mine["NBR_DEMAND_RESETS"] == d["NBR_DEMAND_RESETS"]


def test_present_values_are_the_sessions_bt28(feeder, decoded):
    for d, mine in _register_rows(feeder, decoded[1], 28):
        want = {f"PRESENT_VALUES[{i}]": v for i, v in enumerate(d["PRESENT_VALUES"])}
        for i, demand in enumerate(d["PRESENT_DEMANDS"]):
            left = demand["TIME_REMAINING"]
            want[f"PRESENT_DEMANDS.DEMAND_VALUE[{i}]"] = demand["DEMAND_VALUE"]
            want[f"PRESENT_DEMANDS.TIME_REMAINING[{i}]"] = (
                left.hour * 3600 + left.minute * 60 + left.second
            )
        assert mine == want and len(want) >= 2
    assert {x["table"] for x in rows(decoded[1], "registers")} == {23, 28}


def test_event_rows_are_the_sessions_bt74(feeder, decoded):
    _, out = decoded
    got = rows(out, "events")
    for k, r in feeder.read.items():
        e = loadprofile.decode_event_log(r[71], r[74], bt00=r[0])
        mine = [x for x in sorted(got, key=lambda x: x["time"]) if x["device"] == dev(k)]
        assert [x["code"] for x in mine] == list(e["code"]) and mine
        for x, m in zip(mine, e["mfg"]):  # named from the catalogue
            assert (MFG_EVENTS if m else EVENTS)[x["name"]] == x["code"]


def test_every_frame_has_one_fate_and_every_exchange_verified(feeder, decoded):
    report, out = decoded
    assert sum(report.frames.values()) == report.packets > 1000
    assert set(report.frames) <= set(FATES)
    assert report.verified == report.exchanges > 100
    assert report.frames["relayed"] > 0  # the far meters sit behind repeaters
    assert report.rows["load_profile"] == len(rows(out, "load_profile"))
    # the capture's own count of end-to-end exchanges, by an independent parse
    assert set(report.rejected) <= {"unpaired"}
    days = {p.name for p in (out / "load_profile").iterdir()}
    assert days == {"day=2026-01-01", "day=2026-01-02"}


# ---- damage, tampering, unknown devices --------------------------------------------------------
def response_packets(capture, device):
    """(offset, length) of the end-to-end response packets from ``device``."""
    from osgp import _backend as b

    cap, _ = b.load("capture")
    ts, off, ln, fi, info = cap.walk(capture)
    frames, _ = read_frames(capture)
    st, h = _frames.lon_parse_batch(frames.data, frames.bounds, True, False)
    out = []
    for i in range(len(frames)):
        spdu = h["pdu_hdr"][i]
        apdu0 = frames.data[frames.bounds[i] + h["pdu_offset"][i] + 1]
        if (
            st[i] == 0
            and (spdu >> 4) & 7 == 2
            and (h["src_subnet"][i], h["src_node"][i] & 0x7F) == device
            and apdu0 != 0x4D
        ):
            p = int(frames.packet[i])
            out.append((int(off[p]), int(ln[p])))
    return out


def test_tampered_digests_are_rejected(tmp_path, feeder, files):
    _, _, keys = files
    data = bytearray(feeder.capture)
    victims = response_packets(bytes(data), (2, 1))[:5]
    for o, n in victims:
        data[o + n - 1] ^= 0x01  # the digest's last byte (no UDP checksum over CN/IP here)
    cap = tmp_path / "tampered.pcapng"
    cap.write_bytes(bytes(data))
    r = decode_captures([cap], str(tmp_path / "out"), keys=str(keys), jobs=1)
    assert r.rejected["digest"] == 5
    assert all("response digest" in e for e in r.examples["digest"])
    assert len(r.examples["digest"]) == 3


def test_unknown_devices_are_counted_and_give_no_rows(tmp_path, feeder):
    keys = {f"{s}/{n}": k.hex() for (s, n), k in feeder.keys.items() if (s, n) != (2, 3)}
    kf = tmp_path / "keys.csv"
    kf.write_text("device,key\n" + "".join(f"{d},{k}\n" for d, k in keys.items()))
    cap = tmp_path / "c.pcapng"
    cap.write_bytes(feeder.capture)
    r = decode_captures([cap], str(tmp_path / "out"), keys=str(kf), jobs=1)
    assert r.rejected["unknown_device"] == r.exchanges - r.verified > 0
    assert all("2.3" in e for e in r.examples["unknown_device"])
    assert "2.3" not in {x["device"] for x in rows(tmp_path / "out", "images")}


def test_truncated_capture_is_counted_and_the_rest_decoded(tmp_path, feeder, files):
    _, _, keys = files
    cap = tmp_path / "cut.pcapng"
    cap.write_bytes(feeder.capture[: len(feeder.capture) * 2 // 3 + 5])
    r = decode_captures([cap], str(tmp_path / "out"), keys=str(keys), jobs=1)
    assert r.capture["truncated"] == 1 and r.rejected["truncated"] >= 1
    assert "truncated at offset" in r.examples["truncated"][0]
    assert r.verified > 50
    strict = decode_captures([cap], None, keys=str(keys), jobs=1, strict=True)
    assert strict.rejected["truncated"] == 1 and strict.verified == 0
    assert "pcapng" in strict.examples["truncated"][0]


def test_garbage_and_empty_files(tmp_path, files):
    _, _, keys = files
    junk = tmp_path / "junk.pcapng"
    junk.write_bytes(b"not a capture at all")
    empty = tmp_path / "empty.pcapng"
    empty.write_bytes(b"")
    r = decode_captures([junk, empty], None, keys=str(keys), jobs=1)
    assert r.files == 2 and r.rejected["bad_block"] == 1 and r.packets == 0


def test_replayed_exchange_is_rejected(tmp_path, feeder, files):
    """An end-to-end request and its response sent again later (a replay, not
    a retry: other traffic in between) fail the sequence check."""
    from osgp.link.pcapng import PcapngWriter

    _, _, keys = files
    cap_mod, _ = _backend.load("capture")
    data = feeder.capture
    ts, off, ln, _, _ = cap_mod.walk(data)
    req_resp = response_packets(data, (2, 1))[0]
    j = int(np.flatnonzero(off == req_resp[0])[0])
    out = tmp_path / "replay.pcapng"
    with open(out, "wb") as f:
        w = PcapngWriter(f)
        for i in range(len(ts)):
            w.write(bytes(data[off[i] : off[i] + ln[i]]), int(ts[i]))
        # the request just before the chosen response, then the response, once more
        last = int(ts[-1])
        for i in (j - 1, j):
            w.write(bytes(data[off[i] : off[i] + ln[i]]), last + 10**9 * (i - j + 2))
    r = decode_captures([out], None, keys=str(keys), jobs=1)
    assert r.rejected["replay"] == 1, r.as_dict()


# ---- scale: processes and Dask give the same rows ----------------------------------------------
def table_rows(out):
    return {
        name: Counter(tuple(sorted((k, str(v)) for k, v in row.items())) for row in rows(out, name))
        for name in ("images", "registers", "load_profile", "events")
    }


def test_process_pool_and_dask_write_the_same_rows(tmp_path, feeder, files):
    _, cap, keys = files
    second = tmp_path / "second.pcapng.gz"
    import gzip

    other = build(2, seed=9)
    second.write_bytes(gzip.compress(other.capture))
    allkeys = tmp_path / "k.json"
    k = json.loads(keys.read_text())
    assert all(k[f"{s}/{n}"] == v.hex() for (s, n), v in other.keys.items())
    allkeys.write_text(json.dumps(k))
    one = decode_captures([cap, second], str(tmp_path / "one"), keys=str(allkeys), jobs=1)
    two = decode_captures([cap, second], str(tmp_path / "two"), keys=str(allkeys), jobs=2)
    wall = {"seconds": 0, "cpu_seconds": 0, "worker_cpu": {}}
    assert one.as_dict() | wall == two.as_dict() | wall
    # jobs=1 decodes in this process, jobs=2 in worker processes only
    assert list(one.worker_cpu) == [str(os.getpid())]
    assert two.worker_cpu and str(os.getpid()) not in two.worker_cpu
    want = table_rows(tmp_path / "one")
    assert want == table_rows(tmp_path / "two")
    pytest.importorskip("dask.distributed")
    dk = decode_captures([cap, second], str(tmp_path / "dask"), keys=str(allkeys), dask="local")
    assert dk.verified == one.verified and table_rows(tmp_path / "dask") == want
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        tcp = decode_captures(
            [cap, second], str(tmp_path / "tcp"), keys=str(allkeys), dask=cluster.scheduler_address
        )
    assert tcp.verified == one.verified and table_rows(tmp_path / "tcp") == want


def test_partition_by_meter(tmp_path, files):
    _, cap, keys = files
    decode_captures([cap], str(tmp_path / "o"), keys=str(keys), jobs=1, partition=("day", "meter"))
    parts = {p.name for p in (tmp_path / "o" / "images").glob("day=*/meter=*")}
    assert parts == {"meter=2.1", "meter=2.2", "meter=2.3", "meter=2.4"}
    with pytest.raises(ConfigurationError):
        decode_captures([cap], None, partition=("week",))


# ---- command line and key files ----------------------------------------------------------------
def test_cli_decode_prints_the_summary(files, decoded, tmp_path, capsys):
    _, cap, keys = files
    report, _ = decoded
    assert (
        main(["decode", str(cap), "--keys", str(keys), "--out", str(tmp_path / "o"), "--jobs", "1"])
        == 0
    )
    text = capsys.readouterr().out
    assert "verified" in text and "frames/s" in text
    assert f"rejected {sum(report.rejected.values())}" in text
    for reason, n in report.rejected.items():
        assert (f"  {reason} {n}\n" in text) == (n > 0)
    assert main(["decode", str(cap), "--keys", str(tmp_path / "missing.json")]) == 1
    assert main(["decode", "--inspect", str(cap)]) == 0
    text = capsys.readouterr().out
    assert "format pcapng" in text and "'ok': " in text


def test_key_files(tmp_path):
    j = tmp_path / "k.json"
    j.write_text(json.dumps({"2/1": "31" * 12, "04a1b2c3d4e5": "32" * 12}))
    k = KeyFile(j)
    from osgp.batch import Device

    assert k.key_for(Device(2, 1)) == b"\x31" * 12
    assert k.key_for(Device(0, 0, bytes.fromhex("04a1b2c3d4e5"))) == b"\x32" * 12
    assert k.key_for(Device(2, 2)) is None
    bad = tmp_path / "bad.csv"
    bad.write_text("who,what\n1,2\n")
    with pytest.raises(ConfigurationError):
        KeyFile(bad)
    with pytest.raises(ConfigurationError):
        StaticKeys({"300/1": "00"})


def test_key_order_with_and_without_the_composite_sort(monkeypatch):
    """Pairing orders frames by (key, index): the composite integer sort and
    the lexsort it falls back to for indices past 2**29 agree with a stable
    argsort of the keys."""
    from osgp.batch import pipeline

    rng = np.random.default_rng(3)
    key = rng.integers(0, 1 << 34, 40)[rng.integers(0, 5, 500)]
    idx = np.flatnonzero(rng.random(500) < 0.7)
    want = idx[np.argsort(key[idx], kind="stable")]
    for bits in (29, 4):  # 4: every index "too large", the fallback
        monkeypatch.setattr(pipeline, "_IDX_BITS", bits)
        assert (pipeline._sorted_by_key(key, idx) == want).all()
        assert (idx[pipeline._order_by_key(key, idx)] == want).all()
