"""Issue 13: malformed or hostile JUnit XML is bad input: one line naming the file and what is wrong, exit 2
(422 through the service), nothing written; the same on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from guardrail.api_tokens import create_token
from guardrail.errors import InputError
from guardrail.ingest.junit_writer import ingest_junit
from guardrail.schema import CIInfo, Source
from guardrail.store import junit_models as tm
from guardrail.store import models as m
from guardrail.store.db import session_scope
from tests.test_junit_store_ingest import FIX, count


def _case(attrs: str, inner: str = "") -> str:
    case = f'<testcase classname="tests.test_a" {attrs}>{inner}</testcase>'
    return f'<testsuites><testsuite name="s">{case}</testsuite></testsuites>'


# name -> (file content, the field the message names, words of the message)
BAD: dict[str, tuple[str | bytes, str, str]] = {
    "truncated": ('<testsuites><testsuite name="s"><testcase name="a"', "line 1, column", "not well-formed"),
    "empty": ("", "line 1, column 0", "no element found"),
    "binary": (b"\x00\x01\x02\xff", "line 1, column 0", "not well-formed"),
    "two-roots": ('<testsuite name="s"/><testsuite name="t"/>', "line 1, column 21", "junk after document element"),
    "wrong-root": ("<html><body/></html>", "root", "root element is <html>"),
    "namespaced-root": ('<j:testsuite xmlns:j="urn:x"/>', "root", "expected <testsuites> or <testsuite>"),
    "no-name": (_case('time="1"'), "testcase.name", "without a name attribute"),
    "empty-name": (_case('name="" time="1"'), "testcase.name", "with an empty name"),
    "time-1e400": (_case('name="a" time="1e400"'), "testcase[a].time", "not a finite, non-negative duration"),
    "time-negative": (_case('name="a" time="-5"'), "testcase[a].time", "not a finite, non-negative duration"),
    "time-nan": (_case('name="a" time="NaN"'), "testcase[a].time", "not a finite, non-negative duration"),
    "time-1e300": (_case('name="a" time="1e300"'), "testcase[a].time", "longer than any CI job"),
    "time-underscore": (_case('name="a" time="1_000"'), "testcase[a].time", "not a number"),
    "rerun-time-nan": (
        _case('name="a" time="1"', '<failure message="m"/><rerunFailure time="NaN"/>'),
        "testcase[a].rerunFailure.time",
        "not a finite",
    ),
    "unknown-encoding": ('<?xml version="1.0" encoding="bogus-enc"?><testsuite/>', "encoding", "unsupported XML"),
    "carriage-return-in-name": (_case('name="a&#13;b"'), "testcase.name", "control character"),
    "newline-in-suite": ('<testsuite name="s&#10;t"><testcase name="a"/></testsuite>', "testsuite.name", "control"),
    "invalid-char-ref": (_case('name="a&#0;b"'), "line 1, column", "reference to invalid character number"),
    "hardware-too-long": (
        _case('name="a"', '<properties><property name="hardware" value="' + "h" * 201 + '"/></properties>'),
        "testcase[a].properties.hardware",
        "longer than 200 characters",
    ),
    "suite-hardware-control": (
        '<testsuite name="s"><properties><property name="device" value="H1&#9;00"/></properties>'
        '<testcase name="a"/></testsuite>',
        "testsuite[s].properties.hardware",
        "control character",
    ),
}


def _write(tmp_path: Path, name: str) -> Path:
    content = BAD[name][0]
    path = tmp_path / f"{name}.xml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _src() -> Source:
    return Source(repo="org/p", commit="c0ffee1", ci=CIInfo(provider="github-actions", run_id="900", attempt=1))


@pytest.mark.parametrize("name", BAD)
def test_bad_junit_is_one_line_naming_file_and_field_and_writes_nothing(db_url, tmp_path, name):
    good = tmp_path / "good.xml"
    shutil.copy(FIX / "pytest_xunit2.xml", good)
    bad = _write(tmp_path, name)
    with pytest.raises(InputError) as err:
        ingest_junit(db_url, [good, bad], source=_src(), lane=None, hardware=None)
    _, field, words = BAD[name]
    text = str(err.value)
    assert "\n" not in text and "\r" not in text
    assert err.value.file == str(bad), text
    assert field in (err.value.field or ""), text
    assert words in text, text
    for model in (m.Run, m.Commit, tm.CaseRow, tm.ExecutionRow, tm.CaseVerdictRow, tm.ReportRow):
        assert count(db_url, model) == 0, model.__tablename__


@pytest.mark.parametrize("name", ["truncated", "time-1e300", "unknown-encoding", "hardware-too-long", "empty-name"])
def test_the_cli_exits_2_with_one_line(tmp_path, name):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    bad = _write(tmp_path, name)
    run = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", "--format", "junit", str(bad), "--db", db, "--run-id", "7",
         "--commit", "abc1234"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and str(bad) in run.stderr, run.stderr


def test_a_hardware_option_longer_than_its_column_exits_2(tmp_path):
    db = f"sqlite:///{tmp_path / 'g.db'}"
    run = subprocess.run(
        [sys.executable, "-m", "guardrail", "ingest", "--format", "junit", str(FIX / "pytest_xunit2.xml"), "--db", db,
         "--run-id", "7", "--commit", "abc1234", "--hardware", "h" * 201],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "longer than 200 characters" in run.stderr, run.stderr


def test_the_service_answers_junit_with_422(sqlite_url):
    with session_scope(sqlite_url, write=True) as session:
        _, token = create_token(session, "ci")
    from web.app import create_app

    with TestClient(create_app(sqlite_url)) as client:
        r = client.post(
            "/api/v1/ingest",
            json={"format": "junit", "documents": [{"name": "t.xml", "content": BAD["truncated"][0]}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 422 and "t.xml" in r.json()["detail"], r.text
