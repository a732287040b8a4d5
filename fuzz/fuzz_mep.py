"""atheris harness: MEP frames (request/response decode, deframer, services)."""

from _common import KEY, expect_decode_errors, main

from osgp.link import mep
from osgp.services import messages as m

REQ = bytes.fromhex("00143f0017000000002c77635b9113db85a135a0575e")


def _reader(data):
    r = mep.FrameReader()
    for i in range(0, len(data), 7):
        r.feed(data[i : i + 7])


def test_one_input(data: bytes) -> None:
    expect_decode_errors(lambda d: mep.decode_response(KEY, REQ, d), data)
    expect_decode_errors(lambda d: mep.decode_request(KEY, d), data)
    expect_decode_errors(_reader, data)
    expect_decode_errors(m.decode_request, data)
    expect_decode_errors(lambda d: m.decode_response(d, m.PartialRead(1, 0, 1)), data)


if __name__ == "__main__":
    main(test_one_input)
