"""The reconstructed ATM messages (osgp.services.atm): byte layouts written
out by hand from the documented field lists, the Neuron ID hash against the
standard library's CRC, and bad input answered by DecodeErrors naming the
layer and offset."""

from __future__ import annotations

import binascii
import random

import pytest

from osgp.errors import ConfigurationError, DecodeError, MalformedError, TruncatedError
from osgp.services import atm

NID = bytes.fromhex("313233343536")


def test_the_hash_is_the_lontalk_crc_of_the_neuron_id():
    for nid in (bytes(6), NID, bytes.fromhex("04a1b2c3d4e5")):
        assert atm.nid_hash(nid) == binascii.crc_hqx(nid, 0xFFFF) ^ 0xFFFF
    assert atm.ack_tag(NID) == b"456"


def test_discover_layout():
    m = atm.Discover(1, 1, 0, 0xFFFF, 16, 200, atm.UNCONFIGURED_ONLY, (b"abc",))
    # code, session, hops, lo:2, hi:2, slots, slot_ms:2, flags, n, tags
    wire = bytes.fromhex("18 01 01 0000 ffff 10 00c8 01 01 616263")
    assert atm.encode(m) == wire
    assert atm.decode(wire) == (atm.DISCOVER, m)
    assert atm.encode(m, proxy=True) == b"\x1a" + wire[1:]
    assert atm.decode(b"\x1a" + wire[1:]) == (atm.PROXY_DISCOVER, m)
    assert m.window_s == pytest.approx(3.2)
    assert m.covers(NID) and not atm.Discover(1, 1, 0, 0xFFFF, 1, 1, 0, (b"456",)).covers(NID)


def test_reply_and_report_layouts():
    r = atm.Reply(NID, 2, 80.5, 40.25, "SIM1")
    # code, session, nid, hops, ssi and margin in 1/16 dB (signed 16-bit), flags, serial
    wire = bytes.fromhex("19 03 313233343536 02 0508 0284 00 04 53494d31")
    assert atm.encode(r, session=3) == wire
    assert atm.decode(wire) == (atm.REPLY, (3, r))
    e = atm.Reply(NID, 2, 80.5, 40.25, "SIM1", True, 70.0, -4.5)
    rep = atm.Report(1, 1, 0, (e,))
    wire = bytes.fromhex("1b 01 01 00 01 313233343536 02 0508 0284 0460 ffb8 01 04 53494d31")
    assert atm.encode(rep) == wire
    assert atm.decode(wire, response=True) == (atm.REPORT, rep)
    assert atm.decode(bytes.fromhex("1b0102"), response=False) == (
        atm.REPORT,
        atm.ReportRequest(1, 2),
    )
    assert atm.decode(bytes.fromhex("1a000bb8"), response=True) == (
        atm.PROXY_DISCOVER,
        atm.ProxyAccepted(0, 3000),
    )


def test_update_domain_is_the_iso_14908_layout():
    m = atm.UpdateDomain(9, 17)
    # 0x63, index, domain id padded to 6, subnet, node, domain length, 6-byte key
    wire = bytes.fromhex("63 00 000000000000 09 11 00 000000000000")
    assert atm.encode(m) == wire
    assert atm.decode(wire) == (atm.UPDATE_DOMAIN, m)
    assert atm.decode(b"\x23") == (0x23, True) and atm.decode(b"\x03") == (0x03, False)


def test_commission_body_and_result():
    m = atm.Commission(9, 17, (3, 7), bytes(range(12)), b"\x42")
    body = bytes.fromhex("01 42 09 11 02 0307") + bytes(range(12))
    assert atm.encode(m) == body
    assert atm.decode_commission(body) == m
    res = atm.CommissionResult(0, NID, 9, 17)
    assert atm.encode(res) == bytes.fromhex("1c 00 313233343536 09 11")
    assert atm.decode(atm.encode(res), response=True) == (atm.COMMISSION, res)


@pytest.mark.parametrize(
    "wire, kind, offset",
    [
        (b"", TruncatedError, 0),
        (bytes.fromhex("18 01 01 0000"), TruncatedError, 5),
        (bytes.fromhex("18 01 00 0000 ffff 10 00c8 00 00"), MalformedError, 3),  # hops 0
        (bytes.fromhex("18 01 01 ffff 0000 10 00c8 00 00"), MalformedError, 3),  # lo > hi
        (bytes.fromhex("18 01 01 0000 ffff 10 00c8 00 19") + bytes(75), MalformedError, 11),
        (bytes.fromhex("18 01 01 0000 ffff 10 00c8 00 00 ff"), MalformedError, 12),  # trailing
        (bytes.fromhex("19 03 313233343536 02 0508 0284 00 11") + bytes(17), MalformedError, 14),
        (bytes.fromhex("19 03 313233343536 02 0508 0284 00 01 ff"), MalformedError, 15),
        (bytes.fromhex("77"), MalformedError, 0),
    ],
)
def test_bad_input_names_layer_and_offset(wire, kind, offset):
    with pytest.raises(kind) as e:
        atm.decode(wire)
    assert e.value.layer == "atm" and e.value.offset == offset


def test_bad_commission_bodies():
    for body, offset in ((bytes([2]), 0), (bytes.fromhex("00 00 11 00"), 1), (bytes(4), 1)):
        with pytest.raises(DecodeError) as e:
            atm.decode_commission(body)
        assert e.value.layer == "atm" and e.value.offset == offset


def test_encoders_refuse_what_cannot_be_sent():
    with pytest.raises(ConfigurationError):
        atm.encode(atm.Discover(1, 1, 0, 1, 16, 100, 0, (b"abc",) * 25))
    with pytest.raises(ConfigurationError):
        atm.encode(atm.Discover(1, 0, 0, 1, 16, 100))
    with pytest.raises(ConfigurationError):
        atm.encode(atm.Commission(1, 200, (), bytes(12)))
    with pytest.raises(ConfigurationError):
        atm.encode(atm.Reply(NID, 1, 4000.0, 0.0))
    with pytest.raises(ConfigurationError):
        atm.encode(object())


def test_pages_fit_the_apdu():
    entries = [
        atm.Reply(bytes([i]) * 6, 1, 60.0, 20.0, f"SIM{i:07d}", False, 60.0, 20.0)
        for i in range(20)
    ]
    pages = atm.paginate(entries)
    assert sum(len(p) for p in pages) == 20
    for i, p in enumerate(pages):
        assert len(atm.encode(atm.Report(1, 20, i, p))) <= atm.MAX_APDU


def test_random_bytes_only_raise_decode_errors():
    rng = random.Random(11)
    seeds = [
        atm.encode(atm.Discover(1, 1, 0, 9, 4, 100, 0, (b"abc",))),
        bytes.fromhex("1b01010001"),
    ]
    for _ in range(3000):
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(3)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        data = bytes(b[: rng.randrange(len(b) + 1)])
        for fn in (atm.decode, lambda d: atm.decode(d, response=True), atm.decode_commission):
            try:
                fn(data)
            except DecodeError as e:
                assert e.layer == "atm" and e.offset is not None
