"""Transports: move the bytes of a sans-IO session over a real channel.

A transport offers bytes in and out, open/close (context managers) and
bounded timeouts; it knows nothing of sessions.  One sans-IO core
(:mod:`osgp.transport.core`: URLs, channel state, CN/IP framing, hex dumps)
sits under a blocking family (:mod:`osgp.transport.sync`) and an asyncio one
(:mod:`osgp.transport.aio`):

* a device path (``/dev/ttyUSB0``, ``COM3``) or any pyserial URL (``socket://``,
  ``rfc2217://``, ``loop://``, ``spy://``, ``osgpsim://``): :class:`SerialTransport`
  (``serial.serial_for_url``), ``aio.AsyncSerialTransport`` (pyserial-asyncio-fast);
* ``udp://host[:port]``, CN/IP on port 1628 by default: :class:`CnipTransport`,
  ``aio.AsyncCnipTransport``;
* ``tcp://host:port``: :class:`TcpTransport`, ``aio.AsyncTcpTransport``;
* ``mem://name``: :class:`MemoryTransport`, ``aio.AsyncMemoryTransport``.

``open_transport(url)`` and ``await aio.open_transport(url)`` pick the class.
Failures are :class:`osgp.errors.TransportError` subclasses naming the URL:
:class:`ConnectError`, :class:`TransportTimeout`, :class:`TransportClosed`.
Logger ``osgp.transport`` writes hex SEND/RECV dumps at DEBUG; transports only
ever see sealed frames, never a key.  :mod:`osgp.transport.driver` runs a
session over a transport; :mod:`osgp.transport.handlers` holds the pyserial
URL handlers (``osgpsim://`` for in-process devices).
"""

from __future__ import annotations

from osgp.errors import TransportError
from osgp.transport import aio, driver
from osgp.transport.core import CNIP_PORT, CNIP_PRIORITY_PORT, Endpoint, parse_url
from osgp.transport.errors import ConnectError, TransportClosed, TransportTimeout
from osgp.transport.handlers import register as register_handlers
from osgp.transport.sync import (
    CnipTransport,
    MemoryTransport,
    SerialTransport,
    TcpTransport,
    Transport,
    memory_listen,
    memory_pair,
    open_transport,
)

__all__ = [
    "TransportError",
    "ConnectError",
    "TransportTimeout",
    "TransportClosed",
    "CNIP_PORT",
    "CNIP_PRIORITY_PORT",
    "Endpoint",
    "parse_url",
    "Transport",
    "SerialTransport",
    "TcpTransport",
    "CnipTransport",
    "MemoryTransport",
    "memory_pair",
    "memory_listen",
    "open_transport",
    "register_handlers",
    "aio",
    "driver",
]
