"""Known-answer self test and throughput report of the installed build.

``osgp selftest`` runs every known-answer vector below through the kernels in
use (native or pure-Python twins), then prints one throughput line per kernel.
Each vector names its public source; none is produced by this code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import osgp
from osgp import crypto, tables
from osgp.link import mep
from osgp.security import legacy

H = bytes.fromhex


@dataclass(frozen=True)
class KnownAnswer:
    name: str
    source: str
    run: Callable[[], bytes]
    expected: bytes


def _chained(key: bytes, request: bytes, response: bytes) -> bytes:
    """Response digest by extending the request's digest state (MEP App. A, p.251)."""
    h = crypto.OmaDigest(key, request)
    h.digest()  # the request digest, sent with the request
    h.update(response)
    return h.digest()


def _clock_text(t: Any) -> bytes:
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    ).encode()


KNOWN_ANSWERS: list[KnownAnswer] = [
    KnownAnswer(
        "OMA digest, 12-byte key (Annex E)",
        "ttaubert/osgp-oma-digest test vector",
        lambda: crypto.oma_digest(
            H("df" * 12), H("0202003000037f30ea6d0000000d0020980031c30008000000000011")
        ),
        H("dbe5cde507b1cb3d"),
    ),
    KnownAnswer(
        "OMA digest, 16-byte MEP key, request",
        "OSGP Alliance MEP guide v1.1 p.15",
        lambda: crypto.oma_digest(H("01" * 16), H("3f0017000000002c77635b91")),
        H("13db85a135a0575e"),
    ),
    KnownAnswer(
        "OMA digest chained over request||response (0x0C)",
        "OSGP Alliance MEP guide v1.1 p.15",
        lambda: _chained(H("01" * 16), H("3f0017000000002c01020304"), H("0c77635b90")),
        H("35863c1df5b91482"),
    ),
    KnownAnswer(
        "OMA digest batch (SIMD path)",
        "MEP guide v1.1 p.15 and p.17, 40 copies",
        lambda: b"".join(
            set(crypto.oma_digest_many(H("01" * 16), [H("3f0017000000002c77635b91")] * 40))
        ),
        H("13db85a135a0575e"),
    ),
    KnownAnswer(
        "RC4",
        "classic RC4 test vector (Key / Plaintext)",
        lambda: crypto.rc4(b"Key", b"Plaintext"),
        H("bbf316e8d940af0ad3"),
    ),
    KnownAnswer(
        "MEP RC4 base key",
        "MEP guide App. B constant, derived (docs/protocol.md §2.4)",
        lambda: legacy.mep_base_key(H("01" * 16)),
        H("3e8381b22e887cacbe9c8058d44cbc1a"),
    ),
    KnownAnswer(
        "AES-CMAC (RFC 4493 example 2)",
        "RFC 4493 section 4",
        lambda: crypto.aes_cmac(
            H("2b7e151628aed2a6abf7158809cf4f3c"), H("6bc1bee22e409f96e93d7e117393172a")
        ),
        H("070a16b46b4d4144f79bdd9dd04a287c"),
    ),
    KnownAnswer(
        "AES-CCM (SP 800-38C example 1)",
        "NIST SP 800-38C Appendix C.1",
        lambda: crypto.ccm_seal(
            H("404142434445464748494a4b4c4d4e4f"),
            H("10111213141516"),
            H("20212223"),
            H("0001020304050607"),
            tag_len=4,
        ),
        H("7162015b4dac255d"),
    ),
    KnownAnswer(
        "MEP request frame (digest, sequence number)",
        "OSGP Alliance MEP guide v1.1 p.15",
        lambda: mep.encode_request(H("01" * 16), H("3f0017000000002c"), 0x77635B91),
        H("00143f0017000000002c77635b9113db85a135a0575e"),
    ),
    KnownAnswer(
        "BT52 clock, TM_FORMAT 2",
        "OSGP Alliance MEP guide v1.1 App. B p.256",
        lambda: _clock_text(tables.decode(52, H("0402100f3b3700"))["CLOCK_CALENDAR"]),
        b"2004-02-16 15:59:55",
    ),
    KnownAnswer(
        "CRC-16/X-25 of a C12.18 read request",
        "openHAB smartmeterosgp test frame",
        lambda: crypto.crc16_x25(H("ee00200000083f00170000000008")).to_bytes(2, "big"),
        H("f203"),
    ),
    KnownAnswer(
        "LonTalk CRC-16 check value",
        "CRC-16/GENIBUS catalogue check ('123456789')",
        lambda: crypto.crc16_lon(b"123456789").to_bytes(2, "big"),
        H("d64e"),
    ),
]

#: Later kernel families append their own vectors and throughput probes here.
THROUGHPUT: list[tuple[str, Callable[[], tuple[Callable[[], object], int, str]]]] = []


def _oma_single() -> tuple[Callable[[], object], int, str]:
    key, msg = os.urandom(12), os.urandom(28)
    return (lambda: crypto.oma_digest(key, msg)), 1, "digests"


def _oma_batch() -> tuple[Callable[[], object], int, str]:
    key, msgs = os.urandom(12), [os.urandom(28) for _ in range(4096)]
    return (lambda: crypto.oma_digest_many(key, msgs)), len(msgs), "digests"


def _rc4() -> tuple[Callable[[], object], int, str]:
    key, msg = os.urandom(16), os.urandom(32)
    return (lambda: crypto.rc4(key, msg)), 1, "messages"


def _crc() -> tuple[Callable[[], object], int, str]:
    frame = os.urandom(64)
    return (lambda: crypto.crc16_x25(frame)), 1, "frames"


def _ccm() -> tuple[Callable[[], object], int, str]:
    key, nonce, msg = crypto.AesKey(os.urandom(16)), os.urandom(13), os.urandom(32)
    return (lambda: key.ccm_seal(nonce, msg)), 1, "messages"


def _ccm_batch() -> tuple[Callable[[], object], int, str]:
    key = os.urandom(16)
    nonces = [os.urandom(13) for _ in range(4096)]
    msgs = [os.urandom(32) for _ in range(4096)]
    return (lambda: crypto.ccm_seal_many(key, nonces, msgs)), len(msgs), "messages"


def _mep_frames() -> tuple[Callable[[], object], int, str]:
    import numpy as np

    from osgp._native import frames

    key = H("01" * 16)
    frame = mep.encode_request(key, H("3f0017000000002c"), 0x77635B91)
    data = frame * 4096
    offsets = np.arange(0, len(frame) * 4097, len(frame), dtype=np.int64)
    return (lambda: frames.mep_request_check_batch(key, data, offsets)), 4096, "frames"


def _table() -> tuple[Callable[[], object], int, str]:
    data = H("0402100f3b3700")
    return (lambda: tables.decode(52, data)), 1, "tables"


THROUGHPUT += [
    ("oma_digest, 28 B, one call each", _oma_single),
    ("oma_digest_many, 4096 x 28 B", _oma_batch),
    ("rc4, 32 B incl. key schedule", _rc4),
    ("crc16_x25, 64 B frame", _crc),
    ("ccm_seal, 32 B, pre-expanded key", _ccm),
    ("ccm_seal_many, 4096 x 32 B", _ccm_batch),
    ("tables.decode(BT52)", _table),
]
if osgp.backends["frames"] == "native":
    THROUGHPUT.append(("MEP request check batch (parse+digest)", _mep_frames))


def _rate(fn: Callable[[], object], items: int, budget: float) -> float:
    """Items per second, best of a few timed runs within ``budget`` seconds."""
    fn()
    reps, elapsed = 1, 0.0
    while True:  # calibrate to ~budget/5 per run
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > budget / 5 or reps > 1 << 24:
            break
        reps *= 4
    best = elapsed
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, time.perf_counter() - t0)
    return reps * items / best


def run(out: TextIO, *, budget: float = 0.3) -> int:
    """Print the report; return the number of failed known-answer tests."""
    kind = "native (C kernels)" if osgp.native else "reference (pure-Python twins)"
    if not osgp.native and "native" in osgp.backends.values():
        kind = ", ".join(f"{f} {b}" for f, b in osgp.backends.items())
    out.write(f"osgp {osgp.__version__}: kernels in use: {kind}\n")
    if osgp.backends["legacy"] == "native":
        from osgp._native import legacy as _nl

        feats = ",".join(sorted(_nl.cpu_features())) or "none"
        out.write(f"  CPU features used: {feats}; OMA batch path: {_nl.batch_path()}\n")
    failures = 0
    out.write("known-answer tests:\n")
    for kat in KNOWN_ANSWERS:
        try:
            got = kat.run()
            ok = got == kat.expected
        except Exception as exc:  # report, do not stop: a self test lists every failure
            got, ok = repr(exc).encode(), False
        failures += not ok
        mark = "ok  " if ok else "FAIL"
        out.write(f"  {mark} {kat.name}  [{kat.source}]\n")
        if not ok:
            out.write(f"       expected {kat.expected.hex()} got {got.hex()}\n")
    out.write("throughput (best of 3):\n")
    for name, make in THROUGHPUT:
        fn, items, unit = make()
        rate = _rate(fn, items, budget)
        out.write(f"  {name:<40} {rate:>14,.0f} {unit}/s  ({1e9 / rate:,.0f} ns each)\n")
    out.write(
        f"{len(KNOWN_ANSWERS) - failures} passed, {failures} failed\n"
        if failures
        else f"all {len(KNOWN_ANSWERS)} known-answer tests passed\n"
    )
    return failures
