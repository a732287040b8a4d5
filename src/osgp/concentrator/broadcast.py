"""Secure group broadcasts from the concentrator: one request to every meter
of a LonTalk group on one channel, unanswered.

:class:`Broadcaster` sits on a channel's arbiter like a session (its frames
wait their turn with the sessions' requests).  :meth:`Broadcaster.send`
seals an OSGP request under the broadcast key with the next broadcast
sequence number (osgp.security.broadcast, INFERRED) and frames it to
``lon.Group(group)``: with ``repeats`` 0 as an unacknowledged APDU, else as
an unacknowledged-repeated TPDU sent ``1 + repeats`` times, the copies
identical (ISO/IEC 14908-1; a receiver drops the copies after the first).
:meth:`Broadcaster.procedure` does the same for a procedure through BT07.

The sequence numbers must rise above every meter's base B (ET04 offset 82):
``next_seq`` is where the next one starts; a caller that restarts sets it
above the highest base its meters report.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, List, Optional, Tuple

from osgp.errors import ConfigurationError
from osgp.link import lon
from osgp.security.broadcast import LegacyBroadcast
from osgp.services import procedures as P
from osgp.services.messages import PLC_SERVICES, FullWrite, Request
from osgp.session.events import Priority, Watched

__all__ = ["Broadcaster", "procedure_request"]

Done = Callable[[float], None]


def procedure_request(number: int, params: bytes = b"", *, mfg: bool = True) -> Request:
    """The BT07 write that runs procedure ``number`` (no PSN check, no BT08
    answer on a broadcast: selector SELECT_NONE, PSN 0)."""
    return FullWrite(P.BT07, P.ProcedureCall(number, 0, params, mfg, P.SELECT_NONE).encode())


class Broadcaster(Watched):
    """Broadcasts on ``channel`` (a Segment, or any channel whose arbiter
    takes session-like participants) under ``envelope`` (a
    :class:`~osgp.security.broadcast.LegacyBroadcast`, ``AesBroadcast``, or
    a legacy broadcast key as bytes).

    ``stats`` counts ``broadcasts`` and ``frames``; ``sent_bytes`` what went
    on the medium."""

    listens: Tuple[int, ...] = ()  # it takes no frames
    awaiting = False  # nothing it sends is answered
    has_events = False

    def __init__(
        self,
        channel: Any,
        envelope: Any,
        *,
        next_seq: int = 1,
        priority: int = Priority.OPERATION,
        profile: lon.PlcProfile = lon.PLC_PROFILE,
    ) -> None:
        attach = getattr(channel, "attach_engine", None)
        if attach is None:
            name = getattr(channel, "name", channel)
            raise ConfigurationError(f"channel {name!r} cannot broadcast")
        self.channel = channel
        self.envelope = LegacyBroadcast(envelope) if isinstance(envelope, bytes) else envelope
        self.next_seq, self.priority, self.profile = next_seq, int(priority), profile
        self.src = channel.concentrator
        self.crc = getattr(channel, "crc", True)
        self.services = PLC_SERVICES
        self.stats: dict = {"broadcasts": 0, "frames": 0}
        self.sent_bytes = 0
        self._queue: Deque[Tuple[bytes, Optional[Done]]] = deque()
        Watched.__init__(self)
        self._tid = 0
        attach(self)

    def close(self) -> None:
        self.channel.detach_engine(self)

    # -- sending
    def send(
        self, group: int, request: Request, *, repeats: int = 0, done: Optional[Done] = None
    ) -> int:
        """Queue one broadcast of ``request`` to ``group``; ``done(now)`` is
        called when its last copy goes on the medium.  Returns its sequence
        number."""
        if not 0 < group < 256:
            raise ConfigurationError(f"a LonTalk group address is 1..255, not {group}")
        if not 0 <= repeats <= 15:
            raise ConfigurationError(f"repeats 0..15 (the LonTalk repeat count), not {repeats}")
        seq = self.next_seq
        wire = self.envelope.seal(request.encode(self.services), seq)
        self.next_seq += 1
        apdu = self.profile.wrap(wire)
        if repeats:
            self._tid = self._tid % 15 + 1
            pdu: Any = lon.Tpdu(lon.TPDU_UNACKD_RPT, self._tid, apdu)
        else:
            pdu = lon.Apdu(apdu)
        npdu = lon.Npdu(self.src.subnet, self.src.node, lon.Group(group), pdu, self.profile.domain)
        frame = lon.encode_lpdu(lon.Lpdu(npdu), crc=self.crc)
        for _ in range(repeats):
            self._queue.append((frame, None))
        self._queue.append((frame, done))
        self.stats["broadcasts"] += 1
        self._changed()
        return seq

    def procedure(
        self, group: int, number: int, params: bytes = b"", *, mfg: bool = True, **kw: Any
    ) -> int:
        """Broadcast procedure ``number`` with ``params`` (see :meth:`send`)."""
        return self.send(group, procedure_request(number, params, mfg=mfg), **kw)

    @property
    def queued(self) -> int:
        """Frames still to go."""
        return len(self._queue)

    # -- session-like interface (osgp.session.Arbiter)
    def next_priority(self) -> Optional[int]:
        return self.priority if self._queue else None

    def next_deadline(self) -> Optional[float]:
        return None

    def poll_transmit(self, now: float) -> Optional[bytes]:
        if not self._queue:
            return None
        frame, done = self._queue.popleft()
        self.stats["frames"] += 1
        self.sent_bytes += len(frame)
        if done is not None:
            done(now)
        self._changed()
        return frame

    def handle_timeout(self, now: float) -> List[Any]:
        return []
