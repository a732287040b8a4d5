"""AES-CCM / CMAC benchmarks as ratios against the `cryptography` package in the
same run (docs/conventions.md §12).  Run:

    PYTHONPATH=src python -m pytest benches/bench_aes.py --benchmark-only \
        --benchmark-columns=min,median,mean --benchmark-group-by=group

Each group holds the `cryptography` baseline and the osgp variants; divide the
baseline's time by a variant's for the speed-up.  Single-call groups time
CALLS (100) calls per round, batch groups 1000 messages per round; the
baselines are pre-built AESCCM objects and a pre-keyed CMAC copied per call.
``--benchmark-disable`` runs every body once, untimed (what CI does).
"""

from __future__ import annotations

import os
from array import array

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.cmac import CMAC

from osgp import _backend

KEY = bytes(range(16))
NONCE = bytes(range(13))
BATCH = 1000
# Single calls take 0.05-2 us.  pytest-benchmark's runner calls the benchmarked
# function as f(*args, **kwargs), which costs 30-50 ns a call on this VM: as much
# as the call under test, and it would land on every side.  So a single-call
# round makes CALLS calls in a plain loop, spelled the way user code calls
# (_loop), on every side of a group alike: the ratio is that of the calls
# themselves, and one call takes a round's time / CALLS.
CALLS = 100
_R = range(CALLS)


def _loop(f, *args):
    """A benchmark body making CALLS calls f(*args), spelled out (no re-packing)."""
    if len(args) == 1:
        (a,) = args

        def run():
            for _ in _R:
                f(a)
    elif len(args) == 2:
        a, b = args

        def run():
            for _ in _R:
                f(a, b)
    else:
        a, b, c = args

        def run():
            for _ in _R:
                f(a, b, c)

    return run


IMPLS = [pytest.param(_backend.reference("aes"), id="twin")]
_native = _backend.native_module("aes")
if _native is not None:
    IMPLS.insert(0, pytest.param(_native, id="native"))


@pytest.fixture(params=IMPLS)
def aes(request):
    return request.param


def _msg(n: int) -> bytes:
    return os.urandom(n)


# ---- single-call CCM ---------------------------------------------------------------

for _size in (32, 64, 1024):

    def _make(size: int):
        @pytest.mark.benchmark(group=f"ccm-seal-{size}")
        def test_seal_cryptography(benchmark):
            c, m = AESCCM(KEY, tag_length=8), _msg(size)
            benchmark(_loop(c.encrypt, NONCE, m, None))

        @pytest.mark.benchmark(group=f"ccm-seal-{size}")
        def test_seal_osgp_raw_key(benchmark, aes):
            m = _msg(size)
            benchmark(_loop(aes.ccm_seal, KEY, NONCE, m))
            assert aes.ccm_seal(KEY, NONCE, m) == AESCCM(KEY, tag_length=8).encrypt(NONCE, m, None)

        @pytest.mark.benchmark(group=f"ccm-seal-{size}")
        def test_seal_osgp_aeskey(benchmark, aes):
            k, m = aes.AesKey(KEY), _msg(size)
            benchmark(_loop(k.ccm_seal, NONCE, m))
            assert k.ccm_seal(NONCE, m) == AESCCM(KEY, tag_length=8).encrypt(NONCE, m, None)

        @pytest.mark.benchmark(group=f"ccm-open-{size}")
        def test_open_cryptography(benchmark):
            c, m = AESCCM(KEY, tag_length=8), _msg(size)
            benchmark(_loop(c.decrypt, NONCE, c.encrypt(NONCE, m, None), None))

        @pytest.mark.benchmark(group=f"ccm-open-{size}")
        def test_open_osgp_raw_key(benchmark, aes):
            m = _msg(size)
            ct = AESCCM(KEY, tag_length=8).encrypt(NONCE, m, None)
            benchmark(_loop(aes.ccm_open, KEY, NONCE, ct))
            assert aes.ccm_open(KEY, NONCE, ct) == m

        @pytest.mark.benchmark(group=f"ccm-open-{size}")
        def test_open_osgp_aeskey(benchmark, aes):
            k, m = aes.AesKey(KEY), _msg(size)
            ct = AESCCM(KEY, tag_length=8).encrypt(NONCE, m, None)
            benchmark(_loop(k.ccm_open, NONCE, ct))
            assert k.ccm_open(NONCE, ct) == m

        return {
            f"test_seal_{size}_cryptography": test_seal_cryptography,
            f"test_seal_{size}_osgp_raw_key": test_seal_osgp_raw_key,
            f"test_seal_{size}_osgp_aeskey": test_seal_osgp_aeskey,
            f"test_open_{size}_cryptography": test_open_cryptography,
            f"test_open_{size}_osgp_raw_key": test_open_osgp_raw_key,
            f"test_open_{size}_osgp_aeskey": test_open_osgp_aeskey,
        }

    globals().update(_make(_size))


# ---- batch CCM seal, 1000 x 32 bytes -------------------------------------------------

MSGS = [_msg(32) for _ in range(BATCH)]
NONCES = [os.urandom(13) for _ in range(BATCH)]


@pytest.mark.benchmark(group="ccm-seal-batch-1000x32")
def test_batch_seal_cryptography_loop(benchmark):
    c = AESCCM(KEY, tag_length=8)

    def run():
        return [c.encrypt(n, m, None) for n, m in zip(NONCES, MSGS)]

    benchmark(run)


@pytest.mark.benchmark(group="ccm-seal-batch-1000x32")
def test_batch_seal_osgp_many(benchmark, aes):
    k = aes.AesKey(KEY)
    out = benchmark(aes.ccm_seal_many, k, NONCES, MSGS)
    assert out[5] == AESCCM(KEY, tag_length=8).encrypt(NONCES[5], MSGS[5], None)


@pytest.mark.benchmark(group="ccm-seal-batch-1000x32")
def test_batch_seal_osgp_many_per_message_keys(benchmark, aes):
    keys = [aes.AesKey(bytes([i % 256]) * 16) for i in range(BATCH)]
    benchmark(aes.ccm_seal_many, keys, NONCES, MSGS)


@pytest.mark.benchmark(group="ccm-seal-batch-1000x32")
def test_batch_seal_osgp_packed(benchmark, aes):
    k = aes.AesKey(KEY)
    data, nonces = b"".join(MSGS), b"".join(NONCES)
    off = array("q", range(0, 32 * BATCH + 1, 32))
    out = bytearray(len(data) + 8 * BATCH)
    benchmark(aes.ccm_seal_packed, k, nonces, data, off, out=out)
    assert bytes(out[:40]) == AESCCM(KEY, tag_length=8).encrypt(NONCES[0], MSGS[0], None)


@pytest.mark.benchmark(group="ccm-open-batch-1000x32")
def test_batch_open_cryptography_loop(benchmark):
    c = AESCCM(KEY, tag_length=8)
    sealed = [c.encrypt(n, m, None) for n, m in zip(NONCES, MSGS)]

    def run():
        return [c.decrypt(n, s, None) for n, s in zip(NONCES, sealed)]

    benchmark(run)


@pytest.mark.benchmark(group="ccm-open-batch-1000x32")
def test_batch_open_osgp_many(benchmark, aes):
    c = AESCCM(KEY, tag_length=8)
    sealed = [c.encrypt(n, m, None) for n, m in zip(NONCES, MSGS)]
    assert benchmark(aes.ccm_open_many, aes.AesKey(KEY), NONCES, sealed)[0] == MSGS


# ---- CMAC -------------------------------------------------------------------------


def _cmac_reference(m: bytes) -> bytes:
    c = CMAC(algorithms.AES(KEY))
    c.update(m)
    return c.finalize()


for _size in (16, 64, 1024):

    def _make_cmac(size: int):
        @pytest.mark.benchmark(group=f"cmac-{size}")
        def test_cmac_cryptography_copy(benchmark):
            base, m = CMAC(algorithms.AES(KEY)), _msg(size)

            def run():
                for _ in _R:
                    c = base.copy()
                    c.update(m)
                    c.finalize()

            benchmark(run)

        @pytest.mark.benchmark(group=f"cmac-{size}")
        def test_cmac_osgp_raw_key(benchmark, aes):
            m = _msg(size)
            benchmark(_loop(aes.aes_cmac, KEY, m))
            assert aes.aes_cmac(KEY, m) == _cmac_reference(m)

        @pytest.mark.benchmark(group=f"cmac-{size}")
        def test_cmac_osgp_aeskey(benchmark, aes):
            k, m = aes.AesKey(KEY), _msg(size)
            benchmark(_loop(k.aes_cmac, m))
            assert k.aes_cmac(m) == _cmac_reference(m)

        return {
            f"test_cmac_{size}_cryptography_copy": test_cmac_cryptography_copy,
            f"test_cmac_{size}_osgp_raw_key": test_cmac_osgp_raw_key,
            f"test_cmac_{size}_osgp_aeskey": test_cmac_osgp_aeskey,
        }

    globals().update(_make_cmac(_size))


@pytest.mark.benchmark(group="cmac-batch-1000x32")
def test_cmac_batch_cryptography_loop(benchmark):
    base = CMAC(algorithms.AES(KEY))

    def run():
        out = []
        for m in MSGS:
            c = base.copy()
            c.update(m)
            out.append(c.finalize())
        return out

    benchmark(run)


@pytest.mark.benchmark(group="cmac-batch-1000x32")
def test_cmac_batch_osgp_many(benchmark, aes):
    benchmark(aes.cmac_many, aes.AesKey(KEY), MSGS)
