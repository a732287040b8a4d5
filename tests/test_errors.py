"""The error contract: declared fields, ArgumentTypeError for a non-buffer
argument to every public crypto function, and one way per form of reporting a
failed tag or digest (single calls raise, batch calls return an ``ok`` mask)."""

from __future__ import annotations

import inspect
from array import array

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from osgp import _backend, crypto, errors
from osgp.errors import ArgumentTypeError, AuthenticationError, OSGPError

from .conftest import implementations

KEY = bytes(range(16))
NONCE = bytes(range(13))
# CCM reference values from the independent `cryptography` implementation.
SEALED = AESCCM(KEY, tag_length=8).encrypt(NONCE, b"plain", b"aad")
SEALED_NOAAD = AESCCM(KEY, tag_length=8).encrypt(NONCE, b"pp", None)
OFF2 = array("q", [0, 2])
OFF_SEALED = array("q", [0, len(SEALED_NOAAD)])


def _calls(legacy, aes):
    """(public name, callable, args, kwargs) with every argument valid."""
    ak = aes.AesKey(KEY)
    return [
        ("oma_digest", legacy.oma_digest, [KEY, b"data"], {}),
        ("oma_verify", legacy.oma_verify, [KEY, b"d", legacy.oma_digest(KEY, b"d")], {}),
        ("OmaDigest", legacy.OmaDigest, [KEY, b"d"], {}),
        ("OmaDigest.update", legacy.OmaDigest(KEY).update, [b"d"], {}),
        ("oma_digest_many", legacy.oma_digest_many, [KEY, [b"a", b"b"]], {}),
        ("oma_digest_many/keys", legacy.oma_digest_many, [[KEY, KEY], [b"a", b"b"]], {}),
        ("oma_digest_packed", legacy.oma_digest_packed, [KEY, b"ab", OFF2], {}),
        ("en14908_auth", legacy.en14908_auth, [bytes(8), b"data", bytes(12)],
         {"oma_address": bytes(8)}),
        ("rc4", legacy.rc4, [b"key", b"data"], {}),
        ("RC4", legacy.RC4, [b"key"], {}),
        ("RC4.process", legacy.RC4(b"key").process, [b"data"], {}),
        ("crc16_x25", legacy.crc16_x25, [b"x"], {}),
        ("crc16_lon", legacy.crc16_lon, [b"x"], {}),
        ("compare_digest", legacy.compare_digest, [b"a", b"b"], {}),
        ("AesKey", aes.AesKey, [KEY], {}),
        ("aes_cmac", aes.aes_cmac, [KEY, b"m"], {}),
        ("AesKey.aes_cmac", ak.aes_cmac, [b"m"], {}),
        ("ccm_seal", aes.ccm_seal, [KEY, NONCE, b"plain", b"aad"], {}),
        ("AesKey.ccm_seal", ak.ccm_seal, [NONCE, b"plain", b"aad"], {}),
        ("ccm_open", aes.ccm_open, [KEY, NONCE, SEALED, b"aad"], {}),
        ("AesKey.ccm_open", ak.ccm_open, [NONCE, SEALED, b"aad"], {}),
        ("ccm_seal_many", aes.ccm_seal_many, [KEY, [NONCE], [b"plain"], [b"aad"]], {}),
        ("ccm_open_many", aes.ccm_open_many, [KEY, [NONCE], [SEALED], [b"aad"]], {}),
        ("ccm_open_many/keys", aes.ccm_open_many, [[KEY], [NONCE], [SEALED], b"aad"], {}),
        ("cmac_many", aes.cmac_many, [KEY, [b"m"]], {}),
        ("ccm_seal_packed", aes.ccm_seal_packed, [KEY, NONCE, b"pp", OFF2], {}),
        ("ccm_open_packed", aes.ccm_open_packed, [KEY, NONCE, SEALED_NOAAD, OFF_SEALED], {}),
        ("cmac_packed", aes.cmac_packed, [KEY, b"mm", OFF2], {}),
        ("cmac_kdf", aes.cmac_kdf, [KEY, b"d", 16], {}),
        ("AesKey.cmac_kdf", ak.cmac_kdf, [b"d", 16], {}),
        ("aes_encrypt_block", aes.encrypt_block, [KEY, bytes(16)], {}),
    ]


def _pairs():
    out = []
    for lp in implementations("legacy"):
        ap = next(p for p in implementations("aes") if p.id == lp.id)
        out.append(pytest.param(lp.values[0], ap.values[0], id=lp.id))
    return out


def _is_buffer(x):
    return isinstance(x, (bytes, bytearray, memoryview, array))


@pytest.mark.parametrize(("legacy", "aes"), _pairs())
def test_every_public_crypto_function_is_covered(legacy, aes):
    covered = {name.split("/")[0].split(".")[0] for name, *_ in _calls(legacy, aes)}
    public = {"aes_encrypt_block" if n == "encrypt_block" else n for n in crypto.__all__}
    assert public == covered


@pytest.mark.parametrize(("legacy", "aes"), _pairs())
def test_the_valid_calls_succeed(legacy, aes):
    for _name, fn, args, kw in _calls(legacy, aes):
        fn(*args, **kw)


@pytest.mark.parametrize(("legacy", "aes"), _pairs())
def test_non_buffer_argument_raises_argument_type_error(legacy, aes):
    """5 in place of each buffer argument, of each item of a list argument and
    of each list argument itself: ArgumentTypeError (an OSGPError and a
    TypeError) naming what was wrong, from the native module and the twin."""
    tried = 0
    for name, fn, args, kw in _calls(legacy, aes):
        variants = []
        for i, a in enumerate(args):
            if _is_buffer(a):
                variants.append((i, 5))
            elif isinstance(a, list):
                variants += [(i, [5] * len(a)), (i, 5)]
        for k, v in kw.items():
            if _is_buffer(v):
                variants.append((k, 5))
        assert variants, name
        for where, bad in variants:
            a2, kw2 = list(args), dict(kw)
            if isinstance(where, int):
                a2[where] = bad
            else:
                kw2[where] = bad
            with pytest.raises(ArgumentTypeError) as ei:
                fn(*a2, **kw2)
            assert isinstance(ei.value, TypeError) and isinstance(ei.value, OSGPError)
            tried += 1
    assert tried > 60


# ---- authentication failure: one way per form --------------------------------------------


@pytest.mark.parametrize(("legacy", "aes"), _pairs())
def test_single_calls_raise_and_batches_return_a_mask(legacy, aes):
    bad = SEALED[:-1] + bytes([SEALED[-1] ^ 1])
    with pytest.raises(AuthenticationError):
        aes.ccm_open(KEY, NONCE, bad, b"aad")
    with pytest.raises(AuthenticationError):
        aes.AesKey(KEY).ccm_open(NONCE, bad, b"aad")
    with pytest.raises(AuthenticationError):
        legacy.oma_verify(KEY, b"d", bytes(8))
    plain, ok = aes.ccm_open_many(KEY, [NONCE] * 3, [SEALED, bad, SEALED[:3]], b"aad")
    assert (plain, ok) == ([b"plain", None, None], b"\x01\x00\x00")
    plain, ok = aes.AesKey(KEY).ccm_open_many([NONCE] * 2, [bad, SEALED], b"aad")
    assert (plain, ok) == ([None, b"plain"], b"\x00\x01")
    flipped = SEALED_NOAAD[:-1] + bytes([SEALED_NOAAD[-1] ^ 1])
    out, ok = aes.ccm_open_packed(
        KEY, NONCE * 2, SEALED_NOAAD + flipped, array("q", [0, len(SEALED_NOAAD), 2 * 10])
    )
    assert (bytes(out), ok) == (b"pp\x00\x00", b"\x01\x00")


@pytest.mark.parametrize("frames", implementations("frames"))
def test_mep_single_raises_and_batch_returns_a_mask(frames):
    from osgp.link import mep

    key = bytes([1]) * 16  # MEP guide p.15 default MAK
    good = mep.encode_request(key, bytes.fromhex("3f0017000000002c"), 0x77635B91)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(AuthenticationError):
        frames.mep_request_check(key, bad)
    status, code, seq, ok = frames.mep_request_check_batch(
        key, good + bad, np.array([0, len(good), 2 * len(good)], dtype=np.int64)
    )
    assert ok == b"\x01\x00" and list(status) == [frames.OK, frames.AUTH]
    assert list(seq) == [0x77635B91] * 2 and list(code) == [0x3F] * 2


def test_docstrings_and_stubs_say_how_failures_are_reported():
    from importlib import resources

    for fam, single, batch in (
        ("aes", ("ccm_open",), ("ccm_open_many", "ccm_open_packed")),
        ("frames", ("mep_request_check", "mep_response_check"), ("mep_request_check_batch",)),
    ):
        stub = resources.files("osgp._native").joinpath(f"{fam}.pyi").read_text()
        assert "AuthenticationError" in stub and "ok" in stub
        for mod in (_backend.native_module(fam), _backend.reference(fam)):
            if mod is None:
                continue
            for n in single:
                doc = inspect.getdoc(getattr(mod, n)) or ""
                assert "AuthenticationError" in doc, (mod.__name__, n)
            for n in batch:
                doc = inspect.getdoc(getattr(mod, n)) or ""
                assert "ok" in doc and "never raise" in doc, (mod.__name__, n)


# ---- declared fields ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (errors.DecodeError, ("layer", "offset", "table", "field", "pc", "meter")),
        (errors.TruncatedError, ("layer", "offset", "needed", "remaining", "table", "field",
                                 "pc", "meter")),
        (errors.MalformedError, ("layer", "offset", "table", "field", "pc", "meter")),
        (errors.ConfigurationError, ("pc", "meter")),
    ],
)
def test_fields_are_constructor_keywords_with_none_defaults(cls, fields):
    params = inspect.signature(cls).parameters
    for f in fields:
        assert params[f].kind is inspect.Parameter.KEYWORD_ONLY
        assert f in cls.__annotations__ or any(f in getattr(b, "__annotations__", {})
                                               for b in cls.__mro__)
    e = cls("m") if cls is not errors.TruncatedError else cls()
    assert all(getattr(e, f) in (None, "") for f in fields)
    e = cls("m", **{f: 7 for f in fields if f != "layer"})
    assert all(getattr(e, f) == 7 for f in fields if f != "layer")


def test_sequence_error_carries_its_context():
    e = errors.SequenceError("replay", received=5, current=9, context=b"\x00\x00\x00\x05")
    assert (e.received, e.current, e.expected, e.context) == (5, 9, 10, b"\x00\x00\x00\x05")
    assert errors.SequenceError("x", received=1, expected=3).context is None


# ---- one status enum in C -----------------------------------------------------------------

_CSRC = __import__("pathlib").Path(__file__).resolve().parent.parent / "csrc"


@pytest.mark.skipif(not (_CSRC / "osgp.h").exists(), reason="C sources not next to the tests")
def test_one_status_enum_in_the_c_surface():
    """csrc/osgp.h defines its statuses in one enum, no file adds status codes
    of its own, and the .pxd declares every member."""
    import re

    header = (_CSRC / "osgp.h").read_text()
    enums = re.findall(r"typedef enum \{(.*?)\} (\w+);", header, re.S)
    assert [name for _, name in enums] == ["osgp_status"]
    members = re.findall(r"\b(OSGP_(?:OK|ERR_\w+))\s*=\s*(\d+)", enums[0][0])
    values = [int(v) for _, v in members]
    assert values == list(range(len(values)))  # dense, each value once
    for f in sorted(_CSRC.glob("*.[ch]")) + sorted(_CSRC.glob("*.inc")):
        text = f.read_text()
        assert not re.search(r"#define\s+OSGP_(ERR|FRAME|STATUS)_\w+", text), f.name
        assert not re.search(r"\(osgp_status\)\s*\d", text), f.name
    pxd = (_CSRC.parent / "src/osgp/_native/osgp_c.pxd").read_text()
    block = pxd.split("ctypedef enum osgp_status:", 1)[1].split("\n\n", 1)[0]
    assert block.split() == [m for m, _ in members]
