"""One JUnit file as the store wants it: batches of plain tuples, and the verdicts of its tests.

What :mod:`guardrail.ingest.junit_writer` stores, computed here so that it can run in a process of its own
(:mod:`guardrail.ingest.junit_process`: the parse and the database writes then use two cores; threads could not,
the GIL): plain tuples pickle cheaply.

A test row:    (key_hash, key, test_id, suite, file, classname, name, params, hardware); the n-th test row
               of a file is its test number n (from 0): executions and verdicts name their test by it,
               so that neither process keeps a dict of 100k key strings, nor pickles them again
An execution:  (test number, job_attempt, process_attempt, inprocess_attempt, outcome, duration_s, phase,
               failure_type, message, signature, source, final, properties JSON, system_out of a failure)
A verdict:     (test number, verdict, final_outcome, attempts, failed_attempts, signatures JSON, duration_s,
               rerun_duration_s, process_attempts)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from guardrail.analysis.junit_model import FAILED, key_hash, node_id
from guardrail.ingest.junit_verdicts import AttemptView, single_verdict, verdict_fields
from guardrail.ingest.junit_xml import iter_raw

_EMITTED = 8  # a test number's flag once its verdict has left (beside junit_batches' outcome bits 1, 2, 4)


class _Groups:
    """A file's verdicts straight from its attempts, by test number, for the common case -- one new file, the only
    run of its commit pair -- so that the store reads nothing back. A test's group is complete at its ``final``
    attempt; complete groups are emitted every ``batch`` attempts. A test seen again after its group was
    emitted (beyond the reader's rerun window) sets ``broken``: the store then regroups from its rows."""

    def __init__(self, batch: int, flags: bytearray):
        self.batch = batch
        self.open: dict[int, list[tuple]] = {}  # a test's earlier attempts, waiting for its final one
        self.pending: dict[int, list[tuple]] = {}  # complete groups not emitted yet
        self.n_pending = 0
        self.flags = flags  # per test number; EMITTED is set once its verdict has left
        self.broken = False

    def add(self, execs: list[tuple]) -> list[tuple]:
        if self.broken:
            return []
        open_, pending = self.open, self.pending
        for e in execs:
            key = e[0]
            group = open_.pop(key, None)
            if group is None:
                if e[11]:
                    group = [e]
                else:
                    open_[key] = [e]
                    continue
            else:
                group.append(e)
                if not e[11]:
                    open_[key] = group
                    continue
            done = pending.get(key)
            if done is None:
                pending[key] = group
            else:
                done.extend(group)
            self.n_pending += len(group)
        return self._emit() if self.n_pending >= self.batch else []

    def finish(self) -> list[tuple]:
        if self.broken:
            return []
        for key, group in self.open.items():
            done = self.pending.get(key)
            if done is None:
                self.pending[key] = group
            else:
                done.extend(group)
        self.open = {}
        return self._emit()

    def _emit(self) -> list[tuple]:
        groups, self.pending, self.n_pending = self.pending, {}, 0
        rows = []
        flags = self.flags
        for key, g in groups.items():
            if flags[key] & _EMITTED:
                self.broken = True
                return []
            flags[key] |= _EMITTED
            if len(g) == 1:
                e = g[0]
                v = single_verdict(e[4], e[5], e[9], e[6])
            else:
                v = verdict_fields([AttemptView(e[4], e[5], e[1], e[2], e[3], e[6], e[9]) for e in g])
            sigs = v[4]
            rows.append((key, v[0], v[1], v[2], v[3], json.dumps(list(sigs)) if sigs else "[]", v[5], v[6], v[8]))
        return rows


def junit_batches(
    path: str | Path,
    *,
    job_attempt: int = 1,
    hardware: str | None = None,
    batch: int = 5000,
    verdicts: bool = True,
) -> Iterator[tuple]:
    """One JUnit file as the store wants it, streaming: ``("rows", tests, executions, verdicts)`` messages
    (each about ``batch`` executions; a test's row comes with or before its first execution, a verdict after
    its test's last), then ``("done", counts, suites, verdicts_complete)``. The tuples are described above.

    ``counts`` are the file's summary by test (passed / failed / flaky / skipped); ``verdicts_complete`` is
    false when ``verdicts`` was not asked for or a test's attempts were too far apart to group here.
    The ``<system-out>`` tail is kept for failed attempts only (where "device lost" shows up): in a realistic
    50 MB file half the passing cases carry a log, 30 MB the store would never show.
    Raises :class:`InputError` like :func:`iter_junit`.
    """
    numbers: dict[str, int] = {}  # test key -> test number
    bits = bytearray()  # per test number: 1 an attempt passed, 2 one failed, 4 skipped (and _Groups' flag)
    suites: set[str] = set()
    groups = _Groups(batch, bits) if verdicts else None
    tests: list[tuple] = []
    execs: list[tuple] = []
    last: tuple | None = None
    n = 0
    dumps = json.dumps
    for a in iter_raw(path, job_attempt=job_attempt, hardware=hardware):
        ident = a[0]
        if ident is not last:  # a test's attempts share one identity tuple
            last = ident
            suite, file, cls, name, params, hw = ident
            suites.add(suite)
            tid = node_id(file, cls, name, params)
            key = f"{tid}@{hw}" if hw else tid
            n = numbers.get(key, -1)
            if n < 0:
                n = numbers[key] = len(numbers)
                bits.append(0)
                tests.append((key_hash(key), key, tid, suite, file, cls, name, params, hw))
        outcome = a[1]
        failed = outcome in FAILED
        bits[n] |= 4 if outcome == "skip" else 2 if failed else 1
        execs.append(
            (n, a[3], a[4], a[5], outcome, a[2], a[7], a[8], a[9], a[10], a[11], a[6],
             dumps(dict(a[12])) if a[12] else None, a[13] if failed else None)
        )  # fmt: skip
        if len(execs) >= batch:
            yield ("rows", tests, execs, groups.add(execs) if groups else [])
            tests, execs = [], []
    if tests or execs:
        yield ("rows", tests, execs, groups.add(execs) if groups else [])
    if groups is not None:
        rest = groups.finish()
        if rest:
            yield ("rows", [], [], rest)
    counts = {"passed": 0, "failed": 0, "flaky": 0, "skipped": 0}
    for b in bits:
        ran = b & 3
        counts["flaky" if ran == 3 else "failed" if ran == 2 else "passed" if ran == 1 else "skipped"] += 1
    yield ("done", counts, sorted(suites), groups is not None and not groups.broken)
