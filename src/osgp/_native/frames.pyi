# Hand-written stub of osgp._native.frames (twin: osgp._reference.frames).
# Authentication failure: mep_request_check and mep_response_check raise
# osgp.errors.AuthenticationError; mep_request_check_batch never raises for a
# frame that fails and returns ``ok``, a bytes of n flags (1 verified, 0 not),
# as its last item, with the reason in ``status`` (OK, AUTH, TRUNCATED,
# MALFORMED: the osgp_status values of csrc/osgp.h).
from typing import Any, Tuple

import numpy as np

MAX_MESSAGE: int
LON_FIELDS: Tuple[str, ...]
LON_DTYPE: np.dtype
OK: int
AUTH: int
TRUNCATED: int
MALFORMED: int
CHECKSUM: int

def mep_request_check(key: Any, frame: Any, max_message: int = ...) -> Tuple[int, int]: ...
def mep_response_check(
    key: Any, request_frame: Any, response_frame: Any, max_message: int = ...
) -> bytes: ...
def mep_request_check_batch(
    key: Any, data: Any, offsets: Any, max_message: int = ...
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, bytes]: ...  # (status, code, seq, ok)
def mep_split(data: Any, max_message: int = ...) -> Tuple[np.ndarray, np.ndarray, int]: ...
def lon_parse(frame: Any, lpdu: bool = ..., crc: bool = ...) -> tuple: ...
def lon_parse_batch(
    data: Any, offsets: Any, lpdu: bool = ..., crc: bool = ...
) -> Tuple[np.ndarray, np.ndarray]: ...
