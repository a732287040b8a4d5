"""The response codes (defined in :mod:`osgp.codes`, below the links, which
use them too), under the services' name."""

from osgp.codes import OK, RESPONSE_CODES, ResponseCode, code_name, device_error

__all__ = ["OK", "RESPONSE_CODES", "code_name", "device_error", "ResponseCode"]
