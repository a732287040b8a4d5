"""Wire benchmarks (issue #4).

* wire-transaction: one complete MEP transaction through the public API
  (build the request, secure it, verify and parse the response), legacy
  suite; against the same steps on the pure-Python twins.  Goal <= 10 us.
* wire-transaction-plc: the same over PLC (LonTalk LPDU + PLC envelope).
* wire-batch: batch frame decoding (parse + digest check) per core, native
  against the twin.  Goal >= 1 million frames/s.

    python -m pytest benches/bench_wire.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest

from osgp import _backend
from osgp.link import lon, mep
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.services import messages as m

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
    status, _, _ = benchmark(NATIVE.mep_request_check_batch, KEY, data, offs)
    assert not status.any()
    benchmark.extra_info["frames"] = len(offs) - 1


@pytest.mark.benchmark(group="wire-batch")
def test_batch_mep_twin(benchmark):
    data, offs = SMALL
    status, _, _ = benchmark(REF.mep_request_check_batch, KEY, data, offs)
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
