"""Pure-Python AES-128 (FIPS-197) with the CMAC (NIST SP 800-38B) and CCM
(NIST SP 800-38C) modes the twin of osgp._native.aes needs.

Table-driven: the S-box is computed from its definition (FIPS-197 5.1.1: the
multiplicative inverse in GF(2^8) followed by the affine transformation) and
folded with MixColumns into four 256-entry tables of 32-bit column words, so a
round is 16 table look-ups.  A block travels as one 128-bit integer, byte 0
most significant (the FIPS-197 input order).  This is a reference for the
native kernels, not for production use: table look-ups indexed by secret
bytes are not constant time.
"""

from __future__ import annotations

import hmac
from typing import Optional

_M32 = 0xFFFFFFFF
_M128 = (1 << 128) - 1


def _xtime(b: int) -> int:
    """b * x in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (FIPS-197 4.2.1)."""
    b <<= 1
    return b ^ 0x11B if b & 0x100 else b


def _tables() -> tuple[list[int], tuple[list[int], ...]]:
    # exp / log over the generator 0x03 (x + 1) give the inverses (FIPS-197 4.2).
    exp, log = [0] * 255, [0] * 256
    x = 1
    for i in range(255):
        exp[i], log[x] = x, i
        x ^= _xtime(x)
    sbox = []
    for a in range(256):
        inv = exp[(255 - log[a]) % 255] if a else 0
        s = inv  # affine transformation, FIPS-197 eq. (5.1), c = 0x63
        for k in range(1, 5):
            s ^= ((inv << k) | (inv >> (8 - k))) & 0xFF
        sbox.append(s ^ 0x63)
    # Column word of MixColumns applied to (s, 0, 0, 0): rows 2s, s, s, 3s
    # (FIPS-197 5.1.3); the other three tables are its byte rotations.
    t0 = [(_xtime(s) << 24) | (s << 16) | (s << 8) | (_xtime(s) ^ s) for s in sbox]
    rot = [[((w >> r) | (w << (32 - r))) & _M32 for w in t0] for r in (8, 16, 24)]
    return sbox, (t0, rot[0], rot[1], rot[2])


_SBOX, (_T0, _T1, _T2, _T3) = _tables()


def _sub_word(w: int) -> int:
    s = _SBOX
    return (s[w >> 24] << 24) | (s[(w >> 16) & 255] << 16) | (s[(w >> 8) & 255] << 8) | s[w & 255]


class Aes128:
    """An expanded AES-128 key (FIPS-197 5.2: 44 round-key words)."""

    __slots__ = ("_rk", "_k1", "_k2")

    def __init__(self, key: bytes) -> None:
        w = [int.from_bytes(key[i : i + 4], "big") for i in range(0, 16, 4)]
        rcon = 1
        for i in range(4, 44):
            t = w[i - 1]
            if i % 4 == 0:  # SubWord(RotWord(t)) xor Rcon[i/4]
                t = _sub_word(((t << 8) | (t >> 24)) & _M32) ^ (rcon << 24)
                rcon = _xtime(rcon)
            w.append(w[i - 4] ^ t)
        self._rk = tuple(w)
        self._k1 = self._k2 = -1  # CMAC subkeys, derived on first use

    def encrypt(self, x: int) -> int:
        """One block (a 128-bit integer, byte 0 most significant) -> its ciphertext."""
        rk, t0, t1, t2, t3 = self._rk, _T0, _T1, _T2, _T3
        s0 = (x >> 96) ^ rk[0]
        s1 = ((x >> 64) & _M32) ^ rk[1]
        s2 = ((x >> 32) & _M32) ^ rk[2]
        s3 = (x & _M32) ^ rk[3]
        for k in range(4, 40, 4):  # rounds 1..9: SubBytes, ShiftRows, MixColumns, AddRoundKey
            s0, s1, s2, s3 = (
                t0[s0 >> 24] ^ t1[(s1 >> 16) & 255] ^ t2[(s2 >> 8) & 255] ^ t3[s3 & 255] ^ rk[k],
                t0[s1 >> 24] ^ t1[(s2 >> 16) & 255] ^ t2[(s3 >> 8) & 255] ^ t3[s0 & 255]
                ^ rk[k + 1],
                t0[s2 >> 24] ^ t1[(s3 >> 16) & 255] ^ t2[(s0 >> 8) & 255] ^ t3[s1 & 255]
                ^ rk[k + 2],
                t0[s3 >> 24] ^ t1[(s0 >> 16) & 255] ^ t2[(s1 >> 8) & 255] ^ t3[s2 & 255]
                ^ rk[k + 3],
            )
        s = _SBOX  # round 10: no MixColumns
        return (
            (((s[s0 >> 24] << 24) | (s[(s1 >> 16) & 255] << 16) | (s[(s2 >> 8) & 255] << 8)
              | s[s3 & 255]) ^ rk[40]) << 96
            | (((s[s1 >> 24] << 24) | (s[(s2 >> 16) & 255] << 16) | (s[(s3 >> 8) & 255] << 8)
                | s[s0 & 255]) ^ rk[41]) << 64
            | (((s[s2 >> 24] << 24) | (s[(s3 >> 16) & 255] << 16) | (s[(s0 >> 8) & 255] << 8)
                | s[s1 & 255]) ^ rk[42]) << 32
            | (((s[s3 >> 24] << 24) | (s[(s0 >> 16) & 255] << 16) | (s[(s1 >> 8) & 255] << 8)
                | s[s2 & 255]) ^ rk[43])
        )

    def encrypt_block(self, block: bytes) -> bytes:
        return self.encrypt(int.from_bytes(block, "big")).to_bytes(16, "big")

    def _cbc_mac(self, y: int, data: bytes) -> int:
        """CBC-MAC chaining from y over data (a multiple of 16 bytes)."""
        enc = self.encrypt
        for i in range(0, len(data), 16):
            y = enc(y ^ int.from_bytes(data[i : i + 16], "big"))
        return y

    def cmac(self, data: bytes) -> bytes:
        """AES-CMAC, the full 16-byte tag (SP 800-38B 6.2)."""
        if self._k1 < 0:  # SP 800-38B 6.1: K1 = dbl(E(0)), K2 = dbl(K1)
            self._k1 = _dbl(self.encrypt(0))
            self._k2 = _dbl(self._k1)
        n = len(data)
        full = n and n % 16 == 0
        last_at = n - 16 if full else n - n % 16
        last = data[last_at:]
        if full:
            m = int.from_bytes(last, "big") ^ self._k1
        else:  # 10* padding, then K2
            m = int.from_bytes(last + b"\x80" + bytes(15 - len(last)), "big") ^ self._k2
        y = self._cbc_mac(0, data[:last_at])
        return self.encrypt(y ^ m).to_bytes(16, "big")

    # CCM, SP 800-38C A.2 (formatting) and 6.1 / 6.2 (generation, verification).
    def _ccm_tag(self, nonce: bytes, aad: bytes, payload: bytes, tag_len: int) -> int:
        q = 15 - len(nonce)
        flags = (0x40 if aad else 0) | ((tag_len - 2) // 2) << 3 | (q - 1)
        y = self.encrypt(int.from_bytes(bytes([flags]) + nonce + len(payload).to_bytes(q, "big"),
                                        "big"))
        if aad:
            a = len(aad)
            if a < 0xFF00:  # A.2.2: 2, 6 or 10 length bytes
                head = a.to_bytes(2, "big")
            elif a >> 32 == 0:
                head = b"\xff\xfe" + a.to_bytes(4, "big")
            else:
                head = b"\xff\xff" + a.to_bytes(8, "big")
            blob = head + aad
            y = self._cbc_mac(y, blob + bytes(-len(blob) % 16))
        y = self._cbc_mac(y, payload + bytes(-len(payload) % 16))
        return y >> (128 - 8 * tag_len)

    def _ctr(self, nonce: bytes, data: bytes) -> tuple[bytes, int]:
        """(data xor the keystream of counters 1.., S0 = E(A0)) (SP 800-38C A.3)."""
        q = 15 - len(nonce)
        a0 = int.from_bytes(bytes([q - 1]) + nonce + bytes(q), "big")
        enc = self.encrypt
        nblk = (len(data) + 15) // 16
        ks = b"".join(enc(a0 + j).to_bytes(16, "big") for j in range(1, nblk + 1))
        n = len(data)
        out = (int.from_bytes(data, "big") ^ int.from_bytes(ks[:n], "big")).to_bytes(n, "big")
        return out, enc(a0)

    def ccm_seal(self, nonce: bytes, plaintext: bytes, aad: bytes, tag_len: int) -> bytes:
        t = self._ccm_tag(nonce, aad, plaintext, tag_len)
        c, s0 = self._ctr(nonce, plaintext)
        return c + (t ^ (s0 >> (128 - 8 * tag_len))).to_bytes(tag_len, "big")

    def ccm_open(self, nonce: bytes, data: bytes, aad: bytes, tag_len: int) -> Optional[bytes]:
        """The plaintext, or None when the tag does not verify."""
        p, s0 = self._ctr(nonce, data[: len(data) - tag_len])
        t = self._ccm_tag(nonce, aad, p, tag_len) ^ (s0 >> (128 - 8 * tag_len))
        if not hmac.compare_digest(t.to_bytes(tag_len, "big"), data[len(data) - tag_len :]):
            return None
        return p


def _dbl(x: int) -> int:
    """Doubling in GF(2^128) with R128 = 0x87 (SP 800-38B 5.3)."""
    return ((x << 1) & _M128) ^ (0x87 if x >> 127 else 0)
