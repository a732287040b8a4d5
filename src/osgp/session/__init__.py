"""Sessions: the sans-IO client (concentrator) and device state machines, the
router that demultiplexes a shared medium, the channel arbiter, and the
profile bundle of every link.

    >>> from osgp.link.carrier import MepCarrier
    >>> from osgp.security.suite import LegacySuite
    >>> from osgp.session import ClientSession
    >>> s = ClientSession(MepCarrier(), LegacySuite(bytes([1]) * 16))
    >>> op = s.read(52)
    >>> frame = s.poll_transmit(now=0.0)        # write it to the port
    >>> s.next_deadline()                       # come back then if nothing arrives
    0.5

Handle, then poll: ``receive_data(data, now)`` returns events
(:class:`Completed`, :class:`Failed`, :class:`AlertReceived`);
``poll_transmit(now)`` gives the next frame when the medium is free;
``next_deadline()`` / ``handle_timeout(now)`` run the timers.  Sessions never
read a clock, so they run the same on an asyncio loop and on a virtual clock.
"""

from osgp.session.arbiter import Arbiter
from osgp.session.client import ClientSession
from osgp.session.device import DeviceSession, ProcedureHandler
from osgp.session.events import (
    AlertReceived,
    Completed,
    Event,
    Failed,
    Operation,
    OperationCancelled,
    Priority,
    Served,
)
from osgp.session.profiles import (
    BUNDLES,
    MEP,
    MEP_AES,
    OPTICAL,
    PLC,
    PLC_AES,
    LinkProfile,
    Provenance,
    ProxyParams,
    Timers,
    bundle,
)
from osgp.session.router import Router

__all__ = [
    "ClientSession",
    "DeviceSession",
    "ProcedureHandler",
    "Router",
    "Arbiter",
    "Operation",
    "OperationCancelled",
    "Priority",
    "Completed",
    "Failed",
    "AlertReceived",
    "Served",
    "Event",
    "LinkProfile",
    "Provenance",
    "Timers",
    "ProxyParams",
    "bundle",
    "BUNDLES",
    "MEP",
    "MEP_AES",
    "OPTICAL",
    "PLC",
    "PLC_AES",
]
