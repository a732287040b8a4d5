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

# ==== AES: OSGP-AES-128-PSK primitives (CLC/TS 50586 Annex F) ====================
# OSGP_MAC = AES-CMAC (NIST SP 800-38B, RFC 4493); OSGP_AE / OSGP_AD = AES-CCM
# (NIST SP 800-38C, RFC 3610); cmac_kdf = GKDF of RFC 5433 s.4.
#   aes_cmac, ccm_seal, ccm_open, AesKey, ccm_seal_many, ccm_open_many, cmac_many,
#   ccm_seal_packed, ccm_open_packed, cmac_packed, cmac_kdf, aes_encrypt_block
_aes, _aes_native = _backend.load("aes")

AesKey = _aes.AesKey
aes_cmac = _aes.aes_cmac
ccm_seal = _aes.ccm_seal
ccm_open = _aes.ccm_open
ccm_seal_many = _aes.ccm_seal_many
ccm_open_many = _aes.ccm_open_many
cmac_many = _aes.cmac_many
ccm_seal_packed = _aes.ccm_seal_packed
ccm_open_packed = _aes.ccm_open_packed
cmac_packed = _aes.cmac_packed
cmac_kdf = _aes.cmac_kdf
aes_encrypt_block = _aes.encrypt_block

__all__ += [
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
    "aes_encrypt_block",
]
# ==== end AES ====
