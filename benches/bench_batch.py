"""Batch decoding benchmarks (issue #12).

* batch-walk: the pcapng block walker over a capture of simulated power-line
  traffic (the simulator's packets repeated to about 100,000), native against
  its twin, against dpkt's reader over the same file (``dpkt.pcapng.Reader``,
  every (timestamp, packet)) and against a memcpy-class floor (a numpy copy
  of the file).  extra_info: frames and MB per call.
* batch-extract: walk + CN/IP extraction (what ``read_frames`` does).
* batch-pipeline: a capture to rows end to end (``decode_file`` without the
  Parquet write, and with it), one process, against two honest floors over
  the same file: dpkt reading every packet (no decoding at all) and pyarrow
  writing the finished tables (``pyarrow.parquet.write_table``, one file per
  table, and ``pyarrow.dataset.write_dataset`` with our day partitioning:
  the same output, nothing decoded).  extra_info: frames per CPU second (``Report.cpu_seconds``: per
  core, however loaded the machine is).
* batch-scaling: sixteen files on one process against two worker processes
  (``decode_captures(jobs=1 | 2)``: each worker reads its own files and
  writes its own partitions, and returns a report of a few hundred bytes);
  extra_info: CPU seconds in all and per worker, the load average and the CPU
  pressure of the machine (``/proc/pressure/cpu``) over the run, since a
  second process only helps when a second core is free.
* batch-write: the writer alone (``run.write_tables``, day partitions)
  against ``pyarrow.dataset.write_dataset`` writing the same finished
  table (2 M load-profile rows over four days) with the same partitioning.

    python -m pytest benches/bench_batch.py --benchmark-only
"""

from __future__ import annotations

import io
import json
import os
import struct

import numpy as np
import pytest

from osgp import _backend
from osgp.batch import archive, decode_captures, decode_file
from tests.batch_feeder import build

dpkt = pytest.importorskip("dpkt")
pytest.importorskip("pyarrow")

NATIVE = _backend.native_module("capture")
TWIN = _backend.reference("capture")
PACKETS = 100_000
# captures of the scaling runs (copies of one feeder's); more under OSGP_BENCH_FILES
FILES = int(os.environ.get("OSGP_BENCH_FILES", "16"))


@pytest.fixture(scope="module")
def feeder():
    # eight meters (the far ones behind repeaters), three rounds: ~35,000 frames
    return build(8, seed=7, rounds=(1.5 * 86400, 1.5 * 86400 + 40000, 1.5 * 86400 + 80000))


@pytest.fixture(scope="module")
def big(feeder):
    """The feeder's capture with its packet blocks repeated to ~PACKETS."""
    data = feeder.capture
    # SHB and IDB, then the EPBs (draft-ietf-opsawg-pcapng 3.1: length at +4)
    head = 0
    for _ in range(2):
        head += struct.unpack_from("<I", data, head + 4)[0]
    n = NATIVE.walk(data)[4]["packets"] if NATIVE else TWIN.walk(data)[4]["packets"]
    return data[:head] + data[head:] * (PACKETS // n + 1)


def _info(benchmark, data, frames):
    benchmark.extra_info.update(frames=int(frames), mb=round(len(data) / 1e6, 2))


@pytest.mark.benchmark(group="batch-walk")
@pytest.mark.parametrize("impl", ["native", "twin"])
def test_walk(benchmark, big, impl):
    mod = NATIVE if impl == "native" else TWIN
    if mod is None:
        pytest.skip("native kernels not built")
    if impl == "twin":
        benchmark.extra_info["note"] = "pure-Python twin"
    r = benchmark(mod.walk, big)
    _info(benchmark, big, r[4]["packets"])


@pytest.mark.benchmark(group="batch-walk")
def test_walk_dpkt(benchmark, big):
    def run():
        return sum(1 for _ in dpkt.pcapng.Reader(io.BytesIO(big)))

    _info(benchmark, big, benchmark(run))


@pytest.mark.benchmark(group="batch-walk")
def test_walk_memcpy_floor(benchmark, big):
    src = np.frombuffer(big, dtype=np.uint8)
    benchmark(src.copy)
    _info(benchmark, big, 0)


@pytest.mark.benchmark(group="batch-extract")
def test_walk_and_extract(benchmark, big):
    frames, info = benchmark(archive.read_frames, big)
    _info(benchmark, big, info["packets"])


@pytest.fixture(scope="module")
def files(tmp_path_factory, feeder):
    d = tmp_path_factory.mktemp("bench-batch")
    paths = []
    for i in range(FILES):
        p = d / f"c{i}.pcapng"
        p.write_bytes(feeder.capture)
        paths.append(str(p))
    keys = d / "keys.json"
    keys.write_text(json.dumps({f"{s}/{n}": k.hex() for (s, n), k in feeder.keys.items()}))
    return d, paths, str(keys)


@pytest.mark.benchmark(group="batch-pipeline")
@pytest.mark.parametrize("write", [False, True], ids=["rows", "parquet"])
def test_pipeline_one_file(benchmark, files, feeder, write):
    d, paths, keys = files
    cpu = []

    def run():
        r = decode_file(paths[0], keys, str(d / "out") if write else None, "b")
        cpu.append(r["cpu_seconds"])
        return r

    r = benchmark(run)
    _info(benchmark, feeder.capture, r["packets"])
    # per core: frames per CPU second of the task, best round (as the wall min)
    benchmark.extra_info["frames_per_cpu_s"] = round(r["packets"] / min(cpu))


@pytest.mark.benchmark(group="batch-pipeline")
def test_pipeline_floor_dpkt_read(benchmark, files, feeder):
    """dpkt reading every (timestamp, packet) of the file: no decoding."""
    _, paths, _ = files

    def run():
        with open(paths[0], "rb") as f:
            return sum(1 for _ in dpkt.pcapng.Reader(f))

    _info(benchmark, feeder.capture, benchmark(run))


@pytest.mark.benchmark(group="batch-pipeline")
def test_pipeline_floor_pyarrow_write(benchmark, files, feeder):
    """pyarrow writing the same finished tables (one Parquet file each)."""
    import pyarrow.parquet as pq

    from osgp.batch import KeyFile, Report, decode_frames, read_frames, to_arrow

    d, paths, keys = files
    frames, info = read_frames(archive.open_capture(paths[0]))
    tables = to_arrow(decode_frames(frames, KeyFile(keys), Report()))
    out = d / "floor"
    out.mkdir(exist_ok=True)

    def run():
        for name, t in tables.items():
            pq.write_table(t, str(out / f"{name}.parquet"))

    benchmark(run)
    _info(benchmark, feeder.capture, info["packets"])


@pytest.mark.benchmark(group="batch-pipeline")
def test_pipeline_floor_pyarrow_dataset(benchmark, files, feeder):
    """pyarrow.dataset writing the same tables partitioned by day as ours are
    (hive ``day=``, one file per day): the same output, nothing decoded."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from osgp.batch import KeyFile, Report, decode_frames, read_frames, to_arrow

    d, paths, keys = files
    frames, info = read_frames(archive.open_capture(paths[0]))
    tables = to_arrow(decode_frames(frames, KeyFile(keys), Report()))
    days = {
        n: t.append_column("day", pc.strftime(t["time"], format="%Y-%m-%d"))
        for n, t in tables.items()
    }

    def run():
        for name, t in days.items():
            ds.write_dataset(
                t,
                str(d / "floor-ds" / name),
                format="parquet",
                partitioning=["day"],
                partitioning_flavor="hive",
                existing_data_behavior="overwrite_or_ignore",
            )

    benchmark(run)
    _info(benchmark, feeder.capture, info["packets"])


@pytest.mark.benchmark(group="batch-scaling")
@pytest.mark.parametrize("jobs", [1, 2])
def test_pipeline_processes(benchmark, files, feeder, jobs):
    d, paths, keys = files
    before = _pressure()
    r = benchmark.pedantic(
        decode_captures,
        args=(paths, str(d / f"j{jobs}")),
        kwargs={"keys": keys, "jobs": jobs},
        rounds=3,
        iterations=1,
    )
    _info(benchmark, feeder.capture * len(paths), r.packets)
    benchmark.extra_info["cpu_s_per_run"] = round(r.cpu_seconds, 3)
    # CPU seconds of each worker process in the last run (its tasks' own process_time)
    benchmark.extra_info["cpu_s_per_worker"] = sorted(round(v, 3) for v in r.worker_cpu.values())
    benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]
    after = _pressure()
    if before is not None and after is not None:
        # share of the run's wall time in which some runnable task waited for a CPU
        benchmark.extra_info["cpu_pressure"] = round(
            (after[0] - before[0]) / 1e6 / max(after[1] - before[1], 1e-9), 2
        )


def _pressure():
    """(total µs some task waited for a CPU, now in s), or None without PSI."""
    import time

    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()
    except OSError:
        return None
    return int(some[-1].partition("=")[2]), time.monotonic()


# ---- the writer alone: a finished table to the day-partitioned dataset ------------------------

WRITE_ROWS = 2_000_000  # load-profile rows over four days


@pytest.fixture(scope="module")
def lp_table():
    import pyarrow as pa

    from osgp.batch import schemas

    rng = np.random.default_rng(3)
    n = WRITE_ROWS
    t0 = 1_767_225_600  # 2026-01-01T00:00:00Z
    # meters' readings in capture order: the days interleave, as files of several days do
    time = t0 + rng.integers(0, 4 * 86400 // 900, n) * 900
    cols = {
        "device": pa.array([f"{1 + i // 250}.{1 + i % 250}" for i in range(5000)]).take(
            pa.array(rng.integers(0, 5000, n))
        ),
        "time": pa.array(time, pa.timestamp("s", tz="UTC")),
        "channel": pa.array(rng.integers(0, 4, n).astype(np.uint8)),
        "value": pa.array(rng.integers(0, 2**31, n)),
        "scaled": pa.array(rng.random(n)),
        "status": pa.array(rng.integers(0, 16, n).astype(np.uint8)),
        "flags": pa.array(rng.integers(0, 16, n).astype(np.uint8)),
    }
    return pa.table(cols, schema=schemas()["load_profile"])


@pytest.mark.benchmark(group="batch-write")
def test_write_dataset_osgp(benchmark, tmp_path, lp_table):
    """osgp.batch's writer (run.write_tables): hive day= partitions, one file each."""
    from osgp.batch.run import write_tables

    rows = benchmark.pedantic(
        write_tables, ({"load_profile": lp_table}, str(tmp_path), "b"), rounds=5, iterations=1
    )
    assert rows == {"load_profile": WRITE_ROWS}
    benchmark.extra_info["rows"] = WRITE_ROWS


@pytest.mark.benchmark(group="batch-write")
def test_write_dataset_pyarrow(benchmark, tmp_path, lp_table):
    """pyarrow.dataset.write_dataset of the same table, the same partitioning
    (its best case: the day column is computed before timing)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    t = lp_table.append_column("day", pc.strftime(lp_table["time"], format="%Y-%m-%d"))

    def run():
        ds.write_dataset(
            t,
            str(tmp_path / "load_profile"),
            format="parquet",
            partitioning=["day"],
            partitioning_flavor="hive",
            existing_data_behavior="overwrite_or_ignore",
        )

    benchmark.pedantic(run, rounds=5, iterations=1)
    benchmark.extra_info["rows"] = WRITE_ROWS
