"""Key renewal as an operation job (``Operations.key_renewal``, ``osgp op key-renewal``).

One target's steps, for either suite (docs/operations-keys.md has the
handshake and why it stays safe across losses and restarts):

1. A ``pending`` key in the vault is tried first: a meter that got the new
   key before a loss or a restart answers to it, and that answer is the
   confirmation.  A meter that answers with AuthenticationFailure (0x0B), or
   whose answer does not authenticate, does not have it in use.
2. EP45 STATUS under the current key: the key id in use.
3. The new key (the pending one again, else a fresh random one, stored
   ``pending`` before it is sent) goes in EP45 STAGE under the current key
   (osgp.services.key_renewal; sealed by the legacy suite, inside the CCM
   request on AES); the outcome becomes ``sent`` with the key id.
4. EP45 STATUS under the new key: the meter switches on this first request
   authentic under the new key and answers under it; its key id must be the
   new one with nothing staged.  ET54 UNICAST_KEY_USAGE_COUNT (offset 82,
   UINT32; MEP guide p.137), read under the new key, goes into the outcome.
5. The session state is stored under the new key; only then the vault's
   pending key becomes active and the old one retired.

Sequence state across the switch: the legacy suite's sequence counter is the
session's and goes on unchanged; an AES CryptoContext starts again at 0 under
the new key id (the nonce carries the key id, so no nonce repeats), on both
sides at the same request.
"""

from __future__ import annotations

import json
import secrets
import struct
from typing import Any, Generator, Optional

from osgp.concentrator import suites
from osgp.errors import AuthenticationError, ProtocolError
from osgp.services import key_renewal as KR
from osgp.session.events import Operation

__all__ = ["KIND", "KeyNotConfirmed", "renew"]

KIND = "key-renewal"
TaskGen = Generator[Operation, Any, Any]

ET54 = 2048 + 54
_EP45 = KR.EP45 - 2048  # the number Operations._call takes (mfg=True)
_USAGE_AT = 82  # ET54 UNICAST_KEY_USAGE_COUNT, UINT32 (MEP guide p.137)


class KeyNotConfirmed(ProtocolError):
    """The meter answered under the new key, but not as a renewed meter does."""


def _next_key_id(m: Any, before: Optional[dict]) -> Optional[int]:
    """The key id of the pending key, None where it is not known (a legacy
    key has no key id of its own: the meter's STATUS gives it)."""
    if before and "key_id" in before:
        return int(before["key_id"])
    ctx = getattr(m.session.suite, "ctx", None)  # AES: the key id is in the nonce
    return (ctx.key_id + 1) & 0xFFFF if ctx is not None else None


def _status(ops: Any, m: Any) -> TaskGen:
    data = yield from ops._call(m, _EP45, KR.status_params())
    return KR.decode_status(bytes(data))


def _usage(ops: Any, m: Any) -> TaskGen:
    data = yield m.session.read(ET54, _USAGE_AT, 4, priority=ops.priority)
    return struct.unpack("<I", bytes(data))[0]


def _under(ops: Any, m: Any, suite: Any, step: Any) -> TaskGen:
    """Run ``step`` with the session on ``suite``; the suite it had comes
    back whatever happens (the caller keeps ``suite`` when it wants it)."""
    old = m.session.suite
    m.session.suite = suite
    try:
        return (yield from step)
    finally:
        m.session.suite = old


def renew(ops: Any, m: Any, run: Any) -> TaskGen:
    """The task of one target (module docstring); returns the outcome detail."""
    store, d, purpose = ops.store, m.device_id, m.purpose
    profile = m.session.profile.key_renewal
    if profile is None:
        raise KeyNotConfirmed(f"the {m.session.profile.name} bundle has no key renewal")
    pending = store.key(d, purpose, state="pending")
    if pending is not None:
        kid = _next_key_id(m, run.before)
        trial = suites.client_suite(purpose, pending, m.neuron, kid or 0)
        try:
            status = yield from _under(ops, m, trial, _status(ops, m))
        except AuthenticationError:
            status = None  # not on the pending key (yet)
        if status is not None:
            return (yield from _confirm(ops, m, trial, pending, status, kid, "none"))
    status = yield from _status(ops, m)
    kid = (status.key_id + 1) & 0xFFFF
    new = pending if pending is not None else secrets.token_bytes(len(m.key))
    if pending is None:
        store.put_key(d, purpose, new, state="pending")  # kept before it can reach the meter
    ops._sent(m, run, {"key_id": kid, "from": status.key_id})
    yield from ops._call(m, _EP45, KR.stage_params(profile, m.key, new, kid))
    suite = suites.client_suite(purpose, new, m.neuron, kid)
    after = yield from _under(ops, m, suite, _status(ops, m))
    return (yield from _confirm(ops, m, suite, new, after, kid, "EP45"))


def _confirm(
    ops: Any, m: Any, suite: Any, key: bytes, status: KR.KeyStatus, kid: Optional[int], action: str
) -> TaskGen:
    """The meter answered under the new key: check it, then retire the old one."""
    if status.staged is not None or (kid is not None and status.key_id != kid):
        raise KeyNotConfirmed(
            f"EP45 STATUS under the new key: key id {status.key_id}, staged {status.staged}"
        )
    # the count since the switch, for the record: resends under loss add to
    # it, so it is no test of the reset
    usage = yield from _under(ops, m, suite, _usage(ops, m))
    # the session state (an AES context holds the new key) is stored before
    # the vault's switch: a restart in between finds both on the new key
    m.session.suite = suite
    ops._save_session(m)
    ops.store.promote_key(m.device_id, m.purpose)
    m.key = key
    return json.dumps({"key_id": status.key_id, "action": action, "usage": usage})
