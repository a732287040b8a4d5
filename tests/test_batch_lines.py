"""Line captures (docs/batch.md, "Line captures"): MEP and optical sessions
against a SimMeter recorded frame by frame, decoded by ``osgp decode`` into
the images the sessions themselves read; damaged lines give clear errors."""

from __future__ import annotations

import io
import itertools
import json
import random

import pytest

from osgp.batch import decode_captures
from osgp.batch.lines import LineWriter, Recorder, format_line, parse_lines
from osgp.errors import MalformedError, OSGPError
from osgp.link import optical
from osgp.link.carrier import MepCarrier, MepDeviceCarrier, OpticalCarrier, OpticalDeviceCarrier
from osgp.security.suite import MEP_ENVELOPE, LegacySuite
from osgp.session import ClientSession
from osgp.sim import SimMeter

from .batch_feeder import DIMS, START, TABLES, _ok, _read
from .conftest import MEP_KEY, OPTICAL_PASSWORD, pump

pa = pytest.importorskip("pyarrow")
ds = pytest.importorskip("pyarrow.dataset")


def _record(link: str, device: str, seed: int):
    """A meter read over ``link`` with every frame recorded: (capture text,
    {table: image the session read})."""
    if link == "mep":
        links = [(MepDeviceCarrier(), LegacySuite(MEP_KEY, MEP_ENVELOPE))]
        client = ClientSession(MepCarrier(), LegacySuite(MEP_KEY, MEP_ENVELOPE))
    else:
        links = [
            (OpticalDeviceCarrier(psem=optical.PsemDeviceState(passwords=[OPTICAL_PASSWORD])), None)
        ]
        client = ClientSession(OpticalCarrier())
    meter = SimMeter(f"SIM{seed:07d}", seed=seed, start=START, links=links)
    buf = io.StringIO()
    ticks = itertools.count(int((START + 3600) * 1e9), 7_000_000)
    rec = Recorder(client, LineWriter(buf), link, device, lambda: next(ticks))
    now = 3600.0
    if link == "optical":  # a C12.18 session first [OPT p.11-14]
        ops = [rec.exchange(r) for r in (optical.Identify(), optical.Negotiate())]
        ops += [
            rec.exchange(optical.Logon(2, "osgp")),
            rec.exchange(optical.Security(OPTICAL_PASSWORD)),
        ]
        pump(rec, meter.ports[0], now=now)
        assert all(op.error is None for op in ops)
    dims = [rec.read(t) for t in DIMS]
    pump(rec, meter.ports[0], now=now)
    read = {t: _ok(op) for t, op in zip(DIMS, dims)}
    ctx = {f"BT{t:02d}": read[t] for t in DIMS}
    ops = [_read(rec, t, ctx) for t in TABLES]
    pump(rec, meter.ports[0], now=now)
    read.update({t: _ok(op) for t, op in zip(TABLES, ops)})
    return buf.getvalue(), read


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    d = tmp_path_factory.mktemp("lines")
    mep, mep_read = _record("mep", "2.7", 11)
    opt, opt_read = _record("optical", "04a1b2c3d4e5", 12)
    # one file holding both links, interleaved by time
    body = sorted(mep.splitlines()[1:] + opt.splitlines()[1:])
    path = d / "serial.frames"
    path.write_text("#osgp-frames 1\n# two meters\n" + "\n".join(body) + "\n")
    keys = d / "keys.json"
    keys.write_text(json.dumps({"2/7": MEP_KEY.hex()}))
    out = d / "out"
    report = decode_captures([str(path)], str(out), keys=str(keys), jobs=1)
    images = ds.dataset(out / "images", format="parquet", partitioning="hive").to_table()
    return report, images.to_pylist(), {"2.7": mep_read, "04a1b2c3d4e5": opt_read}, path


def test_every_image_the_sessions_read_is_decoded(captured):
    report, images, read, _ = captured
    got = {(im["device"], im["table"]): im["data"] for im in images}
    for dev, by_table in read.items():
        for t, image in by_table.items():
            assert got[(dev, t)] == image, (dev, t)
    assert report.rows["load_profile"] > 0 and report.rows["registers"] > 0


def test_mep_exchanges_are_verified_and_optical_ones_counted(captured):
    report, _, _, path = captured
    text = path.read_text()
    # a lossless line: one exchange per request the client sent
    assert report.verified == text.count(" tx mep ") > 0
    assert report.capture["optical_session_services"] == 4  # identify, negotiate, logon, security
    assert sum(report.rejected.values()) == 0, report.as_dict()
    assert sum(report.frames.values()) == report.packets == len(text.splitlines()) - 2


def test_a_wrong_key_rejects_the_mep_exchanges_by_digest(captured, tmp_path):
    _, _, _, path = captured
    keys = tmp_path / "k.json"
    keys.write_text(json.dumps({"2/7": bytes(16).hex()}))
    r = decode_captures([str(path)], None, keys=str(keys), jobs=1)
    # every MEP exchange fails its request digest; the optical meter still decodes
    assert r.rejected["digest"] == path.read_text().count(" tx mep ")
    assert r.verified == 0 and r.rows["registers"] > 0
    assert all("2.7" in e for e in r.examples["digest"])


def test_format_round_trip():
    line = format_line(1_767_225_600_123_456_789, "tx", "mep", "2.1", b"\x00\x01\xff")
    assert line == "2026-01-01T00:00:00.123456789Z tx mep 2.1 0001ff\n"
    lf, info = parse_lines(b"#osgp-frames 1\n" + line.encode())
    assert lf.ts_ns.tolist() == [1_767_225_600_123_456_789]
    assert lf.data.tobytes() == b"\x00\x01\xff" and str(lf.devices[0]) == "2.1"
    assert info["frames"] == 1 and info["bad"] == 0


@pytest.mark.parametrize(
    "line, what",
    [
        ("2026-01-01T00:00:00Z tx mep 2.1", "fields"),
        ("2026-01-01T00:00:00 tx mep 2.1 00", "ISO 8601"),
        ("2026-01-01T00:00:00Z up mep 2.1 00", "direction"),
        ("2026-01-01T00:00:00Z tx rs485 2.1 00", "link"),
        ("2026-01-01T00:00:00Z tx mep - 00", "device"),
        ("2026-01-01T00:00:00Z tx mep 2.1 0g", "line 3"),
        ("2026-01-01T00:00:00Z tx mep 2.1000 00", "line 3"),
        ("2026-13-01T00:00:00Z tx mep 2.1 00", "line 3"),
    ],
)
def test_a_bad_line_names_its_layer_and_offset(line, what):
    data = ("#osgp-frames 1\n2026-01-01T00:00:00Z rx lon - 0102\n" + line + "\n").encode()
    with pytest.raises(MalformedError) as e:
        parse_lines(data)
    assert e.value.layer == "lines" and e.value.offset == data.index(line.encode())
    assert what in str(e.value)
    lf, info = parse_lines(data, strict=False)
    assert len(lf) == 1 and info["bad"] == 1


def test_fuzz_line_parser_raises_only_osgp_errors(captured):
    """Mutated line captures (fixed seed): each parse either succeeds or
    raises an OSGPError; the decode of what parses never raises."""
    from osgp.batch import StaticKeys
    from osgp.batch.lines import line_images
    from osgp.batch.pipeline import Report

    base = captured[3].read_bytes()
    rng = random.Random(1204)
    alphabet = b"0123456789abcdefTZ:.-_ \n#xrlonmeptical"
    for _ in range(300):
        b = bytearray(base[: rng.randrange(16, min(len(base), 4000))])
        for _ in range(rng.randrange(1, 8)):
            op, at = rng.randrange(3), rng.randrange(len(b))
            if op == 0:
                b[at] = rng.choice(alphabet)
            elif op == 1:
                del b[at : at + rng.randrange(1, 6)]
            else:
                b[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 6)))
        for strict in (True, False):
            try:
                lf, _ = parse_lines(bytes(b), strict=strict)
            except OSGPError:
                continue
            line_images(lf, StaticKeys({"2/7": MEP_KEY}), Report())


def test_osgp_decode_inspects_and_decodes_a_line_capture(captured, tmp_path, capsys):
    from osgp.cli import main

    _, _, _, path = captured
    text = path.read_text()
    assert main(["decode", "--inspect", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"'mep tx': {text.count(' tx mep ')}" in shown
    assert f"'optical rx': {text.count(' rx optical ')}" in shown
    keys = tmp_path / "k.json"
    keys.write_text(json.dumps({"2/7": MEP_KEY.hex()}))
    assert main(["decode", str(path), "--keys", str(keys), "--out", str(tmp_path / "o")]) == 0
    assert "rejected 0" in capsys.readouterr().out
