"""Key renewal as a procedure: the parameter layouts, **INFERRED**.

The public record says that unicast and broadcast PLC keys exist, that their
uses are counted (ET54 offsets 82 and 86, UINT32, every use whether it
succeeded or not; MEP guide p.137), that ET04 offset 123 holds the maximum
usage count (UINT32, default 1,000,000) with an event at 80 % of it, and that
"the head-end system software will automatically update these keys" (MEP
guide p.66).  CLC/TS 50586 Annex F names key renewal for the AES suite; no
transfer procedure, parameter or table layout is public.  What follows is a
reconstruction (docs/operations-keys.md gives the reasoning):

* The procedure is EP45, one of the "Manufacturer Specific" slots of Annex D
  (D.41): no standard procedure carries keys, and a maker's key transfer is
  what such a slot is for.
* Parameters (after proc id and PSN, BT07; integers LSB first like every
  OSGP procedure parameter)::

      STAGE   ACTION:UINT8 = 1, KIND:UINT8 (1 unicast, 2 broadcast),
              KEY_ID:UINT16, then the key:
                legacy suite: RC4 ciphertext || DIGEST:8, the suite's own
                              seal of the new key under the current key
                              (osgp.security.legacy.LegacyProfile.seal)
                AES suite:    KEY:16 as is; the CCM envelope of the request
                              already encrypts it under the current key
      STATUS  ACTION:UINT8 = 2
              response data: KEY_ID:UINT16 (in use), STAGED:UINT8 (0/1),
                             STAGED_ID:UINT16

  KIND and the 16-byte key follow the AES key transport of docs/protocol.md
  §5.3 (kind || key id || key).
* The handshake: STAGE only stores the new key beside the current one; the
  meter answers to both and switches for good on the first request that
  authenticates under the new key (then the concentrator has it for sure).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional, Tuple

from osgp.errors import AuthenticationError, MalformedError
from osgp.security.legacy import MEP as MEP_LEGACY
from osgp.security.legacy import PLC as PLC_LEGACY
from osgp.security.legacy import LegacyProfile

__all__ = [
    "KeyRenewalProfile",
    "KeyStatus",
    "EP45",
    "STAGE",
    "STATUS",
    "UNICAST",
    "BROADCAST",
    "PLC_LEGACY_RENEWAL",
    "MEP_LEGACY_RENEWAL",
    "AES_RENEWAL",
    "stage_params",
    "open_stage",
    "status_params",
    "encode_status",
    "decode_status",
]

EP45 = 2048 + 45  # Annex D.41 "Manufacturer Specific" (CLC/TS 50586 contents)
STAGE, STATUS = 1, 2  # ACTION
UNICAST, BROADCAST = 1, 2  # KIND (docs/protocol.md §5.3 key transport)
_HEAD = struct.Struct("<BBH")  # ACTION, KIND, KEY_ID
_STATUS = struct.Struct("<HBH")  # KEY_ID, STAGED, STAGED_ID
_DIGEST = 8  # OMA digest (MEP guide p.9)


@dataclass(frozen=True)
class KeyRenewalProfile:
    """How one suite carries a new key: ``wrap`` is the legacy profile whose
    seal encrypts it (None: the envelope does, as the AES suite's CCM);
    ``key_sizes``: accepted new-key lengths."""

    name: str
    status: str
    procedure: int
    key_sizes: Tuple[int, ...]
    wrap: Optional[LegacyProfile] = None

    @property
    def stage_sizes(self) -> Tuple[int, ...]:
        """Every STAGE parameter length of this profile."""
        extra = _DIGEST if self.wrap is not None else 0
        return tuple(_HEAD.size + n + extra for n in self.key_sizes)


_WHY = "no key transfer is public (MEP guide p.66, p.137 name the keys and counters only)"
PLC_LEGACY_RENEWAL = KeyRenewalProfile(
    "PLC legacy",
    f"INFERRED: EP45 STAGE/STATUS, OMAK sealed by the PLC suite; {_WHY}",
    EP45,
    (12,),
    PLC_LEGACY,
)
MEP_LEGACY_RENEWAL = KeyRenewalProfile(
    "MEP legacy",
    f"INFERRED: EP45 STAGE/STATUS, key sealed by the MEP suite; {_WHY}",
    EP45,
    (16,),
    MEP_LEGACY,
)
AES_RENEWAL = KeyRenewalProfile(
    "AES",
    f"INFERRED: EP45 STAGE/STATUS, key inside the CCM-protected request; {_WHY}",
    EP45,
    (16,),
)


@dataclass(frozen=True)
class KeyStatus:
    """The STATUS answer: the key id in use and the staged one, if any."""

    key_id: int
    staged: Optional[int]


def stage_params(
    profile: KeyRenewalProfile, current: bytes, new: bytes, key_id: int, kind: int = UNICAST
) -> bytes:
    """STAGE parameters carrying ``new`` (sealed under ``current`` for a legacy suite)."""
    if len(new) not in profile.key_sizes:
        raise MalformedError(
            f"{profile.name} key renewal: a key of {len(new)} bytes, not {profile.key_sizes}",
            layer="key-renewal",
            offset=_HEAD.size,
        )
    head = _HEAD.pack(STAGE, kind, key_id & 0xFFFF)
    if profile.wrap is None:
        return head + new
    ciphertext, digest, _ = profile.wrap.seal(current, new)
    return head + ciphertext + digest


def open_stage(profile: KeyRenewalProfile, current: bytes, params: bytes) -> Tuple[int, int, bytes]:
    """(kind, key id, new key) of STAGE parameters; MalformedError for a
    wrong length or action, AuthenticationError for a sealed key whose
    digest does not verify under ``current``."""
    if len(params) not in profile.stage_sizes:
        raise MalformedError(
            f"{profile.name} key renewal: STAGE of {len(params)} bytes, not {profile.stage_sizes}",
            layer="key-renewal",
            offset=0,
        )
    action, kind, key_id = _HEAD.unpack_from(params)
    if action != STAGE:
        raise MalformedError(
            f"key renewal: action {action} is not STAGE", layer="key-renewal", offset=0
        )
    body = params[_HEAD.size :]
    if profile.wrap is None:
        return kind, key_id, bytes(body)
    try:
        new, _ = profile.wrap.open(current, body[:-_DIGEST], body[-_DIGEST:])
    except AuthenticationError:
        raise AuthenticationError(
            f"{profile.name} key renewal: the sealed key does not verify under the current key"
        ) from None
    return kind, key_id, new


def status_params() -> bytes:
    return bytes([STATUS])


def encode_status(status: KeyStatus) -> bytes:
    staged = status.staged
    return _STATUS.pack(status.key_id & 0xFFFF, staged is not None, (staged or 0) & 0xFFFF)


def decode_status(data: bytes) -> KeyStatus:
    if len(data) != _STATUS.size:
        raise MalformedError(
            f"key renewal: STATUS answer of {len(data)} bytes, not {_STATUS.size}",
            layer="key-renewal",
            offset=0,
        )
    key_id, staged, staged_id = _STATUS.unpack(data)
    return KeyStatus(key_id, staged_id if staged else None)
