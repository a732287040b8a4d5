"""Frame kernels: native == twin, published frames, batch == one-shot, errors."""

from __future__ import annotations

import binascii

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osgp import _backend
from osgp.errors import (
    AuthenticationError,
    ChecksumError,
    DecodeError,
    MalformedError,
    TruncatedError,
)
from osgp.link import lon

from .conftest import implementations, load_vectors

V = load_vectors("mep_frames.json")
KEY = bytes.fromhex(V["key"])
LV = load_vectors("lon_frames.json")


@pytest.fixture(params=implementations("frames"))
def frames(request):
    return request.param


def test_native_loaded_when_built():
    import osgp

    if osgp.native:
        assert _backend.native_module("frames") is not None


@pytest.mark.parametrize("ex", V["exchanges"], ids=[e["name"] for e in V["exchanges"]])
def test_published_mep_frames(frames, ex):
    q, r = bytes.fromhex(ex["request"]), bytes.fromhex(ex["response"])
    assert frames.mep_request_check(KEY, q) == (q[2], int(ex["seq"], 16))
    assert frames.mep_response_check(KEY, q, r) == r[2:-8]


def test_errors_and_offsets(frames):
    q = bytes.fromhex(V["exchanges"][1]["request"])
    with pytest.raises(TruncatedError) as e:
        frames.mep_request_check(KEY, q[:1])
    assert (e.value.layer, e.value.offset) == ("mep", 0)
    with pytest.raises(TruncatedError) as e:
        frames.mep_request_check(KEY, q[:-1])
    assert e.value.offset == len(q) - 1
    with pytest.raises(MalformedError) as e:
        frames.mep_request_check(KEY, q + b"\x00")
    assert e.value.offset == len(q)
    with pytest.raises(MalformedError):
        frames.mep_request_check(KEY, b"\x01\xdd" + bytes(477))
    with pytest.raises(TruncatedError):
        frames.mep_request_check(KEY, b"\x00\x05" + bytes(5))
    bad = bytearray(q)
    bad[5] ^= 1
    with pytest.raises(AuthenticationError):
        frames.mep_request_check(KEY, bytes(bad))


def test_batch_equals_one_shot(frames):
    reqs = [bytes.fromhex(e["request"]) for e in V["exchanges"]]
    bad = bytearray(reqs[0])
    bad[-1] ^= 1
    reqs += [bytes(bad), reqs[1][:-3], b"", b"\x00\x02\x30\x00"]
    data = b"".join(reqs)
    offs = np.cumsum([0] + [len(r) for r in reqs]).astype(np.int64)
    status, code, seq, ok = frames.mep_request_check_batch(KEY, data, offs)
    # the batch reports in status and the ok mask what the single call raises
    for i, r in enumerate(reqs):
        try:
            c, s = frames.mep_request_check(KEY, r)
            assert (status[i], code[i], seq[i], ok[i]) == (frames.OK, c, s, 1)
        except AuthenticationError:
            assert (status[i], ok[i]) == (frames.AUTH, 0)
        except TruncatedError:
            assert (status[i], ok[i]) == (frames.TRUNCATED, 0)
    assert list(status[:7]) == [0] * 7 and status[7] == frames.AUTH
    assert ok == bytes([1] * 7 + [0] * 4)


def test_mep_split(frames):
    a = bytes.fromhex(V["exchanges"][0]["response"])
    b = bytes.fromhex(V["exchanges"][5]["response"])
    stream = a + b"\x00\x00" + b + b[:5]
    starts, lengths, consumed = frames.mep_split(stream)
    assert list(lengths) == [len(a) - 2, 0, len(b) - 2] and consumed == len(a) + 2 + len(b)
    assert stream[starts[2] : starts[2] + lengths[2]] == b[2:]
    with pytest.raises(MalformedError) as e:
        frames.mep_split(a + b"\xff\xff")
    assert e.value.offset == len(a)


@pytest.mark.parametrize("f", LV["npdu"], ids=[f["name"] for f in LV["npdu"]])
def test_lon_parse_matches_python_codec(frames, f):
    npdu = lon.decode_npdu(bytes.fromhex(f["hex"]))
    wire = lon.encode_lpdu(lon.Lpdu(npdu, alt_path=True, backlog=5))
    h = dict(zip(frames.LON_FIELDS, frames.lon_parse(wire)))
    assert h["lpdu_hdr"] == 0x45 and h["pdu_fmt"] == npdu.pdu.kind
    assert h["addr_fmt"] == npdu.dest.fmt and h["domain"] == npdu.domain
    assert (h["src_subnet"], h["src_node"]) == (npdu.src_subnet, npdu.src_node)
    assert h["pdu_end"] == len(wire) - 2
    if isinstance(npdu.dest, lon.NeuronId):
        assert h["nid"] == npdu.dest.nid
    if isinstance(npdu.dest, lon.GroupAck):
        assert (h["group"], h["member"], h["selfield"]) == (npdu.dest.group, npdu.dest.member, 0)
    bad = bytearray(wire)
    bad[1] ^= 0x10
    with pytest.raises(ChecksumError) as e:
        frames.lon_parse(bytes(bad))
    assert e.value.offset == len(wire) - 2


def _with_crc(body: bytes) -> bytes:
    """Appends CRC-16/GENIBUS (docs/protocol.md §6.1): binascii.crc_hqx (init FFFF) complemented."""
    return body + (binascii.crc_hqx(body, 0xFFFF) ^ 0xFFFF).to_bytes(2, "big")


@pytest.mark.parametrize(
    "f", LV["npdu_dest_b7_clear"], ids=[f["name"] for f in LV["npdu_dest_b7_clear"]]
)
def test_lon_parse_masks_destination_b7(frames, f):
    """Destination node b7 (1 in formats 2a and 2b, lon-stack-dx) is not part
    of the node number: frames with it clear (osgp before the selector fix)
    and set parse alike, one-shot and batch."""
    now = next(g for g in LV["npdu"] if g["name"] == f["same_as"])
    old = b"\x00" + bytes.fromhex(f["hex"])
    new = b"\x00" + bytes.fromhex(now["hex"])
    wires = [_with_crc(old), _with_crc(new)]
    a, b = (dict(zip(frames.LON_FIELDS, frames.lon_parse(w))) for w in wires)
    assert a == b and a["dest_node"] == new[5] & 0x7F and a["addr_fmt"] == 2
    assert a["selfield"] == new[3] >> 7
    offsets = np.array([0, len(wires[0]), 2 * len(wires[0])])
    status, hdrs = frames.lon_parse_batch(b"".join(wires), offsets)
    assert not status.any() and hdrs[0] == hdrs[1] and hdrs[0]["dest_node"] == a["dest_node"]


def test_lon_batch(frames):
    wires = [
        lon.encode_lpdu(lon.Lpdu(lon.decode_npdu(bytes.fromhex(f["hex"])))) for f in LV["npdu"]
    ]
    wires.append(wires[0][:-1] + b"\x00")
    data = b"".join(wires)
    offs = np.cumsum([0] + [len(w) for w in wires]).astype(np.int64)
    status, hdrs = frames.lon_parse_batch(data, offs)
    assert list(status) == [frames.OK] * len(LV["npdu"]) + [frames.CHECKSUM]
    for i, w in enumerate(wires[:-1]):
        t = frames.lon_parse(w)
        for name, v in zip(frames.LON_FIELDS, t):
            got = hdrs[i][name]
            if name in ("nid", "domain"):
                assert bytes(got)[: len(v)] == v
            else:
                assert got == v


def _impls():
    mods = [p.values[0] for p in implementations("frames")]
    return mods


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.booleans(), st.booleans())
def test_native_equals_twin_on_garbage(data, lpdu, crc):
    mods = _impls()
    results = []
    for mod in mods:
        out = []
        for fn in (
            lambda mod=mod: mod.mep_request_check(KEY, data),
            lambda mod=mod: mod.lon_parse(data, lpdu, crc),
            lambda mod=mod: mod.mep_split(data)[1].tolist(),
        ):
            try:
                out.append(fn())
            except (DecodeError, AuthenticationError) as e:
                out.append((type(e), getattr(e, "offset", None)))
        results.append(out)
    assert all(r == results[0] for r in results)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=120), st.integers(0, 2**32 - 1), st.integers(0, 200))
def test_bit_flips_same_error_both(apdu, seq, flip):
    from osgp.link import mep

    f = bytearray(mep.encode_request(KEY, apdu, seq))
    i = flip % (len(f) * 8)
    f[i // 8] ^= 1 << (i % 8)
    outs = []
    for mod in _impls():
        try:
            outs.append(mod.mep_request_check(KEY, bytes(f)))
        except (DecodeError, AuthenticationError) as e:
            outs.append((type(e), getattr(e, "offset", None)))
    assert all(o == outs[0] for o in outs)


def test_batch_status_names_agree():
    """The twin's per-frame statuses are the native module's (osgp_status values)."""
    nat = _backend.native_module("frames")
    if nat is None:
        pytest.skip("native extensions disabled or not built")
    ref = _backend.reference("frames")
    names = ("OK", "AUTH", "TRUNCATED", "MALFORMED", "CHECKSUM")
    assert [getattr(ref, n) for n in names] == [getattr(nat, n) for n in names]
    assert len({getattr(nat, n) for n in names}) == len(names) and nat.OK == 0
