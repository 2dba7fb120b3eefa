"""Bulk inserts below the ORM, for the JUnit ingest's hundred thousand rows per file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session


def driver_connection(conn: Connection) -> Any:
    """The DBAPI driver's own connection (psycopg's, for ``COPY``) under a SQLAlchemy connection."""
    raw = conn.connection.driver_connection
    if raw is None:  # only a connection that was invalidated has none
        raise RuntimeError("the database connection is closed")
    return raw


class BulkInsert:
    """Plain DBAPI ``executemany`` of tuples: SQLAlchemy's per-row parameter processing cost more than the
    database did (measured: ~3 s of 10 for 35k rows). Values arrive already in storage form: JSON as text,
    datetimes through the column type's own bind processor (the UTC rule of ``UTCDateTime``)."""

    def __init__(self, session: Session, table: Any, columns: Sequence[str], suffix: str = ""):
        self.conn = session.connection()
        dialect = self.conn.dialect
        ph = "?" if dialect.paramstyle == "qmark" else "%s"
        quote = dialect.identifier_preparer.quote
        cols = ", ".join(quote(c) for c in columns)
        self.sql = f"INSERT INTO {quote(table.name)} ({cols}) VALUES ({', '.join([ph] * len(columns))}){suffix}"
        # PostgreSQL: COPY, inside the same transaction (a plain insert has no ON CONFLICT clause)
        self.copy = (
            f"COPY {quote(table.name)} ({cols}) FROM STDIN" if dialect.name == "postgresql" and not suffix else None
        )

    def __call__(self, rows: list[tuple]) -> None:
        if not rows:
            return
        if self.copy is None:
            self.conn.exec_driver_sql(self.sql, rows)
            return
        with driver_connection(self.conn).cursor() as cur, cur.copy(self.copy) as cp:
            for row in rows:
                cp.write_row(row)


def datetime_bind(session: Session, column: Any) -> Callable[[Any], Any]:
    """The column type's own bind processor (the UTC rule of ``UTCDateTime``), for values sent as plain DBAPI
    parameters."""
    dialect = session.get_bind().dialect
    proc = column.type.dialect_impl(dialect).bind_processor(dialect)
    return proc or (lambda v: v)
