"""atheris harness: native frame kernels against their twin (differential)."""

from _common import KEY, main

from osgp import _backend
from osgp.errors import AuthenticationError, DecodeError

REF = _backend.reference("frames")
NAT = _backend.native_module("frames")
MODS = [REF] + ([NAT] if NAT is not None else [])


def _outcome(fn):
    try:
        r = fn()
        return r.tolist() if hasattr(r, "tolist") else r
    except (DecodeError, AuthenticationError) as e:
        return (type(e).__name__, getattr(e, "offset", None))


def test_one_input(data: bytes) -> None:
    flags = data[0] if data else 0
    body = data[1:]
    for make in (
        lambda mod: lambda: mod.mep_request_check(KEY, body),
        lambda mod: lambda: mod.lon_parse(body, bool(flags & 1), bool(flags & 2)),
        lambda mod: lambda: mod.mep_split(body)[1],
    ):
        outs = [_outcome(make(mod)) for mod in MODS]
        if any(o != outs[0] for o in outs):
            raise AssertionError(f"native and twin differ: {outs!r}")


if __name__ == "__main__":
    main(test_one_input)
