"""atheris harness: the capture walker and CN/IP extraction, native against twin (differential)."""

from _common import main

from osgp import _backend
from osgp.errors import DecodeError

REF = _backend.reference("capture")
NAT = _backend.native_module("capture")
MODS = [REF] + ([NAT] if NAT is not None else [])
# a pcapng section and interface header (draft-ietf-opsawg-pcapng 4.1-4.2) put in
# front of inputs whose first byte is odd, so mutations reach the packet blocks
HEAD = bytes.fromhex(
    "0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000"
    "0100000014000000010000000000000014000000"
)


def _outcome(mod, data: bytes, strict: bool):
    try:
        ts, off, ln, fi, info = mod.walk(data, strict)
        ex = mod.cnip_extract(data, off, ln, fi, info["linktypes"])
    except DecodeError as e:
        return (type(e).__name__, e.layer, e.offset, str(e))
    return [a.tolist() for a in (ts, off, ln, fi, *ex)], info


def test_one_input(data: bytes) -> None:
    flags = data[0] if data else 0
    body = (HEAD if flags & 1 else b"") + data[1:]
    outs = [_outcome(mod, body, bool(flags & 2)) for mod in MODS]
    if any(o != outs[0] for o in outs):
        raise AssertionError(f"native and twin differ: {outs!r}")


if __name__ == "__main__":
    main(test_one_input)
