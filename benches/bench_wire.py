"""Wire benchmarks (issue #4).

* wire-transaction: one complete MEP transaction through the public API
  (build the request, secure it, verify and parse the response), legacy
  suite; against the same steps on the pure-Python twins.  Goal <= 10 us.
* wire-transaction-plc: the same over PLC (LonTalk LPDU + PLC envelope).
* wire-transaction (AES) and wire-transaction-plc (AES): the same with the
  OSGP-AES-128-PSK suite (osgp.security.aes_suite); AES against the same
  envelope built on the `cryptography` package's AES-CCM.
* wire-lon-frame: one typical OSGP PLC frame (SPDU REQUEST / RESPONSE, 40-byte
  APDU, subnet/node addressing, 1-byte domain, link CRC) through
  lon.encode_lpdu (with and without building the Lpdu) and lon.decode_lpdu,
  against a codec hand-written for that one layout with struct and
  binascii.crc_hqx (no types, no other formats: the floor for Python code).
  Goal <= 5 us each.
* wire-batch: batch frame decoding (parse + digest check) per core, native
  against the twin.  Goal >= 1 million frames/s.

    python -m pytest benches/bench_wire.py --benchmark-only
"""

from __future__ import annotations

import binascii
import struct

import numpy as np
import pytest

from osgp import _backend
from osgp.link import carrier as S
from osgp.link import lon, mep
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.services import messages as m
from osgp.services.messages import PLC_SERVICES
from osgp.session import PLC_AES

KEY = bytes([1]) * 16
OMAK = bytes.fromhex("dfdfdfdfdfdfdfdfdfdfdfdf")
READ = m.PartialRead(0x17, 0, 44)
DATA = bytes(range(44))
NATIVE = _backend.native_module("frames")
REF = _backend.reference("frames")
REF_LEGACY = _backend.reference("legacy")


def _response_for(req_frame: bytes) -> bytes:
    apdu, seq, ctx = mep.decode_request(KEY, req_frame)
    return mep.encode_response(KEY, ctx, m.Response(0, DATA).encode())


SEQ = 0x77635B91
RESP = _response_for(mep.encode_request(KEY, READ.encode(), SEQ))


def transaction_public():
    req = mep.encode_request(KEY, READ.encode(), SEQ)
    apdu = mep.decode_response(KEY, req, RESP)
    return m.check_response(m.decode_response(apdu, READ))


def transaction_twin():
    # the same steps on the pure-Python kernels (the obvious alternative)
    plain = READ.encode() + SEQ.to_bytes(4, "big")
    req = mep.frame(plain + REF_LEGACY.oma_digest(KEY, plain))
    apdu = REF.mep_response_check(KEY, req, RESP)
    return m.check_response(m.decode_response(apdu, READ))


@pytest.mark.benchmark(group="wire-transaction")
def test_transaction_public_api(benchmark):
    assert benchmark(transaction_public) == DATA


@pytest.mark.benchmark(group="wire-transaction")
def test_transaction_twin(benchmark):
    assert benchmark(transaction_twin) == DATA


PLC_SUITE = LegacySuite(OMAK, PLC_ENVELOPE)
ME = lon.SubnetNode(3, 17)


def _plc_response():
    wire, ctx = PLC_SUITE.seal_request(READ.encode(), SEQ)
    resp = PLC_SUITE.seal_response(ctx, m.Response(0, DATA).encode())
    n = lon.Npdu(3, 17, lon.SubnetNode(1, 1), lon.Spdu(2, 1, resp))
    return lon.encode_lpdu(lon.Lpdu(n))


PLC_RESP = _plc_response()


def transaction_plc():
    wire, ctx = PLC_SUITE.seal_request(READ.encode(), SEQ)
    frame = lon.encode_lpdu(lon.Lpdu(lon.Npdu(1, 1, ME, lon.Spdu(0, 1, wire))))
    lp = lon.decode_lpdu(PLC_RESP)
    apdu = PLC_SUITE.open_response(ctx, lp.npdu.pdu.apdu)
    return m.check_response(m.decode_response(apdu, READ)), frame


@pytest.mark.benchmark(group="wire-transaction-plc")
def test_transaction_plc(benchmark):
    assert benchmark(transaction_plc)[0] == DATA


# The same transaction through the session's PLC carrier (PlcCarrier.frame /
# receive: precomputed header template, native header parse), the path a
# ClientSession takes.  The carrier's transaction number is pinned to 0 so
# the prepared response (trans 1) matches every round.
PLC_CARRIER = S.PlcCarrier(ME)


def transaction_plc_carrier():
    PLC_CARRIER._trans = 0
    PLC_CARRIER.expected = None
    wire, ctx = PLC_SUITE.seal_request(READ.encode(PLC_SERVICES), SEQ)
    frame = PLC_CARRIER.frame(wire)
    _, items = PLC_CARRIER.receive(PLC_RESP)
    apdu = PLC_SUITE.open_response(ctx, items[0])
    return m.check_response(m.decode_response(apdu, READ, PLC_SERVICES)), frame


@pytest.mark.benchmark(group="wire-transaction-plc")
def test_transaction_plc_carrier(benchmark):
    assert benchmark(transaction_plc_carrier)[0] == DATA


# ---- one LonTalk frame through the public codec ------------------------------------
LON_APDU = bytes(range(0x30, 0x58))  # 40 bytes
LON_DOMAIN = b"\x4f"
LON_FRAME = lon.encode_lpdu(
    lon.Lpdu(lon.Npdu(3, 17, lon.SubnetNode(1, 1), lon.Spdu(2, 5, LON_APDU), LON_DOMAIN))
)


def lon_encode_public():
    return lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(1, 1, lon.SubnetNode(3, 17), lon.Spdu(0, 5, LON_APDU), LON_DOMAIN))
    )


LON_LPDU = lon.Lpdu(lon.Npdu(1, 1, lon.SubnetNode(3, 17), lon.Spdu(0, 5, LON_APDU), LON_DOMAIN))


def lon_encode_prebuilt():
    return lon.encode_lpdu(LON_LPDU)


def lon_decode_public():
    return lon.decode_lpdu(LON_FRAME)


# The alternative: the same frame layout written out with struct (LPDU header,
# NPDU header for SPDU / format 2a / 1-byte domain, source, destination with
# the selector bits, domain, SPDU byte; docs/protocol.md §6.1) and CRC-16/GENIBUS as
# binascii.crc_hqx(init FFFF) complemented.
_LON_HDR = struct.Struct(">8B")


def lon_encode_struct():
    body = _LON_HDR.pack(0x00, 0x19, 1, 0x81, 3, 0x80 | 17, 0x4F, 0x05) + LON_APDU
    return body + (binascii.crc_hqx(body, 0xFFFF) ^ 0xFFFF).to_bytes(2, "big")


def lon_decode_struct():
    f = LON_FRAME
    if binascii.crc_hqx(f[:-2], 0xFFFF) ^ 0xFFFF != int.from_bytes(f[-2:], "big"):
        raise ValueError("link CRC")
    hdr, b0, ss, sn, ds, dn, dom, sp = _LON_HDR.unpack_from(f)
    return hdr, b0, ss, sn & 0x7F, ds, dn & 0x7F, dom, sp, f[8:-2]


def test_lon_struct_codec_is_the_same_frame():
    assert lon_encode_struct() == lon_encode_public()
    got = lon_decode_struct()
    assert got[2:5] == (3, 17, 1) and got[-1] == LON_APDU


@pytest.mark.benchmark(group="wire-lon-frame")
def test_lon_encode_public(benchmark):
    assert benchmark(lon_encode_public) == lon_encode_struct()


@pytest.mark.benchmark(group="wire-lon-frame")
def test_lon_encode_prebuilt_lpdu(benchmark):
    assert benchmark(lon_encode_prebuilt) == lon_encode_struct()


@pytest.mark.benchmark(group="wire-lon-frame")
def test_lon_encode_struct(benchmark):
    assert len(benchmark(lon_encode_struct)) == len(LON_FRAME)


@pytest.mark.benchmark(group="wire-lon-frame")
def test_lon_decode_public(benchmark):
    assert benchmark(lon_decode_public).npdu.pdu.apdu == LON_APDU


@pytest.mark.benchmark(group="wire-lon-frame")
def test_lon_decode_struct(benchmark):
    assert benchmark(lon_decode_struct)[-1] == LON_APDU


def _archive(n: int):
    frames = [
        mep.encode_request(KEY, m.PartialRead(0x17, i % 200, 44).encode(), i) for i in range(n)
    ]
    data = b"".join(frames)
    offs = np.cumsum([0] + [len(f) for f in frames]).astype(np.int64)
    return data, offs


ARCHIVE = _archive(100_000)
SMALL = _archive(2_000)


@pytest.mark.benchmark(group="wire-batch")
@pytest.mark.skipif(NATIVE is None, reason="native extensions not built")
def test_batch_mep_native(benchmark):
    data, offs = ARCHIVE
    status, _, _, _ = benchmark(NATIVE.mep_request_check_batch, KEY, data, offs)
    assert not status.any()
    benchmark.extra_info["frames"] = len(offs) - 1


@pytest.mark.benchmark(group="wire-batch")
def test_batch_mep_twin(benchmark):
    data, offs = SMALL
    status, _, _, _ = benchmark(REF.mep_request_check_batch, KEY, data, offs)
    assert not status.any()
    benchmark.extra_info["frames"] = len(offs) - 1


def _lon_archive(n: int):
    frames = [
        lon.encode_lpdu(
            lon.Lpdu(
                lon.Npdu(1, 1, lon.NeuronId(bytes(6), 0), lon.Spdu(0, i & 15, bytes(30)), b"\x4f")
            )
        )
        for i in range(n)
    ]
    return b"".join(frames), np.cumsum([0] + [len(f) for f in frames]).astype(np.int64)


LON_ARCHIVE = _lon_archive(100_000)


@pytest.mark.benchmark(group="wire-batch-lon")
@pytest.mark.skipif(NATIVE is None, reason="native extensions not built")
def test_batch_lon_native(benchmark):
    status, hdr = benchmark(NATIVE.lon_parse_batch, *LON_ARCHIVE)
    assert not status.any()
    benchmark.extra_info["frames"] = len(LON_ARCHIVE[1]) - 1


@pytest.mark.benchmark(group="wire-batch-lon")
def test_batch_lon_twin(benchmark):
    data, offs = LON_ARCHIVE
    n = 2000
    sub = data[: offs[n]]
    status, hdr = benchmark(REF.lon_parse_batch, sub, offs[: n + 1])
    assert not status.any()
    benchmark.extra_info["frames"] = n


# ---- OSGP-AES-128-PSK transactions (osgp.security.aes_suite) --------------------------
# One client transaction: build the request, seal it (CryptoContext: counter,
# nonce, CCM), frame it; unframe the response, check its sequence number against
# the replay window, open it (CCM), parse it.  The responses are prepared once,
# so every round rewinds the client's counter, window and key usage count
# (_rewind: four attribute stores) to make the same response fresh again.
from cryptography.hazmat.primitives.ciphers.aead import AESCCM  # noqa: E402

from osgp.security.aes_suite import (  # noqa: E402
    MEP_AES_ENVELOPE,
    PLC_AES_ENVELOPE,
    AesPskSuite,
)

PK = bytes(range(0x40, 0x50))
NID = bytes.fromhex("04a1b2c3d4e5")


def _aes_pair(envelope):
    c = AesPskSuite(PK, NID, role="concentrator", envelope=envelope, send_seq=SEQ)
    d = AesPskSuite(PK, NID, role="device", envelope=envelope, recv_start=SEQ)
    wire, _ = c.seal_request(READ.encode())
    _, _, dctx = d.open_request(wire)
    return c, d.seal_response(dctx, m.Response(0, DATA).encode())


AES_MEP, AES_MEP_RESP = _aes_pair(MEP_AES_ENVELOPE)
AES_MEP_RESP_FRAME = mep.frame(AES_MEP_RESP)


def _rewind(suite):
    ctx = suite.ctx
    ctx.send_seq = SEQ
    ctx.window.highest = -1
    ctx.window.bits = 0
    ctx.usage.count = 0


def transaction_aes():
    _rewind(AES_MEP)
    wire, ctx = AES_MEP.seal_request(READ.encode())
    req = mep.frame(wire)
    apdu = AES_MEP.open_response(ctx, mep.unframe(AES_MEP_RESP_FRAME))
    return m.check_response(m.decode_response(apdu, READ)), req


_CCM = AESCCM(PK, tag_length=8)


def transaction_aes_cryptography():
    # the same envelope with the `cryptography` package's AES-CCM (the obvious
    # alternative) and the counter/window kept by hand
    seq = SEQ
    sb = seq.to_bytes(4, "big")
    req = mep.frame(sb + _CCM.encrypt(b"\x00" + NID + b"\x00\x00" + sb, READ.encode(), sb))
    body = mep.unframe(AES_MEP_RESP_FRAME)
    rs = body[:4]  # (no replay window here: the alternative does less work)
    apdu = _CCM.decrypt(b"\x01" + NID + b"\x00\x00" + rs, body[4:], sb + rs)
    return m.check_response(m.decode_response(apdu, READ)), req


@pytest.mark.benchmark(group="wire-transaction")
def test_transaction_aes_public_api(benchmark):
    assert benchmark(transaction_aes)[0] == DATA


@pytest.mark.benchmark(group="wire-transaction")
def test_transaction_aes_cryptography(benchmark):
    assert benchmark(transaction_aes_cryptography)[0] == DATA


AES_PLC, AES_PLC_APDU = _aes_pair(PLC_AES_ENVELOPE)
AES_PLC_RESP = lon.encode_lpdu(
    lon.Lpdu(lon.Npdu(3, 17, lon.SubnetNode(1, 1), lon.Spdu(2, 1, AES_PLC_APDU)))
)


def transaction_plc_aes():
    _rewind(AES_PLC)
    wire, ctx = AES_PLC.seal_request(READ.encode())
    frame = lon.encode_lpdu(lon.Lpdu(lon.Npdu(1, 1, ME, lon.Spdu(0, 1, wire))))
    lp = lon.decode_lpdu(AES_PLC_RESP)
    apdu = AES_PLC.open_response(ctx, lp.npdu.pdu.apdu)
    return m.check_response(m.decode_response(apdu, READ)), frame


@pytest.mark.benchmark(group="wire-transaction-plc")
def test_transaction_plc_aes(benchmark):
    assert benchmark(transaction_plc_aes)[0] == DATA


AES_PLC_CARRIER = S.PlcCarrier(ME)
PLC_AES_SERVICES = PLC_AES.services


def transaction_plc_aes_carrier():
    _rewind(AES_PLC)
    AES_PLC_CARRIER._trans = 0
    AES_PLC_CARRIER.expected = None
    wire, ctx = AES_PLC.seal_request(READ.encode(PLC_AES_SERVICES))
    frame = AES_PLC_CARRIER.frame(wire)
    _, items = AES_PLC_CARRIER.receive(AES_PLC_RESP)
    apdu = AES_PLC.open_response(ctx, items[0])
    return m.check_response(m.decode_response(apdu, READ, PLC_AES_SERVICES)), frame


@pytest.mark.benchmark(group="wire-transaction-plc")
def test_transaction_plc_aes_carrier(benchmark):
    assert benchmark(transaction_plc_aes_carrier)[0] == DATA
