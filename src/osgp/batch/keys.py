"""Keys per device for batch verification.

:class:`KeyLookup` is the interface the pipeline asks: any object with
``key_for(device)`` plugs in (a concentrator's key store, a vault client).
:class:`KeyFile` reads a JSON or CSV key file::

    {"2/1": "3131...31", "04a1b2c3d4e5": "..."}            JSON: device -> key hex
    device,key                                              CSV, header row
    2/1,3131...31

A device is ``"subnet/node"`` (the LonTalk subnet/node address, ISO/IEC
14908-1) or a 12-hex-digit Neuron ID.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Dict, Mapping, NamedTuple, Optional, Protocol, Union

from osgp.errors import ConfigurationError

__all__ = ["Device", "KeyLookup", "KeyFile", "StaticKeys", "parse_device"]


class Device(NamedTuple):
    """A device as frames address it: subnet/node, or a Neuron ID (6 bytes)."""

    subnet: int
    node: int
    nid: bytes = b""

    def __str__(self) -> str:
        return self.nid.hex() if self.nid else f"{self.subnet}.{self.node}"


class KeyLookup(Protocol):
    """Where the pipeline gets a device's key (None: unknown device)."""

    def key_for(self, device: Device) -> Optional[bytes]: ...


def parse_device(text: str) -> Device:
    """``"2/1"`` (or ``"2.1"``) -> Device(2, 1); 12 hex digits -> a Neuron ID."""
    t = text.strip()
    for sep in ("/", "."):
        if sep in t:
            a, _, b = t.partition(sep)
            try:
                subnet, node = int(a), int(b)
            except ValueError:
                break
            if not (0 <= subnet <= 255 and 0 <= node <= 127):
                raise ConfigurationError(f"device {text!r}: subnet 0..255, node 0..127")
            return Device(subnet, node)
    try:
        nid = bytes.fromhex(t)
    except ValueError:
        nid = b""
    if len(nid) != 6:
        raise ConfigurationError(f"device {text!r} is neither subnet/node nor a 6-byte Neuron ID")
    return Device(0, 0, nid)


class StaticKeys:
    """Keys from a mapping of device (Device or its text) to key bytes or hex."""

    def __init__(self, keys: Mapping[Union[str, Device], Union[str, bytes]]) -> None:
        self._by_addr: Dict[tuple, bytes] = {}
        self._by_nid: Dict[bytes, bytes] = {}
        for dev, key in keys.items():
            d = dev if isinstance(dev, Device) else parse_device(dev)
            try:
                k = bytes.fromhex(key) if isinstance(key, str) else bytes(key)
            except ValueError:
                raise ConfigurationError(f"key of {d} is not hex") from None
            if d.nid:
                self._by_nid[d.nid] = k
            else:
                self._by_addr[(d.subnet, d.node)] = k

    def key_for(self, device: Device) -> Optional[bytes]:
        if device.nid:
            return self._by_nid.get(device.nid)
        return self._by_addr.get((device.subnet, device.node))

    def __len__(self) -> int:
        return len(self._by_addr) + len(self._by_nid)


class KeyFile(StaticKeys):
    """A JSON (object: device -> key hex) or CSV (columns device,key) file."""

    def __init__(self, path: Union[str, os.PathLike]) -> None:
        self.path = os.fspath(path)
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        if text.lstrip().startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{self.path}: {exc}") from None
        else:
            rows = list(csv.DictReader(text.splitlines()))
            if rows and not {"device", "key"} <= set(rows[0]):
                raise ConfigurationError(f"{self.path}: CSV needs the columns device,key")
            raw = {r["device"]: r["key"] for r in rows}
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{self.path}: a JSON object of device -> key hex")
        super().__init__(raw)
