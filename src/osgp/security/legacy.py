"""The legacy OSGP security suite: OMA digest + RC4 + sequence numbers.

Two profiles differ in how the per-message RC4 key is derived and what is
encrypted; everything profile-specific lives in :class:`LegacyProfile`:

* :data:`MEP` - the OSGP Alliance MEP serial port, CONFIRMED by the MEP
  Client Developer's Guide v1.1: digest over code..sequence number (App. A,
  p.250), RC4 key = RC4(first 16 bytes of the access key) applied to a
  constant, first 8 bytes XOR the request digest (App. B, p.256-257);
  encrypted span = code..sequence number, digest and length in clear; the
  response continues the request's keystream.
* :data:`PLC` - the power-line (ETSI) profile, INFERRED: reconstructed from a
  public third-party reimplementation (docs/protocol.md §2.4 [EXER]); base key =
  EN14908(R1, empty, OMAK[0:6]) || EN14908(R2, empty, OMAK[0:6]), first 8
  bytes XOR the tag; ciphertext = RC4(K, m) || tag with tag = digest of the
  plaintext.  Which header bytes the PLC digest covers is not public
  (docs/protocol.md §10.1-10.2).

Sequence numbers (MEP guide p.11): the client adds one per request including
retries; the server accepts 1 to 8 increments beyond its last value, else it
answers 0x0C with its current value.  :class:`SequenceWindow` is the server
side, :class:`SequenceCounter` the client side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping

from osgp import crypto
from osgp.errors import ConfigurationError, SequenceError

__all__ = [
    "MEP_CONST_KEY",
    "PLC_R1",
    "PLC_R2",
    "mep_base_key",
    "plc_base_key",
    "message_key",
    "LegacyProfile",
    "MEP",
    "PLC",
    "SequenceWindow",
    "SequenceCounter",
]

#: ConstKey of MEP App. B (p.256-257): RC4-encrypted with the access key.
MEP_CONST_KEY = bytes.fromhex("388b8fbc36a8558587afc90fb23a3b99")
#: Challenges of the PLC base-key derivation (docs/protocol.md §2.4 [EXER]; INFERRED).
PLC_R1 = bytes.fromhex("813f529a7be389ba")
PLC_R2 = bytes.fromhex("72b0918d4405aa57")

SEQ_MODULUS = 1 << 32  # 4-byte sequence number, big-endian on the wire (MEP p.9-11)
SEQ_WINDOW = 8  # "up to 8 increments from the previous one" (MEP p.11)


def _key_bytes(key: Any, sizes: tuple[int, ...], what: str) -> bytes:
    try:
        k = bytes(memoryview(key))
    except TypeError:
        raise TypeError(f"{what} must be bytes-like, not {type(key).__name__}") from None
    if len(k) not in sizes:
        raise ConfigurationError(
            f"{what} must be {' or '.join(map(str, sizes))} bytes, got {len(k)}"
        )
    return k


def mep_base_key(access_key: Any) -> bytes:
    """MEP RC4 base key: ConstKey encrypted by RC4 under the first 16 bytes of
    the MAK/MBK (keys are up to 20 bytes; MEP p.13-15, App. B p.256)."""
    k = _key_bytes(access_key, (16, 17, 18, 19, 20), "MEP access key")
    return crypto.rc4(k[:16], MEP_CONST_KEY)


def plc_base_key(omak: Any) -> bytes:
    """PLC RC4 base key from the 12-byte OMAK (INFERRED, docs/protocol.md §2.4):
    only OMAK bytes 0..5 take part, through the classic EN 14908 function
    run over an empty message with two fixed challenges."""
    k = _key_bytes(omak, (12,), "OMAK")
    return crypto.en14908_auth(PLC_R1, b"", k[:6]) + crypto.en14908_auth(PLC_R2, b"", k[:6])


def message_key(base_key: bytes, digest: bytes) -> bytes:
    """Per-message RC4 key: the base key with bytes 0..7 XOR the 8-byte digest."""
    if len(base_key) != 16 or len(digest) != 8:
        raise ConfigurationError("message_key needs a 16-byte base key and an 8-byte digest")
    return bytes(a ^ b for a, b in zip(base_key[:8], digest)) + base_key[8:]


@dataclass(frozen=True)
class LegacyProfile:
    """Everything that differs between legacy-suite links.

    ``digest_key_sizes``: accepted sizes of the digest key; ``digest_key``
    maps the configured key to the OMA digest key; ``base_key`` derives the
    RC4 base key; ``response_continues_keystream``: the response is encrypted
    by continuing the request's RC4 state (MEP) rather than with a fresh key.
    """

    name: str
    status: str
    digest_key_sizes: tuple[int, ...]
    digest_key: Callable[[bytes], bytes]
    base_key: Callable[[bytes], bytes]
    response_continues_keystream: bool

    def check_key(self, key: Any) -> bytes:
        return _key_bytes(key, self.digest_key_sizes, f"{self.name} key")

    def seal(self, key: Any, message: Any) -> tuple[bytes, bytes, crypto.RC4]:
        """Encrypt ``message``: returns (ciphertext, digest of the plaintext,
        RC4 stream positioned after the message, for a chained response)."""
        k = self.check_key(key)
        plain = bytes(memoryview(message))
        digest = crypto.oma_digest(self.digest_key(k), plain)
        stream = crypto.RC4(message_key(self.base_key(k), digest))
        return stream.process(plain), digest, stream

    def open(self, key: Any, ciphertext: Any, digest: Any) -> tuple[bytes, crypto.RC4]:
        """Decrypt a message sealed with ``digest`` and verify the digest over the
        plaintext (raises AuthenticationError).  Returns (plaintext, stream)."""
        k = self.check_key(key)
        d = bytes(memoryview(digest))
        if len(d) != 8:
            raise ConfigurationError(f"digest must be 8 bytes, got {len(d)}")
        stream = crypto.RC4(message_key(self.base_key(k), d))
        plain = stream.process(ciphertext)
        crypto.oma_verify(self.digest_key(k), plain, d)
        return plain, stream


MEP = LegacyProfile(
    name="MEP",
    status="CONFIRMED (OSGP Alliance MEP guide v1.1 App. A/B)",
    digest_key_sizes=(16, 17, 18, 19, 20),
    digest_key=lambda k: k[:16],
    base_key=mep_base_key,
    response_continues_keystream=True,
)

PLC = LegacyProfile(
    name="PLC",
    status="INFERRED (public reimplementation, [EXER]; not the standard's text)",
    digest_key_sizes=(12,),
    digest_key=lambda k: k,
    base_key=plc_base_key,
    response_continues_keystream=False,
)


class SequenceWindow:
    """Receiver (device/server) side: accepts 1..``window`` increments past the
    last accepted value (mod 2**32), rejects reuse and anything else with a
    :class:`SequenceError` whose ``current`` is what a 0x0C response carries."""

    def __init__(self, current: int, window: int = SEQ_WINDOW) -> None:
        if not 0 <= current < SEQ_MODULUS:
            raise ConfigurationError("sequence number must fit in 32 bits")
        if not 1 <= window < SEQ_MODULUS // 2:
            raise ConfigurationError("window must be at least 1")
        self.current = current
        self.window = window

    def check(self, seq: int) -> None:
        ahead = (seq - self.current) % SEQ_MODULUS
        if not 1 <= ahead <= self.window:
            kind = "reused" if ahead == 0 else "outside the window"
            raise SequenceError(
                f"sequence number 0x{seq:08X} {kind} (current 0x{self.current:08X})",
                received=seq,
                current=self.current,
            )

    def accept(self, seq: int) -> None:
        """Check, then advance to ``seq``."""
        self.check(seq)
        self.current = seq

    def state(self) -> Dict[str, int]:
        """Plain data for a store; :meth:`from_state` rebuilds the window."""
        return {"current": self.current, "window": self.window}

    @classmethod
    def from_state(cls, state: Mapping[str, int]) -> SequenceWindow:
        return cls(int(state["current"]), int(state["window"]))


class SequenceCounter:
    """Client (concentrator) side: one increment per request, retries included
    (a retry after a timeout resends the identical frame, so the caller keeps
    the frame, not the number).  ``resync`` applies a 0x0C response."""

    def __init__(self, last: int = 0) -> None:
        self.last = last % SEQ_MODULUS

    def next(self) -> int:
        self.last = (self.last + 1) % SEQ_MODULUS
        return self.last

    def resync(self, current: int) -> None:
        """After 0x0C carrying the server's ``current`` value: the next request uses current+1."""
        self.last = current % SEQ_MODULUS

    def state(self) -> Dict[str, int]:
        """Plain data for a store; :meth:`from_state` rebuilds the counter."""
        return {"last": self.last}

    @classmethod
    def from_state(cls, state: Mapping[str, int]) -> SequenceCounter:
        return cls(int(state["last"]))
