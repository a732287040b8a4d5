"""Service messages, response codes, procedures, transactions, pending tables."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osgp.errors import ChecksumError, DecodeError, DeviceError, MalformedError, SequenceError
from osgp.services import codes as C
from osgp.services import messages as m
from osgp.services import procedures as P
from osgp.services import transactions as T

from .conftest import load_vectors

V = load_vectors("mep_frames.json")
EX = {e["name"]: e for e in V["exchanges"]}


def test_published_request_apdus_decode():
    assert m.decode_request(bytes.fromhex("3f0017000000002c")) == m.PartialRead(0x17, 0, 44)
    assert m.decode_request(bytes.fromhex("4f083200001e000101")) == m.PartialWrite(
        0x832, 30, b"\x01"
    )
    w = m.decode_request(bytes.fromhex("400007000611080700f803"))
    assert w == m.FullWrite(7, bytes.fromhex("11080700f803"))


def test_ep17_procedure_call_p52():
    # MEP p.52: BT07 data 11 08 07 00 F8 03 = EP17 (0x811), selector 0, PSN 7,
    # action 0, handle 0x03F8
    call = P.ProcedureCall.decode(bytes.fromhex("11080700f803"))
    assert (call.number, call.mfg, call.selector, call.psn, call.params) == (
        17,
        True,
        0,
        7,
        b"\x00\xf8\x03",
    )
    assert P.ProcedureCall(17, 7, b"\x00\xf8\x03", mfg=True).encode().hex() == "11080700f803"
    assert P.ProcedureCall(10, 5, selector=P.SELECT_NONE).encode() == bytes([10, 0x20, 5])


def test_procedure_result():
    r = P.ProcedureResult.decode(bytes([0x11, 0x08, 7, 0, 0xAA]))
    assert r.matches(P.ProcedureCall(17, 7, mfg=True)) and r.check() == b"\xaa"
    with pytest.raises(P.ProcedureError) as ei:
        P.ProcedureResult(0x811, 7, 5).check()
    assert "no authorisation" in str(ei.value) and "EP17 (2065)" in str(ei.value)
    with pytest.raises(P.ProcedureError, match=r"procedure BP10 \(10\) ended with result 2"):
        P.ProcedureResult(10, 7, 2).check()


def test_psn_rules():
    a = P.PsnAllocator()
    got = [a.next() for _ in range(7)]
    assert got == [5, 6, 7, 8, 9, 5, 6]  # MEP clients: 5..9, consecutive values differ
    assert all(x != y for x, y in zip(got, got[1:]))
    b = P.PsnAllocator(254, 255)
    assert b.next() == 254  # never 255 first


def test_published_transaction_images():
    t = T.Transaction.decode(bytes.fromhex(V["transaction_et52_example"]["single"]))
    f = V["transaction_et52_example"]["single_fields"]
    assert (t.txn, t.type) == (f["txn"], f["type"]) and [r.hex() for r in t.records] == f["records"]
    assert t.encode().hex() == V["transaction_et52_example"]["single"]
    # p.45: the six-read transaction in the ET52 write request
    req = m.decode_request(bytes.fromhex(EX["ET52 transaction write, six reads"]["request_apdu"]))
    t6 = T.Transaction.decode(req.data)
    assert t6.txn == 1 and [m.decode_request(r).table for r in t6.records] == [
        0x80B,
        0x14,
        0x15,
        0x804,
        0x80E,
        0x80F,
    ]
    # p.48: the ET53 response read back
    resp = bytes.fromhex(EX["ET53 read of the whole transaction response"]["response"])[5:-8]
    rt = T.Transaction.decode(resp)
    assert rt.type == T.RESPONSES and rt.txn == 1 and len(rt.records) == 6
    rs = [
        m.decode_response(r, q)
        for r, q in zip(rt.records, [m.decode_request(x) for x in t6.records])
    ]
    assert [len(r.data) for r in rs] == [10, 10, 10, 1, 12, 31]


def test_group_transaction_round_trip_and_matching():
    t = T.Transaction(5, (b"\x30\x00\x34",), T.GROUP_REQUEST, (0x01FF, 0x0203))
    assert T.Transaction.decode(t.encode()) == t
    assert T.group_matches([0x01FF], [0x0105]) and T.group_matches([0xFF07], [])
    assert not T.group_matches([0x0203], [0x0204])
    with pytest.raises(MalformedError):
        T.Transaction.decode(t.encode()[:-2] + b"\x06\x00")  # trailing txn differs


def test_response_codes_map_to_device_error():
    for code, name in C.RESPONSE_CODES.items():
        if code in (0, 0x0C):
            continue
        with pytest.raises(DeviceError) as ei:
            m.check_response(m.Response(code))
        assert ei.value.code == code and ei.value.name == name
    with pytest.raises(SequenceError) as ei:
        m.check_response(m.decode_response(bytes.fromhex("0c77635b90")))
    assert ei.value.current == 0x77635B90
    assert C.code_name(0x7E).startswith("unknown")


def test_response_code_is_an_int_enum():
    from enum import IntEnum

    # ANSI C12.18 codes 0x00-0x0A, MEP additions 0x0B and 0x0C (MEP guide p.10-11).
    expect = {"OK": 0x00, "ERR": 0x01, "SNS": 0x02, "ISC": 0x03, "ONP": 0x04, "IAR": 0x05,
              "BSY": 0x06, "DNR": 0x07, "DLK": 0x08, "RNO": 0x09, "ISSS": 0x0A, "AUTH": 0x0B,
              "SEQ": 0x0C}
    assert issubclass(C.ResponseCode, IntEnum)
    assert {c.name: c.value for c in C.ResponseCode} == expect
    assert set(C.RESPONSE_CODES) == set(expect.values())
    assert bytes([C.ResponseCode.ERR, C.ResponseCode.SEQ]) == b"\x01\x0c"
    assert C.ResponseCode.SEQ == 0x0C and C.ResponseCode(0x0B) is C.ResponseCode.AUTH
    assert C.code_name(C.ResponseCode.SEQ) == "invalid sequence number"
    err = C.device_error(C.ResponseCode.IAR)
    assert type(err.code) is int and err.code == 5 and str(err) == (
        "device response 0x05 (inappropriate action requested)")
    assert m.Response(C.ResponseCode.ONP).encode() == m.Response(0x04).encode() == b"\x04"


def test_checksum_profile():
    w = m.PartialWrite(0x34, 1, b"\x10\x20")
    assert w.encode(m.OPTICAL_SERVICES)[-1] == (-(0x30)) & 0xFF
    assert m.decode_request(w.encode(m.OPTICAL_SERVICES), m.OPTICAL_SERVICES) == w
    with pytest.raises(ChecksumError):
        m.decode_request(w.encode(m.OPTICAL_SERVICES)[:-1] + b"\x00", m.OPTICAL_SERVICES)


def test_limits_per_profile():
    # PLC: 84/75 (docs/protocol.md §3.1): a maximal read response and write request are both 95
    # bytes
    assert 1 + 2 + m.PLC_SERVICES.max_read + 8 == 95
    assert 1 + 2 + 3 + 2 + m.PLC_SERVICES.max_write + 4 + 8 == 95
    assert 1 + 2 + 3 + 2 + m.MEP_SERVICES.max_write + 4 + 8 == 476


def test_ped_and_pending_write():
    ped = m.PED(1, bytes([0, 1, 2, 0, 0]), demand_reset=True)
    assert m.PED.decode(ped.encode()) == ped and ped.encode()[0] == 0x21
    w = m.pending_write(54, 10, b"\xaa", ped)
    assert w.table == 4150 and w.offset == 10 and w.data == ped.encode() + b"\xaa"
    assert "after 0w 1d 2h 0m 0s" in ped.describe()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 0xFFFF), st.integers(0, (1 << 24) - 1), st.binary(max_size=120), st.booleans()
)
def test_message_round_trips(table, offset, data, ck):
    prof = m.OPTICAL_SERVICES if ck else m.MEP_SERVICES
    for msg in (
        m.FullRead(table),
        m.PartialRead(table, offset, len(data)),
        m.FullWrite(table, data),
        m.PartialWrite(table, offset, data),
    ):
        assert m.decode_request(msg.encode(prof), prof) == msg
    r = m.Response(0, data)
    assert m.decode_response(r.encode(prof), m.FullRead(table), prof) == r


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_garbage_only_decode_errors(data):
    for fn in (
        m.decode_request,
        lambda d: m.decode_response(d, m.FullRead(1)),
        T.Transaction.decode,
        P.ProcedureResult.decode,
        m.PED.decode,
    ):
        try:
            fn(data)
        except DecodeError as e:
            assert e.layer.startswith("service") and e.offset is not None
