"""Public cryptographic API of osgp: one-shot and batch calls over the kernels.

The functions are the native ones themselves when the extensions are in use
(no Python wrapper on the hot path), otherwise their pure-Python twins.

Legacy OSGP security (CLC/TS 50586 Annex E; OSGP Alliance MEP guide App. A/B):
  oma_digest, oma_verify, OmaDigest, oma_digest_many, oma_digest_packed,
  en14908_auth, rc4, RC4, crc16_x25, crc16_lon, compare_digest
"""

from __future__ import annotations

from osgp import _backend

_legacy, _legacy_native = _backend.load("legacy")

oma_digest = _legacy.oma_digest
oma_verify = _legacy.oma_verify
OmaDigest = _legacy.OmaDigest
oma_digest_many = _legacy.oma_digest_many
oma_digest_packed = _legacy.oma_digest_packed
en14908_auth = _legacy.en14908_auth
rc4 = _legacy.rc4
RC4 = _legacy.RC4
crc16_x25 = _legacy.crc16_x25
crc16_lon = _legacy.crc16_lon
compare_digest = _legacy.compare_digest

__all__ = [
    "oma_digest",
    "oma_verify",
    "OmaDigest",
    "oma_digest_many",
    "oma_digest_packed",
    "en14908_auth",
    "rc4",
    "RC4",
    "crc16_x25",
    "crc16_lon",
    "compare_digest",
]
