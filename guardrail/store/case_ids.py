"""Test rows (``tests``) of a JUnit ingest: insert the ones not stored yet, and read back every row's id, a batch
of rows at a time (plain DBAPI statements below the ORM, as in :mod:`guardrail.store.bulk_insert`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from guardrail.store import junit_models as jm
from guardrail.store import models as m
from guardrail.store.bulk_insert import BulkInsert, datetime_bind, driver_connection

_LOOKUP_CHUNK = 500  # keys per IN (...) lookup: well under SQLite's bound-parameter limit
_IF_ABSENT = " ON CONFLICT (key_hash) DO NOTHING"

CASE_COLUMNS = ("key_hash", "key", "test_id", "suite", "file", "classname", "name", "params", "hardware")


class CaseIds:
    """Test rows -> ``tests.id``: insert-if-absent (the test may be stored already, or a concurrent ingest may
    have created it a moment ago), then read the ids back. Nothing is kept between batches: a file's rows name
    each test once, and a dict of every key of a 100k-test file cost ~15 MiB."""

    def __init__(self, session: Session):
        self.s = session
        self.conn = session.connection()
        self.ph = "?" if self.conn.dialect.paramstyle == "qmark" else "%s"
        self.now = datetime_bind(session, jm.CaseRow.__table__.c.first_seen_at)(m.utcnow())
        self.scratch = False
        self.look_first = True

    def add(self, tests: list[tuple]) -> list[int]:
        """The ids of the test rows ``tests`` (``CASE_COLUMNS``, distinct keys), in order."""
        if not tests:
            return []
        if self.conn.dialect.name == "postgresql":
            found = self._insert_pg(tests)
        else:
            # the ingest holds SQLite's write lock (BEGIN IMMEDIATE): the rows past the largest id are ours,
            # read back in one statement; only keys that already existed are looked up by hash
            (top,) = self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM tests").one()
            now = self.now
            insert = BulkInsert(self.s, jm.CaseRow.__table__, (*CASE_COLUMNS, "first_seen_at"), _IF_ABSENT)
            insert([(*t, now) for t in tests])
            rows = self.conn.exec_driver_sql("SELECT id, key_hash FROM tests WHERE id > ?", (top,))
            found = [(pk, h) for pk, h in rows]
            if len(found) < len(tests):
                inserted = {h for _, h in found}
                found += self._by_hash([t[0] for t in tests if t[0] not in inserted])
        by_hash = {h: pk for pk, h in found}
        return [by_hash[t[0]] for t in tests]

    def _by_hash(self, hashes: list[str]) -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        for i in range(0, len(hashes), _LOOKUP_CHUNK):
            chunk = hashes[i : i + _LOOKUP_CHUNK]
            sql = f"SELECT id, key_hash FROM tests WHERE key_hash IN ({', '.join([self.ph] * len(chunk))})"
            found += [(pk, h) for pk, h in self.conn.exec_driver_sql(sql, tuple(chunk))]
        return found

    def _insert_pg(self, new: list[tuple]) -> list[tuple[int, str]]:
        """``COPY`` into a scratch table, insert-if-absent from it ``RETURNING`` the new ids; the keys already
        stored (or inserted by a concurrent ingest in between) read back by a join. Measured on 97k new tests:
        1.3 s; the same from ``unnest`` arrays 3 s, from a multi-row ``VALUES`` 5 s. While batches keep finding
        stored keys (the steady CI case), they are looked up first and only the rest go through the scratch."""
        cols = ", ".join(f'"{c}"' for c in (*CASE_COLUMNS, "first_seen_at"))
        raw = driver_connection(self.conn)
        known: list[tuple[int, str]] = []
        if self.look_first:
            # a steady CI run stores next to nothing new: look the keys up by index, insert only the rest
            with raw.cursor() as cur:
                cur.execute("SELECT id, key_hash FROM tests WHERE key_hash = ANY(%s)", ([t[0] for t in new],))
                known = cur.fetchall()
            self.look_first = bool(known)  # a fresh file's first batch finds none: insert first from then on
            if len(known) == len(new):
                return known
            stored = {h for _, h in known}
            new = [t for t in new if t[0] not in stored]
        if not self.scratch:
            self.conn.exec_driver_sql(
                f"CREATE TEMP TABLE guardrail_new_tests ON COMMIT DROP AS SELECT {cols} FROM tests WITH NO DATA"
            )
            self.scratch = True
        else:
            self.conn.exec_driver_sql("TRUNCATE guardrail_new_tests")
        now = self.now
        with raw.cursor() as cur:
            with cur.copy(f"COPY guardrail_new_tests ({cols}) FROM STDIN") as cp:
                for row in new:
                    cp.write_row((*row, now))
            cur.execute(
                f"INSERT INTO tests ({cols}) SELECT {cols} FROM guardrail_new_tests "
                "ON CONFLICT (key_hash) DO NOTHING RETURNING id, key_hash"
            )
            found: list[tuple[int, str]] = cur.fetchall()
            if len(found) < len(new):  # keys stored before (a steady CI run: nearly all of them)
                # without statistics on the scratch table the join below was planned as a scan of all tests
                cur.execute("ANALYZE guardrail_new_tests")
                cur.execute(
                    "SELECT t.id, t.key_hash FROM tests t JOIN guardrail_new_tests n ON n.key_hash = t.key_hash"
                )
                found = cur.fetchall()
        return known + found
