"""Shared pieces of the atheris harnesses: each harness defines
``test_one_input(data: bytes)`` which must only ever raise osgp.DecodeError
subclasses (naming layer and offset) or AuthenticationError; anything else
is a bug and atheris reports it.  Run one harness:

    PYTHONPATH=src python fuzz/fuzz_mep.py -atheris_runs=200000
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from osgp.errors import AuthenticationError, DecodeError, DeviceError  # noqa: E402

KEY = bytes([1]) * 16
OMAK = bytes.fromhex("dfdfdfdfdfdfdfdfdfdfdfdf")


def expect_decode_errors(fn, data, device_errors=False):
    """``device_errors``: the decoder parses a response, whose non-zero code
    is reported as DeviceError (a valid outcome, not a decode failure)."""
    try:
        fn(data)
    except DeviceError:
        if not device_errors:
            raise
    except DecodeError as e:
        if not e.layer or e.offset is None:
            raise AssertionError(f"DecodeError without layer/offset: {e!r}") from e
    except AuthenticationError:
        pass


def main(test_one_input):
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
