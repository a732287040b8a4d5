"""The legacy suite: RC4 key derivation per profile, sealing, sequence windows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from osgp.errors import AuthenticationError, ConfigurationError, SequenceError
from osgp.security import legacy as L

from .conftest import load_vectors

REF = load_vectors("osgp_reference_vectors.json")
MEP_FRAMES = load_vectors("mep_guide_frames.json")
H = bytes.fromhex


def test_mep_base_key_and_request_encryption():
    v = REF["mep_rc4_derived"]
    assert H(v["const_key"]) == L.MEP_CONST_KEY
    assert L.mep_base_key(H(v["mak"])) == H(v["mep_encrypt_key"])
    cipher, digest, _ = L.MEP.seal(H(v["mak"]), H(v["request_plain"]))
    assert digest == H(v["request_digest"])
    assert cipher == H(v["request_cipher"])


@pytest.mark.parametrize("v", REF["osgp_rc4_derived"], ids=lambda v: v["omak"])
def test_plc_base_key(v):
    assert L.plc_base_key(H(v["omak"])) == H(v["base_key"])


def test_plc_seal_vector():
    (v,) = [x for x in REF["osgp_rc4_derived"] if "plaintext" in x]
    assert L.message_key(H(v["base_key"]), H(v["tag"])) == H(v["per_message_key_for_oma_vector"])
    cipher, tag, _ = L.PLC.seal(H(v["omak"]), H(v["plaintext"]))
    assert (cipher, tag) == (H(v["ciphertext"]), H(v["tag"]))
    plain, _ = L.PLC.open(H(v["omak"]), cipher, tag)
    assert plain == H(v["plaintext"])


def test_mep_response_continues_keystream():
    """Encrypted MEP exchange built from the guide's plaintext example (App. B):
    the response is decrypted by continuing the request's RC4 stream, and its
    digest (over plaintext request || response) is the published one."""
    key = H(MEP_FRAMES["key"])
    ex = MEP_FRAMES["exchanges"][1]
    req_msg = H(ex["request_frame"])[2:-8]
    resp_msg, resp_digest = H(ex["response_frame"])[2:-8], H(ex["response_frame"])[-8:]
    req_cipher, req_digest, server_stream = L.MEP.seal(key, req_msg)
    # server: decrypt the request, encrypt the response on the same stream
    plain, server_stream = L.MEP.open(key, req_cipher, req_digest)
    assert plain == req_msg
    resp_cipher = server_stream.process(resp_msg)
    assert resp_cipher != resp_msg
    # client: its own stream is positioned after the request
    _, _, client_stream = L.MEP.seal(key, req_msg)
    assert client_stream.process(resp_cipher) == resp_msg
    from osgp import crypto

    assert crypto.oma_digest(key, req_msg + resp_msg) == resp_digest
    assert L.MEP.response_continues_keystream and not L.PLC.response_continues_keystream


@given(
    msg=st.binary(max_size=120), key=st.binary(min_size=12, max_size=12), flip=st.integers(0, 1000)
)
def test_plc_open_rejects_any_bit_flip(msg, key, flip):
    cipher, tag, _ = L.PLC.seal(key, msg)
    assert L.PLC.open(key, cipher, tag)[0] == msg
    blob = bytearray(cipher + tag)
    bit = flip % (8 * len(blob))
    blob[bit // 8] ^= 1 << (bit % 8)
    # A flip in the tag changes the RC4 key; a flip in the ciphertext the plaintext.
    # Zero padding lets a few plaintexts collide only by appending zeros, never by flips.
    with pytest.raises(AuthenticationError):
        L.PLC.open(key, bytes(blob[: len(cipher)]), bytes(blob[len(cipher) :]))


def test_key_size_errors():
    with pytest.raises(ConfigurationError, match="12 bytes"):
        L.plc_base_key(bytes(16))
    with pytest.raises(ConfigurationError, match="MEP access key"):
        L.mep_base_key(bytes(12))
    with pytest.raises(ConfigurationError):
        L.MEP.seal(bytes(21), b"x")
    with pytest.raises(TypeError):
        L.PLC.seal("not bytes", b"x")
    with pytest.raises(ConfigurationError):
        L.message_key(bytes(15), bytes(8))


def test_mep_twenty_byte_key_uses_first_sixteen():
    # MEP p.13-15: keys are up to 20 bytes; digest and RC4 use the first 16.
    long_key = bytes(range(20))
    assert (
        L.MEP.seal(long_key, b"\x30\x00\x01")[:2] == L.MEP.seal(long_key[:16], b"\x30\x00\x01")[:2]
    )


def test_sequence_window_mep_example():
    # MEP p.15: server at 0x77635B90 rejects 0x01020304 with 0x0C + 77635B90,
    # then accepts the client's 0x77635B91.
    w = L.SequenceWindow(0x77635B90)
    with pytest.raises(SequenceError) as exc:
        w.accept(0x01020304)
    assert exc.value.current == 0x77635B90
    assert exc.value.expected == 0x77635B91
    client = L.SequenceCounter(0x01020304)
    client.resync(exc.value.current)
    seq = client.next()
    assert seq == 0x77635B91
    w.accept(seq)
    assert w.current == seq


def test_sequence_window_bounds_and_wrap():
    w = L.SequenceWindow(0xFFFFFFFE)
    with pytest.raises(SequenceError, match="reused"):
        w.check(0xFFFFFFFE)
    for ahead in range(1, 9):
        w.check((0xFFFFFFFE + ahead) % 2**32)  # 1..8 ahead accepted, across the wrap
    with pytest.raises(SequenceError, match="outside"):
        w.check((0xFFFFFFFE + 9) % 2**32)
    with pytest.raises(SequenceError, match="outside"):
        w.check(0xFFFFFFFD)  # behind
    w.accept(3)  # 5 ahead across the wrap
    assert w.current == 3


def test_retries_count_against_the_window():
    # Each retry takes a fresh number (MEP p.11); 8 lost exchanges are still accepted.
    w, c = L.SequenceWindow(100), L.SequenceCounter(100)
    for _ in range(7):
        c.next()  # lost requests
    w.accept(c.next())
    for _ in range(8):
        c.next()
    with pytest.raises(SequenceError):
        w.accept(c.next())
