"""Public cryptographic API of osgp: one-shot and batch calls over the kernels.

The functions are the native ones themselves when the extensions are in use
(no Python wrapper on the hot path), otherwise their pure-Python twins.  Type
checkers see the signatures of the hand-written stubs (``osgp/_native/*.pyi``),
which the twins match (tests/test_stubs.py).

Legacy OSGP security (CLC/TS 50586 Annex E; OSGP Alliance MEP guide App. A/B):
  oma_digest, oma_verify, OmaDigest, oma_digest_many, oma_digest_packed,
  en14908_auth, rc4, RC4, crc16_x25, crc16_lon, compare_digest

OSGP-AES-128-PSK primitives (CLC/TS 50586 Annex F): OSGP_MAC = AES-CMAC (NIST
SP 800-38B, RFC 4493); OSGP_AE / OSGP_AD = AES-CCM (NIST SP 800-38C, RFC 3610);
cmac_kdf = GKDF of RFC 5433 s.4:
  aes_cmac, ccm_seal, ccm_open, AesKey, ccm_seal_many, ccm_open_many, cmac_many,
  ccm_seal_packed, ccm_open_packed, cmac_packed, cmac_kdf, aes_encrypt_block

Authentication failures: single calls (``oma_verify``, ``ccm_open``) raise
:class:`~osgp.errors.AuthenticationError`; batch calls never raise for an item
that does not verify, they return a mask (``ccm_open_many``,
``ccm_open_packed``: see their docstrings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from osgp import _backend

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

if TYPE_CHECKING:
    from osgp._native.aes import (
        AesKey,
        aes_cmac,
        ccm_open,
        ccm_open_many,
        ccm_open_packed,
        ccm_seal,
        ccm_seal_many,
        ccm_seal_packed,
        cmac_kdf,
        cmac_many,
        cmac_packed,
    )
    from osgp._native.aes import encrypt_block as aes_encrypt_block
    from osgp._native.legacy import (
        RC4,
        OmaDigest,
        compare_digest,
        crc16_lon,
        crc16_x25,
        en14908_auth,
        oma_digest,
        oma_digest_many,
        oma_digest_packed,
        oma_verify,
        rc4,
    )
else:
    _legacy = _backend.load("legacy")[0]
    _aes = _backend.load("aes")[0]
    for _name in __all__:  # the kernel objects themselves, no wrapper
        _src = "encrypt_block" if _name == "aes_encrypt_block" else _name
        globals()[_name] = getattr(_legacy if hasattr(_legacy, _src) else _aes, _src)
