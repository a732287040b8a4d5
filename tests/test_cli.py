"""The ``osgp`` command against simulated meters served on loopback TCP, as a
user runs it: read, call, collect, export, keys; errors name the meter."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from osgp import tables
from osgp.cli import main
from osgp.sim.serve import MeterServer

MASTER = "ab" * 32


@pytest.fixture(scope="module")
def served():
    with MeterServer(1, kind="tcp", link="mep", seed=5) as server:
        ((serial, url),) = server.urls().items()
        meter = server.served[0].meter
        yield serial, url, meter


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_read_decodes_a_table_as_the_meter_holds_it(served, capsys):
    serial, url, meter = served
    code, out, _ = run(capsys, "read", url, "BT01")
    assert code == 0
    got = json.loads(out)
    assert got["MFG_SERIAL_NUMBER"].strip() == serial
    want = tables.decode(1, meter.image(1))
    assert got["MANUFACTURER"] == want["MANUFACTURER"]
    assert got["FW_VERSION_NUMBER"] == want["FW_VERSION_NUMBER"]


def test_partial_read_in_hex(served, capsys):
    _, url, _ = served
    code, out, _ = run(
        capsys, "read", url, "BT01", "--offset", "0", "--count", "4", "--format", "hex"
    )
    assert code == 0 and out.strip() == b"OSIM".hex()


def test_call_by_name_and_number(served, capsys):
    _, url, _ = served
    for proc in ("EP12", "2060"):  # EP12 self read = 2048 + 12
        code, out, _ = run(capsys, "call", url, proc)
        assert code == 0, out
        assert json.loads(out)["procedure"] == "EP12"


def test_collect_then_export(served, capsys, tmp_path, monkeypatch):
    _, url, _ = served
    monkeypatch.setenv("OSGP_MASTER_KEY", MASTER)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    code, out, err = run(capsys, "collect", url, "--store", db)
    assert code == 0, err
    first = json.loads(out)["stored"]
    assert first["registers"] > 0
    code, out, _ = run(capsys, "collect", url, "--store", db)  # again: BT23 values are new reads
    assert code == 0
    second = json.loads(out)["stored"]
    code, out, _ = run(capsys, "export", "--store", db, "--out", str(tmp_path / "x"))
    assert code == 0
    names = pq.read_table(tmp_path / "x" / "registers.parquet").column("name").to_pylist()
    assert len(names) == first["registers"] + second["registers"]
    # the meter's self read of the day before was taken by the first collect only (BP05)
    self_read = [n for n in names if n.startswith("self_read.")]
    assert self_read and len(self_read) == first["registers"] - second["registers"]


def test_keys_parse_set_and_list_never_show_a_key(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("OSGP_MASTER_KEY", MASTER)
    code, out, _ = run(capsys, "keys", "parse", "ABCDEFGHIJKLMNOPQRST")
    assert code == 0 and json.loads(out) == {
        "bytes": 20,
        "hex": b"ABCDEFGHIJKLMNOPQRST".hex(),
        "fits": ["optical password"],
    }
    code, out, _ = run(capsys, "keys", "parse", "01 02 03 04 05 06 07 08 09 0a 0b 0c")
    assert json.loads(out)["fits"] == ["PLC OMA key"]
    from osgp.concentrator import KeyVault, Store

    db = f"sqlite:///{tmp_path / 'k.db'}"
    with Store(db, vault=KeyVault(bytes.fromhex(MASTER))) as s:
        s.upsert_device(bytes.fromhex("0400000000aa"), serial="M1")
    secret = "0a0b0c0d0e0f101112131415"
    code, out, err = run(capsys, "keys", "set", "--store", db, "0400000000aa", "plc-omak", secret)
    assert code == 0, err and secret not in out
    code, out, _ = run(capsys, "keys", "list", "--store", db)
    assert "plc-omak:active" in out and secret not in out
    with Store(db, vault=KeyVault(bytes.fromhex(MASTER))) as s:
        assert s.key(
            s.device_by_neuron(bytes.fromhex("0400000000aa")).id, "plc-omak"
        ) == bytes.fromhex(secret)


def test_errors_name_the_meter_and_the_layer(capsys):
    code, _, err = run(capsys, "read", "socket://127.0.0.1:1", "BT01")
    assert code == 1 and "socket://127.0.0.1:1" in err and "ConnectError" in err
    code, _, err = run(capsys, "keys", "parse", "xyz")
    assert code == 1 and "ConfigurationError" in err


def test_optical_password_as_typed(capsys):
    # C12.18 security pads a short password with zeros (Optical guide p.12);
    # the simulated optical port holds the blank one
    with MeterServer(1, kind="tcp", link="optical", seed=5) as server:
        ((serial, url),) = server.urls().items()
        code, out, _ = run(capsys, "read", url, "BT01", "--link", "optical", "--key", "")
        assert code == 0 and json.loads(out)["MFG_SERIAL_NUMBER"].strip() == serial
        code, out, err = run(capsys, "read", url, "BT01", "--link", "optical", "--key", "secret")
        assert code == 1 and out == ""
        # refused at the security request, with the meter's response code (err:
        # a password that matches no key, ANSI C12.18 0x01)
        assert url in err and "security refused: device response 0x01" in err


def test_commands_start_without_the_simulator_or_the_store():
    # a command imports what it uses: `osgp read` and `osgp --help` leave the
    # simulator, SQLAlchemy and the batch pipeline unloaded
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from osgp.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('osgp.sim', 'sqlalchemy', 'osgp.batch', 'osgp.concentrator')"
        " if m in sys.modules), file=sys.stderr)\n"
    )
    for argv, listed in ((["--help"], True), (["read", "socket://127.0.0.1:1", "BT01"], False)):
        r = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60
        )
        assert r.stderr.strip().splitlines()[-1] == "[]", r.stderr
        if listed:  # the late commands are still listed with their help
            assert all(f"    {name}" in r.stdout for name in ("op", "wireshark", "decode"))


def test_late_commands_have_their_options(capsys):
    for argv, option in ((["op", "--help"], "clock-sync"), (["decode", "--help"], "--dask")):
        with pytest.raises(SystemExit):
            main(argv)
        assert option in capsys.readouterr().out
