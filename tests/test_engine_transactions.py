"""A listening engine (topology discovery, commissioning) and the sessions on
the same router share the 4-bit transaction numbers of one neighbour
(ISO/IEC 14908-1): neither may wait on a (source, number) pair the other
waits on, or a response reaches the wrong one (a session's security suite
then fails on the engine's answer)."""

from __future__ import annotations

import pytest

from osgp.concentrator.discovery import Engine, Request
from osgp.link import lon
from osgp.link.carrier import PlcCarrier, PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.session import ClientSession, DeviceSession, Router

OWN = lon.SubnetNode(1, 1)
METER = lon.SubnetNode(2, 7)
TABLE_52 = bytes([26, 12, 1, 10, 30, 0, 1])


class OneRequest(Engine):
    """Sends one request to ``dest`` and keeps what comes back."""

    listens = (0x7E,)

    def __init__(self, dest: lon.Address) -> None:
        super().__init__(OWN)
        self.dest = dest
        self.answer: object = "nothing yet"

    def _run(self):
        self.answer = yield Request(self.dest, (), b"\x7e\x01")


def meter():
    key = bytes(range(12))
    client = ClientSession(PlcCarrier(METER), LegacySuite(key, PLC_ENVELOPE))
    device = DeviceSession(
        PlcDeviceCarrier([METER]), LegacySuite(key, PLC_ENVELOPE), tables={52: bytearray(TABLE_52)}
    )
    return client, device


def trans_of(frame: bytes) -> int:
    return lon.decode_lpdu(frame).npdu.pdu.trans


def answer_from_meter(trans: int, apdu: bytes) -> bytes:
    n = lon.Npdu(METER.subnet, METER.node, OWN, lon.Spdu(lon.SPDU_RESPONSE, trans, apdu))
    return lon.encode_lpdu(lon.Lpdu(n))


@pytest.mark.parametrize("engine_first", [False, True])
def test_engine_and_session_to_one_meter_wait_on_distinct_numbers(engine_first):
    router = Router(OWN)
    client, device = meter()
    router.attach(client)
    engine = OneRequest(METER)
    router.listen(engine, engine.listens)
    op = client.read(52)
    if engine_first:
        fe, fs = engine.poll_transmit(0.0), client.poll_transmit(0.0)
    else:
        fs, fe = client.poll_transmit(0.0), engine.poll_transmit(0.0)
    assert trans_of(fe) != trans_of(fs)

    to_engine = answer_from_meter(trans_of(fe), b"\x00\x42")
    assert router.route(to_engine) is engine
    engine.receive_data(to_engine, 0.1)
    assert engine.answer == b"\x00\x42" and engine.done

    device.receive_data(fs)
    to_client = device.poll_transmit()
    assert router.route(to_client) is client
    client.receive_data(to_client, 0.2)
    assert op.result == TABLE_52


def test_numbers_an_engine_held_are_released_when_it_stops_listening():
    router = Router(OWN)
    engine = OneRequest(METER)
    router.listen(engine, engine.listens)
    fe = engine.poll_transmit(0.0)
    router.unlisten(engine)
    # nothing routes to the engine any more: its answer is a stale number
    assert router.route(answer_from_meter(trans_of(fe), b"\x00")) is None
