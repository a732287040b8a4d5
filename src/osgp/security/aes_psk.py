"""OSGP-AES-128-PSK: a reconstruction of the security suite of CLC/TS 50586 Annex F.

What is public (docs/protocol.md §5.1): the names OSGP_KDF, OSGP_MAC (AES-CMAC,
SP 800-38B), OSGP_AE / OSGP_AD (AES-CCM, SP 800-38C), CSPRG, CryptoContext,
unicast / broadcast, key renewal, AuthenticationFailure, SequenceError; the
standard cites RFC 5433 (EAP-GPSK); ET04 offset 123 "Maximum Key Usage Count"
(default 1,000,000, event at 80 %), ET54 offsets 82 / 86 unicast and broadcast
key usage counts "regardless of success or failure" (MEP guide p.65-66, ET54);
response codes 0x0B authentication failure (sent unencrypted) and 0x0C invalid
sequence number + the correct 4-byte sequence number (sent encrypted) on the
MEP port (MEP guide p.10-11, 257); the 16-byte firmware "Image MAC" of EP19
request type 9 (MEP guide p.246).

What is NOT public: every byte layout of Annex F.  Every layout choice made
here is **INFERRED** and lives in :class:`AesPskProfile` (one object, all
fields overridable): the handshake follows EAP-GPSK (RFC 5433) message for
message, the key hierarchy is GPSK's (MK -> MSK/EMSK/SK/PK), CCM frames carry
a 4-byte sequence number in clear and a nonce built from direction, device
address, key id and sequence number.  Nothing here is claimed to interoperate
with a real OSGP device.

Layers: pure functions over the kernels of :mod:`osgp.crypto`, and sans-IO
state objects (no sockets, no clocks): :class:`ConcentratorHandshake`,
:class:`DeviceHandshake`, :class:`CryptoContext`, :class:`BroadcastSender`,
:class:`BroadcastReceiver`, :class:`ReplayWindow`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from osgp import crypto
from osgp.errors import (
    AuthenticationError,
    ConfigurationError,
    MalformedError,
    ProtocolError,
    SequenceError,
    TruncatedError,
)

__all__ = [
    "AesPskProfile",
    "DEFAULT_PROFILE",
    "csprg",
    "osgp_kdf",
    "osgp_mac",
    "osgp_ae",
    "osgp_ad",
    "derive_session_keys",
    "SessionKeys",
    "ConcentratorHandshake",
    "DeviceHandshake",
    "GpskFailure",
    "encode_fail",
    "encode_protected_fail",
    "ReplayWindow",
    "KeyUsage",
    "CryptoContext",
    "BroadcastSender",
    "BroadcastReceiver",
    "seal_for_devices",
    "open_from_devices",
    "renew_key",
    "wrap_key",
    "unwrap_key",
    "firmware_image_mac",
    "verify_firmware_image",
    "AUTHENTICATION_FAILURE",
    "SEQUENCE_ERROR",
]

#: Response codes reused from the MEP port (MEP guide p.10-11): 0x0B
#: authentication failure, 0x0C invalid sequence number + correct seq (4 BE).
AUTHENTICATION_FAILURE = 0x0B
SEQUENCE_ERROR = 0x0C

# EAP-GPSK op-codes and failure codes (RFC 5433 s.12; docs/protocol.md §5.2).
OP_GPSK1, OP_GPSK2, OP_GPSK3, OP_GPSK4, OP_FAIL, OP_PROTECTED_FAIL = 1, 2, 3, 4, 5, 6
FAIL_PSK_NOT_FOUND, FAIL_AUTHENTICATION, FAIL_AUTHORIZATION = 1, 2, 3

DOWN, UP = 0, 1  # direction: concentrator -> device, device -> concentrator
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class AesPskProfile:
    """Every byte-layout and policy choice of this reconstruction: **INFERRED**.

    Annex F's layouts are not public; these defaults follow EAP-GPSK (RFC 5433,
    which the standard cites) and the public MEP conventions.  Change a field to
    match a real device when its layout becomes known.

    * ``rand_len`` 32: GPSK RAND size (RFC 5433 s.12.2).
    * ``csuite`` 6 bytes: Vendor 0 (IETF) + Specifier 1 = AES-CMAC-128 (RFC 5433 s.6).
    * ``mic_len`` 16: full AES-CMAC MIC of the handshake messages (GPSK AES suite).
    * ``kdf_out`` 160 = MSK 64 || EMSK 64 || SK 16 || PK 16 (RFC 5433 s.4, KS = 16).
    * ``tag_len`` 8 and ``nonce_len`` 13 for unicast and broadcast CCM frames.
    * nonce = flags(1: b0 direction, b1 broadcast) || address(6: Neuron ID or group
      address) || key id (2 BE) || sequence number (4 BE).
    * frame = sequence number (4 BE, in clear, authenticated as AAD after the
      caller's header) || ciphertext || tag.
    * ``replay_window`` 64 sequence numbers below the highest accepted (RFC 4303
      style); ``max_ahead`` how far above the highest a sequence number may jump.
    * ``max_key_usage`` 1,000,000 and ``usage_warning`` 0.8: ET04 offset 123 and its
      80 % event (CONFIRMED semantics, MEP guide p.65); refusing a key at 100 % is
      INFERRED.
    * ``renewal_label``: KDF label of key renewal; ``wrap_tag_len`` the CCM tag of a
      wrapped key.
    """

    rand_len: int = 32
    csuite: bytes = b"\x00\x00\x00\x00\x00\x01"
    mic_len: int = 16
    kdf_out: int = 160
    tag_len: int = 8
    nonce_len: int = 13
    address_len: int = 6
    replay_window: int = 64
    max_ahead: int = 1 << 20
    max_key_usage: int = 1_000_000
    usage_warning: float = 0.8
    renewal_label: bytes = b"OSGP key renewal"
    wrap_tag_len: int = 16

    def nonce(
        self, direction: int, broadcast: bool, address: bytes, key_id: int, seq: int
    ) -> bytes:
        """CCM nonce (INFERRED layout, see the class docstring)."""
        if len(address) != self.address_len:
            raise ConfigurationError(
                f"address must be {self.address_len} bytes, got {len(address)}"
            )
        flags = (direction & 1) | (2 if broadcast else 0)
        n = bytes([flags]) + address + struct.pack(">HI", key_id & 0xFFFF, seq & 0xFFFFFFFF)
        if len(n) != self.nonce_len:
            raise ConfigurationError("profile nonce layout does not match nonce_len")
        return n


DEFAULT_PROFILE = AesPskProfile()


def csprg(n: int) -> bytes:
    """The host's CSPRG: the operating system's generator (Annex F names a CSPRG;
    its construction on the device side is not public)."""
    return os.urandom(n)


# ---- primitives under their Annex F names ------------------------------------------


def osgp_kdf(key: bytes, data: bytes, length: int) -> bytes:
    """OSGP_KDF: counter-mode AES-CMAC, GKDF-length(key, data) of RFC 5433 s.4 (INFERRED
    to be the Annex F KDF: the standard cites RFC 5433)."""
    return crypto.cmac_kdf(key, data, length)


def osgp_mac(key: bytes, data: bytes, tag_len: int = 16) -> bytes:
    """OSGP_MAC: AES-CMAC (SP 800-38B)."""
    return crypto.aes_cmac(key, data, tag_len)


def osgp_ae(
    key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"", tag_len: int = 8
) -> bytes:
    """OSGP_AE: AES-CCM authenticated encryption (SP 800-38C)."""
    return crypto.ccm_seal(key, nonce, plaintext, aad, tag_len)


def osgp_ad(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"", tag_len: int = 8) -> bytes:
    """OSGP_AD: AES-CCM authenticated decryption; AuthenticationError on a bad tag."""
    return crypto.ccm_open(key, nonce, data, aad, tag_len)


# ---- key derivation (RFC 5433 s.4 and s.8) ----------------------------------------


@dataclass(frozen=True)
class SessionKeys:
    """GPSK key hierarchy: MSK, EMSK, SK (MIC key) and PK (unicast CCM key)."""

    msk: bytes = field(repr=False)
    emsk: bytes = field(repr=False)
    sk: bytes = field(repr=False)
    pk: bytes = field(repr=False)


def derive_session_keys(
    psk: bytes,
    rand_peer: bytes,
    id_peer: bytes,
    rand_server: bytes,
    id_server: bytes,
    profile: AesPskProfile = DEFAULT_PROFILE,
) -> SessionKeys:
    """RFC 5433 s.4: inputString = RAND_Peer || ID_Peer || RAND_Server || ID_Server;
    MK = GKDF-16(PSK[0..15], PL(2 BE) || PSK || CSuite_Sel || inputString);
    GKDF-160(MK, inputString) -> MSK[0:64] EMSK[64:128] SK[128:144] PK[144:160]."""
    if len(psk) < 16:
        raise ConfigurationError(f"PSK must be at least 16 bytes, got {len(psk)}")
    inp = rand_peer + id_peer + rand_server + id_server
    mk = osgp_kdf(psk[:16], struct.pack(">H", len(psk)) + psk + profile.csuite + inp, 16)
    out = osgp_kdf(mk, inp, profile.kdf_out)
    return SessionKeys(out[0:64], out[64:128], out[128:144], out[144:160])


# ---- a bounds-checked cursor for the handshake messages ----------------------------


class _Cursor:
    def __init__(self, data: bytes, layer: str) -> None:
        self.data, self.pos, self.layer = data, 0, layer

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TruncatedError(
                layer=self.layer, offset=self.pos, needed=n, remaining=len(self.data) - self.pos
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def lv(self) -> bytes:
        return self.take(self.u16())

    def end(self) -> None:
        if self.pos != len(self.data):
            raise MalformedError(
                f"{len(self.data) - self.pos} trailing byte(s)", layer=self.layer, offset=self.pos
            )


def _lv(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ConfigurationError("field longer than 65535 bytes")
    return struct.pack(">H", len(b)) + b


class GpskFailure(ProtocolError):
    """The peer sent GPSK-Fail / GPSK-Protected-Fail (RFC 5433 s.12.5/12.6)."""

    def __init__(self, code: int, protected: bool) -> None:
        names = {1: "PSK not found", 2: "authentication failure", 3: "authorization failure"}
        super().__init__(f"GPSK failure {code} ({names.get(code, 'unknown')})")
        self.code = code
        self.protected = protected


def encode_fail(code: int) -> bytes:
    """GPSK-Fail: op 5 || Failure-Code (4 bytes BE)."""
    return bytes([OP_FAIL]) + struct.pack(">I", code)


def encode_protected_fail(sk: bytes, code: int, profile: AesPskProfile = DEFAULT_PROFILE) -> bytes:
    """GPSK-Protected-Fail: op 6 || Failure-Code (4 BE) || MIC(SK, Failure-Code)
    (RFC 5433 s.12.6; sent once SK exists, e.g. an authorization failure)."""
    body = struct.pack(">I", code)
    return bytes([OP_PROTECTED_FAIL]) + body + osgp_mac(sk, body, profile.mic_len)


def _check_fail(msg: bytes, sk: Optional[bytes], profile: AesPskProfile) -> None:
    if msg[:1] == bytes([OP_FAIL]):
        c = _Cursor(msg, "aes_psk.gpsk-fail")
        c.take(1)
        code = int.from_bytes(c.take(4), "big")
        c.end()
        raise GpskFailure(code, False)
    if msg[:1] == bytes([OP_PROTECTED_FAIL]):
        c = _Cursor(msg, "aes_psk.gpsk-protected-fail")
        c.take(1)
        body = c.take(4)
        mic = c.take(profile.mic_len)
        c.end()
        if sk is None or not crypto.compare_digest(osgp_mac(sk, body, profile.mic_len), mic):
            raise AuthenticationError("GPSK-Protected-Fail with a bad MIC")
        raise GpskFailure(int.from_bytes(body, "big"), True)


def _expect_op(msg: bytes, op: int, layer: str) -> None:
    if not msg:
        raise TruncatedError(layer=layer, offset=0, needed=1, remaining=0)
    if msg[0] != op:
        raise MalformedError(f"op-code {msg[0]}, expected {op}", layer=layer, offset=0)


# ---- the handshake (EAP-GPSK message flow, RFC 5433 s.3 / s.12) ---------------------


class ConcentratorHandshake:
    """Server side (GPSK "server" = the data concentrator).  Sans-IO:
    ``start()`` -> GPSK-1; ``receive_2(m2)`` -> GPSK-3; ``receive_4(m4)``;
    then ``context(address)``.  ``psks`` maps a device identity to its PSK."""

    def __init__(
        self,
        psks: Mapping[bytes, bytes],
        id_server: bytes,
        *,
        profile: AesPskProfile = DEFAULT_PROFILE,
        rng: Callable[[int], bytes] = csprg,
    ) -> None:
        self.psks, self.id_server, self.profile, self.rng = psks, id_server, profile, rng
        self.rand_server = b""
        self.keys: Optional[SessionKeys] = None
        self.id_peer = b""
        self.done = False
        self.failure: Optional[bytes] = None

    def start(self) -> bytes:
        """GPSK-1: op || len ID_Server || ID_Server || RAND_Server || len CSuite_List || list."""
        self.rand_server = self.rng(self.profile.rand_len)
        return bytes([OP_GPSK1]) + _lv(self.id_server) + self.rand_server + _lv(self.profile.csuite)

    def receive_2(self, m2: bytes) -> bytes:
        """Verify GPSK-2 (echoed values, MIC) and answer GPSK-3.  On failure the
        GPSK-Fail to send is left in ``self.failure`` and the error raised."""
        p = self.profile
        _check_fail(m2, None, p)
        layer = "aes_psk.gpsk-2"
        _expect_op(m2, OP_GPSK2, layer)
        c = _Cursor(m2, layer)
        c.take(1)
        id_peer = c.lv()
        id_server = c.lv()
        rand_peer = c.take(p.rand_len)
        rand_server = c.take(p.rand_len)
        csuite_list = c.lv()
        csuite_sel = c.take(6)
        pd1 = c.lv()
        mic_at = c.pos
        mic = c.take(p.mic_len)
        c.end()
        # The server checks the echoed ID_Server, RAND_Server and CSuite_List (RFC 5433 s.3).
        if id_server != self.id_server or rand_server != self.rand_server:
            raise ProtocolError("GPSK-2 does not echo this server's identity and RAND")
        if csuite_list != p.csuite or csuite_sel != p.csuite:
            raise ProtocolError("GPSK-2 cipher suite does not match")
        psk = self.psks.get(id_peer)
        if psk is None:
            self.failure = encode_fail(FAIL_PSK_NOT_FOUND)
            raise AuthenticationError(f"no PSK for peer {id_peer!r}")
        keys = derive_session_keys(psk, rand_peer, id_peer, rand_server, id_server, p)
        if not crypto.compare_digest(osgp_mac(keys.sk, m2[1:mic_at], p.mic_len), mic):
            self.failure = encode_fail(FAIL_AUTHENTICATION)
            raise AuthenticationError("GPSK-2 MIC does not verify (wrong PSK?)")
        del pd1  # no protected data defined (INFERRED)
        self.keys, self.id_peer, self.rand_peer = keys, id_peer, rand_peer
        body = rand_peer + rand_server + _lv(self.id_server) + p.csuite + _lv(b"")
        return bytes([OP_GPSK3]) + body + osgp_mac(keys.sk, body, p.mic_len)

    def receive_4(self, m4: bytes) -> None:
        """Verify GPSK-4: op || len PD_Payload_3 || PD || MIC."""
        p = self.profile
        if self.keys is None:
            raise ProtocolError("GPSK-4 before GPSK-2")
        _check_fail(m4, self.keys.sk, p)
        layer = "aes_psk.gpsk-4"
        _expect_op(m4, OP_GPSK4, layer)
        c = _Cursor(m4, layer)
        c.take(1)
        c.lv()
        mic_at = c.pos
        mic = c.take(p.mic_len)
        c.end()
        if not crypto.compare_digest(osgp_mac(self.keys.sk, m4[1:mic_at], p.mic_len), mic):
            raise AuthenticationError("GPSK-4 MIC does not verify")
        self.done = True

    def context(self, address: bytes, **kw: object) -> CryptoContext:
        """The concentrator's CryptoContext for the device at ``address``."""
        if not self.done or self.keys is None:
            raise ProtocolError("handshake not complete")
        return CryptoContext(self.keys.pk, address, role="concentrator", profile=self.profile, **kw)  # type: ignore[arg-type]


class DeviceHandshake:
    """Peer side (the device): ``receive_1(m1)`` -> GPSK-2; ``receive_3(m3)`` ->
    GPSK-4; then ``context(address)``."""

    def __init__(
        self,
        psk: bytes,
        id_peer: bytes,
        *,
        profile: AesPskProfile = DEFAULT_PROFILE,
        rng: Callable[[int], bytes] = csprg,
    ) -> None:
        self.psk, self.id_peer, self.profile, self.rng = psk, id_peer, profile, rng
        self.keys: Optional[SessionKeys] = None
        self.done = False

    def receive_1(self, m1: bytes) -> bytes:
        p = self.profile
        _check_fail(m1, None, p)
        layer = "aes_psk.gpsk-1"
        _expect_op(m1, OP_GPSK1, layer)
        c = _Cursor(m1, layer)
        c.take(1)
        self.id_server = c.lv()
        self.rand_server = c.take(p.rand_len)
        csuite_list = c.lv()
        c.end()
        if p.csuite not in [csuite_list[i : i + 6] for i in range(0, len(csuite_list), 6)]:
            raise ProtocolError("server offers no supported cipher suite")
        self.csuite_list = csuite_list
        self.rand_peer = self.rng(p.rand_len)
        self.keys = derive_session_keys(
            self.psk, self.rand_peer, self.id_peer, self.rand_server, self.id_server, p
        )
        body = (
            _lv(self.id_peer)
            + _lv(self.id_server)
            + self.rand_peer
            + self.rand_server
            + _lv(csuite_list)
            + p.csuite
            + _lv(b"")
        )
        return bytes([OP_GPSK2]) + body + osgp_mac(self.keys.sk, body, p.mic_len)

    def receive_3(self, m3: bytes) -> bytes:
        p = self.profile
        if self.keys is None:
            raise ProtocolError("GPSK-3 before GPSK-1")
        _check_fail(m3, self.keys.sk, p)
        layer = "aes_psk.gpsk-3"
        _expect_op(m3, OP_GPSK3, layer)
        c = _Cursor(m3, layer)
        c.take(1)
        rand_peer = c.take(p.rand_len)
        rand_server = c.take(p.rand_len)
        id_server = c.lv()
        csuite_sel = c.take(6)
        c.lv()
        mic_at = c.pos
        mic = c.take(p.mic_len)
        c.end()
        if not crypto.compare_digest(osgp_mac(self.keys.sk, m3[1:mic_at], p.mic_len), mic):
            raise AuthenticationError("GPSK-3 MIC does not verify")
        if (rand_peer, rand_server, id_server, csuite_sel) != (
            self.rand_peer,
            self.rand_server,
            self.id_server,
            p.csuite,
        ):
            raise ProtocolError("GPSK-3 does not echo this session's values")
        self.done = True
        body = _lv(b"")
        return bytes([OP_GPSK4]) + body + osgp_mac(self.keys.sk, body, p.mic_len)

    def context(self, address: bytes, **kw: object) -> CryptoContext:
        if not self.done or self.keys is None:
            raise ProtocolError("handshake not complete")
        return CryptoContext(self.keys.pk, address, role="device", profile=self.profile, **kw)  # type: ignore[arg-type]


# ---- replay protection and key usage ------------------------------------------------


class ReplayWindow:
    """Sliding window over 32-bit sequence numbers (INFERRED: RFC 4303 style).

    Accepts a number above the highest seen (up to ``max_ahead`` above it) or a
    not-yet-seen number among the ``size`` below it.  ``check`` never changes
    state (call it before the tag is verified); ``commit`` records an
    authenticated number."""

    def __init__(self, size: int = 64, max_ahead: int = 1 << 20, start: int = 0) -> None:
        if size < 1:
            raise ConfigurationError("replay window size must be at least 1")
        self.size, self.max_ahead = size, max_ahead
        self.highest = start - 1  # nothing seen yet: the first accepted is >= start
        self.bits = 0  # bit i = (highest - i) seen

    @property
    def expected(self) -> int:
        return self.highest + 1

    def check(self, seq: int) -> None:
        if seq > self.highest:
            if seq - self.highest > self.max_ahead:
                raise SequenceError(
                    f"sequence number {seq} too far ahead", received=seq, expected=self.expected
                )
            return
        d = self.highest - seq
        if d >= self.size or (self.bits >> d) & 1:
            raise SequenceError(
                f"sequence number {seq} replayed or too old", received=seq, expected=self.expected
            )

    def commit(self, seq: int) -> None:
        if seq > self.highest:
            shift = seq - self.highest
            self.bits = ((self.bits << shift) | 1) & ((1 << self.size) - 1)
            self.highest = seq
        else:
            self.bits |= 1 << (self.highest - seq)

    def state(self) -> dict[str, int]:
        """Plain data for a store (the seen-bitmap as an integer)."""
        return {
            "size": self.size,
            "max_ahead": self.max_ahead,
            "highest": self.highest,
            "bits": self.bits,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, int]) -> ReplayWindow:
        w = cls(int(state["size"]), int(state["max_ahead"]))
        w.highest, w.bits = int(state["highest"]), int(state["bits"])
        return w


class KeyUsage:
    """Key usage counter of ET54 (offsets 82 / 86): every use, successful or not,
    counts; ``warning`` is raised at ``usage_warning`` x ``maximum`` (ET04 offset 123,
    80 % of 1,000,000 by default); at the maximum the key is refused (INFERRED)."""

    def __init__(self, maximum: int, warning_fraction: float) -> None:
        self.maximum, self.fraction = maximum, warning_fraction
        self.count = 0
        self.warned = False
        self.events: list[str] = []

    @property
    def warning(self) -> bool:
        return self.count >= self.fraction * self.maximum

    def use(self, what: str) -> None:
        if self.count >= self.maximum:
            raise ProtocolError(f"{what} key usage count reached {self.maximum}: renew the key")
        self.count += 1
        if not self.warned and self.count >= self.fraction * self.maximum:  # self.warning
            self.warned = True
            self.events.append(f"{what} key usage at {self.count} of {self.maximum}")

    def reset(self) -> None:
        self.count, self.warned = 0, False

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "warned": self.warned}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.count, self.warned = int(state["count"]), bool(state["warned"])


# ---- unicast: the CryptoContext ------------------------------------------------------


class CryptoContext:
    """Secure channel state of one concentrator-device pair (Annex F "CryptoContext";
    contents INFERRED): the unicast CCM key, the key id, per-direction sequence
    counters, a replay window for the receive direction and the key usage counter.

    ``seal`` / ``open`` build and check frames ``seq(4 BE) || C || T`` (layout in
    :class:`AesPskProfile`); ``header`` is authenticated (as AAD) but not sent."""

    def __init__(
        self,
        key: bytes,
        address: bytes,
        *,
        role: str,
        key_id: int = 0,
        profile: AesPskProfile = DEFAULT_PROFILE,
        send_seq: int = 0,
        recv_start: int = 0,
    ) -> None:
        if role not in ("concentrator", "device"):
            raise ConfigurationError(f"role must be 'concentrator' or 'device', got {role!r}")
        self.profile = profile
        self.address = bytes(address)
        profile.nonce(DOWN, False, self.address, 0, 0)  # validates the address size
        self.role = role
        self.tx_dir = DOWN if role == "concentrator" else UP
        self.rx_dir = 1 - self.tx_dir
        self._key = crypto.AesKey(key)
        self._key_bytes = bytes(key)
        self.key_id = key_id
        self.send_seq = send_seq
        self.window = ReplayWindow(profile.replay_window, profile.max_ahead, recv_start)
        self.usage = KeyUsage(profile.max_key_usage, profile.usage_warning)
        self._prefix: Optional[tuple[bytes, bytes]] = None
        self._prefix_key_id = -1
        self._cache_prefix()

    def __repr__(self) -> str:
        return f"<CryptoContext {self.role} {self.address.hex()} key_id={self.key_id}>"

    @property
    def aes_key(self) -> crypto.AesKey:
        """The expanded key, for the batch helpers."""
        return self._key

    def _nonce(self, direction: int, seq: int) -> bytes:
        c = self._prefix
        if c is not None and self._prefix_key_id == self.key_id:
            # the profile's layout with the fixed part precomputed: prefix || seq (4 BE)
            return c[direction] + _U32.pack(seq & 0xFFFFFFFF)
        return self.profile.nonce(direction, False, self.address, self.key_id, seq)

    def _cache_prefix(self) -> None:
        """Precompute the nonce bytes before the sequence number when the
        profile's layout ends in seq (4 BE), as the default one does."""
        p, a, k = self.profile, self.address, self.key_id
        probe = [p.nonce(d, False, a, k, 0x01020304) for d in (DOWN, UP)]
        if all(n[-4:] == b"\x01\x02\x03\x04" for n in probe) and all(
            p.nonce(d, False, a, k, 0xA0B0C0D0) == probe[d][:-4] + b"\xa0\xb0\xc0\xd0"
            for d in (DOWN, UP)
        ):
            self._prefix_key_id = k
            self._prefix = (probe[DOWN][:-4], probe[UP][:-4])
        else:
            self._prefix = None

    def next_seq(self) -> int:
        seq = self.send_seq
        if seq > 0xFFFFFFFF:
            raise ProtocolError("sequence numbers exhausted: renew the key")
        self.send_seq += 1
        return seq

    def seal(self, payload: bytes, header: bytes = b"") -> bytes:
        """A protected unicast frame in this side's send direction."""
        u = self.usage
        if u.count < u.maximum and (u.warned or u.count + 1 < u.fraction * u.maximum):
            u.count += 1  # KeyUsage.use without a warning to raise, inlined
        else:
            u.use("unicast")
        seq = self.send_seq  # next_seq, inlined
        if seq > 0xFFFFFFFF:
            raise ProtocolError("sequence numbers exhausted: renew the key")
        self.send_seq = seq + 1
        sb = _U32.pack(seq)
        c = self._prefix
        if c is not None and self._prefix_key_id == self.key_id:
            nonce = c[self.tx_dir] + sb  # _nonce, inlined: prefix || seq (4 BE)
        else:
            nonce = self._nonce(self.tx_dir, seq)
        return sb + self._key.ccm_seal(nonce, payload, header + sb, self.profile.tag_len)

    def parse(self, frame: bytes) -> tuple[int, bytes]:
        """(sequence number, ciphertext || tag) of a frame."""
        need = 4 + self.profile.tag_len
        if len(frame) < need:
            raise TruncatedError(
                layer="aes_psk.unicast", offset=0, needed=need, remaining=len(frame)
            )
        return int.from_bytes(frame[:4], "big"), frame[4:]

    def open(self, frame: bytes, header: bytes = b"") -> bytes:
        """Check and decrypt a frame from the peer.  SequenceError for a replayed,
        too old or too far ahead number (before any decryption), AuthenticationError
        for a bad tag; the window only moves for authentic frames."""
        if len(frame) < 4 + self.profile.tag_len:
            self.parse(frame)  # raises TruncatedError
        sb = frame[:4]
        seq = int.from_bytes(sb, "big")
        window = self.window
        hi = window.highest
        ahead = hi < seq <= hi + window.max_ahead  # ReplayWindow.check passes at once
        if not ahead:
            window.check(seq)
        u = self.usage
        if u.count < u.maximum and (u.warned or u.count + 1 < u.fraction * u.maximum):
            u.count += 1  # KeyUsage.use without a warning to raise, inlined
        else:
            u.use("unicast")
        c = self._prefix
        if c is not None and self._prefix_key_id == self.key_id:
            nonce = c[self.rx_dir] + sb  # _nonce, inlined: prefix || seq (4 BE)
        else:
            nonce = self._nonce(self.rx_dir, seq)
        plain = self._key.ccm_open(nonce, frame[4:], header + sb, self.profile.tag_len)
        if ahead:  # ReplayWindow.commit of a number above the highest, inlined
            window.bits = ((window.bits << (seq - hi)) | 1) & ((1 << window.size) - 1)
            window.highest = seq
        else:
            window.commit(seq)
        return plain

    # AuthenticationFailure / SequenceError outcomes (INFERRED from MEP p.10-11, 257:
    # 0x0B is sent in clear, 0x0C + correct sequence number is protected).
    def authentication_failure(self) -> bytes:
        """The AuthenticationFailure response: the single byte 0x0B, unprotected."""
        return bytes([AUTHENTICATION_FAILURE])

    def sequence_error(self) -> bytes:
        """The SequenceError response: 0x0C || the device's current (highest
        accepted) number, 4 BE, sealed; the peer resumes at current + 1, as
        after a MEP 0x0C (MEP guide p.11, p.15) and as AesPskSuite answers."""
        current = (self.window.expected - 1) & 0xFFFFFFFF
        return self.seal(bytes([SEQUENCE_ERROR]) + struct.pack(">I", current))

    def respond(
        self, frame: bytes, handler: Callable[[bytes], bytes], header: bytes = b""
    ) -> bytes:
        """Device side: open ``frame``, answer with ``handler(payload)`` sealed,
        or with the AuthenticationFailure / SequenceError response."""
        try:
            payload = self.open(frame, header)
        except SequenceError:
            return self.sequence_error()
        except AuthenticationError:
            return self.authentication_failure()
        return self.seal(handler(payload), header)

    def receive_response(self, frame: bytes, header: bytes = b"") -> bytes:
        """Concentrator side: the payload of a response, or raise
        AuthenticationError for an AuthenticationFailure response and SequenceError
        (after moving ``send_seq`` to the device's value) for a SequenceError one."""
        if frame == bytes([AUTHENTICATION_FAILURE]):
            raise AuthenticationError("device reported AuthenticationFailure (0x0B)")
        payload = self.open(frame, header)
        if len(payload) == 5 and payload[0] == SEQUENCE_ERROR:
            current = int.from_bytes(payload[1:5], "big")
            received = self.send_seq - 1
            self.send_seq = max(self.send_seq, (current + 1) & 0xFFFFFFFF)
            raise SequenceError(
                "device reported SequenceError (0x0C)", received=received, current=current
            )
        return payload

    def state(self) -> dict[str, Any]:
        """Everything needed to resume this channel after a restart, as plain
        data: role, address, key id, counters, replay window, key usage, and
        the unicast key itself (hex), so a store must keep the result as
        secret as the key.  The profile is configuration, not state."""
        return {
            "role": self.role,
            "address": self.address.hex(),
            "key": self._key_bytes.hex(),
            "key_id": self.key_id,
            "send_seq": self.send_seq,
            "window": self.window.state(),
            "usage": self.usage.state(),
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], profile: AesPskProfile = DEFAULT_PROFILE
    ) -> CryptoContext:
        ctx = cls(
            bytes.fromhex(state["key"]),
            bytes.fromhex(state["address"]),
            role=state["role"],
            key_id=int(state["key_id"]),
            profile=profile,
            send_seq=int(state["send_seq"]),
        )
        ctx.window = ReplayWindow.from_state(state["window"])
        ctx.usage.restore(state["usage"])
        return ctx

    def renew(self, key: bytes, key_id: Optional[int] = None) -> None:
        """Install a renewed unicast key: new key id, counters and window restart."""
        self._key = crypto.AesKey(key)
        self._key_bytes = bytes(key)
        self.key_id = (self.key_id + 1) & 0xFFFF if key_id is None else key_id
        self._cache_prefix()
        self.send_seq = 0
        self.window = ReplayWindow(self.profile.replay_window, self.profile.max_ahead)
        self.usage.reset()


def seal_for_devices(
    contexts: Sequence[CryptoContext], payloads: Sequence[bytes], header: bytes = b""
) -> list[bytes]:
    """Seal one frame per device in one native batch call (per-device keys,
    no GIL): what a concentrator does when it polls many meters."""
    if len(contexts) != len(payloads):
        raise ConfigurationError(f"got {len(contexts)} contexts for {len(payloads)} payloads")
    seqs, nonces, aads = [], [], []
    for ctx in contexts:
        ctx.usage.use("unicast")
        s = ctx.next_seq()
        sb = struct.pack(">I", s)
        seqs.append(sb)
        nonces.append(ctx._nonce(ctx.tx_dir, s))
        aads.append(header + sb)
    tag = contexts[0].profile.tag_len if contexts else 8
    sealed = crypto.ccm_seal_many([c.aes_key for c in contexts], nonces, list(payloads), aads, tag)
    return [sb + c for sb, c in zip(seqs, sealed)]


def open_from_devices(
    contexts: Sequence[CryptoContext], frames: Sequence[bytes], header: bytes = b""
) -> tuple[list[Optional[bytes]], bytes]:
    """Open one frame per device in one batch call: ``(plaintexts, ok)`` as
    :func:`osgp.crypto.ccm_open_many`, ``ok[i]`` 0 and ``plaintexts[i]`` None
    where frame i was truncated, replayed or not authentic.  Nothing raises for
    such a frame and one bad frame never spoils the batch (``CryptoContext.open``,
    the single form, raises AuthenticationError / SequenceError instead)."""
    if len(contexts) != len(frames):
        raise ConfigurationError(f"got {len(contexts)} contexts for {len(frames)} frames")
    idx: list[int] = []
    keys: list[crypto.AesKey] = []
    nonces: list[bytes] = []
    bodies: list[bytes] = []
    aads: list[bytes] = []
    seqs: list[int] = []
    out: list[Optional[bytes]] = [None] * len(frames)
    for i, (ctx, fr) in enumerate(zip(contexts, frames)):
        try:
            seq, body = ctx.parse(fr)
            ctx.window.check(seq)
        except (TruncatedError, SequenceError):
            continue
        ctx.usage.use("unicast")
        idx.append(i)
        keys.append(ctx.aes_key)
        nonces.append(ctx._nonce(ctx.rx_dir, seq))
        bodies.append(body)
        aads.append(header + fr[:4])
        seqs.append(seq)
    if idx:
        tag = contexts[0].profile.tag_len
        res, _ok = crypto.ccm_open_many(keys, nonces, bodies, aads, tag)
        for i, s, r in zip(idx, seqs, res):
            if r is not None:
                contexts[i].window.commit(s)
                out[i] = r
    return out, bytes(r is not None for r in out)


# ---- broadcast -----------------------------------------------------------------------


class _BroadcastKey:
    """What both ends of a broadcast group hold: the group key, its address and
    key id, and the sequence range [first, stop) allotted to the key."""

    def __init__(
        self,
        key: bytes,
        group_address: bytes,
        *,
        key_id: int = 0,
        seq_range: tuple[int, int] = (0, 1 << 32),
        profile: AesPskProfile = DEFAULT_PROFILE,
    ) -> None:
        self.profile, self.address, self.key_id = profile, bytes(group_address), key_id
        profile.nonce(DOWN, True, self.address, key_id, 0)  # validates the address
        self._key = crypto.AesKey(key)
        self.first, self.stop = seq_range
        if not 0 <= self.first < self.stop <= 1 << 32:
            raise ConfigurationError(f"bad broadcast sequence range {seq_range}")
        self.usage = KeyUsage(profile.max_key_usage, profile.usage_warning)


class BroadcastSender(_BroadcastKey):
    """Concentrator side of broadcast under a group (domain) key.  Sequence
    numbers come from the range [first, stop) allotted to this key (INFERRED:
    a broadcast key covers one sequence range; past it the key must be renewed)."""

    def __init__(self, key: bytes, group_address: bytes, **kw: Any) -> None:
        super().__init__(key, group_address, **kw)
        self.next = self.first

    def seal(self, payload: bytes, header: bytes = b"") -> bytes:
        if self.next >= self.stop:
            raise ProtocolError("broadcast sequence range exhausted: renew the group key")
        self.usage.use("broadcast")
        seq = self.next
        self.next += 1
        sb = struct.pack(">I", seq)
        nonce = self.profile.nonce(DOWN, True, self.address, self.key_id, seq)
        return sb + self._key.ccm_seal(nonce, payload, header + sb, self.profile.tag_len)


class BroadcastReceiver(_BroadcastKey):
    """Device side of a broadcast group: only numbers inside the key's sequence
    range, each at most once (replay window)."""

    def __init__(self, key: bytes, group_address: bytes, **kw: Any) -> None:
        super().__init__(key, group_address, **kw)
        self.window = ReplayWindow(self.profile.replay_window, self.profile.max_ahead, self.first)

    def open(self, frame: bytes, header: bytes = b"") -> bytes:
        need = 4 + self.profile.tag_len
        if len(frame) < need:
            raise TruncatedError(
                layer="aes_psk.broadcast", offset=0, needed=need, remaining=len(frame)
            )
        seq = int.from_bytes(frame[:4], "big")
        if not self.first <= seq < self.stop:
            raise SequenceError(
                f"broadcast sequence number {seq} outside [{self.first}, {self.stop})",
                received=seq,
                expected=self.window.expected,
            )
        self.window.check(seq)
        self.usage.use("broadcast")
        nonce = self.profile.nonce(DOWN, True, self.address, self.key_id, seq)
        plain = self._key.ccm_open(nonce, frame[4:], header + frame[:4], self.profile.tag_len)
        self.window.commit(seq)
        return plain


# ---- key renewal ---------------------------------------------------------------------


def renew_key(
    current: bytes, key_id: int, rand: bytes, profile: AesPskProfile = DEFAULT_PROFILE
) -> bytes:
    """Next short-term key from the current one and a fresh random value sent in
    a protected message: GKDF-16(current, label || key id (2 BE) || rand) (INFERRED)."""
    return osgp_kdf(current, profile.renewal_label + struct.pack(">H", key_id & 0xFFFF) + rand, 16)


def wrap_key(ctx: CryptoContext, new_key: bytes, key_id: int, kind: int = 1) -> bytes:
    """Key transport inside a unicast frame: payload = kind (1 unicast, 2 broadcast /
    domain key) || key id (2 BE) || key (16).  INFERRED layout."""
    if len(new_key) != 16:
        raise ConfigurationError(f"AES-128 key must be 16 bytes, got {len(new_key)}")
    return ctx.seal(bytes([kind]) + struct.pack(">H", key_id & 0xFFFF) + new_key)


def unwrap_key(ctx: CryptoContext, frame: bytes) -> tuple[int, int, bytes]:
    """(kind, key id, key) from a key-transport frame (see :func:`wrap_key`)."""
    p = ctx.open(frame)
    if len(p) != 19:
        raise MalformedError(
            f"key transport payload of {len(p)} bytes, expected 19",
            layer="aes_psk.key-transport",
            offset=0,
        )
    return p[0], int.from_bytes(p[1:3], "big"), p[3:]


# ---- firmware image MAC (MEP guide p.246) --------------------------------------------


def firmware_image_mac(key: bytes, image: bytes) -> bytes:
    """The 16-byte "Image MAC" of EP19 request type 9 (MEP guide p.246), taken to
    be AES-CMAC over the whole image (INFERRED)."""
    return crypto.aes_cmac(key, image, 16)


def verify_firmware_image(
    key: bytes, image: bytes, mac: bytes, length: Optional[int] = None
) -> None:
    """Raise AuthenticationError unless ``mac`` is the image MAC (and ``length``,
    when given, the image length field)."""
    if length is not None and length != len(image):
        raise AuthenticationError(f"image length {len(image)} does not match field {length}")
    if not crypto.compare_digest(firmware_image_mac(key, image), mac):
        raise AuthenticationError("firmware image MAC does not verify")
