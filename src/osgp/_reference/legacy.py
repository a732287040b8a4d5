"""Pure-Python twin of osgp._native.legacy (OMA digest, EN 14908 auth, RC4, CRCs).

Algorithms: OMA digest = CLC/TS 50586 Annex E and the OSGP Alliance MEP guide
Appendix A Digest() (p.250-253); EN 14908 = ISO/IEC 14908-1 authentication
(lon-stack-dx lcs_tsa.c Encrypt()); see csrc/osgp_oma.c for the step.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from osgp._reference._buffers import as_bytes, as_items, is_buffer, writable_out
from osgp.errors import ArgumentTypeError, AuthenticationError, ConfigurationError

DIGEST_SIZE = 8
_ITERATIONS = {6: 6, 12: 18, 16: 24}  # key bytes per block (MEP App. A)


def _check_oma_key(n: int) -> None:
    if n not in _ITERATIONS:
        raise ConfigurationError(f"OMA digest key must be 6, 12 or 16 bytes, got {n}")


def _rotl1(n: int) -> int:
    return ((n << 1) | (n >> 7)) & 0xFF


def _rotr1(n: int) -> int:
    return ((n >> 1) | (n << 7)) & 0xFF


def _step(d: list[int], v: int, m: int, bit: int) -> None:
    """One update of state byte v (docs/protocol.md §2.1): d[v] = d[v+1] + m +/- rot(~(d[v]+v))."""
    n = ~(d[v] + v) & 0xFF
    r = _rotl1(n) if bit else -_rotr1(n)
    d[v] = (d[(v + 1) & 7] + m + r) & 0xFF


class OmaDigest:
    """Streaming OMA digest; ``digest()`` leaves the object usable."""

    digest_size = 8

    def __init__(self, key: Any, data: Any = None) -> None:
        k = as_bytes(key, "key")
        _check_oma_key(len(k))
        self._key = k
        self._block = 8 * _ITERATIONS[len(k)]
        self._d = [0] * 8
        self._pos = 0
        self._fed = False
        if data is not None:
            self.update(data)

    @property
    def key_size(self) -> int:
        return len(self._key)

    @property
    def block_size(self) -> int:
        return self._block

    def _absorb(self, d: list[int], pos: int, data: bytes) -> int:
        key, klen, block = self._key, len(self._key), self._block
        for m in data:
            t = pos & 7
            _step(d, 7 - t, m, (key[(pos >> 3) % klen] >> t) & 1)
            pos += 1
            if pos == block:
                pos = 0
        return pos

    def update(self, data: Any) -> None:
        b = as_bytes(data, "data")
        if b:
            self._fed = True
            self._pos = self._absorb(self._d, self._pos, b)

    def digest(self) -> bytes:
        d = list(self._d)
        # Zero padding to the block end; an empty message is one zero block
        # (MEP App. A: bEnd with apduSize 0 still runs the key once).
        if self._pos or not self._fed:
            self._absorb(d, self._pos, bytes(self._block - self._pos))
        return bytes(d)

    def hexdigest(self) -> str:
        return self.digest().hex()

    def copy(self) -> OmaDigest:
        other = OmaDigest(self._key)
        other._d, other._pos, other._fed = list(self._d), self._pos, self._fed
        return other


def oma_digest(key: Any, data: Any) -> bytes:
    """8-byte OMA digest of ``data`` under a 6-, 12- or 16-byte key."""
    h = OmaDigest(key)
    h.update(as_bytes(data, "data"))
    return h.digest()


def compare_digest(a: Any, b: Any) -> bool:
    return hmac.compare_digest(as_bytes(a, "a"), as_bytes(b, "b"))


def oma_verify(key: Any, data: Any, tag: Any) -> None:
    if not compare_digest(oma_digest(key, data), tag):
        raise AuthenticationError("OMA digest mismatch")


def oma_digest_many(keys: Any, messages: Iterable[Any]) -> list[bytes]:
    msgs = as_items(messages, "messages")
    if is_buffer(keys):
        k = as_bytes(keys, "key")
        _check_oma_key(len(k))
        return [oma_digest(k, m) for m in msgs]
    key_list = [as_bytes(k, "key") for k in as_items(keys, "keys")]
    if len(key_list) != len(msgs):
        raise ConfigurationError(f"got {len(key_list)} keys for {len(msgs)} messages")
    if key_list:
        _check_oma_key(len(key_list[0]))
        for i, k in enumerate(key_list):
            if len(k) != len(key_list[0]):
                raise ConfigurationError(
                    f"all keys of a batch must have one size: key {i} has {len(k)} bytes, "
                    f"key 0 has {len(key_list[0])}"
                )
    return [oma_digest(k, m) for k, m in zip(key_list, msgs)]


def oma_digest_packed(
    key: Any, data: Any, offsets: Any, *, key_size: Optional[int] = None, out: Any = None
) -> Any:
    try:
        mv = memoryview(offsets)
    except TypeError:
        raise ArgumentTypeError("offsets must be a contiguous buffer of int64") from None
    if mv.itemsize != 8 or mv.ndim != 1 or not mv.format.endswith(("q", "l", "Q", "L")):
        raise ArgumentTypeError(f"offsets must be a 1-d buffer of int64, got format {mv.format!r}")
    off = mv.cast("B").cast("q").tolist()
    n = len(off) - 1
    if n < 0:
        raise ConfigurationError("offsets needs at least one entry (n+1 for n messages)")
    buf = as_bytes(data, "data")
    for i in range(n):
        if off[i] < 0 or off[i + 1] < off[i] or off[i + 1] > len(buf):
            raise ConfigurationError(
                f"offsets[{i}:{i + 2}] = {off[i]}, {off[i + 1]} do not lie in the "
                f"{len(buf)}-byte data buffer in order"
            )
    k = as_bytes(key, "key")
    klen = len(k)
    if key_size is not None:
        klen = key_size
        if len(k) != klen * n:
            raise ConfigurationError(
                f"packed keys: expected {n} x {klen} = {klen * n} bytes, got {len(k)}"
            )
    _check_oma_key(klen)
    if out is None:
        out = bytearray(8 * n)
    target = writable_out(out, 8 * n, "out")
    for i in range(n):
        kk = k[i * klen : (i + 1) * klen] if key_size is not None else k
        target[8 * i : 8 * i + 8] = oma_digest(kk, buf[off[i] : off[i + 1]])
    return out


def en14908_auth(challenge: Any, data: Any, key: Any, *, oma_address: Any = None) -> bytes:
    """ISO/IEC 14908-1 challenge/response value (see the native docstring)."""
    c = as_bytes(challenge, "challenge")
    if len(c) != 8:
        raise ConfigurationError(f"challenge must be 8 bytes, got {len(c)}")
    k = as_bytes(key, "key")
    if len(k) not in (6, 12):
        raise ConfigurationError(
            f"EN 14908 key must be 6 bytes (classic) or 12 bytes (OMA), got {len(k)}"
        )
    prefix = b""
    if oma_address is not None:
        prefix = as_bytes(oma_address, "oma_address")
        if len(prefix) != 8:
            raise ConfigurationError(f"oma_address must be 8 bytes, got {len(prefix)}")
        if len(k) != 12:
            raise ConfigurationError("oma_address needs a 12-byte (OMA) key")
    msg = prefix + as_bytes(data, "data")
    iters = 6 if len(k) == 6 else 18
    d = list(c)
    p = len(msg)
    while True:  # at least one pass, message consumed from its end (lcs_tsa.c)
        for i in range(iters):
            kb = k[i % len(k)]
            for j in range(7, -1, -1):
                m = 0
                if p > 0:
                    p -= 1
                    m = msg[p]
                _step(d, j, m, (kb >> (7 - j)) & 1)
        if p == 0:
            break
    return bytes(d)


def _check_rc4_key(n: int) -> None:
    if not 1 <= n <= 256:
        raise ConfigurationError(f"RC4 key must be 1 to 256 bytes, got {n}")


class RC4:
    """RC4 stream (KSA + PRGA, no discard); the keystream continues across calls."""

    def __init__(self, key: Any) -> None:
        k = as_bytes(key, "key")
        _check_rc4_key(len(k))
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + k[i % len(k)]) & 0xFF
            s[i], s[j] = s[j], s[i]
        self._s, self._x, self._y = s, 0, 0

    def process(self, data: Any) -> bytes:
        b = as_bytes(data, "data")
        s, x, y = self._s, self._x, self._y
        out = bytearray(len(b))
        for i, c in enumerate(b):
            x = (x + 1) & 0xFF
            y = (y + s[x]) & 0xFF
            s[x], s[y] = s[y], s[x]
            out[i] = c ^ s[(s[x] + s[y]) & 0xFF]
        self._x, self._y = x, y
        return bytes(out)


def rc4(key: Any, data: Any) -> bytes:
    return RC4(key).process(data)


def crc16_x25(data: Any) -> int:
    """CRC-16/X-25: reflected 0x8408, init 0xFFFF, xorout 0xFFFF (ANSI C12.18)."""
    crc = 0xFFFF
    for c in as_bytes(data, "data"):
        crc ^= c
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def crc16_lon(data: Any) -> int:
    """ISO/IEC 14908-1 link CRC: 0x1021 MSB first, init 0xFFFF, complemented."""
    crc = 0xFFFF
    for c in as_bytes(data, "data"):
        crc ^= c << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc ^ 0xFFFF


def batch_path() -> str:
    return "python"


def cpu_features() -> frozenset[str]:
    return frozenset()


def set_cpu_features(names: Optional[Sequence[str]] = None) -> None:
    """No-op in the twin (kept for signature parity)."""
