"""A ClientSession reads a table from a DeviceSession (MEP carrier, legacy
suite) through every kind of transport, driven by osgp.transport.driver, in
blocking and asyncio form; plus PLC (LonTalk) frames over CN/IP, a lost frame
recovered by the response timer, and a silent device."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import replace

import pytest

from osgp import session as S
from osgp.errors import ResponseTimeout
from osgp.link import carrier as C
from osgp.security.suite import MEP_ENVELOPE, LegacySuite
from osgp.transport import CnipTransport, aio, memory_pair, open_transport
from osgp.transport.driver import (
    SessionDevice,
    async_run_until_complete,
    async_serve,
    run_until_complete,
    serve,
)
from osgp.transport.handlers import protocol_osgpsim

from .conftest import make_pair
from .test_transport_peers import in_thread, pty_pair, rfc2217_server, tcp_server

IMAGE = bytes(i * 7 & 0xFF for i in range(1000))
KINDS = ["mem", "tcp", "socket", "rfc2217", "pty", "udp", "osgpsim"]


def sessions(link="mep", response_ms=None):
    """A client and a device session; ``response_ms``: a faster response timer
    for the client (its bundle with other timers)."""
    c, d = make_pair(link, tables={1000: bytearray(IMAGE), 52: bytearray(b"\x19\x02\x10\x0f")})
    if response_ms is not None:
        timers = replace(c.profile.timers, response_ms=response_ms, request_gap_ms=0)
        c = S.ClientSession(c.carrier, c.suite, profile=replace(c.profile, timers=timers))
    return c, d


@contextlib.contextmanager
def device_url(kind, device):
    """A URL whose far end is ``device`` (a DeviceSession) served in a thread."""
    if kind == "mem":
        name = f"e2e-{id(device)}"
        from osgp.transport import memory_listen

        end = memory_listen(name)
        with in_thread(serve, device, end):
            yield f"mem://{name}"
        end.close()
    elif kind in ("tcp", "socket"):
        with tcp_server(lambda t, stop: serve(device, t, stop)) as port:
            yield f"{kind}://127.0.0.1:{port}"
    elif kind == "rfc2217":
        with rfc2217_server(SessionDevice(device).handle) as port:
            yield f"rfc2217://127.0.0.1:{port}"
    elif kind == "pty":
        if sys.platform == "win32":
            pytest.skip("needs a PTY")
        with pty_pair() as (path, master), in_thread(serve, device, master):
            yield path
    elif kind == "udp":
        with CnipTransport(local=("127.0.0.1", 0), timeout=2) as end:
            with in_thread(serve, device, end):
                yield f"udp://127.0.0.1:{end.local_address[1]}"
    elif kind == "osgpsim":
        name = f"e2e-{id(device)}"
        protocol_osgpsim.register_device(name, SessionDevice(device))
        try:
            yield f"osgpsim://{name}"
        finally:
            protocol_osgpsim.unregister_device(name)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_read_table_through_each_transport(kind):
    c, d = sessions()
    with device_url(kind, d) as url, open_transport(url, timeout=2) as t:
        op = c.read(1000, 10, 900)
        assert run_until_complete(c, t, op, timeout=10) == IMAGE[10:910]
        assert op.exchanges > 1 and op.retries == 0
        op = c.read(52)
        assert run_until_complete(c, t, op, timeout=10) == b"\x19\x02\x10\x0f"


@pytest.mark.parametrize("kind", KINDS)
def test_read_table_through_each_asyncio_transport(kind):
    c, d = sessions()

    async def main(url):
        async with await aio.open_transport(url, timeout=2) as t:
            op = c.read(1000, 10, 900)
            return await async_run_until_complete(c, t, op, timeout=10)

    with device_url(kind, d) as url:
        assert asyncio.run(asyncio.wait_for(main(url), 15)) == IMAGE[10:910]


def test_asyncio_device_on_a_cnip_endpoint():
    """Both ends on the event loop: an asyncio CN/IP device served by async_serve."""
    c, d = sessions()

    async def main():
        dev = await aio.AsyncCnipTransport(local=("127.0.0.1", 0), timeout=2).open()
        task = asyncio.ensure_future(async_serve(d, dev))
        try:
            url = f"udp://127.0.0.1:{dev.local_address[1]}"
            async with await aio.open_transport(url, timeout=2) as t:
                return await async_run_until_complete(c, t, c.read(52), timeout=5)
        finally:
            await dev.close()
            await asyncio.wait_for(task, 2)

    assert asyncio.run(asyncio.wait_for(main(), 10)) == b"\x19\x02\x10\x0f"


def test_asyncio_memory_pair_both_ends():
    c, d = sessions()

    async def main():
        a, b = aio.memory_pair("e2e")
        task = asyncio.ensure_future(async_serve(d, b))
        result = await async_run_until_complete(c, a, c.read(1000, 0, 300), timeout=5)
        await a.close()
        await asyncio.wait_for(task, 2)  # the device loop ends when its peer closes
        return result

    assert asyncio.run(asyncio.wait_for(main(), 10)) == IMAGE[:300]


def test_plc_lontalk_frames_over_cnip():
    c, d = sessions("plc", response_ms=500)
    with device_url("udp", d) as url, open_transport(url, timeout=2) as t:
        op = c.read(1000, 0, 200)
        assert run_until_complete(c, t, op, timeout=10) == IMAGE[:200]


class Lossy:
    """A device end that loses the first request it receives."""

    def __init__(self, transport):
        self.t, self.lost = transport, []
        self.url, self.datagram = transport.url, transport.datagram

    def receive(self, timeout):
        data = self.t.receive(timeout)
        if not self.lost:
            self.lost.append(data)
            return self.t.receive(timeout)
        return data

    def send(self, data):
        self.t.send(data)


def test_lost_request_is_resent_when_the_response_timer_fires():
    c, d = sessions(response_ms=100)
    a, b = memory_pair("lossy")
    lossy = Lossy(b)
    with in_thread(serve, d, lossy):
        op = c.read(52)
        assert run_until_complete(c, a, op, timeout=5) == bytes(
            d.tables[52]
        )
    assert op.retries == 1 and len(lossy.lost) == 1


def test_silent_device_fails_after_the_retries():
    c, _ = sessions(response_ms=50)
    a, b = memory_pair("silent")
    op = c.read(52)
    with pytest.raises(ResponseTimeout, match="no response after 2 retries"):
        run_until_complete(c, a, op, timeout=5)
    sent = list(b.inbox.items)  # what reached the device end, never answered
    assert op.retries == 2 and len(sent) == 3 and len(set(sent)) == 1  # identical resends


def test_whole_run_is_bounded():
    c, _ = sessions(response_ms=1000)
    a, _ = memory_pair("bounded")
    with pytest.raises(ResponseTimeout, match=r"mem://bounded: read 52 timed out after 0.2 s"):
        run_until_complete(c, a, c.read(52), timeout=0.2)


def test_debug_dumps_show_every_frame_and_never_the_key(caplog):
    key = bytes.fromhex("8f3ac1d27e5b9460aa13c4e2f0d9b711")
    c = S.ClientSession(C.MepCarrier(), LegacySuite(key, MEP_ENVELOPE, encrypt=True))
    d = S.DeviceSession(
        C.MepDeviceCarrier(), LegacySuite(key, MEP_ENVELOPE), tables={52: bytearray(b"\x19\x02")}
    )
    a, b = memory_pair("dumps")
    with caplog.at_level(logging.DEBUG), in_thread(serve, d, b):
        assert run_until_complete(c, a, c.read(52), timeout=5) == b"\x19\x02"
    text = [r.getMessage() for r in caplog.records]
    dumps = [m.split() for m in text if m.startswith(("SEND mem://dumps", "RECV mem://dumps"))]
    sends = [hexdata for kind, _, _, hexdata in dumps if kind == "SEND"]
    recvs = [hexdata for kind, _, _, hexdata in dumps if kind == "RECV"]
    assert len(sends) == 2 and sorted(sends) == sorted(recvs)  # request and response, both ends
    assert c._last.hex() in sends
    assert not any(key.hex() in m.lower() for m in text)
