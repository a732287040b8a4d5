"""The concentrator's store on SQLite and on a real PostgreSQL server
(``store_url`` in conftest: OSGP_TEST_PG_URL, a private cluster, or a skip)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from osgp.concentrator import KeyVault, Store, parse_key, parse_password
from osgp.concentrator.schema import metadata
from osgp.concentrator.store import alembic_config
from osgp.errors import AuthenticationError, ConfigurationError, StoreError

MASTER = bytes(range(32))
N1, N2 = bytes.fromhex("04a1b2c3d4e5"), bytes.fromhex("04a1b2c3d4e6")
T = 1_700_000_000


@pytest.fixture
def store(store_url):
    with Store(store_url, vault=KeyVault(MASTER)) as st:
        yield st


def lp_rows(start=1_700_000_000, n=96, channels=4):
    return [
        (start + 900 * i, c, i * 0.5 + c, i * 5 + c, i % 3)
        for i in range(n)
        for c in range(channels)
    ]


def engine_of(store_url):
    return sa.create_engine(store_url)


# ---- migrations


def test_migrations_reach_the_metadata_and_are_idempotent(store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    Store(store_url).close()
    Store(store_url).close()  # a second open upgrades nothing
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = engine_of(store_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == head
        assert compare_metadata(ctx, metadata) == []
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"devices", "intervals", "keys", "jobs", "outcomes", "schedules"} <= tables


def _migrate_to(st, revision, down=False):
    from alembic import command

    with st._tx("migrate") as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def test_readings_kept_through_migration_0002_both_ways(store_url):
    """0002 rebuilds the readings tables on SQLite as WITHOUT ROWID tables:
    the rows, their keys (a reading again is not stored twice) and the
    device cascade stay, up and down."""
    with Store(store_url, vault=KeyVault(MASTER), migrate=False) as st:
        _migrate_to(st, "0001")
        d = st.upsert_device(N1, segment="s", subnet=1, node=2)
        st.commit_intervals(d, lp_rows(n=4, channels=2))
        st.commit_registers(d, 1.0, {"A+": (12.5, "Wh")})
        st.commit_events(d, [(T, 7, 3, "x", b"\x01")])
        _migrate_to(st, "head")
        assert st.commit_intervals(d, lp_rows(n=5, channels=2)) == 2  # only the fifth interval
        assert st.commit_registers(d, 1.0, {"A+": (12.5, "Wh")}) == 0
        assert st.commit_events(d, [(T, 7, 3, "x", b"\x01")]) == 0
        counts = (st.intervals().num_rows, st.registers().num_rows, st.events().num_rows)
        assert counts == (10, 1, 1)
        if st.dialect == "sqlite":
            with st._read("t") as conn:
                sql = conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE name IN "
                    "('intervals', 'registers', 'events')"
                ).all()
            assert len(sql) == 3 and all(x.strip().endswith("WITHOUT ROWID") for _, x in sql)
        _migrate_to(st, "0001", down=True)
        assert st.intervals().num_rows == 10
        assert st.commit_intervals(d, lp_rows(n=6, channels=2)) == 2  # the sixth
        _migrate_to(st, "head")
        with st._tx("t") as conn:
            conn.execute(sa.text("DELETE FROM devices WHERE id = :d"), {"d": d})
        assert (st.intervals().num_rows, st.registers().num_rows, st.events().num_rows) == (0, 0, 0)


def test_without_migrations_an_empty_database_gives_store_errors(store_url):
    with Store(store_url, migrate=False) as st:
        with pytest.raises(StoreError) as e:
            st.devices()
    assert e.value.operation == "devices" and e.value.url and "devices" in str(e.value)
    assert not isinstance(e.value, sa.exc.SQLAlchemyError)


def test_store_errors_mask_the_password_and_name_the_url(tmp_path):
    with pytest.raises(StoreError) as e:
        Store("postgresql+psycopg://osgp:s3cret@/osgp?host=/nonexistent-dir")
    assert "s3cret" not in str(e.value) and "***" in e.value.url
    assert e.value.operation == "migrate" and "nonexistent-dir" in str(e.value)
    with pytest.raises(StoreError) as e:
        Store(f"sqlite:///{tmp_path}/missing/dir/x.db")
    assert "missing/dir" in str(e.value)
    with pytest.raises(StoreError):
        Store("mysql://h/db")


# ---- devices, topology, routes


def test_devices_upsert_changes_only_given_fields(store):
    d = store.upsert_device(N1, serial="A1", segment="s1", subnet=2, node=7, meta={"k": 1})
    assert store.upsert_device(N1) == d
    assert store.upsert_device(N1, node=9) == d
    dev = store.device(d)
    assert (dev.neuron_id, dev.serial, dev.segment, dev.subnet, dev.node) == (N1, "A1", "s1", 2, 9)
    assert dev.status == "new" and dev.meta == {"k": 1}
    e = store.upsert_device(N2, segment="s2")
    assert e != d and store.device_by_neuron(N2).id == e
    assert store.device_by_neuron(b"\0" * 6) is None
    assert [x.id for x in store.devices()] == [d, e]
    assert [x.id for x in store.devices(segment="s2")] == [e]
    with pytest.raises(ConfigurationError):
        store.upsert_device(b"\x01\x02")
    with pytest.raises(ConfigurationError, match="meta is not JSON-able"):
        store.upsert_device(N1, meta={"at": object()})
    with pytest.raises(StoreError, match="no device with id 999"):
        store.device(999)


def test_status_since_changes_only_with_the_status_and_is_audited(store):
    d = store.upsert_device(N1)
    store.set_status(d, "temporary_fault", 100.0, "3 retries failed")
    store.set_status(d, "temporary_fault", 200.0)
    assert (store.device(d).status, store.device(d).status_since) == ("temporary_fault", 100.0)
    store.set_status(d, "normal", 300.0)
    assert store.device(d).status_since == 300.0
    log = store.audit_log()
    assert [a.detail for a in log] == [
        "temporary_fault -> normal",
        "new -> temporary_fault: 3 retries failed",
    ]
    assert all(a.device_id == d and a.action == "status" for a in log)
    assert [x.id for x in store.devices(status="normal")] == [d]


def test_routes_replace_rank_and_count_outcomes(store):
    d = store.upsert_device(N1)
    store.put_routes(d, [([(1, 2), (1, 3)], 0.9), ([], 0.5)])
    r = store.routes(d)
    assert [(x.rank, x.path, x.quality) for x in r] == [(0, [(1, 2), (1, 3)], 0.9), (1, [], 0.5)]
    store.route_outcome(r[0].id, True)
    store.route_outcome(r[0].id, True)
    store.route_outcome(r[0].id, False)
    assert (store.routes(d)[0].successes, store.routes(d)[0].failures) == (2, 1)
    store.put_routes(d, [([(4, 4)], 0.7)])
    store.route_outcome(r[0].id, True)  # a replaced route: ignored
    (only,) = store.routes(d)
    assert (only.path, only.successes, only.failures) == ([(4, 4)], 0, 0)


def test_links_upsert_per_segment(store):
    store.put_link("s1", b"", N1, -60.0, 12.0)
    store.put_link("s1", N1, N2, -70.0, 6.0)
    store.put_link("s1", b"", N1, -55.0, 14.0)
    store.put_link("s2", b"", N2, -80.0, 1.0)
    assert [(x.a, x.b, x.ssi, x.margin) for x in store.links("s1")] == [
        (b"", N1, -55.0, 14.0),
        (N1, N2, -70.0, 6.0),
    ]
    assert len(store.links()) == 3


# ---- keys at rest


def test_keys_round_trip_promote_and_retire(store):
    d = store.upsert_device(N1)
    assert store.key(d, "mep") is None
    store.put_key(d, "mep", b"\x01" * 16)
    store.put_key(d, "mep", b"\x02" * 16, state="pending")
    assert store.key(d, "mep") == b"\x01" * 16
    assert store.key(d, "mep", state="pending") == b"\x02" * 16
    store.promote_key(d, "mep")
    assert store.key(d, "mep") == b"\x02" * 16
    assert store.key(d, "mep", state="retired") == b"\x01" * 16
    assert store.key(d, "mep", state="pending") is None
    with pytest.raises(StoreError, match="no pending 'mep' key"):
        store.promote_key(d, "mep")
    store.put_key(d, "mep", b"\x03" * 16)  # a new active key retires the old one, kept
    assert store.key(d, "mep") == b"\x03" * 16
    assert store.key(d, "mep", state="retired") == b"\x02" * 16
    store.put_key(d, "plc-omak", b"\x04" * 12)
    assert store.key(d, "plc-omak") == b"\x04" * 12
    with pytest.raises(ConfigurationError):
        store.put_key(d, "mep", b"x", state="old")


def test_device_keys_are_each_devices_key_in_that_state(store):
    d, e = store.upsert_device(N1, subnet=3, node=9), store.upsert_device(N2)
    store.upsert_device(bytes.fromhex("04a1b2c3d4e7"))  # no key: not listed
    store.put_key(d, "mep", b"\x01" * 16)
    store.put_key(d, "mep", b"\x02" * 16)  # retires the first
    store.put_key(d, "mep", b"\x03" * 16, state="pending")
    store.put_key(e, "mep", b"\x04" * 16)
    store.put_key(e, "plc-omak", b"\x05" * 12)
    got = {(dev.neuron_id, dev.subnet, dev.node): k for dev, k in store.device_keys("mep")}
    assert got == {(N1, 3, 9): b"\x02" * 16, (N2, None, None): b"\x04" * 16}
    pending = [(dev.id, k) for dev, k in store.device_keys("mep", state="pending")]
    assert pending == [(d, b"\x03" * 16)]
    assert [k for _, k in store.device_keys("mep", state="retired")] == [b"\x01" * 16]


def test_keys_wrong_master_key_and_moved_ciphertext(store_url, store):
    d, e = store.upsert_device(N1), store.upsert_device(N2)
    store.put_key(d, "mep", b"\x01" * 16)
    store.put_key(e, "mep", b"\x02" * 16)
    with Store(store_url, vault=KeyVault(bytes(32))) as other:
        with pytest.raises(AuthenticationError, match="wrong master key"):
            other.key(d, "mep")
    engine = engine_of(store_url)
    with engine.begin() as conn:  # copy d's ciphertext into e's row
        sealed = conn.execute(
            sa.text("SELECT sealed FROM keys WHERE device_id = :d"), {"d": d}
        ).scalar_one()
        conn.execute(
            sa.text("UPDATE keys SET sealed = :s WHERE device_id = :e"), {"s": sealed, "e": e}
        )
        conn.execute(sa.text("UPDATE keys SET purpose = 'optical' WHERE device_id = :d"), {"d": d})
    engine.dispose()
    with pytest.raises(AuthenticationError):
        store.key(e, "mep")
    with pytest.raises(AuthenticationError):
        store.key(d, "optical")


def test_a_store_without_vault_refuses_keys(store_url):
    with Store(store_url) as st:
        d = st.upsert_device(N1)
        for call in (lambda: st.put_key(d, "mep", bytes(16)), lambda: st.key(d, "mep")):
            with pytest.raises(ConfigurationError, match="key vault"):
                call()


def test_no_key_in_repr_or_logs(store, caplog):
    key = bytes.fromhex("5a17c0de" * 4)
    caplog.set_level(logging.DEBUG)
    vault = KeyVault(MASTER)
    d = store.upsert_device(N1)
    store.put_key(d, "aes-psk", key)
    store.key(d, "aes-psk")
    with pytest.raises(AuthenticationError) as e:
        KeyVault(bytes(32)).open(d, "aes-psk", vault.seal(d, "aes-psk", key))
    shown = " ".join(
        [repr(vault), repr(store), str(e.value)] + [r.getMessage() for r in caplog.records]
    )
    for secret in (key, MASTER):
        assert secret.hex() not in shown and repr(secret) not in shown
    assert "hidden" in repr(vault)


def test_sealed_layout_opens_with_aes_gcm_directly():
    # 01 || nonce(12) || ciphertext || tag, AAD = device id (8 bytes BE) || purpose
    sealed = KeyVault(MASTER).seal(7, "optical", b"secret")
    assert sealed[0] == 1 and len(sealed) == 1 + 12 + 6 + 16
    aad = (7).to_bytes(8, "big") + b"optical"
    assert AESGCM(MASTER).decrypt(sealed[1:13], sealed[13:], aad) == b"secret"
    assert KeyVault(MASTER).seal(7, "optical", b"secret")[1:13] != sealed[1:13]  # fresh nonce


def test_vault_sources(tmp_path, monkeypatch):
    for bad in (b"", bytes(24), "00" * 16):
        with pytest.raises(ConfigurationError, match="16 or 32 bytes"):
            KeyVault(bad)  # type: ignore[arg-type]
    sealed = KeyVault(MASTER).seal(1, "mep", b"k")
    monkeypatch.setenv("OSGP_MASTER_KEY", MASTER.hex())
    assert KeyVault.from_env().open(1, "mep", sealed) == b"k"
    monkeypatch.setenv("OSGP_MASTER_KEY", "zz")
    with pytest.raises(ConfigurationError, match="OSGP_MASTER_KEY is not hex"):
        KeyVault.from_env()
    monkeypatch.delenv("OSGP_MASTER_KEY")
    with pytest.raises(ConfigurationError, match="not set"):
        KeyVault.from_env()
    f = tmp_path / "master.key"
    f.write_text(MASTER.hex() + "\n")
    f.chmod(0o600)
    assert KeyVault.from_file(f).open(1, "mep", sealed) == b"k"
    f.write_bytes(MASTER)
    assert KeyVault.from_file(f).open(1, "mep", sealed) == b"k"
    f.chmod(0o640)
    with pytest.raises(ConfigurationError, match="group or others"):
        KeyVault.from_file(f)
    with pytest.raises(ConfigurationError, match="cannot read"):
        KeyVault.from_file(tmp_path / "absent")


def test_parse_key_forms():
    # the MEP guide's default MAK, 01 x 16 (MEP guide p.14), in the hex forms
    for text in ("01" * 16, " ".join(["01"] * 16), ":".join(["01"] * 16)):
        assert parse_key(text) == b"\x01" * 16
    assert parse_key("DF" * 12) == b"\xdf" * 12  # a 12-byte OMA key (Annex E vector key)
    assert parse_key("ABCDEFGHIJ0123456789") == b"ABCDEFGHIJ0123456789"  # 20 ASCII characters
    assert parse_key("0123456789abcdef0123") == b"0123456789abcdef0123"  # 20 chars: ASCII
    for bad in ("", "0g", "010", "short", "x" * 21):
        with pytest.raises(ConfigurationError):
            parse_key(bad)


def test_parse_password_forms():
    # C12.18 security carries 20 bytes, zero padded (Optical guide p.12); a
    # shorter ASCII password is taken as termineter's c1218 client takes it
    assert parse_password("") == b""
    assert parse_password("secret") == b"secret"
    assert parse_password("deadbeef") == b"deadbeef"  # hex only as 20 whole bytes
    assert parse_password("ABCDEFGHIJ0123456789") == b"ABCDEFGHIJ0123456789"
    assert parse_password("41" * 20) == b"A" * 20
    assert parse_password(" ".join(["00"] * 20)) == bytes(20)
    for bad in ("x" * 21, "caf\u00e9", "tab\there"):
        with pytest.raises(ConfigurationError, match="optical password"):
            parse_password(bad)


# ---- cursors and readings


def test_intervals_round_trip_and_recommit(store):
    d = store.upsert_device(N1)
    rows = lp_rows()
    assert store.commit_intervals(d, rows, cursor=("lp", {"block": 4, "interval": 95})) == 384
    assert store.commit_intervals(d, rows, cursor=("lp", {"block": 4, "interval": 95})) == 0
    assert store.cursor(d, "lp") == {"block": 4, "interval": 95}
    assert store.cursor(d, "events") is None
    t = store.intervals(d)
    assert t.num_rows == 384 and t.schema.field("ts_utc").type == pa.timestamp("s", tz="UTC")
    got = sorted(
        zip(
            t["ts_utc"].cast(pa.int64()).to_pylist(),
            t["channel"].to_pylist(),
            t["value"].to_pylist(),
            t["raw"].to_pylist(),
            t["status"].to_pylist(),
        )
    )
    assert got == sorted(rows)
    start = 1_700_000_000 + 900 * 10
    assert store.intervals(d, since=start, until=start + 900).num_rows == 4
    assert store.intervals(None).num_rows == 384 and store.intervals(d + 1).num_rows == 0


@pytest.mark.parametrize("form", ["arrow", "numpy"])
def test_intervals_from_columns(store, form):
    d = store.upsert_device(N1)
    rows = lp_rows(n=10)
    names = ("ts_utc", "channel", "value", "raw", "status")
    cols = {n: np.array([r[i] for r in rows]) for i, n in enumerate(names)}
    data = pa.table(cols) if form == "arrow" else cols
    assert store.commit_intervals(d, data) == 40
    assert store.commit_intervals(d, lp_rows(n=12)) == 8  # 2 new intervals x 4 channels
    assert store.intervals(d).num_rows == 48
    assert store.commit_intervals(d, []) == 0


@pytest.mark.parametrize("form", ["tuples", "numpy"])
def test_interval_values_round_trip_exactly(store, form):
    d = store.upsert_device(N1)
    values = [0.1 + 0.2, 1 / 3, -2.5e-300, 1.7976931348623157e308, -0.0, 123456789.125]
    raws = [2**62, -1, 0, -(2**40), 7, 2**31]
    rows = [
        (1_700_000_000 + 900 * i, i % 2, v, r, 0x2F) for i, (v, r) in enumerate(zip(values, raws))
    ]
    if form == "numpy":
        names = ("ts_utc", "channel", "value", "raw", "status")
        rows = {n: np.array([r[k] for r in rows]) for k, n in enumerate(names)}
    assert store.commit_intervals(d, rows) == 6
    t = store.intervals(d).sort_by("ts_utc")
    assert t["value"].to_pylist() == values and t["raw"].to_pylist() == raws
    assert t["status"].to_pylist() == [0x2F] * 6


@pytest.fixture(scope="module")
def memory_store():
    with Store("sqlite://") as st:
        yield st


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=hs.lists(
        hs.lists(hs.tuples(hs.integers(0, 30), hs.integers(0, 3)), max_size=40), max_size=6
    )
)
def test_overlapping_commits_store_the_union_once(memory_store, batches):
    d = memory_store.upsert_device(os.urandom(6))
    seen: set = set()
    for batch in batches:
        rows = [(T + 900 * i, ch, float(i), i, 0) for i, ch in batch]
        new = {(r[0], r[1]) for r in rows} - seen
        assert memory_store.commit_intervals(d, rows) == len(new)
        seen |= new
    t = memory_store.intervals(d)
    assert sorted(zip(t["ts_utc"].cast(pa.int64()).to_pylist(), t["channel"].to_pylist())) == (
        sorted(seen)
    )


def test_interval_times_as_datetimes_and_bad_rows(store):
    d = store.upsert_device(N1)
    ts = np.array([T, T + 900], dtype="datetime64[s]")  # what osgp.loadprofile decodes to
    cols = {
        "ts_utc": ts,
        "channel": np.zeros(2, np.int8),
        "value": np.ones(2),
        "raw": np.ones(2, np.int64),
        "status": np.zeros(2, np.uint8),
    }
    assert store.commit_intervals(d, cols) == 2
    arrow = pa.table({**cols, "ts_utc": pa.array(ts.astype("datetime64[ms]"))})
    assert store.commit_intervals(d, arrow) == 0  # the same instants, in milliseconds
    assert store.commit_intervals(d, {**cols, "ts_utc": ts.astype("datetime64[ms]") + 900_000}) == 1
    assert store.intervals(d)["ts_utc"].cast(pa.int64()).to_pylist() == [T, T + 900, T + 1800]
    rows = [(np.int64(T + 2700), np.int16(0), np.float32(1.5), np.int64(3), np.uint8(0))]
    assert store.commit_intervals(d, rows) == 1  # numpy scalars in row tuples
    for bad in ([(datetime.now(), 0, 1.0, 1, 0)], [(T, 0, "x", 1, 0)], {"ts_utc": [T]}):
        with pytest.raises(ConfigurationError, match="interval rows are"):
            store.commit_intervals(d, bad)
    assert store.intervals(d).num_rows == 4


def test_a_failure_mid_transaction_stores_neither_rows_nor_cursor(store):
    d = store.upsert_device(N1)

    def rows_then_crash():
        yield from lp_rows(n=5)
        raise RuntimeError("link lost")

    with pytest.raises(RuntimeError, match="link lost"):
        store.commit_intervals(d, rows_then_crash(), cursor=("lp", {"block": 1}))
    # the rows go in first; the cursor value cannot be stored and the whole commit rolls back
    with pytest.raises(ConfigurationError, match="JSON"):
        store.commit_intervals(d, lp_rows(n=5), cursor=("lp", {"block": object()}))
    with pytest.raises(ConfigurationError):
        store.commit_events(d, [(1, 1, 2, "power down", b"")], cursor=("ev", {"x": {1, 2}}))
    assert store.intervals(d).num_rows == 0 and store.events(d).num_rows == 0
    assert store.cursor(d, "lp") is None and store.cursor(d, "ev") is None
    with pytest.raises(StoreError, match="commit_intervals"):
        store.commit_intervals(12345, lp_rows(n=1))  # no such device


def test_snapshots_are_stored_all_or_none_with_their_cursor(store):
    d = store.upsert_device(N1)
    first = {"self_read.fwd_active_wh": (100.0, "Wh"), "self_read.seq": (4.0, "count")}
    second = {"self_read.fwd_active_wh": (160.0, "Wh"), "self_read.seq": (5.0, "count")}
    # the second moment's unit is missing (NOT NULL): the first is not kept either
    with pytest.raises(StoreError, match="commit_registers"):
        store.commit_snapshots(
            d, [(1_700_000_000, first), (1_700_086_400, {"x": (1.0, None)})], cursor=("s", {"n": 1})
        )
    assert store.registers(d).num_rows == 0 and store.cursor(d, "s") is None
    snaps = [(1_700_000_000, first), (1_700_086_400, second)]
    assert store.commit_snapshots(d, snaps, cursor=("s", {"n": 2})) == 4
    assert store.commit_snapshots(d, snaps) == 0  # stored once
    r = store.registers(d).to_pylist()
    got = sorted((int(x["read_at"].timestamp()), x["name"], x["value"]) for x in r)
    assert got == sorted(
        (at, name, v) for at, values in snaps for name, (v, _) in values.items()
    )
    assert store.cursor(d, "s") == {"n": 2}


def test_registers_and_events_round_trip(store):
    d = store.upsert_device(N1)
    values = {"fwd_active_wh": (12345.5, "Wh"), "voltage_l1": (231.2, "V")}
    assert store.commit_registers(d, 1_700_000_000, values, cursor=("registers", {"at": 1})) == 2
    assert store.commit_registers(d, 1_700_000_000, values) == 0
    assert store.commit_registers(d, 1_700_000_900, {"voltage_l1": (230.0, "V")}) == 1
    r = store.registers(d)
    assert r.num_rows == 3 and set(r["unit"].to_pylist()) == {"Wh", "V"}
    assert r.schema.field("read_at").type == pa.timestamp("ms", tz="UTC")  # kept to the millisecond
    ev = [
        (1_700_000_000, 1, 0x0001, "power down", b""),
        (1_700_000_060, 2, 0x0002, "power up", b"\x01\x02"),
    ]
    assert store.commit_events(d, ev, cursor=("events", {"seq": 2})) == 2
    assert store.commit_events(d, ev + [(1_700_000_120, 3, 7, "clock set", b"")]) == 1
    e = store.events(d)
    assert e["seq"].to_pylist() == [1, 2, 3] and e["arg"].to_pylist()[1] == b"\x01\x02"
    assert store.cursor(d, "events") == {"seq": 2}


# ---- jobs


def test_job_outcomes_attempts_and_final_states(store):
    a, b, c = (store.upsert_device(bytes([4, 0, 0, 0, 0, i])) for i in range(3))
    j = store.create_job("clock-sync", {"max_skew_s": 5}, [a, b, c], at=10.0, not_before=20.0)
    job = store.job(j)
    assert (job.kind, job.params, job.not_before, job.counts) == (
        "clock-sync",
        {"max_skew_s": 5},
        20.0,
        {"pending": 3},
    )
    assert job.open and store.pending_targets(j) == [a, b, c]
    store.set_outcome(j, a, "sent", at=11.0)
    store.set_outcome(j, a, "sent", at=11.5)  # idempotent
    store.set_outcome(j, a, "failed", at=12.0, code=0x4C, detail="proxy failure")
    store.set_outcome(j, a, "sent", at=13.0)
    store.set_outcome(j, a, "confirmed", at=14.0)
    store.set_outcome(j, a, "failed", at=15.0)  # after a final state: ignored
    store.set_outcome(j, b, "confirmed", at=12.0)  # an attempt never marked sent
    store.set_outcome(j, c, "given_up", at=12.0, detail="unreachable")
    o = {x.device_id: x for x in store.outcomes(j)}
    assert (o[a].state, o[a].attempts, o[a].updated_at) == ("confirmed", 2, 14.0)
    assert (o[b].attempts, o[c].attempts, o[c].detail) == (1, 0, "unreachable")
    assert store.pending_targets(j) == [] and not store.job(j).open
    k = store.create_job("read", {}, [a], at=20.0)
    assert [x.id for x in store.jobs(open_only=True)] == [k]
    assert [x.id for x in store.jobs(kind="clock-sync")] == [j]
    with pytest.raises(ConfigurationError):
        store.set_outcome(k, a, "done", at=1.0)
    with pytest.raises(ConfigurationError, match="params is not JSON-able"):
        store.create_job("read", {"x": b"\x00"}, [a], at=1.0)
    with pytest.raises(StoreError, match="no job"):
        store.job(999)


# ---- audit, frames, metrics, schedules


def test_audit_frames_metrics_schedules(store):
    d = store.upsert_device(N1)
    for i in range(5):
        store.audit(float(i), "operator", "disconnect", f"#{i}", device_id=d)
    assert [a.detail for a in store.audit_log(limit=2)] == ["#4", "#3"]
    frames = [(1_000_000_000 * i, "tx" if i % 2 else "rx", bytes([i, 0xFF])) for i in range(6)]
    assert store.store_frames("s1", frames) == 6 and store.store_frames("s1", []) == 0
    assert store.frames("s1") == frames and store.frames("s2") == []
    with pytest.raises(ConfigurationError):
        store.store_frames("s1", [(0, "up", b"")])
    store.record_metrics("2026-12-01", "s1", reads_ok=10, reads_failed=1)
    store.record_metrics("2026-12-01", "s1", reads_ok=5, airtime_s=2.5)
    store.record_metrics("2026-12-02", "s2", retries=3)
    assert store.metrics().to_pylist() == [
        {
            "day": "2026-12-01",
            "segment": "s1",
            "airtime_s": 2.5,
            "reads_failed": 1.0,
            "reads_ok": 15.0,
            "retries": 0.0,
        },
        {
            "day": "2026-12-02",
            "segment": "s2",
            "airtime_s": 0.0,
            "reads_failed": 0.0,
            "reads_ok": 0.0,
            "retries": 3.0,
        },
    ]
    store.put_schedule("lp", "collect", {"streams": ["lp"]}, 3600.0, 1000.0)
    store.put_schedule("clock", "clock-sync", {}, 86400.0, 5000.0)
    assert [x.name for x in store.schedules()] == ["lp", "clock"]
    assert [x.name for x in store.schedules(due_at=1000.0)] == ["lp"]
    assert store.advance_schedule("lp", 999.0) == 1000.0
    assert store.advance_schedule("lp", 1000.0) == 4600.0
    assert store.advance_schedule("lp", 4600.0 + 3 * 3600 + 1) == 4600.0 + 4 * 3600
    store.put_schedule("lp", "collect", {"streams": ["lp", "events"]}, 900.0, 10.0)
    assert store.schedules()[0].params == {"streams": ["lp", "events"]}
    with pytest.raises(StoreError):
        store.advance_schedule("none", 0.0)


# ---- concurrent writers


def test_sqlite_wal_and_readers_beside_a_writer(tmp_path):
    path = tmp_path / "s.db"
    with Store(f"sqlite:///{path}") as st:
        d = st.upsert_device(N1)
        other = sqlite3.connect(path, isolation_level=None)
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        other.execute("INSERT INTO audit (at, actor, action, detail) VALUES (0, 'x', 'y', '')")
        # reads take no write lock (else they would wait out the busy timeout and fail)
        assert [x.id for x in st.devices()] == [d] and st.audit_log() == []
        other.execute("COMMIT")
        other.close()
        assert [a.actor for a in st.audit_log()] == ["x"]


def test_concurrent_writers_store_each_reading_once(store_url):
    with Store(store_url) as a, Store(store_url) as b:
        da = a.upsert_device(N1)
        rows = lp_rows(n=96)
        results, errors = [], []

        def work(st, part):
            try:
                assert st.upsert_device(N1, segment="s1") == da
                for i in range(0, len(part), 32):
                    results.append(st.commit_intervals(da, part[i : i + 48]))
                j = st.create_job("read", {}, [da], at=0.0)
                st.set_outcome(j, da, "sent", at=1.0)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [
            threading.Thread(target=work, args=(st, rows[k:] + rows[:k]))
            for st, k in ((a, 0), (b, 100), (a, 200), (b, 300))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sum(results) == 384 and b.intervals(da).num_rows == 384
        assert len(a.jobs()) == 4


def test_postgres_url_without_driver_uses_psycopg(postgres_url):
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with Store(url, migrate=False) as st:
        assert st.url.startswith("postgresql+psycopg://")
