"""Load-profile fast paths of the native block decoder: the AVX2
interval loop and the streaming (non-temporal) stores of large decodes,
against rows computed here with numpy from the documented block layout
([OPT p.36-37], docs/protocol.md §7.7), and against the pure-Python twin.

Block built here: BLK_END_TIME (STIME_DATE, TM_FORMAT 2: YY MM DD hh mm) |
SIMPLE_INT_STATUS ((nint+7)/8 bytes, bit j%8 of byte j/8 = interval j) |
nint x { EXTENDED_INT_STATUS (nch/2+1 bytes: byte 0 high nibble = common
flags, low nibble = channel 0; byte k>=1 high nibble = channel 2k-1, low
nibble = channel 2k) | INT_DATA (nch x INT32/UINT32, LSB first) }.
(END_READINGS is absent: no BT61 LP_FLAGS bit for them in this geometry.)
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from osgp import _backend, loadprofile

NATIVE = _backend.native_module("tables")
TWIN = _backend.reference("tables")
STEP = 900  # 15-minute intervals
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def geometry(nint, nch, code):
    ext = nch // 2 + 1
    int_size = ext + 4 * nch
    int0 = 5 + (nint + 7) // 8
    return loadprofile.Geometry(
        int0 + nint * int_size, nint, nch, 0, 2, 5, int0, int_size, 0, ext, code, 8, STEP, 0
    )


def make_archive(nblocks, nint, nch, seed, missing=0.0):
    """Raw block bytes plus the fields each was built from."""
    rng = np.random.default_rng(seed)
    ext_n = nch // 2 + 1
    ends = [
        dt.datetime(2024, 1 + b % 12, 1 + b % 28, b % 24, (b * 15) % 60) for b in range(nblocks)
    ]
    simple = np.packbits(rng.random((nblocks, nint)) >= missing, axis=1, bitorder="little")
    ext = rng.integers(0, 256, (nblocks, nint, ext_n), dtype=np.uint8)
    words = rng.integers(0, 2**32, (nblocks, nint, nch), dtype=np.uint64).astype("<u4")
    blocks = bytearray()
    for b in range(nblocks):
        e = ends[b]
        blocks += bytes([e.year - 2000, e.month, e.day, e.hour, e.minute])
        blocks += simple[b].tobytes()
        recs = np.concatenate([ext[b], words[b].view(np.uint8).reshape(nint, 4 * nch)], axis=1)
        blocks += recs.tobytes()
    return bytes(blocks), ends, simple, ext, words


def expected(nint, nch, code, ends, simple, ext, words, lasts):
    """Dense rows per block from the layout in the module docstring."""
    nblocks = len(ends)
    v = words.astype(np.int64) if code == 4 else words.view("<i4").astype(np.int64)
    status = np.empty((nblocks, nint, nch), np.uint8)
    for c in range(nch):
        byte = ext[..., (c + 1) // 2]
        status[..., c] = byte & 15 if c % 2 == 0 else byte >> 4
    flags = ext[..., 0] >> 4
    bits = np.unpackbits(simple, axis=1, bitorder="little")[:, :nint].astype(bool)
    j = np.arange(nint)
    last = np.array(lasts, np.int64)[:, None]
    valid = bits & (j[None, :] <= last)
    end = np.array([int((e.replace(tzinfo=dt.timezone.utc) - EPOCH).total_seconds()) for e in ends])
    times = end[:, None] - (last - j[None, :]) * STEP
    rows = nblocks * nint
    return (
        v.reshape(rows, nch),
        status.reshape(rows, nch),
        flags.reshape(rows),
        times.reshape(rows),
        valid.astype(np.uint8).reshape(rows),
    )


def outputs(rows, nch, vdtype, voff, toff):
    """Output arrays; voff/toff elements into a larger buffer (misaligned rows)."""
    v = np.full(rows * nch + voff, -7, vdtype)[voff:].reshape(rows, nch)
    t = np.full(rows + toff, -7, np.int64)[toff:]
    return (
        v,
        np.full((rows, nch), 0xEE, np.uint8),
        np.full(rows + 1, 0xEE, np.uint8)[1:],
        t,
        np.full(rows, 0xEE, np.uint8),
    )


@pytest.fixture
def native():
    if NATIVE is None:
        pytest.skip("native extensions disabled or not built")
    old = NATIVE._lp_stream_min()
    yield NATIVE
    NATIVE._lp_stream_min(old)
    NATIVE.set_cpu_features(None)


# stream: always (0) or never (-1); cpu: all detected, SSE2 only (no AVX2 loop), portable C
PATHS = [(0, None), (-1, None), (0, ("sse2",)), (-1, ()), (0, ())]


@pytest.mark.parametrize("stream,cpu", PATHS)
@pytest.mark.parametrize("nch", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("code,vdtype", [(32, np.int64), (4, np.int64), (32, np.int32)])
@pytest.mark.parametrize("voff,toff", [(0, 0), (1, 0), (0, 1), (2, 1)])
def test_paths_match_layout(native, stream, cpu, nch, code, vdtype, voff, toff):
    nblocks, nint = 5, 13  # odd nint: alternate blocks start misaligned
    data, ends, simple, ext, words = make_archive(
        nblocks, nint, nch, seed=nch * 7 + code, missing=0.2
    )
    lasts = [nint - 1, 4, nint - 1, 0, 9]  # partial and newest-only blocks
    native._lp_stream_min(stream)
    native.set_cpu_features(cpu)
    g = geometry(nint, nch, code)
    out = outputs(nblocks * nint, nch, vdtype, voff, toff)
    # blocks in a non-trivial order: output rows follow the list, not the storage
    order = [3, 0, 4, 1, 2]
    n = native.lp_decode(
        tuple(g),
        data,
        np.array(order, np.uint32),
        np.array([lasts[b] for b in order], np.uint32),
        *out,
    )
    assert n == nblocks * nint
    exp = expected(
        nint,
        nch,
        code,
        [ends[b] for b in order],
        simple[order],
        ext[order],
        words[order],
        [lasts[b] for b in order],
    )
    for got, want in zip(out, exp):
        np.testing.assert_array_equal(got, want.astype(got.dtype))


@pytest.mark.parametrize("vdtype", [np.int64, np.int32])
def test_large_decode_crosses_default_threshold(native, vdtype):
    """Output larger than the default streaming threshold (24 MiB), no knob."""
    native._lp_stream_min(24 << 20)
    nch, nint = 4, 96
    row_bytes = nch * np.dtype(vdtype).itemsize + nch + 10
    nblocks = (26 << 20) // (nint * row_bytes) + 1
    data, ends, simple, ext, words = make_archive(nblocks, nint, nch, seed=5, missing=0.05)
    lasts = [nint - 1] * (nblocks - 1) + [40]  # partial newest block
    g = geometry(nint, nch, 32)
    out = outputs(nblocks * nint, nch, vdtype, 0, 0)
    native.lp_decode(
        tuple(g), data, np.arange(nblocks, dtype=np.uint32), np.array(lasts, np.uint32), *out
    )
    exp = expected(nint, nch, 32, ends, simple, ext, words, lasts)
    for got, want in zip(out, exp):
        np.testing.assert_array_equal(got, want.astype(got.dtype))


def test_fault_after_streamed_blocks(native):
    """A truncated block stops the decode with the same error and the same
    rows before it, streaming or not."""
    nch, nint = 4, 16
    data, *_ = make_archive(3, nint, nch, seed=9)
    g = geometry(nint, nch, 32)
    res = []
    for stream in (0, -1):
        native._lp_stream_min(stream)
        out = outputs(3 * nint, nch, np.int64, 0, 0)
        with pytest.raises(Exception) as ei:
            native.lp_decode(tuple(g), data[:-1], np.arange(3, dtype=np.uint32), None, *out)
        res.append((type(ei.value), str(ei.value), [a[: 2 * nint].tobytes() for a in out]))
    assert res[0] == res[1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nch=hst.integers(1, 9),
    nint=hst.integers(1, 40),
    nblocks=hst.integers(1, 4),
    code=hst.sampled_from([4, 32]),
    wide=hst.booleans(),
    stream=hst.sampled_from([0, -1]),
    voff=hst.integers(0, 3),
    toff=hst.integers(0, 1),
    seed=hst.integers(0, 2**32 - 1),
    lastsd=hst.lists(hst.integers(0, 60), min_size=4, max_size=4),
)
def test_native_paths_equal_twin(nch, nint, nblocks, code, wide, stream, voff, toff, seed, lastsd):
    if NATIVE is None:
        pytest.skip("native extensions disabled or not built")
    vdtype = np.int64 if (wide or code == 4) else np.int32
    data, *_ = make_archive(nblocks, nint, nch, seed=seed, missing=0.3)
    lasts = np.array([x % nint for x in lastsd[:nblocks]], np.uint32)
    blocks = np.arange(nblocks, dtype=np.uint32)[::-1].copy()
    g = tuple(geometry(nint, nch, code))
    want = outputs(nblocks * nint, nch, vdtype, 0, 0)
    TWIN.lp_decode(g, data, blocks, lasts, *want)
    old = NATIVE._lp_stream_min(stream)
    try:
        got = outputs(nblocks * nint, nch, vdtype, voff, toff)
        NATIVE.lp_decode(g, data, blocks, lasts, *got)
    finally:
        NATIVE._lp_stream_min(old)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_stream_knob_round_trip(tables_kernel):
    """The internal knob reports the previous value on both implementations."""
    old = tables_kernel._lp_stream_min(123)
    try:
        assert tables_kernel._lp_stream_min() == 123
        assert tables_kernel._lp_stream_min(-1) == 123
        assert tables_kernel._lp_stream_min() == -1
    finally:
        tables_kernel._lp_stream_min(old)


@pytest.mark.parametrize("nch", [1, 4, 9])
def test_twin_matches_layout(nch):
    """The twin (the reference for the property test above) on the same rows."""
    nblocks, nint = 3, 13
    data, ends, simple, ext, words = make_archive(nblocks, nint, nch, seed=nch, missing=0.2)
    lasts = [nint - 1, 4, 0]
    out = outputs(nblocks * nint, nch, np.int64, 1, 1)
    TWIN.lp_decode(
        tuple(geometry(nint, nch, 32)),
        data,
        np.arange(nblocks, dtype=np.uint32),
        np.array(lasts, np.uint32),
        *out,
    )
    for got, want in zip(out, expected(nint, nch, 32, ends, simple, ext, words, lasts)):
        np.testing.assert_array_equal(got, want.astype(got.dtype))


@pytest.mark.parametrize("stream", [0, -1])
def test_no_channels_with_padding(tables_kernel, stream):
    """nch = 0 with 11 padding bytes after the one EXTENDED_INT_STATUS byte
    (long enough for the 8-byte status load): only flags, times, valid."""
    nint, pad = 9, 11
    int_size = 1 + pad
    int0 = 5 + (nint + 7) // 8
    g = loadprofile.Geometry(
        int0 + nint * int_size, nint, 0, 0, 2, 5, int0, int_size, 0, 1, 32, 8, STEP, 0
    )
    ext0 = bytes(range(0x13, 0x13 + 16 * nint, 16))  # high nibbles 1, 2, ... (flags)
    blk = bytes([24, 3, 31, 23, 45]) + b"\xff\x01"
    blk += b"".join(bytes([e]) + b"\xa5" * pad for e in ext0)
    out = outputs(nint, 0, np.int64, 0, 0)
    old = tables_kernel._lp_stream_min(stream)
    try:
        tables_kernel.lp_decode(tuple(g), blk, np.zeros(1, np.uint32), None, *out)
    finally:
        tables_kernel._lp_stream_min(old)
    np.testing.assert_array_equal(out[2], [e >> 4 for e in ext0])
    end = int((dt.datetime(2024, 3, 31, 23, 45, tzinfo=dt.timezone.utc) - EPOCH).total_seconds())
    np.testing.assert_array_equal(out[3], [end - (nint - 1 - j) * STEP for j in range(nint)])
    np.testing.assert_array_equal(out[4], [1] * nint)
    assert out[0].shape == (nint, 0) and out[1].shape == (nint, 0)
