"""osgp.loadprofile.decode_images (many meters, one configuration) against the rows
test_loadprofile.py builds with struct and datetime arithmetic, and the
lp_decode_images kernel against its twin."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from osgp import _backend, loadprofile
from osgp.errors import MalformedError, TruncatedError
from tests.test_loadprofile import (
    NINT,
    bt00_bytes,
    bt61_bytes,
    bt62_bytes,
    bt63_bytes,
    bt71_bytes,
    build_archive,
    check,
)


class _Rows:
    """One meter's rows of a LoadProfiles, in the shape check() reads."""

    def __init__(self, lps, i):
        a, b = lps.offsets[i], lps.offsets[i + 1]
        self.timestamps, self.values = lps.timestamps[a:b], lps.values[a:b]
        self.status, self.flags = lps.status[a:b], lps.flags[a:b]
        self.scaled = lps.scaled[a:b]
        self.block_seq = None

    def __len__(self):
        return len(self.timestamps)


def _check(lps, i, expected):
    rows = _Rows(lps, i)
    if not expected:
        assert len(rows) == 0
        return
    rows.block_seq = np.array([e[4] for e in expected])  # not a column of LoadProfiles
    check(rows, expected)


def meters():
    """Five meters: wrapped ascending, descending block order, the newest
    block empty (NBR_VALID_INT 0), no valid block, and the first again."""
    asc = build_archive(0)
    desc = build_archive(1)
    bt63_empty_newest = bt63_bytes(4, asc[0][3], 41, 2, 0)
    exp_empty = [e for e in asc[2] if e[4] != 41]
    return [
        (asc[0], asc[1], asc[2]),
        (desc[0], desc[1], desc[2]),
        (bt63_empty_newest, asc[1], exp_empty),
        (bt63_bytes(0, 0, 0, 0, 0), asc[1], []),
        (asc[0], asc[1], asc[2]),
    ]


def test_many_meters_rows(tables_backend):
    ms = meters()
    lps = loadprofile.decode_images(
        bt61_bytes(), bt62_bytes(), [m[0] for m in ms], [m[1] for m in ms], bt00=bt00_bytes()
    )
    assert len(lps.offsets) == len(ms) + 1
    for i, m in enumerate(ms):
        _check(lps, i, m[2])


@pytest.mark.parametrize("int32", [False, True])
def test_same_as_one_call_per_meter(tables_backend, int32):
    ms = meters()
    for unread in (False, True):
        lps = loadprofile.decode_images(
            bt61_bytes(), bt62_bytes(), [m[0] for m in ms], [m[1] for m in ms],
            bt00=bt00_bytes(), unread_only=unread, int32=int32,
        )  # fmt: skip
        assert lps.values.dtype == (np.int32 if int32 else np.int64)
        for i, m in enumerate(ms):
            one = loadprofile.decode(
                bt61_bytes(), bt62_bytes(), m[0], m[1], bt00=bt00_bytes(), unread_only=unread
            )
            a, b = lps.offsets[i], lps.offsets[i + 1]
            np.testing.assert_array_equal(lps.timestamps[a:b], one.timestamps)
            np.testing.assert_array_equal(lps.values[a:b], one.values)
            np.testing.assert_array_equal(lps.status[a:b], one.status)
            np.testing.assert_array_equal(lps.flags[a:b], one.flags)
            np.testing.assert_allclose(lps.scaled[a:b], one.scaled)


def test_no_meters(tables_backend):
    lps = loadprofile.decode_images(bt61_bytes(), bt62_bytes(), [], [], bt00=bt00_bytes())
    assert len(lps.timestamps) == 0 and lps.offsets.tolist() == [0]


def test_bad_meter_is_named(tables_backend):
    ms = meters()
    bt64s = [m[1] for m in ms]
    bt64s[2] = bt64s[2][:-7]
    with pytest.raises(TruncatedError) as ei:
        loadprofile.decode_images(
            bt61_bytes(), bt62_bytes(), [m[0] for m in ms], bt64s, bt00=bt00_bytes()
        )
    assert ei.value.meter == 2 and ei.value.layer == "table BT64"
    bt63s = [m[0] for m in ms]
    bt63s[1] = bt63_bytes(4, 9, 41, 2, 4)  # LAST_BLOCK_ELEMENT outside the 4-block list
    with pytest.raises(MalformedError) as ei:
        loadprofile.decode_images(bt61_bytes(), bt62_bytes(), bt63s, bt64s, bt00=bt00_bytes())
    assert ei.value.meter == 1 and ei.value.layer == "table BT63" and ei.value.offset == 3


def _kernel_case(seed, nmeters=40):
    rng = np.random.default_rng(seed)
    g = loadprofile.Geometry(
        5 + 1 + NINT * 14, NINT, 3, 0, 2, 5, 6, 14, 0, 2, 32, 8, 900, 0
    )
    datas, blocks, lasts, starts = [], [], [], [0]
    for _ in range(nmeters):
        nb = int(rng.integers(0, 4))
        img = bytearray(rng.integers(0, 256, nb * g.block_size + 3, dtype=np.uint8).tobytes())
        for b in range(nb):  # a valid STIME_DATE at each block start
            img[b * g.block_size : b * g.block_size + 5] = bytes([26, 1 + b, 2, 3, 15])
        datas.append(bytes(img))
        blocks += rng.permutation(nb).tolist()
        lasts += rng.integers(0, NINT, nb).tolist()
        starts.append(starts[-1] + nb)
    return (
        tuple(g),
        datas,
        np.array(blocks, np.uint32),
        np.array(starts, np.int64),
        np.array(lasts, np.uint32),
    )


def _outs(rows, nch, vdtype):
    return [
        np.zeros((rows, nch), vdtype),
        np.zeros((rows, nch), np.uint8),
        np.zeros(rows, np.uint8),
        np.zeros(rows, np.int64),
        np.zeros(rows, np.uint8),
    ]


@pytest.mark.parametrize("mode", ["int64", "int32", "compact"])
def test_kernel_twin(mode):
    native = _backend.native_module("tables")
    if native is None:
        pytest.skip("native extensions not built")
    twin = _backend.reference("tables")
    for seed in range(4):
        g, datas, blocks, starts, lasts = _kernel_case(seed)
        rows = len(blocks) * NINT
        got = []
        for mod in (native, twin):
            outs = _outs(rows, 3, np.int32 if mode == "int32" else np.int64)
            counts = np.zeros(len(blocks), np.uint32) if mode == "compact" else None
            if counts is not None:
                outs[4] = np.zeros(NINT, np.uint8)
            n = mod.lp_decode_images(g, datas, blocks, starts, lasts, *outs, counts)
            got.append((n, outs[:4] if counts is None else [o[:n] for o in outs[:4]], counts))
        assert got[0][0] == got[1][0]
        for a, b in zip(got[0][1], got[1][1]):
            np.testing.assert_array_equal(a, b)
        if mode == "compact":
            np.testing.assert_array_equal(got[0][2], got[1][2])
            assert got[0][0] == int(got[0][2].sum())


def test_kernel_twin_errors():
    native = _backend.native_module("tables")
    if native is None:
        pytest.skip("native extensions not built")
    twin = _backend.reference("tables")
    g, datas, blocks, starts, lasts = _kernel_case(7)
    m = int(np.flatnonzero(np.diff(starts) > 1)[0])
    datas[m] = datas[m][: len(datas[m]) // 2]
    seen = []
    for mod in (native, twin):
        with pytest.raises(TruncatedError) as ei:
            mod.lp_decode_images(
                g, datas, blocks, starts, lasts, *_outs(len(blocks) * NINT, 3, np.int64)
            )
        seen.append((ei.value.meter, ei.value.offset, ei.value.pc))
    assert seen[0] == seen[1] and seen[0][0] == m


def _bt74(order, nvalid, last, entries):
    return struct.pack("<BHHIHH", order, nvalid, last, 103, 1, 0)[:11] + b"".join(entries)


def _entries(n, arg):
    # BT74 NES entry [OPT p.51-53]: LTIME_DATE(6), seq UINT16, user UINT16, code UINT16, arg
    return [
        bytes([25, 5, 1, 12, k, 30])
        + struct.pack("<HHH", 100 + k, 7 * k, ((k & 1) << 11) | (20 + k))
        + bytes([k] + [0] * (arg - 1))
        for k in range(n)
    ]


def test_event_logs_same_as_one_call_per_image(tables_backend):
    e = _entries(4, 2)
    bt74s = [
        _bt74(0b100, 3, 0, [e[3], e[0], e[1], e[2]]),  # newest first, wrapped
        _bt74(0b000, 4, 3, e),  # oldest first, full
        _bt74(0b000, 0, 0, e),  # empty log
        _bt74(0b000, 2, 1, e),
    ]
    entries, offsets = loadprofile.decode_event_logs(bt71_bytes(), bt74s)
    assert offsets.tolist() == [0, 3, 7, 7, 9]
    for i, bt74 in enumerate(bt74s):
        one = loadprofile.decode_event_log(bt71_bytes(), bt74)
        part = entries[offsets[i] : offsets[i + 1]]
        for name in one.dtype.names:
            assert part[name].tolist() == one[name].tolist(), (i, name)
    bad = bt74s[:2] + [_bt74(0b000, 2, 4, e)]  # LAST_ENTRY_ELEMENT outside the 4-entry list
    with pytest.raises(MalformedError) as ei:
        loadprofile.decode_event_logs(bt71_bytes(), bad)
    assert ei.value.meter == 2 and ei.value.layer == "table BT74" and ei.value.offset == 3


def test_newest_interval_first_as_one_call_per_meter(tables_backend):
    """BT63 INTERVAL_ORDER (LP_SET_STATUS_FLAGS bit 4, [OPT p.34-35]) set for one
    meter: decode_images gives what decode gives for each meter."""
    asc = build_archive(0)
    newest_first = bytes([asc[0][0] | 0x10]) + asc[0][1:]
    bt63s, bt64s = [asc[0], newest_first], [asc[1], asc[1]]
    lps = loadprofile.decode_images(bt61_bytes(), bt62_bytes(), bt63s, bt64s, bt00=bt00_bytes())
    for i in range(2):
        one = loadprofile.decode(bt61_bytes(), bt62_bytes(), bt63s[i], bt64s[i], bt00=bt00_bytes())
        a, b = lps.offsets[i], lps.offsets[i + 1]
        np.testing.assert_array_equal(lps.values[a:b], one.values)
        np.testing.assert_array_equal(lps.timestamps[a:b], one.timestamps)
        np.testing.assert_allclose(lps.scaled[a:b], one.scaled)
    assert one.geometry.descending == 1


def test_batch_rejects_only_the_bad_image(tables_backend):
    """osgp.batch: three meters' BT64 images share one configuration; the
    truncated one is rejected and the other two give their rows."""
    from osgp.batch import Report
    from osgp.batch.keys import Device
    from osgp.batch.pipeline import Image, decode_images

    bt63, bt64, expected = build_archive(0)
    images = []
    for node, data in ((1, bt64), (2, bt64[:-9]), (3, bt64)):
        dev = Device(1, node)
        for table, img in ((0, bt00_bytes()), (61, bt61_bytes()), (62, bt62_bytes()), (63, bt63)):
            images.append(Image(dev, table, 0, img))
        images.append(Image(dev, 64, 0, data))
    report = Report()
    lp = decode_images(images, report).load_profile
    assert report.rejected == {"undecodable": 1}
    assert "1.2 BT64" in report.examples["undecodable"][0]
    assert "table BT64" in report.examples["undecodable"][0]
    rows = sum(int(p.counts.sum()) for p in lp["device"])
    assert rows == 2 * len(expected) * 3  # two meters, every interval and channel
    assert [x for p in lp["device"] for x in p.items] == ["1.1", "1.3"]
