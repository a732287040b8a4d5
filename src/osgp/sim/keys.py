"""Key renewal on the simulated meter (EP45, osgp.services.key_renewal, INFERRED).

:class:`RenewableSuite` wraps a port's device-side suite.  It holds the
current key and, after a STAGE, the new one beside it; a request is opened
under the current key first, then under the staged one, and the first
request that authenticates under the staged key makes the switch for good:
only then is the meter sure the concentrator holds the new key.  The answer
to that request is already sealed under the new key; the old key is gone.
Until then a lost STAGE or a lost answer leaves the meter on the old key,
still answering to it.

Every request counts as one use of the unicast key, whether it
authenticates or not (ET54 offset 82, MEP guide p.137); at 80 % of the
maximum (ET04 offset 123, MEP guide p.66) the meter logs a warning, at the
maximum it refuses the key (INFERRED, docs/protocol.md §2.5); a renewal
resets the count.  Events (manufacturer, osgp.sim.layouts): "key staged",
"key renewed" (argument: the key id, UINT16), "key usage warning"
(argument: the count, UINT32).

Only unicast keys are renewed: a STAGE of KIND broadcast ends with result 3
(docs/operations-keys.md says why).
"""

from __future__ import annotations

import struct
from typing import Any, Callable, List, Optional, Tuple

from osgp.errors import AuthenticationError, MalformedError, SequenceError
from osgp.security.aes_psk import KeyUsage
from osgp.security.aes_suite import AesPskSuite
from osgp.security.suite import LegacySuite, SecuritySuite
from osgp.services import key_renewal as KR
from osgp.session.profiles import bundle_for

__all__ = [
    "RenewableSuite",
    "enable_key_renewal",
    "ep45",
    "usage_count",
    "max_usage",
    "MAX_KEY_USAGE",
]

MAX_KEY_USAGE = 1_000_000  # ET04 offset 123 default (MEP guide p.66)
USAGE_WARNING = 0.8  # the event at 80 % of it (ibid.)

SuiteFactory = Callable[[bytes, int], Any]


class _Ctx:
    """An exchange opened by one of the suites (so its answer is sealed by it)."""

    __slots__ = ("suite", "inner")

    def __init__(self, suite: Any, inner: Any) -> None:
        self.suite, self.inner = suite, inner


class RenewableSuite:
    """A device-side suite whose unicast key EP45 renews (module docstring).

    ``suite``: the suite in use; ``key`` / ``key_id``: its key; ``make(key,
    key_id)``: a fresh suite for a new key; ``profile``: how the new key
    travels; ``log(name, arg)``: the meter's event log."""

    def __init__(
        self,
        suite: Any,
        key: bytes,
        make: SuiteFactory,
        profile: KR.KeyRenewalProfile,
        *,
        key_id: int = 0,
        max_usage: int = MAX_KEY_USAGE,
        log: Optional[Callable[[str, bytes], None]] = None,
    ) -> None:
        self.current = suite
        self.key, self.key_id = bytes(key), key_id
        self.make, self.profile, self.log = make, profile, log
        self.staged: Optional[Tuple[Any, bytes, int]] = None  # suite, key, key id
        self.usage = KeyUsage(max_usage, USAGE_WARNING)
        self.renewals: List[int] = []  # key ids switched to, in order
        self.name = suite.name
        self.request_overhead = suite.request_overhead
        self.response_overhead = suite.response_overhead
        self.owns_sequence = bool(getattr(suite, "owns_sequence", False))

    def __getattr__(self, name: str) -> Any:
        # state / restore / ctx of an AES suite: the current one's
        if name in ("state", "restore", "ctx"):
            return getattr(self.__dict__["current"], name)
        raise AttributeError(name)

    def _event(self, name: str, arg: bytes) -> None:
        if self.log is not None:
            self.log(name, arg)

    # -- device side of the suite interface
    def open_request(self, wire: bytes) -> Tuple[bytes, int, Any]:
        u = self.usage
        if u.count >= u.maximum:
            raise AuthenticationError(f"unicast key used {u.count} times: refused until renewed")
        warned = u.warned
        u.use("unicast")
        if u.warned and not warned:
            self._event("key usage warning", struct.pack("<I", u.count))
        try:
            apdu, seq, ctx = self.current.open_request(wire)
            return apdu, seq, _Ctx(self.current, ctx)
        except (AuthenticationError, SequenceError) as exc:
            if self.staged is None:
                raise  # a 0x0C context is the current suite's (seal_response)
            first = exc
        suite, key, key_id = self.staged
        try:
            apdu, seq, ctx = suite.open_request(wire)
        except (AuthenticationError, SequenceError):
            raise first from None
        self._switch(suite, key, key_id)
        return apdu, seq, _Ctx(suite, ctx)

    def seal_response(self, ctx: Any, apdu: bytes) -> bytes:
        if type(ctx) is _Ctx:
            return bytes(ctx.suite.seal_response(ctx.inner, apdu))
        return bytes(self.current.seal_response(ctx, apdu))

    # -- the handshake
    def _switch(self, suite: Any, key: bytes, key_id: int) -> None:
        self.current, self.key, self.key_id, self.staged = suite, key, key_id, None
        self.usage.reset()
        self.renewals.append(key_id)
        self._event("key renewed", struct.pack("<H", key_id))

    def stage(self, params: bytes) -> Tuple[int, bytes]:
        """EP45 STAGE: keep the new key beside the current one (a second
        STAGE of the same key id replaces the first: a retry is harmless)."""
        try:
            kind, key_id, new = KR.open_stage(self.profile, self.key, params)
        except MalformedError:
            return 2, b""  # invalid parameter (C12.19 result, MEP guide p.53)
        except AuthenticationError:
            return 5, b""  # not sealed under the key in use: no authorisation
        if kind != KR.UNICAST or key_id != (self.key_id + 1) & 0xFFFF:
            return 3, b""  # conflicts with the current setup
        self.staged = (self.make(new, key_id), new, key_id)
        self._event("key staged", struct.pack("<H", key_id))
        return 0, b""

    def status(self) -> Tuple[int, bytes]:
        staged = self.staged[2] if self.staged is not None else None
        return 0, KR.encode_status(KR.KeyStatus(self.key_id, staged))


def _factory(suite: Any) -> Tuple[bytes, int, SuiteFactory]:
    """(key, key id, make) for a legacy or AES device suite."""
    if isinstance(suite, AesPskSuite):
        ctx, env = suite.ctx, suite.envelope
        key = bytes.fromhex(ctx.state()["key"])

        def make_aes(k: bytes, kid: int) -> Any:
            return AesPskSuite(k, ctx.address, role="device", envelope=env, key_id=kid)

        return key, ctx.key_id, make_aes
    if isinstance(suite, LegacySuite):
        profile = suite.profile
        return suite.keys[0], 0, lambda k, kid: LegacySuite(k, profile)
    raise MalformedError(
        f"key renewal: no renewable key in a {type(suite).__name__}", layer="sim.keys", offset=0
    )


def enable_key_renewal(meter: Any, *, max_usage: int = MAX_KEY_USAGE) -> None:
    """Serve every secured port of ``meter`` through a :class:`RenewableSuite`
    (its sequence window kept), so EP45 can renew its unicast key."""
    for port in meter.ports:
        suite: Optional[SecuritySuite] = port.suite
        if suite is None or isinstance(suite, RenewableSuite):
            continue
        key, key_id, make = _factory(suite)
        profile = bundle_for(port.carrier, suite).key_renewal
        if profile is None:
            continue

        def log(name: str, arg: bytes) -> None:
            meter._log_event(name, arg, mfg=True)

        port.rekey(
            RenewableSuite(suite, key, make, profile, key_id=key_id, max_usage=max_usage, log=log)
        )
    meter._changed()  # ET04 / ET54 show the renewable suite's counters from now on


def _renewable(meter: Any) -> Optional[RenewableSuite]:
    """The suite EP45 acts on: the PLC port's, else the first renewable one."""
    ports = sorted(meter.ports, key=lambda p: p.link != "plc")
    for p in ports:
        if isinstance(p.suite, RenewableSuite):
            return p.suite
    return None


def ep45(meter: Any, params: bytes) -> Tuple[int, bytes]:
    """The EP45 handler of a simulated meter (osgp.services.key_renewal)."""
    suite = _renewable(meter)
    if suite is None:
        return 6, b""  # unrecognised procedure: this meter cannot renew keys
    if params[:1] == bytes([KR.STATUS]) and len(params) == 1:
        return suite.status()
    return suite.stage(params)


def usage_count(suite: Any) -> int:
    """ET54 UNICAST_KEY_USAGE_COUNT of a port's suite."""
    if isinstance(suite, RenewableSuite):
        return suite.usage.count
    usage = getattr(getattr(suite, "ctx", None), "usage", None)
    return int(getattr(usage, "count", 0) or 0)


def max_usage(ports: Any) -> int:
    """ET04 MAX_KEY_USAGE_COUNT (offset 123): the first renewable port's."""
    for p in ports:
        if isinstance(p.suite, RenewableSuite):
            return p.suite.usage.maximum
    return MAX_KEY_USAGE
