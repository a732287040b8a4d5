"""Chooses the native kernels or their pure-Python twins (conventions 4).

``OSGP_NO_EXTENSIONS=1`` forces the twins.  Otherwise the compiled modules
are used; if they cannot be imported (a pure-Python install) the twins are
used and :data:`osgp.native` is False.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

FORCED_REFERENCE = os.environ.get("OSGP_NO_EXTENSIONS", "") not in ("", "0")

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
