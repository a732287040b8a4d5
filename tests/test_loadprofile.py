"""Load profile (BT61-BT64, ET21) against archives built in this file from the
documented layout ([OPT p.31-39], docs/protocol.md §7.7) with struct, and expected
rows computed here with datetime arithmetic (never by the decoder)."""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from osgp import loadprofile, tables
from osgp.errors import (
    ConfigurationError,
    DecodeError,
    MalformedError,
    OSGPError,
    TruncatedError,
)

UTC = dt.timezone.utc
NBLKS, NINT, NCH, MINUTES = 4, 6, 3, 15
T0 = dt.datetime(2024, 3, 30, 22, 30, tzinfo=UTC)  # start of the oldest block


def bt00_bytes(tm_format=2, ni=0x88):
    """BT00 with the NES values of [OPT p.48-49]: STD_TBLS_USED marks 0, 1, 3, 61-64."""
    std = bytearray(10)
    for t in (0, 1, 3, 52, 61, 62, 63, 64):
        std[t // 8] |= 1 << (t % 8)
    head = (
        bytes([0x02, tm_format | (1 << 3), ni])
        + b"NES "
        + bytes([2, 0, 255, 12, 1, 0, 10, 13, 2, 12, 4, 2])
    )
    return head + bytes(std) + bytes(13) + bytes(2) + bytes(12) + bytes(std) + bytes(13)


def bt61_bytes(nblks=NBLKS, nint=NINT, nch=NCH, minutes=MINUTES, scalars=True):
    # LP_FLAGS: b6 scalar/divisor set 1, b10 extended status, b11 simple status [OPT p.32]
    flags = (1 << 10) | (1 << 11) | ((1 << 6) if scalars else 0)
    return struct.pack("<IHB", 10000, flags, 0x20) + struct.pack("<HHBB", nblks, nint, nch, minutes)


SCAL, DIVS = (1, 10, 3), (1, 100, 2)


def bt62_bytes(nch=NCH, code=32):
    sel = b"".join(bytes([0, 1 + c, 0]) for c in range(nch))
    return (
        sel
        + bytes([code])
        + struct.pack(f"<{nch}H", *SCAL[:nch])
        + struct.pack(f"<{nch}H", *DIVS[:nch])
    )


def bt63_bytes(nvalid, last, seq, unread, nvalid_int, block_order=0):
    flags = block_order | (1 << 2) | (1 << 5)  # circular list, active [OPT p.34-35]
    return struct.pack("<BHHIHH", flags, nvalid, last, seq, unread, nvalid_int)


def stime(t):  # STIME_DATE, TM_FORMAT 2: YY MM DD hh mm (docs/protocol.md §3.4)
    return bytes([t.year - 2000, t.month, t.day, t.hour, t.minute])


def raw_value(c, i, ch):
    v = c * 1000 + i * 10 + ch
    return -v if ch == 2 and i % 2 else v


def build_archive(block_order=0):
    """4 blocks, chronological c = 0..3 stored at indices 2, 3, 0, 1 (wrapped);
    c = 3 is the newest, partial (4 of 6 intervals).  Returns (bt63, bt64, expected rows)."""
    size = 5 + 1 + NINT * (NCH // 2 + 1 + 4 * NCH)
    store = [2, 3, 0, 1] if block_order == 0 else [1, 0, 3, 2]
    data = bytearray(size * NBLKS)
    expected = []
    for c in range(4):
        nrec = NINT if c < 3 else 4
        end = T0 + dt.timedelta(minutes=MINUTES * (c * NINT + nrec))
        blk = bytearray(stime(end))
        simple = 0
        for i in range(NINT):
            recorded = i < nrec and not (c == 1 and i == 2)  # block 1 misses interval 2
            if recorded or (c == 3 and i == 5):  # bit beyond NBR_VALID_INT
                simple |= 1 << i
        blk.append(simple)
        for i in range(NINT):
            common = 0
            st = [0, 0, 0]
            if c == 0:
                common |= 1  # DST in effect
            if c == 2 and i == 5:
                common |= 4  # clock set forward
                st[1] = 2  # channel 1: partial interval
            if c == 1 and i == 4:
                common |= 2
                st = [5, 11, 15]
            ext = bytes([(common << 4) | st[0], (st[1] << 4) | st[2]])
            vals = [raw_value(c, i, ch) for ch in range(NCH)]
            blk += ext + struct.pack("<3i", *vals)
            if i < nrec and not (c == 1 and i == 2):
                t_end = end - dt.timedelta(minutes=MINUTES * (nrec - 1 - i))
                expected.append((t_end, vals, st, common, 41 - 3 + c))
        assert len(blk) == size
        data[store[c] * size : (store[c] + 1) * size] = blk
    last = store[3]
    bt63 = bt63_bytes(4, last, 41, 2, 4, block_order)
    return bt63, bytes(data), expected


@pytest.fixture
def archive():
    return build_archive()


def check(lp, expected):
    assert len(lp) == len(expected)
    want_t = np.array([int(e[0].timestamp()) for e in expected], dtype="datetime64[s]")
    np.testing.assert_array_equal(lp.timestamps, want_t)
    np.testing.assert_array_equal(lp.values, np.array([e[1] for e in expected], dtype=np.int64))
    np.testing.assert_array_equal(lp.status, np.array([e[2] for e in expected], dtype=np.uint8))
    np.testing.assert_array_equal(lp.flags, np.array([e[3] for e in expected], dtype=np.uint8))
    np.testing.assert_array_equal(lp.block_seq, np.array([e[4] for e in expected]))
    want_scaled = np.array([[v * SCAL[c] / DIVS[c] for c, v in enumerate(e[1])] for e in expected])
    np.testing.assert_allclose(lp.scaled, want_scaled)


def test_wraparound_partial_missing_clock_change(tables_backend, archive):
    bt63, bt64, expected = archive
    lp = loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64, bt00=bt00_bytes())
    check(lp, expected)
    assert lp.timestamps.dtype == np.dtype("datetime64[s]")
    # 3 full blocks with one missing interval + 4 of the partial block
    assert len(lp) == 3 * NINT - 1 + 4
    assert lp.meta["blocks"] == [2, 3, 0, 1]
    assert lp.sources == (1, 2, 3)


def test_descending_block_order(tables_backend):
    bt63, bt64, expected = build_archive(block_order=1)
    lp = loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64, bt00=bt00_bytes())
    check(lp, expected)


def test_unread_only(tables_backend, archive):
    bt63, bt64, expected = archive
    lp = loadprofile.decode(
        bt61_bytes(), bt62_bytes(), bt63, bt64, bt00=bt00_bytes(), unread_only=True
    )
    check(lp, [e for e in expected if e[4] >= 40])
    plan = loadprofile.read_plan(bt61_bytes(), bt63, bt62=bt62_bytes(), bt00=bt00_bytes())
    size = len(bt64) // NBLKS
    assert plan == [(0, size), (size, size)]


def test_defaults_without_bt00(tables_backend, archive):
    bt63, bt64, expected = archive
    check(loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64), expected)


def test_et21_geometry(tables_backend, archive):
    bt63, bt64, expected = archive
    size = len(bt64) // NBLKS
    # ET21 data-set record [OPT p.38]: block size @8, header @12, simple status @22,
    # interval 0 @24, interval size @25, channel 0 @26, channels @28, interval time @29
    rec = struct.pack(
        "<IIIHHHHHBBBBBBBB", 0, 0, size, 6, 4, 4, 1, 3, 5, 1, 6, 14, 2, 0, NCH, MINUTES
    ) + bytes(8)
    lp = loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64, bt00=bt00_bytes(), et21=rec)
    check(lp, expected)
    bad = rec[:28] + bytes([NCH + 1]) + rec[29:]
    with pytest.raises(MalformedError) as ei:
        loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64, bt00=bt00_bytes(), et21=bad)
    assert ei.value.layer == "table ET21" and ei.value.offset == 28
    bad = rec[:25] + bytes([10]) + rec[26:]  # interval too small for 3 INT32 channels
    with pytest.raises(MalformedError, match="INTERVAL_SIZE"):
        loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64, bt00=bt00_bytes(), et21=bad)


def test_truncated_bt64(tables_backend, archive):
    bt63, bt64, _ = archive
    for cut in (0, 1, len(bt64) // 2, len(bt64) - 1):
        with pytest.raises(TruncatedError) as ei:
            loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64[:cut], bt00=bt00_bytes())
        assert ei.value.layer == "table BT64"
        assert ei.value.offset is not None


def test_inconsistent_tables(tables_backend, archive):
    bt63, bt64, _ = archive
    # BT61 says 3 channels, BT62 describes only 2 (+ no room for format and scalars)
    with pytest.raises(DecodeError) as ei:
        loadprofile.decode(bt61_bytes(), bt62_bytes()[:6], bt63, bt64, bt00=bt00_bytes())
    assert ei.value.layer == "table BT62"
    # unknown INT_FMT_CDE
    with pytest.raises(MalformedError) as ei:
        loadprofile.decode(bt61_bytes(), bt62_bytes(code=3), bt63, bt64, bt00=bt00_bytes())
    assert ei.value.layer == "table BT62" and ei.value.offset == 9
    # LAST_BLOCK_ELEMENT outside the list
    with pytest.raises(MalformedError) as ei:
        loadprofile.decode(
            bt61_bytes(), bt62_bytes(), bt63_bytes(4, 7, 41, 0, 4), bt64, bt00=bt00_bytes()
        )
    assert ei.value.layer == "table BT63" and ei.value.offset == 3
    with pytest.raises(MalformedError) as ei:
        loadprofile.decode(
            bt61_bytes(), bt62_bytes(), bt63_bytes(4, 1, 41, 0, 9), bt64, bt00=bt00_bytes()
        )
    assert ei.value.offset == 11
    # a garbage block end time (month 0) in a valid block
    broken = bytearray(bt64)
    broken[1] = 0
    with pytest.raises(MalformedError) as ei:
        loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bytes(broken), bt00=bt00_bytes())
    assert ei.value.layer == "table BT64" and ei.value.offset == 0


@pytest.mark.parametrize(
    "code,fmt,width",
    [(1, "B", 1), (2, "<H", 2), (4, "<I", 4), (8, "b", 1), (16, "<h", 2), (32, "<i", 4)],
)
def test_every_int_fmt_code(tables_backend, code, fmt, width):
    nch, nint = 2, 3
    size = 5 + 1 + nint * (2 + width * nch)
    blk = bytearray(stime(dt.datetime(2025, 1, 1, 1, 0)))
    blk.append(0b111)
    vals = []
    for i in range(nint):
        v = [(i * 37 + c * 11 + 100) % 256 for c in range(nch)]
        if fmt[-1].islower():
            v = [x - 128 if width == 1 else -x for x in v]
        vals.append(v)
        blk += bytes(2) + b"".join(struct.pack(fmt, x) for x in v)
    assert len(blk) == size
    lp = loadprofile.decode(
        bt61_bytes(1, nint, nch, 60, scalars=False),
        bt62_bytes(nch, code)[: 3 * nch + 1],
        bt63_bytes(1, 0, 7, 1, nint),
        bytes(blk),
        bt00=bt00_bytes(),
    )
    np.testing.assert_array_equal(lp.values, np.array(vals))
    want = [int(dt.datetime(2025, 1, 1, h, 0, tzinfo=UTC).timestamp()) for h in (23, 0, 1)]
    want[0] -= 86400
    np.testing.assert_array_equal(lp.timestamps.astype(np.int64), want)


@pytest.mark.parametrize(
    "ni,width,pack",
    [
        (8, 4, "<i"),
        (7, 3, None),
        (9, 5, None),
        (10, 6, None),
        (11, 8, "<q"),
        (0, 8, "<d"),
        (1, 4, "<f"),
        (4, 4, "<i"),
        (6, 4, "bcd"),
        (5, 6, "bcd"),
        (12, 8, "bcd"),
        (3, 6, "txt"),
        (2, 12, "txt"),
        (13, 21, "txt"),
    ],
)
def test_ni_formats(tables_backend, ni, width, pack):
    nch, nint = 1, 2
    blk = bytearray(stime(dt.datetime(2025, 6, 1, 0, 30)))
    blk.append(0b11)
    raws = {"bcd": [12345678, 99], "txt": [1234, -5676]}.get(pack, [1234, -5678])
    for v in raws:
        if pack == "<d" or pack == "<f":
            b = struct.pack(pack, v / 8)
        elif pack == "bcd":
            b = bytes.fromhex(f"{v:0{2 * width}d}")
        elif pack == "txt":  # FLOAT_CHAR: ASCII number, space padded (docs/protocol.md §7.1)
            b = f"{v / 8:G}".rjust(width).encode()
        else:
            b = v.to_bytes(width, "little", signed=True)
        blk += bytes(1) + b
    bt00 = bt00_bytes(ni=ni | (ni << 4))
    lp = loadprofile.decode(
        bt61_bytes(1, nint, nch, 30, scalars=False),
        bytes([0, 1, 0, 64]),
        bt63_bytes(1, 0, 1, 0, nint),
        bytes(blk),
        bt00=bt00,
    )
    if pack in ("<d", "<f", "txt"):
        np.testing.assert_allclose(lp.values[:, 0], [v / 8 for v in raws])
    elif ni == 4:
        np.testing.assert_array_equal(lp.values[:, 0], raws)
        np.testing.assert_allclose(lp.scaled[:, 0], [v / 10000 for v in raws])
    else:
        np.testing.assert_array_equal(lp.values[:, 0], raws)


def test_tm_format_4_and_daily_interval(tables_backend):
    # TM_FORMAT 4: STIME_DATE = UINT32 seconds since 1970 (docs/protocol.md §7.1); MAX_INT_TIME 84 =
    # 24 h
    end = int(dt.datetime(2025, 2, 3, tzinfo=UTC).timestamp())
    blk = (
        struct.pack("<I", end)
        + bytes([0b11])
        + bytes(1)
        + struct.pack("<i", 5)
        + bytes(1)
        + struct.pack("<i", 6)
    )
    lp = loadprofile.decode(
        bt61_bytes(1, 2, 1, 84, scalars=False),
        bytes([0, 1, 0, 32]),
        bt63_bytes(1, 0, 1, 0, 2),
        blk,
        bt00=bt00_bytes(tm_format=4),
    )
    np.testing.assert_array_equal(lp.timestamps.astype(np.int64), [end - 86400, end])


def test_batch_matches_single(tables_backend, archive):
    bt63, bt64, expected = archive
    t61 = tables.decode("BT61", bt61_bytes(), {"BT00": bt00_bytes()})
    t62 = tables.decode("BT62", bt62_bytes(), {"BT00": bt00_bytes(), "BT61": bt61_bytes()})
    g = loadprofile.geometry(t61, t62)
    blocks = [[2, 3, 0], [2, 3], [0]]
    (vals, st, fl, times, ok), offs = loadprofile.decode_many(g, [bt64] * 3, blocks)
    assert offs == [0, 18, 30, 36]
    for m, bl in enumerate(blocks):
        v1, s1, f1, t1, ok1 = loadprofile.decode_blocks(g, bt64, bl)
        np.testing.assert_array_equal(vals[offs[m] : offs[m + 1]], v1)
        np.testing.assert_array_equal(times[offs[m] : offs[m + 1]], t1)
        np.testing.assert_array_equal(ok[offs[m] : offs[m + 1]], ok1)
    with pytest.raises(TruncatedError) as ei:
        loadprofile.decode_many(g, [bt64, bt64[:10]], [[0], [1]])
    assert ei.value.meter == 1


def test_preallocated_out(tables_backend, archive):
    _, bt64, _ = archive
    t61 = tables.decode("BT61", bt61_bytes())
    g = loadprofile.geometry(t61, tables.decode("BT62", bt62_bytes(), {"BT61": bt61_bytes()}))
    out = (
        np.empty((2 * NINT, NCH), np.int64),
        np.empty((2 * NINT, NCH), np.uint8),
        np.empty(2 * NINT, np.uint8),
        np.empty(2 * NINT, np.int64),
        np.empty(2 * NINT, np.uint8),
    )
    res = loadprofile.decode_blocks(g, bt64, [2, 3], out=out)
    assert all(a is b for a, b in zip(res, out))
    assert out[0][0].tolist() == [raw_value(0, 0, c) for c in range(NCH)]
    with pytest.raises(ConfigurationError):
        loadprofile.decode_blocks(g, bt64, [2, 3, 0], out=out)


def test_arrow(tables_backend, archive):
    pa = pytest.importorskip("pyarrow")
    bt63, bt64, expected = archive
    t = loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64).to_arrow()
    assert t.num_rows == len(expected)
    assert t.column("ch2").to_pylist() == [e[1][2] for e in expected]
    assert t.schema.field("timestamp").type == pa.timestamp("s", tz="UTC")


def bt71_bytes(n_entries=4, arg=2, flags=0b110):
    return struct.pack("<BBBBBHH", flags, 10, 20, arg, 0, n_entries, 0)


def test_event_log(tables_backend):
    # BT74 NES entry [OPT p.51-53]: LTIME_DATE(6), seq UINT16, user UINT16, code UINT16, arg
    entries = []
    for k in range(4):
        t = dt.datetime(2025, 5, 1, 12, k, 30)
        entries.append(
            bytes([t.year - 2000, t.month, t.day, t.hour, t.minute, t.second])
            + struct.pack("<HHH", 100 + k, 0xFFFE, (1 << 11) | (20 + k))
            + bytes([k, 9])
        )
    # circular, newest at element 0: stored [e3, e0, e1, e2]... 3 valid, last = 0
    stored = [entries[3], entries[0], entries[1], entries[2]]
    bt74 = struct.pack("<BHHIHH", 0b100, 3, 0, 103, 1, 0)[:11] + b"".join(stored)
    log = loadprofile.decode_event_log(bt71_bytes(), bt74)
    assert log["seq"].tolist() == [101, 102, 103]
    assert log["code"].tolist() == [21, 22, 23]
    assert log["mfg"].all() and (log["user_id"] == 0xFFFE).all()
    assert log["argument"].tolist() == [b"\x01\x09", b"\x02\x09", b"\x03\x09"]
    assert str(log["time"][0]) == "2025-05-01T12:01:30"


def test_event_arguments_keep_their_trailing_zero_bytes(tables_backend):
    # the argument is HIST_DATA_LENGTH bytes of the entry's layout [OPT p.51-53]:
    # zero bytes at its end are data (e.g. a little-endian table id or value)
    args = [bytes([0x2A, 0, 0, 0]), bytes(4), bytes([0, 0, 7, 0])]
    entries = [
        bytes([25, 5, 1, 12, k, 0]) + struct.pack("<HHH", k, 1, 3) + a for k, a in enumerate(args)
    ]
    bt74 = struct.pack("<BHHIHH", 0b100, 3, 2, 3, 1, 0)[:11] + b"".join(entries)
    log = loadprofile.decode_event_log(bt71_bytes(n_entries=3, arg=4), bt74)
    assert log["argument"].tolist() == args
    assert [len(a) for a in log["argument"]] == [4, 4, 4]


# ---- native == twin on random block data ---------------------------------------------------


from osgp import _backend  # noqa: E402


def test_int32_values(tables_backend, archive):
    """Caller-chosen int32 values (INT_FMT_CDE 32 fits): the raw values built
    above, and every other column as with int64 values."""
    _, bt64, _ = archive
    t61 = tables.decode("BT61", bt61_bytes())
    g = loadprofile.geometry(t61, tables.decode("BT62", bt62_bytes(), {"BT61": bt61_bytes()}))
    rows = 2 * NINT
    out32 = (
        np.empty((rows, NCH), np.int32),
        np.empty((rows, NCH), np.uint8),
        np.empty(rows, np.uint8),
        np.empty(rows, np.int64),
        np.empty(rows, np.uint8),
    )
    loadprofile.decode_blocks(g, bt64, [2, 3], out=out32)  # chronological blocks c = 0, 1
    want = [[raw_value(c, i, ch) for ch in range(NCH)] for c in (0, 1) for i in range(NINT)]
    np.testing.assert_array_equal(out32[0], np.array(want, np.int32))
    ref = loadprofile.decode_blocks(g, bt64, [2, 3])
    for a, b in zip(out32[1:], ref[1:]):
        np.testing.assert_array_equal(a, b)
    assert out32[4].tolist() == [1] * NINT + [1, 1, 0, 1, 1, 1]  # c = 1 misses interval 2
    # UINT32 (code 4) does not fit in int32: refused, not wrapped
    with pytest.raises(ConfigurationError):
        loadprofile.decode_blocks(g._replace(fmt_code=4), bt64, [2, 3], out=out32)
    # int32 values are for the dense decoder only
    with pytest.raises(ConfigurationError):
        loadprofile.decode_many(g, [bt64], [[2, 3]], out=out32)


def _kernels():
    mods = [_backend.reference("tables")]
    nat = _backend.native_module("tables")
    if nat is not None:
        mods.insert(0, nat)
    return mods


@settings(max_examples=150, deadline=None)
@given(
    nch=hst.integers(0, 5),
    nint=hst.integers(1, 20),
    code=hst.sampled_from([1, 2, 4, 8, 16, 32, 64]),
    ni=hst.sampled_from([0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    tm=hst.integers(1, 4),
    desc=hst.integers(0, 1),
    nblocks=hst.integers(0, 3),
    extra=hst.integers(-3, 3),
    seed=hst.binary(min_size=0, max_size=600),
    lasts=hst.lists(hst.integers(0, 10), max_size=3),
)
def test_block_decoder_twins(nch, nint, code, ni, tm, desc, nblocks, extra, seed, lasts):
    w = {1: 1, 2: 2, 4: 4, 8: 1, 16: 2, 32: 4}.get(code) or loadprofile.tables_ni_width(ni)
    tw = (0, 5, 5, 4, 4)[tm]
    ext = nch // 2 + 1
    int_size = ext + nch * w
    int0 = tw + (nint + 7) // 8
    g = loadprofile.Geometry(
        int0 + nint * int_size, nint, nch, 0, tm, tw, int0, int_size, 0, ext, code, ni, 900, desc
    )
    data = (seed * (1 + g.block_size * 3 // max(len(seed), 1)))[: max(0, g.block_size * 3 + extra)]
    blocks = list(range(nblocks))
    ll = [x % (nint + 1) for x in lasts[:nblocks]] if len(lasts) >= nblocks else None
    outs = []
    for mod in _kernels():
        rows = nblocks * nint
        arrs = (
            np.zeros((rows, nch), np.int64),
            np.zeros((rows, nch), np.uint8),
            np.zeros(rows, np.uint8),
            np.zeros(rows, np.int64),
            np.zeros(rows, np.uint8),
        )
        counts = np.zeros(nblocks, np.uint32)
        try:
            mod.lp_decode(
                tuple(g),
                data,
                np.array(blocks, np.uint32),
                None if ll is None else np.array(ll, np.uint32),
                *arrs,
            )
            res = [a.tobytes() for a in arrs]
            if code in (1, 2, 8, 16, 32):  # int32 values: the same rows, narrower
                a32 = (np.zeros((rows, nch), np.int32),) + tuple(np.zeros_like(a) for a in arrs[1:])
                mod.lp_decode(
                    tuple(g),
                    data,
                    np.array(blocks, np.uint32),
                    None if ll is None else np.array(ll, np.uint32),
                    *a32,
                )
                np.testing.assert_array_equal(a32[0], arrs[0])
                assert [a.tobytes() for a in a32[1:]] == res[1:]
            n = mod.lp_decode(
                tuple(g),
                data,
                np.array(blocks, np.uint32),
                None if ll is None else np.array(ll, np.uint32),
                *arrs[:4],
                np.zeros(nint, np.uint8),
                counts,
            )
            # compact rows = the valid dense rows, in order, counted per block
            dense_valid = np.frombuffer(res[4], np.uint8).astype(bool)
            assert n == dense_valid.sum()
            for k, dense in enumerate(res[:4]):
                want = np.frombuffer(dense, arrs[k].dtype).reshape(arrs[k].shape)[dense_valid]
                np.testing.assert_array_equal(arrs[k][:n], want)
            np.testing.assert_array_equal(counts, dense_valid.reshape(nblocks, nint).sum(axis=1))
            outs.append(("ok", res, n, arrs[0][:n].tobytes(), arrs[3][:n].tobytes()))
        except DecodeError as e:
            outs.append((type(e).__name__, e.offset, e.pc))
    assert all(o == outs[0] for o in outs)


def test_zero_divisor_names_field(tables_backend, archive):
    bt63, bt64, _ = archive
    bad62 = bt62_bytes()[:-2] + b"\x00\x00"  # DIVISOR_SET1[2] = 0
    with pytest.raises(MalformedError) as ei:
        loadprofile.decode(bt61_bytes(), bad62, bt63, bt64, bt00=bt00_bytes())
    # 3 x 3 selection bytes, INT_FMT_CDE, 3 scalars, then divisors 0 and 1 before it
    assert ei.value.layer == "table BT62" and ei.value.offset == 9 + 1 + 6 + 4
    assert ei.value.field == "DIVISOR_SET1[2]"


def test_profile_alternatives(tables_backend, archive):
    bt63, bt64, expected = archive
    prof = loadprofile.LoadProfileProfile(common_flags_high_nibble=False)
    lp = loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64, bt00=bt00_bytes(), profile=prof)
    rev = {0: 0, 1: 8, 2: 4, 4: 2, 8: 1, 3: 12}
    assert lp.flags.tolist() == [rev[e[3]] for e in expected]
    # full blocks end at their highest recorded interval: in this archive every full
    # block records its last slot, so the timestamps do not move
    prof = loadprofile.LoadProfileProfile(full_block_last=False)
    lp = loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bt64, bt00=bt00_bytes(), profile=prof)
    check(lp, expected)


def test_full_block_last_alternative(tables_backend, archive):
    bt63, bt64, expected = archive
    size = len(bt64) // NBLKS
    raw = bytearray(bt64)
    raw[2 * size + 5] &= ~(1 << 5)  # oldest block (stored at 2): last slot not recorded
    kept = [e for e in expected if not (e[4] == 38 and e[0] == T0 + dt.timedelta(minutes=90))]
    lp = loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63, bytes(raw), bt00=bt00_bytes())
    check(lp, kept)
    prof = loadprofile.LoadProfileProfile(full_block_last=False)
    lp = loadprofile.decode(
        bt61_bytes(), bt62_bytes(), bt63, bytes(raw), bt00=bt00_bytes(), profile=prof
    )
    # BLK_END_TIME now marks interval 4: the oldest block's rows move 15 minutes later
    shifted = [(e[0] + dt.timedelta(minutes=MINUTES),) + e[1:] if e[4] == 38 else e for e in kept]
    check(lp, shifted)


# ---- garbage in: only osgp errors out ------------------------------------------------------


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    bt61=hst.one_of(hst.binary(max_size=20), hst.just(bt61_bytes())),
    bt62=hst.one_of(hst.binary(max_size=24), hst.just(bt62_bytes())),
    bt63=hst.binary(max_size=16),
    bt64=hst.binary(max_size=400),
    use_bt00=hst.booleans(),
)
def test_garbage_tables_raise_only_osgp_errors(tables_backend, bt61, bt62, bt63, bt64, use_bt00):
    """Random or mismatched BT61-BT64 bytes either decode or raise an OSGPError
    (never IndexError, struct.error, ZeroDivisionError, a hang or a crash)."""
    try:
        lp = loadprofile.decode(bt61, bt62, bt63, bt64, bt00=bt00_bytes() if use_bt00 else None)
    except OSGPError:
        return
    assert len(lp.timestamps) == len(lp.values) == len(lp.status) == len(lp.flags)
