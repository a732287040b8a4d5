"""Store benchmark: a day of load profile (96 intervals x 4 channels) committed per
meter for 1,000 meters on SQLite, one transaction per meter with its cursor,
as ratios within one run (docs/conventions.md §12).

Group store-commit (384,000 rows into a fresh file database per round, WAL,
synchronous=FULL, the same table and primary key):
  store_tuples    Store.commit_intervals(rows as tuples, cursor=...)
  store_columns   Store.commit_intervals(dict of numpy columns, cursor=...)
  sqlite3         the honest baseline: the same rows through sqlite3's executemany
                  directly (INSERT .. ON CONFLICT DO NOTHING, BEGIN IMMEDIATE,
                  the cursor upsert, COMMIT), no SQLAlchemy
Wall time is bound by the fsync of each commit on a shared disk; add
--benchmark-timer=time.process_time to compare the CPU cost alone.
Run: PYTHONPATH=src python -m pytest benches/bench_store.py --benchmark-only
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from osgp.concentrator import Store

METERS, NINT, NCH = 1000, 96, 4
T0 = 1_764_547_200
NAMES = ("ts_utc", "channel", "value", "raw", "status")


def day_rows(m):
    return [
        (T0 + 900 * i, c, (i * 4 + c + m) * 0.25, i * 4 + c + m, 0)
        for i in range(NINT)
        for c in range(NCH)
    ]


ROWS = [day_rows(m) for m in range(METERS)]
COLUMNS = [{n: np.array([r[k] for r in rows]) for k, n in enumerate(NAMES)} for rows in ROWS]


class Fresh:
    """A new database with the schema and 1,000 devices, for each round."""

    def __init__(self, tmp_path):
        self.dir, self.n = tmp_path, 0
        self.store = None

    def __call__(self):
        if self.store is not None:
            self.store.close()
        self.n += 1
        self.path = self.dir / f"bench{self.n}.db"
        self.store = Store(f"sqlite:///{self.path}")
        self.ids = [self.store.upsert_device(m.to_bytes(6, "big")) for m in range(METERS)]
        return (), {}


@pytest.fixture
def fresh(tmp_path):
    f = Fresh(tmp_path)
    yield f
    if f.store is not None:
        f.store.close()


def check(fresh):
    assert fresh.store.intervals(fresh.ids[-1]).num_rows == NINT * NCH
    assert fresh.store.cursor(fresh.ids[-1], "lp") == {"block": 0, "interval": NINT - 1}


@pytest.mark.benchmark(group="store-commit")
@pytest.mark.parametrize("form", ["tuples", "columns"])
def test_store(benchmark, fresh, form):
    data = ROWS if form == "tuples" else COLUMNS
    cursor = ("lp", {"block": 0, "interval": NINT - 1})

    def run():
        n = 0
        for d, rows in zip(fresh.ids, data):
            n += fresh.store.commit_intervals(d, rows, cursor=cursor)
        return n

    assert benchmark.pedantic(run, setup=fresh, rounds=3) == METERS * NINT * NCH
    check(fresh)


@pytest.mark.benchmark(group="store-commit")
def test_sqlite3(benchmark, fresh):
    cursor = json.dumps({"block": 0, "interval": NINT - 1})
    ins = (
        "INSERT INTO intervals (device_id, channel, ts_utc, value, raw, status) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    )
    cur_sql = (
        "INSERT INTO cursors (device_id, stream, value) VALUES (?, 'lp', ?) "
        "ON CONFLICT (device_id, stream) DO UPDATE SET value = excluded.value"
    )

    def run():
        db = sqlite3.connect(fresh.path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA foreign_keys = ON")
        n = 0
        for d, rows in zip(fresh.ids, ROWS):
            db.execute("BEGIN IMMEDIATE")
            c = db.executemany(ins, [(d, ch, ts, v, raw, st) for ts, ch, v, raw, st in rows])
            n += c.rowcount
            db.execute(cur_sql, (d, cursor))
            db.execute("COMMIT")
        db.close()
        return n

    assert benchmark.pedantic(run, setup=fresh, rounds=3) == METERS * NINT * NCH
    check(fresh)
