"""A device that answers with arbitrary APDUs, correctly sealed and framed.

Random or bit-flipped frames (tests/test_session_robustness.py) rarely get
past a digest or a CRC, so the client's response parsing would see little of
them.  Here the device session is real but its answers are replaced, after
the security suite and the link would have accepted them, by bytes Hypothesis
chooses: every client operation must still end (a result or an error of the
osgp hierarchy), nothing may raise out of the client, and the same client
must then read a table correctly from an honest device (but for one case an
AES client must refuse to heal, below)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osgp import session as S
from osgp.errors import OSGPError, SequenceError
from osgp.link import carrier as C
from osgp.link import lon
from osgp.link import optical as o
from osgp.security.aes_suite import PLC_AES_ENVELOPE, AesPskSuite

from .conftest import make_pair

T52 = b"\x19\x02\x10\x0f\x3b\x37\x01"
T23 = bytes(range(100))
PK = bytes(range(0x40, 0x50))
NID = bytes.fromhex("04a1b2c3d4e5")
LINKS = ["mep", "optical", "plc", "plc-aes"]


def _tables():
    return {52: bytearray(T52), 23: bytearray(T23), 7: bytearray(16), 8: bytearray(16)}


def _pair(link):
    if link != "plc-aes":
        return make_pair(link, tables=_tables())
    me = lon.SubnetNode(3, 17)
    client = S.ClientSession(
        C.PlcCarrier(me), AesPskSuite(PK, NID, role="concentrator", envelope=PLC_AES_ENVELOPE)
    )
    device = S.DeviceSession(
        C.PlcDeviceCarrier([me]),
        AesPskSuite(PK, NID, role="device", envelope=PLC_AES_ENVELOPE),
        tables=_tables(),
    )
    return client, device


class _Forger:
    """Replaces the device's n-th answer APDU by ``forged[n]`` (None: honest)."""

    def __init__(self, device, forged):
        self.forged = list(forged)
        self.sent = 0
        honest = device._reply

        def reply(ctx, req, resp_apdu):
            n = self.sent
            self.sent += 1
            if n < len(self.forged) and self.forged[n] is not None:
                resp_apdu = self.forged[n]
            return honest(ctx, req, resp_apdu)

        device._reply = reply


def _run(client, device, op, now):
    """Drive both sides until ``op`` ends; returns the clock."""
    for _ in range(400):
        if op.done:
            return now
        frame = client.poll_transmit(now)
        if frame is not None:
            device.receive_data(frame, now)
            while (answer := device.poll_transmit(now)) is not None:
                client.receive_data(answer, now)
            continue
        deadline = client.next_deadline()
        assert deadline is not None, "an unfinished operation must have a timer"
        now = max(now, deadline)
        client.handle_timeout(now)
    raise AssertionError(f"{op.name} did not end")


OPS = {
    "full read": lambda c: c.read(52),
    "partial read, several chunks": lambda c: c.read(23, 3, 90),
    "write": lambda c: c.write(7, b"\x01\x02\x03"),
    "partial write": lambda c: c.write(8, b"\xaa\xbb", 4),
    "procedure": lambda c: c.call(3, b"\x00"),
}

_apdu = st.one_of(
    st.binary(max_size=80),
    # a response code then a count, a payload and a checksum that may or may not agree
    st.builds(
        lambda code, n, body, ck: bytes([code]) + n.to_bytes(2, "big") + body + bytes([ck]),
        st.sampled_from([0x00, 0x01, 0x02, 0x04, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F]),
        st.integers(0, 0xFFFF),
        st.binary(max_size=100),
        st.integers(0, 255),
    ),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    link=st.sampled_from(LINKS),
    op_name=st.sampled_from(sorted(OPS)),
    forged=st.lists(st.one_of(st.none(), _apdu), min_size=1, max_size=5),
)
def test_forged_answers_end_the_operation_and_leave_the_client_usable(link, op_name, forged):
    client, device = _pair(link)
    _Forger(device, forged)
    op = OPS[op_name](client)
    now = _run(client, device, op, 0.0)
    assert op.error is None or isinstance(op.error, OSGPError), repr(op.error)
    if op.error is None and op_name == "full read":
        assert isinstance(op.result, bytes)
    # the forgeries are used up: the same client reads from the honest device
    device._reply = type(device)._reply.__get__(device)
    now += 1.0
    if link == "optical":  # the forged exchanges may have outlasted the C12.18 session
        for request in (o.Identify(), o.Negotiate(), o.Logon(2, "osgp"), o.Security(b"secret")):
            now = _run(client, device, client.exchange(request), now)
    check = client.read(52)
    _run(client, device, check, now)
    if link == "plc-aes" and any(f and f[0] == 0x0C for f in forged):
        # an authentic 0x0C may move the client's number past the device's
        # window; the client never goes back (a number again would be a nonce
        # again under the same key), so only a new key heals it
        assert check.error is None or isinstance(check.error, SequenceError), repr(check.error)
        return
    assert check.error is None, repr(check.error)
    assert check.result == T52
