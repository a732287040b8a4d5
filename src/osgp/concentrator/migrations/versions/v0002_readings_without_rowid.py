"""Readings tables (intervals, registers, events) on SQLite as WITHOUT ROWID
tables: each row lives in its primary key's B-tree, so storing a reading
writes one tree instead of the table and its primary-key index (SQLite
documentation, "Clustered Indexes and the WITHOUT ROWID Optimization").
Nothing changes on other databases, nor in the rows or their keys.

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("intervals", "registers", "events")


def _rebuild(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TABLES:
        # a copy with the same columns, key and foreign key, then renamed over the table
        with op.batch_alter_table(
            name, recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}
        ):
            pass


def upgrade() -> None:
    _rebuild(False)


def downgrade() -> None:
    _rebuild(True)
