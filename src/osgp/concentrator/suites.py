"""The security suite of a meter's session, by the purpose of its key.

A meter on the legacy PLC suite has a 12-byte OMA key (purpose
``plc-omak``); one on OSGP-AES-128-PSK a 16-byte unicast key (purpose
``plc-aes-psk``), its CryptoContext (key id, sequence numbers, replay window)
kept in the session state.  That state holds the key itself, so what the
store keeps of it has the key sealed by the vault (``KeyVault.seal``) like
every key at rest.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional

from osgp.errors import ConfigurationError
from osgp.security.aes_suite import PLC_AES_ENVELOPE, AesPskSuite
from osgp.security.suite import PLC_ENVELOPE, LegacySuite

__all__ = [
    "LEGACY_PURPOSE",
    "AES_PURPOSE",
    "PURPOSES",
    "client_suite",
    "seal_state",
    "open_state",
]

LEGACY_PURPOSE = "plc-omak"  # the 12-byte OMA key of the legacy PLC suite
AES_PURPOSE = "plc-aes-psk"  # the unicast CCM key of OSGP-AES-128-PSK
PURPOSES = (LEGACY_PURPOSE, AES_PURPOSE)
_STATE_PURPOSE = "session-context"  # the vault's binding of a key kept in session state


def client_suite(purpose: str, key: bytes, neuron: bytes, key_id: int = 0) -> Any:
    """The concentrator side of the suite ``purpose`` under ``key`` (the AES
    nonce carries the meter's Neuron ID and the key id)."""
    if purpose == LEGACY_PURPOSE:
        return LegacySuite(key, PLC_ENVELOPE)
    if purpose == AES_PURPOSE:
        return AesPskSuite(key, neuron, envelope=PLC_AES_ENVELOPE, key_id=key_id)
    raise ConfigurationError(f"no suite for keys of purpose {purpose!r} (one of {PURPOSES})")


def _context(state: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    suite = (state or {}).get("suite")
    return suite.get("context") if isinstance(suite, dict) else None


def seal_state(vault: Any, device_id: int, state: Dict[str, Any]) -> Dict[str, Any]:
    """``state`` with an AES context's key sealed (the session state as stored)."""
    ctx = _context(state)
    if ctx is None or "key" not in ctx:
        return state
    out = copy.deepcopy(state)
    c = out["suite"]["context"]
    c["sealed_key"] = vault.seal(device_id, _STATE_PURPOSE, bytes.fromhex(c.pop("key"))).hex()
    return out


def open_state(
    vault: Any, device_id: int, state: Optional[Dict[str, Any]]
) -> Optional[Dict[str, Any]]:
    """The stored session state with its AES key opened again."""
    ctx = _context(state)
    if state is None or ctx is None or "sealed_key" not in ctx:
        return state
    out = copy.deepcopy(state)
    c = out["suite"]["context"]
    c["key"] = vault.open(device_id, _STATE_PURPOSE, bytes.fromhex(c.pop("sealed_key"))).hex()
    return out
