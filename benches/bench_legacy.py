"""Legacy kernels: OMA digest (native vs twin, batch vs loop), RC4 vs the
cryptography package, fixed call cost."""

from __future__ import annotations

import os

import pytest

from osgp import _backend

native = _backend.native_module("legacy")
ref = _backend.reference("legacy")
needs_native = pytest.mark.skipif(native is None, reason="native extensions not in use")
# Sub-microsecond calls: let each round run many calls, so the timer's own
# cost (~10 ns steps on a VM) is not charged to every call (both sides alike).
MIN_TIME = 50e-6

KEY12 = os.urandom(12)
KEY16 = os.urandom(16)
MSG28 = bytes.fromhex("0202003000037f30ea6d0000000d0020980031c30008000000000011")
BATCH = [os.urandom(28) for _ in range(10_000)]


@pytest.mark.benchmark(group="oma_digest 28 B", min_time=MIN_TIME)
@needs_native
def test_oma_native(benchmark):
    assert benchmark(native.oma_digest, KEY12, MSG28) == ref.oma_digest(KEY12, MSG28)


@pytest.mark.benchmark(group="oma_digest 28 B", min_time=MIN_TIME)
def test_oma_twin(benchmark):
    benchmark(ref.oma_digest, KEY12, MSG28)


@pytest.mark.benchmark(group="oma_digest 10k x 28 B")
@needs_native
def test_oma_batch(benchmark):
    out = benchmark(native.oma_digest_many, KEY12, BATCH)
    assert out[17] == native.oma_digest(KEY12, BATCH[17])


@pytest.mark.benchmark(group="oma_digest 10k x 28 B")
@needs_native
def test_oma_batch_per_message_keys(benchmark):
    keys = [os.urandom(12) for _ in BATCH]
    out = benchmark(native.oma_digest_many, keys, BATCH)
    assert out[5] == native.oma_digest(keys[5], BATCH[5])


@pytest.mark.benchmark(group="oma_digest 10k x 28 B")
@needs_native
def test_oma_batch_packed(benchmark):
    np = pytest.importorskip("numpy")
    data = b"".join(BATCH)
    offsets = np.arange(0, 28 * (len(BATCH) + 1), 28, dtype=np.int64)
    out = np.empty((len(BATCH), 8), dtype=np.uint8)
    benchmark(native.oma_digest_packed, KEY12, data, offsets, out=out)
    assert out[17].tobytes() == native.oma_digest(KEY12, BATCH[17])


@pytest.mark.benchmark(group="oma_digest 10k x 28 B")
@needs_native
def test_oma_loop_of_single_calls(benchmark):
    f = native.oma_digest
    benchmark(lambda: [f(KEY12, m) for m in BATCH])


@pytest.mark.benchmark(group="oma_digest 10k x 28 B")
@needs_native
def test_oma_batch_scalar_path(benchmark):
    native.set_cpu_features([])
    try:
        benchmark(native.oma_digest_many, KEY12, BATCH)
    finally:
        native.set_cpu_features(None)


def _cryptography_arc4():
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4
    except ImportError:
        from cryptography.hazmat.primitives.ciphers.algorithms import ARC4
    from cryptography.hazmat.primitives.ciphers import Cipher

    return lambda key, data: Cipher(ARC4(key), mode=None).encryptor().update(data)


MSG32 = os.urandom(32)


@pytest.mark.benchmark(group="rc4 32 B incl. key schedule", min_time=MIN_TIME)
@needs_native
def test_rc4_native(benchmark):
    benchmark(native.rc4, KEY16, MSG32)


@pytest.mark.benchmark(group="rc4 32 B incl. key schedule", min_time=MIN_TIME)
def test_rc4_cryptography(benchmark):
    benchmark(_cryptography_arc4(), KEY16, MSG32)


@pytest.mark.benchmark(group="rc4 32 B incl. key schedule", min_time=MIN_TIME)
def test_rc4_twin(benchmark):
    benchmark(ref.rc4, KEY16, MSG32)


@pytest.mark.benchmark(group="fixed cost: empty message", min_time=MIN_TIME)
@needs_native
@pytest.mark.parametrize("key_len", [6, 12, 16])
def test_oma_empty_message(benchmark, key_len):
    # An empty message still digests one zero block (MEP App. A), so this is
    # call overhead plus one block: 48, 144 or 192 steps.
    benchmark(native.oma_digest, KEY16[:key_len], b"")


@pytest.mark.benchmark(group="fixed cost: empty message", min_time=MIN_TIME)
@needs_native
def test_crc16_empty(benchmark):
    # The same argument handling with no work: the pure call overhead.
    benchmark(native.crc16_x25, b"")


@pytest.mark.benchmark(group="fixed cost: empty message", min_time=MIN_TIME)
def test_python_noop_call(benchmark):
    def noop(a, b):
        return a

    benchmark(noop, KEY16, b"")
