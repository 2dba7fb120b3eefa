"""Storing JUnit files: every fixture variant, rerun attempts grouped, idempotent re-ingest, hostile XML
writes nothing, fresh-process rerun rounds, infrastructure failures, and migration 0002 up and down.
Runs on SQLite and PostgreSQL (the ``db_url`` fixture)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from guardrail.errors import InfraError, InputError
from guardrail.ingest.junit_verdicts import group_verdicts
from guardrail.ingest.junit_writer import ingest_junit
from guardrail.ingest.junit_xml import iter_junit
from guardrail.schema import CIInfo, Source
from guardrail.store import junit_models as tm
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.timeline import at

FIX = Path(__file__).parent / "fixtures" / "junit"
T0 = at(days=-2, hours=-6)
VARIANTS = ["pytest_xunit1", "pytest_xunit2", "pytest_rerunfailures", "surefire_reruns", "pytorch_reruns"]


def src(commit: str = "c0ffee1", run_id: str | None = "900", attempt: int = 1, base: str | None = None) -> Source:
    ci = CIInfo(provider="github-actions", run_id=run_id, attempt=attempt) if run_id else None
    return Source(repo="org/p", commit=commit, base_commit=base, ci=ci)


def count(url: str, model) -> int:
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model))


def verdicts(url: str) -> dict[str, tm.CaseVerdictRow]:
    with session_scope(url) as s:
        return {v.test.key: v for v in s.scalars(select(tm.CaseVerdictRow))}


@pytest.fixture(params=["in-process", "child"])
def reader(request, monkeypatch) -> str:
    """Each file parsed in the ingesting process, or in a child process (what a large file gets)."""
    import guardrail.ingest.junit_writer as junit_writer

    if request.param == "child":
        monkeypatch.setattr(junit_writer, "CHILD_MIN_BYTES", 0)
    return request.param


@pytest.mark.parametrize("name", VARIANTS)
def test_each_fixture_ingests_and_matches_the_pure_grouping(db_url, name, reader):
    path = FIX / f"{name}.xml"
    report = ingest_junit(db_url, [path], source=src(), lane=None, hardware=None, started_at=T0)
    (entry,) = report.stored
    records = list(iter_junit(path))
    expected = {v.identity.key: v for v in group_verdicts(records, head_commit="c0ffee1")}
    assert entry["executions"] == len(records) == count(db_url, tm.ExecutionRow)
    assert entry["run_id"] in report.run_ids and entry["file"] == str(path)
    kinds = Counter(v.verdict for v in expected.values())
    assert entry["status"].startswith(f"{kinds['pass']} passed, {kinds['fail']} failed, {kinds['flaky']} flaky")
    stored = verdicts(db_url)
    assert set(stored) == set(expected)
    for key, v in expected.items():
        row = stored[key]
        assert (row.verdict, row.attempts, row.failed_attempts, row.final_outcome) == (
            v.verdict,
            v.attempts,
            v.failed_attempts,
            v.final_outcome,
        ), key
        assert tuple(row.signatures) == v.signatures
        assert row.at == T0 and row.lane == "tests" and row.hardware == "any"
    with session_scope(db_url) as s:
        run = s.get(m.Run, entry["run_id"])
        assert (run.lane, run.hardware, run.commit.sha, run.ci_run_id, run.ci_attempt) == (
            "tests",
            "any",
            "c0ffee1",
            "900",
            1,
        )


def test_rerunfailures_attempts_are_stored_and_grouped(db_url):
    """The bare <testcase/> of a failed pytest-rerunfailures attempt is stored as a failure, not a pass."""
    ingest_junit(db_url, [FIX / "pytest_rerunfailures.xml"], source=src(), lane="npu", hardware="Ascend910B3")
    with session_scope(db_url) as s:
        rows = s.execute(
            select(tm.CaseRow.key, tm.ExecutionRow.outcome, tm.ExecutionRow.source, tm.ExecutionRow.final)
            .join(tm.CaseRow, tm.CaseRow.id == tm.ExecutionRow.test_pk)
            .order_by(tm.ExecutionRow.inprocess_attempt)
        ).all()
    flaky = [r for r in rows if r.key == "tests/test_io.py::test_flaky_then_pass@Ascend910B3"]
    assert [(r.outcome, r.source, r.final) for r in flaky] == [
        ("fail", "rerun-testcase", False),
        ("pass", "testcase", True),
    ]
    always = [r.outcome for r in rows if r.key == "tests/test_io.py::test_always_fails@Ascend910B3"]
    assert always == ["fail", "fail", "fail"]
    v = verdicts(db_url)
    assert v["tests/test_io.py::test_flaky_then_pass@Ascend910B3"].verdict == "flaky"
    assert v["tests/test_io.py::test_always_fails@Ascend910B3"].verdict == "fail"
    assert v["tests/test_io.py::test_always_fails@Ascend910B3"].attempts == 3
    assert {r.hardware for r in v.values()} == {"Ascend910B3"}


def test_reingest_is_a_noop_that_says_so(db_url):
    path = FIX / "pytest_xunit2.xml"
    first = ingest_junit(db_url, [path], source=src(), lane=None, hardware=None)
    n = count(db_url, tm.ExecutionRow)
    again = ingest_junit(db_url, [path, path], source=src(), lane=None, hardware=None)
    assert again.stored == [] and len(again.skipped) == 2
    assert again.skipped[0]["run_id"] == first.stored[0]["run_id"]
    assert "already stored" in again.skipped[0]["reason"]
    assert count(db_url, tm.ExecutionRow) == n and count(db_url, m.Run) == 1
    # a local ingest (no CI run id) of the same file for the same commit is a no-op too
    ingest_junit(db_url, [path], source=src(run_id=None), lane=None, hardware=None)
    local = ingest_junit(db_url, [path], source=src(run_id=None), lane=None, hardware=None)
    assert local.stored == [] and count(db_url, m.Run) == 2


def test_a_second_job_attempt_regroups_the_commit_pair(db_url, tmp_path):
    """Attempt 1 fails a test, attempt 2 (a re-run of the workflow) passes it: one verdict, flaky."""
    fail = _write(tmp_path, "attempt1", [("test_x", "fail"), ("test_y", "pass")])
    ok = _write(tmp_path, "attempt2", [("test_x", "pass"), ("test_y", "pass")])
    ingest_junit(db_url, [fail], source=src(attempt=1), lane=None, hardware=None, started_at=T0)
    later = T0 + timedelta(hours=1)
    ingest_junit(db_url, [ok], source=src(attempt=2), lane=None, hardware=None, started_at=later)
    x = verdicts(db_url)["tests/test_s.py::test_x"]
    assert (x.verdict, x.attempts, x.failed_attempts, x.process_attempts) == ("flaky", 2, 1, 2)
    assert x.at == later and count(db_url, m.Run) == 2
    assert count(db_url, tm.CaseVerdictRow) == 2  # replaced, not duplicated


def test_a_rerun_round_in_the_same_run_is_a_fresh_process_attempt(db_url, tmp_path):
    first = _write(tmp_path, "round1", [("test_x", "fail"), ("test_y", "pass")])
    rerun = _write(tmp_path, "round2", [("test_x", "pass")])
    ingest_junit(db_url, [first], source=src(), lane=None, hardware=None)
    ingest_junit(db_url, [rerun], source=src(), lane=None, hardware=None)
    x = verdicts(db_url)["tests/test_s.py::test_x"]
    assert (x.verdict, x.process_attempts, x.final_outcome, x.rerun_duration_s) == ("flaky", 2, "pass", 0.25)
    assert count(db_url, m.Run) == 1


@pytest.mark.parametrize("bad", ["hostile_billion_laughs", "hostile_external_entity", "malformed_truncated"])
def test_a_hostile_or_broken_file_writes_nothing(db_url, bad, tmp_path, reader):
    good = tmp_path / "good.xml"
    shutil.copy(FIX / "pytest_xunit2.xml", good)
    with pytest.raises(InputError) as err:
        ingest_junit(db_url, [good, FIX / f"{bad}.xml"], source=src(), lane=None, hardware=None)
    assert f"{bad}.xml" in str(err.value)
    for model in (m.Run, m.Commit, tm.CaseRow, tm.ExecutionRow, tm.CaseVerdictRow, tm.ReportRow):
        assert count(db_url, model) == 0, model.__tablename__


def test_a_run_with_more_than_20_percent_failed_is_infra_excluded(db_url, tmp_path):
    cases = [(f"test_{i}", "fail" if i < 3 else "pass") for i in range(10)]  # 30% failed
    report = ingest_junit(db_url, [_write(tmp_path, "mass", cases)], source=src(), lane=None, hardware=None)
    assert "infrastructure failure" in report.stored[0]["infra_failure"]
    assert all(v.infra_excluded for v in verdicts(db_url).values())
    ok = [(f"test_{i}", "fail" if i < 2 else "pass") for i in range(10)]  # 20%: not more than 20%
    ingest_junit(db_url, [_write(tmp_path, "ok", ok)], source=src(commit="beef"), lane=None, hardware=None)
    with session_scope(db_url) as s:
        rows = s.scalars(select(tm.CaseVerdictRow).where(tm.CaseVerdictRow.head_commit == "beef")).all()
    assert rows and not any(v.infra_excluded for v in rows)


def test_migration_0002_downgrade_drops_what_it_created(sqlite_url):
    from guardrail.store.db import downgrade, get_engine, upgrade

    upgrade(sqlite_url)
    ours = {"tests", "test_reports", "test_executions", "test_verdicts", "quarantine", "rerun_decisions"}
    assert ours <= set(inspect(get_engine(sqlite_url)).get_table_names())
    downgrade(sqlite_url, "0001")
    names = set(inspect(get_engine(sqlite_url)).get_table_names())
    assert not ours & names and "runs" in names
    upgrade(sqlite_url)
    assert ours <= set(inspect(get_engine(sqlite_url)).get_table_names())


def test_cli_ingest_junit_exit_codes(tmp_path):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    ok = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", "--format", "junit", str(FIX / "pytorch_reruns.xml"),
         "--db", db, "--run-id", "77", "--commit", "abc1234"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "2 passed, 1 failed, 1 flaky" in ok.stdout and "1 stored" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", "--format", "junit", str(FIX / "hostile_dtd.xml"), "--db", db],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "hostile_dtd.xml" in bad.stderr


def _write(where: Path, name: str, cases: list[tuple[str, str]]) -> Path:
    """A small pytest-style JUnit file: (test name, pass|fail), 0.25 s each, in tests/test_s.py."""
    body = []
    for test, outcome in cases:
        inner = '<failure message="AssertionError: got 3 want 4">boom</failure>' if outcome == "fail" else ""
        body.append(f'<testcase classname="tests.test_s" name="{test}" time="0.25">{inner}</testcase>')
    path = where / f"{name}.xml"
    path.write_text(f'<testsuites><testsuite name="pytest">{"".join(body)}</testsuite></testsuites>')
    return path


def test_known_and_new_tests_mixed_in_batches_get_the_right_ids(db_url, tmp_path, monkeypatch):
    """The next commit's file: batches of stored tests (looked up first), then batches with new ones mixed in,
    then a batch of only new ones -- every execution and verdict names its own test."""
    import guardrail.ingest.junit_writer as junit_writer

    monkeypatch.setattr(junit_writer, "BATCH", 10)
    first = _write(tmp_path, "first", [(f"test_{i}", "pass") for i in range(30)])
    ingest_junit(db_url, [first], source=src("aaaaaaa", "1"), lane=None, hardware=None)
    cases = [(f"test_{i}", "pass") for i in range(25)] + [(f"test_new{i}", "fail") for i in range(20)]
    second = _write(tmp_path, "second", cases)
    ingest_junit(db_url, [second], source=src("bbbbbbb", "2"), lane=None, hardware=None)
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(tm.CaseRow)) == 50
        rows = s.execute(
            select(tm.CaseRow.name, tm.ExecutionRow.outcome)
            .join(tm.ExecutionRow, tm.ExecutionRow.test_pk == tm.CaseRow.id)
            .join(m.Run, m.Run.id == tm.ExecutionRow.run_id)
            .where(m.Run.ci_run_id == "2")
        ).all()
        verdict_rows = s.execute(
            select(tm.CaseRow.name, tm.CaseVerdictRow.verdict)
            .join(tm.CaseVerdictRow, tm.CaseVerdictRow.test_pk == tm.CaseRow.id)
            .where(tm.CaseVerdictRow.head_commit == "bbbbbbb")
        ).all()
    want = {n: ("fail" if n.startswith("test_new") else "pass") for n, _ in cases}
    assert dict(rows) == want and len(rows) == 45
    assert dict(verdict_rows) == want and len(verdict_rows) == 45


def test_shards_ingested_one_by_one_keep_each_others_verdicts(db_url, tmp_path):
    a = _write(tmp_path, "shard_a", [(f"test_a{i}", "pass") for i in range(6)])
    b = _write(tmp_path, "shard_b", [(f"test_b{i}", "fail" if i < 2 else "pass") for i in range(6)])
    ingest_junit(db_url, [a], source=src(), lane=None, hardware=None)
    report = ingest_junit(db_url, [b], source=src(), lane=None, hardware=None)
    assert report.stored[0]["verdicts"] == 6  # only shard b's tests were regrouped
    v = verdicts(db_url)
    assert len(v) == 12 and v["tests/test_s.py::test_a0"].verdict == "pass"
    # 2 of 12 failed: under 20%, so the run is no infrastructure failure (shard b alone would be 33%)
    assert not any(x.infra_excluded for x in v.values())
    with session_scope(db_url) as s:
        assert s.scalar(select(func.max(tm.ExecutionRow.process_attempt))) == 1  # shards, not reruns


@pytest.mark.parametrize("batch", [100, 5000])
def test_a_test_far_apart_in_one_file_still_gets_one_verdict(db_url, tmp_path, monkeypatch, batch, reader):
    """Beyond the reader's rerun window the attempts of a test are not contiguous: with small write
    batches the ingest notices and regroups from the store; the verdict is the pure function's."""
    import guardrail.ingest.junit_writer as junit_writer

    monkeypatch.setattr(junit_writer, "BATCH", batch)
    cases = [("test_x", "fail")] + [(f"test_{i}", "pass") for i in range(600)] + [("test_x", "pass")]
    path = _write(tmp_path, "apart", cases)
    report = ingest_junit(db_url, [path], source=src(), lane=None, hardware=None)
    expected = {v.identity.key: v.verdict for v in group_verdicts(list(iter_junit(path)))}
    stored = {k: v.verdict for k, v in verdicts(db_url).items()}
    assert stored == expected and stored["tests/test_s.py::test_x"] == "flaky"
    assert report.stored[0]["verdicts"] == 601


def test_a_reader_process_that_dies_midway_writes_nothing_and_says_so(db_url, tmp_path, monkeypatch):
    """The child reader is killed after a few batches (its output cut mid-message): the ingest fails with
    the file named and the exit code, and rolls back the rows already written from the earlier batches."""
    import guardrail.ingest.junit_writer as junit_writer

    monkeypatch.setattr(junit_writer, "CHILD_MIN_BYTES", 0)
    monkeypatch.setattr(junit_writer, "BATCH", 50)
    path = _write(tmp_path, "big", [(f"test_{i}", "fail" if i % 7 == 0 else "pass") for i in range(2000)])
    crash = tmp_path / "python-that-crashes"
    crash.write_text(f'#!/bin/sh\n"{sys.executable}" "$@" | head -c 20000\necho "reader lost its device" >&2\nexit 9\n')
    crash.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crash))
    with pytest.raises(InfraError) as err:
        ingest_junit(db_url, [path], source=src(), lane=None, hardware=None)
    msg = str(err.value)
    assert "big.xml" in msg and "exit code 9" in msg and "reader lost its device" in msg, msg
    for model in (m.Run, m.Commit, tm.CaseRow, tm.ExecutionRow, tm.CaseVerdictRow, tm.ReportRow):
        assert count(db_url, model) == 0, model.__tablename__


def test_migration_0003_drops_two_indexes_and_its_downgrade_restores_them(db_url):
    from guardrail.store.db import downgrade, get_engine, upgrade

    def indexes() -> set[str]:
        insp = inspect(get_engine(db_url))
        return {i["name"] for t in ("test_executions", "test_verdicts") for i in insp.get_indexes(t)}

    dropped = {"ix_test_executions_signature", "ix_test_verdicts_test_at"}
    upgrade(db_url)
    after = indexes()
    assert not dropped & after and {"ix_test_executions_run_test", "ix_test_verdicts_window"} <= after
    downgrade(db_url, "0002")
    assert indexes() == after | dropped
    upgrade(db_url)
    assert indexes() == after


def test_migration_0004_drops_the_executions_run_fk_and_a_deleted_run_still_takes_its_executions(db_url):
    """Without its own foreign key, an execution still goes with its run: through its report (cascade)."""
    from guardrail.store.db import downgrade, get_engine, upgrade

    def run_fks() -> list:
        fks = inspect(get_engine(db_url)).get_foreign_keys("test_executions")
        return [fk for fk in fks if fk["constrained_columns"] == ["run_id"]]

    upgrade(db_url)
    assert run_fks() == []
    downgrade(db_url, "0003")
    assert [fk["referred_table"] for fk in run_fks()] == ["runs"]
    upgrade(db_url)
    assert run_fks() == []
    ingest_junit(db_url, [FIX / "pytest_rerunfailures.xml"], source=src(), lane=None, hardware=None, started_at=T0)
    assert count(db_url, tm.ExecutionRow) > 0
    with session_scope(db_url, write=True) as s:
        s.execute(m.Run.__table__.delete())
    assert count(db_url, tm.ReportRow) == 0 and count(db_url, tm.ExecutionRow) == 0


def test_migration_0002_matches_the_models(db_url):
    """Autogenerate finds nothing to add for the JUnit tables (Alembic cannot compare the DESC
    expression index, so that one is left out)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from guardrail.store.db import get_engine, upgrade

    upgrade(db_url)
    with get_engine(db_url).connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
    assert [d for d in diffs if "ix_test_verdicts_window" not in str(d)] == []
