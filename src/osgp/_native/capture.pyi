# Hand-written stub of osgp._native.capture (twin: osgp._reference.capture).
from typing import Any, Dict, Tuple

import numpy as np

NO_TIME: int
MAX_INTERFACES: int
OK: int
OTHER: int
FRAGMENT: int
TRUNCATED: int
MALFORMED: int
FAULTS: Tuple[str, ...]

def walk(
    data: Any, strict: bool = ...
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Dict[str, Any]]: ...
def cnip_extract(
    data: Any, offsets: Any, lengths: Any, interfaces: Any, linktypes: Any
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def gather(data: Any, starts: Any, lengths: Any) -> Tuple[np.ndarray, np.ndarray]: ...
def ranges_equal(data: Any, a: Any, b: Any, lengths: Any) -> np.ndarray: ...
