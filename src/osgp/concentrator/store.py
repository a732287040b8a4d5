"""The concentrator's store: SQLite by default, PostgreSQL for a shared head-end.

One class, :class:`Store`, over SQLAlchemy Core; the schema is in
:mod:`osgp.concentrator.schema` and reaches its head through the Alembic
migrations shipped in ``osgp/concentrator/migrations``.  Every call is one
transaction; a reading commit and its cursor update share it, and duplicate
readings are ignored by their unique keys (``INSERT .. ON CONFLICT DO
NOTHING``), so a collection retried after a crash stores each reading once.
Every failure is a :class:`~osgp.errors.StoreError` naming the URL (password
masked) and the call.

Times: readings in integer UTC epoch seconds, operational times (status, jobs,
audit, schedules) in float UTC epoch seconds, raw frames in nanoseconds.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ContextManager,
    Iterable,
    Iterator,
    Optional,
    Sequence,
    Union,
)

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from osgp.concentrator import schema as s
from osgp.concentrator.keys import KeyVault
from osgp.errors import AuthenticationError, ConfigurationError, StoreError

if TYPE_CHECKING:
    import pyarrow

__all__ = [
    "Store",
    "Device",
    "Route",
    "MeterRecord",
    "Link",
    "Job",
    "Outcome",
    "AuditEntry",
    "Schedule",
    "JOB_STATES",
    "KEY_STATES",
]

#: Outcome states of a job's target; ``confirmed`` and ``given_up`` are final.
JOB_STATES = ("pending", "sent", "confirmed", "failed", "given_up")
_FINAL = ("confirmed", "given_up")
#: Key states: at most one ``active`` and one ``pending`` per device and purpose.
KEY_STATES = ("active", "pending", "retired")

Path_ = list[tuple[int, int]]


@dataclass(frozen=True)
class Device:
    id: int
    neuron_id: bytes
    serial: Optional[str]
    segment: Optional[str]
    subnet: Optional[int]
    node: Optional[int]
    status: str
    status_since: Optional[float]
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    id: int
    device_id: int
    rank: int
    path: Path_  # (subnet, node) of each repeater; [] = direct
    quality: float
    successes: int
    failures: int


@dataclass(frozen=True)
class MeterRecord:
    """What a concentrator loads to drive one meter (:meth:`Store.meter_records`)."""

    device: Device
    key: Optional[bytes]  # the active key of the first purpose asked for it has
    purpose: Optional[str]  # that key's purpose (None: no key of those purposes)
    routes: list[Route]
    cursors: dict  # stream -> value (None: none stored), for each stream asked for


@dataclass(frozen=True)
class Link:
    segment: str
    a: bytes  # Neuron ID; b"" = the concentrator
    b: bytes
    ssi: float
    margin: float


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    params: dict
    created_at: float
    not_before: Optional[float]
    counts: dict  # state -> number of targets in it

    @property
    def open(self) -> bool:
        """Some target is neither confirmed nor given up."""
        return any(n for st, n in self.counts.items() if st not in _FINAL)


@dataclass(frozen=True)
class Outcome:
    job_id: int
    device_id: int
    state: str
    attempts: int
    code: Optional[int]
    detail: str
    updated_at: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    detail: str
    device_id: Optional[int]


@dataclass(frozen=True)
class Schedule:
    name: str
    kind: str
    params: dict
    period_s: float
    next_at: float


_INTERVAL_COLUMNS = ("ts_utc", "channel", "value", "raw", "status")


def _json(value: Any, what: str) -> str:
    """``value`` as JSON text, or a ConfigurationError saying what is not JSON-able."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"store: {what} is not JSON-able") from None


def _neuron(neuron_id: bytes) -> bytes:
    if not isinstance(neuron_id, (bytes, bytearray)) or len(neuron_id) != 6:
        raise ConfigurationError("store: a Neuron ID is 6 bytes (48 bits)")
    return bytes(neuron_id)


def _column(col: Any) -> list:
    """A column (pyarrow, numpy or a sequence) as a list of Python numbers; UTC
    times (Arrow timestamps, numpy datetime64) as integer epoch seconds."""
    if hasattr(col, "to_pylist"):  # a pyarrow array
        import pyarrow

        if pyarrow.types.is_timestamp(col.type):
            col = col.cast(pyarrow.timestamp("s", tz=col.type.tz)).cast(pyarrow.int64())
        return col.to_pylist()
    if getattr(col, "dtype", None) is not None and col.dtype.kind == "M":
        col = col.astype("datetime64[s]").astype("int64")
    return col.tolist() if hasattr(col, "tolist") else list(col)


def _columns(rows: Any, names: Sequence[str]) -> Optional[list]:
    """Column lists of a pyarrow Table or a mapping of arrays, None for row tuples."""
    if hasattr(rows, "column_names") and hasattr(rows, "column"):
        return [_column(rows.column(n)) for n in names]
    if isinstance(rows, Mapping):
        return [_column(rows[n]) for n in names]
    return None


def _interval_tuples(rows: Iterable) -> Iterator[tuple[int, int, float, int, int]]:
    for ts, ch, v, raw, st in rows:
        yield int(ts), int(ch), float(v), int(raw), int(st)


class Store:
    """Devices, routes, keys, cursors, readings, jobs, audit, frames, metrics, schedules."""

    def __init__(
        self,
        url: str = "sqlite:///osgp.db",
        *,
        vault: Optional[KeyVault] = None,
        migrate: bool = True,
    ) -> None:
        self.vault = vault
        self._batch: Optional[Connection] = None
        # per (thread, read-only?): a connection kept open between calls (see _transaction)
        self._kept: dict[tuple[int, bool], Connection] = {}
        try:
            u = make_url(url)
        except (SQLAlchemyError, ValueError):
            raise StoreError("not a database URL", operation="open") from None
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        self.url = u.render_as_string(hide_password=True)
        self.dialect = u.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise StoreError(
                f"unsupported database {self.dialect!r}", url=self.url, operation="open"
            )
        self._insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        self._mark = "?" if self.dialect == "sqlite" else "%s"
        with self._guard("open"):
            try:
                self._engine = sa.create_engine(u)
            except ImportError as e:
                raise StoreError(
                    f"the driver is not installed ({e.name}); for PostgreSQL: "
                    f"pip install 'osgp[postgres]'",
                    url=self.url,
                    operation="open",
                ) from None
            if self.dialect == "sqlite":
                _sqlite_setup(self._engine, u.database or "")
            self._dbapi_error = self._engine.dialect.loaded_dbapi.Error
            if migrate:
                self.migrate()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        kept, self._kept = self._kept, {}
        for conn in kept.values():
            try:
                conn.close()
            except SQLAlchemyError:  # e.g. from a thread that has gone
                pass
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing

    @contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            yield
        except Exception as e:
            self._database_error(e, operation)
            raise

    def _database_error(self, e: BaseException, operation: str) -> None:
        """Raise the StoreError that a database's ``e`` means; return on any other."""
        if isinstance(e, (StoreError, ConfigurationError, AuthenticationError)):
            return
        if (
            not isinstance(e, SQLAlchemyError)
            and not isinstance(e, getattr(self, "_dbapi_error", ()))
            and type(e).__module__.split(".")[0] not in ("alembic", "sqlalchemy")
        ):
            return
        orig = getattr(e, "orig", None) or e
        reason = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        raise StoreError(reason, url=self.url, operation=operation) from None

    def _tx(self, operation: str) -> ContextManager[Connection]:
        """One transaction; on SQLite a write transaction (BEGIN IMMEDIATE).
        Inside :meth:`batch`, the batch's transaction."""
        if self._batch is not None:
            return _InBatch(self, operation)
        return self._own_tx(operation)

    @contextmanager
    def _own_tx(self, operation: str) -> Iterator[Connection]:
        with self._guard(operation), self._transaction(False) as conn:
            yield conn

    def _connect(self, read: bool) -> Connection:
        conn = self._engine.connect()
        if read:  # the SQLite BEGIN listener makes it a deferred BEGIN
            conn.execution_options(osgp_read=True)
        return conn

    @contextmanager
    def _transaction(self, read: bool) -> Iterator[Connection]:
        """A transaction on this thread's kept connection for reads or for
        writes: a BEGIN and a COMMIT, without the pool's checkout and its reset
        (a ROLLBACK) on return each call.  A call made inside another call's
        transaction on the same thread gets a connection of its own."""
        key = (threading.get_ident(), read)
        conn = self._kept.get(key)
        if conn is not None and conn.in_transaction():
            with self._connect(read) as other, other.begin():
                yield other
            return
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept[key] = self._connect(read)
        try:
            with conn.begin():
                yield conn
        except BaseException:
            if conn.invalidated:  # a broken connection is not kept
                del self._kept[key]
                conn.close()
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make the writes called inside one transaction, committed when the
        block ends (rolled back, all of them, if it raises).  Reads inside it
        see only what is committed."""
        if self._batch is not None:
            yield
            return
        with self._guard("batch"), self._transaction(False) as conn:
            self._batch = conn
            try:
                yield
            finally:
                self._batch = None

    @contextmanager
    def _read(self, operation: str) -> Iterator[Connection]:
        """One read-only transaction (on SQLite a deferred BEGIN: no write lock)."""
        with self._guard(operation), self._transaction(True) as conn:
            yield conn

    def migrate(self) -> None:
        """Create or upgrade the schema to the migrations' head (idempotent)."""
        from alembic import command

        with self._tx("migrate") as conn:
            if self.dialect == "postgresql":  # one migrating process at a time
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(1129271632)")
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _missing(self, operation: str, what: str) -> StoreError:
        return StoreError(what, url=self.url, operation=operation)

    # ---- devices

    def upsert_device(
        self,
        neuron_id: bytes,
        *,
        serial: Optional[str] = None,
        segment: Optional[str] = None,
        subnet: Optional[int] = None,
        node: Optional[int] = None,
        status: Optional[str] = None,
        meta: Optional[dict] = None,
    ) -> int:
        """The device's id, creating it if new; only the fields given change."""
        given = {
            k: v
            for k, v in dict(
                serial=serial, segment=segment, subnet=subnet, node=node, status=status, meta=meta
            ).items()
            if v is not None
        }
        _json(meta, "a device's meta")
        ins = self._insert(s.devices).values(
            neuron_id=_neuron(neuron_id), **{"meta": {}, "status": "new", **given}
        )
        change = {k: ins.excluded[k] for k in given} or {"neuron_id": ins.excluded.neuron_id}
        stmt = ins.on_conflict_do_update(index_elements=["neuron_id"], set_=change).returning(
            s.devices.c.id
        )
        with self._tx("upsert_device") as conn:
            return int(conn.execute(stmt).scalar_one())

    def update_meta(
        self, device_id: int, changes: dict, *, cursor: Optional[tuple[str, dict]] = None
    ) -> None:
        """Set keys of a device's meta (the others stay), with a cursor, in one transaction."""
        m = self._mark
        meta_mark = m if self.dialect == "sqlite" else f"CAST({m} AS json)"
        with self._tx("update_meta") as conn:
            row = _run(conn, f"SELECT meta FROM devices WHERE id = {m}", (device_id,), one=True)
            if row is None:
                raise self._missing("update_meta", f"no device with id {device_id}")
            meta = json.loads(row[0]) if isinstance(row[0], str) else dict(row[0] or {})
            _run(
                conn,
                f"UPDATE devices SET meta = {meta_mark} WHERE id = {m}",
                (_json({**meta, **changes}, "a device's meta"), device_id),
            )
            self._put_cursor(conn, device_id, cursor)

    def device(self, device_id: int) -> Device:
        with self._read("device") as conn:
            row = conn.execute(s.devices.select().where(s.devices.c.id == device_id)).first()
        if row is None:
            raise self._missing("device", f"no device with id {device_id}")
        return _device(row)

    def device_by_neuron(self, neuron_id: bytes) -> Optional[Device]:
        q = s.devices.select().where(s.devices.c.neuron_id == _neuron(neuron_id))
        with self._read("device_by_neuron") as conn:
            row = conn.execute(q).first()
        return None if row is None else _device(row)

    def devices(
        self, *, segment: Optional[str] = None, status: Optional[str] = None
    ) -> list[Device]:
        q = s.devices.select().order_by(s.devices.c.id)
        if segment is not None:
            q = q.where(s.devices.c.segment == segment)
        if status is not None:
            q = q.where(s.devices.c.status == status)
        with self._read("devices") as conn:
            return [_device(r) for r in conn.execute(q)]

    def set_status(self, device_id: int, status: str, at: float, reason: str = "") -> None:
        """Set a meter's status; ``status_since`` and an audit row change only when it does."""
        d = s.devices
        with self._tx("set_status") as conn:
            old = conn.execute(
                sa.select(d.c.status).where(d.c.id == device_id).with_for_update()
            ).scalar_one_or_none()
            if old is None:
                raise self._missing("set_status", f"no device with id {device_id}")
            if old == status:
                return
            conn.execute(
                d.update().where(d.c.id == device_id).values(status=status, status_since=at)
            )
            detail = f"{old} -> {status}" + (f": {reason}" if reason else "")
            conn.execute(
                s.audit.insert().values(
                    at=at, actor="store", action="status", detail=detail, device_id=device_id
                )
            )

    # ---- topology and routes

    def put_routes(self, device_id: int, routes: list[tuple[Path_, float]]) -> None:
        """Replace a device's routes; the rank is the list order (0 = preferred)."""
        rows = [
            dict(
                device_id=device_id,
                rank=i,
                path=[[int(a), int(b)] for a, b in path],
                quality=float(q),
                successes=0,
                failures=0,
            )
            for i, (path, q) in enumerate(routes)
        ]
        with self._tx("put_routes") as conn:
            conn.execute(s.routes.delete().where(s.routes.c.device_id == device_id))
            if rows:
                conn.execute(s.routes.insert(), rows)

    def routes(self, device_id: int) -> list[Route]:
        r = s.routes
        q = r.select().where(r.c.device_id == device_id).order_by(r.c.rank)
        with self._read("routes") as conn:
            return [_route(x) for x in conn.execute(q)]

    def route_outcome(self, route_id: int, ok: bool) -> None:
        """Count a success or failure on a route (a replaced route's id is ignored)."""
        col = "successes" if ok else "failures"
        sql = f"UPDATE routes SET {col} = {col} + 1 WHERE id = {self._mark}"
        with self._tx("route_outcome") as conn:
            _run(conn, sql, (route_id,))

    def put_link(self, segment: str, a: bytes, b: bytes, ssi: float, margin: float) -> None:
        ins = self._insert(s.links).values(
            segment=segment, a=bytes(a), b=bytes(b), ssi=float(ssi), margin=float(margin)
        )
        stmt = ins.on_conflict_do_update(
            index_elements=["segment", "a", "b"],
            set_={"ssi": ins.excluded.ssi, "margin": ins.excluded.margin},
        )
        with self._tx("put_link") as conn:
            conn.execute(stmt)

    def links(self, segment: Optional[str] = None) -> list[Link]:
        q = s.links.select().order_by(s.links.c.segment, s.links.c.a, s.links.c.b)
        if segment is not None:
            q = q.where(s.links.c.segment == segment)
        with self._read("links") as conn:
            return [
                Link(x.segment, bytes(x.a), bytes(x.b), x.ssi, x.margin) for x in conn.execute(q)
            ]

    # ---- keys

    def meter_records(
        self, segment: str, purposes: Union[str, Sequence[str]], streams: Sequence[str] = ()
    ) -> list[MeterRecord]:
        """Every device of ``segment`` (by id) with its active key of the first
        of ``purposes`` it has,
        its routes (best first) and its cursors of ``streams``: what
        :meth:`device`, :meth:`key`, :meth:`routes` and :meth:`cursor` give
        one device at a time, in four queries of one read transaction."""
        vault = self._vault("meter_records")
        d, k, r, c = s.devices, s.keys, s.routes, s.cursors
        mine = sa.select(d.c.id).where(d.c.segment == segment)
        with self._read("meter_records") as conn:
            q = d.select().where(d.c.segment == segment).order_by(d.c.id)
            devs = [_device(x) for x in conn.execute(q)]
            wanted = [purposes] if isinstance(purposes, str) else list(purposes)
            rank = {p: i for i, p in enumerate(wanted)}
            sealed: dict[int, tuple[str, bytes]] = {}
            for x in conn.execute(
                sa.select(k.c.device_id, k.c.purpose, k.c.sealed)
                .where(k.c.device_id.in_(mine), k.c.purpose.in_(wanted), k.c.state == "active")
                .order_by(k.c.id)  # the newest last, so it wins within a purpose
            ):
                had = sealed.get(x.device_id)
                if had is None or rank[x.purpose] <= rank[had[0]]:
                    sealed[x.device_id] = (x.purpose, x.sealed)
            routes: dict[int, list[Route]] = {}
            for x in conn.execute(
                r.select().where(r.c.device_id.in_(mine)).order_by(r.c.device_id, r.c.rank)
            ):
                routes.setdefault(x.device_id, []).append(_route(x))
            cursors: dict[int, dict] = {}
            if streams:
                for x in conn.execute(
                    sa.select(c.c.device_id, c.c.stream, c.c.value).where(
                        c.c.device_id.in_(mine), c.c.stream.in_(list(streams))
                    )
                ):
                    v = x.value
                    cursors.setdefault(x.device_id, {})[x.stream] = (
                        json.loads(v) if isinstance(v, str) else v
                    )
        out = []
        for dev in devs:
            key, purpose = None, None
            if dev.id in sealed:
                purpose, box = sealed[dev.id]
                try:
                    key = vault.open(dev.id, purpose, box)
                except AuthenticationError as e:
                    raise AuthenticationError(f"store {self.url}: {e}") from None
            saved = cursors.get(dev.id, {})
            out.append(
                MeterRecord(
                    dev, key, purpose, routes.get(dev.id, []), {n: saved.get(n) for n in streams}
                )
            )
        return out

    def _vault(self, operation: str) -> KeyVault:
        if self.vault is None:
            raise ConfigurationError(
                f"store {self.url}: {operation} needs a key vault "
                f"(Store(..., vault=KeyVault.from_env()))"
            )
        return self.vault

    def put_key(self, device_id: int, purpose: str, key: bytes, *, state: str = "active") -> None:
        """Store a key sealed by the vault.  An active or pending key already
        there becomes retired (kept), so no key is ever lost."""
        if state not in KEY_STATES:
            raise ConfigurationError(f"store: key state must be one of {KEY_STATES}")
        sealed = self._vault("put_key").seal(device_id, purpose, key)
        k = s.keys
        with self._tx("put_key") as conn:
            if state != "retired":
                conn.execute(
                    k.update()
                    .where(k.c.device_id == device_id, k.c.purpose == purpose, k.c.state == state)
                    .values(state="retired")
                )
            conn.execute(
                k.insert().values(device_id=device_id, purpose=purpose, state=state, sealed=sealed)
            )

    def key(self, device_id: int, purpose: str, *, state: str = "active") -> Optional[bytes]:
        """The key in that state (the newest one for ``retired``), None if there is none."""
        vault = self._vault("key")
        k = s.keys
        q = (
            sa.select(k.c.sealed)
            .where(k.c.device_id == device_id, k.c.purpose == purpose, k.c.state == state)
            .order_by(k.c.id.desc())
            .limit(1)
        )
        with self._read("key") as conn:
            sealed = conn.execute(q).scalar_one_or_none()
        return None if sealed is None else self._open_key(vault, device_id, purpose, sealed)

    def _open_key(self, vault: KeyVault, device_id: int, purpose: str, sealed: bytes) -> bytes:
        try:
            return vault.open(device_id, purpose, sealed)
        except AuthenticationError as e:  # named with the store it came from
            raise AuthenticationError(f"store {self.url}: {e}") from None

    def device_keys(self, purpose: str, *, state: str = "active") -> list[tuple[Device, bytes]]:
        """Every device's key of ``purpose`` in that state, opened (for a
        tool that verifies captured traffic: ``osgp decode --keys store:URL``)."""
        vault = self._vault("device_keys")
        k, d = s.keys, s.devices
        q = (
            sa.select(d, k.c.sealed)
            .join(k, k.c.device_id == d.c.id)
            .where(k.c.purpose == purpose, k.c.state == state)
            .order_by(d.c.id, k.c.id)
        )
        with self._read("device_keys") as conn:
            rows = conn.execute(q).all()
        out: dict[int, tuple[Device, bytes]] = {}
        for row in rows:  # the newest of a state wins, as key() takes it
            dev = _device(row)
            out[dev.id] = (dev, self._open_key(vault, dev.id, purpose, row.sealed))
        return list(out.values())

    def promote_key(self, device_id: int, purpose: str) -> None:
        """The pending key becomes active and the active one retired (kept)."""
        k = s.keys
        mine = (k.c.device_id == device_id) & (k.c.purpose == purpose)
        with self._tx("promote_key") as conn:
            if (
                conn.execute(
                    sa.select(k.c.id).where(mine, k.c.state == "pending").with_for_update()
                ).first()
                is None
            ):
                raise self._missing(
                    "promote_key", f"device {device_id} has no pending {purpose!r} key"
                )
            conn.execute(k.update().where(mine, k.c.state == "active").values(state="retired"))
            conn.execute(k.update().where(mine, k.c.state == "pending").values(state="active"))

    # ---- cursors and readings

    def cursor(self, device_id: int, stream: str) -> Optional[dict]:
        m = self._mark
        sql = f"SELECT value FROM cursors WHERE device_id = {m} AND stream = {m}"
        with self._read("cursor") as conn:
            row = conn.exec_driver_sql(sql, (device_id, stream)).first()
        if row is None:
            return None
        value = row[0]
        return json.loads(value) if isinstance(value, str) else value

    def set_cursor(self, device_id: int, stream: str, value: dict) -> None:
        with self._tx("set_cursor") as conn:
            self._put_cursor(conn, device_id, (stream, value))

    def _put_cursor(
        self, conn: Connection, device_id: int, cursor: Optional[tuple[str, dict]]
    ) -> None:
        if cursor is None:
            return
        stream, value = cursor
        text = _json(value, f"the {stream!r} cursor")
        m = self._mark
        value_mark = m if self.dialect == "sqlite" else f"CAST({m} AS json)"
        sql = (
            f"INSERT INTO cursors (device_id, stream, value) VALUES ({m}, {m}, {value_mark}) "
            "ON CONFLICT (device_id, stream) DO UPDATE SET value = excluded.value"
        )
        _run(conn, sql, (device_id, stream, text))

    def _insert_rows(self, conn: Connection, table: sa.Table, params: Iterable[Sequence]) -> int:
        """executemany straight on the driver's cursor (no per-row SQLAlchemy work);
        the number of rows newly stored."""
        cols = ", ".join(c.name for c in table.columns)
        marks = ", ".join([self._mark] * len(table.columns))
        sql = f"INSERT INTO {table.name} ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if self.dialect == "postgresql":
                params = list(params)
                if not params:
                    return 0
            cur.executemany(sql, params)  # type: ignore[arg-type]
            return max(cur.rowcount, 0)
        finally:
            cur.close()

    def commit_intervals(
        self, device_id: int, rows: Any, *, cursor: Optional[tuple[str, dict]] = None
    ) -> int:
        """Store load-profile intervals with the cursor in one transaction.

        ``rows``: (ts_utc, channel, value, raw, status) tuples, or a pyarrow
        Table / mapping of arrays with those column names.  ``status`` holds
        the interval's common flags (``osgp.loadprofile.FLAG_*``) in bits 0-3
        and the channel status code (``osgp.loadprofile.CHANNEL_STATUS``) in
        bits 4-7.  Returns the number of intervals newly stored.
        """
        try:
            cols = _columns(rows, _INTERVAL_COLUMNS)
            with self._tx("commit_intervals") as conn:
                if self.dialect == "postgresql":
                    n = self._pg_intervals(conn, device_id, rows, cols)
                else:
                    if cols is None:
                        params: Iterable = (
                            (device_id, ch, ts, v, raw, st)
                            for ts, ch, v, raw, st in _interval_tuples(rows)
                        )
                    else:
                        ts, ch, v, raw, st = cols
                        params = zip(repeat(device_id), ch, ts, v, raw, st)
                    n = self._insert_rows(conn, s.intervals, params)
                self._put_cursor(conn, device_id, cursor)
        except (TypeError, ValueError, KeyError) as e:
            if isinstance(e, ConfigurationError):
                raise
            raise ConfigurationError(
                "store: interval rows are (ts_utc: int UTC seconds, channel: int, value: float, "
                f"raw: int, status: int), or columns with those names ({type(e).__name__}: {e})"
            ) from None
        return n

    def _pg_intervals(
        self, conn: Connection, device_id: int, rows: Any, cols: Optional[list]
    ) -> int:
        # one statement from columns: INSERT .. SELECT FROM unnest(arrays)
        if cols is None:
            rows = list(_interval_tuples(rows))
            if not rows:
                return 0
            cols = [list(c) for c in zip(*rows)]
        # each column as one array literal, parsed by the server: far cheaper than the
        # driver adapting every element (str of a float round-trips exactly)
        ts, ch, v, raw, st = ("{" + ",".join(map(str, c)) + "}" for c in cols)
        sql = (
            "INSERT INTO intervals (device_id, channel, ts_utc, value, raw, status) "
            "SELECT %s, * FROM unnest(%s::int2[], %s::int8[], %s::float8[], %s::int8[], "
            "%s::int2[]) ON CONFLICT DO NOTHING"
        )
        cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(sql, (device_id, ch, ts, v, raw, st))
            return max(cur.rowcount, 0)
        finally:
            cur.close()

    def commit_registers(
        self,
        device_id: int,
        read_at: float,
        values: Mapping[str, tuple[float, str]],
        *,
        cursor: Optional[tuple[str, dict]] = None,
    ) -> int:
        """Store register values read at ``read_at`` (UTC epoch seconds, kept to
        the millisecond so two reads within a second stay apart): name -> (value, unit)."""
        return self.commit_snapshots(device_id, [(read_at, values)], cursor=cursor)

    def commit_snapshots(
        self,
        device_id: int,
        snapshots: Iterable[tuple[float, Mapping[str, tuple[float, str]]]],
        *,
        cursor: Optional[tuple[str, dict]] = None,
    ) -> int:
        """Store register values of several moments, (read_at, values) as
        :meth:`commit_registers` takes them, with the cursor in one transaction
        (a meter's self reads: all of them stored, or none)."""
        params = [
            (device_id, name, round(float(read_at) * 1000), float(v), unit)
            for read_at, values in snapshots
            for name, (v, unit) in values.items()
        ]
        with self._tx("commit_registers") as conn:
            n = self._insert_rows(conn, s.registers, params)
            self._put_cursor(conn, device_id, cursor)
        return n

    def commit_events(
        self,
        device_id: int,
        rows: Iterable[tuple[int, int, int, str, bytes]],
        *,
        cursor: Optional[tuple[str, dict]] = None,
    ) -> int:
        """Store events (ts_utc, seq, code, name, arg), unique by (seq, ts_utc)."""
        params = (
            (device_id, int(seq), int(ts), int(code), name, bytes(arg))
            for ts, seq, code, name, arg in rows
        )
        with self._tx("commit_events") as conn:
            n = self._insert_rows(conn, s.events, params)
            self._put_cursor(conn, device_id, cursor)
        return n

    def _arrow(self, operation: str, q: sa.Select, types: Mapping[str, Any]) -> pyarrow.Table:
        pa = _pyarrow()
        with self._read(operation) as conn:
            rows = conn.execute(q).all()
        names = list(types)
        data: list = list(zip(*rows)) if rows else [[] for _ in names]
        arrays = []
        for name, col in zip(names, data):
            t = types[name]
            if pa.types.is_timestamp(t):
                arrays.append(pa.array(col, pa.int64()).cast(t))
            else:
                arrays.append(pa.array(col, t))
        return pa.table(arrays, names=names)

    def intervals(
        self,
        device_id: Optional[int] = None,
        *,
        since: Optional[int] = None,
        until: Optional[int] = None,
    ) -> pyarrow.Table:
        """Intervals ordered by device, channel and time; ``since <= ts_utc < until``."""
        pa = _pyarrow()
        t = s.intervals
        q = sa.select(t.c.device_id, t.c.channel, t.c.ts_utc, t.c.value, t.c.raw, t.c.status)
        if device_id is not None:
            q = q.where(t.c.device_id == device_id)
        if since is not None:
            q = q.where(t.c.ts_utc >= since)
        if until is not None:
            q = q.where(t.c.ts_utc < until)
        q = q.order_by(t.c.device_id, t.c.channel, t.c.ts_utc)
        return self._arrow(
            "intervals",
            q,
            {
                "device_id": pa.int64(),
                "channel": pa.int16(),
                "ts_utc": _utc(pa),
                "value": pa.float64(),
                "raw": pa.int64(),
                "status": pa.int16(),
            },
        )

    def registers(self, device_id: Optional[int] = None) -> pyarrow.Table:
        pa = _pyarrow()
        t = s.registers
        q = sa.select(t.c.device_id, t.c.name, t.c.read_at, t.c.value, t.c.unit)
        if device_id is not None:
            q = q.where(t.c.device_id == device_id)
        q = q.order_by(t.c.device_id, t.c.read_at, t.c.name)
        return self._arrow(
            "registers",
            q,
            {
                "device_id": pa.int64(),
                "name": pa.string(),
                "read_at": pa.timestamp("ms", tz="UTC"),  # stored in milliseconds
                "value": pa.float64(),
                "unit": pa.string(),
            },
        )

    def events(self, device_id: Optional[int] = None) -> pyarrow.Table:
        pa = _pyarrow()
        t = s.events
        q = sa.select(t.c.device_id, t.c.ts_utc, t.c.seq, t.c.code, t.c.name, t.c.arg)
        if device_id is not None:
            q = q.where(t.c.device_id == device_id)
        q = q.order_by(t.c.device_id, t.c.ts_utc, t.c.seq)
        return self._arrow(
            "events",
            q,
            {
                "device_id": pa.int64(),
                "ts_utc": _utc(pa),
                "seq": pa.int64(),
                "code": pa.int32(),
                "name": pa.string(),
                "arg": pa.binary(),
            },
        )

    # ---- jobs

    def create_job(
        self,
        kind: str,
        params: dict,
        device_ids: list[int],
        *,
        at: float,
        not_before: Optional[float] = None,
    ) -> int:
        """A job with one pending outcome per target device."""
        _json(params, "a job's params")
        with self._tx("create_job") as conn:
            job_id = int(
                conn.execute(
                    s.jobs.insert()
                    .values(kind=kind, params=params, created_at=at, not_before=not_before)
                    .returning(s.jobs.c.id)
                ).scalar_one()
            )
            if device_ids:
                conn.execute(
                    s.outcomes.insert(),
                    [
                        dict(
                            job_id=job_id,
                            device_id=d,
                            state="pending",
                            attempts=0,
                            detail="",
                            updated_at=at,
                        )
                        for d in dict.fromkeys(device_ids)
                    ],
                )
        return job_id

    def set_outcome(
        self,
        job_id: int,
        device_id: int,
        state: str,
        *,
        at: float,
        code: Optional[int] = None,
        detail: str = "",
    ) -> None:
        """Record a target's state.  Idempotent: the same state again, or any
        state after a final one (confirmed, given_up), changes nothing.  An
        attempt is counted on entering ``sent``, or ``confirmed``/``failed``
        straight from ``pending``/``failed`` (an attempt never marked sent)."""
        if state not in JOB_STATES:
            raise ConfigurationError(f"store: job state must be one of {JOB_STATES}")
        m = self._mark
        final = ", ".join(f"'{x}'" for x in _FINAL)
        # one statement on the driver, as the hot paths are (an outcome per
        # meter per round); the attempt rule as the docstring says
        sql = (
            "INSERT INTO outcomes (job_id, device_id, state, attempts, code, detail, updated_at) "
            f"VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}) "
            "ON CONFLICT (job_id, device_id) DO UPDATE SET state = excluded.state, "
            "attempts = outcomes.attempts + CASE WHEN excluded.state = 'sent' THEN 1 "
            "WHEN excluded.state IN ('confirmed', 'failed') "
            "AND outcomes.state IN ('pending', 'failed') THEN 1 ELSE 0 END, "
            "code = excluded.code, detail = excluded.detail, updated_at = excluded.updated_at "
            f"WHERE outcomes.state <> excluded.state AND outcomes.state NOT IN ({final})"
        )
        params = (
            job_id,
            device_id,
            state,
            int(state in ("sent", "confirmed", "failed")),
            code,
            detail,
            float(at),
        )
        with self._tx("set_outcome") as conn:
            _run(conn, sql, params)

    def _jobs(self, conn: Connection, q: sa.Select) -> list[Job]:
        found = conn.execute(q).all()
        o = s.outcomes
        counts: dict[int, dict] = {j.id: {} for j in found}
        if counts:
            for job_id, state, n in conn.execute(
                sa.select(o.c.job_id, o.c.state, sa.func.count())
                .where(o.c.job_id.in_(list(counts)))
                .group_by(o.c.job_id, o.c.state)
            ):
                counts[job_id][state] = int(n)
        return [
            Job(j.id, j.kind, j.params, j.created_at, j.not_before, counts[j.id]) for j in found
        ]

    def job(self, job_id: int) -> Job:
        with self._read("job") as conn:
            found = self._jobs(conn, s.jobs.select().where(s.jobs.c.id == job_id))
        if not found:
            raise self._missing("job", f"no job with id {job_id}")
        return found[0]

    def jobs(self, *, kind: Optional[str] = None, open_only: bool = False) -> list[Job]:
        j, o = s.jobs, s.outcomes
        q = j.select().order_by(j.c.id)
        if kind is not None:
            q = q.where(j.c.kind == kind)
        if open_only:
            q = q.where(j.c.id.in_(sa.select(o.c.job_id).where(o.c.state.notin_(_FINAL))))
        with self._read("jobs") as conn:
            return self._jobs(conn, q)

    def outcomes(self, job_id: int) -> list[Outcome]:
        o = s.outcomes
        q = o.select().where(o.c.job_id == job_id).order_by(o.c.device_id)
        with self._read("outcomes") as conn:
            return [
                Outcome(x.job_id, x.device_id, x.state, x.attempts, x.code, x.detail, x.updated_at)
                for x in conn.execute(q)
            ]

    def pending_targets(self, job_id: int) -> list[int]:
        """Targets still to be tried: pending or failed (not sent, not final)."""
        o = s.outcomes
        q = (
            sa.select(o.c.device_id)
            .where(o.c.job_id == job_id, o.c.state.in_(("pending", "failed")))
            .order_by(o.c.device_id)
        )
        with self._read("pending_targets") as conn:
            return [int(d) for d in conn.execute(q).scalars()]

    # ---- audit log and raw frames

    def audit(
        self, at: float, actor: str, action: str, detail: str = "", device_id: Optional[int] = None
    ) -> None:
        with self._tx("audit") as conn:
            conn.execute(
                s.audit.insert().values(
                    at=at, actor=actor, action=action, detail=detail, device_id=device_id
                )
            )

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """The newest entries first."""
        q = s.audit.select().order_by(s.audit.c.id.desc()).limit(limit)
        with self._read("audit_log") as conn:
            return [
                AuditEntry(x.id, x.at, x.actor, x.action, x.detail, x.device_id)
                for x in conn.execute(q)
            ]

    def store_frames(self, segment: str, rows: Iterable[tuple[int, str, bytes]]) -> int:
        """Keep raw frames (ts_ns, 'tx' | 'rx', frame) for later batch decoding."""
        f = s.frames
        params = [
            dict(segment=segment, ts_ns=int(ts), direction=d, frame=bytes(fr)) for ts, d, fr in rows
        ]
        if any(p["direction"] not in ("tx", "rx") for p in params):
            raise ConfigurationError("store: a frame's direction is 'tx' or 'rx'")
        if not params:
            return 0
        with self._tx("store_frames") as conn:
            conn.execute(f.insert(), params)
        return len(params)

    def frames(self, segment: Optional[str] = None) -> list[tuple[int, str, bytes]]:
        f = s.frames
        q = sa.select(f.c.ts_ns, f.c.direction, f.c.frame).order_by(f.c.ts_ns, f.c.id)
        if segment is not None:
            q = q.where(f.c.segment == segment)
        with self._read("frames") as conn:
            return [(int(t), d, bytes(fr)) for t, d, fr in conn.execute(q)]

    # ---- metrics

    def record_metrics(self, day: str, segment: str, **counters: float) -> None:
        """Add to the day's counters of a segment (reads_ok, reads_failed, retries, ...)."""
        if not counters:
            return
        m = s.metrics
        ins = self._insert(m)
        stmt = ins.on_conflict_do_update(
            index_elements=["day", "segment", "name"],
            set_={"value": m.c.value + ins.excluded.value},
        )
        with self._tx("record_metrics") as conn:
            conn.execute(
                stmt,
                [
                    dict(day=day, segment=segment, name=k, value=float(v))
                    for k, v in counters.items()
                ],
            )

    def metrics(self) -> pyarrow.Table:
        """One row per day and segment, one float column per counter (0 where absent)."""
        pa = _pyarrow()
        m = s.metrics
        with self._read("metrics") as conn:
            rows = conn.execute(
                sa.select(m.c.day, m.c.segment, m.c.name, m.c.value).order_by(m.c.day, m.c.segment)
            ).all()
        names = sorted({r.name for r in rows})
        keys = list(dict.fromkeys((r.day, r.segment) for r in rows))
        at = {k: i for i, k in enumerate(keys)}
        cols = {n: [0.0] * len(keys) for n in names}
        for r in rows:
            cols[r.name][at[(r.day, r.segment)]] = r.value
        return pa.table(
            {
                "day": pa.array([k[0] for k in keys], pa.string()),
                "segment": pa.array([k[1] for k in keys], pa.string()),
                **{n: pa.array(v, pa.float64()) for n, v in cols.items()},
            }
        )

    # ---- schedules

    def put_schedule(
        self, name: str, kind: str, params: dict, period_s: float, next_at: float
    ) -> None:
        if not period_s > 0:
            raise ConfigurationError("store: a schedule's period must be positive")
        _json(params, "a schedule's params")
        ins = self._insert(s.schedules).values(
            name=name, kind=kind, params=params, period_s=float(period_s), next_at=float(next_at)
        )
        stmt = ins.on_conflict_do_update(
            index_elements=["name"],
            set_={c: ins.excluded[c] for c in ("kind", "params", "period_s", "next_at")},
        )
        with self._tx("put_schedule") as conn:
            conn.execute(stmt)

    def schedules(self, *, due_at: Optional[float] = None) -> list[Schedule]:
        """All schedules by next run, or only those due at ``due_at``."""
        t = s.schedules
        q = t.select().order_by(t.c.next_at, t.c.name)
        if due_at is not None:
            q = q.where(t.c.next_at <= due_at)
        with self._read("schedules") as conn:
            return [
                Schedule(x.name, x.kind, x.params, x.period_s, x.next_at) for x in conn.execute(q)
            ]

    def advance_schedule(self, name: str, now: float) -> float:
        """Move a schedule past ``now`` by whole periods (missed runs are not
        replayed); the new ``next_at``."""
        t = s.schedules
        with self._tx("advance_schedule") as conn:
            row = conn.execute(t.select().where(t.c.name == name).with_for_update()).first()
            if row is None:
                raise self._missing("advance_schedule", f"no schedule {name!r}")
            nxt = row.next_at
            if now >= nxt:
                nxt += (math.floor((now - nxt) / row.period_s) + 1) * row.period_s
            conn.execute(t.update().where(t.c.name == name).values(next_at=nxt))
        return nxt


class _InBatch:
    """A store call's transaction inside :meth:`Store.batch`: the batch's
    connection, database errors as StoreError (the collection's many small
    writes, without a generator's context managers each)."""

    __slots__ = ("store", "operation")

    def __init__(self, store: Store, operation: str) -> None:
        self.store, self.operation = store, operation

    def __enter__(self) -> Connection:
        assert self.store._batch is not None
        return self.store._batch

    def __exit__(self, _type: Any, exc: Optional[BaseException], _tb: Any) -> None:
        if exc is not None:
            self.store._database_error(exc, self.operation)


def _device(row: Any) -> Device:
    return Device(
        row.id,
        bytes(row.neuron_id),
        row.serial,
        row.segment,
        row.subnet,
        row.node,
        row.status,
        row.status_since,
        dict(row.meta or {}),
    )


def _route(x: Any) -> Route:
    return Route(
        x.id, x.device_id, x.rank, [(a, b) for a, b in x.path], x.quality, x.successes, x.failures
    )


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ConfigurationError(
            "store: reading tables needs pyarrow (pip install 'osgp[arrow]')"
        ) from None
    return pyarrow


def _utc(pa: Any) -> Any:
    return pa.timestamp("s", tz="UTC")


def _run(conn: Connection, sql: str, params: Sequence, *, one: bool = False) -> Any:
    """One statement in the driver's own paramstyle straight on its cursor, in
    ``conn``'s transaction (none of SQLAlchemy's per-statement work: the hot
    writes of a collection); with ``one``, the first row or None."""
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(sql, params)
        return cur.fetchone() if one else None
    finally:
        cur.close()


def alembic_config() -> Any:
    """An Alembic Config whose script location is the migrations in this package."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    return cfg


def _sqlite_setup(engine: sa.Engine, database: str) -> None:
    """WAL, foreign keys, a busy timeout, and transactions the driver does not
    open by itself: BEGIN IMMEDIATE takes the write lock up front, so two
    writers queue on the busy timeout instead of failing on a lock upgrade."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA busy_timeout = 30000")
        if database and database != ":memory:" and not database.startswith("file::memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives the process being killed (the
            # WAL is in the OS), only a power cut can roll back the newest
            # commits; FULL would fsync every commit (SQLite "PRAGMA
            # synchronous", "WAL mode" documentation)
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        read = conn.get_execution_options().get("osgp_read")
        # on the driver's connection: a statement through SQLAlchemy costs more than the BEGIN
        conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            "BEGIN" if read else "BEGIN IMMEDIATE"
        )
