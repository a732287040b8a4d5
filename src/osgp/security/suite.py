"""The pluggable security-suite interface of the OSGP envelope, and the legacy suite.

A link codec never knows how a message is protected: it hands the bare
application message (APDU: request code + arguments, or response code + data)
to a *suite* and frames whatever comes back.  Four calls make a suite:

====================  =========================================================
client side           ``seal_request(apdu, seq) -> (wire, ctx)``
                      ``open_response(ctx, wire) -> apdu``
device side           ``open_request(wire) -> (apdu, seq, ctx)``
                      ``seal_response(ctx, apdu) -> wire``
====================  =========================================================

``ctx`` is an opaque per-exchange object (for the legacy suite: the request
plaintext the response digest chains over, and the RC4 stream a MEP response
continues).  OSGP-AES-128-PSK plugs in through the same four calls:
:class:`osgp.security.aes_suite.AesPskSuite` (its envelope in
``aes_suite.AesEnvelope``, INFERRED); a suite with ``owns_sequence = True``
numbers its own frames and the sessions then leave sequence numbers to it.
``request_overhead`` / ``response_overhead`` give the bytes a suite adds, so
size limits can be checked per profile.

Envelope of the legacy suite (MEP guide p.9-11, App. A/B; docs/protocol.md §3.2)::

    request  wire = E(code args seq:4 BE) || digest:8     digest = D(key, code..seq)
    response wire = E(code data)          || digest:8
                                             digest = D(key, request(code..seq) || response)

E is RC4 when the request was encrypted (mirrored in the response), else the
identity.  Which of these choices holds on power line is INFERRED (docs/protocol.md §3.1, §10.1);
they all live in :class:`EnvelopeProfile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Protocol, Sequence, Tuple

from osgp import crypto
from osgp.errors import AuthenticationError, ConfigurationError, TruncatedError
from osgp.security.legacy import MEP, PLC, LegacyProfile, message_key

__all__ = [
    "SecuritySuite",
    "EnvelopeProfile",
    "MEP_ENVELOPE",
    "PLC_ENVELOPE",
    "LegacyContext",
    "LegacySuite",
    "NullSuite",
    "AUTH_FAILURE",
    "INVALID_SEQUENCE",
]

AUTH_FAILURE = 0x0B  # response code: digest failure (MEP p.10-11)
INVALID_SEQUENCE = 0x0C  # response code: bad sequence number + correct seq:4 (MEP p.11, p.15)


class SecuritySuite(Protocol):
    """What a link needs from a security suite (see the module docstring)."""

    name: str
    request_overhead: int
    response_overhead: int

    def seal_request(self, apdu: bytes, seq: int) -> Tuple[bytes, Any]: ...

    def open_response(self, ctx: Any, wire: bytes) -> bytes: ...

    def open_request(self, wire: bytes) -> Tuple[bytes, int, Any]: ...

    def seal_response(self, ctx: Any, apdu: bytes) -> bytes: ...


@dataclass(frozen=True)
class EnvelopeProfile:
    """Every choice of the legacy envelope, for one link.

    ``seq_size``: bytes of the big-endian sequence number after the request
    arguments (MEP p.9).  ``digest_size``: trailer length.  ``chain_response``:
    the response digest runs over request plaintext || response (MEP App. A,
    p.15-17, VERIFIED).  ``auth_failure_in_clear``: a 0x0B response is never
    encrypted and its digest is not checked, since a device that could not
    authenticate the request cannot chain over it (MEP p.11 says 0x0B is not
    encrypted; not checking its digest is INFERRED).
    """

    name: str
    status: str
    crypto: LegacyProfile
    seq_size: int = 4
    digest_size: int = 8
    chain_response: bool = True
    auth_failure_in_clear: bool = True


MEP_ENVELOPE = EnvelopeProfile(
    name="MEP",
    status="CONFIRMED (MEP guide v1.1 p.9-17, App. A/B; examples VERIFIED)",
    crypto=MEP,
)

PLC_ENVELOPE = EnvelopeProfile(
    name="PLC",
    status=(
        "INFERRED: the MEP trailer (seq:4 in requests, digest:8 in both, response digest "
        "chained over the request) carried inside the LonTalk APDU, with the PLC RC4 key "
        "derivation (docs/protocol.md §2.4, §3.1; §10.1-10.2)"
    ),
    crypto=PLC,
)


class LegacyContext(NamedTuple):
    """Per-exchange state: the key that verified, the request plaintext
    (code..seq) and, when encrypted, the request's per-message RC4 key."""

    key: bytes
    request_plain: bytes
    encrypted: bool
    rc4_key: Optional[bytes] = None


_tuple_new = tuple.__new__  # a LegacyContext per request without a Python-level __new__


class LegacySuite:
    """OMA digest (+ optional RC4) suite.  ``keys``: the device's access keys
    in the order they are tried (MEP: MAK then MBK, p.13); the client seals
    with the first.  ``encrypt``: the client encrypts its requests."""

    def __init__(
        self, keys: Any, profile: EnvelopeProfile = MEP_ENVELOPE, *, encrypt: bool = False
    ) -> None:
        if isinstance(keys, (bytes, bytearray, memoryview)):
            keys = [keys]
        ks = [profile.crypto.check_key(k) for k in keys]
        if not ks:
            raise ConfigurationError("LegacySuite needs at least one key")
        self.profile = profile
        self.name = f"legacy-{profile.name}"
        self.encrypt = encrypt
        self._keys = ks
        self._dkeys = [profile.crypto.digest_key(k) for k in ks]
        self._base: dict[bytes, bytes] = {}
        self.request_overhead = profile.seq_size + profile.digest_size
        self.response_overhead = profile.digest_size

    def _base_key(self, key: bytes) -> bytes:
        b = self._base.get(key)
        if b is None:
            b = self._base[key] = self.profile.crypto.base_key(key)
        return b

    # -- client side ------------------------------------------------------
    def seal_request(self, apdu: bytes, seq: int) -> Tuple[bytes, LegacyContext]:
        p = self.profile
        plain = bytes(apdu) + (seq % (1 << (8 * p.seq_size))).to_bytes(p.seq_size, "big")
        key, dkey = self._keys[0], self._dkeys[0]
        digest = crypto.oma_digest(dkey, plain)
        if not self.encrypt:
            return plain + digest, _tuple_new(LegacyContext, (key, plain, False, None))
        k = message_key(self._base_key(key), digest)
        return crypto.rc4(k, plain) + digest, _tuple_new(LegacyContext, (key, plain, True, k))

    def open_response(self, ctx: LegacyContext, wire: bytes) -> bytes:
        p = self.profile
        n = len(wire) - p.digest_size
        if n < 1:
            raise TruncatedError(
                layer=f"{p.name.lower()}.envelope",
                offset=0,
                needed=p.digest_size + 1,
                remaining=len(wire),
            )
        body, digest = wire[:n], wire[n:]
        clear_0b = p.auth_failure_in_clear and n == 1 and body[0] == AUTH_FAILURE
        if clear_0b and not ctx.encrypted:
            return body
        # the digest key seal_request used (computed once per key), else derived
        dkey = self._dkeys[0] if ctx.key is self._keys[0] else p.crypto.digest_key(ctx.key)
        plain = self._response_cipher(ctx, digest).process(body) if ctx.encrypted else body
        covered = ctx.request_plain + plain if p.chain_response else plain
        try:
            crypto.oma_verify(dkey, covered, digest)
        except AuthenticationError:
            # 0x0B travels in clear; in an encrypted exchange a one-byte
            # ciphertext may also be 0x0B, and then its digest verifies
            if clear_0b:
                return body
            raise
        return plain

    # -- device side ------------------------------------------------------
    def open_request(self, wire: bytes) -> Tuple[bytes, int, LegacyContext]:
        p = self.profile
        n = len(wire) - p.digest_size
        if n < 1 + p.seq_size:
            raise TruncatedError(
                layer=f"{p.name.lower()}.envelope",
                offset=0,
                needed=1 + p.seq_size + p.digest_size,
                remaining=len(wire),
            )
        body, digest = wire[:n], wire[n:]
        # MEP p.11: the server finds out whether a request is encrypted by an
        # extra decryption step; keys are tried MAK first, then MBK (p.13).
        for key, dkey in zip(self._keys, self._dkeys):
            if crypto.compare_digest(crypto.oma_digest(dkey, body), digest):
                ctx = LegacyContext(key, body, False)
                break
            k = message_key(self._base_key(key), digest)
            plain = crypto.rc4(k, body)
            if crypto.compare_digest(crypto.oma_digest(dkey, plain), digest):
                ctx = LegacyContext(key, plain, True, k)
                break
        else:
            raise AuthenticationError(f"{p.name} request digest does not verify under any key")
        plain = ctx.request_plain
        seq = int.from_bytes(plain[n - p.seq_size :], "big")
        return plain[: n - p.seq_size], seq, ctx

    def seal_response(self, ctx: Optional[LegacyContext], apdu: bytes) -> bytes:
        p = self.profile
        body = bytes(apdu)
        if ctx is None:
            # No request could be authenticated (0x0B): there is nothing to
            # chain over and no key to choose; the trailer is zero (INFERRED).
            return body + bytes(p.digest_size)
        covered = ctx.request_plain + body if p.chain_response else body
        digest = crypto.oma_digest(p.crypto.digest_key(ctx.key), covered)
        if ctx.encrypted and not (p.auth_failure_in_clear and body == bytes([AUTH_FAILURE])):
            body = self._response_cipher(ctx, digest).process(body)
        return body + digest

    def _response_cipher(self, ctx: LegacyContext, digest: bytes) -> Any:
        if self.profile.crypto.response_continues_keystream:
            # MEP App. B: the response continues the request's keystream.  It
            # is regenerated from the request key, so a retried exchange opens
            # the same way twice.
            if ctx.rc4_key is None:
                raise ConfigurationError("encrypted exchange without an RC4 key")
            stream = crypto.RC4(ctx.rc4_key)
            stream.process(bytes(len(ctx.request_plain)))
            return stream
        return crypto.RC4(message_key(self._base_key(ctx.key), digest))

    @property
    def keys(self) -> Sequence[bytes]:
        return tuple(self._keys)


class NullSuite:
    """No security: the APDU travels as is and carries no sequence number
    (the optical port, whose C12.18 logon/security services protect access)."""

    name = "none"
    request_overhead = 0
    response_overhead = 0

    def seal_request(self, apdu: bytes, seq: int) -> Tuple[bytes, None]:
        return bytes(apdu), None

    def open_response(self, ctx: Any, wire: bytes) -> bytes:
        return bytes(wire)

    def open_request(self, wire: bytes) -> Tuple[bytes, int, None]:
        return bytes(wire), 0, None

    def seal_response(self, ctx: Any, apdu: bytes) -> bytes:
        return bytes(apdu)
