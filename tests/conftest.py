"""Shared fixtures: every kernel test runs on each available implementation
(docs/conventions.md §4): the compiled module and its pure-Python twin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from osgp import _backend

VECTORS = Path(__file__).parent / "vectors"
NO_EXTENSIONS = _backend.FORCED_REFERENCE


def load_vectors(name: str):
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)


def implementations(family: str):
    """pytest params: ("native", module) when compiled and enabled, ("reference", module)."""
    params = []
    native = _backend.native_module(family)
    if native is not None:
        params.append(pytest.param(native, id="native"))
    params.append(pytest.param(_backend.reference(family), id="reference"))
    return params


# Kernel modules are stateless, so the fixtures are session scoped (which also
# lets hypothesis tests take them).
@pytest.fixture(scope="session", params=implementations("legacy"))
def legacy(request):
    return request.param


@pytest.fixture(scope="session")
def legacy_native():
    mod = _backend.native_module("legacy")
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    return mod


@pytest.fixture(scope="session")
def legacy_ref():
    return _backend.reference("legacy")


def pytest_report_header(config):
    import osgp

    mode = "native" if osgp.native else "reference (pure Python)"
    return f"osgp kernels: {mode}; OSGP_NO_EXTENSIONS={os.environ.get('OSGP_NO_EXTENSIONS', '')!r}"


# ==== tables / load profile fixtures ====
@pytest.fixture(params=implementations("tables"))
def tables_kernel(request):
    """The table-program / load-profile kernel: native and twin."""
    return request.param


@pytest.fixture(params=["native", "reference"])
def tables_backend(request, monkeypatch):
    """Run osgp.tables / osgp.loadprofile on one backend (skips native when not built)."""
    import osgp.loadprofile as lp
    import osgp.tables as tb

    mod = (
        _backend.native_module("tables")
        if request.param == "native"
        else _backend.reference("tables")
    )
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    monkeypatch.setattr(tb, "_kernel", mod)
    monkeypatch.setattr(lp, "_kernel", mod)
    return request.param


# ==== end tables / load profile fixtures ====


# ==== AES family (osgp._native.aes / osgp._reference.aes) ====
@pytest.fixture(params=implementations("aes"))
def aes(request):
    return request.param


@pytest.fixture
def aes_native():
    mod = _backend.native_module("aes")
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    return mod


@pytest.fixture
def aes_ref():
    return _backend.reference("aes")


# ==== end AES ====

# ---- link/session fixtures ---------------------------------------
MEP_KEY = bytes([1]) * 16  # default MAK of the MEP guide examples (p.15)
PLC_OMAK = bytes.fromhex("dfdfdfdfdfdfdfdfdfdfdfdf")  # Annex E test-vector key


def pump(client, device, *, drop=None, max_rounds=10_000, now=0.0):
    """Run a client and a device session back to back on a virtual clock
    until the client has nothing left to do.  ``drop(direction, data)`` may
    return True to lose a frame ("c": client to device, "d": the reverse).
    Returns the client's events."""
    out = []
    for _ in range(max_rounds):
        moved = False
        frame = client.poll_transmit(now)
        if frame is not None:
            moved = True
            if drop is None or not drop("c", frame):
                device.receive_data(frame, now)
        frame = device.poll_transmit(now)
        while frame is not None:
            moved = True
            if drop is None or not drop("d", frame):
                out += client.receive_data(frame, now)
            frame = device.poll_transmit(now)
        if moved:
            continue
        deadline = client.next_deadline()
        if deadline is None:
            return out
        now = max(now, deadline)
        out += client.handle_timeout(now)
    raise AssertionError("sessions did not settle")


def reply(device, frame, now=0.0):
    """Hand one frame to a device session and return its answer."""
    device.receive_data(frame, now)
    return device.poll_transmit(now)


OPTICAL_PASSWORD = b"secret"


def make_pair(
    link,
    *,
    encrypt=False,
    tables=None,
    procedures=None,
    seq_client=0,
    seq_device=0,
    groups=(),
    path=(),
    open_session=True,
):
    """A ClientSession and a DeviceSession wired for ``link`` in mep/optical/plc
    (optical: with a C12.18 session opened unless ``open_session`` is False)."""
    from osgp import session as S
    from osgp.link import carrier as C
    from osgp.link import lon
    from osgp.security.suite import MEP_ENVELOPE, PLC_ENVELOPE, LegacySuite

    tables = tables if tables is not None else {}
    if link == "mep":
        c = S.ClientSession(
            C.MepCarrier(), LegacySuite(MEP_KEY, MEP_ENVELOPE, encrypt=encrypt), seq=seq_client
        )
        d = S.DeviceSession(
            C.MepDeviceCarrier(),
            LegacySuite(MEP_KEY, MEP_ENVELOPE),
            tables=tables,
            procedures=procedures,
            seq=seq_device,
            groups=groups,
        )
    elif link == "optical":
        from osgp.link import optical as o

        c = S.ClientSession(C.OpticalCarrier())
        d = S.DeviceSession(
            C.OpticalDeviceCarrier(psem=o.PsemDeviceState(passwords=[OPTICAL_PASSWORD])),
            tables=tables,
            procedures=procedures,
            groups=groups,
        )
        if open_session:  # table services need a C12.18 session (logon + security)
            ops = [c.exchange(r) for r in (o.Identify(), o.Negotiate(), o.Logon(2, "osgp"))]
            ops.append(c.exchange(o.Security(OPTICAL_PASSWORD)))
            pump(c, d)
            assert all(op.result == b"\x00" for op in ops[2:]), ops
    elif link == "plc":
        me = lon.SubnetNode(3, 17)
        nid = lon.NeuronId(bytes.fromhex("04a1b2c3d4e5"))
        c = S.ClientSession(
            C.PlcCarrier(me, path=path),
            LegacySuite(PLC_OMAK, PLC_ENVELOPE, encrypt=encrypt),
            seq=seq_client,
        )
        d = S.DeviceSession(
            C.PlcDeviceCarrier([me, nid]),
            LegacySuite(PLC_OMAK, PLC_ENVELOPE),
            tables=tables,
            procedures=procedures,
            seq=seq_device,
            groups=groups,
        )
    else:
        raise ValueError(link)
    return c, d


@pytest.fixture(params=["mep", "optical", "plc"])
def link_name(request):
    return request.param



# ==== concentrator store: SQLite and a real PostgreSQL ====
def _private_postgres(tmp: str):
    """Start a throw-away PostgreSQL cluster listening on a Unix socket in ``tmp``
    (no TCP); returns (url, stop) or raises RuntimeError saying why not."""
    import pwd
    import shutil
    import subprocess

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        raise RuntimeError("initdb/pg_ctl are not on PATH")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        if runuser is None:
            raise RuntimeError("running as root and runuser is missing")
        os.chown(tmp, pwd.getpwnam("nobody").pw_uid, -1)
        as_user = [runuser, "-u", "nobody", "--"]
    data = os.path.join(tmp, "data")
    opts = f"-c listen_addresses='' -c unix_socket_directories='{tmp}' -c fsync=off"
    cmds = [
        [initdb, "-D", data, "-U", "osgp", "--auth=trust", "-E", "UTF8", "--no-locale"],
        [pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(tmp, "log"), "-w", "start"],
    ]
    # the server is not ours to sanitize: no LD_PRELOAD (the ASan step sets one)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for cmd in cmds:
        r = subprocess.run(as_user + cmd, cwd=tmp, capture_output=True, text=True, env=env)
        if r.returncode:
            raise RuntimeError(f"{os.path.basename(cmd[0])} failed: {r.stderr.strip()[-300:]}")

    def stop() -> None:
        subprocess.run(
            as_user + [pg_ctl, "-D", data, "-m", "fast", "-w", "stop"],
            cwd=tmp,
            capture_output=True,
            env=env,
        )

    return f"postgresql+psycopg://osgp@/postgres?host={tmp}", stop


@pytest.fixture(scope="session")
def postgres_url():
    """OSGP_TEST_PG_URL, else a private cluster started here, else skip saying why."""
    url = os.environ.get("OSGP_TEST_PG_URL")
    if url:
        yield url
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL store tests: psycopg is not installed (pip install 'osgp[test]')")
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="osgp-pg-")
    try:
        url, stop = _private_postgres(tmp)
    except (RuntimeError, OSError, KeyError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(
            f"PostgreSQL store tests: no server (set OSGP_TEST_PG_URL, or put PostgreSQL's "
            f"initdb and pg_ctl on PATH): {e}"
        )
    try:
        yield url
    finally:
        stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """An empty database on each backend (PostgreSQL: its public schema emptied)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("postgres_url")
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return url
