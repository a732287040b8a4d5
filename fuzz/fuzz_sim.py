"""Fuzz the simulator's receive path: random and mutated frames to SimMeter
ports on all three links (MEP, optical C12.18, PLC/LonTalk).  Nothing may
raise out of a port's ``receive_data`` or ``poll_transmit``, and the meter
must still answer a fresh client afterwards.

Two drivers over the same target:

    PYTHONPATH=src python fuzz/fuzz_sim.py -atheris_runs=20000     # atheris
    PYTHONPATH=src python fuzz/fuzz_sim.py --loop 1000000 --seed 1  # mutation loop

The mutation loop needs no atheris: it keeps one meter per link for many
inputs (state builds up: pending tables, procedures, clock changes), mutates
valid request frames and also mutated APDUs sealed and framed correctly (so
the digest, the sequence number and the packet CRC hold and the services and
procedures themselves see the damage), and checks that the meter still
answers after every ``--check`` inputs.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

from _common import KEY, OMAK

from osgp.errors import ConfigurationError
from osgp.link import lon, mep
from osgp.link import optical as o
from osgp.link.carrier import (
    MepCarrier,
    MepDeviceCarrier,
    OpticalCarrier,
    OpticalDeviceCarrier,
    PlcCarrier,
    PlcDeviceCarrier,
)
from osgp.security.suite import MEP_ENVELOPE, PLC_ENVELOPE, LegacySuite
from osgp.services import messages as m
from osgp.services import procedures as P
from osgp.session import ClientSession
from osgp.sim import SimMeter
from osgp.sim import layouts as L

LINKS = ("mep", "optical", "plc")
ME = lon.SubnetNode(3, 17)
START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


def make_meter(link: str, seed: int = 7) -> SimMeter:
    if link == "mep":
        port: Any = (MepDeviceCarrier(), LegacySuite(KEY, MEP_ENVELOPE))
    elif link == "optical":
        port = (OpticalDeviceCarrier(), None)
    else:
        port = (PlcDeviceCarrier([ME]), LegacySuite(OMAK, PLC_ENVELOPE))
    return SimMeter("FUZZ000001", seed=seed, start=START, links=[port])


def make_client(link: str) -> ClientSession:
    if link == "mep":
        return ClientSession(MepCarrier(), LegacySuite(KEY, MEP_ENVELOPE))
    if link == "optical":
        return ClientSession(OpticalCarrier())
    return ClientSession(PlcCarrier(ME), LegacySuite(OMAK, PLC_ENVELOPE))


def feed(meter: SimMeter, data: bytes, now: float) -> List[bytes]:
    """Hand ``data`` to the meter's port and drain what it sends."""
    port = meter.ports[0]
    port.receive_data(data, now)
    out = []
    frame = port.poll_transmit(now)
    while frame is not None and len(out) < 1000:
        out.append(frame)
        frame = port.poll_transmit(now)
    return out


def answers(meter: SimMeter, link: str, now: float) -> bool:
    """A fresh client opens what the link needs and reads BT01 and BT52."""
    c = make_client(link)
    ops = []
    if link == "optical":
        opening = (o.Identify(), o.Negotiate(), o.Logon(2, "fuzz"), o.Security())
        ops += [c.exchange(x) for x in opening]
    bt01 = c.read(1)
    ops += [bt01, c.read(52)]
    if link == "optical":
        ops += [c.exchange(o.Logoff()), c.exchange(o.Terminate())]
    for _ in range(2000):
        frame = c.poll_transmit(now)
        if frame is not None:
            for reply in feed(meter, frame, now):
                c.receive_data(reply, now)
            continue
        deadline = c.next_deadline()
        if deadline is None:
            break
        now = max(now, deadline)
        meter.advance(now)
        c.handle_timeout(now)
    global last_failure
    last_failure = [(op, op.error) for op in ops if not op.done or op.error is not None]
    if not last_failure and bt01.result != meter.image(1):
        last_failure = [(bt01, "BT01 differs from the meter's image")]
    return not last_failure


last_failure: List[Any] = []  # what the last failed liveness check saw


# -- valid requests, the material the mutations start from --------------------------------
def request_apdus(link: str) -> List[bytes]:
    """Table reads and writes and procedure calls, each well formed."""
    ps = m.OPTICAL_SERVICES if link == "optical" else m.PLC_SERVICES  # C12.18 checksum or not
    out = [m.FullRead(t).encode(ps) for t in (0, 1, 3, 5, 8, 21, 23, 25, 28, 52, 55, 61, 63, 74)]
    out += [m.FullRead(2048 + t).encode(ps) for t in (3, 4, 11, 21, 23, 54)]
    out += [m.PartialRead(64, off, 40).encode(ps) for off in (0, 100, 4000)]
    out.append(m.FullWrite(5, b"FUZZ-METER".ljust(20)).encode(ps))
    out.append(m.PartialWrite(2048 + 3, 0, b"X" * 8).encode(ps))
    for pid, sizes in L.PARAMETER_SIZES.items():
        size = min(sizes)
        mfg = bool(pid & L.EP)
        call = P.ProcedureCall(pid & 0x7FF, 1, bytes(size), mfg, P.SELECT_ON_COMPLETION)
        out.append(m.FullWrite(P.BT07, call.encode()).encode(ps))
    ped = m.PED(1, bytes([0, 0, 0, 1, 0]))
    out.append(m.pending_write(5, 0, b"PENDING-ID".ljust(20), ped).encode(ps))
    return out


OPEN_OPTICAL = [x.encode() for x in (o.Identify(), o.Negotiate(), o.Logon(2, "fuzz"), o.Security())]


class Sealer:
    """Frames an APDU the way a client of ``link`` would, with a valid digest,
    a fresh sequence number, a valid CRC and the right toggle bit."""

    def __init__(self, link: str, meter: SimMeter) -> None:
        self.link = link
        self.window = meter.ports[0].session.window  # the meter's sequence numbers
        self.optical = OpticalCarrier()
        self.plc = PlcCarrier(ME)
        self.suite = LegacySuite(OMAK, PLC_ENVELOPE)

    def __call__(self, apdu: bytes) -> bytes:
        try:
            return self._seal(apdu)
        except ConfigurationError:  # too long for the link: send the bytes bare
            return apdu

    def _seal(self, apdu: bytes) -> bytes:
        seq = self.window.current + 1  # the next number the meter accepts
        if self.link == "mep":
            return mep.encode_request(KEY, apdu, seq)
        if self.link == "optical":
            return self.optical.frame(apdu)
        wire, _ = self.suite.seal_request(apdu, seq)
        return self.plc.frame(wire)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four mutations: bit flips, byte sets, inserts, deletes,
    truncation, duplication of a slice, interesting values."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        k = rng.randrange(8)
        if k == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif k == 1 and b:
            interesting = (0, 1, 0x7F, 0x80, 0xFE, 0xFF, rng.randrange(256))
            b[rng.randrange(len(b))] = rng.choice(interesting)
        elif k == 2:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif k == 3 and b:
            i = rng.randrange(len(b))
            del b[i : i + rng.randint(1, 8)]
        elif k == 4:
            del b[rng.randrange(len(b) + 1) :]
        elif k == 5 and b:
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 16)]
        elif k == 6 and len(b) >= 2:
            i = rng.randrange(len(b) - 1)
            b[i : i + 2] = rng.choice((b"\x00\x00", b"\xff\xff", b"\x01\xd6", b"\x80\x00"))
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    return bytes(b)


# -- atheris target ----------------------------------------------------------------------------
_METERS: dict = {}


def test_one_input(data: bytes) -> None:
    """Byte 0 picks the link; then chunks of <length:1><bytes> go to the port
    in turn; every 64th input on a link checks that the meter still answers."""
    if not data:
        return
    link = LINKS[data[0] % 3]
    meter, count, now = _METERS.get(link) or (make_meter(link), 0, 0.0)
    i = 1
    while i < len(data):
        n = data[i]
        chunk = data[i + 1 : i + 1 + n]
        i += 1 + n
        now += 0.25
        feed(meter, chunk, now)
    count += 1
    if count % 64 == 0:
        now += 120.0  # past every session and inter-frame timer
        meter.advance(now)
        if not answers(meter, link, now):
            raise AssertionError(f"the {link} meter stopped answering")
        now += 120.0
    _METERS[link] = (meter, count, now)


# -- mutation loop -----------------------------------------------------------------------------
def run_loop(
    execs: int,
    seed: int = 1,
    check: int = 500,
    renew: int = 20_000,
    report: Optional[Callable[[str], None]] = None,
    trace: Optional[List[Tuple[str, int, bytes, float]]] = None,
) -> Tuple[int, int]:
    """``execs`` inputs spread over the three links; returns (inputs, checks
    passed).  Raises on the first input that raises or leaves a meter mute."""
    rng = random.Random(seed)
    apdus = {link: request_apdus(link) for link in LINKS}
    state: dict = {}
    checks = 0
    t0 = time.monotonic()
    for n in range(1, execs + 1):
        link = LINKS[n % 3]
        if link not in state or state[link][2] >= renew:
            meter_seed = rng.randrange(1 << 30)
            meter = make_meter(link, seed=meter_seed)
            if trace is not None:
                trace.append((link, meter_seed, b"", 0.0))
            state[link] = [meter, Sealer(link, meter), 0, 0.0, []]
        meter, seal, used, now, raw = state[link]
        corpus = apdus[link]
        frames: List[bytes] = []
        mode = rng.random()
        if link == "optical" and rng.random() < 0.3:
            frames += [seal(a) for a in OPEN_OPTICAL]
        if mode < 0.45:  # a mutated APDU, sealed and framed correctly
            frames.append(seal(mutate(rng, rng.choice(corpus))))
        elif mode < 0.55:  # a valid request
            frames.append(seal(rng.choice(corpus)))
        elif mode < 0.9:  # a mutated frame (raw bytes as a client sent them)
            base = rng.choice(raw) if raw else seal(rng.choice(corpus))
            frames.append(mutate(rng, base))
        else:  # random bytes
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randrange(300))))
        for f in frames:
            now += rng.choice((0.0, 0.01, 0.3, 2.0, 30.0))
            if len(raw) < 64:
                raw.append(f)
            else:
                raw[rng.randrange(64)] = f
            if trace is not None:
                trace.append((link, -1, f, now))
            try:
                feed(meter, f, now)
            except Exception as exc:
                raise AssertionError(f"{link}: input {f.hex()} raised {exc!r}") from exc
        state[link][2:4] = [used + 1, now]
        if n % check == 0:
            for lk, st in state.items():
                st[3] += 120.0
                st[0].advance(st[3])
                if not answers(st[0], lk, st[3]):
                    raise AssertionError(
                        f"the {lk} meter stopped answering after input {n}: {last_failure}"
                    )
                st[3] += 120.0
                checks += 1
            if report is not None:
                rate = n / (time.monotonic() - t0)
                report(f"{n} execs, {checks} liveness checks, {rate:.0f} execs/s")
    return execs, checks


def _main() -> None:
    if "--loop" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--loop", type=int, required=True)
        ap.add_argument("--seed", type=int, default=1)
        ap.add_argument("--check", type=int, default=500)
        a = ap.parse_args()
        n, checks = run_loop(a.loop, a.seed, a.check, report=lambda s: print(s, flush=True))
        print(f"done: {n} execs, {checks} liveness checks, no failures")
        return
    from _common import main

    main(test_one_input)


if __name__ == "__main__":
    _main()
