"""AES-128 / CCM / CMAC / KDF kernels: published vectors, the independent
`cryptography` implementation, property tests, misuse, and the dispatch paths.

Every test taking the ``aes`` fixture runs on the native module and on its
twin; tests taking ``path`` additionally run the native module on each AES
path this CPU has (hardware and the constant-time portable one)."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
from array import array
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osgp import _backend
from osgp.errors import AuthenticationError, ConfigurationError

from .conftest import NO_EXTENSIONS, VECTORS, implementations, load_vectors

cryptography_vectors = pytest.importorskip("cryptography_vectors")

TAGS = (4, 6, 8, 10, 12, 14, 16)
NONCES = tuple(range(7, 14))


# ---- helpers ---------------------------------------------------------------------


def ref_ccm_seal(key, nonce, pt, aad, tag):
    return AESCCM(key, tag_length=tag).encrypt(nonce, pt, aad)


def ref_cmac(key, msg):
    c = CMAC(algorithms.AES(key))
    c.update(msg)
    return c.finalize()


def _paths():
    """(module, path-name) pairs: the twin, and the native module on every path."""
    out = [pytest.param((_backend.reference("aes"), None), id="reference")]
    nat = _backend.native_module("aes")
    if nat is not None:
        out.append(pytest.param((nat, "default"), id="native-default"))
        out.append(pytest.param((nat, "portable"), id="native-portable"))
        if {"aesni", "avx2"} <= nat.cpu_features():
            # AES-NI without AVX2: the 128-bit kernels instead of the VAES one
            out.append(pytest.param((nat, "aesni-only"), id="native-aesni-only"))
    return out


@pytest.fixture(params=_paths())
def path(request):
    mod, name = request.param
    if name == "portable":
        mod.set_cpu_features(())
        assert mod.aes_path() == "portable"
    elif name == "aesni-only":
        mod.set_cpu_features(("aesni", "sse2", "ssse3", "sse41", "pclmul"))
        assert mod.aes_path() == "aesni"
    yield mod
    if name is not None:
        mod.set_cpu_features(None)


# ---- loading and the dispatch ------------------------------------------------------


def test_native_really_loaded():
    if NO_EXTENSIONS:
        pytest.skip("OSGP_NO_EXTENSIONS=1")
    mod = _backend.native_module("aes")
    assert mod is not None, _backend.import_errors()
    import osgp.crypto

    assert osgp.crypto.ccm_seal is mod.ccm_seal
    assert osgp.crypto.AesKey is mod.AesKey


def test_set_cpu_features_switches_path(aes_native):
    try:
        aes_native.set_cpu_features(())
        assert aes_native.aes_path() == "portable"
        assert aes_native.cpu_features() == frozenset()
    finally:
        aes_native.set_cpu_features(None)
    hw = aes_native.cpu_features()
    expected = "aesni" if "aesni" in hw else "armce" if "armaes" in hw else "portable"
    assert aes_native.aes_path() == expected
    with pytest.raises(ConfigurationError):
        aes_native.set_cpu_features(["no-such-feature"])


def test_osgp_cpu_portable_environment(aes_native):
    """OSGP_CPU=portable (csrc/osgp_cpu.c) forces the portable path at start-up."""
    code = (
        "from osgp._native import aes;"
        "assert aes.aes_path() == 'portable', aes.aes_path();"
        "k = bytes(range(16));"
        "print(aes.encrypt_block(k, bytes.fromhex('00112233445566778899aabbccddeeff')).hex())"
    )
    env = dict(os.environ, OSGP_CPU="portable")
    # Import osgp from wherever this run imports it (source tree or installed wheel).
    import osgp

    where = str(Path(osgp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = where + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "69c4e0d86a7b0430d8cdb78070b4c55a"


# ---- published vectors ---------------------------------------------------------------


def test_fips197_appendix_c1(path):
    # FIPS-197 Appendix C.1 (AES-128).
    key = bytes(range(16))
    pt = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert path.encrypt_block(key, pt).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"
    assert path.AesKey(key).encrypt_block(pt).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


def test_fips197_appendix_b(path):
    # FIPS-197 Appendix B (cipher example).
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    pt = bytes.fromhex("3243f6a8885a308d313198a2e0370734")
    assert path.encrypt_block(key, pt).hex() == "3925841d02dc09fbdc118597196a0b32"


def test_every_sbox_input_in_the_first_round(path):
    """Plaintext = key ^ (v repeated): after the first AddRoundKey every state
    byte is v, so 16 blocks put each of the 256 bytes through the first
    round's SubBytes; each block is compared with `cryptography`'s ECB."""
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    key = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    for hi in range(16):
        values = [16 * hi + j for j in range(16)]
        blocks = b"".join(bytes(k ^ v for k in key) for v in values)
        expected = ecb.update(blocks)
        got = b"".join(path.encrypt_block(key, blocks[i : i + 16]) for i in range(0, 256, 16))
        assert got == expected, f"S-box inputs {values[0]:#04x}..{values[-1]:#04x}"


def test_twin_aes128_key_schedule_and_sbox():
    """The pure-Python AES-128 of the twin: the last round key of the FIPS-197
    A.1 expansion, S-box entries of FIPS-197 5.1.1 / Figure 7, and random blocks
    against `cryptography`'s ECB."""
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    from osgp._reference import _aes128

    k = _aes128.Aes128(bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c"))
    assert k._rk[40:] == (0xD014F9A8, 0xC9EE2589, 0xE13F0CC8, 0xB6630CA6)
    assert (_aes128._SBOX[0x00], _aes128._SBOX[0x53], _aes128._SBOX[0xFF]) == (0x63, 0xED, 0x16)
    assert sorted(_aes128._SBOX) == list(range(256))
    rng = random.Random(197)
    for _ in range(200):
        key, block = rng.randbytes(16), rng.randbytes(16)
        enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        assert _aes128.Aes128(key).encrypt_block(block) == enc.update(block) + enc.finalize()


def test_twin_does_not_need_cryptography():
    """The AES twin runs with the `cryptography` package made unimportable."""
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "cryptography" or name.startswith("cryptography."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from osgp._reference import aes
k = bytes(range(16))
assert aes.encrypt_block(k, bytes.fromhex("00112233445566778899aabbccddeeff")).hex() == \
    "69c4e0d86a7b0430d8cdb78070b4c55a"
assert aes.ccm_open(k, bytes(13), aes.ccm_seal(k, bytes(13), b"x")) == b"x"
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_rfc3610_and_sp800_38c_examples(path):
    for v in load_vectors("rfc3610_ccm.json")["vectors"]:
        key, nonce, aad, pt = (bytes.fromhex(v[k]) for k in ("key", "nonce", "aad", "plaintext"))
        sealed = bytes.fromhex(v["sealed"])
        assert path.ccm_seal(key, nonce, pt, aad, v["tag_len"]) == sealed, v["name"]
        assert path.ccm_open(key, nonce, sealed, aad, v["tag_len"]) == pt, v["name"]


def _nist_cmac_txt():
    with cryptography_vectors.open_vector_file(
        os.path.join("CMAC", "nist-800-38b-aes128.txt"), "r"
    ) as f:
        rec, out = {}, []
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            k, _, v = line.partition("=")
            rec[k.strip()] = v.strip()
            if k.strip() == "OUTPUT":
                out.append(rec)
                rec = {}
    return out


def test_rfc4493_examples(path):
    # cryptography-vectors CMAC/nist-800-38b-aes128.txt = the SP 800-38B D.1 /
    # RFC 4493 s.4 examples (empty, 16, 40 and 64 bytes).
    vs = _nist_cmac_txt()
    assert len(vs) == 4
    for v in vs:
        key, msg = bytes.fromhex(v["KEY"]), bytes.fromhex(v["MESSAGE"])
        assert path.aes_cmac(key, msg).hex() == v["OUTPUT"]
        assert path.AesKey(key).aes_cmac(msg).hex() == v["OUTPUT"]


def _cavp_cmac():
    with open(VECTORS / "nist-cmac-cavp-aes128.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_cavp_cmac_gen_and_ver(path):
    vs = _cavp_cmac()
    assert len(vs) > 300
    for v in vs:
        key, msg = bytes.fromhex(v["key"]), bytes.fromhex(v["msg"])
        tag = path.aes_cmac(key, msg, v["mac_len"])
        assert (tag.hex() == v["mac"]) == (v["result"] == "pass"), v


def _parse_rsp(name):
    """CAVP CCM .rsp: section headers [A = x, ...], file-level and section-level
    fields, then Count records.  Yields one dict per record with the lengths
    in force."""
    with cryptography_vectors.open_vector_file(
        os.path.join("ciphers", "AES", "CCM", name), "r"
    ) as f:
        lines = f.read().splitlines()
    ctx: dict[str, str] = {}
    rec: dict[str, str] | None = None
    out = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if rec is not None:
                out.append(rec)
                rec = None
            for part in line.strip("[]").split(","):
                k, _, v = part.partition("=")
                ctx[k.strip()] = v.strip()
            continue
        k, _, v = line.partition("=")
        k, v = k.strip(), v.strip()
        if k == "Count":
            if rec is not None:
                out.append(rec)
            rec = dict(ctx)
        if rec is None:
            ctx[k] = v
        else:
            rec[k] = v
    if rec is not None:
        out.append(rec)
    return out


def _field(rec, name, length_key):
    n = int(rec[length_key])
    return bytes.fromhex(rec[name])[:n]


@pytest.mark.parametrize("fname", ["VADT128.rsp", "VNT128.rsp", "VPT128.rsp", "VTT128.rsp"])
def test_cavp_ccm_encrypt(path, fname):
    recs = _parse_rsp(fname)
    assert len(recs) >= 70
    for r in recs:
        key, nonce = bytes.fromhex(r["Key"]), bytes.fromhex(r["Nonce"])
        aad, pt = _field(r, "Adata", "Alen"), _field(r, "Payload", "Plen")
        tag = int(r["Tlen"])
        ct = bytes.fromhex(r["CT"])
        assert path.ccm_seal(key, nonce, pt, aad, tag) == ct, (fname, r["Count"])
        assert path.ccm_open(key, nonce, ct, aad, tag) == pt


def test_cavp_ccm_dvpt(path):
    recs = _parse_rsp("DVPT128.rsp")
    assert len(recs) == 240
    fails = 0
    for r in recs:
        key, nonce = bytes.fromhex(r["Key"]), bytes.fromhex(r["Nonce"])
        aad = _field(r, "Adata", "Alen")
        tag = int(r["Tlen"])
        ct = bytes.fromhex(r["CT"])
        if r["Result"].lower().startswith("pass"):
            assert path.ccm_open(key, nonce, ct, aad, tag) == _field(r, "Payload", "Plen")
        else:
            fails += 1
            with pytest.raises(AuthenticationError):
                path.ccm_open(key, nonce, ct, aad, tag)
    assert fails > 0


def test_wycheproof_ccm(path):
    data = load_vectors("wycheproof_aes_ccm_128.json")
    n = 0
    for g in data["testGroups"]:
        tag = g["tagSize"] // 8
        for t in g["tests"]:
            n += 1
            key, nonce = bytes.fromhex(t["key"]), bytes.fromhex(t["iv"])
            aad, msg = bytes.fromhex(t["aad"]), bytes.fromhex(t["msg"])
            sealed = bytes.fromhex(t["ct"] + t["tag"])
            bad_params = not (7 <= len(nonce) <= 13) or tag not in TAGS
            if bad_params:
                with pytest.raises(ConfigurationError):
                    path.ccm_open(key, nonce, sealed, aad, tag)
                with pytest.raises(ConfigurationError):
                    path.ccm_seal(key, nonce, msg, aad, tag)
            elif t["result"] == "valid":
                assert path.ccm_seal(key, nonce, msg, aad, tag) == sealed, t["tcId"]
                assert path.ccm_open(key, nonce, sealed, aad, tag) == msg, t["tcId"]
            else:
                with pytest.raises(AuthenticationError):
                    path.ccm_open(key, nonce, sealed, aad, tag)
    assert n == data["numberOfTests"]


def test_wycheproof_cmac(path):
    data = load_vectors("wycheproof_aes_cmac_128.json")
    for g in data["testGroups"]:
        for t in g["tests"]:
            key, msg = bytes.fromhex(t["key"]), bytes.fromhex(t["msg"])
            tag = bytes.fromhex(t["tag"])
            got = path.aes_cmac(key, msg, g["tagSize"] // 8)
            assert (got == tag) == (t["result"] == "valid"), t["tcId"]


def test_gkdf_matches_rfc5433_definition(path):
    # RFC 5433 s.4: GKDF-X(Y, Z) = first X bytes of CMAC(Y, 1 (2 BE) || Z) ||
    # CMAC(Y, 2 || Z) || ...  written out here with `cryptography`.
    key, z = bytes(range(16)), b"input string"
    expect = b"".join(ref_cmac(key, i.to_bytes(2, "big") + z) for i in range(1, 11))
    for length in (0, 1, 16, 17, 64, 160):
        assert path.cmac_kdf(key, z, length) == expect[:length]
    assert path.AesKey(key).cmac_kdf(z, 160) == expect


# ---- properties against `cryptography` ------------------------------------------------

keys = st.binary(min_size=16, max_size=16)
payloads = st.binary(max_size=300)
aads = st.binary(max_size=80)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=keys,
    nonce_len=st.sampled_from(NONCES),
    tag=st.sampled_from(TAGS),
    pt=payloads,
    aad=aads,
    seed=st.binary(min_size=13, max_size=13),
)
def test_ccm_equals_cryptography(path, key, nonce_len, tag, pt, aad, seed):
    nonce = seed[:nonce_len]
    sealed = path.ccm_seal(key, nonce, pt, aad, tag)
    assert sealed == ref_ccm_seal(key, nonce, pt, aad, tag)
    assert path.ccm_open(key, nonce, sealed, aad, tag) == pt
    k = path.AesKey(key)
    assert k.ccm_seal(nonce, pt, aad, tag) == sealed
    assert k.ccm_open(nonce, sealed, aad, tag) == pt


def test_ccm_grid_equals_cryptography(path):
    """Every nonce and tag length against `cryptography`, with lengths around the
    block edges and AAD that fits in, fills and spills B1 (enc(a) takes 2 bytes):
    the single-call kernels build B0, Ctr_0 and the tag from registers, so each
    byte position is checked; a flipped tag or ciphertext byte must fail."""
    key = bytes(range(100, 116))
    k = path.AesKey(key)
    nonce13 = bytes(range(0xA1, 0xAE))  # distinct bytes: a misplaced one shows
    for nonce_len in NONCES:
        nonce = nonce13[:nonce_len]
        for tag in TAGS:
            for n in (*range(34), 47, 48, 49, 64):
                pt = bytes((7 * j + n) & 0xFF for j in range(n))
                for aad in (b"", b"\x01", bytes(range(14)), bytes(range(15)), bytes(range(31))):
                    want = ref_ccm_seal(key, nonce, pt, aad, tag)
                    assert k.ccm_seal(nonce, pt, aad, tag) == want, (nonce_len, tag, n, aad)
                    assert k.ccm_open(nonce, want, aad, tag) == pt
                    for pos in {0, n - 1, n, n + tag - 1} - {-1}:
                        bad = bytearray(want)
                        bad[pos] ^= 0x80
                        with pytest.raises(AuthenticationError):
                            k.ccm_open(nonce, bytes(bad), aad, tag)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=keys, msg=st.binary(max_size=400), tag=st.integers(1, 16))
def test_cmac_equals_cryptography(path, key, msg, tag):
    assert path.aes_cmac(key, msg, tag) == ref_cmac(key, msg)[:tag]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=keys,
    pt=st.binary(max_size=48),
    aad=st.binary(max_size=20),
    tag=st.sampled_from(TAGS),
    data=st.data(),
)
def test_every_bit_flip_rejected(path, key, pt, aad, tag, data):
    nonce = bytes(range(12))
    sealed = path.ccm_seal(key, nonce, pt, aad, tag)
    bit = data.draw(st.integers(0, 8 * len(sealed) - 1))
    bad = bytearray(sealed)
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(AuthenticationError):
        path.ccm_open(key, nonce, bytes(bad), aad, tag)
    if aad:
        abit = data.draw(st.integers(0, 8 * len(aad) - 1))
        bad_aad = bytearray(aad)
        bad_aad[abit // 8] ^= 1 << (abit % 8)
        with pytest.raises(AuthenticationError):
            path.ccm_open(key, nonce, sealed, bytes(bad_aad), tag)


def test_every_bit_flip_exhaustive_small(path):
    key, nonce, aad = bytes(range(16)), bytes(13), b"hdr"
    sealed = path.ccm_seal(key, nonce, b"0123456789abcdefXYZ", aad, 8)
    for bit in range(8 * len(sealed)):
        bad = bytearray(sealed)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(AuthenticationError):
            path.ccm_open(key, nonce, bytes(bad), aad, 8)
    for cut in range(len(sealed)):
        with pytest.raises(AuthenticationError):
            path.ccm_open(key, nonce, sealed[:cut], aad, 8)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(0, 21),
    per_key=st.booleans(),
    aad_mode=st.sampled_from(["none", "one", "each"]),
    tag=st.sampled_from(TAGS),
    nonce_len=st.sampled_from(NONCES),
    data=st.data(),
)
def test_batch_equals_loop(path, n, per_key, aad_mode, tag, nonce_len, data):
    msgs = [data.draw(st.binary(max_size=70)) for _ in range(n)]
    nonces = [data.draw(st.binary(min_size=nonce_len, max_size=nonce_len)) for _ in range(n)]
    ks = [data.draw(keys) for _ in range(n)] if per_key else bytes(range(16))
    if aad_mode == "none":
        aad_arg, aad_list = None, [b""] * n
    elif aad_mode == "one":
        aad_arg = b"shared header"
        aad_list = [aad_arg] * n
    else:
        aad_list = [data.draw(st.binary(max_size=40)) for _ in range(n)]
        aad_arg = aad_list
    key_list = ks if per_key else [ks] * n
    expect = [ref_ccm_seal(k, x, m, a, tag) for k, x, m, a in zip(key_list, nonces, msgs, aad_list)]
    assert path.ccm_seal_many(ks, nonces, msgs, aad_arg, tag) == expect
    # AesKey objects, one shared or one per message
    ak = [path.AesKey(k) for k in key_list] if per_key else path.AesKey(ks)
    assert path.ccm_seal_many(ak, nonces, msgs, aad_arg, tag) == expect
    # open: corrupt a few frames, they (and only they) come back None
    bad = set(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=3))) if n else set()
    frames = [bytes([f[0] ^ 0x80]) + f[1:] if i in bad and f else f for i, f in enumerate(expect)]
    frames = [f[:2] if i in bad and len(f) == 0 else f for i, f in enumerate(frames)]
    got, ok = path.ccm_open_many(ks, nonces, frames, aad_arg, tag)
    assert ok == bytes(i not in bad for i in range(n))
    for i in range(n):
        assert got[i] == (None if i in bad else msgs[i])
    assert path.cmac_many(ks, msgs) == [ref_cmac(k, m) for k, m in zip(key_list, msgs)]
    assert path.cmac_many(ks, msgs, 5) == [ref_cmac(k, m)[:5] for k, m in zip(key_list, msgs)]


def test_open_many_short_and_mixed(path):
    key = bytes(16)
    nonces = [bytes([i]) * 13 for i in range(10)]
    msgs = [bytes(i * 7) for i in range(10)]
    sealed = path.ccm_seal_many(key, nonces, msgs)
    sealed[2] = sealed[2][:3]  # shorter than the tag
    sealed[5] = b""
    sealed[7] = sealed[7][:-1] + bytes([sealed[7][-1] ^ 1])
    got, ok = path.ccm_open_many(key, nonces, sealed)
    assert ok == bytes(i not in (2, 5, 7) for i in range(10))
    assert [g is None for g in got] == [i in (2, 5, 7) for i in range(10)]
    assert [g for g in got if g is not None] == [
        m for i, m in enumerate(msgs) if i not in (2, 5, 7)
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lens=st.lists(st.integers(0, 60), max_size=12),
    per_key=st.booleans(),
    with_aad=st.booleans(),
    tag=st.sampled_from(TAGS),
    data=st.data(),
)
def test_packed_equals_loop(path, lens, per_key, with_aad, tag, data):
    n = len(lens)
    msgs = [data.draw(st.binary(min_size=x, max_size=x)) for x in lens]
    buf = b"".join(msgs)
    off = array("q", [0])
    for m in msgs:
        off.append(off[-1] + len(m))
    nonces = [bytes([i]) * 11 for i in range(n)]
    ks = [data.draw(keys) for _ in range(n)] if per_key else [bytes(range(16))] * n
    aad_list = [bytes([i]) * (i % 5) for i in range(n)] if with_aad else [b""] * n
    aoff = array("q", [0])
    for a in aad_list:
        aoff.append(aoff[-1] + len(a))
    kw = dict(tag_len=tag)
    if per_key:
        kw["key_size"] = 16
    if with_aad:
        kw.update(aad=b"".join(aad_list), aad_offsets=aoff)
    key_arg = b"".join(ks) if per_key else bytes(range(16))
    sealed = path.ccm_seal_packed(key_arg, b"".join(nonces), buf, off, **kw)
    expect = [ref_ccm_seal(k, x, m, a, tag) for k, x, m, a in zip(ks, nonces, msgs, aad_list)]
    assert bytes(sealed) == b"".join(expect)
    soff = array("q", [0])
    for e in expect:
        soff.append(soff[-1] + len(e))
    plain, ok = path.ccm_open_packed(key_arg, b"".join(nonces), bytes(sealed), soff, **kw)
    assert bytes(plain) == buf and ok == b"\x01" * n
    if n:
        broken = bytearray(sealed)
        broken[soff[0 + 1] - 1] ^= 1  # last tag byte of message 0
        plain, ok = path.ccm_open_packed(key_arg, b"".join(nonces), bytes(broken), soff, **kw)
        assert ok[0] == 0 and ok[1:] == b"\x01" * (n - 1)
        assert bytes(plain[: lens[0]]) == bytes(lens[0])  # failed plaintext zeroed
        assert bytes(plain[lens[0] :]) == buf[lens[0] :]
    ckw = {"key_size": 16} if per_key else {}
    tags = path.cmac_packed(key_arg, buf, off, tag_len=12, **ckw)
    assert bytes(tags) == b"".join(ref_cmac(k, m)[:12] for k, m in zip(ks, msgs))


def test_long_messages_and_aad_encodings(path):
    # Payloads across many CTR batches; AAD across the 2-byte / 6-byte enc(a)
    # boundary at 2^16 - 2^8 (SP 800-38C A.2.2).
    key, nonce = bytes(range(16)), bytes(range(7))
    for plen in (0, 15, 16, 17, 127, 128, 129, 1000, 4099):
        pt = bytes(i & 0xFF for i in range(plen))
        for alen in (0, 1, 14, 15, 0xFEFF, 0xFF00, 0x10005):
            if alen > 100 and plen not in (17, 129):
                continue
            aad = bytes((i * 7) & 0xFF for i in range(alen))
            sealed = path.ccm_seal(key, nonce, pt, aad, 10)
            assert sealed == ref_ccm_seal(key, nonce, pt, aad, 10), (plen, alen)
            assert path.ccm_open(key, nonce, sealed, aad, 10) == pt
    big = os.urandom(200_000)  # above the GIL-release threshold
    assert path.aes_cmac(key, big) == ref_cmac(key, big)
    assert path.ccm_seal(key, nonce, big) == ref_ccm_seal(key, nonce, big, b"", 8)


# ---- misuse -------------------------------------------------------------------------


def test_invalid_nonce_and_tag_lengths(aes):
    key = bytes(16)
    for nl in list(range(0, 7)) + list(range(14, 20)):
        for fn in (aes.ccm_seal, aes.ccm_open):
            with pytest.raises(ConfigurationError):
                fn(key, bytes(nl), bytes(20))
        with pytest.raises(ConfigurationError):
            aes.ccm_seal_many(key, [bytes(nl)], [b"x"])
        with pytest.raises(ConfigurationError):
            aes.ccm_open_many(key, [bytes(nl)], [bytes(20)])
    for tag in (-2, 0, 1, 2, 3, 5, 7, 9, 15, 17, 18, 32):
        with pytest.raises(ConfigurationError):
            aes.ccm_seal(key, bytes(13), b"x", b"", tag)
        with pytest.raises(ConfigurationError):
            aes.ccm_open(key, bytes(13), bytes(20), b"", tag)
        with pytest.raises(ConfigurationError):
            aes.ccm_seal_many(key, [bytes(13)], [b"x"], None, tag)
    for tag in (0, 17, -1):
        with pytest.raises(ConfigurationError):
            aes.aes_cmac(key, b"x", tag)
        with pytest.raises(ConfigurationError):
            aes.cmac_many(key, [b"x"], tag)
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_many(key, [bytes(13), bytes(12)], [b"x", b"y"])


def test_payload_too_long_for_length_field(aes):
    # nonce 13 bytes -> q = 2 -> at most 65535 payload bytes (SP 800-38C A.1)
    key = bytes(16)
    aes.ccm_seal(key, bytes(13), bytes(65535))
    with pytest.raises(ConfigurationError):
        aes.ccm_seal(key, bytes(13), bytes(65536))
    with pytest.raises(ConfigurationError):
        aes.ccm_open(key, bytes(13), bytes(65536 + 8))
    assert aes.ccm_open_many(key, [bytes(13)], [bytes(65536 + 8)]) == ([None], b"\x00")
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_many(key, [bytes(13)] * 2, [b"", bytes(65536)])
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(key, bytes(26), bytes(65537), array("q", [0, 1, 65537]))
    assert len(aes.ccm_seal(key, bytes(12), bytes(65536))) == 65544


def test_bad_keys(aes):
    for n in (0, 15, 17, 24, 32):
        with pytest.raises(ConfigurationError):
            aes.AesKey(bytes(n))
        with pytest.raises(ConfigurationError):
            aes.ccm_seal(bytes(n), bytes(13), b"")
        with pytest.raises(ConfigurationError):
            aes.aes_cmac(bytes(n), b"")
        with pytest.raises(ConfigurationError):
            aes.cmac_many([bytes(16), bytes(n)], [b"", b""])
    with pytest.raises(ConfigurationError):
        aes.cmac_many([bytes(16)], [b"", b""])
    with pytest.raises(TypeError):
        aes.AesKey("0123456789abcdef")
    with pytest.raises(TypeError):
        aes.aes_cmac(12345, b"")
    with pytest.raises(TypeError):
        pickle.dumps(aes.AesKey(bytes(16)))
    assert "AesKey" in repr(aes.AesKey(bytes(16))) and "00" not in repr(aes.AesKey(bytes(16)))


def test_empty_inputs(aes):
    key = bytes(range(16))
    assert aes.ccm_seal(key, bytes(13), b"") == ref_ccm_seal(key, bytes(13), b"", b"", 8)
    assert aes.ccm_open(key, bytes(13), aes.ccm_seal(key, bytes(13), b"")) == b""
    assert aes.aes_cmac(key, b"") == ref_cmac(key, b"")
    assert aes.ccm_seal_many(key, [], []) == []
    assert aes.ccm_open_many(key, [], []) == ([], b"")
    assert aes.cmac_many(key, []) == []
    assert aes.cmac_kdf(key, b"", 0) == b""
    off = array("q", [0])
    assert bytes(aes.ccm_seal_packed(key, b"", b"", off)) == b""
    assert bytes(aes.cmac_packed(key, b"", off)) == b""
    with pytest.raises(AuthenticationError):
        aes.ccm_open(key, bytes(13), b"")


def test_buffer_types(aes):
    key = bytes(range(16))
    nonce, pt, aad = bytes(range(13)), b"payload bytes", b"aad"
    expect = ref_ccm_seal(key, nonce, pt, aad, 8)
    for conv in (bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b))):
        assert aes.ccm_seal(conv(key), conv(nonce), conv(pt), conv(aad)) == expect
        assert aes.ccm_open(conv(key), conv(nonce), conv(expect), conv(aad)) == pt
        assert aes.aes_cmac(conv(key), conv(pt)) == ref_cmac(key, pt)
        assert aes.ccm_seal_many(conv(key), [conv(nonce)], [conv(pt)], conv(aad)) == [expect]
    for bad in ("text", 3, None, [1, 2]):
        with pytest.raises(TypeError):
            aes.ccm_seal(key, nonce, bad)
        with pytest.raises(TypeError):
            aes.aes_cmac(key, bad)
    with pytest.raises(TypeError):
        aes.ccm_seal(key, nonce, memoryview(b"abcdef")[::2])  # not contiguous


def test_out_parameter(aes):
    key, nonce, pt = bytes(range(16)), bytes(13), b"0123456789"
    expect = ref_ccm_seal(key, nonce, pt, b"", 8)
    out = bytearray(len(expect))
    assert aes.ccm_seal(key, nonce, pt, out=out) is out and out == expect
    plain = bytearray(len(pt))
    assert aes.ccm_open(key, nonce, expect, out=plain) is plain and plain == pt
    for size in (0, len(expect) - 1, len(expect) + 1):
        with pytest.raises(ConfigurationError):
            aes.ccm_seal(key, nonce, pt, out=bytearray(size))
    for size in (0, len(pt) - 1, len(pt) + 1):
        with pytest.raises(ConfigurationError):
            aes.ccm_open(key, nonce, expect, out=bytearray(size))
    with pytest.raises(TypeError):
        aes.ccm_seal(key, nonce, pt, out=bytes(len(expect)))  # read-only
    # a bad tag leaves zeros, not unauthenticated plaintext
    plain = bytearray(b"\xaa" * len(pt))
    with pytest.raises(AuthenticationError):
        aes.ccm_open(key, nonce, expect[:-1] + bytes([expect[-1] ^ 1]), out=plain)
    assert plain == bytes(len(pt))
    off = array("q", [0, 4, 10])
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(key, bytes(26), pt, off, out=bytearray(len(pt) + 15))
    with pytest.raises(ConfigurationError):
        aes.cmac_packed(key, pt, off, out=bytearray(31))


def test_packed_argument_checks(aes):
    key, data = bytes(16), bytes(10)
    with pytest.raises(TypeError):
        aes.ccm_seal_packed(key, bytes(26), data, array("i", [0, 4, 10]))
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(key, bytes(26), data, array("q", [0, 4, 11]))
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(key, bytes(26), data, array("q", [0, 5, 4]))
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(key, bytes(25), data, array("q", [0, 4, 10]))
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(bytes(31), bytes(26), data, array("q", [0, 4, 10]), key_size=16)
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(aes.AesKey(key), bytes(26), data, array("q", [0, 4, 10]), key_size=16)
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(key, bytes(26), data, array("q", []))
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(
            key, bytes(26), data, array("q", [0, 4, 10]), aad=b"ab", aad_offsets=array("q", [0, 2])
        )


def test_kdf_length_bounds(aes):
    with pytest.raises(ConfigurationError):
        aes.cmac_kdf(bytes(16), b"", -1)
    with pytest.raises(ConfigurationError):
        aes.cmac_kdf(bytes(16), b"", 0xFFFF * 16 + 1)


def test_native_and_twin_raise_the_same(aes_native, aes_ref):
    """Same exception class for the same bad call on both implementations."""
    key = bytes(16)
    calls = [
        lambda m: m.ccm_seal(key, bytes(6), b""),
        lambda m: m.ccm_seal(key, bytes(13), b"", b"", 5),
        lambda m: m.ccm_open(key, bytes(13), bytes(3)),
        lambda m: m.ccm_open(key, bytes(13), bytes(30)),
        lambda m: m.ccm_seal(bytes(3), bytes(13), b""),
        lambda m: m.ccm_seal(key, "x", b""),
        lambda m: m.aes_cmac(key, b"", 0),
        lambda m: m.ccm_seal_many([key], [bytes(13)] * 2, [b"", b""]),
        lambda m: m.ccm_seal_many(key, [bytes(13)] * 2, [b"", b""], [b""]),
        lambda m: m.encrypt_block(key, bytes(15)),
    ]
    for call in calls:
        errs = []
        for m in (aes_native, aes_ref):
            with pytest.raises(Exception) as ei:
                call(m)
            errs.append(type(ei.value))
        assert errs[0] is errs[1]


def test_batch_threads(path):
    """Batch calls from several threads (the native ones drop the GIL) agree."""
    from concurrent.futures import ThreadPoolExecutor

    key = bytes(range(16))
    nonces = [i.to_bytes(13, "big") for i in range(300)]
    msgs = [bytes([i % 251]) * (i % 90) for i in range(300)]
    expect = [ref_ccm_seal(key, x, m, b"", 8) for x, m in zip(nonces, msgs)]
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: path.ccm_seal_many(key, nonces, msgs), range(8)))
    assert all(r == expect for r in results)


def test_batch_survives_list_changes_by_another_thread(path):
    """Another thread keeps replacing the items of the argument lists (with equal
    copies, so the old objects are freed) while large batches (past the 64 KiB
    GIL-release size) and small ones run: the results stay those of the values,
    never of freed memory."""
    import threading

    key = bytes(range(16))
    n = 1500  # 1500 x 64 B: above the GIL-release size
    nonces = [i.to_bytes(13, "big") for i in range(n)]
    msgs = [bytes([i % 251]) * 64 for i in range(n)]
    expect = [ref_ccm_seal(key, x, m, b"", 8) for x, m in zip(nonces, msgs)]
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            for i in range(0, n, 7):
                msgs[i] = bytes(bytearray(msgs[i]))  # equal value, new object
                nonces[i] = bytes(bytearray(nonces[i]))

    t = threading.Thread(target=churn)
    t.start()
    # the twin keeps the GIL throughout: two rounds show it reads the values too
    rounds = 20 if path.__name__.startswith("osgp._native") else 2
    try:
        for _ in range(rounds):
            assert path.ccm_seal_many(key, nonces, msgs) == expect
            assert path.ccm_seal_many(key, nonces[:100], msgs[:100]) == expect[:100]
            assert path.ccm_open_many(key, nonces, expect) == (msgs, b"\x01" * len(msgs))
            assert path.cmac_many(key, msgs)[3] == ref_cmac(key, msgs[3])
    finally:
        stop.set()
        t.join()


def test_batch_arguments_changed_by_their_own_iterators(path):
    """An AAD iterator that replaces the message list's items while the batch
    converts its arguments: the batch reads its own copies."""
    key = bytes(range(16))
    nonces = [i.to_bytes(13, "big") for i in range(40)]
    msgs = [bytes([i]) * 20 for i in range(40)]
    want = [ref_ccm_seal(key, x, m, b"a", 8) for x, m in zip(nonces, msgs)]

    def aads():
        for i in range(40):
            msgs[i] = bytes(bytearray(msgs[i]))
            nonces[i] = bytearray(nonces[i])  # not bytes any more
            yield b"a"

    assert path.ccm_seal_many(key, nonces, msgs, aads()) == want


def test_implementations_fixture_lists_twin():
    ids = [p.id for p in implementations("aes")]
    assert "reference" in ids
    assert ("native" in ids) == (not NO_EXTENSIONS and _backend.native_module("aes") is not None)


@pytest.mark.parametrize("size", [1, 15, 16, 17, 32, 33, 100, 255])
def test_batch_uniform_groups(path, size):
    """Groups of 8 same-length messages without AAD take the uniform 8-lane
    kernel on AES-NI: check it (seal, open, a bad frame inside a group,
    per-message keys, trailing partial group) against `cryptography`."""
    n = 8 * 3 + 5
    msgs = [bytes([(i * 31 + j) & 0xFF for j in range(size)]) for i in range(n)]
    for nonce_len in (7, 13):
        nonces = [bytes([i]) * nonce_len for i in range(n)]
        for ks in (bytes(range(16)), [bytes([i]) * 16 for i in range(n)]):
            key_list = ks if isinstance(ks, list) else [ks] * n
            cm = [ref_cmac(k, m) for k, m in zip(key_list, msgs)]
            assert path.cmac_many(ks, msgs) == cm  # uniform CMAC groups too
            assert path.cmac_many(ks, msgs, 7) == [c[:7] for c in cm]
            for tag in (4, 16):
                expect = [
                    ref_ccm_seal(k, x, m, b"", tag) for k, x, m in zip(key_list, nonces, msgs)
                ]
                assert path.ccm_seal_many(ks, nonces, msgs, None, tag) == expect
                assert path.ccm_open_many(ks, nonces, expect, None, tag) == (
                    msgs, b"\x01" * len(msgs))
                bad = list(expect)
                bad[9] = bad[9][:-1] + bytes([bad[9][-1] ^ 1])
                bad[10] = bytes([bad[10][0] ^ 1]) + bad[10][1:]
                got, ok = path.ccm_open_many(ks, nonces, bad, None, tag)
                assert got[9] is None and got[10] is None
                assert ok == bytes(i not in (9, 10) for i in range(len(bad)))
                assert [g for i, g in enumerate(got) if i not in (9, 10)] == [
                    m for i, m in enumerate(msgs) if i not in (9, 10)
                ]


def test_stub_and_twin_list_the_same_public_names():
    """aes.pyi (hand-written) and the twin expose exactly the native module's names."""
    import ast
    from importlib import resources

    stub = resources.files("osgp._native").joinpath("aes.pyi")  # shipped in the wheel too
    tree = ast.parse(stub.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    names = {n for n in names if not n.startswith("_")}
    ref = _backend.reference("aes")
    wanted = {
        "AesKey",
        "aes_cmac",
        "ccm_seal",
        "ccm_open",
        "ccm_seal_many",
        "ccm_open_many",
        "cmac_many",
        "ccm_seal_packed",
        "ccm_open_packed",
        "cmac_packed",
        "cmac_kdf",
        "encrypt_block",
        "aes_path",
        "cpu_features",
        "set_cpu_features",
        "BLOCK_SIZE",
        "KEY_SIZE",
    }
    assert wanted <= names
    for n in names:
        assert hasattr(ref, n), n
    nat = _backend.native_module("aes")
    if nat is not None:
        imported = {"ArgumentTypeError", "AuthenticationError", "ConfigurationError"}
        assert {n for n in dir(nat) if not n.startswith("_")} - imported == names
        for meth in (
            "encrypt_block",
            "aes_cmac",
            "ccm_seal",
            "ccm_open",
            "ccm_seal_many",
            "ccm_open_many",
            "cmac_many",
            "cmac_kdf",
        ):
            assert hasattr(nat.AesKey, meth) and hasattr(ref.AesKey, meth)


def test_packed_out_must_not_overlap_data(aes):
    key, tag = bytes(16), 8
    buf = bytearray(2 * 10 + 2 * tag)
    data = memoryview(buf)[: 2 * 10]
    off = array("q", [0, 10, 20])
    with pytest.raises(ConfigurationError):
        aes.ccm_seal_packed(key, bytes(26), data, off, out=buf)
    sealed = bytearray(aes.ccm_seal_packed(key, bytes(26), bytes(20), off))
    soff = array("q", [0, 18, 36])
    with pytest.raises(ConfigurationError):
        aes.ccm_open_packed(key, bytes(26), sealed, soff, out=memoryview(sealed)[:20])


# ---- batch kernel shapes (aesbatch: fast 8-lane path and its fallbacks) -------------
# The AES-NI batch kernel takes a fast path for groups of 8 messages whose payloads
# have one 16-byte block count and whose AADs are all empty or all 1..14 bytes (one
# formatted AAD block) (with VAES: 16 such messages at once); every other
# group falls back to the general lane kernel.
# These cases put both kinds of group (and partial trailing groups) in one batch and
# compare every result with the `cryptography` package.


def _shape_lens(rng, blocks):
    """8 payload lengths with `blocks` 16-byte blocks each (exact lengths differ)."""
    if blocks == 0:
        return [0] * 8
    return [rng.randint(16 * blocks - 15, 16 * blocks) for _ in range(8)]


def _shape_check(path, msgs, nonces, aad_list, aad_arg, ks, tag, rng):
    n = len(msgs)
    key_list = ks if isinstance(ks, list) else [ks] * n
    expect = [ref_ccm_seal(k, x, m, a, tag) for k, x, m, a in zip(key_list, nonces, msgs, aad_list)]
    assert path.ccm_seal_many(ks, nonces, msgs, aad_arg, tag) == expect
    assert path.ccm_open_many(ks, nonces, expect, aad_arg, tag) == (msgs, b"\x01" * n)
    # failures in the middle of groups: a flipped tag bit, a flipped ciphertext bit, a
    # frame shorter than its tag; everything else still opens
    bad = list(expect)
    fails = set()
    if n:
        for i in rng.sample(range(n), min(3, n)):
            f = bytearray(bad[i])
            kind = rng.randrange(3)
            if kind == 0:
                f[-1] ^= 0x01
            elif kind == 1:
                f[rng.randrange(len(f))] ^= 0x80
            else:
                f = f[: tag - 1]
            bad[i] = bytes(f)
            fails.add(i)
    got, ok = path.ccm_open_many(ks, nonces, bad, aad_arg, tag)
    assert got == [None if i in fails else m for i, m in enumerate(msgs)]
    assert ok == bytes(i not in fails for i in range(n))


@pytest.mark.parametrize("nonce_len", NONCES)
def test_batch_shapes_fast_and_fallback_groups(path, nonce_len):
    rng = random.Random(1000 + nonce_len)
    for tag in (4, 8, 14, 16):
        for aad_mode in ("none", "short", "shared", "mixed"):
            lens = _shape_lens(rng, 3) + _shape_lens(rng, 3)  # 16 alike: one VAES group
            for blocks in (2, 0, 1, 3, 4, 5):
                lens += _shape_lens(rng, blocks)
            lens += [rng.randint(0, 70) for _ in range(8)]  # a mixed (fallback) group
            lens += _shape_lens(rng, 2)[:5]  # trailing partial group of 5
            n = len(lens)
            msgs = [rng.randbytes(x) for x in lens]
            nonces = [rng.randbytes(nonce_len) for _ in range(n)]
            if aad_mode == "none":
                aad_list, aad_arg = [b""] * n, None
            elif aad_mode == "short":  # 1..14 bytes: one AAD block, fast path
                aad_list = [rng.randbytes(rng.randint(1, 14)) for _ in range(n)]
                aad_arg = aad_list
            elif aad_mode == "shared":
                aad_arg = rng.randbytes(rng.choice((1, 14, 15, 40)))
                aad_list = [aad_arg] * n
            else:  # empty, short and 15..300 bytes mixed inside groups
                aad_list = [rng.randbytes(rng.choice((0, 1, 7, 14, 15, 16, 300))) for _ in range(n)]
                aad_arg = aad_list
            per_key = rng.random() < 0.5
            ks = [rng.randbytes(16) for _ in range(n)] if per_key else rng.randbytes(16)
            _shape_check(path, msgs, nonces, aad_list, aad_arg, ks, tag, rng)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 15, 16, 17])
def test_batch_shapes_every_length(path, n):
    """Every payload length 0..70 (every tail size), batches of n same-length
    messages (fast path when n >= 8, dummy lanes otherwise) and one mixed batch."""
    rng = random.Random(n)
    for size in range(71):
        msgs = [rng.randbytes(size) for _ in range(n)]
        nl = 7 + size % 7
        nonces = [rng.randbytes(nl) for _ in range(n)]
        aad = rng.randbytes(size % 16) if size % 3 else None
        aad_list = [aad or b""] * n
        tag = 4 + 2 * (size % 7)
        _shape_check(path, msgs, nonces, aad_list, aad, rng.randbytes(16), tag, rng)
    msgs = [rng.randbytes(x % 71) for x in range(n * 9)]
    nonces = [rng.randbytes(13) for _ in msgs]
    _shape_check(path, msgs, nonces, [b""] * len(msgs), None, bytes(16), 8, rng)


def test_batch_without_ssse3_uses_group_kernel(aes_native):
    """AES-NI allowed but SSSE3 masked off: the fast path (it needs pshufb) steps
    aside and the general group kernel must give the same results."""
    if "aesni" not in aes_native.cpu_features():
        pytest.skip("no AES-NI")
    rng = random.Random(7)
    try:
        aes_native.set_cpu_features(("aesni", "sse2"))
        assert aes_native.aes_path() == "aesni"
        for nl in (7, 8, 13):
            lens = _shape_lens(rng, 2) + _shape_lens(rng, 1)[:3]
            msgs = [rng.randbytes(x) for x in lens]
            nonces = [rng.randbytes(nl) for _ in msgs]
            aads = [rng.randbytes(5) for _ in msgs]
            _shape_check(aes_native, msgs, nonces, aads, aads, bytes(16), 10, rng)
    finally:
        aes_native.set_cpu_features(None)
