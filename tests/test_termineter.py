"""Our optical device side against an independent C12.18 client: termineter's
``c1218`` package (PyPI ``termineter``), over a real byte stream.

termineter opens a pyserial port with ``serial_for_url``; here that is the
slave side of a pseudo-terminal pair (``os.openpty``), whose master side a
thread feeds to a :class:`DeviceSession` (``receive_data``), writing back
every frame it has to send (``poll_transmit``).  No network is involved.
Every byte each way is logged, so
the packets can be checked independently of both implementations.
"""

from __future__ import annotations

import os
import select
import sys
import threading

import pytest

from osgp import session as S
from osgp.link import optical as o
from osgp.link.carrier import OpticalDeviceCarrier

if sys.platform == "win32":
    pytest.skip("needs a POSIX pseudo-terminal", allow_module_level=True)
c1218 = pytest.importorskip(
    "c1218.connection", reason="termineter is not installed (pip install '.[test]')"
)
from c1218.data import C1218SecurityRequest, C1218TerminateRequest, C1218WaitRequest  # noqa: E402
from c1218.errors import C1218ReadTableError  # noqa: E402
from c1219.access.general import C1219GeneralAccess  # noqa: E402

PASSWORD = "osgp-optical-key-01"  # 19 ASCII bytes, zero padded to 20 on the wire
TIMEOUT = 5.0  # seconds; every blocking read on either side is bounded by it


def bt00() -> bytearray:
    """BT00 General Configuration laid out by hand (ANSI C12.19 / Optical guide
    p.48-49): 19 fixed bytes, then the used/write bitmaps."""
    fixed = bytes(
        [
            0x02,  # FORMAT_CONTROL_1: little-endian data, CHAR_FORMAT 1 (ISO 646)
            0x02,  # FORMAT_CONTROL_2: TM_FORMAT 2, ID_FORM 0 (16-char serial)
            0x00,  # FORMAT_CONTROL_3
            *b"NES\x00",  # DEVICE_CLASS
            2,  # NAMEPLATE_TYPE: electric
            0,  # DEFAULT_SET_USED
            32,  # MAX_PROC_PARM_LENGTH
            64,  # MAX_RESP_DATA_LEN
            1,  # STD_VERSION_NO
            0,  # STD_REVISION_NO
            2,  # DIM_STD_TBLS_USED
            1,  # DIM_MFG_TBLS_USED
            1,  # DIM_STD_PROC_USED
            1,  # DIM_MFG_PROC_USED
            0,  # DIM_MFG_STATUS_USED
            0,  # NBR_PENDING
        ]
    )
    # STD_TBLS_USED (2): BT00, BT01, BT05, BT08; MFG_TBLS_USED; STD/MFG_PROC_USED;
    # STD_TBLS_WRITE (2); MFG_TBLS_WRITE.  (bit 7 avoided: termineter reads bits 0-6)
    return bytearray(fixed + bytes([0x23, 0x01, 0x00, 0x08, 0x00, 0x20, 0x00, 0x00]))


def bt01() -> bytearray:
    # MANUFACTURER(4) ED_MODEL(8) HW ver/rev FW ver/rev MFG_SERIAL_NUMBER(16)
    return bytearray(b"NES " + b"83331-3I" + bytes([4, 1, 5, 2]) + b"SN-0000000000042")


def device_tables():
    return {
        0: bt00(),
        1: bt01(),
        5: bytearray(b"METER-0001".ljust(20, b" ")),  # BT05 device id, 20 chars
        64: bytearray((i * 13 + 5) & 0xFF for i in range(900)),  # many packets
    }


class PtyDevice:
    """A pseudo-terminal pair: termineter opens the slave as its serial port,
    a thread serves the master side to one DeviceSession."""

    def __init__(self, session: S.DeviceSession) -> None:
        self.session = session
        self.log = []  # ("c" client->device | "d" device->client, bytes)
        self.errors = []
        self._stop = threading.Event()
        self._master, self._slave = os.openpty()
        self.url = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:  # the port side was closed
                break
            self.log.append(("c", data))
            try:
                self.session.receive_data(data)
                out = self.session.poll_transmit()
                while out is not None:
                    self.log.append(("d", out))
                    os.write(self._master, out)
                    out = self.session.poll_transmit()
            except Exception as exc:  # anything raised fails the test below
                self.errors.append(exc)
                break

    def close(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        os.close(self._slave)
        os.close(self._master)


def packets(stream: bytes):
    """Split one direction of the stream into (ctrl, seq, data, length) packets
    and bare ACK/NAK bytes; packet bounds come from the header alone."""
    out, i = [], 0
    while i < len(stream):
        if stream[i] != 0xEE:
            out.append(stream[i : i + 1])
            i += 1
            continue
        n = int.from_bytes(stream[i + 4 : i + 6], "big")
        out.append((stream[i + 2], stream[i + 3], stream[i + 6 : i + 6 + n], n + 8))
        i += n + 8
    return out


def messages(pkts):
    """Reassemble packets into APDUs (seq-nbr 0 ends a message)."""
    out, parts = [], []
    for _, seq, data, _ in pkts:
        parts.append(data)
        if seq == 0:
            out.append(b"".join(parts))
            parts = []
    return out


def test_termineter_sessions():
    proc_calls = []

    def proc3(params):
        proc_calls.append(params)
        return (0, b"\x11\x22")

    tables = device_tables()
    state = o.PsemDeviceState(max_packet_size=512, max_packets=8, passwords=[PASSWORD.encode()])
    dev = S.DeviceSession(
        OpticalDeviceCarrier(psem=state), tables=tables, procedures={3: proc3}
    )
    server = PtyDevice(dev)
    conn = None
    try:
        conn = c1218.Connection(
            server.url, c1218_settings={"pktsize": 64, "nbrpkts": 1}, enable_cache=False
        )
        conn.serial_h.timeout = TIMEOUT

        # -- session 1: 64 x 1; wrong password, then the right one by hand
        assert conn.start()
        assert state.grant == (64, 1)
        assert conn.login(username="termineter", userid=7, password="wrong") is False
        with pytest.raises(C1218ReadTableError) as ei:
            conn.get_table_data(1)
        assert ei.value.code == 0x03  # isc: logged on, no clearance
        conn.send(C1218SecurityRequest(PASSWORD))
        assert conn.recv() == b"\x00"
        assert conn.get_table_data(1) == bytes(tables[1])  # 36-byte response, 1 packet
        assert conn.get_table_data(0) == bytes(tables[0])
        with pytest.raises(C1218ReadTableError) as ei:
            conn.get_table_data(64)  # 904 bytes cannot go in 1 x 56
        assert ei.value.code == 0x04  # onp
        assert conn.get_table_data(64, octetcount=52, offset=100) == bytes(tables[64][100:152])
        assert conn.stop()  # terminate; termineter restarts its toggle at 0

        # -- session 2: 512 x 2; termineter's C12.19 parser on BT00/BT01/BT05
        conn.c1218_pktsize, conn.c1218_nbrpkts = 512, 2
        assert conn.start()
        assert state.grant == (512, 2)
        assert conn.login(username="termineter", userid=7, password=PASSWORD)
        info = C1219GeneralAccess(conn)
        assert (info.manufacturer, info.ed_model) == ("NES", "83331-3I")
        assert info.mfg_serial_no == "SN-0000000000042"
        assert (info.hw_version_no, info.fw_version_no, info.fw_revision_no) == (4, 5, 2)
        assert info.nameplate_type == "Electric" and info.std_version_no == 1
        assert info.std_tbls_used == [0, 1, 5, 8]
        assert info.device_id == "METER-0001"
        assert conn.get_table_data(64) == bytes(tables[64])  # 904 bytes: 2 packets
        conn.set_table_data(5, b"METER-0002".ljust(20, b" "))
        assert bytes(tables[5]) == b"METER-0002".ljust(20, b" ")
        assert conn.get_table_data(5, octetcount=10, offset=0) == b"METER-0002"
        assert conn.run_procedure(3, False, b"\x05") == (0, b"\x11\x22")
        assert proc_calls == [b"\x05"]
        conn.send(C1218WaitRequest(3))
        assert conn.recv() == b"\x00" and state.wait_seconds == 3
        assert conn.logoff()
        with pytest.raises(C1218ReadTableError) as ei:
            conn.get_table_data(1)  # ID state after logoff
        assert ei.value.code == 0x0A  # isss
        conn.send(C1218TerminateRequest())
        assert conn.recv() == b"\x00"

        # -- session 3: 64 x 8, a 404-byte response in 8 packets
        conn.c1218_pktsize, conn.c1218_nbrpkts = 64, 8
        assert conn.start()
        assert state.grant == (64, 8)
        assert conn.login(username="termineter", userid=7, password=PASSWORD)
        assert conn.get_table_data(64, octetcount=400, offset=0) == bytes(tables[64][:400])
        with pytest.raises(C1218ReadTableError) as ei:
            conn.get_table_data(64)
        assert ei.value.code == 0x04
        assert conn.stop()

        # -- session 4: asks 1024 x 16, gets what the device supports (512 x 8)
        conn.c1218_pktsize, conn.c1218_nbrpkts = 1024, 16
        assert conn.start()
        assert state.grant == (512, 8)
        assert conn.login(username="termineter", userid=7, password=PASSWORD)
        assert conn.get_table_data(64) == bytes(tables[64])
        assert conn.stop()
    finally:
        if conn is not None:
            conn.close()
        server.close()
    assert server.errors == []

    # -- the wire, checked independently of both implementations
    to_dev = packets(b"".join(d for side, d in server.log if side == "c"))
    to_cli = packets(b"".join(d for side, d in server.log if side == "d"))
    reqs = [p for p in to_dev if isinstance(p, tuple)]
    resps = [p for p in to_cli if isinstance(p, tuple)]
    assert b"\x15" not in to_dev + to_cli  # nothing was ever NAKed
    asked, answers = messages(reqs), messages(resps)
    assert len(asked) == len(answers)  # one response per request
    codes = [a[0] for a in asked]
    assert codes.count(0x20) == 4 and codes.count(0x21) == 4
    # at least one new session began with the toggle of the terminate before it:
    # the case that used to be ACKed and dropped as a duplicate
    starts = [i for i, c in enumerate(codes) if c == 0x20 and i > 0]
    assert all(codes[i - 1] == 0x21 for i in starts)
    assert any(reqs[i][0] & 0x20 == reqs[i - 1][0] & 0x20 for i in starts)
    # negotiate 61 <size:2> <n> <baud> -> 00 <size:2> <n> <baud>: the grants
    grants = [(q[1:4], r) for q, r in zip(asked, answers) if q[0] == 0x61]
    assert [(q.hex(), r.hex()) for q, r in grants] == [
        ("004001", "0000400106"),
        ("020002", "0002000206"),
        ("004008", "0000400806"),
        ("040010", "0002000806"),
    ]
    assert max(p[3] for p in resps) <= 512
    # the 404-byte response under 64 x 8: 7 full packets (56 data bytes each) + 12
    shape = [(p[1], p[3]) for p in resps]
    eight = [(k, 64) for k in range(7, 0, -1)] + [(0, 12 + 8)]
    assert any(shape[i : i + 8] == eight for i in range(len(shape)))


# -- termineter against the simulated meter's optical port -------------------------------
class FakeClock:
    """The served meters' clock: stands still until the test moves it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


LINK_STATE = {2048 + 4, 2048 + 54}  # ET04 / ET54 show the port's own counters (they move)


def _termineter(url):
    conn = c1218.Connection(url, c1218_settings={"pktsize": 512, "nbrpkts": 8}, enable_cache=False)
    conn.serial_h.timeout = TIMEOUT
    assert conn.start()
    assert conn.login(username="termineter", userid=1, password="")  # blank on the sim
    return conn


def _read_whole(conn, table, size, chunk=100):
    """A full read, or partial reads of ``chunk`` bytes for a table larger than
    one response can carry: the simulator grants at most 64-byte packets x 2
    (112 APDU bytes) whatever termineter asks for."""
    if size <= chunk:
        return conn.get_table_data(table)
    return b"".join(
        conn.get_table_data(table, octetcount=min(chunk, size - off), offset=off)
        for off in range(0, size, chunk)
    )


def test_termineter_reads_every_table_of_a_simulated_meter_over_a_pty():
    from osgp import tables as T
    from osgp.sim.serve import MeterServer

    clock = FakeClock()
    with MeterServer(1, kind="pty", link="optical", seed=7, clock=clock) as server:
        served = server.served[0]
        meter = served.meter
        clock.t = 3 * 3600.0  # three hours of virtual time: registers and load profile run
        conn = _termineter(served.url)
        try:
            info = C1219GeneralAccess(conn)
            bt01 = T.decode(1, meter.image(1))
            assert info.mfg_serial_no == bt01["MFG_SERIAL_NUMBER"].strip() == meter.serial
            assert info.manufacturer == bt01["MANUFACTURER"].strip()
            # the tables BT00 lists, as termineter parses it and as osgp does;
            # termineter reads bits 0-6 of each bitmap byte, so it never lists
            # the tables whose number is 7 mod 8 (BT07, BT23, BT55, ...)
            bt00 = T.decode(0, meter.image(0))
            ours = [i for i, used in enumerate(bt00["STD_TBLS_USED"]) if used]
            assert info.std_tbls_used == [t for t in ours if t % 8 != 7]
            ours_mfg = [i for i, used in enumerate(bt00["MFG_TBLS_USED"]) if used]
            assert info.mfg_tbls_used == [t for t in ours_mfg if t % 8 != 7]
            std = [t for t in ours if t not in (7, 8)]  # the procedure tables
            mfg = [2048 + t for t in ours_mfg]
            assert 23 in std and 64 in std and len(mfg) > 3
            seen = {}
            for t in std + mfg:
                if t in LINK_STATE or t not in meter.tables:
                    continue
                seen[t] = _read_whole(conn, t, len(meter.image(t)))
                assert seen[t] == meter.image(t), f"table {t}"
            assert len(seen) >= 20
            dims = {0: seen[0], 21: seen[21]}  # what BT23's layout depends on, as read
            # a partial read of the load-profile data (BT64) in two packets
            part = conn.get_table_data(64, octetcount=100, offset=1000)
            assert part == meter.image(64)[1000:1100]
            # live data: an hour later the registers have moved, and the meter agrees
            before = T.decode(23, conn.get_table_data(23), dims)
            assert conn.stop()
            clock.t += 3600.0  # (a session left open this long would have timed out)
            assert conn.start()
            assert conn.login(username="termineter", userid=1, password="")
            after_image = conn.get_table_data(23)
            assert after_image == meter.image(23)
            after = T.decode(23, after_image, dims)
            tot = "TOT_DATA_BLOCK"
            assert after[tot]["SUMMATIONS"][0] > before[tot]["SUMMATIONS"][0]
            assert conn.stop()
        finally:
            conn.close()


def test_termineter_opens_an_osgpsim_url():
    # pyserial's serial_for_url inside termineter opens osgpsim://meter?...:
    # a new simulated meter in this process, built from the URL's parameters
    from osgp import tables as T
    from osgp.sim.serve import url_meter
    from osgp.transport.handlers import register

    register()
    twin = url_meter({"link": "optical", "seed": "7"}).meter  # the same meter, not served
    conn = _termineter("osgpsim://meter?link=optical&seed=7")
    try:
        for t in (0, 1, 5, 21, 22, 61, 2048 + 3):  # configuration: the same on every copy
            assert conn.get_table_data(t) == twin.image(t), f"table {t}"
        bt52 = T.decode(52, conn.get_table_data(52))["CLOCK_CALENDAR"]
        assert bt52.year == 2026  # the meter clock starts at 2026-01-01 (url_meter)
        assert conn.stop()
    finally:
        conn.close()
