"""Chooses the native kernels or their pure-Python twins (docs/conventions.md §4).

``OSGP_NO_EXTENSIONS=1`` forces the twins.  Otherwise each family's compiled
module is used; a family whose module cannot be imported (a pure-Python
install, a broken build) falls back to its twin on its own, which
:data:`osgp.backends` shows and which makes :data:`osgp.native` False.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

FORCED_REFERENCE = os.environ.get("OSGP_NO_EXTENSIONS", "") not in ("", "0")

#: The kernel families: one compiled module in osgp._native and one twin in
#: osgp._reference each.
FAMILIES = ("legacy", "aes", "frames", "tables", "capture")

_IMPORT_ERRORS: dict[str, str] = {}


def load(family: str) -> tuple[ModuleType, bool]:
    """Return (module, is_native) for a kernel family such as ``"legacy"``."""
    if not FORCED_REFERENCE:
        try:
            return importlib.import_module(f"osgp._native.{family}"), True
        except ImportError as exc:  # pure-Python install or broken build
            _IMPORT_ERRORS[family] = str(exc)
    return importlib.import_module(f"osgp._reference.{family}"), False


def reference(family: str) -> ModuleType:
    return importlib.import_module(f"osgp._reference.{family}")


def native_module(family: str) -> ModuleType | None:
    """The compiled module, or None when it is unavailable or disabled."""
    if FORCED_REFERENCE:
        return None
    try:
        return importlib.import_module(f"osgp._native.{family}")
    except ImportError:
        return None


def import_errors() -> dict[str, str]:
    return dict(_IMPORT_ERRORS)


def backends() -> dict[str, str]:
    """{family: "native" | "reference"} for every kernel family, as loaded."""
    return {f: "native" if load(f)[1] else "reference" for f in FAMILIES}
