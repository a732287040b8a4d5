"""OSGP services: table read/write messages, response codes, procedures
(BT07/BT08), transactions (ET27/ET28, ET52/ET53), pending tables, and the
sans-IO client and device sessions."""

from osgp.services.codes import RESPONSE_CODES, ResponseCode, code_name, device_error
from osgp.services.messages import (
    ET,
    PED,
    PENDING,
    FullRead,
    FullWrite,
    PartialRead,
    PartialWrite,
    Response,
    ServiceProfile,
    check_response,
    decode_request,
    decode_response,
    pending_write,
)

__all__ = [
    "RESPONSE_CODES",
    "ResponseCode",
    "code_name",
    "device_error",
    "ET",
    "PED",
    "PENDING",
    "FullRead",
    "FullWrite",
    "PartialRead",
    "PartialWrite",
    "Response",
    "ServiceProfile",
    "check_response",
    "decode_request",
    "decode_response",
    "pending_write",
]
