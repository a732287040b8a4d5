"""OSGP-AES-128-PSK reconstruction (osgp.security.aes_psk): handshake, CryptoContext,
replay window, AuthenticationFailure / SequenceError, key usage, key renewal,
broadcast, batch helpers, firmware image MAC.

Expected key material is recomputed here from the RFC 5433 formulas with the
`cryptography` package directly, not with the code under test.  The suite runs
on whichever kernels osgp.crypto uses (native, or the twins with
OSGP_NO_EXTENSIONS=1)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.cmac import CMAC

from osgp.errors import (
    AuthenticationError,
    DecodeError,
    ProtocolError,
    SequenceError,
    TruncatedError,
)
from osgp.security import aes_psk as A

PSK = bytes(range(0x10, 0x20))
ADDR = bytes.fromhex("0123456789ab")  # a Neuron ID


def cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def gkdf(key: bytes, z: bytes, n: int) -> bytes:
    """RFC 5433 s.4, written out independently."""
    return b"".join(cmac(key, i.to_bytes(2, "big") + z) for i in range(1, n // 16 + 2))[:n]


def counter_rng(start: int = 0):
    state = [start]

    def rng(n: int) -> bytes:
        state[0] += 1
        return bytes([state[0] & 0xFF]) * n

    return rng


def handshake(psk_server=PSK, psk_device=PSK, profile=A.DEFAULT_PROFILE):
    srv = A.ConcentratorHandshake(
        {b"meter-1": psk_server}, b"dc-01", profile=profile, rng=counter_rng(0)
    )
    dev = A.DeviceHandshake(psk_device, b"meter-1", profile=profile, rng=counter_rng(100))
    m1 = srv.start()
    m2 = dev.receive_1(m1)
    m3 = srv.receive_2(m2)
    m4 = dev.receive_3(m3)
    srv.receive_4(m4)
    return srv, dev, (m1, m2, m3, m4)


def test_profile_is_documented_as_inferred():
    assert "INFERRED" in A.AesPskProfile.__doc__
    assert "INFERRED" in A.__doc__


def test_full_handshake_and_key_derivation():
    srv, dev, (m1, m2, m3, m4) = handshake()
    assert srv.done and dev.done
    # RFC 5433 s.4 key hierarchy, recomputed with `cryptography`.
    rand_s, rand_p = bytes([1]) * 32, bytes([101]) * 32
    inp = rand_p + b"meter-1" + rand_s + b"dc-01"
    csuite = b"\x00\x00\x00\x00\x00\x01"
    mk = gkdf(PSK, struct.pack(">H", 16) + PSK + csuite + inp, 16)
    out = gkdf(mk, inp, 160)
    assert srv.keys == dev.keys
    assert srv.keys.msk == out[:64] and srv.keys.emsk == out[64:128]
    assert srv.keys.sk == out[128:144] and srv.keys.pk == out[144:160]
    # GPSK-1 layout (RFC 5433 s.12.1): op 1, ID_Server, RAND_Server, CSuite_List.
    assert m1 == b"\x01" + b"\x00\x05dc-01" + rand_s + b"\x00\x06" + csuite
    # GPSK-2's MIC = CMAC(SK, everything after the op-code) (RFC 5433 s.12.2).
    assert m2[-16:] == cmac(out[128:144], m2[1:-16])
    assert m3[-16:] == cmac(out[128:144], m3[1:-16])
    assert m4 == b"\x04\x00\x00" + cmac(out[128:144], b"\x00\x00")
    cs, cd = srv.context(ADDR), dev.context(ADDR)
    assert cd.open(cs.seal(b"read BT00")) == b"read BT00"
    assert cs.open(cd.seal(b"\x00data")) == b"\x00data"


def test_wrong_psk_fails_with_gpsk_fail():
    srv = A.ConcentratorHandshake({b"meter-1": PSK}, b"dc-01")
    dev = A.DeviceHandshake(bytes(16), b"meter-1")
    m2 = dev.receive_1(srv.start())
    with pytest.raises(AuthenticationError):
        srv.receive_2(m2)
    assert srv.failure == b"\x05\x00\x00\x00\x02"  # GPSK-Fail, authentication failure
    with pytest.raises(A.GpskFailure) as ei:
        dev.receive_3(srv.failure)
    assert ei.value.code == 2 and not ei.value.protected
    with pytest.raises(ProtocolError):
        srv.context(ADDR)


def test_unknown_peer_identity():
    srv = A.ConcentratorHandshake({}, b"dc-01")
    dev = A.DeviceHandshake(PSK, b"meter-9")
    with pytest.raises(AuthenticationError):
        srv.receive_2(dev.receive_1(srv.start()))
    assert srv.failure == A.encode_fail(A.FAIL_PSK_NOT_FOUND)


def test_handshake_tampering_and_truncation():
    srv = A.ConcentratorHandshake({b"meter-1": PSK}, b"dc-01")
    dev = A.DeviceHandshake(PSK, b"meter-1")
    m2 = dev.receive_1(srv.start())
    for i in range(1, len(m2)):
        bad = bytearray(m2)
        bad[i] ^= 0x01
        with pytest.raises((AuthenticationError, ProtocolError, DecodeError)):
            srv.receive_2(bytes(bad))
    for cut in range(len(m2)):
        with pytest.raises((DecodeError, ProtocolError)):
            srv.receive_2(m2[:cut])
    with pytest.raises(TruncatedError) as ei:
        srv.receive_2(m2[:-1])
    assert ei.value.layer == "aes_psk.gpsk-2" and ei.value.offset == len(m2) - 16
    m3 = srv.receive_2(m2)
    bad3 = m3[:-1] + bytes([m3[-1] ^ 0x80])
    with pytest.raises(AuthenticationError):
        dev.receive_3(bad3)


def test_nonce_and_frame_layout_checked_with_cryptography():
    srv, dev, _ = handshake()
    cs = srv.context(ADDR, key_id=7, send_seq=0x01020304)
    frame = cs.seal(b"payload", header=b"HDR")
    # INFERRED layout: seq(4 BE) || CCM; nonce = flags || address || key id || seq.
    assert frame[:4] == b"\x01\x02\x03\x04"
    nonce = b"\x00" + ADDR + b"\x00\x07" + b"\x01\x02\x03\x04"
    expect = AESCCM(srv.keys.pk, tag_length=8).encrypt(nonce, b"payload", b"HDR" + frame[:4])
    assert frame[4:] == expect


def test_replay_reorder_window_and_tampering():
    srv, dev, _ = handshake()
    cs, cd = srv.context(ADDR), dev.context(ADDR)
    frames = [cs.seal(bytes([i])) for i in range(80)]
    # reordering inside the window is accepted
    for i in (4, 0, 2, 1, 3):
        assert cd.open(frames[i]) == bytes([i])
    # replay rejected, with the next expected number
    with pytest.raises(SequenceError) as ei:
        cd.open(frames[2])
    assert ei.value.received == 2 and ei.value.expected == 5
    # jump ahead, then a number that fell out of the 64-entry window
    assert cd.open(frames[79]) == bytes([79])
    with pytest.raises(SequenceError):
        cd.open(frames[10])
    assert cd.open(frames[40]) == bytes([40])
    # tampering: rejected, and the window does not move
    f = cs.seal(b"x")
    for i in range(len(f)):
        bad = bytearray(f)
        bad[i] ^= 0x04
        with pytest.raises((AuthenticationError, SequenceError)):
            cd.open(bytes(bad))
    with pytest.raises(AuthenticationError):
        cd.open(f, header=b"other header")
    assert cd.open(f) == b"x"
    # reflection: a concentrator frame does not open on the concentrator side
    with pytest.raises(AuthenticationError):
        cs.open(cs.seal(b"reflect"))
    with pytest.raises(TruncatedError):
        cd.open(b"\x00\x00\x00")


def test_too_far_ahead_is_a_sequence_error():
    profile = dataclasses.replace(A.DEFAULT_PROFILE, max_ahead=100)
    srv, dev, _ = handshake(profile=profile)
    cs, cd = srv.context(ADDR, send_seq=1000), dev.context(ADDR)
    with pytest.raises(SequenceError):
        cd.open(cs.seal(b"far"))


def test_authentication_failure_and_sequence_error_outcomes():
    srv, dev, _ = handshake()
    cs, cd = srv.context(ADDR), dev.context(ADDR)
    req = cs.seal(b"\x30\x00\x00")
    resp = cd.respond(req, lambda p: b"\x00" + p)
    assert cs.receive_response(resp) == b"\x00\x30\x00\x00"
    # replayed request -> SequenceError response (sealed: 0x0C + next seq)
    resp = cd.respond(req, lambda p: b"\x00")
    with pytest.raises(SequenceError) as ei:
        cs.receive_response(resp)
    assert ei.value.expected == 1
    # forged request -> AuthenticationFailure response: the single byte 0x0B in clear
    forged = cs.seal(b"\x40")
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    resp = cd.respond(forged, lambda p: b"\x00")
    assert resp == b"\x0b"
    with pytest.raises(AuthenticationError):
        cs.receive_response(resp)


def test_sequence_error_resynchronises_the_sender():
    srv, dev, _ = handshake()
    cs, cd = srv.context(ADDR), dev.context(ADDR)
    for _ in range(5):
        cd.open(cs.seal(b"."))
    cs.send_seq = 2  # e.g. the concentrator lost its state
    resp = cd.respond(cs.seal(b"again"), lambda p: b"\x00")
    with pytest.raises(SequenceError) as ei:
        cs.receive_response(resp)
    assert ei.value.expected == 5 and cs.send_seq == 5
    assert cd.open(cs.seal(b"ok")) == b"ok"


def test_key_usage_warning_and_limit():
    profile = dataclasses.replace(A.DEFAULT_PROFILE, max_key_usage=10)
    srv, dev, _ = handshake(profile=profile)
    cs, cd = srv.context(ADDR), dev.context(ADDR)
    for _ in range(7):
        cd.open(cs.seal(b"."))
    assert not cd.usage.warning and cd.usage.events == []
    bad = cs.seal(b".")
    with pytest.raises(AuthenticationError):
        cd.open(bad[:-1] + bytes([bad[-1] ^ 1]))  # failed attempts count too (ET54)
    assert cd.usage.count == 8 and cd.usage.warning  # 80 % of 10 (ET04 offset 123)
    assert len(cd.usage.events) == 1
    cd.open(cs.seal(b"."))
    cd.open(cs.seal(b"."))
    with pytest.raises(ProtocolError):
        cd.open(cs.seal(b"."))
    with pytest.raises(ProtocolError):
        cs.seal(b".")
    assert cs.usage.count == 10


def test_key_renewal_unicast_and_domain_keys():
    srv, dev, _ = handshake()
    cs, cd = srv.context(ADDR), dev.context(ADDR)
    rand = bytes(range(16))
    new = A.renew_key(srv.keys.pk, 1, rand)
    assert new == gkdf(srv.keys.pk, b"OSGP key renewal" + b"\x00\x01" + rand, 16)
    # transport the renewal under the current key, then switch on both sides
    kind, key_id, key = A.unwrap_key(cd, A.wrap_key(cs, new, 1))
    assert (kind, key_id, key) == (1, 1, new)
    old_frame = cs.seal(b"old key")
    cs.renew(new, 1)
    cd.renew(key, key_id)
    assert cd.open(cs.seal(b"new key")) == b"new key"
    with pytest.raises((AuthenticationError, SequenceError)):
        cd.open(old_frame)
    # a domain (broadcast) key delivered to the device under the renewed unicast key
    domain = bytes([0x5A]) * 16
    assert A.unwrap_key(cd, A.wrap_key(cs, domain, 3, kind=2)) == (2, 3, domain)


def test_broadcast_to_a_group():
    group = b"\xff\xff\x00\x00\x00\x2a"
    gk = bytes([0x42]) * 16
    tx = A.BroadcastSender(gk, group, key_id=3, seq_range=(100, 105))
    rxs = [A.BroadcastReceiver(gk, group, key_id=3, seq_range=(100, 105)) for _ in range(3)]
    frames = [tx.seal(bytes([i]) * 3) for i in range(5)]
    nonce = b"\x02" + group + b"\x00\x03" + struct.pack(">I", 100)
    assert frames[0][4:] == AESCCM(gk, tag_length=8).encrypt(nonce, b"\x00" * 3, frames[0][:4])
    for rx in rxs:
        for i in (1, 0, 4, 2, 3):
            assert rx.open(frames[i]) == bytes([i]) * 3
        with pytest.raises(SequenceError):
            rx.open(frames[3])
    with pytest.raises(ProtocolError):
        tx.seal(b"range exhausted")
    # a number outside the key's range is refused before decryption
    other = A.BroadcastSender(gk, group, key_id=3, seq_range=(105, 200))
    with pytest.raises(SequenceError):
        rxs[0].open(other.seal(b"x"))
    # a wrong group key or tampering is an authentication failure
    rx = A.BroadcastReceiver(bytes(16), group, key_id=3, seq_range=(100, 105))
    with pytest.raises(AuthenticationError):
        rx.open(frames[0])
    rx = A.BroadcastReceiver(gk, group, key_id=3, seq_range=(100, 105))
    with pytest.raises(AuthenticationError):
        rx.open(frames[0][:-1] + bytes([frames[0][-1] ^ 1]))
    assert rx.open(frames[0]) == b"\x00" * 3
    # a broadcast frame never opens as a unicast one (flags byte of the nonce)
    ctx = A.CryptoContext(gk, group, role="device", key_id=3)
    with pytest.raises(AuthenticationError):
        ctx.open(tx_frame := A.BroadcastSender(gk, group, key_id=3).seal(b"b"))
    assert tx_frame[:4] == b"\x00\x00\x00\x00"


def test_batch_helpers_for_many_devices():
    devices = []
    for i in range(12):
        addr = bytes([0, 0, 0, 0, 0, i])
        key = bytes([i]) * 16
        devices.append(
            (
                A.CryptoContext(key, addr, role="concentrator"),
                A.CryptoContext(key, addr, role="device"),
            )
        )
    conc = [c for c, _ in devices]
    frames = A.seal_for_devices(conc, [bytes([i]) * i for i in range(12)], header=b"H")
    for i, (_, dev) in enumerate(devices):
        assert dev.open(frames[i], header=b"H") == bytes([i]) * i
    replies = [dev.seal(b"reply %d" % i, header=b"H") for i, (_, dev) in enumerate(devices)]
    replies[4] = replies[4][:-1] + bytes([replies[4][-1] ^ 1])
    replies[7] = b"\x00"
    got, ok = A.open_from_devices(conc, replies, header=b"H")
    assert [g is None for g in got] == [i in (4, 7) for i in range(12)]
    assert ok == bytes(i not in (4, 7) for i in range(12))
    assert got[0] == b"reply 0"
    # the window moved only for the authentic ones: replaying them fails now
    again, ok = A.open_from_devices(conc, replies, header=b"H")
    assert again == [None] * 12 and ok == bytes(12)


def test_firmware_image_mac():
    key = bytes(range(16))
    image = bytes(range(256)) * 300
    mac = A.firmware_image_mac(key, image)
    assert mac == cmac(key, image)
    A.verify_firmware_image(key, image, mac, length=len(image))
    with pytest.raises(AuthenticationError):
        A.verify_firmware_image(key, image[:-1] + b"\x00", mac)
    with pytest.raises(AuthenticationError):
        A.verify_firmware_image(key, image, mac, length=len(image) + 1)


def test_primitives_under_annex_f_names():
    key, nonce = bytes(16), bytes(13)
    ct = A.osgp_ae(key, nonce, b"m", b"a")
    assert ct == AESCCM(key, tag_length=8).encrypt(nonce, b"m", b"a")
    assert A.osgp_ad(key, nonce, ct, b"a") == b"m"
    assert A.osgp_mac(key, b"m") == cmac(key, b"m")
    assert A.osgp_kdf(key, b"z", 40) == gkdf(key, b"z", 40)
    assert len(A.csprg(32)) == 32 and A.csprg(32) != A.csprg(32)


def test_replay_window_unit():
    w = A.ReplayWindow(size=8)
    for s in (0, 1, 5, 3):
        w.check(s)
        w.commit(s)
    for s in (0, 1, 3, 5):
        with pytest.raises(SequenceError):
            w.check(s)
    w.check(2)
    w.check(4)
    w.commit(20)
    with pytest.raises(SequenceError):
        w.check(12)  # 20 - 12 = 8: outside an 8-entry window
    w.check(13)
    assert w.expected == 21


def test_protected_fail():
    srv, dev, _ = handshake()
    # a fresh device that has sent GPSK-2 and receives a Protected-Fail instead of GPSK-3
    srv2 = A.ConcentratorHandshake({b"meter-1": PSK}, b"dc-01")
    dev2 = A.DeviceHandshake(PSK, b"meter-1")
    srv2.receive_2(dev2.receive_1(srv2.start()))
    pf = A.encode_protected_fail(srv2.keys.sk, A.FAIL_AUTHORIZATION)
    assert pf == b"\x06\x00\x00\x00\x03" + cmac(srv2.keys.sk, b"\x00\x00\x00\x03")
    with pytest.raises(A.GpskFailure) as ei:
        dev2.receive_3(pf)
    assert ei.value.code == 3 and ei.value.protected
    forged = pf[:-1] + bytes([pf[-1] ^ 1])
    with pytest.raises(AuthenticationError):
        dev2.receive_3(forged)
