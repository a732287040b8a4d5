"""atheris harness: C12.18 packets, packet layer, session services."""

from _common import expect_decode_errors, main

from osgp.link import optical as o
from osgp.services import messages as m


def _layer(data):
    tx, _ = o.PacketLayer(o.NEGOTIATED).receive(data)
    if set(tx) - {o.ACK, o.NAK}:
        raise AssertionError("packet layer emitted something other than ACK/NAK")


def test_one_input(data: bytes) -> None:
    expect_decode_errors(o.decode_packet, data)
    expect_decode_errors(_layer, data)
    expect_decode_errors(o.decode_session_request, data)
    expect_decode_errors(o.IdentifyResponse.decode, data, device_errors=True)
    expect_decode_errors(o.NegotiateResponse.decode, data, device_errors=True)
    expect_decode_errors(lambda d: m.decode_request(d, m.OPTICAL_SERVICES), data)


if __name__ == "__main__":
    main(test_one_input)
