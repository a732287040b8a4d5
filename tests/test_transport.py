"""Blocking transports over real loopback channels (127.0.0.1, pyserial
loop:// and socket://, a PTY), the URL factory, the CN/IP framing, errors
and logging."""

from __future__ import annotations

import logging
import socket
import struct
import sys
import time

import pytest
import serial

from osgp.errors import ConfigurationError, OSGPError, ResponseTimeout, TransportError
from osgp.link import lon
from osgp.transport import (
    CNIP_PORT,
    CnipTransport,
    ConnectError,
    MemoryTransport,
    SerialTransport,
    TcpTransport,
    TransportClosed,
    TransportTimeout,
    memory_listen,
    memory_pair,
    open_transport,
    parse_url,
)
from osgp.transport.core import CnipFraming
from osgp.transport.handlers import protocol_osgpsim

from .test_transport_peers import echo, in_thread, pty_pair, rfc2217_server, tcp_server

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs a PTY")


def cnip_fields(packet):
    """The CN/IP common header read independently of osgp.link.lon, field by
    field as docs/protocol.md §6.2 (Wireshark packet-cnip.c) lays it out: length(2 BE),
    version, packet type, extension size in words, flags, vendor(2),
    session(4), sequence(4), timestamp(4)."""
    return struct.unpack(">HBBBBHIII", packet[:20]), packet[20:]


# -- URLs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url, kind, host, port",
    [
        ("/dev/ttyUSB0", "serial", "", 0),
        ("COM3", "serial", "", 0),
        ("socket://127.0.0.1:7000", "serial", "", 0),
        ("rfc2217://host:2217?ign_set_control", "serial", "", 0),
        ("loop://", "serial", "", 0),
        ("spy:///dev/ttyS0?file=x", "serial", "", 0),
        ("osgpsim://meter-1", "serial", "", 0),
        ("tcp://10.0.0.5:5000", "tcp", "10.0.0.5", 5000),
        ("TCP://[::1]:5000", "tcp", "::1", 5000),
        ("udp://10.0.0.5", "udp", "10.0.0.5", CNIP_PORT),
        ("udp://10.0.0.5:1629", "udp", "10.0.0.5", 1629),
    ],
)
def test_parse_url(url, kind, host, port):
    ep = parse_url(url)
    assert (ep.kind, ep.host, ep.port, ep.url) == (kind, host, port, url)


def test_parse_url_options():
    ep = parse_url("udp://127.0.0.1:1628?local=127.0.0.1:4000&session=7")
    assert ep.local == ("127.0.0.1", 4000) and ep.session == 7
    assert parse_url("mem://dev-a").name == "dev-a"


@pytest.mark.parametrize(
    "url",
    ["", "tcp://host", "tcp://:80", "tcp://h:99999", "tcp://h:1/x", "tcp://h:1?x=1",
     "udp://h?session=-1", "udp://h?bogus=1", "mem://"],
)
def test_bad_urls_raise_configuration_error(url):
    with pytest.raises(ConfigurationError):
        parse_url(url)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1, None, "soon"])
def test_unbounded_timeouts_are_refused(value):
    with pytest.raises(ConfigurationError):
        TcpTransport("127.0.0.1", 1, timeout=value)
    a, _ = memory_pair()
    if value is not None:  # receive(None) means the transport's own timeout
        with pytest.raises(ConfigurationError):
            a.receive(value)


# -- CN/IP framing (sans-IO) ---------------------------------------------------------------
def test_cnip_framing_header_fields_and_sequence():
    f = CnipFraming(session=0x01020304)
    lpdu = bytes.fromhex("0c0a1b2c3d")
    first, second = f.wrap(lpdu), f.wrap(lpdu)
    (length, version, ptype, ext, flags, vendor, session, seq, ts), payload = cnip_fields(first)
    assert (length, version, ptype, ext, flags, vendor) == (25, 1, 0x01, 0, 0, 0)
    assert (session, seq, ts, payload) == (0x01020304, 0, 0, lpdu)
    assert cnip_fields(second)[0][7] == 1
    assert f.unwrap(first) == lpdu and f.last_header.session == 0x01020304


def test_cnip_framing_drops_what_is_not_lontalk_data():
    f = CnipFraming()
    ok = lon.encode_cnip(lon.CnipHeader(), b"\x01")
    assert f.unwrap(ok) == b"\x01"
    # device registration (0x03), version 2, protocol code 1, length mismatch, too short
    bad = [
        lon.encode_cnip(lon.CnipHeader(packet_type=0x03), b"\x01"),
        lon.encode_cnip(lon.CnipHeader(version=2), b"\x01"),
        lon.encode_cnip(lon.CnipHeader(flags=0x01), b"\x01"),
        ok + b"\x00",
        ok[:7],
    ]
    assert [f.unwrap(b) for b in bad] == [None] * 5 and f.dropped == 5
    # a security flag (b5) alone is still LonTalk data
    assert f.unwrap(lon.encode_cnip(lon.CnipHeader(flags=0x20), b"\x02")) == b"\x02"
    # an extension header is skipped, and the header kept is the last packet's
    h = lon.CnipHeader(sequence=9, vendor=7, extension=bytes(range(8)))
    assert f.unwrap(lon.encode_cnip(h, b"\x03")) == b"\x03" and f.last_header == h
    assert f.unwrap(ok) == b"\x01" and f.last_header == lon.CnipHeader()


# -- pyserial --------------------------------------------------------------------------------
def test_loop_url_round_trip():
    with open_transport("loop://", timeout=1) as t:
        assert isinstance(t, SerialTransport) and not t.datagram
        t.send(b"\x00\x05hello")
        got = b""
        while len(got) < 7:
            got += t.receive(1)
        assert got == b"\x00\x05hello"


def test_socket_url_against_local_tcp_server():
    with tcp_server(echo) as port:
        with open_transport(f"socket://127.0.0.1:{port}", timeout=2) as t:
            t.send(b"\x01\x02\x03")
            got = b""
            while len(got) < 3:
                got += t.receive(2)
            assert got == b"\x01\x02\x03"


def test_rfc2217_url_against_a_local_rfc2217_server():
    with rfc2217_server(lambda data: data[::-1]) as port:
        with open_transport(f"rfc2217://127.0.0.1:{port}", timeout=2, baudrate=9600) as t:
            t.send(b"\xff\x00\x01")  # 0xFF is the Telnet IAC byte: escaped on the wire
            got = b""
            while len(got) < 3:
                got += t.receive(2)
            assert got == b"\x01\x00\xff"


@posix_only
def test_pty_device_path():
    with pty_pair() as (path, master):
        with open_transport(path, timeout=2, baudrate=9600) as t:
            assert t.serial.baudrate == 9600
            t.send(bytes(range(256)))
            got = b""
            while len(got) < 256:
                got += master.receive(2)
            assert got == bytes(range(256))
            master.send(b"\xfe\xff")
            assert t.receive(2) == b"\xfe\xff"


@posix_only
def test_spy_url_writes_a_hex_trace(tmp_path):
    trace = tmp_path / "trace.txt"
    with pty_pair() as (path, master):
        with open_transport(f"spy://{path}?file={trace}", timeout=2) as t:
            t.send(b"\xde\xad\xbe\xef")
            assert master.receive(2) == b"\xde\xad\xbe\xef"
            master.send(b"\x0a\x0b")
            assert t.receive(2) == b"\x0a\x0b"
            t.serial.formatter.output.close()  # pyserial never closes its trace file
    lines = trace.read_text().upper().splitlines()
    assert [line.split()[3:7] for line in lines if " TX " in line] == [["DE", "AD", "BE", "EF"]]
    rx = [line.split()[3] for line in lines if " RX " in line]  # pyserial reads per byte here
    assert "".join(rx) == "0A0B"


def test_osgpsim_handler_with_an_in_process_echo_device():
    class Echo:
        def __init__(self):
            self.seen = []

        def handle(self, data):
            self.seen.append(data)
            return data[::-1]

    dev = Echo()
    protocol_osgpsim.register_device("echo-1", dev)
    try:
        with open_transport("osgpsim://echo-1", timeout=1) as t:
            t.send(b"\x01\x02\x03")
            assert t.receive(1) == b"\x03\x02\x01"
            with pytest.raises(TransportTimeout):
                t.receive(0.05)
        assert dev.seen == [b"\x01\x02\x03"]
        # plain pyserial finds the handler too, once registered
        port = serial.serial_for_url("osgpsim://echo-1", timeout=0.5)
        port.write(b"ab")
        assert port.read(2) == b"ba"
        port.close()
    finally:
        protocol_osgpsim.unregister_device("echo-1")
    with pytest.raises(ConnectError, match="osgpsim://echo-1"):
        open_transport("osgpsim://echo-1")


# -- TCP ---------------------------------------------------------------------------------------
def test_tcp_round_trip_and_peer_close():
    def answer_once(t, stop):
        t.send(t.receive(2) + b"!")

    with tcp_server(answer_once) as port:
        with open_transport(f"tcp://127.0.0.1:{port}", timeout=2) as t:
            assert isinstance(t, TcpTransport)
            t.send(b"ping")
            got = b""
            while len(got) < 5:
                got += t.receive(2)
            assert got == b"ping!"
            with pytest.raises(TransportClosed, match="closed by the peer"):
                t.receive(2)


# -- CN/IP over UDP (sync socket) --------------------------------------------------------------
def test_cnip_udp_round_trip_with_headers_checked():
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.settimeout(2)
    port = raw.getsockname()[1]
    with open_transport(f"udp://127.0.0.1:{port}?session=99", timeout=2) as t:
        assert isinstance(t, CnipTransport) and t.datagram
        lpdu = bytes.fromhex("0c0a1b2c3d4e")
        t.send(lpdu)
        t.send(lpdu)
        pkt, addr = raw.recvfrom(2048)
        (length, version, ptype, ext, flags, vendor, session, seq, ts), body = cnip_fields(pkt)
        assert (length, version, ptype, ext, flags, session, seq) == (26, 1, 1, 0, 0, 99, 0)
        assert body == lpdu and cnip_fields(raw.recvfrom(2048)[0])[0][7] == 1
        # an answer with a hand-built header arrives without it
        reply = struct.pack(">HBBBBHIII", 23, 1, 1, 0, 0, 0, 5, 17, 0) + b"\xaa\xbb\xcc"
        raw.sendto(b"\x00\x14\x01\x03" + bytes(16), addr)  # device registration: dropped
        raw.sendto(reply, addr)
        assert t.receive(2) == b"\xaa\xbb\xcc"
        assert t.framing.dropped == 1 and t.framing.last_header.sequence == 17
    raw.close()


def test_cnip_device_end_answers_the_last_sender():
    with CnipTransport(local=("127.0.0.1", 0), timeout=2) as dev:
        with pytest.raises(TransportError, match="no peer"):
            dev.send(b"x")
        host, port = dev.local_address[:2]
        with open_transport(f"udp://{host}:{port}", timeout=2) as cli:
            cli.send(b"\x01\x02")
            assert dev.receive(2) == b"\x01\x02"
            dev.send(b"\x03")
            assert cli.receive(2) == b"\x03"


def test_cnip_peer_not_listening_is_a_silence_not_an_error():
    port = _closed_port()
    with open_transport(f"udp://127.0.0.1:{port}", timeout=2) as t:
        for _ in range(3):  # each send after an ICMP port-unreachable still goes out
            t.send(b"\x01")
            with pytest.raises(TransportTimeout):
                t.receive(0.05)


# -- memory ------------------------------------------------------------------------------------
def test_memory_pair_keeps_message_boundaries():
    a, b = memory_pair()
    a.send(b"one")
    a.send(b"two")
    assert (b.receive(1), b.receive(1)) == (b"one", b"two")
    b.send(b"back")
    assert a.receive(1) == b"back" and a.datagram
    a.close()
    with pytest.raises(TransportClosed, match="closed by the peer"):
        b.receive(1)
    with pytest.raises(TransportClosed):
        b.send(b"late")


def test_memory_listen_and_connect_by_url():
    dev = memory_listen("meter-x")
    try:
        with pytest.raises(ConnectError, match="already listening"):
            memory_listen("meter-x")
        with open_transport("mem://meter-x") as cli, in_thread(echo, dev):
            assert isinstance(cli, MemoryTransport)
            cli.send(b"abc")
            assert cli.receive(2) == b"abc"
        with pytest.raises(ConnectError, match="mem://meter-x: cannot connect"):
            open_transport("mem://meter-x")  # one connection per listen
    finally:
        dev.close()


# -- timeouts, errors, close -------------------------------------------------------------------
def test_receive_timeout_fires_and_names_the_url():
    with open_transport("loop://", timeout=1) as t:
        t0 = time.monotonic()
        with pytest.raises(TransportTimeout, match=r"loop://: receive timed out after 0.1 s") as e:
            t.receive(0.1)
        assert time.monotonic() - t0 >= 0.09
        assert isinstance(e.value, ResponseTimeout) and e.value.url == "loop://"
    a, _ = memory_pair("quiet")
    with pytest.raises(TransportTimeout, match="mem://quiet"):
        a.receive(0.05)


def test_receive_zero_polls():
    with tcp_server(lambda t, stop: stop.wait(2)) as port:
        for url in (f"tcp://127.0.0.1:{port}", "udp://127.0.0.1:9", "loop://", None):
            t = memory_pair()[0] if url is None else open_transport(url, timeout=1)
            with t, pytest.raises(TransportTimeout, match="after 0 s"):
                t.receive(0)


def test_connect_and_write_bounds_must_be_positive():
    with pytest.raises(ConfigurationError, match="> 0"):
        open_transport("loop://", timeout=0)


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:{port}",
        "socket://127.0.0.1:{port}",
        "/dev/osgp-no-such-port",
        "nosuchscheme://x",
        "mem://nobody-here",
        "udp://no-such-host.invalid:1628",
    ],
)
def test_connect_errors_name_the_url(url):
    url = url.format(port=_closed_port())
    with pytest.raises(ConnectError) as e:
        open_transport(url, timeout=2)
    assert e.value.url == url and str(e.value).startswith(url)
    assert isinstance(e.value, TransportError) and isinstance(e.value, OSGPError)


@pytest.mark.parametrize("make", ["loop", "tcp", "udp", "mem"])
def test_close_is_idempotent_and_final(make):
    with tcp_server(lambda t, stop: None) as port:
        url = {
            "loop": "loop://",
            "tcp": f"tcp://127.0.0.1:{port}",
            "udp": "udp://127.0.0.1:9",
            "mem": None,
        }[make]
        t = memory_pair()[0] if url is None else open_transport(url, timeout=2)
        assert t.is_open
        t.close()
        t.close()
        assert not t.is_open
        with pytest.raises(TransportClosed):
            t.send(b"x")
        with pytest.raises(TransportClosed):
            t.receive(0.01)
        with pytest.raises(TransportClosed):
            t.open()


def test_unopened_transport_refuses_io():
    t = TcpTransport("127.0.0.1", 1)
    with pytest.raises(TransportClosed, match="not open"):
        t.send(b"x")
    t.close()  # closing what never opened is fine


def test_hex_dumps_at_debug(caplog):
    a, b = memory_pair("dump")
    with caplog.at_level(logging.DEBUG, logger="osgp.transport"):
        a.send(b"\x00\x02\xab\xcd")
        b.receive(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "osgp.transport"]
    assert "SEND mem://dump 4 0002abcd" in lines and "RECV mem://dump 4 0002abcd" in lines
