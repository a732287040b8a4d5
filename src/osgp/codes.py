"""Response codes of the OSGP / C12.18 services and their DeviceError mapping
(kernel layer: the optical link and the services both name them).

0x00-0x0A: ANSI C12.18 response codes (docs/protocol.md §3.1, [N0M] c1219.h); 0x0B and
0x0C: OSGP/MEP additions (MEP guide p.10-11).  Every non-zero code turns into a
:class:`~osgp.errors.DeviceError` carrying the code and its name; 0x0C carries
the device's current sequence number and becomes a :class:`SequenceError`.
"""

from __future__ import annotations

from enum import IntEnum

from osgp.errors import DeviceError

__all__ = ["OK", "RESPONSE_CODES", "code_name", "device_error", "ResponseCode"]

OK = 0x00


class ResponseCode(IntEnum):
    """The response codes as an ``IntEnum``: each member is the int it names,
    so ``bytes([ResponseCode.ERR])`` and ``code == 0x0C`` work unchanged."""

    OK = 0x00
    ERR = 0x01  # error / unrecognised request
    SNS = 0x02  # service not supported
    ISC = 0x03  # insufficient security clearance
    ONP = 0x04  # operation not possible
    IAR = 0x05  # inappropriate action requested (MEP: table operation not possible)
    BSY = 0x06  # device busy
    DNR = 0x07  # data not ready
    DLK = 0x08  # data locked
    RNO = 0x09  # renegotiate request
    ISSS = 0x0A  # invalid service sequence state
    AUTH = 0x0B  # authentication (digest) failure (MEP p.11)
    SEQ = 0x0C  # invalid sequence number, + correct seq:4 (MEP p.11)


RESPONSE_CODES: dict[int, str] = {
    0x00: "ok",
    0x01: "error",
    0x02: "service not supported",
    0x03: "insufficient security clearance",
    0x04: "operation not possible",
    0x05: "inappropriate action requested",
    0x06: "device busy",
    0x07: "data not ready",
    0x08: "data locked",
    0x09: "renegotiate request",
    0x0A: "invalid service sequence state",
    0x0B: "authentication failure",
    0x0C: "invalid sequence number",
}


def code_name(code: int) -> str:
    return RESPONSE_CODES.get(code, f"unknown response code 0x{code:02X}")


def device_error(code: int) -> DeviceError:
    return DeviceError(int(code), code_name(code))
