"""The store's tables (SQLAlchemy Core), the head the migrations lead to.

Times are UTC: readings in integer epoch seconds, operational times (status,
jobs, audit) in float epoch seconds, raw frames in integer nanoseconds.
A change here needs a migration in ``migrations/versions`` (the suite checks
that the migrated schema matches this metadata).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _device_fk(nullable: bool = False) -> Column:
    on_delete = "SET NULL" if nullable else "CASCADE"
    return Column(
        "device_id", Integer, ForeignKey("devices.id", ondelete=on_delete), nullable=nullable
    )


devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("neuron_id", LargeBinary(6), nullable=False, unique=True),
    Column("serial", String(64)),
    Column("segment", String(64)),
    Column("subnet", SmallInteger),
    Column("node", SmallInteger),
    Column("status", String(32), nullable=False, server_default="new"),
    Column("status_since", Float),
    Column("meta", JSON, nullable=False),
)

routes = Table(
    "routes",
    metadata,
    Column("id", Integer, primary_key=True),
    _device_fk(),
    Column("rank", SmallInteger, nullable=False),
    Column("path", JSON, nullable=False),
    Column("quality", Float, nullable=False),
    Column("successes", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Index(None, "device_id", "rank", unique=True),
    sqlite_autoincrement=True,  # ids of replaced routes are never reused
)

links = Table(
    "links",
    metadata,
    Column("segment", String(64), primary_key=True),
    Column("a", LargeBinary(6), primary_key=True),
    Column("b", LargeBinary(6), primary_key=True),
    Column("ssi", Float, nullable=False),
    Column("margin", Float, nullable=False),
)

keys = Table(
    "keys",
    metadata,
    Column("id", Integer, primary_key=True),
    _device_fk(),
    Column("purpose", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Index(None, "device_id", "purpose", "state"),
    # at most one active and one pending key per device and purpose
    Index(
        "uq_keys_live",
        "device_id",
        "purpose",
        "state",
        unique=True,
        sqlite_where=text("state != 'retired'"),
        postgresql_where=text("state != 'retired'"),
    ),
)

cursors = Table(
    "cursors",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("stream", String(32), primary_key=True),
    Column("value", JSON, nullable=False),
)

intervals = Table(
    "intervals",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("channel", SmallInteger, primary_key=True),
    Column("ts_utc", BigInteger, primary_key=True),
    Column("value", Float, nullable=False),
    Column("raw", BigInteger, nullable=False),
    Column("status", SmallInteger, nullable=False),
    sqlite_with_rowid=False,  # rows kept in the primary key's tree (migration 0002)
)

registers = Table(
    "registers",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("read_at", BigInteger, primary_key=True),  # UTC epoch milliseconds
    Column("value", Float, nullable=False),
    Column("unit", String(16), nullable=False),
    sqlite_with_rowid=False,  # rows kept in the primary key's tree (migration 0002)
)

events = Table(
    "events",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("ts_utc", BigInteger, primary_key=True),
    Column("code", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("arg", LargeBinary, nullable=False),
    sqlite_with_rowid=False,  # rows kept in the primary key's tree (migration 0002)
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("not_before", Float),
    Index(None, "kind"),
    sqlite_autoincrement=True,
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("code", Integer),
    Column("detail", String, nullable=False, server_default=""),
    Column("updated_at", Float, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", String, nullable=False),
    _device_fk(nullable=True),
)

frames = Table(
    "frames",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("segment", String(64), nullable=False),
    Column("ts_ns", BigInteger, nullable=False),
    Column("direction", String(2), nullable=False),
    Column("frame", LargeBinary, nullable=False),
    Index(None, "segment", "ts_ns"),
)

metrics = Table(
    "metrics",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("segment", String(64), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("value", Float, nullable=False),
)

schedules = Table(
    "schedules",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("params", JSON, nullable=False),
    Column("period_s", Float, nullable=False),
    Column("next_at", Float, nullable=False),
)
