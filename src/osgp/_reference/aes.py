"""Pure-Python twin of osgp._native.aes.

AES-CMAC = OSGP_MAC (NIST SP 800-38B, RFC 4493), AES-CCM = OSGP_AE / OSGP_AD
(NIST SP 800-38C, RFC 3610), and the CMAC KDF in the GKDF shape of RFC 5433
section 4 (CLC/TS 50586 Annex F cites all three), over the pure-Python AES-128
of osgp._reference._aes128.  Same names, signatures, argument checks (in the
same order) and errors as the native module, so every test runs on both; the
tests check both against the ``cryptography`` package, an independent
implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional, Union

from osgp._reference._aes128 import Aes128
from osgp._reference._buffers import as_bytes, as_items, is_buffer, writable_out
from osgp.errors import ArgumentTypeError, AuthenticationError, ConfigurationError

BLOCK_SIZE = 16
KEY_SIZE = 16


def _check_key(k: bytes) -> None:
    if len(k) != 16:
        raise ConfigurationError(f"AES-128 key must be 16 bytes, got {len(k)}")


def _check_ccm(nonce_len: int, tag_len: int, plen: int) -> None:
    """Nonce 7..13 and tag 4..16 even (SP 800-38C A.1); payload fits q bytes."""
    if not 7 <= nonce_len <= 13:
        raise ConfigurationError(f"CCM nonce must be 7 to 13 bytes, got {nonce_len}")
    if not 4 <= tag_len <= 16 or tag_len & 1:
        raise ConfigurationError(f"CCM tag length must be 4, 6, 8, 10, 12, 14 or 16, got {tag_len}")
    q = 15 - nonce_len
    if plen >= 0 and q < 8 and plen >> (8 * q):
        raise ConfigurationError(
            f"payload of {plen} bytes is too long for a {q}-byte CCM length field "
            "(use a shorter nonce)"
        )


def _check_cmac_tag(tag_len: int) -> None:
    if not 1 <= tag_len <= 16:
        raise ConfigurationError(f"CMAC tag length must be 1 to 16, got {tag_len}")


class AesKey:
    """An AES-128 key checked once, with the module's operations as methods."""

    key_size = 16

    def __init__(self, key: Any) -> None:
        k = as_bytes(key, "key")
        _check_key(k)
        self._key = Aes128(k)

    def __repr__(self) -> str:
        return "<AesKey AES-128>"

    def __reduce__(self) -> Any:
        raise TypeError("AesKey cannot be pickled (it holds key material)")

    def encrypt_block(self, block: Any) -> bytes:
        return encrypt_block(self, block)

    def aes_cmac(self, data: Any, tag_len: int = 16) -> bytes:
        return aes_cmac(self, data, tag_len)

    def ccm_seal(
        self, nonce: Any, plaintext: Any, aad: Any = b"", tag_len: int = 8, *, out: Any = None
    ) -> Any:
        return ccm_seal(self, nonce, plaintext, aad, tag_len, out=out)

    def ccm_open(
        self, nonce: Any, data: Any, aad: Any = b"", tag_len: int = 8, *, out: Any = None
    ) -> Any:
        return ccm_open(self, nonce, data, aad, tag_len, out=out)

    def ccm_seal_many(
        self, nonces: Any, plaintexts: Any, aads: Any = None, tag_len: int = 8
    ) -> list[bytes]:
        return ccm_seal_many(self, nonces, plaintexts, aads, tag_len)

    def ccm_open_many(
        self, nonces: Any, datas: Any, aads: Any = None, tag_len: int = 8
    ) -> tuple[list[Optional[bytes]], bytes]:
        return ccm_open_many(self, nonces, datas, aads, tag_len)

    def cmac_many(self, messages: Any, tag_len: int = 16) -> list[bytes]:
        return cmac_many(self, messages, tag_len)

    def cmac_kdf(self, data: Any, length: int) -> bytes:
        return cmac_kdf(self, data, length)


def _key(key: Any) -> Aes128:
    if isinstance(key, AesKey):
        return key._key
    k = as_bytes(key, "key")
    _check_key(k)
    return Aes128(k)


def _cmac_raw(k: Aes128, data: bytes) -> bytes:
    return k.cmac(data)


def encrypt_block(key: Any, block: Any) -> bytes:
    """AES-128 encryption of one 16-byte block (FIPS-197)."""
    k = _key(key)
    b = as_bytes(block, "block")
    if len(b) != 16:
        raise ConfigurationError(f"block must be 16 bytes, got {len(b)}")
    return k.encrypt_block(b)


def aes_cmac(key: Any, data: Any, tag_len: int = 16) -> bytes:
    """AES-CMAC (SP 800-38B) truncated to ``tag_len`` (1..16) bytes."""
    k = _key(key)
    _check_cmac_tag(tag_len)
    return _cmac_raw(k, as_bytes(data, "data"))[:tag_len]


def cmac_kdf(key: Any, data: Any, length: int) -> bytes:
    """GKDF-length(key, data), RFC 5433 s.4: CMAC(key, i (16-bit BE) || data), i = 1.."""
    k = _key(key)
    if not 0 <= length <= 0xFFFF * 16:
        raise ConfigurationError(f"KDF output length must be 0 to {0xFFFF * 16}, got {length}")
    z = as_bytes(data, "data")
    out = b"".join(
        _cmac_raw(k, i.to_bytes(2, "big") + z) for i in range(1, (length + 15) // 16 + 1)
    )
    return out[:length]


def ccm_seal(
    key: Any, nonce: Any, plaintext: Any, aad: Any = b"", tag_len: int = 8, *, out: Any = None
) -> Any:
    """AES-CCM encryption: ciphertext || tag (see the native docstring)."""
    k = _key(key)
    n = as_bytes(nonce, "nonce")
    p = as_bytes(plaintext, "plaintext")
    a = as_bytes(aad, "aad")
    _check_ccm(len(n), tag_len, len(p))
    target = None if out is None else writable_out(out, len(p) + tag_len, "out")
    res = k.ccm_seal(n, p, a, tag_len)
    if target is None:
        return res
    target[:] = res
    return out


def ccm_open(
    key: Any, nonce: Any, data: Any, aad: Any = b"", tag_len: int = 8, *, out: Any = None
) -> Any:
    """AES-CCM decryption; AuthenticationError on a bad tag."""
    k = _key(key)
    n = as_bytes(nonce, "nonce")
    d = as_bytes(data, "data")
    a = as_bytes(aad, "aad")
    _check_ccm(len(n), tag_len, -1)
    if len(d) < tag_len:
        raise AuthenticationError(
            f"CCM data of {len(d)} bytes is shorter than the {tag_len}-byte tag"
        )
    plen = len(d) - tag_len
    _check_ccm(len(n), tag_len, plen)
    target = None if out is None else writable_out(out, plen, "out")
    res = k.ccm_open(n, d, a, tag_len)
    if res is None:
        if target is not None:
            target[:] = bytes(plen)
        raise AuthenticationError("CCM tag mismatch")
    if target is None:
        return res
    target[:] = res
    return out


# ---- batch forms -------------------------------------------------------------------


def _is_single_key(keys: Any) -> bool:
    return isinstance(keys, AesKey) or is_buffer(keys)


def _keys(keys: Any, n: int) -> list[Aes128]:
    if _is_single_key(keys):
        return [_key(keys)] * n
    ks = as_items(keys, "keys")
    if len(ks) != n:
        raise ConfigurationError(f"got {len(ks)} keys for {n} messages")
    return [_key(k) for k in ks]


def _nonces(nonces: Any, n: int) -> tuple[list[bytes], int]:
    ns = as_items(nonces, "nonces")
    if len(ns) != n:
        raise ConfigurationError(f"got {len(ns)} nonces for {n} messages")
    out: list[bytes] = []
    nl = -1
    for i, x in enumerate(ns):
        b = as_bytes(x, "nonce")
        if nl < 0:
            nl = len(b)
        elif len(b) != nl:
            raise ConfigurationError(
                f"all nonces of a batch must have one length: nonce {i} has {len(b)} bytes, "
                f"nonce 0 has {nl}"
            )
        out.append(b)
    return out, (nl if nl >= 0 else 13)


def _aads(aads: Any, n: int) -> list[bytes]:
    if aads is None:
        return [b""] * n
    if is_buffer(aads):
        return [as_bytes(aads, "aad")] * n
    al = as_items(aads, "aads")
    if len(al) != n:
        raise ConfigurationError(f"got {len(al)} AADs for {n} messages")
    return [as_bytes(a, "aad") for a in al]


def ccm_seal_many(
    keys: Any, nonces: Any, plaintexts: Iterable[Any], aads: Any = None, tag_len: int = 8
) -> list[bytes]:
    """CCM-seal many messages (one key or one per message)."""
    msgs = as_items(plaintexts, "plaintexts")
    n = len(msgs)
    ks = _keys(keys, n)
    ns, nl = _nonces(nonces, n)
    al = _aads(aads, n)
    ps = [as_bytes(m, "message") for m in msgs]
    _check_ccm(nl, tag_len, -1)
    for p in ps:
        _check_ccm(nl, tag_len, len(p))
    return [k.ccm_seal(x, p, a, tag_len) for k, x, p, a in zip(ks, ns, ps, al)]


def _open_one(k: Aes128, nonce: bytes, d: bytes, a: bytes, tag_len: int) -> Optional[bytes]:
    if len(d) < tag_len:
        return None
    q = 15 - len(nonce)
    if q < 8 and (len(d) - tag_len) >> (8 * q):
        return None
    return k.ccm_open(nonce, d, a, tag_len)


def ccm_open_many(
    keys: Any, nonces: Any, datas: Iterable[Any], aads: Any = None, tag_len: int = 8
) -> tuple[list[Optional[bytes]], bytes]:
    """CCM-open many messages: ``(plaintexts, ok)``, ``ok[i]`` 1 when message i
    verified, 0 (and ``plaintexts[i]`` None) when it did not; never raises for
    a message that fails (see the native docstring)."""
    msgs = as_items(datas, "datas")
    n = len(msgs)
    ks = _keys(keys, n)
    ns, nl = _nonces(nonces, n)
    al = _aads(aads, n)
    ds = [as_bytes(m, "message") for m in msgs]
    _check_ccm(nl, tag_len, -1)
    outs = [_open_one(k, x, d, a, tag_len) for k, x, d, a in zip(ks, ns, ds, al)]
    return outs, bytes(r is not None for r in outs)


def cmac_many(keys: Any, messages: Iterable[Any], tag_len: int = 16) -> list[bytes]:
    """AES-CMAC of many messages (one key or one per message)."""
    msgs = as_items(messages, "messages")
    _check_cmac_tag(tag_len)
    ks = _keys(keys, len(msgs))
    ms = [as_bytes(m, "message") for m in msgs]
    return [_cmac_raw(k, m)[:tag_len] for k, m in zip(ks, ms)]


# ---- packed-buffer forms ----------------------------------------------------------


def _base(obj: Any) -> Any:
    try:
        b = memoryview(obj).obj
    except TypeError:
        return obj
    while isinstance(b, memoryview):
        b = b.obj
    return b


def _check_no_overlap(out: Any, data: Any) -> None:
    """Packed outputs move messages: ``out`` must not be ``data``'s memory."""
    if out is not None and _base(out) is _base(data) and len(memoryview(data)):
        raise ConfigurationError("out must not overlap data in the packed forms")


def _offsets(offsets: Any, data_len: int, what: str) -> list[int]:
    try:
        mv = memoryview(offsets)
    except TypeError:
        raise ArgumentTypeError(f"{what} must be a contiguous buffer of int64") from None
    if not mv.c_contiguous:
        raise ArgumentTypeError(f"{what} must be a contiguous buffer of int64")
    if mv.itemsize != 8 or mv.ndim != 1 or not mv.format.endswith(("q", "l", "Q", "L")):
        raise ArgumentTypeError(f"{what} must be a 1-d buffer of int64, got format {mv.format!r}")
    off = mv.cast("B").cast("q").tolist()
    n = len(off) - 1
    if n < 0:
        raise ConfigurationError(f"{what} needs at least one entry (n+1 for n messages)")
    for i in range(n):
        if off[i] < 0 or off[i + 1] < off[i] or off[i + 1] > data_len:
            raise ConfigurationError(
                f"{what}[{i}:{i + 2}] = {off[i]}, {off[i + 1]} do not lie in the "
                f"{data_len}-byte data buffer in order"
            )
    return off


def _packed_common(
    key: Any, n: int, key_size: Optional[int], nonces: Any, aad: Any, aad_offsets: Any
) -> tuple[list[Aes128], list[bytes], int, list[bytes]]:
    if key_size is None:
        ks = [_key(key)] * n
    else:
        if isinstance(key, AesKey):
            raise ConfigurationError("key_size needs the n keys packed in one buffer")
        kb = as_bytes(key, "key")
        if key_size != 16 or len(kb) != 16 * n:
            raise ConfigurationError(
                f"packed keys: expected {n} x 16 = {16 * n} bytes, got {len(kb)} "
                f"(key_size={key_size})"
            )
        ks = [Aes128(kb[16 * i : 16 * i + 16]) for i in range(n)]
    nb = as_bytes(nonces, "nonces")
    if n == 0:
        nl = 13
    elif len(nb) % n:
        raise ConfigurationError(f"{len(nb)} nonce bytes do not split into {n} nonces")
    else:
        nl = len(nb) // n
    ns = [nb[i * nl : (i + 1) * nl] for i in range(n)]
    if aad is None:
        al = [b""] * n
    else:
        ab = as_bytes(aad, "aad")
        if aad_offsets is None:
            al = [ab] * n
        else:
            ao = _offsets(aad_offsets, len(ab), "aad_offsets")
            if len(ao) - 1 != n:
                raise ConfigurationError(
                    f"aad_offsets describe {len(ao) - 1} AADs for {n} messages"
                )
            al = [ab[ao[i] : ao[i + 1]] for i in range(n)]
    return ks, ns, nl, al


def ccm_seal_packed(
    key: Any,
    nonces: Any,
    data: Any,
    offsets: Any,
    *,
    aad: Any = None,
    aad_offsets: Any = None,
    tag_len: int = 8,
    key_size: Optional[int] = None,
    out: Any = None,
) -> Any:
    """Zero-copy batch seal (see the native docstring for the layout)."""
    buf = as_bytes(data, "data")
    off = _offsets(offsets, len(buf), "offsets")
    n = len(off) - 1
    ks, ns, nl, al = _packed_common(key, n, key_size, nonces, aad, aad_offsets)
    _check_ccm(nl, tag_len, -1)
    for i in range(n):
        _check_ccm(nl, tag_len, off[i + 1] - off[i])
    if out is None:
        out = bytearray(len(buf) + n * tag_len)
    target = writable_out(out, len(buf) + n * tag_len, "out")
    _check_no_overlap(out, data)
    for i in range(n):
        sealed = ks[i].ccm_seal(ns[i], buf[off[i] : off[i + 1]], al[i], tag_len)
        start = off[i] + i * tag_len
        target[start : start + len(sealed)] = sealed
    return out


def ccm_open_packed(
    key: Any,
    nonces: Any,
    data: Any,
    offsets: Any,
    *,
    aad: Any = None,
    aad_offsets: Any = None,
    tag_len: int = 8,
    key_size: Optional[int] = None,
    out: Any = None,
) -> tuple[Any, bytes]:
    """Zero-copy batch open: ``(out, ok)``, ``ok[i]`` 1 when message i verified,
    0 (its plaintext zeroed) when it did not; never raises for a message that
    fails (see the native docstring)."""
    buf = as_bytes(data, "data")
    off = _offsets(offsets, len(buf), "offsets")
    n = len(off) - 1
    ks, ns, nl, al = _packed_common(key, n, key_size, nonces, aad, aad_offsets)
    _check_ccm(nl, tag_len, -1)
    total = sum(max(0, off[i + 1] - off[i] - tag_len) for i in range(n))
    if out is None:
        out = bytearray(total)
    target = writable_out(out, total, "out")
    _check_no_overlap(out, data)
    ok = bytearray(n)
    pos = 0
    for i in range(n):
        d = buf[off[i] : off[i + 1]]
        plen = max(0, len(d) - tag_len)
        res = _open_one(ks[i], ns[i], d, al[i], tag_len)
        if res is None:
            target[pos : pos + plen] = bytes(plen)
        else:
            target[pos : pos + plen] = res
            ok[i] = 1
        pos += plen
    return out, bytes(ok)


def cmac_packed(
    key: Any,
    data: Any,
    offsets: Any,
    *,
    tag_len: int = 16,
    key_size: Optional[int] = None,
    out: Any = None,
) -> Any:
    """Zero-copy batch CMAC; tags packed in ``out``."""
    _check_cmac_tag(tag_len)
    buf = as_bytes(data, "data")
    off = _offsets(offsets, len(buf), "offsets")
    n = len(off) - 1
    ks, _, _, _ = _packed_common(key, n, key_size, b"", None, None)
    if out is None:
        out = bytearray(n * tag_len)
    target = writable_out(out, n * tag_len, "out")
    for i in range(n):
        target[i * tag_len : (i + 1) * tag_len] = _cmac_raw(ks[i], buf[off[i] : off[i + 1]])[
            :tag_len
        ]
    return out


def aes_path() -> str:
    return "python"


def cpu_features() -> frozenset[str]:
    return frozenset()


def set_cpu_features(names: Optional[Sequence[str]] = None) -> None:
    """No-op in the twin (kept for signature parity)."""


KeyLike = Union[bytes, bytearray, memoryview, AesKey]
