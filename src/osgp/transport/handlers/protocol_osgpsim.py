"""pyserial handler for ``osgpsim://name``: a serial port whose far end is a
device object in this process.

This module is the extension point for simulated devices: it carries bytes,
it simulates nothing.  Whatever plays the device (a simulator, a test's
``DeviceSession`` through ``osgp.transport.driver.SessionDevice``) registers
an object with a ``handle(data: bytes) -> bytes`` method under a name::

    from osgp.transport.handlers import protocol_osgpsim, register
    register()                                   # once: pyserial finds the scheme
    protocol_osgpsim.register_device("meter-1", device)
    port = serial.serial_for_url("osgpsim://meter-1", timeout=0.5)

A name can also stand for a kind of device built at each open from the URL's
query: ``register_factory("meter", factory)`` makes
``osgpsim://meter?link=optical&seed=7`` call ``factory({"link": "optical",
"seed": "7"})``.  Importing :mod:`osgp.sim` registers ``meter``: a full
simulated meter (:func:`osgp.sim.serve.url_meter`).

Every ``write`` hands the bytes to ``device.handle`` at once (in the writing
thread) and queues what it returns for ``read``; timeouts follow pyserial
(``None`` blocks, ``0`` polls, ``t`` waits up to ``t`` seconds).  Opening an
unregistered name raises ``serial.SerialException`` naming the URL.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Optional, Protocol
from urllib.parse import parse_qsl, urlsplit

import serial
from serial.serialutil import PortNotOpenError, SerialBase, SerialException

__all__ = [
    "InProcessDevice",
    "register_device",
    "unregister_device",
    "register_factory",
    "Serial",
]


class InProcessDevice(Protocol):
    def handle(self, data: bytes) -> bytes: ...


DeviceFactory = Callable[[Dict[str, str]], InProcessDevice]

_lock = threading.Lock()
_devices: Dict[str, InProcessDevice] = {}
_factories: Dict[str, DeviceFactory] = {}


def register_device(name: str, device: InProcessDevice) -> None:
    """Serve ``device`` as ``osgpsim://name`` (replaces an earlier one)."""
    with _lock:
        _devices[name] = device


def unregister_device(name: str) -> None:
    with _lock:
        _devices.pop(name, None)


def register_factory(name: str, factory: DeviceFactory) -> None:
    """Build a new device with ``factory(query parameters)`` at every open of
    ``osgpsim://name?...`` (a device registered under the name goes first)."""
    with _lock:
        _factories[name] = factory


class Serial(SerialBase):
    """pyserial ``Serial`` over a registered :class:`InProcessDevice`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._device: Optional[InProcessDevice] = None
        self._cond = threading.Condition()
        self._buffer = bytearray()
        super().__init__(*args, **kwargs)

    @staticmethod
    def _name(url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme.lower() != "osgpsim" or not parts.netloc:
            raise SerialException(f"expected osgpsim://<device name>, not {url!r}")
        return parts.netloc

    def open(self) -> None:
        if self.is_open:  # type: ignore[has-type]
            raise SerialException("port already open")
        if self._port is None:
            raise SerialException("port must be configured before it can be used")
        url = str(self._port)
        name = self._name(url)
        with _lock:
            device = _devices.get(name)
            factory = _factories.get(name)
        if device is None and factory is not None:
            try:
                params = dict(parse_qsl(urlsplit(url).query, strict_parsing=False))
                device = factory(params)
            except Exception as exc:  # noqa: BLE001 - any bad parameter names the URL
                raise SerialException(f"{url}: {exc}") from exc
        if device is None:
            raise SerialException(f"{url}: no device registered as {name!r}")
        self._device = device
        self._buffer.clear()
        self.is_open = True

    def close(self) -> None:
        with self._cond:
            self.is_open = False
            self._device = None
            self._cond.notify_all()

    def _reconfigure_port(self) -> None:
        """Line settings mean nothing in memory."""

    def _update_rts_state(self) -> None:
        """No modem lines."""

    def _update_dtr_state(self) -> None:
        """No modem lines."""

    def _update_break_state(self) -> None:
        """No modem lines."""

    @property
    def in_waiting(self) -> int:
        with self._cond:
            return len(self._buffer)

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        with self._cond:
            while self.is_open and len(self._buffer) < size:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            out = bytes(self._buffer[:size])
            del self._buffer[:size]
            return out

    def write(self, data: Any) -> int:
        device = self._device
        if not self.is_open or device is None:
            raise PortNotOpenError()
        data = serial.to_bytes(data)
        reply = device.handle(data)
        if reply:
            with self._cond:
                self._buffer += reply
                self._cond.notify_all()
        return len(data)

    def reset_input_buffer(self) -> None:
        with self._cond:
            self._buffer.clear()

    def reset_output_buffer(self) -> None:
        """Writes are delivered at once: nothing is ever pending."""

    @property
    def cd(self) -> bool:
        return True

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False
