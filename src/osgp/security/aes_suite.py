"""OSGP-AES-128-PSK behind the link security-suite interface.

:class:`AesPskSuite` makes the same four calls as
:class:`osgp.security.suite.LegacySuite` (``seal_request`` / ``open_response``
on the client, ``open_request`` / ``seal_response`` on the device) on top of
one :class:`osgp.security.aes_psk.CryptoContext` per side, so a
:class:`~osgp.session.ClientSession` and a
:class:`~osgp.session.DeviceSession` run over MEP, PLC or a PLC proxy
chain with either suite.

Envelope (every choice **INFERRED**: the Annex F layouts are not public,
docs/protocol.md §5.1; all of them live in :class:`AesEnvelope` and in the
suite's :class:`~osgp.security.aes_psk.AesPskProfile`)::

    request  wire = seq_c:4 BE || CCM(K, nonce(DOWN, seq_c), apdu, aad = request_aad || seq_c)
    response wire = seq_d:4 BE || CCM(K, nonce(UP, seq_d), apdu,
                                      aad = request_aad || seq_c || seq_d)   (bind_response)
    0x0B     wire = 0x0B, unprotected (MEP guide p.10-11: sent unencrypted)
    0x0C     the ordinary protected response 0x0C || current:4 BE (MEP p.11, p.15)

The suite numbers its own frames (``owns_sequence``): per-direction counters
and the replay window of the CryptoContext replace the session's legacy
counter and strict window, so a frame reordered inside the window is accepted
once.  Outcomes map onto the legacy errors: a bad tag or wrong key raises
:class:`osgp.AuthenticationError`, a replayed / too old / too far ahead
number raises :class:`osgp.SequenceError` (carrying ``current`` = highest
accepted, the value a 0x0C response returns).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from osgp.errors import AuthenticationError, ConfigurationError, SequenceError
from osgp.security.aes_psk import DEFAULT_PROFILE, AesPskProfile, CryptoContext

__all__ = [
    "AesEnvelope",
    "MEP_AES_ENVELOPE",
    "PLC_AES_ENVELOPE",
    "AesPskSuite",
]

_AUTH_FAILURE = b"\x0b"  # response code 0x0B, sent in clear (MEP guide p.10-11)
_SEQ = struct.Struct(">I")


@dataclass(frozen=True)
class AesEnvelope:
    """Every envelope choice of the AES suite on one link: **INFERRED**.

    * ``aes``: the CCM frame layout (seq:4 in clear, tag length, nonce layout),
      :class:`~osgp.security.aes_psk.AesPskProfile`.
    * ``request_aad``: bytes authenticated in front of every frame's own
      sequence number (not sent); empty by default.
    * ``bind_response``: a response also authenticates the sequence number of
      the request it answers, so it cannot be taken for the answer to another
      request (the legacy suite gets the same from its chained digest,
      MEP App. A).
    * ``auth_failure_in_clear``: 0x0B travels as one unprotected byte (MEP guide
      p.10-11 says it is not encrypted; carrying no tag at all is INFERRED).
    """

    name: str
    status: str
    aes: AesPskProfile = DEFAULT_PROFILE
    request_aad: bytes = b""
    bind_response: bool = True
    auth_failure_in_clear: bool = True


MEP_AES_ENVELOPE = AesEnvelope(
    name="MEP",
    status="INFERRED: Annex F CCM frame (osgp_psk.AesPskProfile) as the MEP message body",
)

PLC_AES_ENVELOPE = AesEnvelope(
    name="PLC",
    status=(
        "INFERRED: Annex F CCM frame (osgp_psk.AesPskProfile) as the LonTalk APDU "
        "(docs/protocol.md §3.1, §5.1; §10.1)"
    ),
)


class AesPskSuite:
    """OSGP-AES-128-PSK unicast suite for one concentrator-device pair.

    ``key``: the unicast CCM key (GPSK PK, from the handshake); ``address``: the
    device's 6-byte address in the nonce (its Neuron ID); ``role``:
    ``"concentrator"`` (client session) or ``"device"``.  Alternatively pass a
    ready ``context`` (e.g. ``ConcentratorHandshake.context(address)``).
    """

    owns_sequence = True

    def __init__(
        self,
        key: Optional[bytes] = None,
        address: bytes = bytes(6),
        *,
        role: str = "concentrator",
        envelope: AesEnvelope = MEP_AES_ENVELOPE,
        key_id: int = 0,
        send_seq: int = 0,
        recv_start: int = 0,
        context: Optional[CryptoContext] = None,
    ) -> None:
        if context is None:
            if key is None:
                raise ConfigurationError("AesPskSuite needs a key or a CryptoContext")
            context = CryptoContext(
                key,
                address,
                role=role,
                key_id=key_id,
                profile=envelope.aes,
                send_seq=send_seq,
                recv_start=recv_start,
            )
        elif context.profile is not envelope.aes and context.profile != envelope.aes:
            raise ConfigurationError("the CryptoContext's profile differs from the envelope's")
        self.ctx = context
        self.envelope = envelope
        self.name = f"aes-psk-{envelope.name}"
        # seq:4 + tag in both directions (AesPskProfile: frame = seq || C || T)
        self.request_overhead = self.response_overhead = 4 + envelope.aes.tag_len
        self._aad = envelope.request_aad
        self._bind = envelope.bind_response
        self._clear_0b = envelope.auth_failure_in_clear

    # -- client side ------------------------------------------------------
    def seal_request(self, apdu: bytes, seq: int = 0) -> Tuple[bytes, bytes]:
        """Seal a request; ``seq`` is ignored (the CryptoContext numbers its
        frames).  The exchange context is the request's sequence field."""
        wire = self.ctx.seal(apdu, self._aad)
        return wire, wire[:4]

    def open_response(self, ctx: bytes, wire: bytes) -> bytes:
        if self._clear_0b and wire == _AUTH_FAILURE:
            return _AUTH_FAILURE
        return self.ctx.open(wire, self._aad + ctx if self._bind else self._aad)

    def resync(self, current: int) -> None:
        """After a 0x0C response carrying the device's ``current`` (highest
        accepted) number: the next request uses at least current + 1."""
        self.ctx.send_seq = max(self.ctx.send_seq, (current + 1) & 0xFFFFFFFF)

    # -- device side ------------------------------------------------------
    def open_request(self, wire: bytes) -> Tuple[bytes, int, bytes]:
        """(apdu, sequence number, exchange context).  SequenceError (with
        ``context``, so the 0x0C answer can be sealed, and ``current``, the
        highest number accepted) for a replayed, too old or too far ahead
        number; AuthenticationError for a bad tag."""
        try:
            apdu = self.ctx.open(wire, self._aad)
        except SequenceError as exc:
            raise SequenceError(
                str(exc),
                received=exc.received,
                current=self.ctx.window.highest & 0xFFFFFFFF,
                context=bytes(wire[:4]),
            ) from None
        return apdu, _SEQ.unpack_from(wire)[0], bytes(wire[:4])

    def seal_response(self, ctx: Optional[bytes], apdu: bytes) -> bytes:
        if ctx is None:
            # no request could be authenticated: only 0x0B may be answered
            if self._clear_0b and bytes(apdu[:1]) == _AUTH_FAILURE:
                return _AUTH_FAILURE
            raise AuthenticationError("no authenticated request to answer")
        if self._clear_0b and bytes(apdu) == _AUTH_FAILURE:
            return _AUTH_FAILURE
        return self.ctx.seal(apdu, self._aad + ctx if self._bind else self._aad)

    # -- state ------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The CryptoContext as plain data (secret: it holds the key)."""
        return {"context": self.ctx.state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state` (same envelope)."""
        self.ctx = CryptoContext.from_state(state["context"], self.envelope.aes)

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], envelope: AesEnvelope = MEP_AES_ENVELOPE
    ) -> AesPskSuite:
        return cls(
            envelope=envelope, context=CryptoContext.from_state(state["context"], envelope.aes)
        )

    # -- key renewal ------------------------------------------------------
    def renew(self, key: bytes, key_id: Optional[int] = None) -> None:
        """Install a renewed unicast key on this side (new key id; counters and
        replay window restart, CryptoContext.renew)."""
        self.ctx.renew(key, key_id)
