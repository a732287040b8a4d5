"""pyserial URL handlers of osgp, found through ``serial.protocol_handler_packages``.

pyserial's ``serial_for_url("x://...")`` imports ``<package>.protocol_x`` from
every package named in ``serial.protocol_handler_packages`` and uses its
``Serial`` class.  :func:`register` adds this package to that list, so
``osgpsim://name`` opens :mod:`osgp.transport.handlers.protocol_osgpsim`.
osgp's serial transports call it before opening a port; call it yourself to
use the handlers from plain pyserial.
"""

from __future__ import annotations

import serial

PACKAGE = __name__


def register() -> None:
    """Make pyserial find the handlers in this package (idempotent)."""
    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)
