"""atheris harness: C12.18 packets, packet layer, session services."""

from _common import expect_decode_errors, main

from osgp.link import optical as o
from osgp.link.carrier import OpticalDeviceCarrier
from osgp.services import messages as m
from osgp.session import DeviceSession

IDENT = o.IdentifyResponse()


def _layer(data):
    tx, _ = o.PacketLayer(o.NEGOTIATED).receive(data)
    if set(tx) - {o.ACK, o.NAK}:
        raise AssertionError("packet layer emitted something other than ACK/NAK")


def _device(data):
    """A peer's bytes never raise out of the device side: raw, and as the APDU
    of a well-framed packet in each service state."""
    for opened in (False, True):
        d = DeviceSession(OpticalDeviceCarrier())
        if opened:
            for i, apdu in enumerate((b"\x20", o.Logon().encode(), o.Security().encode())):
                d.receive_data(o.encode_packet(o.Packet(apdu, o.CTRL_TOGGLE * (i & 1))))
                d.receive_data(bytes([o.ACK]))
            if d.carrier.psem.access != o.FULL_ACCESS:
                raise AssertionError("harness failed to open a C12.18 session")
        d.receive_data(data)
        d.receive_data(o.encode_packet(o.Packet(data[:0xFFFF], o.CTRL_TOGGLE)))
        d.carrier.psem.serve(data, IDENT)


def test_one_input(data: bytes) -> None:
    _device(data)
    expect_decode_errors(o.decode_packet, data)
    expect_decode_errors(_layer, data)
    expect_decode_errors(o.decode_session_request, data)
    expect_decode_errors(o.IdentifyResponse.decode, data, device_errors=True)
    expect_decode_errors(o.NegotiateResponse.decode, data, device_errors=True)
    expect_decode_errors(lambda d: m.decode_request(d, m.OPTICAL_SERVICES), data)


if __name__ == "__main__":
    main(test_one_input)
