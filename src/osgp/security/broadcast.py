"""Secure group broadcasts: the envelope under the broadcast key and the
receiver's sequence-number range.  Everything here is INFERRED
(docs/protocol.md §10.3; docs/operations-firmware.md gives the reasoning).

What the public record gives: ET04 offset 76 "Broadcast Receipt" (LTIME_DATE,
UTC of the last successful secure broadcast receipt), offset 82 "Secure
broadcast base value (B)" (UINT32) and offset 86 "Secure broadcast delta value
(D)" (UINT16) [MEP p.61-62]; ET54 offset 86 "Broadcast Key Usage Count",
counting every use of the broadcast key whatever the outcome, distinct from
the unicast key's [MEP p.137].  A broadcast is unacknowledged, so no 0x0C
answer can resynchronise a sender; the reconstruction:

* a broadcast carries a 4-byte big-endian sequence number like a unicast
  request and is sealed under the **broadcast key** (a key of its own: ET54
  counts it apart) with the suite's envelope: the legacy digest
  (:class:`LegacyBroadcast`, the PLC envelope of osgp.security.suite), or
  AES-CCM with the nonce's broadcast bit set (:class:`AesBroadcast`, the
  nonce of osgp.security.aes_psk);
* the receiver accepts sequence number S only inside the range (B, B + D]
  above its base (:class:`BroadcastRange`); accepting sets B = S, so every
  number up to the last accepted one (a replay, or a broadcast reordered
  behind a later one) is refused, and a number more than D ahead (a frame
  held back for later use) too;
* the same frame heard again (a repeat of the unacknowledged-repeated
  service, ISO/IEC 14908-1) is a repeat, dropped without being counted as a
  replay.
"""

from __future__ import annotations

from collections import Counter
from typing import Tuple

from osgp import crypto
from osgp.errors import SequenceError, TruncatedError
from osgp.security.aes_psk import DEFAULT_PROFILE, DOWN, AesPskProfile
from osgp.security.suite import PLC_ENVELOPE, LegacySuite

__all__ = [
    "BroadcastRange",
    "LegacyBroadcast",
    "AesBroadcast",
    "DEFAULT_DELTA",
    "REPEAT",
    "ACCEPTED",
]

#: D when nothing set it: the largest UINT16 (ET04 offset 86 is a UINT16).
DEFAULT_DELTA = 0xFFFF
ACCEPTED, REPEAT = "accepted", "repeat"


class BroadcastRange:
    """The receiver's window (B, B + D] of broadcast sequence numbers.

    ``stats`` counts ``accepted``, ``repeat``, ``replay rejected`` (S <= B)
    and ``ahead of range`` (S > B + D)."""

    def __init__(self, base: int = 0, delta: int = DEFAULT_DELTA) -> None:
        self.base, self.delta = base, delta
        self.stats: Counter = Counter()
        self._last = b""  # the frame last accepted (a repeat of it is no replay)

    def check(self, seq: int, frame: bytes) -> str:
        """``ACCEPTED`` or ``REPEAT``; raises SequenceError outside the range.
        An accepted number still needs :meth:`commit` once the frame verifies."""
        if seq <= self.base:
            if frame == self._last:
                self.stats[REPEAT] += 1
                return REPEAT
            self.stats["replay rejected"] += 1
            raise SequenceError(
                f"broadcast sequence number {seq} not above the base {self.base}",
                received=seq,
                expected=self.base + 1,
            )
        if seq > self.base + self.delta:
            self.stats["ahead of range"] += 1
            raise SequenceError(
                f"broadcast sequence number {seq} beyond {self.base} + {self.delta}",
                received=seq,
                expected=self.base + 1,
            )
        return ACCEPTED

    def commit(self, seq: int, frame: bytes) -> None:
        self.base, self._last = seq, bytes(frame)
        self.stats[ACCEPTED] += 1


class LegacyBroadcast:
    """The legacy PLC envelope under the broadcast key: ``E(code args
    seq:4 BE) || digest:8`` (osgp.security.suite.PLC_ENVELOPE), with no
    response to chain over."""

    def __init__(self, key: bytes) -> None:
        self._suite = LegacySuite(key, PLC_ENVELOPE)
        self.overhead = self._suite.request_overhead

    def seal(self, apdu: bytes, seq: int) -> bytes:
        return self._suite.seal_request(apdu, seq)[0]

    def sequence(self, wire: bytes) -> int:
        """The sequence number before the digest (read before verifying, to
        refuse a replay without the work of a digest)."""
        n = len(wire) - self.overhead
        if n < 1:
            raise TruncatedError(
                layer="broadcast.envelope", offset=0, needed=self.overhead + 1, remaining=len(wire)
            )
        return int.from_bytes(wire[n : n + 4], "big")

    def open(self, wire: bytes) -> Tuple[bytes, int]:
        apdu, seq, _ = self._suite.open_request(wire)
        return apdu, seq


class AesBroadcast:
    """AES-CCM under the broadcast key: ``seq:4 BE || ciphertext || tag``
    with the OSGP-AES-128-PSK nonce, broadcast bit set and the 6-byte group
    address (osgp.security.aes_psk.AesPskProfile.nonce)."""

    def __init__(
        self,
        key: bytes,
        group_address: bytes,
        *,
        key_id: int = 0,
        profile: AesPskProfile = DEFAULT_PROFILE,
    ) -> None:
        self._key = crypto.AesKey(key)
        self.address, self.key_id, self.profile = bytes(group_address), key_id, profile
        profile.nonce(DOWN, True, self.address, key_id, 0)  # validates the address
        self.overhead = 4 + profile.tag_len

    def _nonce(self, seq: int) -> bytes:
        return self.profile.nonce(DOWN, True, self.address, self.key_id, seq)

    def seal(self, apdu: bytes, seq: int) -> bytes:
        sb = seq.to_bytes(4, "big")
        return sb + self._key.ccm_seal(self._nonce(seq), apdu, sb, self.profile.tag_len)

    def sequence(self, wire: bytes) -> int:
        if len(wire) < self.overhead:
            raise TruncatedError(
                layer="broadcast.aes", offset=0, needed=self.overhead, remaining=len(wire)
            )
        return int.from_bytes(wire[:4], "big")

    def open(self, wire: bytes) -> Tuple[bytes, int]:
        seq = self.sequence(wire)
        tag = self.profile.tag_len
        return self._key.ccm_open(self._nonce(seq), wire[4:], wire[:4], tag), seq
