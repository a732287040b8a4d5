"""The simulated meter's side of secure group broadcasts.

A broadcast is a LonTalk frame to a group address (ISO/IEC 14908-1 address
format 1) with the unacknowledged service (an APDU) or the
unacknowledged-repeated one (a TPDU UNACKD_RPT); its APDU is an OSGP request
sealed under the broadcast key (osgp.security.broadcast, INFERRED).  A meter
outside the group drops it; a member checks the sequence number against its
range (B, B + D] (ET04 offsets 82 and 86 [MEP p.61-62]), then the digest,
counts every use of the key (ET54 offset 86), and serves the request without
answering: a table write, or a procedure through BT07 (its PSN is not
checked: the broadcast sequence number is what refuses a repeat).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Optional

from osgp import _backend
from osgp.errors import DecodeError, OSGPError
from osgp.link import lon
from osgp.security.broadcast import ACCEPTED, DEFAULT_DELTA, BroadcastRange, LegacyBroadcast
from osgp.services import procedures as P
from osgp.services.messages import FullWrite, decode_request

if TYPE_CHECKING:  # pragma: no cover
    from osgp.sim.meter import MeterPort, SimMeter

__all__ = ["BroadcastListener"]

_frames, _ = _backend.load("frames")


class BroadcastListener:
    """One meter's broadcast reception: ``envelope`` (a
    :class:`~osgp.security.broadcast.LegacyBroadcast` or ``AesBroadcast``
    under the broadcast key; None: the meter has no broadcast key and drops
    every broadcast), its :class:`BroadcastRange` and counters."""

    def __init__(self, meter: SimMeter, envelope: Any = None, *, delta: int = DEFAULT_DELTA):
        self.meter = meter
        self.envelope = envelope
        self.range = BroadcastRange(0, delta)
        self.usage = 0  # ET54 BROADCAST_KEY_USAGE_COUNT
        self.receipt = 0.0  # ET04 BROADCAST_RECEIPT, meter clock of the last accepted one
        self.stats: Counter = Counter()

    def set_key(self, key: bytes) -> None:
        """Give the meter a legacy broadcast key (what commissioning or a key renewal does)."""
        self.envelope = LegacyBroadcast(key)

    def receive(self, port: MeterPort, data: bytes, now: float) -> bool:
        """True when ``data`` is a group frame (taken here, whatever came of it)."""
        try:
            h = _frames.lon_parse(data, True, getattr(port.carrier, "crc", True))
        except DecodeError:
            return False
        if h[2] != 1:  # not a group address
            return False
        stats = self.stats
        kind = h[1]
        if kind == lon.PDU_APDU:
            start = h[14]
        elif kind == lon.PDU_TPDU and (h[11] >> 4) & 7 == lon.TPDU_UNACKD_RPT:
            start = h[14] + 1
        else:
            stats["not a broadcast service"] += 1
            return True
        if h[9] not in self.meter.groups:
            stats["not a member"] += 1
            return True
        env = self.envelope
        if env is None:
            stats["no broadcast key"] += 1
            return True
        wire = data[start : h[15]]
        self.usage += 1  # every use, whatever the outcome (ET54 offset 86)
        self.meter._changed()
        try:
            seq = env.sequence(wire)
            if self.range.check(seq, wire) != ACCEPTED:
                return True
            apdu, _ = env.open(wire)
        except OSGPError as exc:
            stats[f"rejected: {type(exc).__name__}"] += 1
            return True
        self.range.commit(seq, wire)
        self.receipt = self.meter.clock.meter(now)
        stats["served"] += 1
        self._serve(port, apdu)
        return True

    def _serve(self, port: MeterPort, apdu: bytes) -> None:
        session = port.session
        try:
            req = decode_request(apdu, session.services)
        except DecodeError:
            self.stats["undecodable request"] += 1
            return
        if isinstance(req, FullWrite) and req.table == P.BT07:
            try:
                call = P.ProcedureCall.decode(req.data)
            except DecodeError:
                self.stats["undecodable procedure"] += 1
                return
            handler: Optional[Any] = self.meter.procedures.get(call.proc_id)
            if handler is None:
                self.stats["unknown procedure"] += 1
                return
            result = handler(call.params)
            if not isinstance(result, tuple):  # a slow procedure: run its steps through
                result = list(result)[-1]
            self.stats[f"result {result[0]}"] += 1
            return
        code = session.execute(req, session.services).code
        self.stats[f"result {code}"] += 1
