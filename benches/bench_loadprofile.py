"""Load-profile decoding benchmarks, as ratios within one run (docs/conventions.md §12).

Groups:
  lp-archive : 2000-block archive (96 x 4-channel INT32 intervals per block) into
               preallocated arrays, vs a memcpy of the same bytes and vs a numpy
               structured-dtype conversion producing the same arrays.
               *_int32: the same decode into an int32 values array (caller's choice,
               INT_FMT_CDE 32), i.e. about 1.6x the input bytes written instead of 2.4x.
               The 2000-block case is bound by the decoder's stores (input and
               outputs stay in the L3, where the memcpy runs at cache speed; the
               AVX2 interval loop is ~17 instructions and stalls on its output
               stores); the 20000-block case is memory bound.  The per-call fixed
               cost is ~1 us (one-block call), not a factor.
  lp-archive-37MB : the same at 20000 blocks (88 MB of int64 output): above
               OSGP_LP_STREAM_MIN (csrc/osgp_lp.c) the values and times columns go
               out with streaming stores.  Bytes moved per 19-byte interval record:
               memcpy 19 read + 19 written (+19 read for ownership with normal
               stores); decode 19 read + 46 written (int64; 30 with int32), of which
               the 40 (24) bytes of values and times stream and the 6 bytes of
               status/flags/valid are read for ownership: 19+46+6 = 71 B (55 B)
               against memcpy's 38-57 B, i.e. a bound of 0.54-0.80x memcpy for int64
               and 0.69-1.04x for int32 at equal bandwidth.
  lp-month   : one meter, 30 blocks, full osgp.loadprofile.decode() from table bytes
               vs the same decode written with numpy.
  lp-public  : 3000 blocks (288,000 rows x 4 channels) through the public
               osgp.loadprofile.decode() (fresh arrays of the valid rows: timestamps,
               values, status, flags; scaled and block_seq are computed on first
               access) vs its kernel (lp_decode, dense, into preallocated arrays) and
               vs the same outputs with vectorised numpy (structured-dtype view,
               vectorised calendar arithmetic, boolean-mask compaction).
  lp-day-meters : one day (one block of 96 intervals) of 100,000 meters
               (OSGP_BENCH_METERS=1000000 for a million), each meter's image its
               own buffer, through osgp.loadprofile.decode_images (each meter's
               BT63 too, int32 values) into an Arrow table, vs vectorised numpy
               over the same images already joined into one buffer (its best
               case: no BT63, the join not timed).
  lp-day-meters-pipeline : 5,000 such meters through osgp.batch's image
               decoding (one decode_images call per configuration) into its load_profile
               table; extra_info us_per_meter.
Run: PYTHONPATH=src python -m pytest benches/bench_loadprofile.py --benchmark-only
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from osgp import _backend, loadprofile, tables

NINT, NCH = 96, 4
EXT = NCH // 2 + 1
INT_SIZE = EXT + 4 * NCH
HDR = 5 + (NINT + 7) // 8
BLOCK = HDR + NINT * INT_SIZE


def make_blocks(n, seed=1):
    rng = np.random.default_rng(seed)
    dt = block_dtype()
    arr = np.zeros(n, dt)
    for b in range(n):
        day = b % 28 + 1
        arr["end"][b] = (24, 1, day, 0, 0)
    arr["simple"] = 0xFF
    arr["ints"]["ext"] = rng.integers(0, 256, size=(n, NINT, EXT), dtype=np.uint8)
    arr["ints"]["v"] = rng.integers(-(2**31), 2**31 - 1, size=(n, NINT, NCH), dtype=np.int32)
    return arr.tobytes()


def block_dtype():
    return np.dtype(
        [
            ("end", "u1", 5),
            ("simple", "u1", (NINT + 7) // 8),
            ("ints", [("ext", "u1", EXT), ("v", "<i4", NCH)], NINT),
        ]
    )


GEOM = loadprofile.Geometry(BLOCK, NINT, NCH, 0, 2, 5, HDR, INT_SIZE, 0, EXT, 32, 8, 900, 0)


def numpy_decode(data, nblocks, vdtype=np.int64):
    """The same dense outputs as the native decoder, with numpy only."""
    a = data if isinstance(data, np.ndarray) else np.frombuffer(data, block_dtype(), count=nblocks)
    values = a["ints"]["v"].astype(vdtype).reshape(-1, NCH)
    ext = a["ints"]["ext"]
    status = np.empty((nblocks, NINT, NCH), np.uint8)
    status[..., 0] = ext[..., 0] & 15
    for c in range(1, NCH):
        byte = ext[..., (c + 1) >> 1]
        status[..., c] = byte >> 4 if c & 1 else byte & 15
    flags = (ext[..., 0] >> 4).reshape(-1)
    valid = np.unpackbits(a["simple"], axis=1, bitorder="little")[:, :NINT].reshape(-1)
    e = a["end"].astype(np.int64)
    end = days_from_civil(2000 + e[:, 0], e[:, 1], e[:, 2]) * 86400 + e[:, 3] * 3600 + e[:, 4] * 60
    times = (end[:, None] - (NINT - 1 - np.arange(NINT)) * 900).reshape(-1)
    return values, status.reshape(-1, NCH), flags, times, valid


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of proleptic Gregorian dates, vectorised (the
    era/day-of-era arithmetic; arrays of years, months, days)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def kernels():
    out = [pytest.param(_backend.reference("tables"), id="twin")]
    nat = _backend.native_module("tables")
    if nat is not None:
        out.insert(0, pytest.param(nat, id="native"))
    return out


ARCHIVE_BLOCKS = 2000  # 3.7 MB: fits the L3 cache of most servers
BIG_BLOCKS = 20000  # 37 MB: memory bound


@pytest.fixture(scope="module")
def archive():
    return make_blocks(ARCHIVE_BLOCKS)


@pytest.fixture(scope="module")
def big_archive():
    return make_blocks(BIG_BLOCKS, seed=3)


def _prealloc(nblocks):
    rows = nblocks * NINT
    return (
        np.empty((rows, NCH), np.int64),
        np.empty((rows, NCH), np.uint8),
        np.empty(rows, np.uint8),
        np.empty(rows, np.int64),
        np.empty(rows, np.uint8),
    )


@pytest.mark.benchmark(group="lp-archive-37MB")
def test_big_archive_native(benchmark, big_archive):
    mod = _backend.native_module("tables")
    if mod is None:
        pytest.skip("native extensions not built")
    out = _prealloc(BIG_BLOCKS)
    blocks = np.arange(BIG_BLOCKS, dtype=np.uint32)
    benchmark(mod.lp_decode, tuple(GEOM), big_archive, blocks, None, *out)
    _check_big(out, big_archive)


@pytest.mark.benchmark(group="lp-archive-37MB")
def test_big_archive_native_int32(benchmark, big_archive):
    """Caller-chosen int32 values (INT_FMT_CDE 32: every value fits)."""
    mod = _backend.native_module("tables")
    if mod is None:
        pytest.skip("native extensions not built")
    out = (np.empty((BIG_BLOCKS * NINT, NCH), np.int32),) + _prealloc(BIG_BLOCKS)[1:]
    blocks = np.arange(BIG_BLOCKS, dtype=np.uint32)
    benchmark(mod.lp_decode, tuple(GEOM), big_archive, blocks, None, *out)
    _check_big(out, big_archive)


def _check_big(out, data):
    """The streamed outputs equal the numpy decode."""
    for a, b in zip(out, numpy_decode(data, BIG_BLOCKS)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.benchmark(group="lp-archive-37MB")
def test_big_archive_memcpy(benchmark, big_archive):
    src = np.frombuffer(big_archive, np.uint8)
    dst = np.empty_like(src)
    benchmark(np.copyto, dst, src)


@pytest.mark.benchmark(group="lp-archive-37MB")
def test_big_archive_numpy_structured(benchmark, big_archive):
    benchmark.pedantic(numpy_decode, (big_archive, BIG_BLOCKS), rounds=5)


@pytest.mark.benchmark(group="lp-archive")
def test_archive_native(benchmark, archive):
    mod = _backend.native_module("tables")
    if mod is None:
        pytest.skip("native extensions not built")
    rows = ARCHIVE_BLOCKS * NINT
    out = (
        np.empty((rows, NCH), np.int64),
        np.empty((rows, NCH), np.uint8),
        np.empty(rows, np.uint8),
        np.empty(rows, np.int64),
        np.empty(rows, np.uint8),
    )
    blocks = np.arange(ARCHIVE_BLOCKS, dtype=np.uint32)
    g = tuple(GEOM)
    benchmark(mod.lp_decode, g, archive, blocks, None, *out)
    ref = numpy_decode(archive, ARCHIVE_BLOCKS)
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.benchmark(group="lp-archive")
def test_archive_native_int32(benchmark, archive):
    """Caller-chosen int32 values (INT_FMT_CDE 32: every value fits)."""
    mod = _backend.native_module("tables")
    if mod is None:
        pytest.skip("native extensions not built")
    out = (np.empty((ARCHIVE_BLOCKS * NINT, NCH), np.int32),) + _prealloc(ARCHIVE_BLOCKS)[1:]
    blocks = np.arange(ARCHIVE_BLOCKS, dtype=np.uint32)
    benchmark(mod.lp_decode, tuple(GEOM), archive, blocks, None, *out)
    ref = numpy_decode(archive, ARCHIVE_BLOCKS)
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a, b)


@pytest.mark.benchmark(group="lp-archive")
def test_archive_memcpy(benchmark, archive):
    src = np.frombuffer(archive, np.uint8)
    dst = np.empty_like(src)
    benchmark(np.copyto, dst, src)


@pytest.mark.benchmark(group="lp-archive")
def test_archive_numpy_structured(benchmark, archive):
    benchmark(numpy_decode, archive, ARCHIVE_BLOCKS)


# ---- one meter, one month -------------------------------------------------------------------


def month_tables(nblocks=30, spare=10):
    bt61 = struct.pack("<IHB", 1 << 24, (1 << 10) | (1 << 11), 0x20) + struct.pack(
        "<HHBB", nblocks + spare, NINT, NCH, 15
    )
    bt62 = b"".join(bytes([0, c + 1, 0]) for c in range(NCH)) + bytes([32])
    bt63 = struct.pack("<BHHIHH", 0x24, nblocks, nblocks - 1, 100000, nblocks, NINT)
    bt64 = make_blocks(nblocks, seed=2) + bytes(BLOCK * spare)
    return bt61, bt62, bt63, bt64


def numpy_month(bt61, bt62, bt63, bt64):
    _mem, _flags, _f, nblks, nint, nch, mins = struct.unpack_from("<IHBHHBB", bt61)
    _f, nvalid, last, _seq, _unread, nvi = struct.unpack_from("<BHHIHH", bt63)
    order = (last - np.arange(nvalid - 1, -1, -1)) % nblks
    # np.take, not a[order] / x[mask]: numpy's fancy indexing of structured and 2-D
    # arrays is several times slower than take of the same rows
    a = np.take(np.frombuffer(bt64, block_dtype(), count=nblks), order)
    values, status, flags, times, valid = numpy_decode(a, nvalid)
    valid.reshape(nvalid, nint)[-1, nvi:] = 0  # BT63 NBR_VALID_INT of the newest block
    rows = np.flatnonzero(valid)
    return (
        times.take(rows).view("datetime64[s]"),
        values.take(rows, axis=0),
        status.take(rows, axis=0),
        flags.take(rows),
    )


@pytest.mark.benchmark(group="lp-month")
@pytest.mark.parametrize("mod", kernels())
def test_month_osgp(benchmark, mod, monkeypatch):
    monkeypatch.setattr(loadprofile, "_kernel", mod)
    monkeypatch.setattr(tables, "_kernel", mod)
    args = month_tables()
    lp = benchmark(loadprofile.decode, *args)
    t, v, s, f = numpy_month(*args)
    np.testing.assert_array_equal(lp.values, v)
    np.testing.assert_array_equal(lp.timestamps, t)


@pytest.mark.benchmark(group="lp-month")
def test_month_osgp_cold(benchmark):
    """As test_month_osgp[native] but with the configuration cache cleared each call
    (first read after a reconfiguration: BT00/BT61/BT62 decoded again)."""
    if _backend.native_module("tables") is None:
        pytest.skip("native extensions not built")
    args = month_tables()

    def cold():
        loadprofile._CONFIG_CACHE.clear()
        return loadprofile.decode(*args)

    benchmark(cold)


@pytest.mark.benchmark(group="lp-batch")
def test_batch_1000_meters(benchmark):
    """decode_many: 1000 meters x 30 blocks in one call (GIL released)."""
    if _backend.native_module("tables") is None:
        pytest.skip("native extensions not built")
    data = make_blocks(30, seed=4)
    blocks = [np.arange(30, dtype=np.uint32)] * 1000
    out = _prealloc(30 * 1000)
    benchmark(loadprofile.decode_many, GEOM, [data] * 1000, blocks, None, out=out)


@pytest.mark.benchmark(group="lp-batch")
def test_batch_1000_meters_numpy(benchmark):
    data = make_blocks(30, seed=4)
    benchmark.pedantic(lambda: [numpy_decode(data, 30) for _ in range(1000)], rounds=3)


@pytest.mark.benchmark(group="lp-month")
def test_month_numpy(benchmark):
    benchmark(numpy_month, *month_tables())


# ---- the public call against its kernel (3000 blocks, 288,000 rows) ---------------------------

PUBLIC_BLOCKS = 3000


@pytest.fixture(scope="module")
def public_tables():
    return month_tables(PUBLIC_BLOCKS)


@pytest.mark.benchmark(group="lp-public")
def test_public_kernel(benchmark, public_tables):
    """The kernel alone: dense decode of the same blocks into preallocated arrays."""
    mod = _backend.native_module("tables")
    if mod is None:
        pytest.skip("native extensions not built")
    out = _prealloc(PUBLIC_BLOCKS)
    blocks = np.arange(PUBLIC_BLOCKS, dtype=np.uint32)
    benchmark(mod.lp_decode, tuple(GEOM), public_tables[3], blocks, None, *out)


@pytest.mark.benchmark(group="lp-public")
def test_public_osgp(benchmark, public_tables):
    if _backend.native_module("tables") is None:
        pytest.skip("native extensions not built")
    lp = benchmark(loadprofile.decode, *public_tables)
    t, v, s, f = numpy_month(*public_tables)
    np.testing.assert_array_equal(lp.timestamps, t)
    np.testing.assert_array_equal(lp.values, v)
    np.testing.assert_array_equal(lp.status, s)
    np.testing.assert_array_equal(lp.flags, f)


@pytest.mark.benchmark(group="lp-public")
def test_public_numpy(benchmark, public_tables):
    benchmark(numpy_month, *public_tables)


# ---- one day of a million meters into Arrow (issue #12) ---------------------------------------

# one BT64 block of 96 intervals (a day at 15 min) per meter; 100,000 meters here,
# OSGP_BENCH_METERS=1000000 for the full million (2 GB of images, 5 GB of output,
# some 15 GB at peak)
DAY_METERS = int(os.environ.get("OSGP_BENCH_METERS", "100000"))


@pytest.fixture(scope="module")
def day_images():
    """DAY_METERS images of one block each (the same layout as make_blocks,
    built vectorised), as separate buffers the way they come off the wire."""
    rng = np.random.default_rng(5)
    arr = np.zeros(DAY_METERS, block_dtype())
    arr["end"] = (26, 1, 2, 0, 0)
    arr["simple"] = 0xFF
    arr["ints"]["ext"] = rng.integers(0, 256, size=(DAY_METERS, NINT, EXT), dtype=np.uint8)
    arr["ints"]["v"] = rng.integers(0, 2**31 - 1, size=(DAY_METERS, NINT, NCH), dtype=np.int32)
    buf = memoryview(arr.tobytes())
    del arr
    # Untimed: touch as much memory as one round's outputs once.  On this VM
    # the host backs guest memory on its first use (some 8 s per GB, then
    # 0.2-0.4 s per GB for every later process), a one-off cost of the machine
    # that would otherwise fall on whichever arm runs first.
    np.ones(DAY_METERS * NINT * 34, np.uint8)
    return [buf[i * BLOCK : (i + 1) * BLOCK] for i in range(DAY_METERS)]


def _day_table(meter, times, values, status, flags):
    """One row per meter and interval; the channels' values and statuses as
    fixed-size lists over the decoder's row-major arrays (no copy)."""
    import pyarrow as pa

    return pa.table(
        {
            "meter": pa.array(meter),
            "time": pa.array(times, pa.timestamp("s", tz="UTC")),
            "flags": pa.array(flags),
            "values": pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), NCH),
            "status": pa.FixedSizeListArray.from_arrays(pa.array(status.reshape(-1)), NCH),
        }
    )


DAY_TABLES = month_tables(1, spare=0)[:3]  # BT61, BT62 and a BT63 of one full block


def day_osgp(images):
    """osgp.loadprofile.decode_images from the table images (every meter's BT63
    decoded as columns, one kernel call without the GIL, int32 values) into an
    Arrow table."""
    bt61, bt62, bt63 = DAY_TABLES
    p = loadprofile.decode_images(bt61, bt62, [bt63] * len(images), images, int32=True)
    meter = np.repeat(np.arange(len(images), dtype=np.uint32), np.diff(p.offsets))
    return _day_table(meter, p.timestamps.view(np.int64), p.values, p.status, p.flags), None


def day_numpy(joined):
    """The same table with vectorised numpy, given the images already joined
    into one buffer and every meter's block known to be full (its best case:
    neither the join nor BT63 is timed)."""
    n = len(joined) // BLOCK
    a = np.frombuffer(joined, block_dtype(), count=n)
    values, status, flags, times, valid = numpy_decode(a, n, np.int32)
    meter = np.repeat(np.arange(n, dtype=np.uint32), NINT)
    return _day_table(meter, times, values, status, flags), valid


@pytest.mark.benchmark(group="lp-day-meters")
@pytest.mark.parametrize("impl", ["osgp", "numpy"])
def test_day_meters_to_arrow(benchmark, day_images, impl):
    pytest.importorskip("pyarrow")
    if impl == "osgp" and _backend.native_module("tables") is None:
        pytest.skip("native extensions not built")
    joined = b"".join(day_images)
    fn, arg = (day_osgp, day_images) if impl == "osgp" else (day_numpy, joined)
    # A million meters' table is some 3 GB.  Each round's table is dropped
    # before the next round starts, so a round reuses the memory the last one
    # freed, as a long-running decoder does, instead of holding two tables and
    # paying this VM's first use of fresh guest memory (some 8 s per GB) twice.
    out: list = []

    def drop_previous():
        out.clear()

    benchmark.pedantic(lambda: out.append(fn(arg)), setup=drop_previous, rounds=3, iterations=1)
    table, valid = out[0]
    benchmark.extra_info.update(meters=DAY_METERS, rows=table.num_rows)
    assert table.num_rows == DAY_METERS * NINT
    if impl == "numpy":
        assert valid.all()
    else:
        n = min(DAY_METERS, 100_000) * NINT  # the first 100,000 meters' rows
        ref, _ = day_numpy(joined[: n // NINT * BLOCK])
        assert table.slice(0, n).equals(ref)


PIPELINE_METERS = 5000


@pytest.mark.benchmark(group="lp-day-meters-pipeline")
def test_day_meters_batch_pipeline(benchmark, day_images):
    """The same images through osgp.batch's image decoding (BT61-BT64 images
    of each meter, the BT64s decoded by one loadprofile.decode_images) into its
    load_profile Arrow table (one row per interval and channel), at
    PIPELINE_METERS meters: extra_info gives the time per meter."""
    pytest.importorskip("pyarrow")
    from osgp.batch import Report, to_arrow
    from osgp.batch.keys import Device
    from osgp.batch.pipeline import Image, decode_images

    bt61, bt62, bt63, _ = month_tables(1, spare=0)
    images = []
    for i, data in enumerate(day_images[:PIPELINE_METERS]):
        dev = Device(1 + i // 250, 1 + i % 250)
        for table, img in ((61, bt61), (62, bt62), (63, bt63), (64, bytes(data))):
            images.append(Image(dev, table, 0, img))

    def run():
        report = Report()
        return to_arrow(decode_images(images, report))["load_profile"], report

    table, report = benchmark.pedantic(run, rounds=3, iterations=1)
    assert not report.rejected and table.num_rows == PIPELINE_METERS * NINT * NCH
    if benchmark.stats is not None:  # None under --benchmark-disable
        us = benchmark.stats.stats.min / PIPELINE_METERS * 1e6
        benchmark.extra_info.update(meters=PIPELINE_METERS, us_per_meter=round(us))
